//! The business server's `POST /send?site=&apiKey=&resync=`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::ApiState;
use super::{ApiError, ApiResult, Reply, body_object, caller};
use crate::policy::PushRequest;
use crate::protocol::push::{self, PushError};
use crate::protocol::wire::id_string;

/// A field that may be one value or a list (form posts send one `rooms=x`).
fn list(v: Option<Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    }
}

pub async fn send(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let mut body = body_object(&headers, &body)?;
    let rooms: Vec<String> = list(body.remove("rooms"))
        .iter()
        .filter_map(|r| id_string(Some(r)))
        .collect();
    if rooms.is_empty() {
        return Err(ApiError::param(
            "rooms is required: a non-empty list of room names",
        ));
    }
    let event = match body.remove("event") {
        Some(Value::String(e)) if !e.is_empty() => e,
        _ => return Err(ApiError::param("event is required")),
    };
    if matches!(
        event.as_str(),
        "connect" | "disconnect" | "disconnecting" | "_batch" | "_resync" | "_settings"
    ) {
        return Err(ApiError::param(format!("event `{event}` is reserved")));
    }
    let args = list(body.remove("args"));
    let resync = q.get("resync").is_some_and(|r| r == "true" || r == "1");
    match push::send(
        &state.services,
        &c.tenant,
        PushRequest { rooms, event, args },
        resync,
    )
    .await
    {
        Ok(report) => Ok(Reply(serde_json::to_value(report).unwrap_or(Value::Null))),
        Err(PushError::Rejected(reason)) => Err(ApiError::new(
            StatusCode::OK,
            super::envelope::status::FAILED,
            reason,
        )),
        Err(PushError::Store(e)) => Err(e.into()),
    }
}
