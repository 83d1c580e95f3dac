//! What one plugin instance's store holds, and the host imports it may call.
//!
//! Everything is scoped when the store is built: the tenant, the plugin, its
//! manifest. A plugin cannot name another tenant, so it cannot reach one.
//!
//! kv keys are stored as `<plugin>/<key>` in the tenant's kv space: two
//! plugins of one tenant (say `rate-limit` and a custom counter) cannot
//! clobber each other's keys by choosing the same name, and deleting a
//! plugin's data is a prefix scan.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{HostImports, HttpRequest, HttpResponse, Level};
use super::limits::CallLimits;
use crate::store::Store;

/// Largest `random-bytes` request: randomness is for nonces and ids, not bulk.
const MAX_RANDOM_BYTES: u32 = 64 * 1024;

/// The identity and permissions of a loaded plugin, shared by its instances.
pub struct PluginScope {
    pub tenant: Arc<str>,
    pub plugin: Arc<str>,
    pub version: u64,
    pub config_json: Arc<str>,
    pub allowed_hosts: Vec<String>,
    pub limits: CallLimits,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
}

/// `Store<HostState>` data of one instance.
pub struct HostState {
    pub scope: Arc<PluginScope>,
    pub limiter: Limiter,
    /// Set by the epoch callback when the deadline passed (→ `Timeout`).
    pub timed_out: bool,
    /// When the current call started, and how long it spent in host calls
    /// (that time does not count against the guest's deadline).
    pub call_started: Instant,
    pub host_time: Duration,
    /// Nanoseconds the call spent yielded to the executor (not guest time).
    pub yielded: Arc<AtomicU64>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub fn new(scope: Arc<PluginScope>) -> Self {
        // Rust wasm32-wasip2 components import wasi:cli & co. even when they
        // never use them: they get a context with no capabilities at all (no
        // preopens, env, args, network; stdio closed or discarded).
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limiter = Limiter::new(scope.limits.memory_bytes, scope.clone());
        HostState {
            scope,
            limiter,
            timed_out: false,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
            yielded: Arc::new(AtomicU64::new(0)),
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Resets the per-call flags before a hook call that started at
    /// `started`.
    pub fn begin_call(&mut self, started: Instant) {
        self.timed_out = false;
        self.limiter.hit = false;
        self.call_started = started;
        self.host_time = Duration::ZERO;
        self.yielded.store(0, Ordering::Relaxed);
    }

    /// Has the guest used up its deadline (host-call time excluded)?
    pub fn guest_time_left(&self) -> Option<Duration> {
        let yielded = Duration::from_nanos(self.yielded.load(Ordering::Relaxed));
        let guest = self
            .call_started
            .elapsed()
            .saturating_sub(self.host_time)
            .saturating_sub(yielded);
        self.scope
            .limits
            .timeout
            .checked_sub(guest)
            .filter(|d| !d.is_zero())
    }

    fn tag(&self) -> (&str, &str, u64) {
        (&self.scope.tenant, &self.scope.plugin, self.scope.version)
    }

    fn kv_key(&self, key: &str) -> String {
        format!("{}/{}", self.scope.plugin, key)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Memory and table caps of one instance; remembers (and logs) when a
/// growth was refused so the fault maps to `OutOfMemory`, not a plain trap.
pub struct Limiter {
    inner: StoreLimits,
    max_memory: usize,
    pub hit: bool,
    scope: Arc<PluginScope>,
}

impl Limiter {
    fn new(max_memory: usize, scope: Arc<PluginScope>) -> Self {
        let inner = StoreLimitsBuilder::new()
            .memory_size(max_memory)
            // A component of a Rust plugin has a handful of core instances,
            // memories and tables; far more means something hostile.
            .instances(64)
            .memories(16)
            .tables(64)
            .table_elements(100_000)
            .build();
        Limiter {
            inner,
            max_memory,
            hit: false,
            scope,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if !ok {
            if !self.hit {
                tracing::warn!(
                    tenant = %self.scope.tenant,
                    plugin = %self.scope.plugin,
                    version = self.scope.version,
                    current,
                    desired,
                    limit = self.max_memory,
                    "plugin memory limit hit"
                );
            }
            self.hit = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.table_growing(current, desired, maximum)?;
        if !ok {
            tracing::warn!(tenant = %self.scope.tenant, plugin = %self.scope.plugin, current, desired, "plugin table limit hit");
            self.hit = true;
        }
        Ok(ok)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Does `url`'s host (and port) match an allowlist entry? An entry is
/// `host` (any port) or `host:port`; comparison ignores ASCII case.
pub fn host_allowed(url: &reqwest::Url, allowed: &[String]) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default();
    allowed.iter().any(|entry| {
        let (h, p) = split_host_port(entry.trim());
        h.eq_ignore_ascii_case(host) && p.is_none_or(|p| Some(p) == port)
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → (host, port).
fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match entry.split_once(':') {
        // More than one ':' is a bare IPv6 address, not host:port.
        Some((h, p)) if !p.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

impl HostImports for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let (tenant, plugin, version) = self.tag();
        // Bounded: a plugin must not flood the node's logs with megabytes.
        let message: String = message.chars().take(4096).collect();
        match level {
            Level::Trace => {
                tracing::trace!(target: "hookwire::plugin", tenant, plugin, version, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "hookwire::plugin", tenant, plugin, version, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "hookwire::plugin", tenant, plugin, version, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "hookwire::plugin", tenant, plugin, version, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "hookwire::plugin", tenant, plugin, version, "{message}")
            }
        }
        Ok(())
    }

    async fn config(&mut self) -> wasmtime::Result<String> {
        Ok(self.scope.config_json.to_string())
    }

    async fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let started = Instant::now();
        let r = self
            .scope
            .store
            .kv_get(&self.scope.tenant, &self.kv_key(&key))
            .await;
        self.host_time += started.elapsed();
        r.map_err(|e| wasmtime::Error::msg(format!("kv-get failed: {e}")))
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> wasmtime::Result<()> {
        let started = Instant::now();
        let r = self
            .scope
            .store
            .kv_set(&self.scope.tenant, &self.kv_key(&key), &value, ttl_ms)
            .await;
        self.host_time += started.elapsed();
        r.map_err(|e| wasmtime::Error::msg(format!("kv-set failed: {e}")))
    }

    async fn kv_incr(&mut self, key: String, delta: i64, ttl_ms: u64) -> wasmtime::Result<i64> {
        let started = Instant::now();
        let r = self
            .scope
            .store
            .kv_incr(&self.scope.tenant, &self.kv_key(&key), delta, ttl_ms)
            .await;
        self.host_time += started.elapsed();
        r.map_err(|e| wasmtime::Error::msg(format!("kv-incr failed: {e}")))
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(crate::server::now_ms())
    }

    async fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            return Err(wasmtime::Error::msg(format!(
                "random-bytes: {len} bytes asked, at most {MAX_RANDOM_BYTES}"
            )));
        }
        let mut buf = vec![0u8; len as usize];
        rand::Rng::fill(&mut rand::rng(), &mut buf[..]);
        Ok(buf)
    }

    async fn http_fetch(
        &mut self,
        req: HttpRequest,
    ) -> wasmtime::Result<Result<HttpResponse, String>> {
        let started = Instant::now();
        let r = fetch(self.scope.clone(), req).await;
        self.host_time += started.elapsed();
        if let Err(e) = &r {
            let (tenant, plugin, version) = self.tag();
            tracing::debug!(tenant, plugin, version, error = %e, "plugin http-fetch refused or failed");
        }
        Ok(r)
    }
}

/// Takes the scope by value: `HostState` is not `Sync`, so no borrow of it
/// may live across an await.
async fn fetch(scope: Arc<PluginScope>, req: HttpRequest) -> Result<HttpResponse, String> {
    let url = reqwest::Url::parse(&req.url).map_err(|e| format!("invalid url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {} is not allowed", url.scheme()));
    }
    if !host_allowed(&url, &scope.allowed_hosts) {
        return Err(format!(
            "host {} is not on this plugin's allowlist",
            url.host_str().unwrap_or("")
        ));
    }
    let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid method {}", req.method))?;
    let mut builder = scope
        .http
        .request(method, url)
        .timeout(scope.limits.http_timeout);
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if let Some(body) = req.body {
        builder = builder.body(body);
    }
    let mut resp = builder
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    let max = scope.limits.max_http_response_bytes;
    let mut body = Vec::new();
    // Read in chunks so a huge response is cut off, not buffered whole.
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the response failed: {e}"))?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("response body is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn allowlist_matches_host_and_port() {
        let allowed = vec!["auth.example.com".to_string(), "127.0.0.1:8080".to_string()];
        let ok = |u: &str| host_allowed(&reqwest::Url::parse(u).unwrap(), &allowed);
        assert!(ok("https://auth.example.com/rooms"));
        assert!(ok("http://AUTH.example.com:81/x"));
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(!ok("http://127.0.0.1:8081/x"));
        assert!(!ok("http://evil.com/?auth.example.com"));
        assert!(!ok("http://auth.example.com.evil.com/"));
        assert!(!host_allowed(
            &reqwest::Url::parse("http://a.com").unwrap(),
            &[]
        ));
    }
}
