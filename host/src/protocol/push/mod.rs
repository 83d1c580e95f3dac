//! Reliable pushes from a business server: a push to a user room is queued
//! per device of that user until the device acks it; a device that
//! reconnects gets everything still pending as `_batch`, in pages of
//! [`BATCH_PAGE`].
//!
//! Queues live in the [`Store`](crate::store::Store), so they survive a
//! restart. Each socket is in the hidden room of its (uid, device), which is
//! where live deliveries go with an ack request. A device's acks are handled
//! in send order on each node ([`AckOrder`]), so that `resync` sees an ack
//! out of order only when an older delivery really went unacked.
//!
//! Here: sending (the `route_push` hook, queueing per device, live
//! delivery, the cluster's `notification` channel). `order`: the ack lines.
//! `device`: a device's `_batch` on authenticate and its last-seen time on
//! disconnect.

mod device;
mod order;

pub use device::{BATCH_PAGE, on_authenticated, on_disconnected};
pub use order::AckOrder;
use order::{Carried, Place};

use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Value, json};

use super::Services;
use super::device_room;
use super::wire::Args;
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::policy::{HookContext, PushRequest, PushRoute};
use crate::store::PushEntry;
use crate::tenant::Tenant;

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push refused: {0}")]
    Rejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a push did, for the HTTP reply.
#[derive(Debug, Default, serde::Serialize)]
pub struct PushReport {
    pub rooms: Vec<String>,
    /// Entries queued for reliable delivery (one per user device).
    pub queued: usize,
}

/// Delivers one push from the business server: the tenant's `route_push`
/// hook picks the rooms; user rooms are queued per device and delivered
/// with an ack request; other rooms get a plain emit.
pub async fn send(
    state: &Services,
    tenant: &Arc<Tenant>,
    req: PushRequest,
    resync: bool,
) -> Result<PushReport, PushError> {
    send_with(state, tenant, req, resync, true).await
}

/// [`send`], choosing whether user rooms get reliable (queued until acked)
/// delivery; the Redis `notification` channel's `needStore: false` does not.
pub async fn send_with(
    state: &Services,
    tenant: &Arc<Tenant>,
    req: PushRequest,
    resync: bool,
    reliable: bool,
) -> Result<PushReport, PushError> {
    let name = tenant.name();
    let cfg = tenant.config();
    let ctx = HookContext {
        tenant: name.clone(),
        ..HookContext::default()
    };
    let rooms = match tenant.policy().route_push(&ctx, &req).await {
        Ok(PushRoute::Deliver { rooms }) => rooms,
        Ok(PushRoute::Reject { reason }) => return Err(PushError::Rejected(reason)),
        Err(e) if cfg.plugin_fail_open => {
            tracing::warn!(tenant = %name, error = %e, "route_push hook failed; delivering as sent");
            req.rooms.clone()
        }
        Err(e) => return Err(PushError::Rejected(e.to_string())),
    };
    let ns_name = tenant.namespace();
    let Some(ns) = state.io.of(&ns_name) else {
        return Err(PushError::Rejected(
            "tenant namespace is not mounted".into(),
        ));
    };
    let mut report = PushReport {
        rooms: rooms.clone(),
        queued: 0,
    };
    let mut plain = Vec::new();
    let mut user_plain = Vec::new();
    for room in rooms {
        let Some(uid) = super::user_of_room(&cfg.user_room_prefix, &room) else {
            plain.push(room);
            continue;
        };
        if !reliable {
            // A user room only: never the room-sync room of the same name.
            user_plain.push(room.clone());
            continue;
        }
        let seq = state.store.push_next_seq(&name).await?;
        let entry = PushEntry {
            seq,
            event: req.event.clone(),
            args: req.args.clone(),
            resync,
        };
        let devices = live_devices(state, &name, uid, cfg.device_ttl_ms()).await?;
        // Each delivery takes its place in its device's ack line before the
        // entry is stored (see `AckOrder`); an error below drops the places.
        let places: Vec<Place> = devices
            .iter()
            .map(|d| Place::new(state, &ns_name, &name, uid, d, seq))
            .collect();
        state
            .metrics
            .timed(
                "push_enqueue",
                state
                    .store
                    .push_enqueue(&name, uid, &devices, &entry, cfg.max_pending_pushes),
            )
            .await?;
        report.queued += devices.len();
        for (device, place) in devices.into_iter().zip(places) {
            deliver_live(state.clone(), place, uid.to_string(), device, entry.clone());
        }
    }
    if !plain.is_empty() {
        let _ = ns
            .clone()
            .to(super::push_targets(&cfg.user_room_prefix, &plain))
            .emit(&req.event, &Args(&req.args))
            .await;
    }
    if !user_plain.is_empty() {
        let _ = ns.to(user_plain).emit(&req.event, &Args(&req.args)).await;
    }
    state
        .metrics
        .pushes
        .get_or_create(&crate::telemetry::Metrics::tenant(&name))
        .inc();
    Ok(report)
}

/// A publish on the cluster's `notification` channel (claimed by this
/// node): deliver to each uid of `toWho`, exactly like `POST /send`.
pub async fn notification(state: &Services, text: &str) {
    let v: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            tracing::warn!("ignoring a `notification` that is not a JSON object");
            return;
        }
    };
    let tenant_name = v
        .get("site")
        .or_else(|| v.get("tenant"))
        .and_then(Value::as_str)
        .unwrap_or(crate::tenant::DEFAULT_TENANT);
    let Some(tenant) = state.tenants.get(tenant_name) else {
        tracing::warn!(tenant = %tenant_name, "`notification` for an unknown tenant ignored");
        return;
    };
    let users: Vec<String> = match v.get("toWho") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|u| super::wire::id_string(Some(u)))
            .collect(),
        other => super::wire::id_string(other).into_iter().collect(),
    };
    if users.is_empty() {
        tracing::warn!("ignoring a `notification` without `toWho`");
        return;
    }
    let need_store = v
        .get("needStore")
        .is_some_and(|n| n.as_bool() == Some(true) || n.as_i64() == Some(1));
    let prefix = tenant.config().user_room_prefix.clone();
    let req = PushRequest {
        rooms: users.iter().map(|u| format!("{prefix}{u}")).collect(),
        event: "notification".into(),
        // The Node service emitted the published text itself.
        args: vec![Value::String(text.to_string())],
    };
    if let Err(e) = send_with(state, &tenant, req, false, need_store).await {
        tracing::warn!(tenant = %tenant_name, error = %e, "a `notification` could not be delivered");
    }
}

/// The queue of a user with no known device: what is pushed to it goes to
/// the first device that comes back. It is kept like a device (its record's
/// time is when it was started), so it is forgotten `device_ttl` after its
/// first push if no device comes; a push after that starts it anew. The
/// control character keeps it apart from any `deviceId` a client sends.
pub const USER_QUEUE: &str = "\u{1}user";

/// Whether a device last seen (or the user's queue started) at `seen` has
/// outlived the TTL at `now`.
fn outlived(seen: u64, now: u64, ttl_ms: u64) -> bool {
    now.saturating_sub(seen) > ttl_ms
}

/// Devices of `uid` seen within the TTL; with none, the user's queue
/// [`USER_QUEUE`] (started now, or anew when it outlived the TTL).
async fn live_devices(
    state: &Services,
    tenant: &str,
    uid: &str,
    ttl_ms: u64,
) -> Result<Vec<String>, StoreError> {
    let now = now_ms();
    let known = state.store.devices(tenant, uid).await?;
    let devices: Vec<String> = known
        .iter()
        .filter(|(d, seen)| !outlived(*seen, now, ttl_ms) && d != USER_QUEUE)
        .map(|(d, _)| d.clone())
        .collect();
    if !devices.is_empty() {
        return Ok(devices);
    }
    match known.iter().find(|(d, _)| d == USER_QUEUE) {
        Some((_, started)) if !outlived(*started, now, ttl_ms) => {}
        stale => {
            if stale.is_some() {
                state.store.push_clear(tenant, uid, USER_QUEUE).await?;
            }
            state
                .store
                .device_seen(tenant, uid, USER_QUEUE, now)
                .await?;
        }
    }
    Ok(vec![USER_QUEUE.to_string()])
}

/// Emits one queued entry to the device's sockets; the first ack from any
/// of them removes it from the queue, in the device's ack order.
fn deliver_live(state: Services, place: Place, uid: String, device: String, entry: PushEntry) {
    tokio::spawn(async move {
        let acked_by_one = async {
            let stream = state
                .io
                .of(&place.ns)?
                .to(device_room(&uid, &device))
                .emit_with_ack::<_, Value>(&entry.event, &Args(&entry.args))
                .await
                .ok()?;
            futures::pin_mut!(stream);
            while let Some((_sid, res)) = stream.next().await {
                if acked(&res) {
                    return Some(());
                }
            }
            // Every socket timed out or closed (or there was none).
            None
        }
        .await
        .is_some();
        let carried = acked_by_one.then(|| Carried {
            seqs: vec![entry.seq],
            resync: entry.resync,
        });
        place.settle(carried).await;
    });
}

/// Any answer counts as an ack (clients call the callback with no
/// argument, which does not decode as a value); timeouts and closed sockets
/// do not.
fn acked<T>(r: &Result<T, socketioxide::AckError>) -> bool {
    matches!(r, Ok(_) | Err(socketioxide::AckError::Decode(_)))
}

async fn ack_entries(
    state: &Services,
    tenant: &str,
    ns: &str,
    uid: &str,
    device: &str,
    seqs: &[u64],
    resync: bool,
) {
    let outcome = state
        .metrics
        .timed("push_ack", state.store.push_ack(tenant, uid, device, seqs))
        .await;
    match outcome {
        Ok(outcome) if resync && outcome.removed > 0 && !outcome.was_oldest => {
            // Out of order: the client missed something. Start it over.
            if let Err(e) = state.store.push_clear(tenant, uid, device).await {
                tracing::error!(%tenant, %uid, error = %e, "clearing a push queue for _resync failed");
            }
            if let Some(op) = state.io.of(ns) {
                let _ = op
                    .to(device_room(uid, device))
                    .emit("_resync", &json!({}))
                    .await;
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(%tenant, %uid, error = %e, "recording a push ack failed; it will be redelivered");
            return;
        }
    }
    // Counted once the ack is fully handled (removed, and a `_resync` sent):
    // an acking client cannot tell when that is, tests and operators can.
    state
        .metrics
        .push_acks
        .get_or_create(&crate::telemetry::Metrics::tenant(tenant))
        .inc();
}
