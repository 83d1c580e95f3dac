//! Node configuration: defaults < TOML file < environment (`HOOKWIRE_*`) <
//! command-line flags, merged by `figment`. Per-tenant settings live in
//! [`TenantConfig`](crate::tenant::TenantConfig) and are changed at runtime
//! over the admin API; `[tenant_defaults]` seeds new tenants.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::runtime::EngineLimits;
use crate::tenant::TenantConfig;

/// Bytes a socket.io packet adds around a `msg` (namespace, event name,
/// ack id, framing), with room to spare.
const MSG_PACKET_OVERHEAD: u64 = 16 << 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address for socket.io and the HTTP API.
    pub listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    pub data_dir: PathBuf,
    /// Where durable state lives; unset, it follows from the URLs given
    /// ([`Config::store_kind`]). See README, "Stores".
    pub store: Option<StoreKind>,
    /// Redis (`redis://host:6379/0`): the cluster bus of the nodes on it,
    /// and the store when `store` is `redis`.
    pub redis: Option<String>,
    /// MongoDB (`mongodb://host:27017/hookwire`): the store when `store` is
    /// `mongo`.
    pub mongo: Option<String>,
    /// Admin key; when unset, one is generated on first start and written to
    /// `<data_dir>/admin.key`.
    pub admin_key: Option<String>,
    /// API key of the `default` tenant on first start; generated when unset.
    pub default_api_key: Option<String>,
    /// When set, `/metrics` answers only `Authorization: Bearer <metrics_key>`
    /// (or the admin key): its labels name every tenant and plugin.
    pub metrics_key: Option<String>,
    /// Largest Engine.IO packet, in bytes. Kept well above the largest
    /// tenant `max_msg_bytes` so an oversized `msg` gets a clear error
    /// instead of a closed connection.
    pub max_payload_bytes: u64,
    /// Group commit under steady load (µs): when writes arrived while the
    /// previous commit ran, the writer waits this long to gather more before
    /// the next commit. A write to an idle store is committed at once.
    /// 0 = commit as soon as the writer is free (writes arriving meanwhile
    /// still share the next commit).
    pub commit_delay_us: u64,
    /// How long a server-to-client ack (pushes) is awaited.
    pub ack_timeout_ms: u64,
    /// `pretty` or `json` logs.
    pub log_format: LogFormat,
    /// Settings for tenants created from now on (and the `default` tenant on
    /// first start).
    pub tenant_defaults: TenantConfig,
    /// Plugin engine limits (wasmtime).
    pub plugins: EngineLimits,
    /// Origins whose browser pages may call the HTTP API and use socket.io
    /// long-polling (CORS): `scheme://host[:port]` entries, or `*` for any. Empty: no CORS
    /// headers at all, so only pages served by hookwire itself (`/demo`) may
    /// read the API's answers in a browser. Credentials (cookies) are never
    /// allowed: keys travel in `Authorization`. A list in TOML; a
    /// comma-separated string also works (`HOOKWIRE_CORS_ALLOWED_ORIGINS`).
    #[serde(deserialize_with = "list_or_commas")]
    pub cors_allowed_origins: Vec<String>,
    /// PEM certificate chain (leaf first) to serve HTTPS and WSS on `listen`
    /// without a proxy; set with `tls_key`, or neither (plain HTTP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// A list, or one string of comma-separated entries (what an environment
/// variable can hold); blank entries are dropped.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Commas(String),
    }
    let entries = match Form::deserialize(d)? {
        Form::List(v) => v,
        Form::Commas(s) => s.split(',').map(str::to_string).collect(),
    };
    Ok(entries
        .into_iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect())
}

/// Where a node keeps its durable state (tenants, users, room logs, push
/// queues, plugins). The cluster bus is Redis whenever `redis` is set,
/// whatever the store.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A file under `data_dir`: one node's own.
    Embedded,
    /// The Redis of `redis`, shared by the cluster.
    Redis,
    /// The MongoDB of `mongo`, shared by the cluster.
    Mongo,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Redis => "redis",
            StoreKind::Mongo => "mongo",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:3000".parse().unwrap(),
            data_dir: PathBuf::from("./data"),
            store: None,
            redis: None,
            mongo: None,
            admin_key: None,
            default_api_key: None,
            metrics_key: None,
            max_payload_bytes: 4 * 1024 * 1024,
            commit_delay_us: 5_000,
            ack_timeout_ms: 10_000,
            log_format: LogFormat::Pretty,
            tenant_defaults: TenantConfig::default(),
            plugins: EngineLimits::default(),
            cors_allowed_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Flags of `hookwire serve`. Every flag also reads `HOOKWIRE_<NAME>`.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ServeArgs {
    /// TOML config file (see README, "Configuration").
    #[arg(long, short = 'c', env = "HOOKWIRE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on for socket.io and HTTP [default: 0.0.0.0:3000].
    #[arg(long, env = "HOOKWIRE_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded store [default: ./data].
    #[arg(long, env = "HOOKWIRE_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Where durable state lives: embedded (a file under --data-dir, this node's own), redis
    /// (the --redis server) or mongo (the --mongo server) [default: mongo when --mongo is
    /// set, else redis when --redis is set, else embedded].
    #[arg(long, env = "HOOKWIRE_STORE", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreKind>,
    /// Redis URL (e.g. redis://127.0.0.1:6379/0): the cluster bus with the other nodes on it
    /// (rooms, presence, announcements), and the store when --store is redis.
    #[arg(long, env = "HOOKWIRE_REDIS", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// MongoDB URL (e.g. mongodb://127.0.0.1:27017/hookwire): the store when --store is mongo.
    #[arg(long, env = "HOOKWIRE_MONGO", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongo: Option<String>,
    /// Admin key for the admin REST API (generated on first start if unset).
    #[arg(long, env = "HOOKWIRE_ADMIN_KEY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<String>,
    /// API key of the `default` tenant, used when it is first created.
    #[arg(long, env = "HOOKWIRE_DEFAULT_API_KEY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_api_key: Option<String>,
    /// Key that `/metrics` requires as `Authorization: Bearer <key>` (the admin key works too);
    /// unset, `/metrics` is open.
    #[arg(long, env = "HOOKWIRE_METRICS_KEY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_key: Option<String>,
    /// Largest Engine.IO packet in bytes [default: 4194304].
    #[arg(long, env = "HOOKWIRE_MAX_PAYLOAD_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_payload_bytes: Option<u64>,
    /// Group commit under steady load: wait this long (µs) after a commit to gather the next batch; an idle store commits at once [default: 5000].
    #[arg(long, env = "HOOKWIRE_COMMIT_DELAY_US")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_delay_us: Option<u64>,
    /// Log format [default: pretty].
    #[arg(long, env = "HOOKWIRE_LOG_FORMAT", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Origins whose browser pages may call the HTTP API and poll socket.io (CORS), comma-separated
    /// (https://app.example.com,...), or * [default: none].
    #[arg(long, env = "HOOKWIRE_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors_allowed_origins: Option<Vec<String>>,
    /// PEM certificate chain: serve HTTPS and WSS on --listen (needs --tls-key).
    #[arg(long, env = "HOOKWIRE_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HOOKWIRE_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

/// Top-level settings that `HOOKWIRE_<NAME>` variables may set.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "store",
    "redis",
    "mongo",
    "admin_key",
    "default_api_key",
    "metrics_key",
    "max_payload_bytes",
    "commit_delay_us",
    "ack_timeout_ms",
    "log_format",
    "tenant_defaults",
    "plugins",
    "cors_allowed_origins",
    "tls_cert",
    "tls_key",
];

impl Config {
    /// Merges defaults, the TOML file, `HOOKWIRE_*` variables and flags.
    // figment's error is large, but it is made once, at start, and printed.
    #[allow(clippy::result_large_err)]
    pub fn load(args: &ServeArgs) -> Result<Config, figment::Error> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &args.config {
            fig = fig.merge(Toml::file_exact(path));
        }
        // Nested keys use `__`: HOOKWIRE_TENANT_DEFAULTS__AUTH_TIMEOUT_MS=500.
        // Only settings are read: other HOOKWIRE_* variables (the CLI's
        // HOOKWIRE_SERVER, test harness flags) are not config errors.
        fig = fig.merge(
            Env::prefixed("HOOKWIRE_")
                .filter(|k| {
                    let top = k.as_str().split("__").next().unwrap_or_default();
                    ENV_KEYS.iter().any(|known| top.eq_ignore_ascii_case(known))
                })
                .split("__"),
        );
        fig.merge(Serialized::defaults(args)).extract()
    }

    /// Refuses a tenant config this node cannot serve: on top of the
    /// tenant's own rules, a `msg` of `max_msg_bytes` must fit one
    /// socket.io packet (`max_payload_bytes`), or it would close the
    /// sender's connection instead of being refused.
    pub fn tenant_fits(&self, cfg: &TenantConfig) -> Result<(), String> {
        cfg.validate()?;
        let room = self.max_payload_bytes.saturating_sub(MSG_PACKET_OVERHEAD);
        if cfg.max_msg_bytes as u64 > room {
            return Err(format!(
                "max_msg_bytes must be at most {room} on this node (its max_payload_bytes {} less {MSG_PACKET_OVERHEAD} for the packet around the msg), got {}",
                self.max_payload_bytes, cfg.max_msg_bytes
            ));
        }
        Ok(())
    }

    /// The store this node uses: `store` when set, else MongoDB when
    /// `mongo` is given, else Redis when `redis` is, else the embedded one.
    pub fn store_kind(&self) -> StoreKind {
        match (self.store, &self.mongo, &self.redis) {
            (Some(kind), _, _) => kind,
            (None, Some(_), _) => StoreKind::Mongo,
            (None, None, Some(_)) => StoreKind::Redis,
            (None, None, None) => StoreKind::Embedded,
        }
    }

    /// A `store` that names a server without its URL, or an embedded store
    /// under a cluster bus (every node would keep tenants, users and room
    /// logs of its own).
    fn store_error(&self) -> Option<&'static str> {
        match (self.store, &self.mongo, &self.redis) {
            (Some(StoreKind::Redis), _, None) => {
                Some("store = redis needs the Redis URL: set redis (--redis, HOOKWIRE_REDIS)")
            }
            (Some(StoreKind::Mongo), None, _) => {
                Some("store = mongo needs the MongoDB URL: set mongo (--mongo, HOOKWIRE_MONGO)")
            }
            (Some(StoreKind::Embedded), _, Some(_)) => Some(
                "store = embedded cannot serve a cluster: with redis set every node shares its state, so use store = redis or store = mongo (or leave redis unset for one node)",
            ),
            (Some(StoreKind::Embedded), Some(_), None) => {
                Some("store = embedded and mongo are both set: mongo would be unused; drop one")
            }
            _ => None,
        }
    }

    /// Refuses settings the node cannot serve with, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = self.store_error() {
            return Err(e.into());
        }
        // The defaults' own rules only: a node with a small max_payload_bytes
        // keeps starting with the default max_msg_bytes; a tenant that asks
        // for a size the node cannot carry is refused by the tenants API.
        self.tenant_defaults
            .validate()
            .map_err(|e| format!("invalid [tenant_defaults]: {e}"))?;
        for entry in &self.cors_allowed_origins {
            if entry != "*" && crate::tenant::normalize_origin(entry).is_none() {
                return Err(format!(
                    "invalid cors_allowed_origins: {entry:?} is not an origin: expected scheme://host[:port] without a path (e.g. https://app.example.com), or *"
                ));
            }
        }
        if let Some(e) = self.tls_pair_error() {
            return Err(e.into());
        }
        Ok(())
    }

    /// `tls_cert` and `tls_key` go together.
    pub fn tls_pair_error(&self) -> Option<&'static str> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                Some("tls_cert is set but tls_key is not: set both (HTTPS) or neither")
            }
            (None, Some(_)) => {
                Some("tls_key is set but tls_cert is not: set both (HTTPS) or neither")
            }
            _ => None,
        }
    }
}
