//! Live taps: an administrator watching a room's `msg` traffic as it is
//! relayed. Read-only and bounded: a node serves at most [`MAX_TAPS`]
//! watchers, each gets at most [`TAP_RATE`] messages a second (the rest are
//! counted as dropped, never queued), and a room nobody taps costs one
//! atomic load per `msg`.
//!
//! In a cluster a watcher sees every node's traffic: its node says on the
//! bus that the room is watched (again every [`WATCH_REPEAT`]), each node
//! publishes what it relays to a watched room on the bus, and every node
//! hands what it hears to its own watchers. A node that stops saying so
//! (closed tap, node gone) stops the publishing after [`WATCH_EXPIRY`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::cluster::hub::RedisHub;
use crate::cluster::{TAP_CHANNEL, TAP_WATCH_CHANNEL};

/// How often a node with a watcher says the room is watched.
pub const WATCH_REPEAT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long a room counts as watched after it was last said to be.
pub const WATCH_EXPIRY: std::time::Duration = std::time::Duration::from_secs(10);

/// Watchers a node serves at once.
pub const MAX_TAPS: usize = 16;
/// Messages a second one watcher is sent; more are dropped and counted.
pub const TAP_RATE: u32 = 50;
/// Messages waiting for a slow watcher before it lags (and counts them).
const BACKLOG: usize = 64;

/// One relayed message: its sender's room and the JSON text relayed.
pub type Tapped = Arc<str>;

type RoomKey = (Arc<str>, String);

#[derive(Default)]
pub struct Taps {
    /// Watchers on this node; zero keeps the `msg` path to one load.
    watching: AtomicUsize,
    rooms: Mutex<HashMap<RoomKey, broadcast::Sender<Tapped>>>,
    /// The node is shutting down: no new taps, and open ones have ended.
    closed: std::sync::atomic::AtomicBool,
    /// The cluster's bus, when there is one.
    hub: std::sync::OnceLock<Arc<RedisHub>>,
    /// Rooms some node (this one too) said are watched, until when.
    watched: Mutex<HashMap<RoomKey, std::time::Instant>>,
    /// Entries of `watched`; zero keeps the `msg` path to one load.
    watched_len: AtomicUsize,
}

/// Why a tap was not opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    #[error("this node already serves {MAX_TAPS} live taps; close one and retry")]
    Busy,
    #[error("this node is shutting down")]
    Closed,
}

/// One watcher's subscription; closing it (dropping) frees its place.
pub struct Tap {
    taps: Arc<Taps>,
    key: RoomKey,
    pub rx: broadcast::Receiver<Tapped>,
    /// Says on the bus that the room is watched, while this tap lives.
    announcing: Option<tokio::task::AbortHandle>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(a) = &self.announcing {
            a.abort();
        }
        self.taps.watching.fetch_sub(1, Ordering::Relaxed);
        let mut rooms = self.taps.rooms.lock();
        // This receiver is still counted until it drops after this body.
        if rooms
            .get(&self.key)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            rooms.remove(&self.key);
        }
    }
}

impl Taps {
    /// Is anyone watching any room, here or on another node?
    pub fn any(&self) -> bool {
        self.watching.load(Ordering::Relaxed) > 0 || self.watched_len.load(Ordering::Relaxed) > 0
    }

    /// Joins the cluster's bus: watchers see every node's traffic.
    pub fn cluster(&self, hub: Arc<RedisHub>) {
        let _ = self.hub.set(hub);
    }

    /// Another node (or this one, heard back) has a watcher of the room.
    pub fn watched_elsewhere(&self, tenant: &str, room: &str) {
        let now = std::time::Instant::now();
        let mut w = self.watched.lock();
        w.retain(|_, until| *until > now);
        w.insert((tenant.into(), room.to_string()), now + WATCH_EXPIRY);
        self.watched_len.store(w.len(), Ordering::Relaxed);
    }

    /// Whether some node said the room is watched, not long ago.
    fn watched_anywhere(&self, key: &RoomKey) -> bool {
        let mut w = self.watched.lock();
        match w.get(key) {
            Some(until) if *until > std::time::Instant::now() => true,
            Some(_) => {
                w.remove(key);
                self.watched_len.store(w.len(), Ordering::Relaxed);
                false
            }
            None => false,
        }
    }

    /// Starts watching `room` of `tenant`.
    pub fn watch(self: &Arc<Self>, tenant: &str, room: &str) -> Result<Tap, TapError> {
        let mut rooms = self.rooms.lock();
        if self.closed.load(Ordering::Relaxed) {
            return Err(TapError::Closed);
        }
        if self.watching.load(Ordering::Relaxed) >= MAX_TAPS {
            return Err(TapError::Busy);
        }
        self.watching.fetch_add(1, Ordering::Relaxed);
        let key: RoomKey = (tenant.into(), room.to_string());
        let rx = rooms
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe();
        let announcing = self.hub.get().map(|hub| {
            let (hub, said) = (hub.clone(), format!("{tenant}\u{1}{room}"));
            tokio::spawn(async move {
                loop {
                    hub.publish(TAP_WATCH_CHANNEL.into(), said.clone().into_bytes());
                    tokio::time::sleep(WATCH_REPEAT).await;
                }
            })
            .abort_handle()
        });
        Ok(Tap {
            taps: self.clone(),
            key,
            rx,
            announcing,
        })
    }

    /// Ends every open tap (their streams see the channel close) and
    /// refuses new ones: a watcher must not hold the node's shutdown.
    pub fn close_all(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.rooms.lock().clear();
    }

    /// A `msg` relayed to `room` on this node: to its watchers, through the
    /// bus in a cluster (every node's watchers hear it there, this node's
    /// too), else directly.
    pub fn publish(&self, tenant: &str, room: &str, text: &str) {
        if !self.any() {
            return;
        }
        let Some(hub) = self.hub.get() else {
            return self.deliver(tenant, room, text);
        };
        let key: RoomKey = (tenant.into(), room.to_string());
        if self.rooms.lock().contains_key(&key) || self.watched_anywhere(&key) {
            let payload = format!("{tenant}\u{1}{room}\u{1}{text}");
            hub.publish(TAP_CHANNEL.into(), payload.into_bytes());
        }
    }

    /// A tapped `msg` (relayed here or, in a cluster, heard on the bus):
    /// handed to this node's watchers of the room, if any.
    pub fn deliver(&self, tenant: &str, room: &str, text: &str) {
        if self.watching.load(Ordering::Relaxed) == 0 {
            return;
        }
        let rooms = self.rooms.lock();
        let key: RoomKey = (tenant.into(), room.to_string());
        if let Some(tx) = rooms.get(&key) {
            let _ = tx.send(text.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_gets_its_room_only_and_its_place_is_freed() {
        let taps = Arc::new(Taps::default());
        taps.publish("t", "r", "{}");
        let mut tap = taps.watch("t", "r").unwrap();
        assert!(taps.any());
        taps.publish("t", "other", "{\"a\":0}");
        taps.publish("u", "r", "{\"a\":0}");
        taps.publish("t", "r", "{\"a\":1}");
        assert_eq!(&*tap.rx.try_recv().unwrap(), "{\"a\":1}");
        assert!(tap.rx.try_recv().is_err());
        drop(tap);
        assert!(!taps.any());
        assert!(taps.rooms.lock().is_empty(), "the room's channel goes");
    }

    #[test]
    fn a_node_serves_a_bounded_number_of_watchers() {
        let taps = Arc::new(Taps::default());
        let held: Vec<Tap> = (0..MAX_TAPS)
            .map(|i| taps.watch("t", &format!("r{}", i % 3)).unwrap())
            .collect();
        assert_eq!(taps.watch("t", "r").err(), Some(TapError::Busy));
        drop(held);
        assert!(taps.watch("t", "r").is_ok());
    }

    #[test]
    fn a_room_watched_elsewhere_counts_until_it_is_not_said_again() {
        let taps = Taps::default();
        assert!(!taps.any());
        taps.watched_elsewhere("t", "r");
        assert!(taps.any());
        let key: RoomKey = ("t".into(), "r".into());
        assert!(taps.watched_anywhere(&key));
        taps.watched.lock().insert(
            key.clone(),
            std::time::Instant::now() - std::time::Duration::from_secs(1),
        );
        assert!(
            !taps.watched_anywhere(&key),
            "an expired watch is forgotten"
        );
        assert!(!taps.any());
    }

    #[test]
    fn closing_ends_open_taps_and_refuses_new_ones() {
        let taps = Arc::new(Taps::default());
        let mut tap = taps.watch("t", "r").unwrap();
        taps.close_all();
        assert!(matches!(
            tap.rx.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert_eq!(taps.watch("t", "r").err(), Some(TapError::Closed));
    }

    #[test]
    fn a_slow_watcher_lags_instead_of_holding_messages() {
        let taps = Arc::new(Taps::default());
        let mut tap = taps.watch("t", "r").unwrap();
        for i in 0..(BACKLOG + 10) {
            taps.publish("t", "r", &format!("{{\"i\":{i}}}"));
        }
        match tap.rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
    }
}
