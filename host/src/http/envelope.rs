//! The response envelope, the error type, and who is calling.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::ApiState;
use crate::error::StoreError;
use crate::tenant::{DEFAULT_TENANT, Tenant};

/// The API's status codes (docs/protocol.md, section 6.1).
pub mod status {
    pub const SUCCESS: u8 = 0;
    pub const USER_EXISTS: u8 = 1;
    pub const FAILED: u8 = 2;
    pub const SERVER_ERROR: u8 = 3;
    pub const PARAM_ERROR: u8 = 4;
    pub const USER_NOT_EXISTS: u8 = 5;
}

/// A successful answer: `{meta:{status:0,msg:"success"}, data}`.
pub struct Reply(pub Value);

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        Json(json!({ "meta": { "status": status::SUCCESS, "msg": "success" }, "data": self.0 }))
            .into_response()
    }
}

/// A refused or failed call. Protocol-level outcomes (user exists, ...)
/// answer HTTP 200, so business servers written for this contract keep
/// reading `meta.status`; a refused key is 401 as docs/protocol.md pins.
#[derive(Debug)]
pub struct ApiError {
    pub http: StatusCode,
    pub status: u8,
    pub msg: String,
}

impl ApiError {
    pub fn new(http: StatusCode, status: u8, msg: impl Into<String>) -> Self {
        ApiError {
            http,
            status,
            msg: msg.into(),
        }
    }
    pub fn param(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, status::PARAM_ERROR, msg)
    }
    pub fn key_refused(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, status::FAILED, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, status::FAILED, msg)
    }
    pub fn failed(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::OK, status::FAILED, msg)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error in an HTTP call");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            status::SERVER_ERROR,
            format!("server error: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.http,
            Json(
                json!({ "meta": { "status": self.status, "msg": self.msg }, "data": Value::Null }),
            ),
        )
            .into_response()
    }
}

pub type ApiResult = Result<Reply, ApiError>;

/// Who is calling an API of a tenant.
pub struct Caller {
    pub tenant: Arc<Tenant>,
    /// Called with the admin key (not just the tenant's key).
    pub is_admin: bool,
}

/// The key from `Authorization: Bearer <key>` or `?apiKey=`.
pub fn presented_key<'a>(
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| query.get("apiKey").map(String::as_str))
        .filter(|k| !k.is_empty())
}

/// Checks that the caller presented the admin key (header or `?apiKey=`).
pub async fn require_admin(
    state: &ApiState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<(), ApiError> {
    match presented_key(headers, q) {
        Some(k) if is_admin_key(state, k).await => Ok(()),
        Some(_) => Err(ApiError::key_refused("admin key refused")),
        None => Err(ApiError::key_refused(
            "admin key required: send `Authorization: Bearer <admin key>` or `?apiKey=`",
        )),
    }
}

/// The one refusal of a caller that is not let in, whatever the reason
/// (unknown tenant, wrong key, no key), so that a caller cannot probe which
/// tenants exist or whether a key belongs to another tenant.
const KEY_REFUSED: &str = "API key refused: send `Authorization: Bearer <key>` or `?apiKey=<key>` with a key of this tenant";

/// Resolves the tenant (`?tenant=` or `?site=`, default `default`) and checks
/// the caller's key: the tenant's API key, the admin key, or `uid`+`token`
/// of one of the tenant's `admin_uids` (a tenant admin user).
pub async fn caller(
    state: &ApiState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Caller, ApiError> {
    let name = query
        .get("tenant")
        .or_else(|| query.get("site"))
        .map(String::as_str)
        .unwrap_or(DEFAULT_TENANT);
    let key = presented_key(headers, query);
    let admin = match key {
        Some(k) => is_admin_key(state, k).await,
        None => false,
    };
    let Some(tenant) = state.services.tenants.get(name) else {
        // Don't tell a caller without a valid key which tenants exist.
        return Err(if admin {
            ApiError::not_found(format!("unknown tenant `{name}`"))
        } else {
            ApiError::key_refused(KEY_REFUSED)
        });
    };
    if admin {
        return Ok(Caller {
            tenant,
            is_admin: true,
        });
    }
    if let Some(k) = key {
        if tenant.accepts_key(k) {
            return Ok(Caller {
                tenant,
                is_admin: false,
            });
        }
        state.services.metrics.refuse(name, "api_key");
        return Err(ApiError::key_refused(KEY_REFUSED));
    }
    if let (Some(uid), Some(token)) = (query.get("uid"), query.get("token"))
        && tenant.config().admin_uids.iter().any(|a| a == uid)
        && let Some(user) = state.services.store.get_user(name, uid).await?
        && crate::auth::ct_eq(&user.token_hash, &crate::auth::sha256_hex(token))
    {
        return Ok(Caller {
            tenant,
            is_admin: false,
        });
    }
    state.services.metrics.refuse(name, "api_key");
    Err(ApiError::key_refused(KEY_REFUSED))
}

/// A request body as a JSON object: JSON, or `application/x-www-form-urlencoded`
/// (as many business servers post). Form fields named `a[]` or `a[0]`
/// collect into arrays; values that parse as JSON are taken as JSON.
pub fn body_object(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if body.is_empty() {
        return Ok(Map::new());
    }
    if ctype.starts_with("application/x-www-form-urlencoded") {
        let mut m = Map::new();
        for (k, v) in form_urlencoded::parse(body) {
            let value = serde_json::from_str::<Value>(&v)
                .ok()
                .filter(|j| !j.is_string())
                .unwrap_or(Value::String(v.into_owned()));
            match k.find('[') {
                Some(i) if k.ends_with(']') => {
                    let entry = m
                        .entry(k[..i].to_string())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(a) = entry {
                        a.push(value);
                    }
                }
                _ => match m.get_mut(k.as_ref()) {
                    Some(Value::Array(a)) => a.push(value),
                    Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
                    None => {
                        m.insert(k.into_owned(), value);
                    }
                },
            }
        }
        return Ok(m);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::param("the body must be a JSON object")),
        Err(e) => Err(ApiError::param(format!("the body is not valid JSON: {e}"))),
    }
}

/// Meta key of the admin key's hash.
pub const ADMIN_KEY_META: &str = "admin_key_sha256";

/// Is `key` the admin key?
pub async fn is_admin_key(state: &ApiState, key: &str) -> bool {
    match state.services.store.get_meta(ADMIN_KEY_META).await {
        Ok(Some(h)) => crate::auth::ct_eq(&h, &crate::auth::sha256_hex(key)),
        _ => false,
    }
}
