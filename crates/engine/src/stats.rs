//! Process-wide counters of the transport, read by the server's metrics
//! endpoint (`engineioxide::stats::snapshot()`). Relaxed atomics: one add
//! per frame or write call, never a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    #[inline]
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Frames written straight from the emitting task (nothing was queued).
pub static FRAMES_DIRECT: Counter = Counter::new();
/// Frames that waited in a socket's queue (a write was pending, the
/// socket was on polling, or the kernel took only part of the frame).
pub static FRAMES_QUEUED: Counter = Counter::new();
/// Frames queued for the socket's own task although nothing was pending,
/// because the emitting thread had used its write-through budget (a
/// broadcast to a large room spreads its sends over the workers).
pub static FRAMES_HANDED_OFF: Counter = Counter::new();
/// `writev`/`write` calls made on WebSocket connections.
pub static WS_WRITE_CALLS: Counter = Counter::new();
/// Sessions closed because their outbound queue passed its bound.
pub static SLOW_CONSUMERS: Counter = Counter::new();
/// Connections closed for a WebSocket protocol violation.
pub static WS_PROTOCOL_ERRORS: Counter = Counter::new();

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub frames_direct: u64,
    pub frames_queued: u64,
    pub frames_handed_off: u64,
    pub ws_write_calls: u64,
    pub slow_consumers: u64,
    pub ws_protocol_errors: u64,
}

/// Reads every counter.
pub fn snapshot() -> Snapshot {
    Snapshot {
        frames_direct: FRAMES_DIRECT.get(),
        frames_queued: FRAMES_QUEUED.get(),
        frames_handed_off: FRAMES_HANDED_OFF.get(),
        ws_write_calls: WS_WRITE_CALLS.get(),
        slow_consumers: SLOW_CONSUMERS.get(),
        ws_protocol_errors: WS_PROTOCOL_ERRORS.get(),
    }
}
