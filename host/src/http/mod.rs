//! HTTP API on the same port as socket.io.
//!
//! - [`account`]: `/user/create_token` and `/user/refresh_token`.
//! - [`admin`]: `/admin/monitor/*` and `/admin/system/*`.
//! - [`send`]: the business server's `POST /send`.
//! - [`tenants`]: the admin REST API for tenants and their keys.
//! - [`plugins`]: the admin REST API for tenants' plugin chains.
//! - [`ops`]: `/healthz`, `/metrics`, `/demo`.
//!
//! Every answer is the envelope `{meta:{status,msg}, data}` (docs/protocol.md,
//! section 6.1).

pub mod account;
pub mod admin;
mod envelope;
pub mod ops;
pub mod plugins;
pub mod send;
pub mod tenants;

pub use envelope::{ApiError, ApiResult, Caller, Reply, body_object, caller};

use axum::Router;
use axum::routing::{get, post};

use crate::app::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/user/create_token", post(account::create_token))
        .route("/user/refresh_token", post(account::refresh_token))
        .route("/admin/monitor/stat", get(admin::stat))
        .route("/admin/monitor/room_users", get(admin::room_users))
        .route("/admin/monitor/room_msgs", get(admin::room_msgs))
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
