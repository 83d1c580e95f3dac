//! The room-sync events: `authenticate`, `join`, `msg`, `sync`, `leave`
//! and the disconnect announcements. See docs/protocol.md for the wire
//! contract each handler implements.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::adapter::{Ack, Socket};
use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::refusal::Refusal;
use super::relay::Relay;
use super::session::{JoinedRoom, Session, SyncCursor, disconnect_soon};
use super::wire::{self, id_string, ok};
use super::{device_room, push, sync_room};
use crate::app::AppState;
use crate::clock::now_ms;
use crate::error::HookError;
use crate::policy::{
    AuthRequest, AuthVerdict, Hook, JoinRequest, JoinVerdict, MsgEvent, MsgVerdict, StorageMode,
};
use crate::store::{PageRequest, RoomEntry, RoomWrite};

/// Sends a reply on `event` and, when the client passed a callback, to it.
pub fn reply<T: serde::Serialize + ?Sized>(socket: &Socket, ack: Option<Ack>, event: &str, v: &T) {
    let _ = socket.emit(event, v);
    if let Some(a) = ack {
        let _ = a.send(v);
    }
}

/// Sync pages compressed at once, process-wide: gzip is CPU work, so more
/// than the cores would only hold more pages at a time.
static GZIP_AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Counts a refusal by its kind and returns its reply.
fn refused(state: &AppState, sess: &Session, r: Refusal) -> Value {
    state.metrics.refuse(&sess.tenant_name, r.kind());
    r.into()
}

/// A hook failed: count it, then refuse (fail closed) or let the operation
/// through (fail open), as the tenant configured.
fn hook_failed(state: &AppState, sess: &Session, hook: Hook, e: &HookError) -> bool {
    state.metrics.refuse(&sess.tenant_name, "plugin_fault");
    tracing::warn!(tenant = %sess.tenant_name, hook = hook.label(), error = %e, "plugin hook failed");
    sess.tenant.config().plugin_fail_open
}

fn string_field(m: &Map<String, Value>, k: &str) -> Option<String> {
    match m.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Builds the hook input from an `authenticate` payload or handshake data.
pub fn auth_request(payload: &Value, query: &str) -> AuthRequest {
    let obj = payload.as_object();
    let uid = obj
        .and_then(|m| id_string(m.get("uid")))
        .or_else(|| wire::query_param(query, "uid").filter(|s| !s.is_empty()));
    let token = obj
        .and_then(|m| string_field(m, "token"))
        .or_else(|| wire::query_param(query, "token"));
    AuthRequest {
        uid,
        token,
        payload: payload.clone(),
        query: query.to_string(),
    }
}

/// `authenticate`, from the event or from the handshake.
pub async fn authenticate(
    state: &AppState,
    sess: &Arc<Session>,
    socket: &Socket,
    req: AuthRequest,
    ack: Option<Ack>,
) {
    let cfg = sess.tenant.config();
    {
        let mut st = sess.state.lock();
        if let Some(uid) = &st.uid {
            let same = req.uid.as_deref().is_none_or(|u| u == &**uid);
            drop(st);
            let v = if same {
                ok("auth success")
            } else {
                refused(state, sess, Refusal::OtherUid)
            };
            return reply(socket, ack, "authenticate", &v);
        }
        if st.expired {
            drop(st);
            let v = refused(state, sess, Refusal::AuthTimeout);
            return reply(socket, ack, "authenticate", &v);
        }
        if st.authenticating {
            drop(st);
            let v = refused(state, sess, Refusal::AuthInProgress);
            return reply(socket, ack, "authenticate", &v);
        }
        st.authenticating = true;
    }
    let (uid, rooms, claims) = match decide_auth(state, sess, socket, &req).await {
        Ok((uid, rooms, claims)) => (Arc::<str>::from(uid), rooms, claims),
        Err(refusal) => {
            sess.state.lock().authenticating = false;
            let v = refused(state, sess, refusal);
            reply(socket, ack, "authenticate", &v);
            disconnect_soon(&state.io, &sess.ns, sess.sid);
            return;
        }
    };

    // Kick older sockets of this uid first, on every node, so the newcomer
    // is the only one.
    let (older_here, older_anywhere) = state
        .presence
        .user_online(&sess.tenant_name, &uid, sess.clone())
        .await;
    let kicked_any = cfg.kickout && older_anywhere > 0;
    if kicked_any {
        for o in &older_here {
            o.state.lock().kicked = true;
        }
        kick_older(state, sess, &uid).await;
    }
    {
        let mut st = sess.state.lock();
        st.uid = Some(uid.clone());
        st.claims = (!claims.is_null()).then(|| Box::new(claims));
        st.kicker = kicked_any;
        st.authenticating = false;
    }
    // Authenticated: the auth deadline can no longer fire.
    sess.cancel_deadline();
    socket.join(super::uid_room(&uid));
    socket.join(format!("{}{}", cfg.user_room_prefix, uid));
    socket.join(device_room(&uid, sess.device_key()));
    if !rooms.is_empty() {
        socket.join(rooms);
    }
    reply(socket, ack, "authenticate", &ok("auth success"));
    tracing::debug!(tenant = %sess.tenant_name, %uid, sid = %sess.sid, "authenticated");

    if cfg.join_timeout_ms > 0 {
        let (io, timer_sess) = (state.io.clone(), sess.clone());
        let timeout = Duration::from_millis(cfg.join_timeout_ms);
        let deadline = tokio::spawn(async move {
            let sess = timer_sess;
            tokio::time::sleep(timeout).await;
            // A join waiting for its hook is let finish.
            let expired = {
                let mut st = sess.state.lock();
                st.expired = st.rooms.is_empty() && !st.joining;
                st.expired
            };
            if expired && let Some(s) = io.of(&sess.ns).and_then(|n| n.get_socket(sess.sid)) {
                let _ = s.emit("join", &Value::from(Refusal::JoinTimeout));
                disconnect_soon(&io, &sess.ns, sess.sid);
            }
        });
        sess.set_deadline(deadline);
    }
    push::on_authenticated(state, sess, &uid).await;
}

/// Disconnects the other sockets of `uid`, wherever they are: they join
/// the kick room of this socket (which marks them as kicked), get
/// `kickout`, and are disconnected a little later so the event reaches
/// them on every transport.
async fn kick_older(state: &AppState, sess: &Session, uid: &str) {
    let Some(ns) = state.io.of(&sess.ns) else {
        return;
    };
    let room = super::kick_room(sess.sid);
    if let Err(e) = ns
        .clone()
        .within(super::uid_room(uid))
        .except(sess.sid)
        .join(room.clone())
        .await
    {
        tracing::warn!(tenant = %sess.tenant_name, %uid, error = ?e, "kickout may not reach other nodes");
    }
    let _ = ns
        .clone()
        .within(room.clone())
        .emit(
            "kickout",
            &json!({ "uid": uid, "data": "logged in elsewhere" }),
        )
        .await;
    tokio::spawn(async move {
        tokio::time::sleep(super::session::DISCONNECT_DELAY).await;
        if let Err(e) = ns.within(room).disconnect().await {
            tracing::warn!(error = ?e, "disconnecting kicked-out sockets failed on some node");
        }
    });
}

/// Rate limit, the tenant's `authenticate` hook, then the built-in token
/// check: the allowed (uid, extra rooms, claims), or the reason to refuse.
async fn decide_auth(
    state: &AppState,
    sess: &Session,
    socket: &Socket,
    req: &AuthRequest,
) -> Result<(String, Vec<String>, Value), Refusal> {
    let cfg = sess.tenant.config();
    // Attempts count per uid and client address: a client guessing tokens
    // is refused after the limit, while the uid's owner on another address
    // can still log in (a count per uid alone would let anyone lock any
    // user out). Behind a proxy every client has the proxy's address, and
    // the count is per uid again.
    let client = socket
        .req_parts()
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let limiter_key = match &req.uid {
        Some(uid) => format!("{uid}\u{1}{client}"),
        None => format!("\u{1}sid:{}", sess.sid),
    };
    if !state
        .auth_limiter
        .allow(
            &sess.tenant_name,
            &limiter_key,
            cfg.auth_attempts_per_minute,
        )
        .await
    {
        return Err(Refusal::AuthRateLimited);
    }
    let verdict = match sess
        .tenant
        .policy()
        .authenticate(&sess.hook_context(), req)
        .await
    {
        Ok(v) => v,
        Err(e) if hook_failed(state, sess, Hook::Authenticate, &e) => AuthVerdict::Defer,
        Err(e) => return Err(Refusal::AuthUnavailable(e.to_string())),
    };
    let allowed = match verdict {
        AuthVerdict::Allow { uid, rooms, claims } => (uid, rooms, claims),
        AuthVerdict::Deny { reason } => {
            return Err(Refusal::Plugin {
                hook: Hook::Authenticate,
                reason,
            });
        }
        AuthVerdict::Defer => (
            builtin_token_check(state, sess, req).await?,
            Vec::new(),
            Value::Null,
        ),
    };
    if allowed.0.is_empty() {
        return Err(Refusal::UidRequired);
    }
    Ok(allowed)
}

/// The built-in token check (or any uid when `force_user_auth` is off).
async fn builtin_token_check(
    state: &AppState,
    sess: &Session,
    req: &AuthRequest,
) -> Result<String, Refusal> {
    let uid = req.uid.clone().ok_or(Refusal::UidRequired)?;
    if !sess.tenant.config().force_user_auth {
        return Ok(uid);
    }
    let token = req
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(Refusal::TokenRequired)?;
    let user = state
        .metrics
        .timed("get_user", state.store.get_user(&sess.tenant_name, &uid))
        .await
        .map_err(|e| Refusal::AuthUnavailable(e.to_string()))?;
    match user {
        Some(u) if crate::auth::ct_eq(&u.token_hash, &crate::auth::sha256_hex(token)) => Ok(uid),
        // One text for both, so a client cannot probe which uids exist.
        Some(_) | None => Err(Refusal::InvalidToken),
    }
}

pub async fn join(
    state: &AppState,
    sess: &Arc<Session>,
    socket: &Socket,
    data: Value,
    ack: Option<Ack>,
) {
    let refuse = |r| refused(state, sess, r);
    let Some(uid) = sess.uid() else {
        return reply(socket, ack, "join", &refuse(Refusal::NotAuthenticated));
    };
    let obj = wire::first_object(&data);
    let Some(room) = obj.and_then(|m| id_string(m.get("roomId"))) else {
        return reply(socket, ack, "join", &refuse(Refusal::RoomIdRequired));
    };
    let dummy = obj
        .and_then(|m| m.get("dummy"))
        .is_some_and(|d| matches!(d, Value::Bool(true)) || d.as_i64() == Some(1));
    let cfg = sess.tenant.config();
    {
        let st = sess.state.lock();
        if st.rooms.iter().any(|r| *r.name == *room) {
            drop(st);
            return reply(socket, ack, "join", &ok("join success"));
        }
        if st.rooms.len() >= cfg.max_rooms_per_socket {
            drop(st);
            let limit = cfg.max_rooms_per_socket;
            return reply(
                socket,
                ack,
                "join",
                &refuse(Refusal::TooManyRooms { limit }),
            );
        }
    }
    let req = JoinRequest {
        room: room.clone(),
        dummy,
    };
    {
        let mut st = sess.state.lock();
        if st.expired {
            drop(st);
            return reply(socket, ack, "join", &refuse(Refusal::JoinTimeout));
        }
        st.joining = true;
    }
    let verdict = sess
        .tenant
        .policy()
        .on_join(&sess.hook_context(), &req)
        .await;
    sess.state.lock().joining = false;
    match verdict {
        Ok(JoinVerdict::Allow) => {}
        Ok(JoinVerdict::Deny { reason }) => {
            let hook = Hook::OnJoin;
            return reply(
                socket,
                ack,
                "join",
                &refuse(Refusal::Plugin { hook, reason }),
            );
        }
        Err(e) if hook_failed(state, sess, Hook::OnJoin, &e) => {}
        Err(e) => {
            let r = Refusal::JoinUnavailable(e.to_string());
            return reply(socket, ack, "join", &refuse(r));
        }
    }

    socket.join(sync_room(&room));
    let kicker = {
        let mut st = sess.state.lock();
        // Sockets stay in a room or two: no spare capacity per socket.
        st.rooms.reserve_exact(1);
        st.rooms.push(JoinedRoom {
            name: room.as_str().into(),
            dummy,
        });
        st.kicker
    };
    // Joined: the join deadline can no longer fire.
    sess.cancel_deadline();
    reply(socket, ack, "join", &ok("join success"));
    // A dummy is told who is there but is never announced itself.
    let others: Vec<String> = if dummy {
        let mut users = state.presence.room_users(&sess.tenant_name, &room).await;
        users.retain(|u| **u != *uid);
        users
    } else {
        let others = state
            .presence
            .join_room(&sess.tenant_name, &room, sess.sid, &uid)
            .await;
        if !kicker {
            let _ = socket
                .to(sync_room(&room))
                .emit("remote_join", &json!({ "uid": &*uid }))
                .await;
        }
        others
    };
    for other in others {
        let _ = socket.emit("remote_join", &json!({ "uid": other }));
    }
}

/// The two shapes of a `msg`: the long form `{data, storage, msgId}` and
/// the short form `{"1": msgId, "s": storage, ...}`.
struct MsgForm {
    short: bool,
    storage: StorageMode,
    msg_id: Option<String>,
}

fn msg_form(m: &Map<String, Value>) -> MsgForm {
    let short = (m.contains_key("s") || m.contains_key("1"))
        && !m.contains_key("storage")
        && !m.contains_key("msgId");
    let (sk, ik) = if short {
        ("s", "1")
    } else {
        ("storage", "msgId")
    };
    MsgForm {
        short,
        storage: StorageMode::from_wire(m.get(sk)),
        msg_id: id_string(m.get(ik)),
    }
}

/// Refuses a `msg`: through the ack when there is one, else as an `error`
/// event (a `msg` reply would look like a room message).
fn msg_refused(
    state: &AppState,
    sess: &Session,
    socket: &Socket,
    ack: Ack,
    wants_ack: bool,
    refusal: Refusal,
) {
    let v = refused(state, sess, refusal);
    if wants_ack {
        let _ = ack.send(&v);
    } else {
        let _ = socket.emit("error", &v);
    }
}

/// JSON text that `serde_json` wrote, as a value the encoder copies as it is.
fn raw_json(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("serde_json writes valid JSON")
}

/// What the pipeline made of one `msg`.
enum MsgPlan {
    /// A plugin answered the sender only.
    Replied,
    /// Relayed; nothing to store (storage 2, or redirected elsewhere).
    Relayed,
    /// To be stored, then relayed; the sender's ack waits for the commit.
    Store {
        room: String,
        write: RoomWrite,
        relay: Relay,
    },
}

/// A `msg`: validate, run the tenant's hooks, relay. Returns the store write
/// still to do (its ack waits for the group commit); every refusal is
/// answered here, through the ack or an `error` event.
pub async fn msg(
    state: &AppState,
    sess: &Arc<Session>,
    socket: &Socket,
    data: Value,
    ack: Ack,
    wants_ack: bool,
) -> Option<PendingMsg> {
    match plan_msg(state, sess, socket, data).await {
        Err(reason) => {
            msg_refused(state, sess, socket, ack, wants_ack, reason);
            None
        }
        Ok(MsgPlan::Replied) => {
            let _ = ack.send(&ok("msg handled"));
            None
        }
        Ok(MsgPlan::Relayed) => {
            let _ = ack.send(&ok("msg success"));
            None
        }
        Ok(MsgPlan::Store { room, write, relay }) => {
            let Some(ticket) = sess.tenant.begin_write() else {
                msg_refused(state, sess, socket, ack, wants_ack, Refusal::TenantDeleting);
                return None;
            };
            // Hand the write back to the socket's worker, which keeps it in
            // order with the socket's other writes and acks after the commit;
            // the room's line relays it once committed.
            let (store, metrics) = (state.store.clone(), state.metrics.clone());
            let (tenant, room_name, max) = (
                sess.tenant_name.clone(),
                room.clone(),
                sess.tenant.config().max_msgs_per_room,
            );
            let write: crate::store::PendingWrite = Box::pin(async move {
                let _in_flight = ticket;
                metrics
                    .timed(
                        "room_write",
                        store.room_write(&tenant, &room_name, write, max),
                    )
                    .await
            });
            let write = state.relays.write(&sess.tenant_name, &room, write, relay);
            Some(PendingMsg {
                write,
                ack,
                wants_ack,
                room,
            })
        }
    }
}

async fn plan_msg(
    state: &AppState,
    sess: &Arc<Session>,
    socket: &Socket,
    data: Value,
) -> Result<MsgPlan, Refusal> {
    let uid = sess.uid().ok_or(Refusal::NotAuthenticated)?;
    let data = match data {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    };
    if !data.is_object() {
        return Err(Refusal::MsgNotObject);
    }
    let cfg = sess.tenant.config();
    // Serialised once: its length is the size checked, and the hooks hand
    // the text to the tenant's plugins as it is.
    let json = serde_json::to_string(&data).map_err(|_| Refusal::MsgNotObject)?;
    let size = json.len();
    if size > cfg.max_msg_bytes {
        let limit = cfg.max_msg_bytes;
        return Err(Refusal::MsgTooLarge { size, limit });
    }
    let requested = data.get("roomId").and_then(|v| id_string(Some(v)));
    let room = sess
        .current_room(requested.as_deref())
        .or_else(|| {
            requested
                .is_some()
                .then(|| sess.current_room(None))
                .flatten()
        })
        .ok_or(Refusal::MsgWithoutRoom)?;
    if room.dummy {
        return Err(Refusal::DummySender);
    }
    state
        .metrics
        .messages_in
        .get_or_create(&crate::telemetry::Metrics::tenant(&sess.tenant_name))
        .inc();

    let policy = sess.tenant.policy();
    let ctx = sess.hook_context();
    let mut ev = MsgEvent::with_json(room.name.to_string(), data, json);
    let mut redirect = None;
    match policy.on_msg(&ctx, &ev).await {
        Ok(MsgVerdict::Pass) => {}
        Ok(MsgVerdict::Drop { reason }) => {
            let hook = Hook::OnMsg;
            return Err(Refusal::Plugin { hook, reason });
        }
        Ok(MsgVerdict::Rewrite { msg }) if msg.is_object() => ev.set_msg(msg),
        Ok(MsgVerdict::Rewrite { .. }) => return Err(Refusal::RewriteNotObject),
        Ok(MsgVerdict::Reply { event, data }) => {
            let _ = socket.emit(event, &data);
            return Ok(MsgPlan::Replied);
        }
        Ok(MsgVerdict::Redirect { rooms, users, msg }) => {
            if let Some(m) = msg.filter(Value::is_object) {
                ev.set_msg(m);
            }
            // Room-sync rooms by their internal name, users by their user room.
            let mut targets: Vec<String> = rooms.iter().map(|r| sync_room(r)).collect();
            targets.extend(
                users
                    .iter()
                    .map(|u| format!("{}{}", cfg.user_room_prefix, u)),
            );
            redirect = Some(targets);
        }
        Err(e) if hook_failed(state, sess, Hook::OnMsg, &e) => {}
        Err(e) => return Err(Refusal::MsgUnavailable(e.to_string())),
    }

    let form = msg_form(ev.msg().as_object().ok_or(Refusal::MsgNotObject)?);
    let mode = match policy.storage_mode(&ctx, &ev, form.storage).await {
        Ok(m) => m,
        Err(e) if hook_failed(state, sess, Hook::StorageMode, &e) => form.storage,
        Err(e) => return Err(Refusal::MsgUnavailable(e.to_string())),
    };
    if mode == StorageMode::Update && form.msg_id.is_none() {
        return Err(Refusal::UpdateWithoutMsgId);
    }

    // The relayed object: as sent, with the sender and the time set by the
    // server. The server owns both: a client-sent sender key of either form
    // (`uid`, `"2"`) or `ts` is replaced or removed, so nobody can speak as
    // another user or back-date a message.
    let ts_ms = now_ms();
    let mut out = ev.into_msg();
    if let Some(o) = out.as_object_mut() {
        let (own, other) = if form.short {
            ("2", "uid")
        } else {
            ("uid", "2")
        };
        o.remove(other);
        o.insert(own.into(), Value::String(uid.to_string()));
        o.insert("ts".into(), json!(ts_ms));
    }

    // Serialised once more, and only once: the same text is relayed (as a
    // raw JSON value, which the encoder copies verbatim) and stored.
    let text = out.to_string();
    drop(out);
    if let Some(targets) = redirect {
        let raw = raw_json(text);
        let _ = socket.to(targets).emit("msg", &*raw).await;
        return Ok(MsgPlan::Relayed);
    }
    let n = state
        .presence
        .room_size(&sess.tenant_name, &room.name)
        .saturating_sub(1);
    let counted = state
        .metrics
        .messages_out
        .get_or_create(&crate::telemetry::Metrics::tenant(&sess.tenant_name))
        .clone();
    let entry = (mode != StorageMode::Ignore).then(|| RoomEntry {
        uid: uid.to_string(),
        ts: ts_ms / 1000,
        msg: text.clone(),
    });
    let raw = raw_json(text);
    // The relay goes out from the room's line (see `relay`): after the
    // write committed, behind the room's earlier messages on this node.
    let (to, io_room) = (socket.clone(), sync_room(&room.name));
    let relay: Relay = Box::pin(async move {
        let _ = to.to(io_room).emit("msg", &*raw).await;
        counted.inc_by(n as u64);
    });
    let Some(entry) = entry else {
        state
            .relays
            .relay(&sess.tenant_name, &room.name, relay)
            .await;
        return Ok(MsgPlan::Relayed);
    };
    let relay = if cfg.relay_after_commit {
        relay
    } else {
        // The tenant chose latency over "received means in sync": relay
        // now; the write follows, and the ack still waits for its commit.
        relay.await;
        Box::pin(async {})
    };
    let write = match (mode, form.msg_id) {
        (StorageMode::Update, Some(id)) => RoomWrite::Update { msg_id: id, entry },
        _ => RoomWrite::Insert(entry),
    };
    Ok(MsgPlan::Store {
        room: room.name.into_string(),
        write,
        relay,
    })
}

/// A `msg` whose store write is in flight: relayed and acked when it commits.
pub struct PendingMsg {
    pub write: crate::store::PendingWrite,
    pub ack: Ack,
    pub wants_ack: bool,
    pub room: String,
}

impl PendingMsg {
    /// Answers the sender once the write has finished.
    pub fn complete(
        self,
        state: &AppState,
        sess: &Session,
        socket: &Socket,
        r: crate::store::StoreResult<crate::store::RoomWriteAck>,
    ) {
        match r {
            Ok(w) => {
                let _ = self
                    .ack
                    .send(&json!({ "status": 0, "data": "msg success", "seq": w.seq }));
            }
            Err(e) => {
                tracing::error!(tenant = %sess.tenant_name, room = %self.room, error = %e, "storing a message failed");
                msg_refused(
                    state,
                    sess,
                    socket,
                    self.ack,
                    self.wants_ack,
                    Refusal::NotStored(e.to_string()),
                );
            }
        }
    }
}

/// The `sync` reply.
#[derive(serde::Serialize)]
struct SyncReply {
    status: u8,
    next: u8,
    offset: u64,
    epoch: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    /// Set while update values remain: send it back (or page on with the
    /// same `offset`) to continue after them.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    data: SyncData,
}

/// base64 of the gzip of the JSON array of `stored` (each already JSON).
fn gzip_array(stored: &[String]) -> String {
    let mut text = Vec::with_capacity(2 + stored.iter().map(|m| m.len() + 1).sum::<usize>());
    text.push(b'[');
    for (i, m) in stored.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(m.as_bytes());
    }
    text.push(b']');
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(&text);
    base64::engine::general_purpose::STANDARD.encode(enc.finish().unwrap_or_default())
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum SyncData {
    Plain(Vec<Box<RawValue>>),
    /// base64 of the gzip of the JSON array (`encoding: 'gzip'`).
    Gzip(String),
}

pub async fn sync(
    state: &AppState,
    sess: &Arc<Session>,
    socket: &Socket,
    data: Value,
    ack: Option<Ack>,
) {
    let refuse = |r| refused(state, sess, r);
    let Some(uid) = sess.uid() else {
        return reply(socket, ack, "sync", &refuse(Refusal::NotAuthenticated));
    };
    let Some(obj) = wire::first_object(&data) else {
        return reply(socket, ack, "sync", &refuse(Refusal::SyncNotObject));
    };
    let requested = id_string(obj.get("roomId"));
    let Some(room) = sess.current_room(requested.as_deref()) else {
        return reply(socket, ack, "sync", &refuse(Refusal::SyncWithoutRoom));
    };
    let mut offset = obj.get("offset").and_then(Value::as_u64).unwrap_or(0);
    let gzip = obj.get("encoding").and_then(Value::as_str) == Some("gzip");
    let cfg = sess.tenant.config();
    let tenant = &sess.tenant_name;

    let mut reset = 0;
    if let Some(client_epoch) = obj.get("epoch").and_then(Value::as_u64) {
        match state.store.room_epoch(tenant, &room.name).await {
            Ok(e) if e != client_epoch => {
                offset = 0;
                reset = 1;
            }
            Ok(_) => {}
            Err(e) => {
                let r = Refusal::SyncUnavailable(e.to_string());
                return reply(socket, ack, "sync", &refuse(r));
            }
        }
    }
    // Where the update values continue: the client's `cursor`, else where
    // this socket's previous page from the same offset stopped.
    let remembered = sess.state.lock().sync_cursor.take();
    let (updates_after, remembered_epoch) = match obj.get("cursor").and_then(Value::as_str) {
        Some(c) if reset == 0 => (Some(c.to_string()), None),
        _ => match remembered {
            Some(c) if reset == 0 && *c.room == *room.name && c.offset == offset => {
                (Some(c.after), Some(c.epoch))
            }
            _ => (None, None),
        },
    };
    let mut req = PageRequest::count(offset, cfg.sync_page_size.max(1))
        .bytes(cfg.sync_page_bytes)
        .updates_after(updates_after);
    let read = |req: PageRequest| {
        state
            .metrics
            .timed("room_read", state.store.room_read(tenant, &room.name, req))
    };
    let mut page = match read(req.clone()).await {
        Ok(p) => p,
        Err(e) => {
            let r = Refusal::SyncUnavailable(e.to_string());
            return reply(socket, ack, "sync", &refuse(r));
        }
    };
    if remembered_epoch.is_some_and(|e| e != page.epoch) {
        // The room was cleared since: its update values start over.
        req.updates_after = None;
        page = match read(req.clone()).await {
            Ok(p) => p,
            Err(e) => {
                let r = Refusal::SyncUnavailable(e.to_string());
                return reply(socket, ack, "sync", &refuse(r));
            }
        };
    }
    let cursor = page.next_cursor(req.updates_after.as_deref());
    if let Some(after) = &cursor {
        sess.state.lock().sync_cursor = Some(Box::new(SyncCursor {
            room: room.name.clone(),
            offset: page.next_offset,
            epoch: page.epoch,
            after: after.clone(),
        }));
    }
    let (next_offset, epoch) = (page.next_offset, page.epoch);
    let next = u8::from(page.has_next());
    // Stored messages go out as the JSON text they were stored as: no
    // parse and re-serialisation per page.
    let stored: Vec<String> = page
        .inserts
        .into_iter()
        .map(|(_, e)| e.msg)
        .chain(page.updates.into_iter().map(|e| e.msg))
        .collect();
    let data = if gzip {
        // Up to a page of bytes to compress: off the async workers, and a few
        // at a time, so many readers asking at once do not hold a page each
        // on blocking threads of their own.
        let _permit = GZIP_AT_ONCE.acquire().await;
        match tokio::task::spawn_blocking(move || SyncData::Gzip(gzip_array(&stored))).await {
            Ok(d) => d,
            Err(e) => {
                let r = Refusal::SyncFailed(e.to_string());
                return reply(socket, ack, "sync", &refuse(r));
            }
        }
    } else {
        SyncData::Plain(
            stored
                .into_iter()
                .filter_map(|m| RawValue::from_string(m).ok())
                .collect(),
        )
    };
    let out = SyncReply {
        status: 0,
        next,
        offset: next_offset,
        epoch,
        reset: (reset == 1).then_some(1),
        encoding: gzip.then_some("gzip"),
        cursor,
        data,
    };
    reply(socket, ack, "sync", &out);
    if offset == 0 && !room.dummy {
        let _ = socket
            .to(sync_room(&room.name))
            .emit("remote_sync", &json!({ "uid": &*uid }))
            .await;
    }
}

pub async fn leave(state: &AppState, sess: &Arc<Session>, socket: Socket, ack: Option<Ack>) {
    let (uid, kicked) = {
        let st = sess.state.lock();
        (st.uid.clone(), st.kicked)
    };
    if let (Some(uid), false) = (uid, kicked) {
        let rooms = sess.visible_rooms();
        if !rooms.is_empty() {
            let _ = socket
                .to(rooms.iter().map(|r| sync_room(r)).collect::<Vec<_>>())
                .emit("remote_leave", &json!({ "uid": &*uid }))
                .await;
        }
    }
    reply(&socket, ack, "leave", &ok("leave success"));
    disconnect_soon(&state.io, &sess.ns, sess.sid);
}

pub async fn disconnected(state: &AppState, sess: &Arc<Session>, socket: &Socket) {
    sess.cancel_deadline();
    state.presence.disconnect(&sess.tenant_name);
    state
        .metrics
        .connections
        .get_or_create(&crate::telemetry::Metrics::tenant(&sess.tenant_name))
        .dec();
    let (uid, kicked) = {
        let st = sess.state.lock();
        (st.uid.clone(), st.kicked)
    };
    let Some(uid) = uid else { return };
    state
        .presence
        .user_offline(&sess.tenant_name, &uid, sess.sid);
    let rooms = sess.visible_rooms();
    for r in &rooms {
        state.presence.leave_room(&sess.tenant_name, r, sess.sid);
    }
    if !kicked && !rooms.is_empty() {
        let _ = socket
            .to(rooms.iter().map(|r| sync_room(r)).collect::<Vec<_>>())
            .emit("remote_disconnect", &json!({ "uid": &*uid }))
            .await;
    }
    push::on_disconnected(state, sess, &uid).await;
}
