//! Limits and permissions as data: the engine-wide [`EngineLimits`] (node
//! config, `[plugins]` in the TOML file) and the per-plugin
//! [`PluginManifest`] (stored with every plugin version). Every default the
//! runtime uses is written here and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Engine-wide plugin limits. A plugin's manifest may lower them, never
/// raise them above the `max_*` ceilings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineLimits {
    /// Hook deadline when the manifest does not set one. It is a budget of
    /// guest CPU time (the thread's CPU clock, read at epoch ticks; see
    /// `GuestClock` in host.rs): time in host calls (kv, http-fetch, which
    /// have their own timeouts), time parked after a yield and time the OS
    /// thread was preempted do not count, so a busy node does not fail
    /// healthy plugins. 10 ms is ~140 times word-filter's ~70 µs and leaves
    /// room for large (500 KB) messages and fresh instances; it stays 10
    /// rather than going back to 5 because the first stretch of a call (up to
    /// one tick) and any stretch whose CPU time cannot be read are charged
    /// as wall time.
    pub default_timeout_ms: u64,
    /// Wall-clock ceiling of a hook, the safety net behind the CPU budget
    /// (a guest that is starved or sleeps in WASI uses little CPU): guest
    /// wall time (host calls and yields excluded) may not exceed
    /// `max(timeout × timeout_wall_factor, timeout + timeout_wall_slack_ms)`,
    /// 110 ms for the 10 ms default. The slack is 100 ms, not 50: with ~10
    /// runnable threads per core, a word-filter call (~70 µs of CPU) was
    /// refused by a 60 ms ceiling 3 to 8 times in 8,000 (preempted that
    /// long before its first tick), by 110 ms never in 16,000 (a wall-clock
    /// 10 ms deadline: 57 to 233). The same ceiling also bounds the whole
    /// call in plain wall time from its start, host calls included, so a
    /// guest that waits in the host (a WASI sleep, kv, `http-fetch`) ends
    /// there too and its instance is dropped: no call holds an instance
    /// longer than its ceiling.
    pub timeout_wall_factor: u32,
    /// See `timeout_wall_factor`.
    pub timeout_wall_slack_ms: u64,
    /// Guest CPU time a fresh instance may use to start (its start
    /// functions; a JavaScript or Python component's interpreter), apart
    /// from the hook's own budget: a 10 ms hook deadline then means 10 ms
    /// for the hook whatever the toolchain. The hook's `timeout_ms` applies
    /// when it is larger. Its wall ceiling follows the same rule as a call's.
    pub instantiate_timeout_ms: u64,
    /// Largest deadline a manifest may ask for.
    pub max_timeout_ms: u64,
    /// Linear memory per instance when the manifest does not set one.
    pub default_memory_bytes: u64,
    /// Largest linear memory any instance may have (also the pooling
    /// allocator's slot size).
    pub max_memory_bytes: u64,
    /// Fuel per hook call. `None` compiles without fuel metering (faster);
    /// `Some` turns it on for the whole engine and lets manifests set theirs.
    pub fuel: Option<u64>,
    /// Largest component accepted at upload, in bytes.
    pub max_component_bytes: u64,
    /// Largest string a plugin may return (a JSON document, a reason), in
    /// bytes; above it the result is `BadOutput`.
    pub max_output_bytes: usize,
    /// Hook calls (= live instances in use) at once on this node; further
    /// calls wait. Also sizes the pooling allocator.
    pub max_concurrent_instances: u32,
    /// Hook calls at once of one tenant (its share of
    /// `max_concurrent_instances`): a tenant whose plugins are slow waits
    /// for its own permits, and other tenants' calls find theirs free.
    pub max_instances_per_tenant: u32,
    /// Idle warm instances kept for reuse, summed over all plugins of all
    /// tenants. 0 means a fresh instance for every call.
    pub max_idle_instances: u32,
    /// Idle warm instances kept per plugin (within `max_idle_instances`).
    pub max_idle_per_plugin: u32,
    /// Epoch ticker period: deadlines are checked with this granularity.
    pub epoch_tick_us: u64,
    /// Compiled components are cached here, keyed by content hash and engine
    /// settings, so a restart does not recompile. `None`: `./data/plugin-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Timeout of one `http-fetch` when the manifest does not set one.
    pub default_http_timeout_ms: u64,
    /// Largest `http-fetch` response body handed to a plugin.
    pub max_http_response_bytes: usize,
    /// How long compiling an uploaded component may take before the upload
    /// is refused. Compiles run outside the admin lock, so other admin calls
    /// keep answering meanwhile; the compiler thread itself cannot be
    /// stopped and finishes in the background.
    pub max_compile_ms: u64,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            default_timeout_ms: 10,
            timeout_wall_factor: 4,
            timeout_wall_slack_ms: 100,
            instantiate_timeout_ms: 100,
            max_timeout_ms: 10_000,
            default_memory_bytes: 32 << 20,
            max_memory_bytes: 128 << 20,
            fuel: None,
            max_component_bytes: 64 << 20,
            max_output_bytes: 1 << 20,
            max_concurrent_instances: 64,
            max_instances_per_tenant: 16,
            max_idle_instances: 256,
            max_idle_per_plugin: 8,
            epoch_tick_us: 1000,
            cache_dir: None,
            default_http_timeout_ms: 2000,
            max_http_response_bytes: 1 << 20,
            max_compile_ms: 120_000,
        }
    }
}

impl EngineLimits {
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data/plugin-cache"))
    }
    /// A tenant's permits: its share, never more than the node's.
    pub fn tenant_instances(&self) -> usize {
        self.max_instances_per_tenant
            .clamp(1, self.max_concurrent_instances.max(1)) as usize
    }
    pub fn epoch_tick(&self) -> Duration {
        Duration::from_micros(self.epoch_tick_us.max(100))
    }
}

/// Per-plugin limits, permissions and config, stored as
/// `PluginRecord.manifest`. Missing fields take the engine defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PluginManifest {
    /// Hook deadline (guest CPU time), at most `EngineLimits::max_timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// Linear memory cap per instance, at most `EngineLimits::max_memory_bytes`.
    pub memory_bytes: Option<u64>,
    /// Fuel per call; only when the engine meters fuel.
    pub fuel: Option<u64>,
    /// `Some(true)`: a fault of this plugin is counted and logged, then the
    /// chain goes on as if the plugin had passed (Defer / Allow / Pass /
    /// proposed mode / rooms unchanged), whatever the tenant's
    /// `plugin_fail_open`. `None` or `Some(false)`: the fault reaches the
    /// pipeline, which applies the tenant setting.
    pub fail_open: Option<bool>,
    /// Hosts `http-fetch` may reach: `example.com` (any port) or
    /// `example.com:8443`. Empty: no outbound HTTP at all.
    pub allowed_hosts: Vec<String>,
    /// Timeout of one `http-fetch`.
    pub http_timeout_ms: Option<u64>,
    /// The plugin's own config, returned by the `config` import.
    pub config: Value,
}

/// Why a manifest is refused, naming the field.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ManifestError {
    /// It asks for more than the engine allows.
    #[error("manifest {field} = {value} is above the engine limit {max}")]
    AboveLimit {
        field: &'static str,
        value: u64,
        max: u64,
    },
    /// A value no plugin could run with.
    #[error("manifest {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The smallest linear memory a component can run in (one wasm page).
const MIN_MEMORY_BYTES: u64 = 64 << 10;

impl PluginManifest {
    /// Parses a stored manifest (`null` = all defaults).
    pub fn from_value(v: &Value) -> Result<Self, serde_json::Error> {
        if v.is_null() {
            Ok(PluginManifest::default())
        } else {
            serde_json::from_value(v.clone())
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Refuses a manifest no plugin could run with, or that asks for more
    /// than the engine allows.
    pub fn check(&self, limits: &EngineLimits) -> Result<(), ManifestError> {
        let invalid = |field, reason: &str| {
            Err(ManifestError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        if self.timeout_ms == Some(0) {
            return invalid(
                "timeout_ms",
                "must be at least 1 (leave it out for the node's default)",
            );
        }
        if self.http_timeout_ms == Some(0) {
            return invalid(
                "http_timeout_ms",
                "must be at least 1 (leave it out for the node's default)",
            );
        }
        if self.fuel == Some(0) {
            return invalid(
                "fuel",
                "must be at least 1 (leave it out for the node's default)",
            );
        }
        if let Some(m) = self.memory_bytes
            && m < MIN_MEMORY_BYTES
        {
            return invalid(
                "memory_bytes",
                &format!("{m} is below one wasm page ({MIN_MEMORY_BYTES} bytes)"),
            );
        }
        for h in &self.allowed_hosts {
            if let Some(reason) = host_entry_problem(h) {
                return invalid("allowed_hosts", &format!("{h:?}: {reason}"));
            }
        }
        if !(self.config.is_null() || self.config.is_object()) {
            return invalid("config", "must be a JSON object");
        }
        let over = |field, value: Option<u64>, max: u64| match value {
            Some(v) if v > max => Err(ManifestError::AboveLimit {
                field,
                value: v,
                max,
            }),
            _ => Ok(()),
        };
        over("timeout_ms", self.timeout_ms, limits.max_timeout_ms)?;
        over("memory_bytes", self.memory_bytes, limits.max_memory_bytes)?;
        over(
            "http_timeout_ms",
            self.http_timeout_ms,
            limits.max_timeout_ms,
        )?;
        Ok(())
    }

    /// The limits one call of this plugin runs with.
    pub fn resolve(&self, limits: &EngineLimits) -> CallLimits {
        let timeout = Duration::from_millis(
            self.timeout_ms
                .unwrap_or(limits.default_timeout_ms)
                .min(limits.max_timeout_ms),
        );
        let wall = |t: Duration| {
            t.saturating_mul(limits.timeout_wall_factor)
                .max(t + Duration::from_millis(limits.timeout_wall_slack_ms))
        };
        let instantiate = timeout.max(Duration::from_millis(limits.instantiate_timeout_ms));
        CallLimits {
            timeout,
            wall_ceiling: wall(timeout),
            instantiate_timeout: instantiate,
            instantiate_wall_ceiling: wall(instantiate),
            epoch_tick: limits.epoch_tick(),
            memory_bytes: self
                .memory_bytes
                .unwrap_or(limits.default_memory_bytes)
                .min(limits.max_memory_bytes) as usize,
            fuel: limits.fuel.map(|engine| self.fuel.unwrap_or(engine)),
            http_timeout: Duration::from_millis(
                self.http_timeout_ms
                    .unwrap_or(limits.default_http_timeout_ms)
                    .min(limits.max_timeout_ms),
            ),
            max_output_bytes: limits.max_output_bytes,
            max_http_response_bytes: limits.max_http_response_bytes,
        }
    }

    /// The config as the `config` import returns it (`{}` when unset).
    pub fn config_json(&self) -> String {
        if self.config.is_null() {
            "{}".to_string()
        } else {
            self.config.to_string()
        }
    }
}

/// Why an `allowed_hosts` entry can never match, if it cannot: entries are
/// `host` or `host:port`, never URLs.
fn host_entry_problem(entry: &str) -> Option<&'static str> {
    if entry.trim().is_empty() {
        return Some("empty");
    }
    if entry.contains("://") {
        return Some("a host or host:port, not a URL (leave out the scheme)");
    }
    if entry.contains('/') || entry.contains('?') || entry.contains('@') {
        return Some("a host or host:port, without a path, query or user");
    }
    if entry.chars().any(char::is_whitespace) {
        return Some("contains whitespace");
    }
    None
}

/// Effective limits of one plugin, resolved once at load.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLimits {
    /// Guest CPU time a call may use.
    pub timeout: Duration,
    /// Guest wall time a call may take (see `EngineLimits::timeout_wall_factor`).
    pub wall_ceiling: Duration,
    /// Guest CPU time a fresh instance may take to start, before the call's
    /// own budget begins (see `EngineLimits::instantiate_timeout_ms`).
    pub instantiate_timeout: Duration,
    /// The wall ceiling of starting a fresh instance.
    pub instantiate_wall_ceiling: Duration,
    /// The engine's epoch tick: the most guest time between two deadline
    /// checks.
    pub epoch_tick: Duration,
    pub memory_bytes: usize,
    pub fuel: Option<u64>,
    pub http_timeout: Duration,
    pub max_output_bytes: usize,
    pub max_http_response_bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_rejects_unknown_fields_and_over_limit() {
        assert!(serde_json::from_str::<PluginManifest>(r#"{"timeout":5}"#).is_err());
        let m: PluginManifest = serde_json::from_str(r#"{"timeout_ms":50000}"#).unwrap();
        assert!(matches!(
            m.check(&EngineLimits::default()),
            Err(ManifestError::AboveLimit {
                field: "timeout_ms",
                value: 50000,
                max: 10000
            })
        ));
        let m = PluginManifest::from_value(&Value::Null).unwrap();
        assert_eq!(m.config_json(), "{}");
        let call = m.resolve(&EngineLimits::default());
        assert_eq!(call.timeout, Duration::from_millis(10));
        assert_eq!(call.wall_ceiling, Duration::from_millis(110));
        let m: PluginManifest = serde_json::from_str(r#"{"timeout_ms":2000}"#).unwrap();
        let call = m.resolve(&EngineLimits::default());
        assert_eq!(call.wall_ceiling, Duration::from_millis(8000));
    }

    #[test]
    fn manifest_values_no_plugin_could_use_are_refused_by_field() {
        let refused = |json: &str| -> String {
            let m: PluginManifest = serde_json::from_str(json).unwrap();
            m.check(&EngineLimits::default()).unwrap_err().to_string()
        };
        assert_eq!(
            refused(r#"{"allowed_hosts":["https://auth.example.com"]}"#),
            "manifest allowed_hosts: \"https://auth.example.com\": a host or host:port, not a URL (leave out the scheme)"
        );
        assert!(refused(r#"{"allowed_hosts":["a.example/x"]}"#).contains("without a path"));
        assert!(
            refused(r#"{"timeout_ms":0}"#).starts_with("manifest timeout_ms: must be at least 1")
        );
        assert!(refused(r#"{"memory_bytes":1000}"#).contains("below one wasm page"));
        assert_eq!(
            refused(r#"{"config":[1]}"#),
            "manifest config: must be a JSON object"
        );
        let ok: PluginManifest = serde_json::from_str(
            r#"{"timeout_ms":50,"memory_bytes":1048576,"allowed_hosts":["auth.example.com","127.0.0.1:8080"],"config":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(ok.check(&EngineLimits::default()), Ok(()));
    }
}
