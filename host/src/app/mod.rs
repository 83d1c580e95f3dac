//! The application: the composition root ([`server`]: builds every
//! context and serves a node) and the tenant lifecycle ([`lifecycle`]),
//! written once. Dependencies point from here outwards: `app` uses `http`,
//! `cluster` and `protocol`, and none of them names `app`; what the cluster
//! bus hears ([`crate::cluster::BusEvents`]) and what the tenants API asks
//! of the lifecycle ([`crate::http::TenantLifecycle`]) come back through
//! traits that [`App`] implements.

pub mod lifecycle;
pub mod server;

use std::sync::Arc;

use crate::protocol::Services;
use crate::runtime::PluginRuntime;
use crate::store::TenantRecord;
use crate::tenant::Tenant;

/// What the tenant lifecycle works on: the protocol's [`Services`], the
/// plugin runtime and the cluster bus.
#[derive(Clone)]
pub struct App {
    pub services: Services,
    pub plugins: Arc<PluginRuntime>,
    /// Redis pub/sub, when `--redis` is set.
    pub bus: Option<Arc<crate::cluster::Bus>>,
}

/// What the cluster bus hears, handled by the application: pushes by the
/// protocol, tenant and chain changes by the tenant lifecycle.
#[async_trait::async_trait]
impl crate::cluster::BusEvents for App {
    async fn notification(&self, text: &str) {
        crate::protocol::push::notification(&self.services, text).await
    }
    async fn chain_changed(&self, tenant: &str) {
        lifecycle::chain_changed(self, tenant).await
    }
    async fn tenant_changed(&self, tenant: &str) {
        lifecycle::tenant_changed(self, tenant).await
    }
    fn tapped(&self, tenant: &str, room: &str, json: &str) {
        self.services.taps.deliver(tenant, room, json)
    }
    fn tap_watched(&self, tenant: &str, room: &str) {
        self.services.taps.watched_elsewhere(tenant, room)
    }
}

/// What the tenants API asks of the lifecycle.
#[async_trait::async_trait]
impl crate::http::TenantLifecycle for App {
    async fn bring_in(&self, rec: TenantRecord) -> Arc<Tenant> {
        lifecycle::bring_in(self, rec).await
    }
    async fn take_out(&self, name: &str) -> bool {
        lifecycle::take_out(self, name).await
    }
}
