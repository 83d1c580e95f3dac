//! Operations: `/healthz`, `/metrics`, and the demo page at `/demo`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/demo", get(demo))
        .route("/demo/", get(demo))
        .route("/demo/socket.io.min.js", get(demo_client))
}

/// 200 when every dependency answers, 503 otherwise (load balancers take
/// the node out of rotation but it keeps its connections).
async fn healthz(State(state): State<AppState>) -> Response {
    let store_ok = state.store.ping().await;
    let up = store_ok.is_ok();
    state
        .metrics
        .dependency_up
        .get_or_create(&vec![(
            "dependency",
            format!("store_{}", state.store.kind()),
        )])
        .set(up as i64);
    let body = json!({
        "status": if up { "ok" } else { "degraded" },
        "store": { "kind": state.store.kind(), "ok": up, "error": store_ok.err().map(|e| e.to_string()) },
        "tenants": state.tenants.all().len(),
        "uptime_secs": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.rooms.set(state.presence.total_rooms() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

const DEMO_PAGE: &str = include_str!("../../../examples/demo/index.html");
const DEMO_CLIENT: &str = include_str!("../../../examples/demo/socket.io.min.js");

async fn demo() -> Html<&'static str> {
    Html(DEMO_PAGE)
}

async fn demo_client() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        DEMO_CLIENT,
    )
        .into_response()
}
