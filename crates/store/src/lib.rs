//! hookwire-store: the backends of the [`Store`] trait (declared in
//! `hookwire-core` and re-exported here, so `hookwire_store::Store` is the
//! one name callers use), each behind a cargo feature:
//! - [`embedded`] (`embedded`, the default store): redb on local disk, with
//!   a group commit;
//! - [`redis`] (`redis`): the whole store in Redis, for a cluster without
//!   MongoDB;
//! - [`mongo`] (`mongo`): durable records in MongoDB, beside Redis for
//!   fan-out.
//!
//! [`timed::Timed`] wraps any of them and times every operation (the
//! node's store latency and error metrics).
//!
//! [`redis_keys`] is the one Redis key scheme (store records, presence,
//! login attempts, node registry); the cluster bus uses it too, so it is
//! built whatever the features.
//!
//! The pieces every backend shares are written once, here: the JSON record
//! form (`to_json` / `from_json`), per-room write order (`RoomLocks`)
//! and prefix ranges (`prefix_end`). One conformance suite
//! (`tests/store_conformance.rs`) runs against every backend.

#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "redis")]
pub mod redis;
pub mod redis_keys;
pub mod timed;

pub use hookwire_core::error::StoreError;
pub use hookwire_core::store::*;

/// Records as JSON text (the Redis and MongoDB backends store them so).
#[cfg(any(feature = "redis", feature = "mongo"))]
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store records always serialise")
}

#[cfg(any(feature = "redis", feature = "mongo"))]
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Writes to one room, one at a time, in the order they first asked: a
/// fair (FIFO) lock per room. A backend that spreads concurrent commands
/// over a pool (MongoDB) or a bounded queue (Redis) would otherwise let a
/// socket's pipelined `msg`s reach the server, and take their sequence
/// numbers, out of order. Striped, so unrelated rooms rarely wait for each
/// other and the set never grows.
#[cfg(any(feature = "redis", feature = "mongo"))]
pub(crate) struct RoomLocks(Vec<tokio::sync::Mutex<()>>);

#[cfg(any(feature = "redis", feature = "mongo"))]
impl RoomLocks {
    const STRIPES: usize = 256;

    pub(crate) fn new() -> Self {
        RoomLocks(
            (0..Self::STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }

    pub(crate) async fn lock(&self, tenant: &str, room: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (tenant, room).hash(&mut h);
        self.0[h.finish() as usize % Self::STRIPES].lock().await
    }
}

/// The smallest string above every string that starts with `prefix` (the
/// end of a prefix range); `None` when there is none (all chars maximal).
#[cfg(any(feature = "embedded", feature = "mongo"))]
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = (c as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
