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
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{HostImports, HttpRequest, HttpResponse, Level};
use super::limits::CallLimits;

/// Largest `random-bytes` request: randomness is for nonces and ids, not bulk.
const MAX_RANDOM_BYTES: u32 = 64 * 1024;

/// The identity and permissions of a loaded plugin, shared by its instances.
pub struct PluginScope {
    pub tenant: Arc<str>,
    /// The tenant's instance permits (see `EngineLimits::max_instances_per_tenant`).
    pub tenant_calls: Arc<tokio::sync::Semaphore>,
    pub plugin: Arc<str>,
    pub version: u64,
    pub config_json: Arc<str>,
    pub allowed_hosts: Vec<String>,
    pub limits: CallLimits,
    /// The plugin kv (in memory over a store of this node's alone).
    pub kv: Arc<crate::kv::PluginKv>,
    pub http: reqwest::Client,
}

/// Where a plugin's kv keys start in its tenant's kv: each plugin sees its
/// own keys only.
pub fn kv_prefix(plugin: &str) -> String {
    format!("{plugin}/")
}

/// `Store<HostState>` data of one instance.
pub struct HostState {
    pub scope: Arc<PluginScope>,
    pub limiter: Limiter,
    /// Set by the epoch callback when the deadline passed (→ `Timeout`).
    pub timed_out: bool,
    /// The current call's guest time. Shared with the future the epoch
    /// callback yields on, which marks where the guest resumes.
    pub clock: Arc<Mutex<GuestClock>>,
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
        let clock = Arc::new(Mutex::new(GuestClock::new(&scope.limits)));
        HostState {
            scope,
            limiter,
            timed_out: false,
            clock,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Resets the per-call flags before a hook call that started at
    /// `started`.
    pub fn begin_call(&mut self, started: Instant) {
        self.timed_out = false;
        self.limiter.hit = false;
        self.clock.lock().begin(started);
    }

    /// After [`begin_call`](Self::begin_call), before a fresh instance is
    /// made: its start runs under the instantiation budget; the next
    /// `begin_call` starts the hook's own.
    pub fn begin_instantiate(&mut self, started: Instant) {
        self.clock.lock().begin_instantiate(started);
    }

    /// Before an async host call (kv, http-fetch): the guest stops running
    /// here, and may resume on another thread.
    fn host_call_starts(&self) {
        self.clock.lock().suspend(Instant::now(), CpuReading::now);
    }

    /// After an async host call: the guest runs again, on this thread.
    fn host_call_ends(&self) {
        self.clock.lock().resume(Instant::now(), CpuReading::now());
    }

    fn tag(&self) -> (&str, &str, u64) {
        (&self.scope.tenant, &self.scope.plugin, self.scope.version)
    }

    fn kv_key(&self, key: &str) -> String {
        format!("{}{key}", kv_prefix(&self.scope.plugin))
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

/// One reading of the running OS thread's CPU clock
/// (`CLOCK_THREAD_CPUTIME_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuReading {
    pub thread: ThreadId,
    pub time: Duration,
}

impl CpuReading {
    /// Reads the clock: a real syscall (vDSO does not serve per-thread CPU
    /// clocks), so it is read at epoch ticks and around async host calls,
    /// never on every hook call.
    pub fn now() -> Self {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        CpuReading {
            thread: std::thread::current().id(),
            time: Duration::new(
                u64::try_from(t.tv_sec).unwrap_or(0),
                u32::try_from(t.tv_nsec).unwrap_or(0),
            ),
        }
    }
}

/// Where the guest of the current call is.
#[derive(Debug, Clone, Copy)]
enum Stretch {
    /// Running since guest wall time `wall`; `cpu` is the thread's CPU clock
    /// there, when it was read.
    Running {
        wall: Duration,
        cpu: Option<CpuReading>,
    },
    /// Suspended (async host call, or yielded at a tick) since `at`, wall
    /// time since the call started.
    Suspended { at: Duration },
}

/// The guest-time accounting of one hook call, against its CPU budget
/// (`CallLimits::timeout`) and wall-clock ceiling
/// (`CallLimits::wall_ceiling`). Pure: the caller passes the readings.
///
/// Why this shape: the budget must count the CPU the guest used, not time
/// its thread sat preempted on a busy node, but a warm call (~1.5 µs) must
/// not pay for a CPU-clock syscall. So the clock is read only where the
/// runtime already stops: at an epoch tick (the deadline callback, every
/// `epoch_tick` while guest code runs) and around async host calls. A call
/// is cut into stretches of uninterrupted guest execution on one thread;
/// each is charged when it ends:
/// - the thread's CPU delta, if the clock was read at both ends on the same
///   thread (at most the stretch's wall time). An async call's fiber can
///   resume on another tokio worker after a yield or a host call, and a
///   CPU delta across two threads means nothing: hence a new baseline at
///   every resume. (A suspension we do not see that resumes on the same
///   thread, such as a WASI poll, charges what other tasks ran there:
///   too much, never too little.)
/// - otherwise (the first stretch of a call, which starts unread to keep
///   the warm path free of syscalls; or a stretch that moved threads
///   through a suspension we do not see) its wall time, at most one tick:
///   the callback fires at the first epoch tick after the stretch began,
///   so the guest cannot have run longer than that in it (unless the
///   ticker itself is starved, which the ceiling covers).
///
/// Wall time (since the call started, less host calls and time parked after
/// a yield) is kept too: past `wall_ceiling` the call times out whatever its
/// CPU time, so a starved or sleeping guest cannot hold an instance forever.
#[derive(Debug, Clone)]
pub struct GuestClock {
    budget: Duration,
    ceiling: Duration,
    /// The limits of a call, and of starting a fresh instance.
    call: (Duration, Duration),
    start: (Duration, Duration),
    tick: Duration,
    started: Instant,
    /// Wall time of the call not spent in guest code.
    outside: Duration,
    /// Guest time charged for the stretches that ended.
    charged: Duration,
    stretch: Stretch,
}

impl GuestClock {
    pub fn new(limits: &CallLimits) -> Self {
        GuestClock {
            budget: limits.timeout,
            ceiling: limits.wall_ceiling,
            call: (limits.timeout, limits.wall_ceiling),
            start: (limits.instantiate_timeout, limits.instantiate_wall_ceiling),
            tick: limits.epoch_tick,
            started: Instant::now(),
            outside: Duration::ZERO,
            charged: Duration::ZERO,
            stretch: Stretch::Running {
                wall: Duration::ZERO,
                cpu: None,
            },
        }
    }

    /// A call starts at `started` (no clock read: see above).
    pub fn begin(&mut self, started: Instant) {
        (self.budget, self.ceiling) = self.call;
        self.restart(started);
    }

    /// A fresh instance starts at `started`, under its own budget.
    pub fn begin_instantiate(&mut self, started: Instant) {
        (self.budget, self.ceiling) = self.start;
        self.restart(started);
    }

    fn restart(&mut self, started: Instant) {
        self.started = started;
        self.outside = Duration::ZERO;
        self.charged = Duration::ZERO;
        self.stretch = Stretch::Running {
            wall: Duration::ZERO,
            cpu: None,
        };
    }

    /// Guest CPU time charged so far.
    #[cfg(test)]
    pub fn charged(&self) -> Duration {
        self.charged
    }

    /// Guest wall time at `now`: since the call started, less the time
    /// outside guest code.
    pub fn wall(&self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.started);
        let outside = match self.stretch {
            Stretch::Suspended { at } => self.outside + elapsed.saturating_sub(at),
            Stretch::Running { .. } => self.outside,
        };
        elapsed.saturating_sub(outside)
    }

    /// Ends the running stretch at `now`, charging it; `cpu` is read only
    /// when the stretch has a CPU baseline to compare with.
    fn charge(&mut self, now: Instant, cpu: impl FnOnce() -> CpuReading) {
        let Stretch::Running { wall, cpu: from } = self.stretch else {
            return;
        };
        let wall = self.wall(now).saturating_sub(wall);
        self.charged += match (from, from.map(|_| cpu())) {
            (Some(a), Some(b)) if a.thread == b.thread => b.time.saturating_sub(a.time).min(wall),
            _ => wall.min(self.tick),
        };
    }

    /// The epoch callback: charges the stretch that ends here and returns
    /// whether the call may go on (then the guest yields and [`resume`]
    /// starts the next stretch) or is out of time (CPU budget or wall
    /// ceiling).
    ///
    /// [`resume`]: GuestClock::resume
    /// `cpu` is read only when the ending stretch has a CPU baseline.
    pub fn tick(&mut self, now: Instant, cpu: impl FnOnce() -> CpuReading) -> bool {
        self.suspend(now, cpu);
        self.charged < self.budget && self.wall(now) < self.ceiling
    }

    /// The guest stops at `now` for an async host call (or a yield).
    pub fn suspend(&mut self, now: Instant, cpu: impl FnOnce() -> CpuReading) {
        if let Stretch::Running { .. } = self.stretch {
            self.charge(now, cpu);
            self.stretch = Stretch::Suspended {
                at: now.saturating_duration_since(self.started),
            };
        }
    }

    /// The guest runs again at `now`, on the thread that read `cpu`.
    pub fn resume(&mut self, now: Instant, cpu: CpuReading) {
        match self.stretch {
            Stretch::Suspended { at } => {
                let elapsed = now.saturating_duration_since(self.started);
                self.outside += elapsed.saturating_sub(at);
            }
            // Not suspended (cannot happen): end the stretch, start anew.
            Stretch::Running { .. } => {
                self.charge(now, || cpu);
            }
        }
        self.stretch = Stretch::Running {
            wall: self.wall(now),
            cpu: Some(cpu),
        };
    }
}

/// Memory and table caps of one instance; remembers (and logs) when a
/// growth was refused so the fault maps to `OutOfMemory`, not a plain trap.
pub struct Limiter {
    inner: StoreLimits,
    max_memory: usize,
    pub hit: bool,
    /// Linear memory this instance holds, over all its memories.
    pub linear_bytes: usize,
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
            linear_bytes: 0,
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
        if ok {
            // Creation counts as growing from 0.
            self.linear_bytes += desired.saturating_sub(current);
        } else {
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

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl HostImports for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let (tenant, plugin, version) = self.tag();
        // Bounded: a plugin must not flood the node's logs with megabytes.
        let message: String = message.chars().take(4096).collect();
        crate::probe::record_log(level_name(level), &message);
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
        self.host_call_starts();
        let r = self
            .scope
            .kv
            .get(&self.scope.tenant, &self.kv_key(&key))
            .await;
        self.host_call_ends();
        r.map_err(|e| wasmtime::Error::msg(format!("kv-get failed: {e}")))
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> wasmtime::Result<()> {
        self.host_call_starts();
        let r = self
            .scope
            .kv
            .set(&self.scope.tenant, &self.kv_key(&key), &value, ttl_ms)
            .await;
        self.host_call_ends();
        r.map_err(|e| wasmtime::Error::msg(format!("kv-set failed: {e}")))
    }

    async fn kv_incr(&mut self, key: String, delta: i64, ttl_ms: u64) -> wasmtime::Result<i64> {
        self.host_call_starts();
        let r = self
            .scope
            .kv
            .incr(&self.scope.tenant, &self.kv_key(&key), delta, ttl_ms)
            .await;
        self.host_call_ends();
        r.map_err(|e| wasmtime::Error::msg(format!("kv-incr failed: {e}")))
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(hookwire_core::clock::now_ms())
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
        self.host_call_starts();
        let r = fetch(self.scope.clone(), req).await;
        self.host_call_ends();
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
        // The Host header follows the URL, which the allowlist checked; a
        // plugin-set one could aim a shared front end at another site.
        if k.eq_ignore_ascii_case("host") {
            return Err("the Host header is set from the url; a plugin may not set it".into());
        }
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
    use std::time::{Duration, Instant};

    use super::{CpuReading, GuestClock, host_allowed};
    use crate::limits::{EngineLimits, PluginManifest};

    fn ms(n: f64) -> Duration {
        Duration::from_micros((n * 1000.0).round() as u64)
    }

    /// A clock with the default limits: 10 ms budget, 110 ms wall ceiling,
    /// 1 ms tick; and `cpu(ms)` readings on this thread.
    fn clock() -> (GuestClock, Instant, impl Fn(f64) -> CpuReading) {
        let limits = PluginManifest::default().resolve(&EngineLimits::default());
        assert_eq!(limits.wall_ceiling, ms(110.0));
        let mut c = GuestClock::new(&limits);
        let t0 = Instant::now();
        c.begin(t0);
        let thread = std::thread::current().id();
        (c, t0, move |n| CpuReading {
            thread,
            time: ms(1000.0 + n),
        })
    }

    #[test]
    fn preemption_is_not_charged_but_cpu_is() {
        let (mut c, t0, cpu) = clock();
        // First stretch: no baseline, charged its wall time, at most a tick
        // (here the thread was preempted for 30 ms before the first tick).
        assert!(c.tick(t0 + ms(30.0), || cpu(0.0)));
        assert_eq!(c.charged(), ms(1.0));
        // Parked 2 ms after the yield: neither CPU nor wall guest time.
        c.resume(t0 + ms(32.0), cpu(0.0));
        // 0.9 ms of CPU over 15 ms of wall (preempted): 0.9 ms charged.
        assert!(c.tick(t0 + ms(47.0), || cpu(0.9)));
        assert_eq!(c.charged(), ms(1.9));
        assert_eq!(c.wall(t0 + ms(47.0)), ms(45.0));
        // A runaway: a full tick of CPU per stretch, stopped at the budget.
        let mut t = 47.0;
        let mut used = 0.9;
        let mut ticks = 0;
        loop {
            c.resume(t0 + ms(t), cpu(used));
            t += 1.0;
            used += 1.0;
            ticks += 1;
            if !c.tick(t0 + ms(t), || cpu(used)) {
                break;
            }
        }
        assert_eq!(ticks, 9, "10 ms budget: {:?} charged", c.charged());
    }

    #[test]
    fn host_calls_are_excluded_and_rebaselined() {
        let (mut c, t0, cpu) = clock();
        // The first stretch ends at a host call: wall time, and no clock
        // read (it has no baseline to compare with).
        c.suspend(t0 + ms(0.5), || panic!("read the CPU clock"));
        // 40 ms in kv / http-fetch; the reply is polled on another thread
        // whose clock reads anything.
        c.resume(t0 + ms(40.5), cpu(7.0));
        c.suspend(t0 + ms(41.0), || cpu(7.2));
        c.resume(t0 + ms(80.0), cpu(20.0));
        assert!(c.tick(t0 + ms(81.0), || cpu(20.3)));
        assert_eq!(c.charged(), ms(0.5 + 0.2 + 0.3));
        assert_eq!(c.wall(t0 + ms(81.0)), ms(2.0));
    }

    #[test]
    fn a_stretch_that_moved_threads_is_charged_wall_time_up_to_a_tick() {
        let (mut c, t0, cpu) = clock();
        assert!(c.tick(t0 + ms(0.2), || cpu(0.0)));
        c.resume(t0 + ms(0.2), cpu(0.0));
        // The guest moved to another thread without telling us (say, a
        // WASI poll): its CPU clock is not comparable.
        let other = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        let elsewhere = CpuReading {
            thread: other,
            time: ms(500.0),
        };
        assert!(c.tick(t0 + ms(0.7), || elsewhere));
        assert_eq!(c.charged(), ms(0.2 + 0.5));
        c.resume(t0 + ms(0.7), elsewhere);
        assert!(c.tick(t0 + ms(9.7), || cpu(0.0)));
        assert_eq!(c.charged(), ms(0.2 + 0.5 + 1.0));
        // CPU delta is never more than the stretch's wall time.
        c.resume(t0 + ms(9.7), cpu(0.0));
        assert!(c.tick(t0 + ms(10.0), || cpu(5.0)));
        assert_eq!(c.charged(), ms(0.2 + 0.5 + 1.0 + 0.3));
    }

    #[test]
    fn the_wall_ceiling_stops_a_starved_guest() {
        let (mut c, t0, cpu) = clock();
        assert!(c.tick(t0 + ms(1.0), || cpu(0.0)));
        // Little CPU, but 110 ms of guest wall time: out of time.
        c.resume(t0 + ms(1.0), cpu(0.0));
        assert!(c.tick(t0 + ms(60.0), || cpu(0.1)));
        c.resume(t0 + ms(60.0), cpu(0.1));
        assert!(!c.tick(t0 + ms(111.0), || cpu(0.2)));
        assert!(c.charged() < ms(2.0));
        // A new call starts from zero.
        c.begin(t0 + ms(100.0));
        assert!(c.tick(t0 + ms(101.0), || cpu(9.0)));
        assert_eq!(c.charged(), ms(1.0));
    }

    #[test]
    fn the_thread_cpu_clock_advances_with_work_only() {
        let a = CpuReading::now();
        std::thread::sleep(Duration::from_millis(20));
        let b = CpuReading::now();
        assert_eq!(a.thread, b.thread);
        assert!(b.time >= a.time);
        assert!(b.time - a.time < Duration::from_millis(20));
    }

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

    /// A plugin cannot aim a request at another site through `Host`: the
    /// header is refused before anything is sent; the same request without
    /// it gets past that check (and fails on the closed port instead).
    #[tokio::test]
    async fn a_plugin_may_not_set_the_host_header() {
        use super::super::bindings::HttpRequest;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let store =
            hookwire_store::embedded::EmbeddedStore::open(&dir.path().join("db"), Duration::ZERO)
                .unwrap();
        let scope = Arc::new(super::PluginScope {
            tenant: "t".into(),
            tenant_calls: Arc::new(tokio::sync::Semaphore::new(1)),
            plugin: "p".into(),
            version: 1,
            config_json: "{}".into(),
            allowed_hosts: vec!["127.0.0.1".into()],
            limits: PluginManifest::default().resolve(&EngineLimits::default()),
            kv: crate::kv::PluginKv::new(Arc::new(store)),
            http: crate::outbound::client().unwrap(),
        });
        let req = |headers: Vec<(String, String)>| HttpRequest {
            method: "GET".into(),
            url: "http://127.0.0.1:9/".into(),
            headers,
            body: None,
        };
        for host in ["Host", "host", "HOST"] {
            let err = super::fetch(
                scope.clone(),
                req(vec![(host.into(), "evil.example".into())]),
            )
            .await
            .unwrap_err();
            assert!(err.contains("may not set it"), "{host}: {err}");
        }
        let err = super::fetch(scope, req(vec![("x-id".into(), "1".into())]))
            .await
            .unwrap_err();
        assert!(!err.contains("Host header"), "{err}");
    }
}
