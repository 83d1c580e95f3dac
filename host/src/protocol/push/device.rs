//! A user's device coming and going: on `authenticate` it is remembered
//! and gets what is pending as `_batch` pages; on disconnect its last-seen
//! time is kept for `device_ttl`.

use std::sync::Arc;

use serde_json::Value;

use super::order::{Carried, Place};
use super::{USER_QUEUE, acked, outlived};
use crate::clock::now_ms;
use crate::cluster::adapter::Io;
use crate::error::StoreError;
use crate::protocol::Services;
use crate::protocol::session::Session;
use crate::store::PushEntry;

/// After `authenticate`: remember the device, and send what is pending as
/// one `_batch`.
pub async fn on_authenticated(state: &Services, sess: &Arc<Session>, uid: &str) {
    let tenant = &sess.tenant_name;
    let device = sess.device_key();
    // The `_batch` carries the oldest entries: its place is at the front of
    // the line, taken before the queue is read, so that a live push acked
    // meanwhile waits for it.
    let place = Place::new(state, &sess.ns, tenant, uid, device, 0);
    let store = &state.store;
    let r: Result<Vec<PushEntry>, StoreError> = async {
        // A device offline longer than device_ttl is forgotten with its
        // queue, even if the periodic sweep has not run yet.
        let ttl_ms = sess.tenant.config().device_ttl_ms();
        let now = now_ms();
        let known = store.devices(tenant, uid).await?;
        let seen = |which: &str| known.iter().find(|(d, _)| d == which).map(|(_, t)| *t);
        if seen(device).is_some_and(|t| outlived(t, now, ttl_ms)) {
            store.push_clear(tenant, uid, device).await?;
        }
        store.device_seen(tenant, uid, device, now).await?;
        // What was queued while the user had no known device belongs to the
        // first device that comes back (unless it outlived the TTL).
        if let Some(started) = seen(USER_QUEUE) {
            if outlived(started, now, ttl_ms) {
                store.push_clear(tenant, uid, USER_QUEUE).await?;
            } else {
                store.push_move(tenant, uid, USER_QUEUE, device).await?;
            }
        }
        if !device.is_empty() {
            // Queued as "" by a node from before USER_QUEUE.
            store.push_move(tenant, uid, "", device).await?;
        }
        store.push_pending(tenant, uid, device).await
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
        return; // dropping `place` takes it out of the line
    }
    send_batch(state.io.clone(), place, sess.clone(), pending);
}

/// Most pushes in one `_batch`: a device that was away long gets its queue
/// in pages, each sent once the previous one is acked.
pub const BATCH_PAGE: usize = 100;

fn send_batch(io: Io, place: Place, sess: Arc<Session>, pending: Vec<PushEntry>) {
    tokio::spawn(async move {
        let Some(sock) = io.of(&sess.ns).and_then(|n| n.get_socket(sess.sid)) else {
            return;
        };
        // The acked pages' entries, settled together in the batch's place
        // at the front of the device's ack line.
        let mut carried = Carried {
            seqs: Vec::with_capacity(pending.len()),
            resync: false,
        };
        for page in pending.chunks(BATCH_PAGE) {
            let events: Vec<Value> = page
                .iter()
                .map(|e| {
                    let mut a = Vec::with_capacity(e.args.len() + 1);
                    a.push(Value::String(e.event.clone()));
                    a.extend(e.args.iter().cloned());
                    Value::Array(a)
                })
                .collect();
            let Ok(fut) = sock.emit_with_ack::<_, Value>("_batch", &(events,)) else {
                break;
            };
            if !acked(&fut.await) {
                break; // the rest stays queued for the next connection
            }
            carried.seqs.extend(page.iter().map(|e| e.seq));
            carried.resync |= page.iter().any(|e| e.resync);
        }
        place
            .settle((!carried.seqs.is_empty()).then_some(carried))
            .await;
    });
}

pub async fn on_disconnected(state: &Services, sess: &Arc<Session>, uid: &str) {
    if let Err(e) = state
        .store
        .device_seen(&sess.tenant_name, uid, sess.device_key(), now_ms())
        .await
    {
        tracing::warn!(tenant = %sess.tenant_name, %uid, error = %e, "recording device last-seen failed");
    }
}
