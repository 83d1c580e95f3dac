//! `msg`: validate, run the tenant's `on_msg` and `storage_mode` hooks,
//! stamp the sender and time, then relay (and store, acking after the
//! commit). [`plan`] is the pipeline itself, a function of the session and
//! the message that touches no socket, so it is unit-tested without a
//! server; [`msg`] carries its plan out on the socket.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::Services;
use super::answer::{hook_failed, refused};
use super::refusal::Refusal;
use super::relay::Relay;
use super::session::Session;
use super::sync_room;
use super::wire::{id_string, ok};
use crate::clock::now_ms;
use crate::cluster::adapter::{Ack, Socket};
use crate::policy::{Hook, MsgEvent, MsgVerdict, StorageMode, msg_json};
use crate::store::{RoomEntry, RoomWrite};
use crate::telemetry::Metrics;

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
    state: &Services,
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

/// What the pipeline made of one `msg`: what to do on the wire, and the
/// store write when there is one.
#[derive(Debug)]
pub enum MsgPlan {
    /// A plugin answers the sender only, with `event`.
    Reply { event: String, data: Value },
    /// Relay `text` to these socket.io rooms instead of the sender's room
    /// (room-sync rooms by their internal name, users by their user room);
    /// nothing is stored.
    Redirect { targets: Vec<String>, text: String },
    /// Relay `text` to the sender's room; store `write` first when there is
    /// one (the sender's ack waits for its commit).
    Room {
        room: String,
        text: String,
        write: Option<RoomWrite>,
    },
}

/// The `msg` pipeline, without a socket: the sender's session, the message
/// as received, the counters it bumps and the clock that stamps it (read
/// after the hooks ran). Validates it, runs the tenant's
/// `on_msg` and `storage_mode` hooks, and stamps the sender and the time
/// (the server owns both). The message is serialised at most twice: once
/// for the size check, whose text the hooks get as it is, and once with the
/// sender and time set, the text both relayed and stored. A rewrite whose
/// plugin returned its text is not serialised for the hooks after it.
pub async fn plan(
    metrics: &Metrics,
    sess: &Session,
    data: Value,
    now_ms: fn() -> u64,
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
    let json = msg_json(&data);
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
    metrics
        .messages_in
        .get_or_create(&Metrics::tenant(&sess.tenant_name))
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
        Ok(MsgVerdict::Rewrite { msg, json }) if msg.is_object() => ev.set_msg(msg, json),
        Ok(MsgVerdict::Rewrite { .. }) => return Err(Refusal::RewriteNotObject),
        Ok(MsgVerdict::Reply { event, data }) => return Ok(MsgPlan::Reply { event, data }),
        Ok(MsgVerdict::Redirect { rooms, users, msg }) => {
            if let Some(m) = msg.filter(Value::is_object) {
                ev.set_msg(m, Default::default());
            }
            let mut targets: Vec<String> = rooms.iter().map(|r| sync_room(r)).collect();
            targets.extend(
                users
                    .iter()
                    .map(|u| format!("{}{}", cfg.user_room_prefix, u)),
            );
            redirect = Some(targets);
        }
        Err(e) if hook_failed(metrics, sess, Hook::OnMsg, &e) => {}
        Err(e) => return Err(Refusal::MsgUnavailable(e.to_string())),
    }

    let form = msg_form(ev.msg().as_object().ok_or(Refusal::MsgNotObject)?);
    let mode = match policy.storage_mode(&ctx, &ev, form.storage).await {
        Ok(m) => m,
        Err(e) if hook_failed(metrics, sess, Hook::StorageMode, &e) => form.storage,
        Err(e) => return Err(Refusal::MsgUnavailable(e.to_string())),
    };
    if mode == StorageMode::Update && form.msg_id.is_none() {
        return Err(Refusal::UpdateWithoutMsgId);
    }

    // The relayed object: as sent, with the sender and the time set by the
    // server. A client-sent sender key of either form (`uid`, `"2"`) or `ts`
    // is replaced or removed, so nobody can speak as another user or
    // back-date a message.
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
    let text = msg_json(&out);
    drop(out);
    if let Some(targets) = redirect {
        return Ok(MsgPlan::Redirect { targets, text });
    }
    let write = (mode != StorageMode::Ignore).then(|| {
        let entry = RoomEntry {
            uid: uid.to_string(),
            ts: ts_ms / 1000,
            msg: text.clone(),
        };
        match (mode, form.msg_id) {
            (StorageMode::Update, Some(id)) => RoomWrite::Update { msg_id: id, entry },
            _ => RoomWrite::Insert(entry),
        }
    });
    Ok(MsgPlan::Room {
        room: room.name.into_string(),
        text,
        write,
    })
}

/// A `msg` on the socket: [`plan`], then carry the plan out. Returns the
/// store write still to do (its ack waits for the group commit); every
/// refusal is answered here, through the ack or an `error` event.
pub async fn msg(
    state: &Services,
    sess: &Arc<Session>,
    socket: &Socket,
    data: Value,
    ack: Ack,
    wants_ack: bool,
) -> Option<PendingMsg> {
    let (room, text, write) = match plan(&state.metrics, sess, data, now_ms).await {
        Err(reason) => {
            msg_refused(state, sess, socket, ack, wants_ack, reason);
            return None;
        }
        Ok(MsgPlan::Reply { event, data }) => {
            let _ = socket.emit(event, &data);
            let _ = ack.send(&ok("msg handled"));
            return None;
        }
        Ok(MsgPlan::Redirect { targets, text }) => {
            let raw = raw_json(text);
            let _ = socket.to(targets).emit("msg", &*raw).await;
            let _ = ack.send(&ok("msg success"));
            return None;
        }
        Ok(MsgPlan::Room { room, text, write }) => (room, text, write),
    };
    let tenant = &sess.tenant_name;
    let n = state.presence.room_size(tenant, &room).saturating_sub(1);
    let counted = state
        .metrics
        .messages_out
        .get_or_create(&Metrics::tenant(tenant))
        .clone();
    let raw = raw_json(text);
    // The relay goes out from the room's line (see `relay`): after the
    // write committed, behind the room's earlier messages on this node.
    let (to, io_room) = (socket.clone(), sync_room(&room));
    let tap = state
        .taps
        .any()
        .then(|| (state.taps.clone(), tenant.clone(), room.clone()));
    let relay: Relay = Box::pin(async move {
        let _ = to.to(io_room).emit("msg", &*raw).await;
        if let Some((taps, tenant, room)) = tap {
            taps.publish(&tenant, &room, raw.get());
        }
        counted.inc_by(n as u64);
    });
    let Some(write) = write else {
        state.relays.relay(tenant, &room, relay).await;
        let _ = ack.send(&ok("msg success"));
        return None;
    };
    let relay = if sess.tenant.config().relay_after_commit {
        relay
    } else {
        // The tenant chose latency over "received means in sync": relay
        // now; the write follows, and the ack still waits for its commit.
        relay.await;
        Box::pin(async {})
    };
    let Some(ticket) = sess.tenant.begin_write() else {
        msg_refused(state, sess, socket, ack, wants_ack, Refusal::TenantDeleting);
        return None;
    };
    // Hand the write back to the socket's worker, which keeps it in order
    // with the socket's other writes and acks after the commit; the room's
    // line relays it once committed.
    let (store, metrics) = (state.store.clone(), state.metrics.clone());
    let (tenant, room_name, max) = (
        tenant.clone(),
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
        state: &Services,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HookError;
    use crate::policy::{HookContext, KnownJson, Policy, msg_serialisations};
    use crate::protocol::testing::{builtin_session, session};
    use crate::tenant::TenantConfig;
    use async_trait::async_trait;

    const NOW: u64 = 1_700_000_000_123;

    fn builtin() -> Session {
        builtin_session(TenantConfig::default())
    }

    /// Plans `data` and returns the plan with how many times the message
    /// was serialised on the way.
    async fn planned(sess: &Session, data: Value) -> (Result<MsgPlan, Refusal>, u64) {
        let before = msg_serialisations();
        let r = plan(&Metrics::default(), sess, data, || NOW).await;
        (r, msg_serialisations() - before)
    }

    fn room_plan(r: Result<MsgPlan, Refusal>) -> (String, Value, Option<RoomWrite>) {
        match r {
            Ok(MsgPlan::Room { room, text, write }) => {
                (room, serde_json::from_str(&text).unwrap(), write)
            }
            other => panic!("expected a room relay, got {other:?}"),
        }
    }

    /// What a wasm chain does: rewrites, handing back the text the plugin
    /// returned, and reads the message's text again in `storage_mode`.
    struct RewritesWithText;

    #[async_trait]
    impl Policy for RewritesWithText {
        async fn on_msg(&self, _: &HookContext, ev: &MsgEvent) -> Result<MsgVerdict, HookError> {
            let text = ev.json().replace("bad", "***");
            Ok(MsgVerdict::Rewrite {
                msg: serde_json::from_str(&text).unwrap(),
                json: KnownJson(Some(text)),
            })
        }
        async fn storage_mode(
            &self,
            _: &HookContext,
            ev: &MsgEvent,
            proposed: StorageMode,
        ) -> Result<StorageMode, HookError> {
            assert!(ev.json().contains("***"), "storage_mode sees the rewrite");
            Ok(proposed)
        }
    }

    #[tokio::test]
    async fn a_stored_msg_is_serialised_twice_once_to_check_and_once_for_wire_and_store() {
        let sess = builtin();
        let (r, serialised) = planned(&sess, json!({"data": "hi", "storage": 0})).await;
        let (room, relayed, write) = room_plan(r);
        assert_eq!(serialised, 2);
        assert_eq!(room, "r1");
        match write {
            Some(RoomWrite::Insert(e)) => {
                assert_eq!(serde_json::from_str::<Value>(&e.msg).unwrap(), relayed);
                assert_eq!((e.uid.as_str(), e.ts), ("u1", NOW / 1000));
            }
            other => panic!("expected an insert, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_rewrite_with_its_text_costs_no_serialisation_more() {
        let sess = session(Box::new(RewritesWithText), TenantConfig::default());
        let (r, serialised) = planned(&sess, json!({"data": "bad word"})).await;
        let (_, relayed, _) = room_plan(r);
        assert_eq!(serialised, 2, "the hooks reuse the rewrite's text");
        assert_eq!(relayed["data"], "*** word");
    }

    #[tokio::test]
    async fn the_server_sets_sender_and_time_in_either_form() {
        let sess = builtin();
        let long = json!({"data": "x", "uid": "mallory", "2": "mallory", "ts": 1});
        let (_, relayed, _) = room_plan(planned(&sess, long).await.0);
        assert_eq!(relayed["uid"], "u1");
        assert_eq!(relayed["ts"], NOW);
        assert!(
            relayed.get("2").is_none(),
            "the other form's sender key goes"
        );

        let short = json!({"1": "m1", "s": 1, "uid": "mallory"});
        let (_, relayed, _) = room_plan(planned(&sess, short).await.0);
        assert_eq!(relayed["2"], "u1");
        assert!(relayed.get("uid").is_none());
    }

    #[tokio::test]
    async fn storage_modes_choose_the_write() {
        let sess = builtin();
        let (_, _, write) = room_plan(planned(&sess, json!({"data": 1, "storage": 2})).await.0);
        assert!(write.is_none(), "storage 2 is relayed only");
        let update = json!({"data": 1, "storage": 1, "msgId": "m7"});
        let (_, _, write) = room_plan(planned(&sess, update).await.0);
        match write {
            Some(RoomWrite::Update { msg_id, .. }) => assert_eq!(msg_id, "m7"),
            other => panic!("expected an update, got {other:?}"),
        }
        let (r, _) = planned(&sess, json!({"data": 1, "storage": 1})).await;
        assert!(matches!(r, Err(Refusal::UpdateWithoutMsgId)), "{r:?}");
    }

    #[tokio::test]
    async fn refusals_come_before_any_hook() {
        let cfg = TenantConfig {
            max_msg_bytes: 32,
            ..TenantConfig::default()
        };
        let sess = builtin_session(cfg);
        let (r, _) = planned(&sess, json!({"data": "x".repeat(40)})).await;
        assert!(
            matches!(r, Err(Refusal::MsgTooLarge { limit: 32, .. })),
            "{r:?}"
        );
        let (r, serialised) = planned(&sess, json!("text")).await;
        assert!(matches!(r, Err(Refusal::MsgNotObject)), "{r:?}");
        assert_eq!(serialised, 0);
        let (r, _) = planned(&sess, json!({"roomId": "elsewhere"})).await;
        assert!(
            matches!(r, Ok(MsgPlan::Room { ref room, .. }) if room == "r1"),
            "an unknown roomId falls back to the current room: {r:?}"
        );

        let dummy = builtin();
        dummy.state.lock().rooms[0].dummy = true;
        let (r, _) = planned(&dummy, json!({"data": 1})).await;
        assert!(matches!(r, Err(Refusal::DummySender)), "{r:?}");

        let anonymous = builtin();
        anonymous.state.lock().uid = None;
        let (r, _) = planned(&anonymous, json!({"data": 1})).await;
        assert!(matches!(r, Err(Refusal::NotAuthenticated)), "{r:?}");
    }

    struct Redirects;

    #[async_trait]
    impl Policy for Redirects {
        async fn on_msg(&self, _: &HookContext, _: &MsgEvent) -> Result<MsgVerdict, HookError> {
            Ok(MsgVerdict::Redirect {
                rooms: vec!["r2".into()],
                users: vec!["u9".into()],
                msg: None,
            })
        }
    }

    #[tokio::test]
    async fn a_redirect_names_socket_io_rooms_and_stores_nothing() {
        let sess = session(Box::new(Redirects), TenantConfig::default());
        match planned(&sess, json!({"data": 1, "storage": 0})).await.0 {
            Ok(MsgPlan::Redirect { targets, text }) => {
                let prefix = &TenantConfig::default().user_room_prefix;
                assert_eq!(targets, vec![sync_room("r2"), format!("{prefix}u9")]);
                assert!(text.contains("\"uid\":\"u1\""), "{text}");
            }
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    struct Faults;

    #[async_trait]
    impl Policy for Faults {
        async fn on_msg(&self, _: &HookContext, _: &MsgEvent) -> Result<MsgVerdict, HookError> {
            Err(HookError::Timeout {
                plugin: "slow".into(),
            })
        }
    }

    #[tokio::test]
    async fn a_hook_fault_refuses_or_passes_as_the_tenant_chose() {
        let closed = session(Box::new(Faults), TenantConfig::default());
        let (r, _) = planned(&closed, json!({"data": 1})).await;
        assert!(matches!(r, Err(Refusal::MsgUnavailable(_))), "{r:?}");
        let cfg = TenantConfig {
            plugin_fail_open: true,
            ..TenantConfig::default()
        };
        let open = session(Box::new(Faults), cfg);
        let (r, _) = planned(&open, json!({"data": 1})).await;
        assert!(matches!(r, Ok(MsgPlan::Room { .. })), "{r:?}");
    }
}
