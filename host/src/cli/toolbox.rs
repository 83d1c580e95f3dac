//! `hookwire plugin check|run|new`: the plugin toolbox, without a server.
//! `check` and `run` load the component into the same runtime, with the
//! same limits, as a node started with the same configuration would
//! (`-c FILE`, `HOOKWIRE_*`); `new` writes a plugin project that builds and
//! passes its test.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::config::{Config, ServeArgs};
use crate::policy::Hook;
use crate::runtime::{EngineLimits, PluginManifest, PluginMetrics, PluginRuntime};
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;

/// The tenant a local run uses (the kv file's keys live under it).
const LOCAL_TENANT: &str = "local";

/// Fuel given to a local run when the node does not meter fuel: enough for
/// any hook that would meet a deadline, so `run` can always report fuel.
const LOCAL_FUEL: u64 = 1 << 40;

/// The node whose limits apply.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The node's TOML config file (its `[plugins]` limits apply); else the
    /// defaults and HOOKWIRE_* variables, as for `hookwire serve`.
    #[arg(long = "node-config", short = 'c', env = "HOOKWIRE_CONFIG")]
    pub node_config: Option<PathBuf>,
}

impl NodeArgs {
    fn limits(&self) -> anyhow::Result<EngineLimits> {
        let args = ServeArgs {
            config: self.node_config.clone(),
            ..ServeArgs::default()
        };
        let config =
            Config::load(&args).map_err(|e| anyhow::anyhow!("invalid node configuration: {e}"))?;
        Ok(config.plugins)
    }
}

/// The languages `plugin new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
}

/// A runtime of its own, on a store of its own, under a node's limits.
struct Local {
    _dir: tempfile::TempDir,
    runtime: Arc<PluginRuntime>,
    /// The node's limits as configured (the runtime's own are widened so a
    /// refused component can still be inspected).
    node: EngineLimits,
}

impl Local {
    async fn new(node: &NodeArgs, kv: Option<&Path>) -> anyhow::Result<Local> {
        let node = node.limits()?;
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let store_path = match kv {
            Some(p) => p.to_path_buf(),
            None => dir.path().join("local.redb"),
        };
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&store_path, Duration::ZERO)
                .with_context(|| format!("cannot open the kv file {}", store_path.display()))?,
        );
        let mut limits = node.clone();
        limits.max_component_bytes = u64::MAX;
        limits.fuel = Some(node.fuel.unwrap_or(LOCAL_FUEL));
        // One call at a time: a small pool.
        limits.max_concurrent_instances = 2;
        limits.max_instances_per_tenant = 2;
        limits.cache_dir = Some(node.cache_dir.clone().unwrap_or_else(user_cache_dir));
        let runtime = PluginRuntime::new(&limits, store, PluginMetrics::default())?;
        Ok(Local {
            _dir: dir,
            runtime,
            node,
        })
    }
}

/// Where `check` and `run` keep compiled components between runs.
fn user_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("hookwire").join("plugin-cache")
}

fn read_component(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn read_manifest(path: Option<&Path>, config: Option<&str>) -> anyhow::Result<PluginManifest> {
    let mut manifest = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", p.display()))?;
            PluginManifest::from_value(&v)
                .map_err(|e| anyhow::anyhow!("invalid manifest {}: {e}", p.display()))?
        }
        None => PluginManifest::default(),
    };
    if let Some(c) = config {
        manifest.config = serde_json::from_str(c).context("--config is not JSON")?;
    }
    Ok(manifest)
}

/// A plugin name from a file name: `word_filter.wasm` → `word_filter`.
fn name_from(file: &Path) -> String {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_ascii_lowercase();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "plugin".into()
    } else {
        name
    }
}

/// `hookwire plugin check`: prints what the component is and whether the
/// node would accept it; fails (exit 1) with the reasons when not.
pub async fn check(file: &Path, manifest: Option<&Path>, node: &NodeArgs) -> anyhow::Result<()> {
    let wasm = read_component(file)?;
    let manifest = read_manifest(manifest, None)?;
    let local = Local::new(node, None).await?;
    let rt = &local.runtime;
    rt.check_bytes(&wasm)?;
    let started = Instant::now();
    let iface = rt.interface(&wasm).await?;
    let compile_ms = started.elapsed().as_millis();

    let mut refusals = Vec::new();
    let size = wasm.len() as u64;
    if size > local.node.max_component_bytes {
        refusals.push(format!(
            "the component is {size} bytes; this node accepts at most {} (plugins.max_component_bytes)",
            local.node.max_component_bytes
        ));
    }
    let manifest_ok = match manifest.check(&local.node) {
        Ok(()) => true,
        Err(e) => {
            refusals.push(format!("manifest: {e}"));
            false
        }
    };
    let mut describe = None;
    match &iface.link_error {
        Some(e) => refusals.push(format!(
            "it does not implement world hookwire:policy@0.1.0 as this host provides it: {e}"
        )),
        // A refused manifest is reported above; the component is still
        // tried under the defaults.
        None => match rt
            .upload(
                LOCAL_TENANT,
                &name_from(file),
                &wasm,
                Some(if manifest_ok {
                    manifest.clone()
                } else {
                    PluginManifest::default()
                }),
            )
            .await
        {
            Ok(up) => describe = Some(up.describe),
            Err(e) => refusals.push(e.to_string()),
        },
    }

    let limits = manifest.resolve(&local.node);
    println!("file       {}", file.display());
    println!(
        "size       {size} bytes (node limit {})",
        local.node.max_component_bytes
    );
    println!("sha256     {}", crate::runtime::sha256_hex(&wasm));
    println!("load       {compile_ms} ms (compiled, or read from the compile cache)");
    println!(
        "world      {}",
        if iface.link_error.is_none() {
            "hookwire:policy@0.1.0"
        } else {
            "not hookwire:policy@0.1.0"
        }
    );
    println!("imports    {}", list_or_none(&iface.imports));
    println!("exports    {}", list_or_none(&iface.exports));
    if let Some(d) = &describe {
        println!(
            "describe   {} {}, hooks: {}",
            d.name,
            d.version,
            d.hooks.join(", ")
        );
    }
    println!(
        "limits     timeout {} ms, memory {} bytes, fuel {}",
        limits.timeout.as_millis(),
        limits.memory_bytes,
        limits
            .fuel
            .map_or("not metered".to_string(), |f| f.to_string())
    );
    if refusals.is_empty() {
        println!("verdict    accepted by this node's limits");
        Ok(())
    } else {
        println!("verdict    refused:");
        for r in &refusals {
            println!("  - {r}");
        }
        std::process::exit(1);
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// What `hookwire plugin run` is asked to do.
pub struct RunRequest<'a> {
    pub file: &'a Path,
    pub hook: &'a str,
    pub input: Value,
    pub config: Option<&'a str>,
    pub manifest: Option<&'a Path>,
    pub kv: Option<&'a Path>,
    pub node: &'a NodeArgs,
}

/// `hookwire plugin run`: one hook call, printed as JSON (verdict, time,
/// fuel, logs). Exit 2 when the plugin faulted.
pub async fn run(req: RunRequest<'_>) -> anyhow::Result<()> {
    let Some(hook) = Hook::parse(req.hook) else {
        let names: Vec<&str> = Hook::TABLE.iter().map(|n| n.wit).collect();
        bail!("unknown hook `{}`; one of: {}", req.hook, names.join(", "));
    };
    let wasm = read_component(req.file)?;
    let manifest = read_manifest(req.manifest, req.config)?;
    let local = Local::new(req.node, req.kv).await?;
    let rt = &local.runtime;
    let name = name_from(req.file);
    // With a kv file the plugin record persists too: upload only a
    // component (or manifest) not stored yet, so repeated runs reuse it.
    let hash = crate::runtime::sha256_hex(&wasm);
    let listing = rt.list(LOCAL_TENANT).await?;
    let stored = listing.plugins.iter().any(|p| {
        p.name == name
            && p.versions
                .last()
                .is_some_and(|v| v.hash == hash && v.manifest == manifest.to_value())
    });
    if !stored {
        rt.upload(LOCAL_TENANT, &name, &wasm, Some(manifest))
            .await?;
    }
    let out = rt
        .dry_run(LOCAL_TENANT, &name, None, hook, req.input, None)
        .await?;
    // The kv file holds what the call wrote before the process ends.
    rt.flush_kv().await?;
    let ok = out.ok;
    let mut printed = serde_json::to_value(&out)?;
    if local.node.fuel.is_none()
        && let Some(obj) = printed.as_object_mut()
    {
        obj.insert(
            "fuel_note".into(),
            json!("the node does not meter fuel; measured here with metering on"),
        );
    }
    println!("{}", serde_json::to_string_pretty(&printed)?);
    if !ok {
        std::process::exit(2);
    }
    Ok(())
}

/// `hookwire plugin new`: a plugin project in `dir/NAME` that builds and
/// passes its test.
pub fn new(name: &str, lang: Lang, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<()> {
    if !crate::runtime::admin::valid_plugin_name(name) {
        bail!("invalid plugin name `{name}`: 1 to 64 of a-z, 0-9, `-`, `_`");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} exists already", root.display());
    }
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None => default_sdk(lang)?,
    };
    let sdk = std::path::absolute(&sdk).unwrap_or(sdk);
    let files = crate::cli::scaffold::files(name, lang, &sdk);
    for (path, text) in &files {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    println!("created {}", root.display());
    for (path, _) in &files {
        println!("  {path}");
    }
    println!("\nnext:\n{}", crate::cli::scaffold::next_steps(name, lang));
    Ok(())
}

/// The guest SDK of this checkout (the binary knows where it was built
/// from); `--sdk` or HOOKWIRE_GUEST_SDK points elsewhere.
fn default_sdk(lang: Lang) -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("HOOKWIRE_GUEST_SDK") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"),
    };
    let dir = match lang {
        Lang::Rust => base.clone(),
        Lang::Js => base.join("js"),
        Lang::Python => base.join("python"),
    };
    if !dir.is_dir() {
        bail!(
            "the guest SDK is not at {}; pass --sdk DIR (the `guest-sdk{}` directory of a hookwire checkout)",
            dir.display(),
            match lang {
                Lang::Rust => "",
                Lang::Js => "/js",
                Lang::Python => "/python",
            }
        );
    }
    Ok(dir)
}
