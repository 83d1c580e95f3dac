//! Admin REST API for tenants (admin key only):
//!
//! | call | does |
//! | --- | --- |
//! | `GET /api/tenants` | list tenants with their config |
//! | `POST /api/tenants {name, config?}` | create; answers the first API key (shown once) |
//! | `GET /api/tenants/{name}` | one tenant |
//! | `PATCH /api/tenants/{name} {..config fields}` | change config; takes effect at once |
//! | `DELETE /api/tenants/{name}` | delete with all its data; its sockets are disconnected |
//! | `POST /api/tenants/{name}/keys {keep_old?}` | new API key; old ones stop working unless `keep_old` |

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::ApiState;
use super::envelope::require_admin;
use super::{ApiError, ApiResult, Reply, body_object};
use crate::auth;
use crate::clock::now_ms;
use crate::store::TenantRecord;
use crate::tenant::{DEFAULT_TENANT, TenantConfig, valid_tenant_name};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/tenants", get(list).post(create))
        .route(
            "/api/tenants/{name}",
            get(show).patch(update).delete(remove),
        )
        .route("/api/tenants/{name}/keys", post(rotate_key))
}

fn view(rec: &TenantRecord) -> Value {
    json!({
        "name": rec.name,
        "namespace": crate::tenant::namespace_of(&rec.name),
        "config": rec.config,
        "api_keys": rec.api_key_hashes.len(),
        "created_ms": rec.created_ms,
    })
}

/// Applies a partial config (JSON object) over `base`; unknown fields are
/// refused with their name.
fn merged_config(
    node: &crate::config::Config,
    base: &TenantConfig,
    patch: &Map<String, Value>,
) -> Result<TenantConfig, ApiError> {
    let mut v = serde_json::to_value(base).expect("config serialises");
    if let Value::Object(m) = &mut v {
        for (k, val) in patch {
            m.insert(k.clone(), val.clone());
        }
    }
    let cfg: TenantConfig = serde_json::from_value(v)
        .map_err(|e| ApiError::param(format!("invalid tenant config: {e}")))?;
    let checked = if patch.contains_key("max_msg_bytes") {
        node.tenant_fits(&cfg)
    } else {
        cfg.validate()
    };
    checked.map_err(|e| ApiError::param(format!("invalid tenant config: {e}")))?;
    Ok(cfg)
}

type Q = Query<HashMap<String, String>>;

async fn list(State(state): State<ApiState>, headers: HeaderMap, Query(q): Q) -> ApiResult {
    require_admin(&state, &headers, &q).await?;
    let tenants: Vec<Value> = state
        .services
        .tenants
        .all()
        .iter()
        .map(|t| view(&t.record()))
        .collect();
    Ok(Reply(Value::Array(tenants)))
}

async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    body: Bytes,
) -> ApiResult {
    require_admin(&state, &headers, &q).await?;
    let body = body_object(&headers, &body)?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !valid_tenant_name(&name) {
        return Err(ApiError::param(
            "name must be 1-64 characters of a-z, 0-9, `-`, `_` and not a reserved path (api, admin, user, demo, console, socket.io)",
        ));
    }
    if state.services.tenants.get(&name).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            super::envelope::status::FAILED,
            format!("tenant `{name}` exists"),
        ));
    }
    let patch = match body.get("config") {
        Some(Value::Object(m)) => m.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(ApiError::param("config must be an object")),
    };
    let config = merged_config(&state.config, &state.config.tenant_defaults, &patch)?;
    let key = auth::random_secret();
    let rec = TenantRecord {
        name: name.clone(),
        config,
        api_key_hashes: vec![auth::sha256_hex(&key)],
        created_ms: now_ms(),
        version: 1,
    };
    let _lifecycle = state.services.tenants.lifecycle.lock().await;
    // Created only if no node created it meanwhile.
    if !state.services.store.swap_tenant(&rec, None).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            super::envelope::status::FAILED,
            format!("tenant `{name}` exists"),
        ));
    }
    state.lifecycle.bring_in(rec.clone()).await;
    announce(&state, &name);
    tracing::info!(tenant = %name, "tenant created");
    let mut v = view(&rec);
    v["api_key"] = Value::String(key);
    Ok(Reply(v))
}

/// Attempts of a tenant change before it gives up on a record that other
/// nodes keep changing.
const CHANGE_ATTEMPTS: usize = 16;

/// Changes tenant `name` as a read-modify-write of the store's current
/// record: `change` is applied to it and the result stored only if nobody
/// changed the record meanwhile (its version), else it starts over from the
/// newer record. So a change made on one node is never undone by another
/// node writing back its older copy. Then applied here and announced.
pub async fn change_tenant(
    state: &ApiState,
    name: &str,
    mut change: impl FnMut(&mut TenantRecord) -> Result<(), ApiError>,
) -> Result<TenantRecord, ApiError> {
    for _ in 0..CHANGE_ATTEMPTS {
        let Some(current) = state.services.store.get_tenant(name).await? else {
            return Err(ApiError::not_found(format!("unknown tenant `{name}`")));
        };
        let mut rec = current.clone();
        change(&mut rec)?;
        rec.version = current.version + 1;
        if state
            .services
            .store
            .swap_tenant(&rec, Some(current.version))
            .await?
        {
            if let Some(t) = state.services.tenants.get(name) {
                t.follow(rec.clone());
            }
            announce(state, name);
            return Ok(rec);
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        super::envelope::status::FAILED,
        format!("tenant `{name}` kept changing during this change; retry"),
    ))
}

/// Other nodes (with `--redis`) reload the tenant from the shared store.
fn announce(state: &ApiState, name: &str) {
    if let Some(bus) = &state.bus {
        bus.announce_tenant(name);
    }
}

fn tenant_or_404(
    state: &ApiState,
    name: &str,
) -> Result<std::sync::Arc<crate::tenant::Tenant>, ApiError> {
    state
        .services
        .tenants
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("unknown tenant `{name}`")))
}

async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    Path(name): Path<String>,
) -> ApiResult {
    require_admin(&state, &headers, &q).await?;
    Ok(Reply(view(&tenant_or_404(&state, &name)?.record())))
}

async fn update(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    require_admin(&state, &headers, &q).await?;
    tenant_or_404(&state, &name)?;
    let body = body_object(&headers, &body)?;
    // Accept both `{..fields}` and `{config: {..fields}}`.
    let patch = match body.get("config") {
        Some(Value::Object(m)) if body.len() == 1 => m.clone(),
        _ => body,
    };
    let rec = change_tenant(&state, &name, |rec| {
        rec.config = merged_config(&state.config, &rec.config, &patch)?;
        Ok(())
    })
    .await?;
    tracing::info!(tenant = %name, "tenant config changed");
    Ok(Reply(view(&rec)))
}

async fn remove(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    Path(name): Path<String>,
) -> ApiResult {
    require_admin(&state, &headers, &q).await?;
    if name == DEFAULT_TENANT {
        return Err(ApiError::param("the default tenant cannot be deleted"));
    }
    tenant_or_404(&state, &name)?;
    let _lifecycle = state.services.tenants.lifecycle.lock().await;
    // What its closing sockets are still writing lands before the delete.
    state.lifecycle.take_out(&name).await;
    state.services.store.delete_tenant(&name).await?;
    announce(&state, &name);
    tracing::info!(tenant = %name, "tenant deleted");
    Ok(Reply(json!({ "name": name, "deleted": true })))
}

async fn rotate_key(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    require_admin(&state, &headers, &q).await?;
    tenant_or_404(&state, &name)?;
    let body = body_object(&headers, &body)?;
    let keep_old = body
        .get("keep_old")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let key = auth::random_secret();
    let rec = change_tenant(&state, &name, |rec| {
        if !keep_old {
            rec.api_key_hashes.clear();
        }
        rec.api_key_hashes.push(auth::sha256_hex(&key));
        Ok(())
    })
    .await?;
    tracing::info!(tenant = %name, keep_old, "tenant API key rotated");
    Ok(Reply(
        json!({ "name": name, "api_key": key, "api_keys": rec.api_key_hashes.len() }),
    ))
}
