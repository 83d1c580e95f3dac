//! The order in which a room's `msg`s are relayed on this node.
//!
//! A stored `msg` is relayed only once its write has committed, so a member
//! that received it finds it in any `sync` it starts afterwards, on every
//! store and on every node (the write is in the shared store before the
//! relay leaves this node). Writes commit in the order the store was first
//! asked for them, which is the order of this module's *line* per room: a
//! write joins the line and is first polled under one lock. Relays leave in
//! the same order (a relay waits for every earlier write of the room on this
//! node), so on one node `sync` returns a room in the order its members
//! received it. A `msg` that is not stored takes its place in the same
//! line, so it does not overtake earlier stored ones.
//!
//! Cost: a relay waits for its commit (the group commit's batching delay
//! under load, one disk sync or one round trip to the store); measured in
//! BENCHMARKS.md. A write that fails is not relayed: nobody sees a message
//! `sync` can never return.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::store::{PendingWrite, RoomWriteAck, StoreResult};

/// One relay, not yet started (an `async` block does nothing until polled).
pub type Relay = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The relay lines of every room with writes in flight on this node.
#[derive(Default)]
pub struct RoomRelays {
    lines: Mutex<HashMap<String, Line>>,
}

#[derive(Default)]
struct Line {
    /// Ticket of `slots[0]`.
    head: u64,
    slots: VecDeque<Slot>,
    /// A task is relaying a batch taken from the head: others leave the
    /// rest to it, so relays never overtake one another.
    relaying: bool,
}

enum Slot {
    /// The write is in flight.
    Waiting,
    /// Ready to go out (`None`: the write failed or was abandoned; its
    /// place is skipped).
    Ready(Option<Relay>),
}

/// Key of a room's line.
fn key(tenant: &str, room: &str) -> String {
    let mut k = String::with_capacity(tenant.len() + room.len() + 1);
    k.push_str(tenant);
    k.push('\0');
    k.push_str(room);
    k
}

impl RoomRelays {
    /// Starts `write` in the room's line and returns it wrapped: once it
    /// commits, `relay` goes out after the relays of the room's earlier
    /// writes on this node; a failed write is not relayed.
    pub fn write(
        self: &Arc<Self>,
        tenant: &str,
        room: &str,
        mut write: PendingWrite,
        relay: Relay,
    ) -> PendingWrite {
        let key = key(tenant, room);
        let (ticket, early) = {
            let mut lines = self.lines.lock();
            let line = lines.entry(key.clone()).or_default();
            let ticket = line.head + line.slots.len() as u64;
            line.slots.push_back(Slot::Waiting);
            // The first poll puts the write in the store's queue (its group
            // commit, or its per-room lock); doing it under this lock makes
            // the store's order the line's order.
            let mut cx = Context::from_waker(Waker::noop());
            let early = match write.as_mut().poll(&mut cx) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => None,
            };
            (ticket, early)
        };
        let relays = self.clone();
        Box::pin(async move {
            let mut place = Place {
                relays: &relays,
                key: &key,
                ticket,
                relay: Some(relay),
            };
            let r: StoreResult<RoomWriteAck> = match early {
                Some(r) => r,
                None => write.await,
            };
            let relay = place.relay.take().filter(|_| r.is_ok());
            place.fill(relay);
            relays.drain(&key).await;
            r
        })
    }

    /// Relays a `msg` that is not stored, in its place behind the room's
    /// earlier writes on this node.
    pub async fn relay(self: &Arc<Self>, tenant: &str, room: &str, relay: Relay) {
        let key = key(tenant, room);
        {
            let mut lines = self.lines.lock();
            let line = lines.entry(key.clone()).or_default();
            line.slots.push_back(Slot::Ready(Some(relay)));
        }
        self.drain(&key).await;
    }

    /// Sends the ready relays at the head of the line, unless another task
    /// is sending them. One batch per call: a socket whose write completed
    /// is not kept relaying other sockets' messages for ever; what became
    /// ready meanwhile goes out from a task of its own.
    async fn drain(self: &Arc<Self>, key: &str) {
        if let Some(batch) = self.take_batch(key) {
            self.send(key, batch).await;
        }
    }

    /// Sends `batch` (taken from the head of `key`'s line, which is marked
    /// as relaying for it), in order; dropping the [`Sending`] releases the
    /// line, or hands what is left to a task of its own.
    async fn send(self: &Arc<Self>, key: &str, batch: VecDeque<Relay>) {
        let mut sending = Sending {
            relays: self,
            key,
            batch,
        };
        while let Some(r) = sending.batch.pop_front() {
            r.await;
        }
    }

    /// The ready relays at the head, and the line marked as relaying; `None`
    /// when there is nothing to send or another task is sending.
    fn take_batch(&self, key: &str) -> Option<VecDeque<Relay>> {
        let mut lines = self.lines.lock();
        let line = lines.get_mut(key)?;
        if line.relaying {
            return None;
        }
        let mut batch = VecDeque::new();
        while matches!(line.slots.front(), Some(Slot::Ready(_))) {
            if let Some(Slot::Ready(r)) = line.slots.pop_front() {
                batch.extend(r);
            }
            line.head += 1;
        }
        if line.slots.is_empty() && batch.is_empty() {
            lines.remove(key);
            return None;
        }
        if batch.is_empty() {
            return None;
        }
        line.relaying = true;
        Some(batch)
    }

    /// Ends a batch: the line is free again; when more became ready while
    /// it was sent, a task of its own sends it.
    fn release(self: &Arc<Self>, key: &str) {
        let more = {
            let mut lines = self.lines.lock();
            let Some(line) = lines.get_mut(key) else {
                return;
            };
            line.relaying = false;
            let more = matches!(line.slots.front(), Some(Slot::Ready(_)));
            if line.slots.is_empty() {
                lines.remove(key);
            }
            more
        };
        if more {
            self.spawn_drain(key.to_string(), VecDeque::new());
        }
    }

    /// From a task of its own: sends `rest` (relays this line already
    /// handed out, in order; the line is still marked as relaying for
    /// them), or, with none, drains the line.
    fn spawn_drain(self: &Arc<Self>, key: String, rest: VecDeque<Relay>) {
        let relays = self.clone();
        let task = async move {
            if rest.is_empty() {
                relays.drain(&key).await;
            } else {
                relays.send(&key, rest).await;
            }
        };
        // Without a runtime the node is shutting down: nothing is relayed.
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(task);
        }
    }

    /// Rooms with writes in flight (for tests).
    #[cfg(test)]
    fn lines(&self) -> usize {
        self.lines.lock().len()
    }
}

/// A write's place in its line. Filled when the write finished; if the
/// write's future is dropped first, the place is skipped so later relays
/// are not held up.
struct Place<'a> {
    relays: &'a Arc<RoomRelays>,
    key: &'a str,
    ticket: u64,
    relay: Option<Relay>,
}

impl Place<'_> {
    fn fill(&mut self, relay: Option<Relay>) {
        let mut lines = self.relays.lines.lock();
        if let Some(line) = lines.get_mut(self.key)
            && let Some(slot) = self
                .ticket
                .checked_sub(line.head)
                .and_then(|i| line.slots.get_mut(i as usize))
        {
            *slot = Slot::Ready(relay);
        }
        self.ticket = u64::MAX;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.ticket == u64::MAX {
            return;
        }
        self.fill(None);
        self.relays
            .spawn_drain(self.key.to_string(), VecDeque::new());
    }
}

/// A batch being sent. Dropped when it is done, or when the task sending it
/// is dropped midway: then the rest is sent from a task of its own, still
/// ahead of everything behind it in the line.
struct Sending<'a> {
    relays: &'a Arc<RoomRelays>,
    key: &'a str,
    batch: VecDeque<Relay>,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.batch.is_empty() {
            self.relays.release(self.key);
        } else {
            let rest = std::mem::take(&mut self.batch);
            self.relays.spawn_drain(self.key.to_string(), rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    type Log = Arc<Mutex<Vec<u32>>>;

    fn relay(log: &Log, n: u32) -> Relay {
        let log = log.clone();
        Box::pin(async move { log.lock().push(n) })
    }

    /// A write that finishes when told to, with this seq (or fails).
    fn write(rx: oneshot::Receiver<bool>, seq: u64) -> PendingWrite {
        Box::pin(async move {
            if rx.await.unwrap_or(false) {
                Ok(RoomWriteAck { seq, epoch: 0 })
            } else {
                Err(crate::error::StoreError::Closed)
            }
        })
    }

    #[tokio::test]
    async fn relays_leave_in_line_order_whatever_order_writes_finish_in() {
        let relays = Arc::new(RoomRelays::default());
        let log: Log = Default::default();
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        let w1 = tokio::spawn(relays.write("t", "r", write(rx1, 1), relay(&log, 1)));
        let w2 = tokio::spawn(relays.write("t", "r", write(rx2, 2), relay(&log, 2)));
        tx2.send(true).unwrap();
        w2.await.unwrap().unwrap();
        assert!(log.lock().is_empty(), "the second waits for the first");
        tx1.send(true).unwrap();
        w1.await.unwrap().unwrap();
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if log.lock().len() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(*log.lock(), [1, 2]);
        assert_eq!(relays.lines(), 0, "an empty line is removed");
    }

    #[tokio::test]
    async fn a_failed_write_is_not_relayed_and_does_not_hold_the_line() {
        let relays = Arc::new(RoomRelays::default());
        let log: Log = Default::default();
        let (tx1, rx1) = oneshot::channel();
        let w1 = relays.write("t", "r", write(rx1, 1), relay(&log, 1));
        let unstored = relays.relay("t", "r", relay(&log, 2));
        tx1.send(false).unwrap();
        assert!(w1.await.is_err());
        unstored.await;
        assert_eq!(*log.lock(), [2]);
    }

    #[tokio::test]
    async fn an_unstored_msg_waits_behind_earlier_writes() {
        let relays = Arc::new(RoomRelays::default());
        let log: Log = Default::default();
        let (tx1, rx1) = oneshot::channel();
        let w1 = tokio::spawn(relays.write("t", "r", write(rx1, 1), relay(&log, 1)));
        relays.relay("t", "r", relay(&log, 2)).await;
        assert!(log.lock().is_empty());
        tx1.send(true).unwrap();
        w1.await.unwrap().unwrap();
        assert_eq!(*log.lock(), [1, 2]);
    }

    #[tokio::test]
    async fn a_dropped_write_gives_its_place_up() {
        let relays = Arc::new(RoomRelays::default());
        let log: Log = Default::default();
        let (_tx1, rx1) = oneshot::channel::<bool>();
        let w1 = relays.write("t", "r", write(rx1, 1), relay(&log, 1));
        let (tx2, rx2) = oneshot::channel();
        let w2 = tokio::spawn(relays.write("t", "r", write(rx2, 2), relay(&log, 2)));
        tx2.send(true).unwrap();
        w2.await.unwrap().unwrap();
        {
            // Polled once, then dropped mid-flight.
            let mut w1 = w1;
            let _ = futures::poll!(&mut w1);
        }
        for _ in 0..100 {
            if !log.lock().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(*log.lock(), [2]);
    }

    #[tokio::test]
    async fn other_rooms_are_not_held_up() {
        let relays = Arc::new(RoomRelays::default());
        let log: Log = Default::default();
        let (_tx1, rx1) = oneshot::channel::<bool>();
        let _w1 = relays.write("t", "r1", write(rx1, 1), relay(&log, 1));
        relays.relay("t", "r2", relay(&log, 2)).await;
        assert_eq!(*log.lock(), [2]);
    }
}
