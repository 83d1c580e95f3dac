//! The admin API: monitor and system calls of one tenant.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::ApiState;
use super::{ApiError, ApiResult, Reply, body_object, caller};
use crate::protocol::wire::id_string;
use crate::store::PageRequest;

type Q = Query<HashMap<String, String>>;

fn room_param(
    q: &HashMap<String, String>,
    body: Option<&serde_json::Map<String, Value>>,
) -> Result<String, ApiError> {
    body.and_then(|b| id_string(b.get("roomId")))
        .or_else(|| q.get("roomId").filter(|r| !r.trim().is_empty()).cloned())
        .ok_or_else(|| ApiError::param("roomId is required"))
}

/// `GET /admin/monitor/stat`.
pub async fn stat(State(state): State<ApiState>, headers: HeaderMap, Query(q): Q) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let name = c.tenant.name();
    let (users, rooms, sockets) = state.services.presence.stat(&name).await;
    Ok(Reply(json!({
        "tenant": name,
        "online_user_count": users,
        "online_room_count": rooms,
        "online_socket_count": sockets,
        "uptime_secs": state.started.elapsed().as_secs(),
    })))
}

/// `GET /admin/monitor/room_users?roomId=` → `{users:[{uid}]}` (dummies are invisible).
pub async fn room_users(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let room = room_param(&q, None)?;
    let users: Vec<Value> = state
        .services
        .presence
        .room_users(&c.tenant.name(), &room)
        .await
        .into_iter()
        .map(|u| json!({ "uid": u }))
        .collect();
    Ok(Reply(json!({ "users": users })))
}

/// `GET /admin/monitor/room_msgs?roomId=&offset=` → `{msgs:[{data,ts,uid}], offset, next}`.
pub async fn room_msgs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let room = room_param(&q, None)?;
    let offset = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let cfg = c.tenant.config();
    let req = PageRequest::count(offset, cfg.sync_page_size.max(1))
        .bytes(cfg.sync_page_bytes)
        .updates_after(q.get("cursor").cloned());
    let page = state
        .services
        .store
        .room_read(&c.tenant.name(), &room, req)
        .await?;
    let next = page.has_next();
    let cursor = page.next_cursor(q.get("cursor").map(String::as_str));
    let msgs: Vec<Value> = page
        .inserts
        .into_iter()
        .map(|(_, e)| e)
        .chain(page.updates)
        .map(|e| json!({ "data": serde_json::from_str::<Value>(&e.msg).unwrap_or(Value::Null), "ts": e.ts, "uid": e.uid }))
        .collect();
    let mut out = json!({ "msgs": msgs, "offset": page.next_offset, "next": u8::from(next), "epoch": page.epoch });
    if let Some(c) = cursor {
        // Update values remain: pass it back as `cursor` to continue.
        out["cursor"] = Value::String(c);
    }
    Ok(Reply(out))
}

/// `GET /admin/monitor/rooms?limit=` → `{rooms:[{roomId, users, sockets}],
/// total, truncated}`: rooms with visible members on every node, by name.
pub async fn rooms(State(state): State<ApiState>, headers: HeaderMap, Query(q): Q) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let limit = match q.get("limit") {
        None => ROOMS_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=ROOMS_LIMIT).contains(n))
            .ok_or_else(|| ApiError::param(format!("limit must be 1..={ROOMS_LIMIT}")))?,
    };
    let (rooms, total) = state.services.presence.rooms(&c.tenant.name(), limit).await;
    let rooms: Vec<Value> = rooms
        .into_iter()
        .map(|(r, users, sockets)| json!({ "roomId": r, "users": users, "sockets": sockets }))
        .collect();
    let truncated = rooms.len() < total;
    Ok(Reply(
        json!({ "rooms": rooms, "total": total, "truncated": truncated }),
    ))
}

/// `GET /admin/monitor/tap?roomId=` (admin key only): the room's `msg`s as
/// they are relayed (by every node of a cluster), as server-sent events: `msg` with the relayed
/// JSON, `dropped` with `{dropped: n}` once a second when the watcher's rate
/// ([`TAP_RATE`](crate::protocol::tap::TAP_RATE) a second) or backlog was
/// passed. Read-only; the stream ends when the node shuts down.
pub async fn tap(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
) -> Result<axum::response::Response, ApiError> {
    use crate::protocol::tap::{TAP_RATE, Tap, TapError};
    use axum::response::IntoResponse;
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;

    let c = caller(&state, &headers, &q).await?;
    if !c.is_admin {
        return Err(ApiError::key_refused(
            "a live tap needs the admin key: it shows every user's messages",
        ));
    }
    let room = room_param(&q, None)?;
    let tap = state
        .services
        .taps
        .watch(&c.tenant.name(), &room)
        .map_err(|e| match e {
            TapError::Busy => ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                super::envelope::status::FAILED,
                e.to_string(),
            ),
            TapError::Closed => ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                super::envelope::status::FAILED,
                e.to_string(),
            ),
        })?;

    /// One watcher's stream: its tap, this second's count and what it dropped.
    struct Watch {
        tap: Tap,
        second: tokio::time::Instant,
        sent: u32,
        dropped: u64,
        /// Arrived as a drop report was due: goes out after the report.
        pending: Option<crate::protocol::tap::Tapped>,
    }
    let start = Watch {
        tap,
        second: tokio::time::Instant::now(),
        sent: 0,
        dropped: 0,
        pending: None,
    };
    let events = futures::stream::unfold(start, |mut w| async move {
        loop {
            let got = match w.pending.take() {
                Some(text) => Ok(text),
                None => w.tap.rx.recv().await,
            };
            let now = tokio::time::Instant::now();
            if now.duration_since(w.second) >= std::time::Duration::from_secs(1) {
                w.second = now;
                w.sent = 0;
                if w.dropped > 0 {
                    let n = std::mem::take(&mut w.dropped);
                    let dropped = Event::default()
                        .event("dropped")
                        .data(json!({ "dropped": n }).to_string());
                    match got {
                        Ok(text) => w.pending = Some(text),
                        Err(RecvError::Lagged(k)) => w.dropped += k,
                        Err(RecvError::Closed) => {}
                    }
                    return Some((Ok::<_, std::convert::Infallible>(dropped), w));
                }
            }
            match got {
                Ok(text) if w.sent < TAP_RATE => {
                    w.sent += 1;
                    return Some((Ok(Event::default().event("msg").data(&*text)), w));
                }
                Ok(_) => w.dropped += 1,
                Err(RecvError::Lagged(k)) => w.dropped += k,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Most rooms one `rooms` answer lists.
const ROOMS_LIMIT: usize = 1000;

/// `POST /admin/system/kick {uid, reason?}` → the uid's sockets on every
/// node get `kickout` and are disconnected.
pub async fn kick(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    body: Bytes,
) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let body = body_object(&headers, &body)?;
    let uid = id_string(body.get("uid"))
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::param("uid is required"))?;
    let reason = match body.get("reason") {
        None | Some(Value::Null) => "kicked by an administrator".to_string(),
        Some(Value::String(r)) if !r.is_empty() && r.len() <= 200 => r.clone(),
        Some(_) => return Err(ApiError::param("reason must be a string of 1..=200 bytes")),
    };
    crate::protocol::rooms::kick(&state.services, &c.tenant.namespace(), &uid, &reason).await;
    Ok(Reply(json!({ "uid": uid })))
}

/// `POST /admin/system/push {roomId, content}` → the room gets `system` with `content`.
pub async fn push(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    body: Bytes,
) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let body = body_object(&headers, &body)?;
    let room = room_param(&q, Some(&body))?;
    let content = body
        .get("content")
        .cloned()
        .ok_or_else(|| ApiError::param("content is required"))?;
    let ns = state
        .services
        .io
        .of(c.tenant.namespace())
        .ok_or_else(|| ApiError::failed("tenant namespace is not mounted"))?;
    let _ = ns
        .to(crate::protocol::push_targets(
            &c.tenant.config().user_room_prefix,
            [&room],
        ))
        .emit("system", &content)
        .await;
    Ok(Reply(Value::Null))
}

/// `POST /admin/system/config {forceUserAuth}`.
pub async fn config(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    body: Bytes,
) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let body = body_object(&headers, &body)?;
    let force = match body
        .get("forceUserAuth")
        .or_else(|| body.get("force_user_auth"))
    {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        _ => return Err(ApiError::param("forceUserAuth (true or false) is required")),
    };
    super::tenants::change_tenant(&state, &c.tenant.name(), |rec| {
        rec.config.force_user_auth = force;
        Ok(())
    })
    .await?;
    tracing::info!(tenant = %c.tenant.name(), force_user_auth = force, "tenant config changed");
    Ok(Reply(json!({ "forceUserAuth": force })))
}

/// `POST /admin/system/clear_room_msgs {roomId}` (also `/clear_room_msg`).
pub async fn clear_room_msgs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Q,
    body: Bytes,
) -> ApiResult {
    let c = caller(&state, &headers, &q).await?;
    let body = body_object(&headers, &body)?;
    let room = room_param(&q, Some(&body))?;
    let epoch = state
        .services
        .store
        .room_clear(&c.tenant.name(), &room)
        .await?;
    Ok(Reply(json!({ "roomId": room, "epoch": epoch })))
}
