//! The application context: what the protocol, the HTTP API and the
//! tenant lifecycle are handed ([`AppState`]), built by the composition
//! root ([`crate::server`]) and never reaching back to it.

use std::sync::Arc;
use std::time::Instant;

use crate::auth;
use crate::config::Config;
use crate::protocol::Services;
use crate::runtime::PluginRuntime;

/// Meta key of the admin key's hash.
pub(crate) const ADMIN_KEY_META: &str = "admin_key_sha256";

/// What the HTTP API and the tenant lifecycle are handed, passed
/// explicitly (no globals): the protocol's [`Services`] (the only part the
/// session protocol sees) and the node's configuration, plugin runtime and
/// cluster bus.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub config: Arc<Config>,
    pub plugins: Arc<PluginRuntime>,
    /// Redis pub/sub, when `--redis` is set.
    pub bus: Option<Arc<crate::cluster::Bus>>,
    pub started: Instant,
}

/// What the cluster bus hears, handled by the application: pushes by the
/// protocol, tenant and chain changes by the tenant lifecycle.
#[async_trait::async_trait]
impl crate::cluster::BusEvents for AppState {
    async fn notification(&self, text: &str) {
        crate::protocol::push::notification(&self.services, text).await
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
    match state.services.store.get_meta(ADMIN_KEY_META).await {
        Ok(Some(h)) => auth::ct_eq(&h, &auth::sha256_hex(key)),
        _ => false,
    }
}
