//! A loaded plugin (compiled component + its warm instances) and a tenant's
//! [`PluginChain`], which implements [`hookwire_core::policy::Policy`].
//!
//! Every call runs in its own instance: a warm one from the plugin's idle
//! pool when there is one (see BENCHMARKS.md ("Plugin runtime") for why), a fresh one
//! otherwise. An instance that faulted in wasm is dropped, never reused.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use wasmtime::{Trap, UpdateDeadline};

use super::Shared;
use super::bindings as b;
use super::host::{CpuReading, HostState, PluginScope};
use crate::metrics::PluginMetrics;
use hookwire_core::error::HookError;
use hookwire_core::policy::{
    AuthRequest, AuthVerdict, Hook, HookContext, JoinRequest, JoinVerdict, MsgEvent, MsgVerdict,
    Policy, PushRequest, PushRoute, StorageMode, json_text,
};

/// One instance and its store.
struct Warm {
    store: wasmtime::Store<HostState>,
    guest: b::Guest,
}

/// What a plugin says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// Hook names, e.g. `["authenticate", "on-msg"]`.
    pub hooks: Vec<&'static str>,
}

impl PluginInfo {
    fn from_guest(info: b::PluginInfo) -> Self {
        let hooks = Hook::TABLE
            .iter()
            .filter(|n| describe_flag(n.hook).is_some_and(|f| info.hooks.contains(f)))
            .map(|n| n.wit)
            .collect();
        PluginInfo {
            name: info.name,
            version: info.version,
            hooks,
        }
    }
    pub fn implements(&self, hook: Hook) -> bool {
        self.hooks.contains(&hook.wit_name())
    }
}

/// The flag of `describe`'s `hooks` that says a plugin implements `hook`
/// (`describe` itself is always implemented).
fn describe_flag(hook: Hook) -> Option<b::Hooks> {
    match hook {
        Hook::Describe => None,
        Hook::Authenticate => Some(b::Hooks::AUTHENTICATE),
        Hook::OnJoin => Some(b::Hooks::ON_JOIN),
        Hook::OnMsg => Some(b::Hooks::ON_MSG),
        Hook::StorageMode => Some(b::Hooks::STORAGE_MODE),
        Hook::RoutePush => Some(b::Hooks::ROUTE_PUSH),
    }
}

/// One hook invocation, already in WIT types. They borrow the caller's
/// strings (no copy before the one into the guest), and a chain builds
/// them once and lends them to each plugin.
enum Call<'a> {
    Describe,
    Authenticate(&'a b::Context<'a>, &'a b::AuthRequest<'a>),
    OnJoin(&'a b::Context<'a>, &'a b::JoinRequest<'a>),
    OnMsg(&'a b::Context<'a>, &'a b::MsgEvent<'a>),
    StorageMode(&'a b::Context<'a>, &'a b::MsgEvent<'a>, b::StorageMode),
    RoutePush(&'a b::Context<'a>, &'a b::PushRequest<'a>),
}

enum Output {
    Describe(b::PluginInfo),
    Authenticate(b::AuthVerdict),
    OnJoin(b::JoinVerdict),
    OnMsg(b::MsgVerdict),
    StorageMode(b::StorageMode),
    RoutePush(b::PushRoute),
}

impl Call<'_> {
    fn hook(&self) -> Hook {
        match self {
            Call::Describe => Hook::Describe,
            Call::Authenticate(..) => Hook::Authenticate,
            Call::OnJoin(..) => Hook::OnJoin,
            Call::OnMsg(..) => Hook::OnMsg,
            Call::StorageMode(..) => Hook::StorageMode,
            Call::RoutePush(..) => Hook::RoutePush,
        }
    }
}

/// The metric handles of one plugin, resolved once at load: a hook call
/// then counts itself without hashing labels or allocating.
struct CallMetrics {
    /// `plugin_calls{tenant, plugin, hook}`, indexed by `Hook as usize`.
    calls: [Counter; Hook::COUNT],
    /// `plugin_call_seconds{hook}`, indexed the same way.
    seconds: [Histogram; Hook::COUNT],
}

impl CallMetrics {
    fn new(m: &PluginMetrics, tenant: &str, plugin: &str) -> Self {
        CallMetrics {
            calls: Hook::TABLE.each_ref().map(|n| {
                m.calls
                    .get_or_create(&vec![
                        ("tenant", tenant.to_string()),
                        ("plugin", plugin.to_string()),
                        ("hook", n.label.into()),
                    ])
                    .clone()
            }),
            seconds: Hook::TABLE.each_ref().map(|n| {
                m.call_seconds
                    .get_or_create(&vec![("hook", n.label.into())])
                    .clone()
            }),
        }
    }
}

/// A compiled, linked plugin version of one tenant, ready to be called.
pub struct LoadedPlugin {
    pub name: String,
    pub version: u64,
    pub hash: String,
    pub info: PluginInfo,
    /// Manifest `fail_open`: a fault is turned into the pass-equivalent.
    pub fail_open: bool,
    scope: Arc<PluginScope>,
    pre: b::GuestPre<HostState>,
    shared: Arc<Shared>,
    idle: Mutex<Vec<Warm>>,
    metrics: CallMetrics,
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        let n = self.idle.get_mut().len();
        self.shared.idle_total.fetch_sub(n, Ordering::Relaxed);
    }
}

impl LoadedPlugin {
    /// Instantiates once and asks the plugin what it is. Fails when the
    /// instance cannot be created or `describe` faults.
    pub(super) async fn new(
        name: String,
        version: u64,
        hash: String,
        fail_open: bool,
        scope: Arc<PluginScope>,
        pre: b::GuestPre<HostState>,
        shared: Arc<Shared>,
    ) -> Result<Self, HookError> {
        let metrics = CallMetrics::new(&shared.metrics, &scope.tenant, &name);
        let mut p = LoadedPlugin {
            name,
            version,
            hash,
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                hooks: Vec::new(),
            },
            fail_open,
            scope,
            pre,
            shared,
            idle: Mutex::new(Vec::new()),
            metrics,
        };
        match p.call(&Call::Describe).await? {
            Output::Describe(info) => p.info = PluginInfo::from_guest(info),
            _ => unreachable!("describe returns describe"),
        }
        Ok(p)
    }

    fn fault(&self, detail: impl Into<String>) -> HookError {
        HookError::BadOutput {
            plugin: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// A fresh instance in a fresh store, with the limiter and the deadline
    /// callback installed. Instantiation runs under the call's deadline too
    /// (a component's start code could loop).
    async fn instantiate(&self, started: Instant) -> Result<Warm, wasmtime::Error> {
        let mut store =
            wasmtime::Store::new(&self.shared.engine, HostState::new(self.scope.clone()));
        store.limiter(|s| &mut s.limiter);
        // Fires every tick while guest code runs; the only place a call
        // without async host calls reads the thread's CPU clock (see
        // `GuestClock`). Out of CPU budget or past the wall ceiling:
        // interrupt. Otherwise yield to the executor, so a plugin with a
        // long (allowed) deadline never holds a runtime worker for more than
        // a tick; the time it waits to be polled again is not guest time.
        store.epoch_deadline_callback(move |mut ctx| {
            let data = ctx.data_mut();
            let left = data.clock.lock().tick(Instant::now(), CpuReading::now);
            if !left {
                data.timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            let clock = data.clock.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    // Polled by the worker that resumes the guest, maybe
                    // not the one it yielded on: a new CPU baseline.
                    clock.lock().resume(Instant::now(), CpuReading::now());
                }),
            ))
        });
        self.arm(&mut store, started)?;
        store.data_mut().begin_instantiate(started);
        let guest = self.pre.instantiate_async(&mut store).await?;
        // The hook's own budget and wall ceiling start now.
        self.arm(&mut store, Instant::now())?;
        Ok(Warm { store, guest })
    }

    /// Resets the deadline, fuel and flags before a call that started at
    /// `started`.
    fn arm(
        &self,
        store: &mut wasmtime::Store<HostState>,
        started: Instant,
    ) -> Result<(), wasmtime::Error> {
        // No clock read here: a warm call shorter than a tick never pays
        // for one.
        store.data_mut().begin_call(started);
        // One tick: the callback above then checks the budget every tick.
        store.set_epoch_deadline(1);
        if let Some(fuel) = self.scope.limits.fuel {
            store.set_fuel(fuel)?;
        }
        Ok(())
    }

    /// Turns a wasm error into the right [`HookError`]: the store's flags
    /// say whether the deadline or the memory cap caused it.
    fn classify(
        &self,
        err: wasmtime::Error,
        data: Option<&HostState>,
        instantiating: bool,
    ) -> HookError {
        let plugin = self.name.clone();
        let trap = err.downcast_ref::<Trap>().copied();
        if data.is_some_and(|d| d.timed_out) || trap == Some(Trap::Interrupt) {
            return HookError::Timeout { plugin };
        }
        if trap == Some(Trap::OutOfFuel) {
            return HookError::OutOfFuel { plugin };
        }
        if data.is_some_and(|d| d.limiter.hit) {
            return HookError::OutOfMemory { plugin };
        }
        let detail = match trap {
            Some(t) => t.to_string(),
            None => format!("{:#}", anyhow::Error::from(err))
                .chars()
                .take(500)
                .collect(),
        };
        if instantiating && trap.is_none() {
            HookError::Instantiate { plugin, detail }
        } else {
            HookError::Trap { plugin, detail }
        }
    }

    async fn invoke(warm: &mut Warm, call: &Call<'_>) -> Result<Output, wasmtime::Error> {
        let Warm { store, guest } = warm;
        // The calls take the borrowed records by value: `lend(x)` copies
        // their references, not the strings.
        fn lend<T: Clone>(x: &T) -> T {
            x.clone()
        }
        Ok(match call {
            Call::Describe => Output::Describe(guest.call_describe(&mut *store).await?),
            Call::Authenticate(c, r) => Output::Authenticate(
                guest
                    .call_authenticate(&mut *store, lend(*c), lend(*r))
                    .await?,
            ),
            Call::OnJoin(c, r) => {
                Output::OnJoin(guest.call_on_join(&mut *store, lend(*c), lend(*r)).await?)
            }
            Call::OnMsg(c, e) => {
                Output::OnMsg(guest.call_on_msg(&mut *store, lend(*c), lend(*e)).await?)
            }
            Call::StorageMode(c, e, p) => Output::StorageMode(
                guest
                    .call_storage_mode(&mut *store, lend(*c), lend(*e), *p)
                    .await?,
            ),
            Call::RoutePush(c, r) => Output::RoutePush(
                guest
                    .call_route_push(&mut *store, lend(*c), lend(*r))
                    .await?,
            ),
        })
    }

    /// Runs one hook in an instance, under the plugin's limits; counts it.
    async fn call(&self, call: &Call<'_>) -> Result<Output, HookError> {
        let hook = call.hook();
        let started = Instant::now();
        let r = self.call_inner(call, started).await;
        self.metrics.calls[hook as usize].inc();
        self.metrics.seconds[hook as usize].observe(started.elapsed().as_secs_f64());
        if let Err(e) = &r {
            let tenant = self.scope.tenant.to_string();
            self.shared
                .metrics
                .faults
                .get_or_create(&vec![
                    ("tenant", tenant.clone()),
                    ("plugin", self.name.clone()),
                    ("kind", e.kind().into()),
                ])
                .inc();
            tracing::warn!(
                tenant = %tenant,
                plugin = %self.name,
                version = self.version,
                hook = hook.label(),
                kind = e.kind(),
                error = %e,
                "plugin fault"
            );
        }
        r
    }

    async fn call_inner(&self, call: &Call<'_>, started: Instant) -> Result<Output, HookError> {
        // The tenant's permit, then the node's: one tenant's slow calls
        // queue for that tenant's share only, so other tenants' calls find
        // the node's permits free. Waiting counts against the call's wall
        // ceiling: a call that cannot start in time ends there.
        let mut deadline = tokio::time::Instant::from_std(started + self.scope.limits.wall_ceiling);
        let permits = async {
            let tenant = self.scope.tenant_calls.acquire().await?;
            let node = self.shared.calls.acquire().await?;
            Ok::<_, tokio::sync::AcquireError>((tenant, node))
        };
        let _permits = match tokio::time::timeout_at(deadline, permits).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                return Err(HookError::Instantiate {
                    plugin: self.name.clone(),
                    detail: "plugin runtime is shutting down".into(),
                });
            }
            Err(_) => {
                return Err(HookError::Timeout {
                    plugin: self.name.clone(),
                });
            }
        };
        let idle = self.idle.lock().pop();
        let mut warm = match idle {
            Some(mut w) => {
                self.shared.idle_total.fetch_sub(1, Ordering::Relaxed);
                self.arm(&mut w.store, started)
                    .map_err(|e| self.classify(e, None, true))?;
                w
            }
            None => match self.instantiate(started).await {
                Ok(w) => {
                    // Starting the instance had a ceiling of its own.
                    deadline = tokio::time::Instant::now() + self.scope.limits.wall_ceiling;
                    w
                }
                // The store is gone with the error; its flags are lost, so
                // a limit hit during instantiation shows as Instantiate.
                Err(e) => return Err(self.classify(e, None, true)),
            },
        };
        // The epoch callback only runs while guest code runs; a guest that
        // waits in the host (a WASI sleep or poll, kv, http-fetch) is ended
        // here, at the call's wall ceiling counted from its start. Dropping
        // the call's future unwinds the guest's fiber.
        match tokio::time::timeout_at(deadline, Self::invoke(&mut warm, call)).await {
            Ok(Ok(out)) => {
                if let Some(fuel) = self.scope.limits.fuel {
                    let left = warm.store.get_fuel().unwrap_or(fuel);
                    crate::probe::record_fuel(fuel.saturating_sub(left));
                }
                crate::probe::record_memory(warm.store.data().limiter.linear_bytes);
                let checked = self.check(out);
                self.release(warm);
                checked
            }
            // Dropped: a trapped instance may be in any state.
            Ok(Err(e)) => Err(self.classify(e, Some(warm.store.data()), false)),
            // Dropped too: it was stopped mid-call.
            Err(_) => Err(HookError::Timeout {
                plugin: self.name.clone(),
            }),
        }
    }

    /// Keeps an instance that behaved for the next call, within the limits.
    fn release(&self, warm: Warm) {
        let limits = &self.shared.limits;
        let mut idle = self.idle.lock();
        if idle.len() >= limits.max_idle_per_plugin as usize {
            return;
        }
        let total = self.shared.idle_total.fetch_add(1, Ordering::Relaxed);
        if total >= limits.max_idle_instances as usize {
            self.shared.idle_total.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        idle.push(warm);
    }

    /// Refuses oversized output (the JSON itself is parsed by the caller).
    fn check(&self, out: Output) -> Result<Output, HookError> {
        let max = self.scope.limits.max_output_bytes;
        let size = match &out {
            Output::Describe(i) => i.name.len() + i.version.len(),
            Output::Authenticate(b::AuthVerdict::Allow(a)) => {
                a.uid.len() + a.claims.len() + a.rooms.iter().map(String::len).sum::<usize>()
            }
            Output::Authenticate(b::AuthVerdict::Deny(r)) => r.len(),
            Output::Authenticate(b::AuthVerdict::Defer) => 0,
            Output::OnJoin(b::JoinVerdict::Deny(r)) => r.len(),
            Output::OnJoin(b::JoinVerdict::Allow) => 0,
            Output::OnMsg(v) => match v {
                b::MsgVerdict::Pass => 0,
                b::MsgVerdict::Drop(s) | b::MsgVerdict::Rewrite(s) => s.len(),
                b::MsgVerdict::Reply(r) => r.event.len() + r.data.len(),
                b::MsgVerdict::Redirect(r) => {
                    r.rooms
                        .iter()
                        .chain(&r.users)
                        .map(String::len)
                        .sum::<usize>()
                        + r.msg.as_ref().map_or(0, String::len)
                }
            },
            Output::StorageMode(_) => 0,
            Output::RoutePush(b::PushRoute::Deliver(rooms)) => rooms.iter().map(String::len).sum(),
            Output::RoutePush(b::PushRoute::Reject(r)) => r.len(),
        };
        if size > max {
            return Err(self.fault(format!("{size} bytes of output, at most {max}")));
        }
        Ok(out)
    }

    fn json(&self, what: &str, s: &str) -> Result<Value, HookError> {
        serde_json::from_str(s).map_err(|e| self.fault(format!("{what} is not valid JSON: {e}")))
    }

    fn json_object(&self, what: &str, s: &str) -> Result<Value, HookError> {
        let v = self.json(what, s)?;
        if v.is_object() {
            Ok(v)
        } else {
            Err(self.fault(format!("{what} is not a JSON object")))
        }
    }

    pub async fn authenticate(
        &self,
        ctx: &HookContext,
        req: &AuthRequest,
    ) -> Result<AuthVerdict, HookError> {
        let payload = json_text(&req.payload);
        self.authenticate_wit(&to_ctx(ctx), &to_auth(req, &payload))
            .await
    }

    /// [`authenticate`](Self::authenticate) with the input already in WIT
    /// types (a chain converts it once for all its plugins).
    async fn authenticate_wit(
        &self,
        ctx: &b::Context<'_>,
        req: &b::AuthRequest<'_>,
    ) -> Result<AuthVerdict, HookError> {
        let call = Call::Authenticate(ctx, req);
        match self.call(&call).await? {
            Output::Authenticate(b::AuthVerdict::Allow(a)) => {
                if a.uid.is_empty() {
                    return Err(self.fault("authenticate allowed an empty uid"));
                }
                let claims = if a.claims.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    self.json_object("claims", &a.claims)?
                };
                Ok(AuthVerdict::Allow {
                    uid: a.uid,
                    rooms: a.rooms,
                    claims,
                })
            }
            Output::Authenticate(b::AuthVerdict::Deny(reason)) => Ok(AuthVerdict::Deny { reason }),
            Output::Authenticate(b::AuthVerdict::Defer) => Ok(AuthVerdict::Defer),
            _ => unreachable!("authenticate returns an auth verdict"),
        }
    }

    pub async fn on_join(
        &self,
        ctx: &HookContext,
        req: &JoinRequest,
    ) -> Result<JoinVerdict, HookError> {
        self.on_join_wit(
            &to_ctx(ctx),
            &b::JoinRequest {
                room: &req.room,
                dummy: req.dummy,
            },
        )
        .await
    }

    async fn on_join_wit(
        &self,
        ctx: &b::Context<'_>,
        req: &b::JoinRequest<'_>,
    ) -> Result<JoinVerdict, HookError> {
        match self.call(&Call::OnJoin(ctx, req)).await? {
            Output::OnJoin(b::JoinVerdict::Allow) => Ok(JoinVerdict::Allow),
            Output::OnJoin(b::JoinVerdict::Deny(reason)) => Ok(JoinVerdict::Deny { reason }),
            _ => unreachable!("on-join returns a join verdict"),
        }
    }

    pub async fn on_msg(&self, ctx: &HookContext, ev: &MsgEvent) -> Result<MsgVerdict, HookError> {
        let (verdict, _) = self
            .on_msg_wit(&to_ctx(ctx), &to_msg(ev, ev.json()))
            .await?;
        Ok(verdict)
    }

    /// [`on_msg`](Self::on_msg) with the input in WIT types. A `Rewrite`
    /// also comes back as the JSON text the plugin returned (already
    /// checked to be an object), so a chain hands it to the next plugin
    /// without serialising it again.
    async fn on_msg_wit(
        &self,
        ctx: &b::Context<'_>,
        ev: &b::MsgEvent<'_>,
    ) -> Result<(MsgVerdict, Option<String>), HookError> {
        let Output::OnMsg(v) = self.call(&Call::OnMsg(ctx, ev)).await? else {
            unreachable!("on-msg returns a msg verdict")
        };
        Ok(match v {
            b::MsgVerdict::Pass => (MsgVerdict::Pass, None),
            b::MsgVerdict::Drop(reason) => (MsgVerdict::Drop { reason }, None),
            b::MsgVerdict::Rewrite(m) => {
                let msg = self.json_object("rewritten msg", &m)?;
                (MsgVerdict::Rewrite { msg }, Some(m))
            }
            b::MsgVerdict::Reply(r) => (
                MsgVerdict::Reply {
                    event: r.event,
                    data: self.json("reply data", &r.data)?,
                },
                None,
            ),
            b::MsgVerdict::Redirect(r) => (
                MsgVerdict::Redirect {
                    rooms: r.rooms,
                    users: r.users,
                    msg: r
                        .msg
                        .map(|m| self.json_object("redirected msg", &m))
                        .transpose()?,
                },
                None,
            ),
        })
    }

    pub async fn storage_mode(
        &self,
        ctx: &HookContext,
        ev: &MsgEvent,
        proposed: StorageMode,
    ) -> Result<StorageMode, HookError> {
        self.storage_mode_wit(&to_ctx(ctx), &to_msg(ev, ev.json()), proposed)
            .await
    }

    async fn storage_mode_wit(
        &self,
        ctx: &b::Context<'_>,
        ev: &b::MsgEvent<'_>,
        proposed: StorageMode,
    ) -> Result<StorageMode, HookError> {
        let proposed = match proposed {
            StorageMode::Insert => b::StorageMode::Insert,
            StorageMode::Update => b::StorageMode::Update,
            StorageMode::Ignore => b::StorageMode::Ignore,
        };
        match self.call(&Call::StorageMode(ctx, ev, proposed)).await? {
            Output::StorageMode(b::StorageMode::Insert) => Ok(StorageMode::Insert),
            Output::StorageMode(b::StorageMode::Update) => Ok(StorageMode::Update),
            Output::StorageMode(b::StorageMode::Ignore) => Ok(StorageMode::Ignore),
            _ => unreachable!("storage-mode returns a storage mode"),
        }
    }

    pub async fn route_push(
        &self,
        ctx: &HookContext,
        req: &PushRequest,
    ) -> Result<PushRoute, HookError> {
        let (rooms, args) = (str_refs(&req.rooms), json_text(&req.args));
        self.route_push_wit(&to_ctx(ctx), &to_push(req, &rooms, &args))
            .await
    }

    async fn route_push_wit(
        &self,
        ctx: &b::Context<'_>,
        req: &b::PushRequest<'_>,
    ) -> Result<PushRoute, HookError> {
        match self.call(&Call::RoutePush(ctx, req)).await? {
            Output::RoutePush(b::PushRoute::Deliver(rooms)) => Ok(PushRoute::Deliver { rooms }),
            Output::RoutePush(b::PushRoute::Reject(reason)) => Ok(PushRoute::Reject { reason }),
            _ => unreachable!("route-push returns a push route"),
        }
    }

    /// Idle warm instances right now (tests and the admin listing).
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().len()
    }

    /// A fault of a `fail_open` plugin becomes `Ok(pass)`; others propagate.
    fn or_pass<T>(
        &self,
        r: Result<T, HookError>,
        pass: impl FnOnce() -> T,
    ) -> Result<T, HookError> {
        match r {
            Err(_) if self.fail_open => Ok(pass()),
            r => r,
        }
    }
}

fn to_ctx(c: &HookContext) -> b::Context<'_> {
    b::Context {
        tenant: &c.tenant,
        sid: c.sid.as_deref(),
        uid: c.uid.as_deref(),
        device: c.device.as_deref(),
    }
}

/// `payload` is `req.payload` as JSON text.
fn to_auth<'a>(req: &'a AuthRequest, payload: &'a str) -> b::AuthRequest<'a> {
    b::AuthRequest {
        uid: req.uid.as_deref(),
        token: req.token.as_deref(),
        payload,
        query: &req.query,
    }
}

/// `json` is the message as JSON text: `ev.json()`, or a rewrite's.
fn to_msg<'a>(ev: &'a MsgEvent, json: &'a str) -> b::MsgEvent<'a> {
    b::MsgEvent {
        room: &ev.room,
        msg: json,
    }
}

/// `rooms` may differ from `req.rooms`: a chain passes each plugin the
/// rooms the previous one chose. `args` is `req.args` as JSON text (a
/// `Vec<Value>` serialises as the JSON array, without a clone).
fn to_push<'a>(req: &'a PushRequest, rooms: &'a [&'a str], args: &'a str) -> b::PushRequest<'a> {
    b::PushRequest {
        rooms,
        event: &req.event,
        args,
    }
}

fn str_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A tenant's ordered plugins. Each hook runs through the plugins that
/// implement it, in order; see the `Policy` impl for how verdicts combine.
/// Each hook converts its input to WIT types (and JSON text) once, for all
/// the plugins it runs.
pub struct PluginChain {
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginChain {
    pub fn new(plugins: Vec<Arc<LoadedPlugin>>) -> Self {
        PluginChain { plugins }
    }
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }
    fn with(&self, hook: Hook) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.iter().filter(move |p| p.info.implements(hook))
    }
    fn any(&self, hook: Hook) -> bool {
        self.with(hook).next().is_some()
    }
}

#[async_trait]
impl Policy for PluginChain {
    fn describe(&self) -> String {
        let names: Vec<String> = self
            .plugins
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        format!("wasm chain [{}]", names.join(", "))
    }

    /// The first plugin that does not defer decides.
    async fn authenticate(
        &self,
        ctx: &HookContext,
        req: &AuthRequest,
    ) -> Result<AuthVerdict, HookError> {
        if !self.any(Hook::Authenticate) {
            return Ok(AuthVerdict::Defer);
        }
        let payload = json_text(&req.payload);
        let (wctx, wreq) = (to_ctx(ctx), to_auth(req, &payload));
        for p in self.with(Hook::Authenticate) {
            match p.or_pass(p.authenticate_wit(&wctx, &wreq).await, || {
                AuthVerdict::Defer
            })? {
                AuthVerdict::Defer => continue,
                v => return Ok(v),
            }
        }
        Ok(AuthVerdict::Defer)
    }

    /// The first deny wins.
    async fn on_join(
        &self,
        ctx: &HookContext,
        req: &JoinRequest,
    ) -> Result<JoinVerdict, HookError> {
        if !self.any(Hook::OnJoin) {
            return Ok(JoinVerdict::Allow);
        }
        let wctx = to_ctx(ctx);
        let wreq = b::JoinRequest {
            room: &req.room,
            dummy: req.dummy,
        };
        for p in self.with(Hook::OnJoin) {
            if let v @ JoinVerdict::Deny { .. } =
                p.or_pass(p.on_join_wit(&wctx, &wreq).await, || JoinVerdict::Allow)?
            {
                return Ok(v);
            }
        }
        Ok(JoinVerdict::Allow)
    }

    /// Pass goes on; Rewrite goes on with the new message; Drop, Reply and
    /// Redirect stop the chain (Redirect keeps an earlier rewrite as its
    /// payload when it sets none). Each plugin gets the message as JSON
    /// text: `ev.json()`, then the text the last rewriting plugin returned.
    async fn on_msg(&self, ctx: &HookContext, ev: &MsgEvent) -> Result<MsgVerdict, HookError> {
        if !self.any(Hook::OnMsg) {
            return Ok(MsgVerdict::Pass);
        }
        let wctx = to_ctx(ctx);
        let mut rewritten: Option<String> = None;
        let mut current: Option<Value> = None;
        for p in self.with(Hook::OnMsg) {
            let wev = to_msg(ev, rewritten.as_deref().unwrap_or(ev.json()));
            let (verdict, text) =
                p.or_pass(p.on_msg_wit(&wctx, &wev).await, || (MsgVerdict::Pass, None))?;
            match verdict {
                MsgVerdict::Pass => {}
                MsgVerdict::Rewrite { msg } => {
                    if let Some(text) = text {
                        rewritten = Some(text);
                    }
                    current = Some(msg);
                }
                MsgVerdict::Redirect {
                    rooms,
                    users,
                    msg: None,
                } if current.is_some() => {
                    return Ok(MsgVerdict::Redirect {
                        rooms,
                        users,
                        msg: current,
                    });
                }
                stop => return Ok(stop),
            }
        }
        Ok(match current {
            Some(msg) => MsgVerdict::Rewrite { msg },
            None => MsgVerdict::Pass,
        })
    }

    /// Each plugin gets the previous one's answer as `proposed`.
    async fn storage_mode(
        &self,
        ctx: &HookContext,
        ev: &MsgEvent,
        proposed: StorageMode,
    ) -> Result<StorageMode, HookError> {
        if !self.any(Hook::StorageMode) {
            return Ok(proposed);
        }
        let (wctx, wev) = (to_ctx(ctx), to_msg(ev, ev.json()));
        let mut mode = proposed;
        for p in self.with(Hook::StorageMode) {
            mode = p.or_pass(p.storage_mode_wit(&wctx, &wev, mode).await, || mode)?;
        }
        Ok(mode)
    }

    /// Deliver replaces the rooms for the next plugin; Reject stops.
    async fn route_push(
        &self,
        ctx: &HookContext,
        req: &PushRequest,
    ) -> Result<PushRoute, HookError> {
        if !self.any(Hook::RoutePush) {
            return Ok(PushRoute::Deliver {
                rooms: req.rooms.clone(),
            });
        }
        let (wctx, args) = (to_ctx(ctx), json_text(&req.args));
        // `None`: the rooms of the request, until a plugin chooses others.
        let mut chosen: Option<Vec<String>> = None;
        for p in self.with(Hook::RoutePush) {
            let current = chosen.as_deref().unwrap_or(&req.rooms);
            let rooms = str_refs(current);
            let wreq = to_push(req, &rooms, &args);
            match p.or_pass(p.route_push_wit(&wctx, &wreq).await, || {
                PushRoute::Deliver {
                    rooms: current.to_vec(),
                }
            })? {
                PushRoute::Deliver { rooms } => chosen = Some(rooms),
                reject => return Ok(reject),
            }
        }
        Ok(PushRoute::Deliver {
            rooms: chosen.unwrap_or_else(|| req.rooms.clone()),
        })
    }
}

/// The policy of a tenant whose stored chain could not be loaded: every
/// hook faults, so the pipeline fails closed (or open, as the tenant says),
/// and each call is counted as an `instantiate` fault.
pub struct UnloadableChain {
    pub tenant: String,
    pub plugin: String,
    pub detail: String,
    pub metrics: PluginMetrics,
}

impl UnloadableChain {
    fn fault(&self, hook: Hook) -> HookError {
        let e = HookError::Instantiate {
            plugin: self.plugin.clone(),
            detail: self.detail.clone(),
        };
        let plugin = ("plugin", self.plugin.clone());
        let tenant = ("tenant", self.tenant.clone());
        self.metrics
            .calls
            .get_or_create(&vec![
                tenant.clone(),
                plugin.clone(),
                ("hook", hook.label().into()),
            ])
            .inc();
        self.metrics
            .faults
            .get_or_create(&vec![tenant, plugin, ("kind", e.kind().into())])
            .inc();
        e
    }
}

#[async_trait]
impl Policy for UnloadableChain {
    fn describe(&self) -> String {
        format!("unloadable wasm chain ({}: {})", self.plugin, self.detail)
    }
    async fn authenticate(
        &self,
        _: &HookContext,
        _: &AuthRequest,
    ) -> Result<AuthVerdict, HookError> {
        Err(self.fault(Hook::Authenticate))
    }
    async fn on_join(&self, _: &HookContext, _: &JoinRequest) -> Result<JoinVerdict, HookError> {
        Err(self.fault(Hook::OnJoin))
    }
    async fn on_msg(&self, _: &HookContext, _: &MsgEvent) -> Result<MsgVerdict, HookError> {
        Err(self.fault(Hook::OnMsg))
    }
    async fn storage_mode(
        &self,
        _: &HookContext,
        _: &MsgEvent,
        _: StorageMode,
    ) -> Result<StorageMode, HookError> {
        Err(self.fault(Hook::StorageMode))
    }
    async fn route_push(&self, _: &HookContext, _: &PushRequest) -> Result<PushRoute, HookError> {
        Err(self.fault(Hook::RoutePush))
    }
}
