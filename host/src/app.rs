//! The application context: what the protocol, the HTTP API and the
//! tenant lifecycle are handed ([`AppState`]), built by the composition
//! root ([`crate::server`]) and never reaching back to it.

use std::sync::Arc;
use std::time::Instant;

use crate::auth;
use crate::cluster::adapter::Io;
use crate::config::Config;
use crate::protocol::{AuthLimiter, Presence};
use crate::runtime::PluginRuntime;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::tenant::TenantRegistry;

/// Meta key of the admin key's hash.
pub(crate) const ADMIN_KEY_META: &str = "admin_key_sha256";

/// Everything a handler may need, passed explicitly (no globals).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub tenants: Arc<TenantRegistry>,
    pub io: Io,
    pub metrics: Arc<Metrics>,
    pub presence: Arc<Presence>,
    pub auth_limiter: Arc<AuthLimiter>,
    pub plugins: Arc<PluginRuntime>,
    /// Redis pub/sub, when `--redis` is set.
    pub bus: Option<Arc<crate::cluster::Bus>>,
    /// Puts each device's push acks in order (node-local).
    pub push_order: Arc<crate::protocol::push::AckOrder>,
    /// Relays each room's stored `msg`s after their commit, in order.
    pub relays: Arc<crate::protocol::relay::RoomRelays>,
    pub started: Instant,
}

/// What the cluster bus hears, handled by the application: pushes by the
/// protocol, tenant and chain changes by the tenant lifecycle.
#[async_trait::async_trait]
impl crate::cluster::BusEvents for AppState {
    async fn notification(&self, text: &str) {
        crate::protocol::push::notification(self, text).await
    }
    async fn chain_changed(&self, tenant: &str) {
        crate::lifecycle::chain_changed(self, tenant).await
    }
    async fn tenant_changed(&self, tenant: &str) {
        crate::lifecycle::tenant_changed(self, tenant).await
    }
}

/// Is `key` the admin key?
pub async fn is_admin_key(state: &AppState, key: &str) -> bool {
    match state.store.get_meta(ADMIN_KEY_META).await {
        Ok(Some(h)) => auth::ct_eq(&h, &auth::sha256_hex(key)),
        _ => false,
    }
}
