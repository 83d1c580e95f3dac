//! Live taps: an administrator watching a room's `msg` traffic as it is
//! relayed on this node. Read-only and bounded: a node serves at most
//! [`MAX_TAPS`] watchers, each gets at most [`TAP_RATE`] messages a second
//! (the rest are counted as dropped, never queued), and a room nobody taps
//! costs one atomic load per `msg`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::broadcast;

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
}

impl Drop for Tap {
    fn drop(&mut self) {
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
    /// Is anyone watching any room on this node?
    pub fn any(&self) -> bool {
        self.watching.load(Ordering::Relaxed) > 0
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
        Ok(Tap {
            taps: self.clone(),
            key,
            rx,
        })
    }

    /// Ends every open tap (their streams see the channel close) and
    /// refuses new ones: a watcher must not hold the node's shutdown.
    pub fn close_all(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.rooms.lock().clear();
    }

    /// A `msg` relayed to `room`: handed to its watchers, if any.
    pub fn publish(&self, tenant: &str, room: &str, text: &str) {
        if !self.any() {
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
