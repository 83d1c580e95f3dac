//! Room membership: `join` (the tenant's `on_join` hook, presence,
//! `remote_join`), `leave`, and what a disconnect announces.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Services;
use super::answer::{hook_failed, refused, reply};
use super::refusal::Refusal;
use super::session::{JoinedRoom, Session, disconnect_soon};
use super::wire::{self, id_string, ok};
use super::{push, sync_room};
use crate::cluster::adapter::{Ack, Socket};
use crate::policy::{Hook, JoinRequest, JoinVerdict};

pub async fn join(
    state: &Services,
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
    // A refused join clears `joining` here; an allowed one only once its room
    // is in the session, under the same lock: the join deadline must never
    // see neither (it would refuse a join that then succeeds).
    let refusal = match verdict {
        Ok(JoinVerdict::Allow) => None,
        Ok(JoinVerdict::Deny { reason }) => Some(Refusal::Plugin {
            hook: Hook::OnJoin,
            reason,
        }),
        Err(e) if hook_failed(&state.metrics, sess, Hook::OnJoin, &e) => None,
        Err(e) => Some(Refusal::JoinUnavailable(e.to_string())),
    };
    if let Some(r) = refusal {
        sess.state.lock().joining = false;
        return reply(socket, ack, "join", &refuse(r));
    }

    socket.join(sync_room(&room));
    let kicker = {
        let mut st = sess.state.lock();
        st.joining = false;
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

pub async fn leave(state: &Services, sess: &Arc<Session>, socket: Socket, ack: Option<Ack>) {
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

pub async fn disconnected(state: &Services, sess: &Arc<Session>, socket: &Socket) {
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

/// An administrator's kick: every socket of `uid` in namespace `ns`, on
/// every node, gets `kickout` with `reason` and is disconnected a moment
/// later. Its rooms hear `remote_disconnect` as for any disconnect.
pub async fn kick(state: &Services, ns: &str, uid: &str, reason: &str) {
    if let Some(ns) = state.io.of(ns) {
        kickout(ns, super::uid_room(uid), uid, reason).await;
    }
}

/// Sends `kickout` `{uid, data: reason}` to the sockets in `room` (on every
/// node) and disconnects them a little later, so the event reaches them on
/// every transport first.
pub(super) async fn kickout(
    ns: socketioxide::operators::BroadcastOperators<crate::cluster::adapter::Adapter>,
    room: String,
    uid: &str,
    reason: &str,
) {
    let _ = ns
        .clone()
        .within(room.clone())
        .emit("kickout", &json!({ "uid": uid, "data": reason }))
        .await;
    tokio::spawn(async move {
        tokio::time::sleep(super::session::DISCONNECT_DELAY).await;
        if let Err(e) = ns.within(room).disconnect().await {
            tracing::warn!(error = ?e, "disconnecting kicked-out sockets failed on some node");
        }
    });
}
