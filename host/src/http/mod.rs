//! HTTP API on the same port as socket.io.
//!
//! - [`account`]: `/user/create_token` and `/user/refresh_token`.
//! - [`admin`]: `/admin/monitor/*` and `/admin/system/*`.
//! - [`send`]: the business server's `POST /send`.
//! - [`tenants`]: the admin REST API for tenants and their keys.
//! - [`plugins`]: the admin REST API for tenants' plugin chains.
//! - [`ops`]: `/healthz`, `/metrics`, `/demo`.
//! - [`console`]: the browser admin console at `/console`.
//!
//! Every answer is the envelope `{meta:{status,msg}, data}` (docs/protocol.md,
//! section 6.1).

pub mod account;
pub mod admin;
pub mod console;
mod envelope;
pub mod ops;
pub mod plugins;
pub mod send;
pub mod tenants;

pub use envelope::{ADMIN_KEY_META, ApiError, ApiResult, Caller, Reply, body_object, caller};

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::{get, post};

use crate::config::Config;
use crate::protocol::Services;
use crate::runtime::PluginRuntime;
use crate::store::TenantRecord;
use crate::tenant::Tenant;

/// What the HTTP API is handed: the protocol's [`Services`] (pushes,
/// presence, the store), the node's configuration, the plugin runtime, the
/// cluster bus, and the tenant lifecycle it asks to bring tenants in and
/// take them out.
#[derive(Clone)]
pub struct ApiState {
    pub services: Services,
    pub config: Arc<Config>,
    pub plugins: Arc<PluginRuntime>,
    /// Redis pub/sub, when `--redis` is set.
    pub bus: Option<Arc<crate::cluster::Bus>>,
    pub lifecycle: Arc<dyn TenantLifecycle>,
    pub started: Instant,
}

/// A tenant brought in or taken out on this node, as the application does
/// it for every path (the tenants API is one of them). The tenants API
/// holds the tenants' lifecycle lock around each call.
#[async_trait::async_trait]
pub trait TenantLifecycle: Send + Sync {
    /// Loads the chain, mounts the namespace, then lists the tenant.
    async fn bring_in(&self, rec: TenantRecord) -> Arc<Tenant>;
    /// Unmounts, drains room writes, unlists; false when it was not here.
    async fn take_out(&self, name: &str) -> bool;
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/user/create_token", post(account::create_token))
        .route("/user/refresh_token", post(account::refresh_token))
        .route("/admin/monitor/stat", get(admin::stat))
        .route("/admin/monitor/room_users", get(admin::room_users))
        .route("/admin/monitor/room_msgs", get(admin::room_msgs))
        .route("/admin/monitor/rooms", get(admin::rooms))
        .route("/admin/monitor/tap", get(admin::tap))
        .route("/admin/system/kick", post(admin::kick))
        .route("/admin/system/push", post(admin::push))
        .route("/admin/system/config", post(admin::config))
        .route(
            "/admin/system/clear_room_msgs",
            post(admin::clear_room_msgs),
        )
        .route("/admin/system/clear_room_msg", post(admin::clear_room_msgs))
        // A push may be as large as a socket.io packet (docs/cluster.md),
        // not axum's 2 MB default.
        .route(
            "/send",
            post(send::send).layer(axum::extract::DefaultBodyLimit::max(
                usize::try_from(state.config.max_payload_bytes).unwrap_or(usize::MAX),
            )),
        )
        .merge(tenants::routes())
        .merge(plugins::routes())
        .merge(ops::routes())
        .merge(console::routes())
        .with_state(state)
}

/// The CORS policy (HTTP API and socket.io polling) for `allowed` (see
/// [`Config::cors_allowed_origins`](crate::config::Config::cors_allowed_origins)).
/// An empty list sends no CORS headers; a listed origin gets
/// `access-control-allow-origin` of itself (with `Vary: Origin`), `*`
/// gets `*`. Never with credentials: the API reads its keys from
/// `Authorization` and `?apiKey=`, never from cookies, so a page has no
/// reason to send them.
pub fn cors(allowed: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if allowed.is_empty() {
        return None;
    }
    let origin = if allowed.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Browsers send an origin in the normalized form; config entries
        // were validated at startup.
        AllowOrigin::list(
            allowed
                .iter()
                .filter_map(|o| crate::tenant::normalize_origin(o))
                .filter_map(|o| HeaderValue::from_str(&o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
