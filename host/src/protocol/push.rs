//! Reliable pushes (socket.io-webservice): a push to a user room is queued
//! per device of that user until the device acks it; a device that
//! reconnects gets everything still pending at once as `_batch`.
//!
//! Queues live in the [`Store`](crate::store::Store), so they survive a
//! restart. Each socket is in the hidden room of its (uid, device), which is
//! where live deliveries go with an ack request.

use std::sync::Arc;

use crate::cluster::adapter::Io;
use futures::StreamExt;
use serde_json::{Value, json};

use super::device_room;
use super::session::Session;
use super::wire::Args;
use crate::error::StoreError;
use crate::policy::{HookContext, PushRequest, PushRoute};
use crate::server::{AppState, now_ms};
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
    state: &AppState,
    tenant: &Arc<Tenant>,
    req: PushRequest,
    resync: bool,
) -> Result<PushReport, PushError> {
    send_with(state, tenant, req, resync, true).await
}

/// [`send`], choosing whether user rooms get reliable (queued until acked)
/// delivery; the Redis `notification` channel's `needStore: false` does not.
pub async fn send_with(
    state: &AppState,
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
    let Some(ns) = state.io.of(tenant.namespace()) else {
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
        let Some(uid) = room
            .strip_prefix(cfg.user_room_prefix.as_str())
            .filter(|u| !u.is_empty() && !cfg.user_room_prefix.is_empty())
        else {
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
        let devices = live_devices(state, &name, uid, cfg.device_ttl_secs).await?;
        state
            .metrics
            .timed(
                "push_enqueue",
                state.store.push_enqueue(&name, uid, &devices, &entry),
            )
            .await?;
        report.queued += devices.len();
        for device in devices {
            deliver_live(
                state.clone(),
                name.clone(),
                tenant.namespace(),
                uid.to_string(),
                device,
                entry.clone(),
            );
        }
    }
    if !plain.is_empty() {
        let _ = ns
            .clone()
            .to(super::push_targets(&plain))
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

/// Devices of `uid` seen within the TTL; the per-user queue `""` when none.
async fn live_devices(
    state: &AppState,
    tenant: &str,
    uid: &str,
    ttl_secs: u64,
) -> Result<Vec<String>, StoreError> {
    let cutoff = now_ms().saturating_sub(ttl_secs * 1000);
    let mut devices: Vec<String> = state
        .store
        .devices(tenant, uid)
        .await?
        .into_iter()
        .filter(|(_, seen)| *seen >= cutoff)
        .map(|(d, _)| d)
        .collect();
    if devices.is_empty() {
        devices.push(String::new());
    }
    Ok(devices)
}

/// Emits one queued entry to the device's sockets and removes it from the
/// queue when one of them acks.
fn deliver_live(
    state: AppState,
    tenant: String,
    ns: String,
    uid: String,
    device: String,
    entry: PushEntry,
) {
    tokio::spawn(async move {
        let Some(op) = state.io.of(&ns) else { return };
        let stream = match op
            .to(device_room(&uid, &device))
            .emit_with_ack::<_, Value>(&entry.event, &Args(&entry.args))
            .await
        {
            Ok(s) => s,
            Err(_) => return,
        };
        futures::pin_mut!(stream);
        // The first ack from any socket of the device counts.
        while let Some((_sid, res)) = stream.next().await {
            if acked(&res) {
                ack_entries(
                    &state,
                    &tenant,
                    &ns,
                    &uid,
                    &device,
                    &[entry.seq],
                    entry.resync,
                )
                .await;
                return;
            }
        }
    });
}

/// Any answer counts as an ack (clients call the callback with no
/// argument, which does not decode as a value); timeouts and closed sockets
/// do not.
fn acked<T>(r: &Result<T, socketioxide::AckError>) -> bool {
    matches!(r, Ok(_) | Err(socketioxide::AckError::Decode(_)))
}

async fn ack_entries(
    state: &AppState,
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

/// After `authenticate`: remember the device, and send what is pending as
/// one `_batch`.
pub async fn on_authenticated(state: &AppState, sess: &Arc<Session>, uid: &str) {
    let tenant = &sess.tenant_name;
    let device = sess.device_key();
    let store = &state.store;
    let r: Result<Vec<PushEntry>, StoreError> = async {
        // A device offline longer than device_ttl is forgotten with its
        // queue, even if the periodic sweep has not run yet.
        let ttl_ms = sess.tenant.config().device_ttl_secs * 1000;
        let now = now_ms();
        let stale = store
            .devices(tenant, uid)
            .await?
            .iter()
            .any(|(d, seen)| *d == device && now.saturating_sub(*seen) > ttl_ms);
        if stale {
            store.push_clear(tenant, uid, &device).await?;
        }
        store.device_seen(tenant, uid, &device, now).await?;
        if !device.is_empty() {
            // What was queued while the user had no known device belongs to
            // the first device that comes back.
            store.push_move(tenant, uid, "", &device).await?;
        }
        store.push_pending(tenant, uid, &device).await
    }
    .await;
    let pending = match r {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(%tenant, %uid, error = %e, "reading pending pushes failed");
            return;
        }
    };
    if pending.is_empty() {
        return;
    }
    send_batch(
        state.io.clone(),
        state.clone(),
        sess.clone(),
        uid.to_string(),
        pending,
    );
}

fn send_batch(io: Io, state: AppState, sess: Arc<Session>, uid: String, pending: Vec<PushEntry>) {
    let events: Vec<Value> = pending
        .iter()
        .map(|e| {
            let mut a = Vec::with_capacity(e.args.len() + 1);
            a.push(Value::String(e.event.clone()));
            a.extend(e.args.iter().cloned());
            Value::Array(a)
        })
        .collect();
    let seqs: Vec<u64> = pending.iter().map(|e| e.seq).collect();
    let resync = pending.iter().any(|e| e.resync);
    tokio::spawn(async move {
        let Some(sock) = io.of(&sess.ns).and_then(|n| n.get_socket(sess.sid)) else {
            return;
        };
        let Ok(fut) = sock.emit_with_ack::<_, Value>("_batch", &(events,)) else {
            return;
        };
        if acked(&fut.await) {
            ack_entries(
                &state,
                &sess.tenant_name,
                &sess.ns,
                &uid,
                &sess.device_key(),
                &seqs,
                resync,
            )
            .await;
        }
    });
}

pub async fn on_disconnected(state: &AppState, sess: &Arc<Session>, uid: &str) {
    if let Err(e) = state
        .store
        .device_seen(&sess.tenant_name, uid, &sess.device_key(), now_ms())
        .await
    {
        tracing::warn!(tenant = %sess.tenant_name, %uid, error = %e, "recording device last-seen failed");
    }
}
