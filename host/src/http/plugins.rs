//! Admin REST API of tenant plugins (admin key only), under
//! `/api/tenants/{tenant}`:
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | POST | `/plugins/{name}` | upload a component (`application/wasm` body); manifest in the `x-hookwire-manifest` header or `?config=<json>` |
//! | GET | `/plugins` | list plugins, versions, hashes, the chain |
//! | PUT | `/chain` | `{"order":["a","b"]}` |
//! | POST | `/plugins/{name}/rollback` | active version → the previous one |
//! | PUT | `/plugins/{name}/config` | a new manifest (JSON body) = a new version |
//! | DELETE | `/plugins/{name}` | remove from the chain, delete all versions |
//! | POST | `/plugins/{name}/test` | dry run `{"hook":"on-msg","input":{...}}` |
//!
//! Every change is stored, then the tenant's chain is re-activated
//! ([`on_chain_changed`]); calls in flight finish on the old chain.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::{ApiError, ApiResult, Reply};
use crate::policy::HookContext;
use crate::runtime::{Hook, PluginError, PluginManifest};
use crate::tenant::Tenant;

/// Header carrying a JSON [`PluginManifest`] on upload.
pub const MANIFEST_HEADER: &str = "x-hookwire-manifest";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/tenants/{tenant}/plugins", axum::routing::get(list))
        .route(
            "/api/tenants/{tenant}/plugins/{name}",
            // The component size limit is checked while reading the body.
            post(upload)
                .delete(remove)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/tenants/{tenant}/plugins/{name}/rollback",
            post(rollback),
        )
        .route(
            "/api/tenants/{tenant}/plugins/{name}/config",
            put(set_config),
        )
        .route("/api/tenants/{tenant}/plugins/{name}/test", post(dry_run))
        .route("/api/tenants/{tenant}/chain", put(set_chain))
}

/// Re-activates the tenant's chain on this node after a change, and (with
/// `--redis`) announces it so every other node reloads it from the shared
/// store.
pub async fn on_chain_changed(state: &ApiState, tenant: &Arc<Tenant>) -> Result<(), ApiError> {
    if let Some(bus) = &state.bus {
        bus.announce_chain(&tenant.name());
    }
    state.plugins.activate(tenant).await.map_err(|e| {
        tracing::error!(tenant = %tenant.name(), error = %e, "plugin chain stored but not activated");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 3, format!("stored, but activation failed: {e}"))
    })
}

/// Checks the admin key (header or `?apiKey=`) and finds the tenant.
async fn admin_tenant(
    state: &ApiState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    tenant: &str,
) -> Result<Arc<Tenant>, ApiError> {
    super::envelope::require_admin(state, headers, query).await?;
    state
        .services
        .tenants
        .get(tenant)
        .ok_or_else(|| ApiError::not_found(format!("unknown tenant `{tenant}`")))
}

fn plugin_error(e: PluginError) -> ApiError {
    match e {
        PluginError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, 4, e.to_string())
        }
        PluginError::UnknownPlugin(_) | PluginError::Missing { .. } => {
            ApiError::not_found(e.to_string())
        }
        PluginError::Store(s) => s.into(),
        e => ApiError::param(e.to_string()),
    }
}

fn parse_manifest(text: &str, what: &str) -> Result<PluginManifest, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::param(format!("invalid {what}: {e}")))
}

async fn upload(
    State(state): State<ApiState>,
    Path((tenant, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let t = admin_tenant(&state, &headers, &query, &tenant).await?;
    let max = state.plugins.limits().max_component_bytes;
    let wasm = axum::body::to_bytes(body, max as usize + 1)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                4,
                format!("component is larger than {max} bytes"),
            )
        })?;
    let manifest = match (headers.get(MANIFEST_HEADER), query.get("config")) {
        (Some(h), _) => Some(parse_manifest(
            h.to_str()
                .map_err(|_| ApiError::param("manifest header is not text"))?,
            "manifest",
        )?),
        (None, Some(config)) => {
            let config: Value = serde_json::from_str(config)
                .map_err(|e| ApiError::param(format!("invalid config JSON: {e}")))?;
            Some(PluginManifest {
                config,
                ..Default::default()
            })
        }
        (None, None) => None,
    };
    let up = state
        .plugins
        .upload(&tenant, &name, &wasm, manifest)
        .await
        .map_err(plugin_error)?;
    on_chain_changed(&state, &t).await?;
    Ok(Reply(json!(up)))
}

async fn list(
    State(state): State<ApiState>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    admin_tenant(&state, &headers, &query, &tenant).await?;
    let listing = state.plugins.list(&tenant).await.map_err(plugin_error)?;
    Ok(Reply(json!(listing)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainBody {
    order: Vec<String>,
}

async fn set_chain(
    State(state): State<ApiState>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let t = admin_tenant(&state, &headers, &query, &tenant).await?;
    let body: ChainBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::param(format!("body must be {{\"order\":[\"name\",...]}}: {e}")))?;
    let chain = state
        .plugins
        .set_chain(&tenant, &body.order)
        .await
        .map_err(plugin_error)?;
    on_chain_changed(&state, &t).await?;
    Ok(Reply(
        json!({ "chain": chain.entries, "revision": chain.revision }),
    ))
}

async fn rollback(
    State(state): State<ApiState>,
    Path((tenant, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let t = admin_tenant(&state, &headers, &query, &tenant).await?;
    let entry = state
        .plugins
        .rollback(&tenant, &name)
        .await
        .map_err(plugin_error)?;
    on_chain_changed(&state, &t).await?;
    Ok(Reply(json!(entry)))
}

async fn set_config(
    State(state): State<ApiState>,
    Path((tenant, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let t = admin_tenant(&state, &headers, &query, &tenant).await?;
    let manifest = parse_manifest(
        std::str::from_utf8(&body).map_err(|_| ApiError::param("body is not UTF-8"))?,
        "manifest (body)",
    )?;
    let up = state
        .plugins
        .set_manifest(&tenant, &name, manifest)
        .await
        .map_err(plugin_error)?;
    on_chain_changed(&state, &t).await?;
    Ok(Reply(json!(up)))
}

async fn remove(
    State(state): State<ApiState>,
    Path((tenant, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let t = admin_tenant(&state, &headers, &query, &tenant).await?;
    state
        .plugins
        .remove(&tenant, &name)
        .await
        .map_err(plugin_error)?;
    on_chain_changed(&state, &t).await?;
    Ok(Reply(json!({ "name": name, "deleted": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    hook: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    ctx: Option<HookContext>,
}

async fn dry_run(
    State(state): State<ApiState>,
    Path((tenant, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    admin_tenant(&state, &headers, &query, &tenant).await?;
    let body: TestBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::param(format!(
            "body must be {{\"hook\":\"on-msg\",\"input\":{{...}}}}: {e}"
        ))
    })?;
    let hook = Hook::parse(&body.hook).ok_or_else(|| {
        ApiError::param(format!(
            "unknown hook `{}`: describe, authenticate, on-join, on-msg, storage-mode, route-push",
            body.hook
        ))
    })?;
    let run = state
        .plugins
        .dry_run(&tenant, &name, body.version, hook, body.input, body.ctx)
        .await
        .map_err(plugin_error)?;
    Ok(Reply(json!(run)))
}
