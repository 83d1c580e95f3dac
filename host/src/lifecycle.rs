//! A tenant's life on this node, written once. Every path that brings a
//! tenant in or takes it out goes through here: the tenants API, another
//! node's announcement, the reconcile pass and startup. Each path decides
//! *whether* (it owns the store record and its lifecycle lock); this module
//! does *how*, always in the same order.

use std::sync::Arc;
use std::time::Duration;

use crate::server::AppState;
use crate::store::TenantRecord;
use crate::tenant::Tenant;

/// How long taking a tenant out waits for its room writes in flight.
pub const DRAIN_WRITES: Duration = Duration::from_secs(10);

/// Brings a tenant in: its plugin chain loaded, its namespace mounted, and
/// only then listed, so once this node shows the tenant (HTTP API, tokens)
/// its clients can connect. A chain that cannot load fails closed (its
/// hooks fault unless the tenant fails open); `activate` logs it.
pub async fn bring_in(state: &AppState, rec: TenantRecord) -> Arc<Tenant> {
    let tenant = Arc::new(Tenant::new(rec));
    start(state, &tenant).await;
    state.tenants.add(tenant)
}

/// Starts a tenant already listed (startup: the registry was read from the
/// store before the state existed).
pub async fn start(state: &AppState, tenant: &Arc<Tenant>) {
    let _ = state.plugins.activate(tenant).await;
    crate::protocol::mount(state, tenant).await;
}

/// Takes tenant `name` out: its namespace unmounted (its sockets close), the
/// room writes they still had in flight landed (or `DRAIN_WRITES` passed),
/// then unlisted. False when it was not here.
pub async fn take_out(state: &AppState, name: &str) -> bool {
    let Some(tenant) = state.tenants.get(name) else {
        return false;
    };
    crate::protocol::unmount(state, name);
    if !tenant.writes.close_and_drain(DRAIN_WRITES).await {
        tracing::warn!(tenant = %name, "room writes still in flight after {DRAIN_WRITES:?}; taken out anyway");
    }
    state.tenants.remove(name);
    true
}
