//! `hookwire plugin push|list|rollback|rm|test|chain|config`: a thin client
//! of the plugin admin REST API (`http/plugins.rs`). It prints the `data` of
//! each answer as pretty JSON, and fails with the server's `meta.msg`.
//! `hookwire plugin check|run|new` need no server (`toolbox.rs`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use super::toolbox::{self, Lang, NodeArgs};

/// Where the server is and who is asking.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Base URL of the hookwire node.
    #[arg(long, env = "HOOKWIRE_SERVER", default_value = "http://127.0.0.1:3000")]
    pub server: String,
    /// The node's admin key.
    #[arg(long, env = "HOOKWIRE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,
    /// Tenant whose plugins to manage.
    #[arg(long, short = 't', default_value = "default")]
    pub tenant: String,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PluginCmd {
    /// Without a server: what a component is (world, imports, exports, size,
    /// hooks) and whether a node's limits accept it, with the reasons.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
        /// A JSON manifest file to check against the node's limits.
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Without a server: run one hook of a component in the node's runtime
    /// and limits; prints the verdict, time, fuel and logs as JSON (exit 2
    /// when the plugin faults).
    Run {
        /// The `.wasm` component.
        file: PathBuf,
        /// describe, authenticate, on-join, on-msg, storage-mode, route-push.
        #[arg(long)]
        hook: String,
        /// The hook input as JSON text, or `@file.json` (fields as for
        /// `plugin test`, e.g. `{"room":"r","msg":{"data":"hi"}}`).
        #[arg(long, default_value = "{}")]
        input: String,
        /// The plugin's config as JSON text (replaces the manifest's).
        #[arg(long)]
        config: Option<String>,
        /// A JSON manifest file (limits, permissions, config).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Keep the plugin's kv in this file between runs (created if
        /// missing); without it every run starts empty.
        #[arg(long)]
        kv: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Without a server: create a plugin project that builds and passes its
    /// test.
    New {
        /// Plugin name (a-z, 0-9, `-`, `_`); also the directory created.
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The guest SDK directory (default: this checkout's `guest-sdk/`,
        /// or HOOKWIRE_GUEST_SDK).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Upload a component (a new version; appended to the chain if new).
    Push {
        #[command(flatten)]
        client: ClientArgs,
        /// Plugin name (a-z, 0-9, `-`, `_`).
        name: String,
        /// The `.wasm` component.
        file: PathBuf,
        /// A JSON manifest file (timeout_ms, memory_bytes, fuel, fail_open,
        /// allowed_hosts, http_timeout_ms, config).
        #[arg(long, conflicts_with = "config")]
        manifest: Option<PathBuf>,
        /// The plugin's config as JSON text (a manifest with only `config`).
        #[arg(long)]
        config: Option<String>,
    },
    /// List plugins, versions, hashes and the chain.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move a plugin back to its previous version.
    Rollback {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
    },
    /// Remove a plugin from the chain and delete all its versions.
    Rm {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
    },
    /// Dry run: call one hook of one plugin with an input.
    Test {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
        /// describe, authenticate, on-join, on-msg, storage-mode, route-push.
        #[arg(long)]
        hook: String,
        /// The hook input as JSON text, or `@file.json`.
        #[arg(long, default_value = "{}")]
        input: String,
        /// A version other than the active one.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Set the chain order (plugins not named leave the chain).
    Chain {
        #[command(flatten)]
        client: ClientArgs,
        /// Plugin names in call order.
        names: Vec<String>,
    },
    /// Replace a plugin's manifest (a new version, hot-swapped).
    Config {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
        /// The manifest as JSON text, or `@file.json`.
        manifest: String,
    },
}

fn text_or_file(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}")),
        None => Ok(arg.to_string()),
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        Ok(Client {
            http: reqwest::Client::builder().build()?,
            base: format!(
                "{}/api/tenants/{}",
                args.server.trim_end_matches('/'),
                args.tenant
            ),
            key: args.admin_key.clone(),
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
    }

    /// Sends, and returns `data` of a successful envelope.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .context("cannot reach the hookwire server")?;
        let http = resp.status();
        let body: Value = resp
            .json()
            .await
            .with_context(|| format!("HTTP {http}: the answer is not JSON"))?;
        let status = body
            .pointer("/meta/status")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        if !http.is_success() || status != 0 {
            let msg = body
                .pointer("/meta/msg")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            bail!("HTTP {http}, status {status}: {msg}");
        }
        Ok(body.get("data").cloned().unwrap_or(Value::Null))
    }
}

/// Runs one `hookwire plugin` command and prints its result.
pub async fn run(cmd: PluginCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    let data = match cmd {
        PluginCmd::Check {
            file,
            manifest,
            node,
        } => return toolbox::check(&file, manifest.as_deref(), &node).await,
        PluginCmd::Run {
            file,
            hook,
            input,
            config,
            manifest,
            kv,
            node,
        } => {
            let input: Value =
                serde_json::from_str(&text_or_file(&input)?).context("--input is not JSON")?;
            return toolbox::run(toolbox::RunRequest {
                file: &file,
                hook: &hook,
                input,
                config: config.as_deref(),
                manifest: manifest.as_deref(),
                kv: kv.as_deref(),
                node: &node,
            })
            .await;
        }
        PluginCmd::New {
            name,
            lang,
            dir,
            sdk,
        } => return toolbox::new(&name, lang, &dir, sdk.as_deref()),
        PluginCmd::Push {
            client,
            name,
            file,
            manifest,
            config,
        } => {
            let c = Client::new(&client)?;
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut req = c
                .req(Method::POST, &format!("/plugins/{name}"))
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(wasm);
            if let Some(path) = manifest {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                // Compact, so it fits one header line.
                let v: Value = serde_json::from_str(&text).context("the manifest is not JSON")?;
                req = req.header("x-hookwire-manifest", v.to_string());
            }
            if let Some(config) = config {
                let _: Value = serde_json::from_str(&config).context("--config is not JSON")?;
                req = req.query(&[("config", config)]);
            }
            c.send(req).await?
        }
        PluginCmd::List { client } => {
            let c = Client::new(&client)?;
            c.send(c.req(Method::GET, "/plugins")).await?
        }
        PluginCmd::Rollback { client, name } => {
            let c = Client::new(&client)?;
            c.send(c.req(Method::POST, &format!("/plugins/{name}/rollback")))
                .await?
        }
        PluginCmd::Rm { client, name } => {
            let c = Client::new(&client)?;
            c.send(c.req(Method::DELETE, &format!("/plugins/{name}")))
                .await?
        }
        PluginCmd::Test {
            client,
            name,
            hook,
            input,
            version,
        } => {
            let c = Client::new(&client)?;
            let input: Value =
                serde_json::from_str(&text_or_file(&input)?).context("--input is not JSON")?;
            let body = serde_json::json!({ "hook": hook, "input": input, "version": version });
            c.send(
                c.req(Method::POST, &format!("/plugins/{name}/test"))
                    .json(&body),
            )
            .await?
        }
        PluginCmd::Chain { client, names } => {
            let c = Client::new(&client)?;
            c.send(
                c.req(Method::PUT, "/chain")
                    .json(&serde_json::json!({ "order": names })),
            )
            .await?
        }
        PluginCmd::Config {
            client,
            name,
            manifest,
        } => {
            let c = Client::new(&client)?;
            let v: Value = serde_json::from_str(&text_or_file(&manifest)?)
                .context("the manifest is not JSON")?;
            c.send(
                c.req(Method::PUT, &format!("/plugins/{name}/config"))
                    .json(&v),
            )
            .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}
