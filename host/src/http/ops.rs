//! Operations: `/healthz`, `/metrics`, and the demo page at `/demo`.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/cluster/nodes", get(nodes))
        .route("/demo", get(demo))
        .route("/demo/", get(demo))
        .route("/demo/socket.io.min.js", get(demo_client))
}

/// A health check answers in bounded time even when a dependency hangs.
const STORE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// 200 when every dependency answers (the store, and Redis with
/// `--redis`), 503 otherwise: load balancers take the node out of rotation
/// but it keeps its connections, and the body says what is down.
async fn healthz(State(state): State<ApiState>) -> Response {
    let store_ok = match tokio::time::timeout(STORE_CHECK, state.services.store.ping()).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the store did not answer within {} s",
            STORE_CHECK.as_secs()
        )),
    };
    let store_up = store_ok.is_ok();
    set_up(
        &state,
        &format!("store_{}", state.services.store.kind()),
        store_up,
    );
    let redis = match &state.bus {
        Some(bus) => {
            let r = redis_ping(bus.hub()).await;
            bus.hub().set_up(r.is_ok());
            set_up(&state, "redis_pubsub", r.is_ok());
            Some(json!({ "ok": r.is_ok(), "error": r.err() }))
        }
        None => None,
    };
    let up = store_up && redis.as_ref().is_none_or(|r| r["ok"] == true);
    let mut body = json!({
        "status": if up { "ok" } else { "degraded" },
        "store": { "kind": state.services.store.kind(), "ok": store_up, "error": store_ok.err() },
        "tenants": state.services.tenants.all().len(),
        "uptime_secs": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(r) = redis {
        body["redis"] = r;
    }
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `GET /api/cluster/nodes` (admin key): every node of the cluster with its
/// last heartbeat, whether it is alive (heard from within the time after
/// which other nodes sweep it) and its connections; `self` marks the node
/// that answered. Without Redis, this node alone.
async fn nodes(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> super::ApiResult {
    super::envelope::require_admin(&state, &headers, &q).await?;
    let tenants: Vec<String> = state
        .services
        .tenants
        .all()
        .iter()
        .map(|t| t.name())
        .collect();
    let (nodes, me) = state.services.presence.nodes(&tenants).await;
    let now = crate::clock::now_ms();
    let expiry = crate::cluster::presence::NODE_EXPIRY.as_millis() as u64;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|(node, at, connections)| {
            let age = now.saturating_sub(at);
            json!({
                "node": node,
                "self": node == me,
                "last_seen_ms": at,
                "age_ms": age,
                "alive": age < expiry,
                "connections": connections,
            })
        })
        .collect();
    Ok(super::Reply(json!({ "nodes": nodes, "expiry_ms": expiry })))
}

fn set_up(state: &ApiState, dependency: &str, up: bool) {
    state
        .services
        .metrics
        .dependency_up
        .get_or_create(&vec![("dependency", dependency.to_string())])
        .set(up as i64);
}

async fn redis_ping(hub: &crate::cluster::hub::RedisHub) -> Result<(), String> {
    let mut conn = hub.conn();
    let ping = redis::cmd("PING").clone();
    match tokio::time::timeout(
        std::time::Duration::from_secs(1),
        ping.query_async::<String>(&mut conn),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("redis did not answer within 1 s".into()),
    }
}

async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(want) = &state.config.metrics_key {
        let given =
            super::envelope::presented_key(&headers, &Default::default()).map(str::to_owned);
        let allowed = match given.as_deref() {
            Some(k) => {
                crate::auth::ct_eq(&crate::auth::sha256_hex(k), &crate::auth::sha256_hex(want))
                    || super::envelope::is_admin_key(&state, k).await
            }
            None => false,
        };
        if !allowed {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics key refused: send `Authorization: Bearer <metrics key>`\n",
            )
                .into_response();
        }
    }
    state
        .services
        .metrics
        .rooms
        .set(state.services.presence.total_rooms() as i64);
    if let Some(bus) = &state.bus {
        set_up(&state, "redis_pubsub", bus.hub().is_up());
        let dropped = bus.hub().dropped.load(std::sync::atomic::Ordering::Relaxed);
        state
            .services
            .metrics
            .cluster_publish_dropped
            .set(dropped as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.services.metrics.render(),
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
