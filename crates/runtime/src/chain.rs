//! A tenant's [`PluginChain`], which implements
//! [`hookwire_core::policy::Policy`] over its loaded plugins in order, and
//! the [`UnloadableChain`] of a tenant whose stored chain did not load. How
//! answers combine is written once, in [`crate::semantics`].

use std::sync::Arc;

use async_trait::async_trait;

use super::bindings as b;
use super::convert::{str_refs, to_auth, to_ctx, to_msg, to_push};
use super::plugin::LoadedPlugin;
use super::semantics::{self, MsgFold, PushFold, Step, pass_equivalent};
use crate::metrics::PluginMetrics;
use hookwire_core::error::HookError;
use hookwire_core::policy::{
    AuthRequest, AuthVerdict, Hook, HookContext, JoinRequest, JoinVerdict, MsgEvent, MsgVerdict,
    Policy, PushRequest, PushRoute, StorageMode, json_text,
};

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
            let v = p.authenticate_wit(&wctx, &wreq).await;
            let v = p.or_pass(v, pass_equivalent::authenticate)?;
            if let Step::Done(v) = semantics::authenticate(v) {
                return Ok(v);
            }
        }
        Ok(AuthVerdict::Defer)
    }

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
            let v = p.on_join_wit(&wctx, &wreq).await;
            let v = p.or_pass(v, pass_equivalent::on_join)?;
            if let Step::Done(v) = semantics::on_join(v) {
                return Ok(v);
            }
        }
        Ok(JoinVerdict::Allow)
    }

    /// Each plugin gets the message as JSON text: `ev.json()`, then the
    /// text the last rewriting plugin returned.
    async fn on_msg(&self, ctx: &HookContext, ev: &MsgEvent) -> Result<MsgVerdict, HookError> {
        if !self.any(Hook::OnMsg) {
            return Ok(MsgVerdict::Pass);
        }
        let wctx = to_ctx(ctx);
        let mut fold = MsgFold::default();
        for p in self.with(Hook::OnMsg) {
            let wev = to_msg(ev, fold.input(ev.json()));
            let v = p.on_msg_wit(&wctx, &wev).await;
            let v = p.or_pass(v, pass_equivalent::on_msg)?;
            if let Step::Done(v) = fold.step(v) {
                return Ok(v);
            }
        }
        Ok(fold.finish())
    }

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
            let v = p.storage_mode_wit(&wctx, &wev, mode).await;
            mode = p.or_pass(v, || pass_equivalent::storage_mode(mode))?;
        }
        Ok(mode)
    }

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
        let mut fold = PushFold::new(&req.rooms);
        for p in self.with(Hook::RoutePush) {
            let rooms = str_refs(fold.current());
            let v = p.route_push_wit(&wctx, &to_push(req, &rooms, &args)).await;
            let v = p.or_pass(v, || pass_equivalent::route_push(fold.current()))?;
            if let Step::Done(v) = fold.step(v) {
                return Ok(v);
            }
        }
        Ok(fold.finish())
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
