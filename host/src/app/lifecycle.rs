//! A tenant's life on this node, written once. Every path that brings a
//! tenant in or takes it out goes through here: the tenants API, another
//! node's announcement, the reconcile pass and startup. Each path decides
//! *whether* (it owns the store record and its lifecycle lock); this module
//! does *how*, always in the same order.
//!
//! With a shared store, this node also follows what other nodes change:
//! announcements the cluster bus hears ([`tenant_changed`],
//! [`chain_changed`]) and a periodic reconcile pass
//! ([`spawn_tenant_reconcile`]) that heals a lost announcement.

use std::sync::Arc;
use std::time::Duration;

use super::App;
use crate::store::TenantRecord;
use crate::tenant::{DEFAULT_TENANT, Tenant};

/// How long taking a tenant out waits for its room writes in flight.
pub const DRAIN_WRITES: Duration = Duration::from_secs(10);

/// Brings a tenant in: its plugin chain loaded, its namespace mounted, and
/// only then listed, so once this node shows the tenant (HTTP API, tokens)
/// its clients can connect. A chain that cannot load fails closed (its
/// hooks fault unless the tenant fails open); `activate` logs it.
pub async fn bring_in(state: &App, rec: TenantRecord) -> Arc<Tenant> {
    let tenant = Arc::new(Tenant::new(rec));
    start(state, &tenant).await;
    state.services.tenants.add(tenant)
}

/// Starts a tenant already listed (startup: the registry was read from the
/// store before the state existed).
pub async fn start(state: &App, tenant: &Arc<Tenant>) {
    let _ = state.plugins.activate(tenant).await;
    crate::protocol::mount(&state.services, tenant).await;
}

/// Takes tenant `name` out: its namespace unmounted (its sockets close), the
/// room writes they still had in flight landed (or `DRAIN_WRITES` passed),
/// then unlisted. False when it was not here.
pub async fn take_out(state: &App, name: &str) -> bool {
    let Some(tenant) = state.services.tenants.get(name) else {
        return false;
    };
    crate::protocol::unmount(&state.services, name);
    if !tenant.writes.close_and_drain(DRAIN_WRITES).await {
        tracing::warn!(tenant = %name, "room writes still in flight after {DRAIN_WRITES:?}; taken out anyway");
    }
    state.services.tenants.remove(name);
    true
}

/// Another node changed `tenant_name`'s plugin chain: load it from the store.
pub async fn chain_changed(state: &App, tenant_name: &str) {
    let Some(tenant) = state.services.tenants.get(tenant_name) else {
        return;
    };
    // On failure `activate` has logged it and left the tenant failing closed.
    if state.plugins.activate(&tenant).await.is_ok() {
        tracing::info!(tenant = %tenant_name, "plugin chain reloaded after an announcement");
    }
}

/// How often every node re-reads all tenant records from the shared store.
/// An announcement lost on the way (Redis down or restarting, a node cut
/// off) is healed by the next pass: a change made on one node shows on every
/// node within this period (plus one store read), and a pass also runs as
/// soon as Redis is back.
pub const TENANT_RECONCILE: Duration = Duration::from_secs(3);

/// Keeps this node's tenants equal to the shared store's, every
/// [`TENANT_RECONCILE`] and right after Redis reconnects.
pub fn spawn_tenant_reconcile(state: &App) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        let mut was_up = true;
        loop {
            tick.tick().await;
            let up = state.bus.as_ref().is_none_or(|b| b.hub().is_up());
            let reconnected = up && !was_up;
            was_up = up;
            if !reconnected && last.elapsed() < TENANT_RECONCILE {
                continue;
            }
            last = tokio::time::Instant::now();
            reconcile_tenants(&state).await;
        }
    })
}

/// One pass: every stored tenant applied (new ones mounted, changed ones
/// followed), and local tenants the store no longer has removed.
async fn reconcile_tenants(state: &App) {
    let stored = match state.services.store.list_tenants().await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "tenant reconcile skipped: store unavailable");
            return;
        }
    };
    let names: std::collections::HashSet<&str> = stored.iter().map(|r| r.name.as_str()).collect();
    for local in state.services.tenants.all() {
        let name = local.name();
        if !names.contains(&*name) && &*name != DEFAULT_TENANT {
            tenant_changed(state, &name).await;
        }
    }
    for rec in &stored {
        if state
            .services
            .tenants
            .get(&rec.name)
            .is_none_or(|t| t.is_behind(rec))
        {
            tenant_changed(state, &rec.name).await;
        }
    }
}

/// Another node created, changed or deleted a tenant: follow the store
/// (read under the lifecycle lock, so what is applied is what the store
/// holds after any local create or delete).
pub async fn tenant_changed(state: &App, name: &str) {
    let _lifecycle = state.services.tenants.lifecycle.lock().await;
    let rec = match state.services.store.get_tenant(name).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(tenant = %name, error = %e, "cannot reload an announced tenant change");
            return;
        }
    };
    apply_tenant(state, name, rec).await;
}

/// Makes this node's tenant `name` what the store holds (`None`: deleted).
async fn apply_tenant(state: &App, name: &str, rec: Option<TenantRecord>) {
    match (rec, state.services.tenants.get(name)) {
        (Some(rec), Some(tenant)) => {
            if tenant.follow(rec) {
                tracing::info!(tenant = %name, "tenant reloaded from the store");
            }
        }
        (Some(rec), None) => {
            bring_in(state, rec).await;
            tracing::info!(tenant = %name, "tenant mounted from the store");
        }
        (None, Some(_)) => {
            take_out(state, name).await;
            tracing::info!(tenant = %name, "tenant removed: the store no longer has it");
        }
        (None, None) => {}
    }
}
