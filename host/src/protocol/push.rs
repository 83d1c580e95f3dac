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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::adapter::Io;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::Services;
use super::device_room;
use super::session::Session;
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

/// Puts each device's push acks in order, on this node.
///
/// A client acks pushes in the order it received them, but each delivery
/// waits for its ack in its own task, and tasks woken together run in any
/// order: handled as they woke, the ack for seq 2 could reach the store
/// before the ack for seq 1, look out of order, and earn a `_resync` the
/// client did not deserve.
///
/// So every delivery that asks a device for an ack takes a place in that
/// device's line before it is emitted: a live push at its seq (taken before
/// the entry is stored, so an entry in the store is either in the line or
/// no longer in flight), a `_batch` at the front (it carries the oldest
/// entries). When its ack comes, or its delivery ends without one (ack
/// timeout, socket closed), the place is settled, and acks are handled one
/// at a time (store `push_ack`, then `_resync` if the store says an acked
/// entry was not the oldest pending one):
/// - an acked `resync` delivery waits until every place before it is
///   settled; a delivery that ended without an ack just leaves the line
///   (its entry stays queued for redelivery), so the acks behind it then
///   really are out of order, and the store's `was_oldest` says so;
/// - an acked delivery without `resync` does not wait (no check depends on
///   its order), but is handled by the same one-at-a-time loop, ahead of
///   the waiting ones.
///
/// A line lives while a delivery to its device is in flight: every place is
/// settled when its delivery task ends (or drops it), and an empty line is
/// removed.
///
/// Node-local: deliveries to one device emitted from two nodes (`/send`s
/// that reached different nodes, or a live push from one node and the
/// `_batch` of the node the device reconnected to) are in two lines that do
/// not know each other, and an ack handled on one node can still overtake
/// an older one handled on the other.
#[derive(Default)]
pub struct AckOrder {
    lines: Mutex<HashMap<LineKey, Line>>,
    next_id: AtomicU64,
}

/// (tenant, uid, device).
type LineKey = (String, String, String);

/// A place: (seq it is ordered by, unique id).
type Pos = (u64, u64);

/// What an acked delivery carried.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Carried {
    seqs: Vec<u64>,
    resync: bool,
}

#[derive(Default)]
struct Line {
    /// Places not yet handled, in order: `None` until acked.
    places: BTreeMap<Pos, Option<Carried>>,
    /// Acked deliveries without `resync`, to handle without waiting.
    unordered: Vec<Carried>,
    /// Whether a task is handling this line's acks (only one may).
    draining: bool,
}

impl Line {
    /// What can be handled now, in order: acks that need no order first
    /// (handling them first only makes older entries leave the queue
    /// sooner), then the acked places at the front of the line.
    fn take_ready(&mut self) -> Vec<Carried> {
        let mut ready = std::mem::take(&mut self.unordered);
        while let Some(head) = self.places.first_entry() {
            if head.get().is_none() {
                break;
            }
            if let Some(c) = head.remove() {
                ready.push(c);
            }
        }
        ready
    }

    fn is_empty(&self) -> bool {
        self.places.is_empty() && self.unordered.is_empty()
    }
}

impl AckOrder {
    /// Takes a place in `key`'s line, ordered by `at`.
    fn enter(&self, key: &LineKey, at: u64) -> Pos {
        let pos = (at, self.next_id.fetch_add(1, Ordering::Relaxed));
        self.lines
            .lock()
            .entry(key.clone())
            .or_default()
            .places
            .insert(pos, None);
        pos
    }

    /// Settles a place: acked (`Some`, with what the delivery carried) or
    /// ended without an ack (`None`). Returns the acks that can now be
    /// handled, in order, when the caller becomes the line's drainer: it
    /// must handle them and then call [`next`](Self::next) until `None`.
    fn settle(&self, key: &LineKey, pos: Pos, ack: Option<Carried>) -> Option<Vec<Carried>> {
        let mut lines = self.lines.lock();
        let line = lines.get_mut(key)?;
        match ack {
            Some(c) if !c.resync => {
                line.places.remove(&pos);
                line.unordered.push(c);
            }
            Some(c) => {
                if let Some(place) = line.places.get_mut(&pos) {
                    *place = Some(c);
                }
            }
            None => {
                line.places.remove(&pos);
            }
        }
        if line.draining {
            // The drainer takes it from here.
            return None;
        }
        let ready = line.take_ready();
        if ready.is_empty() {
            if line.is_empty() {
                lines.remove(key);
            }
            return None;
        }
        line.draining = true;
        Some(ready)
    }

    /// For the drainer, once it handled what it was given: more acks to
    /// handle, or `None`, and it no longer drains the line.
    fn next(&self, key: &LineKey) -> Option<Vec<Carried>> {
        let mut lines = self.lines.lock();
        let line = lines.get_mut(key)?;
        let ready = line.take_ready();
        if !ready.is_empty() {
            return Some(ready);
        }
        line.draining = false;
        if line.is_empty() {
            lines.remove(key);
        }
        None
    }

    /// The drainer stopped before [`next`](Self::next) said `None` (its task
    /// was dropped): what it had not handled stays queued in the store.
    fn abandon(&self, key: &LineKey) {
        let mut lines = self.lines.lock();
        if let Some(line) = lines.get_mut(key) {
            line.draining = false;
            if line.is_empty() {
                lines.remove(key);
            }
        }
    }

    /// Devices with a delivery in flight (for tests).
    #[cfg(test)]
    fn lines(&self) -> usize {
        self.lines.lock().len()
    }
}

/// A delivery's place in its device's [`AckOrder`] line. Settle it when the
/// delivery ends; dropped unsettled, it leaves the line as unacked.
struct Place {
    state: Services,
    ns: String,
    key: LineKey,
    pos: Pos,
    settled: bool,
}

impl Place {
    fn new(state: &Services, ns: &str, tenant: &str, uid: &str, device: &str, at: u64) -> Self {
        let key = (tenant.to_string(), uid.to_string(), device.to_string());
        let pos = state.push_order.enter(&key, at);
        Place {
            state: state.clone(),
            ns: ns.to_string(),
            key,
            pos,
            settled: false,
        }
    }

    /// The delivery ended: acked, carrying `ack`, or not (`None`). Handles
    /// whatever acks of the device this lets through, in order.
    async fn settle(mut self, ack: Option<Carried>) {
        self.settled = true;
        if let Some(ready) = self.state.push_order.settle(&self.key, self.pos, ack) {
            self.drainer().run(ready).await;
        }
    }

    fn drainer(&self) -> Drainer {
        Drainer {
            state: self.state.clone(),
            ns: self.ns.clone(),
            key: self.key.clone(),
            done: false,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Some(ready) = self.state.push_order.settle(&self.key, self.pos, None) else {
            return;
        };
        // Acks were waiting behind this place: handle them on a task.
        let drainer = self.drainer();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drainer.run(ready));
        }
        // Without a runtime, dropping `drainer` abandons the line.
    }
}

/// The one task handling a line's acks for now.
struct Drainer {
    state: Services,
    ns: String,
    key: LineKey,
    done: bool,
}

impl Drainer {
    async fn run(mut self, mut ready: Vec<Carried>) {
        let (tenant, uid, device) = &self.key;
        loop {
            for c in ready {
                ack_entries(
                    &self.state,
                    tenant,
                    &self.ns,
                    uid,
                    device,
                    &c.seqs,
                    c.resync,
                )
                .await;
            }
            match self.state.push_order.next(&self.key) {
                Some(more) => ready = more,
                None => break,
            }
        }
        self.done = true;
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        if !self.done {
            self.state.push_order.abandon(&self.key);
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LineKey {
        ("t".into(), "u".into(), "d".into())
    }

    fn live(seq: u64) -> Carried {
        Carried {
            seqs: vec![seq],
            resync: true,
        }
    }

    #[test]
    fn acks_woken_in_reverse_are_handled_in_send_order() {
        let order = AckOrder::default();
        let (p1, p2) = (order.enter(&key(), 1), order.enter(&key(), 2));
        assert_eq!(
            order.settle(&key(), p2, Some(live(2))),
            None,
            "2 waits for 1"
        );
        assert_eq!(
            order.settle(&key(), p1, Some(live(1))),
            Some(vec![live(1), live(2)])
        );
        assert_eq!(order.next(&key()), None);
        assert_eq!(order.lines(), 0, "an empty line is removed");
    }

    #[test]
    fn an_ack_that_never_comes_lets_the_next_ones_through() {
        let order = AckOrder::default();
        let (p1, p2, p3) = (
            order.enter(&key(), 1),
            order.enter(&key(), 2),
            order.enter(&key(), 3),
        );
        assert_eq!(order.settle(&key(), p2, Some(live(2))), None);
        assert_eq!(order.settle(&key(), p3, Some(live(3))), None);
        // 1 timed out: 2 and 3 go to the store, which sees 1 still queued.
        assert_eq!(order.settle(&key(), p1, None), Some(vec![live(2), live(3)]));
        assert_eq!(order.next(&key()), None);
        assert_eq!(order.lines(), 0);
    }

    #[test]
    fn a_failed_place_in_the_middle_just_leaves() {
        let order = AckOrder::default();
        let (p1, p2, p3) = (
            order.enter(&key(), 1),
            order.enter(&key(), 2),
            order.enter(&key(), 3),
        );
        assert_eq!(order.settle(&key(), p2, None), None);
        assert_eq!(order.settle(&key(), p3, Some(live(3))), None);
        assert_eq!(
            order.settle(&key(), p1, Some(live(1))),
            Some(vec![live(1), live(3)])
        );
        assert_eq!(order.next(&key()), None);
        assert_eq!(order.lines(), 0);
    }

    #[test]
    fn one_drainer_at_a_time_picks_up_what_settles_meanwhile() {
        let order = AckOrder::default();
        let (p1, p2) = (order.enter(&key(), 1), order.enter(&key(), 2));
        assert_eq!(order.settle(&key(), p1, Some(live(1))), Some(vec![live(1)]));
        // While 1 is being handled, 2's ack comes: the drainer gets it.
        assert_eq!(order.settle(&key(), p2, Some(live(2))), None);
        assert_eq!(order.next(&key()), Some(vec![live(2)]));
        assert_eq!(order.next(&key()), None);
        assert_eq!(order.lines(), 0);
        // The line can start again.
        let p3 = order.enter(&key(), 3);
        assert_eq!(order.settle(&key(), p3, Some(live(3))), Some(vec![live(3)]));
    }

    #[test]
    fn acks_without_resync_do_not_wait() {
        let order = AckOrder::default();
        let (p1, p2) = (order.enter(&key(), 1), order.enter(&key(), 2));
        let plain = Carried {
            seqs: vec![2],
            resync: false,
        };
        assert_eq!(
            order.settle(&key(), p2, Some(plain.clone())),
            Some(vec![plain])
        );
        assert_eq!(order.next(&key()), None);
        assert_eq!(order.lines(), 1, "1 is still in flight");
        assert_eq!(order.settle(&key(), p1, None), None);
        assert_eq!(order.lines(), 0);
    }

    #[test]
    fn a_batch_goes_first_and_live_acks_wait_for_it() {
        let order = AckOrder::default();
        let live5 = order.enter(&key(), 5);
        let batch = order.enter(&key(), 0);
        let carried = Carried {
            seqs: vec![3, 5],
            resync: true,
        };
        assert_eq!(order.settle(&key(), live5, Some(live(5))), None);
        assert_eq!(
            order.settle(&key(), batch, Some(carried.clone())),
            Some(vec![carried, live(5)])
        );
        assert_eq!(order.next(&key()), None);
        assert_eq!(order.lines(), 0);
    }

    #[test]
    fn devices_have_their_own_lines() {
        let order = AckOrder::default();
        let other: LineKey = ("t".into(), "u".into(), "phone".into());
        let _p1 = order.enter(&key(), 1);
        let q2 = order.enter(&other, 2);
        assert_eq!(order.settle(&other, q2, Some(live(2))), Some(vec![live(2)]));
    }

    #[test]
    fn an_abandoned_drain_does_not_block_the_line() {
        let order = AckOrder::default();
        let (p1, p2) = (order.enter(&key(), 1), order.enter(&key(), 2));
        assert!(order.settle(&key(), p1, Some(live(1))).is_some());
        order.abandon(&key());
        assert_eq!(order.settle(&key(), p2, Some(live(2))), Some(vec![live(2)]));
        assert_eq!(order.next(&key()), None);
        assert_eq!(order.lines(), 0);
    }
}
