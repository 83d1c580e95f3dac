//! The account API: tokens for users, created by the tenant's
//! business server. Only the SHA-256 of a token is stored.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::ApiState;
use super::envelope::status;
use super::{ApiError, ApiResult, Reply, body_object, caller};
use crate::auth;
use crate::clock::now_ms;
use crate::protocol::wire::id_string;
use crate::store::UserRecord;

async fn issue(
    state: &ApiState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &Bytes,
    create: bool,
) -> ApiResult {
    let caller = caller(state, headers, query).await?;
    let body = body_object(headers, body)?;
    let uid =
        id_string(body.get("uid")).or_else(|| query.get("uid").filter(|u| !u.is_empty()).cloned());
    let Some(uid) = uid else {
        return Err(ApiError::param("uid is required"));
    };
    let tenant = caller.tenant.name();
    let existing = state.services.store.get_user(&tenant, &uid).await?;
    match (create, &existing) {
        (true, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::OK,
                status::USER_EXISTS,
                "user exists",
            ));
        }
        (false, None) => {
            return Err(ApiError::new(
                StatusCode::OK,
                status::USER_NOT_EXISTS,
                "user not exists",
            ));
        }
        _ => {}
    }
    let token = auth::random_secret();
    let created_ms = existing.map(|u| u.created_ms).unwrap_or_else(now_ms);
    state
        .services
        .store
        .put_user(
            &tenant,
            &UserRecord {
                uid: uid.clone(),
                token_hash: auth::sha256_hex(&token),
                created_ms,
            },
        )
        .await?;
    Ok(Reply(json!({ "uid": uid, "token": token })))
}

/// `POST /user/create_token {uid}` → `{uid, token}`.
pub async fn create_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    issue(&state, &headers, &q, &body, true).await
}

/// `POST /user/refresh_token {uid}` → a new token; the old one stops working.
pub async fn refresh_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    issue(&state, &headers, &q, &body, false).await
}
