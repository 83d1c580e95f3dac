//! A loaded plugin: a compiled, linked component version of one tenant,
//! its pool of warm instances, the limits every call runs under (permits,
//! deadline, fuel, memory), how a failure is classified, and the checks on
//! what a plugin returns. The typed per-hook calls turn WIT answers into the
//! core's verdicts; [`crate::chain`] combines them across a tenant's plugins.
//!
//! Every call runs in its own instance: a warm one from the plugin's idle
//! pool when there is one (see BENCHMARKS.md ("Plugin runtime") for why), a fresh one
//! otherwise. An instance that faulted in wasm is dropped, never reused.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use wasmtime::{Trap, UpdateDeadline};

use super::Shared;
use super::bindings as b;
use super::convert::{str_refs, to_auth, to_ctx, to_msg, to_push};
use super::host::{CpuReading, HostState, PluginScope};
use crate::metrics::PluginMetrics;
use hookwire_core::error::HookError;
use hookwire_core::policy::{
    AuthRequest, AuthVerdict, Hook, HookContext, JoinRequest, JoinVerdict, KnownJson, MsgEvent,
    MsgVerdict, PushRequest, PushRoute, StorageMode, json_text,
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

/// Hands a call's argument to the generated binding: a borrowed WIT record
/// is copied as its references (never its strings), a plain enum as is.
trait Lend {
    type Out;
    fn lend(&self) -> Self::Out;
}

impl<T: Clone> Lend for &T {
    type Out = T;
    fn lend(&self) -> T {
        (**self).clone()
    }
}

impl Lend for b::StorageMode {
    type Out = b::StorageMode;
    fn lend(&self) -> Self {
        *self
    }
}

/// The hooks' dispatch, one row per hook: the [`Hook`], the flag of
/// `describe`'s `hooks` that says a plugin implements it, the binding that
/// calls it, its WIT arguments and answer. From it come `Call` (one
/// invocation, borrowing the caller's records, built once by a chain and
/// lent to each plugin), `Output`, `Call::hook`, `describe_flag` and
/// `invoke`. A new hook is a row here; its typed call on [`LoadedPlugin`]
/// turns the answer into the core's verdict.
macro_rules! hook_dispatch {
    ($( $hook:ident, $flag:expr => $method:ident ( $($arg:ident : $ty:ty),* ) -> $out:ty; )*) => {
        enum Call<'a> {
            $( $hook($($ty),*), )*
        }

        enum Output {
            $( $hook($out), )*
        }

        impl Call<'_> {
            fn hook(&self) -> Hook {
                match self {
                    $( Call::$hook(..) => Hook::$hook, )*
                }
            }
        }

        /// The flag of `describe`'s `hooks` that says a plugin implements
        /// `hook` (`describe` itself is always implemented).
        fn describe_flag(hook: Hook) -> Option<b::Hooks> {
            match hook {
                $( Hook::$hook => $flag, )*
            }
        }

        async fn invoke(warm: &mut Warm, call: &Call<'_>) -> Result<Output, wasmtime::Error> {
            let Warm { store, guest } = warm;
            Ok(match call {
                $( Call::$hook($($arg),*) => {
                    Output::$hook(guest.$method(&mut *store, $($arg.lend()),*).await?)
                } )*
            })
        }
    };
}

hook_dispatch! {
    Describe, None => call_describe() -> b::PluginInfo;
    Authenticate, Some(b::Hooks::AUTHENTICATE) =>
        call_authenticate(ctx: &'a b::Context<'a>, req: &'a b::AuthRequest<'a>) -> b::AuthVerdict;
    OnJoin, Some(b::Hooks::ON_JOIN) =>
        call_on_join(ctx: &'a b::Context<'a>, req: &'a b::JoinRequest<'a>) -> b::JoinVerdict;
    OnMsg, Some(b::Hooks::ON_MSG) =>
        call_on_msg(ctx: &'a b::Context<'a>, ev: &'a b::MsgEvent<'a>) -> b::MsgVerdict;
    StorageMode, Some(b::Hooks::STORAGE_MODE) =>
        call_storage_mode(ctx: &'a b::Context<'a>, ev: &'a b::MsgEvent<'a>, proposed: b::StorageMode)
            -> b::StorageMode;
    RoutePush, Some(b::Hooks::ROUTE_PUSH) =>
        call_route_push(ctx: &'a b::Context<'a>, req: &'a b::PushRequest<'a>) -> b::PushRoute;
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
    pub(crate) async fn new(
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
        match p.call(&Call::Describe()).await? {
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
        match tokio::time::timeout_at(deadline, invoke(&mut warm, call)).await {
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
    pub(crate) async fn authenticate_wit(
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

    pub(crate) async fn on_join_wit(
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
        self.on_msg_wit(&to_ctx(ctx), &to_msg(ev, ev.json())).await
    }

    /// [`on_msg`](Self::on_msg) with the input in WIT types. A `Rewrite`
    /// keeps the JSON text the plugin returned (already checked to be an
    /// object), so neither the next plugin nor the pipeline serialises it
    /// again.
    pub(crate) async fn on_msg_wit(
        &self,
        ctx: &b::Context<'_>,
        ev: &b::MsgEvent<'_>,
    ) -> Result<MsgVerdict, HookError> {
        let Output::OnMsg(v) = self.call(&Call::OnMsg(ctx, ev)).await? else {
            unreachable!("on-msg returns a msg verdict")
        };
        Ok(match v {
            b::MsgVerdict::Pass => MsgVerdict::Pass,
            b::MsgVerdict::Drop(reason) => MsgVerdict::Drop { reason },
            b::MsgVerdict::Rewrite(m) => MsgVerdict::Rewrite {
                msg: self.json_object("rewritten msg", &m)?,
                json: KnownJson(Some(m)),
            },
            b::MsgVerdict::Reply(r) => MsgVerdict::Reply {
                event: r.event,
                data: self.json("reply data", &r.data)?,
            },
            b::MsgVerdict::Redirect(r) => MsgVerdict::Redirect {
                rooms: r.rooms,
                users: r.users,
                msg: r
                    .msg
                    .map(|m| self.json_object("redirected msg", &m))
                    .transpose()?,
            },
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

    pub(crate) async fn storage_mode_wit(
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

    pub(crate) async fn route_push_wit(
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
    pub(crate) fn or_pass<T>(
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
