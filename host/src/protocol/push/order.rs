//! Each device's push acks put in send order, on this node.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::ack_entries;
use crate::protocol::Services;

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
pub(super) struct Carried {
    pub(super) seqs: Vec<u64>,
    pub(super) resync: bool,
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
pub(super) struct Place {
    state: Services,
    pub(super) ns: String,
    key: LineKey,
    pos: Pos,
    settled: bool,
}

impl Place {
    pub(super) fn new(
        state: &Services,
        ns: &str,
        tenant: &str,
        uid: &str,
        device: &str,
        at: u64,
    ) -> Self {
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
    pub(super) async fn settle(mut self, ack: Option<Carried>) {
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
