//! Durable state behind one trait, [`Store`], and the records it keeps. The
//! backends (embedded redb, the default; Redis; MongoDB) live in the
//! `hookwire-store` crate, and one conformance suite
//! (`tests/store_conformance.rs`) runs against every one.
//!
//! Payloads are kept as JSON text (`String`) so the room log never
//! re-serialises what a client sent.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;
use crate::tenant::TenantConfig;

pub type StoreResult<T> = Result<T, StoreError>;

/// A room write in flight (the socket worker pipelines these in order).
pub type PendingWrite = std::pin::Pin<Box<dyn Future<Output = StoreResult<RoomWriteAck>> + Send>>;

/// A tenant as stored: its name, config and the SHA-256 of each API key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantRecord {
    pub name: String,
    pub config: TenantConfig,
    /// Hex SHA-256 of every valid API key (the key itself is never stored).
    pub api_key_hashes: Vec<String>,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// Raised by one on every change, so a change is a compare-and-set of
    /// the record it was made from ([`Store::swap_tenant`]). Records
    /// written before versions existed read as 0.
    #[serde(default)]
    pub version: u64,
}

/// A user of a tenant (made by `POST /user/create_token`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserRecord {
    pub uid: String,
    /// Hex SHA-256 of the current token.
    pub token_hash: String,
    pub created_ms: u64,
}

/// One stored room message: the JSON object relayed to the room (with `uid`
/// and `ts` added), plus the metadata the admin API shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoomEntry {
    pub uid: String,
    /// Unix seconds, as the admin API's `room_msgs` shows it.
    pub ts: u64,
    /// The relayed message, as JSON text.
    pub msg: String,
}

/// A write to a room log.
#[derive(Debug, Clone)]
pub enum RoomWrite {
    /// Append to the insert log.
    Insert(RoomEntry),
    /// Replace the current value of `msg_id` (the history of updates is kept).
    Update { msg_id: String, entry: RoomEntry },
}

/// Outcome of a room write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomWriteAck {
    /// Position in the insert log (for an insert: the new entry's; for an
    /// update: the log length at the time).
    pub seq: u64,
    pub epoch: u64,
}

/// What one page of a room log may hold, as `sync` asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Where to start in the insert log.
    pub offset: u64,
    /// Most inserts in the page, and most update values (0: nothing is
    /// read; the page only tells whether inserts remain).
    pub max_count: usize,
    /// Most bytes of stored JSON in the page, inserts and update values
    /// together. A page always holds at least one message, however large.
    pub max_bytes: usize,
    /// Continue the update values after this msgId (`None`: from the first).
    pub updates_after: Option<String>,
}

impl PageRequest {
    /// A page bounded in count only.
    pub fn count(offset: u64, max_count: usize) -> Self {
        PageRequest {
            offset,
            max_count,
            max_bytes: usize::MAX,
            updates_after: None,
        }
    }

    /// The same request bounded in bytes too.
    pub fn bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The same request continuing the update values after `msg_id`.
    pub fn updates_after(mut self, msg_id: Option<String>) -> Self {
        self.updates_after = msg_id;
        self
    }
}

impl RoomPage {
    /// Whether more remains after this page (inserts or update values).
    pub fn has_next(&self) -> bool {
        self.more || self.updates_more
    }

    /// Where the next page's update values start, for a page read with
    /// `updates_after`: after this page's last one, or where this page
    /// started when it held none. `None` when no value remains, and while
    /// the first is still to come (the same offset starts from it).
    pub fn next_cursor(&self, updates_after: Option<&str>) -> Option<String> {
        if !self.updates_more {
            return None;
        }
        self.updates_last
            .clone()
            .or_else(|| updates_after.map(str::to_string))
    }
}

/// Counts one page's messages against its [`PageRequest`]; every backend
/// fills its pages through it, so the bounds mean the same everywhere.
#[derive(Debug)]
pub struct PageBudget {
    count: usize,
    max_count: usize,
    bytes: usize,
    max_bytes: usize,
}

impl PageBudget {
    pub fn new(req: &PageRequest) -> Self {
        PageBudget {
            count: 0,
            max_count: req.max_count,
            bytes: 0,
            max_bytes: req.max_bytes,
        }
    }

    /// Whether a message of `len` bytes fits, counting it if so. The first
    /// message of a page always fits (a page is never empty for its size);
    /// `count` is this kind's messages so far (inserts, or update values).
    pub fn admit(&mut self, count: usize, len: usize) -> bool {
        if count >= self.max_count {
            return false;
        }
        let first = self.count == 0;
        if !first && self.bytes.saturating_add(len) > self.max_bytes {
            return false;
        }
        self.count += 1;
        self.bytes = self.bytes.saturating_add(len);
        true
    }
}

/// One page of a room log, in insert order, as `sync` serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomPage {
    /// Inserted entries from the requested offset (trimmed ones are skipped).
    pub inserts: Vec<(u64, RoomEntry)>,
    /// Current values of updated msgIds, in msgId order, after the
    /// request's `updates_after`; only filled when the insert log is
    /// exhausted by this page.
    pub updates: Vec<RoomEntry>,
    /// Where the next page starts in the insert log.
    pub next_offset: u64,
    /// True when more inserts remain after this page.
    pub more: bool,
    /// True when the insert log is exhausted but more update values remain
    /// (the page's bounds stopped them): continue after `updates_last`.
    pub updates_more: bool,
    /// msgId of the last update value in `updates`.
    pub updates_last: Option<String>,
    pub epoch: u64,
}

/// A message queued for reliable delivery to one device of one user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PushEntry {
    /// Tenant-wide, strictly increasing: the global send order.
    pub seq: u64,
    pub event: String,
    /// The event's arguments.
    pub args: Vec<Value>,
    /// Whether an out-of-order ack triggers `_resync`.
    pub resync: bool,
}

/// What acking a set of pushes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushAckOutcome {
    /// How many of the acked entries were still pending.
    pub removed: usize,
    /// The smallest acked seq was the oldest pending entry.
    pub was_oldest: bool,
}

/// A plugin version as stored (the wasm runtime reads these).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginRecord {
    pub name: String,
    pub version: u64,
    /// Hex SHA-256 of the component bytes.
    pub hash: String,
    pub size: u64,
    /// The plugin's manifest (limits, permissions, config) as JSON.
    pub manifest: Value,
    pub created_ms: u64,
}

/// The active chain of a tenant: plugin names with their active versions, in
/// call order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PluginChainRecord {
    pub entries: Vec<ChainEntry>,
    /// Bumped on every change, so nodes can tell a stale chain.
    pub revision: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChainEntry {
    pub name: String,
    pub version: u64,
}

/// Everything hookwire keeps durably. Implementations must be safe to call
/// from many tasks at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Backend name for logs and `/healthz` (`embedded`, `redis`, `mongodb`).
    fn kind(&self) -> &'static str;

    /// Cheap liveness probe for `/healthz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Make everything acknowledged so far durable (graceful shutdown).
    async fn flush(&self) -> StoreResult<()>;

    // --- node-wide metadata (e.g. the admin key hash) ---
    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;

    // --- tenants ---
    async fn put_tenant(&self, t: &TenantRecord) -> StoreResult<()>;
    async fn get_tenant(&self, name: &str) -> StoreResult<Option<TenantRecord>>;
    /// Compare-and-set: writes `t` only if the stored record of `t.name` is
    /// at version `expected` (`None`: only if there is none). Returns
    /// whether it wrote.
    async fn swap_tenant(&self, t: &TenantRecord, expected: Option<u64>) -> StoreResult<bool>;
    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>>;
    /// Deletes the tenant and all of its data. Returns whether it existed.
    async fn delete_tenant(&self, name: &str) -> StoreResult<bool>;

    // --- users and tokens ---
    async fn put_user(&self, tenant: &str, user: &UserRecord) -> StoreResult<()>;
    async fn get_user(&self, tenant: &str, uid: &str) -> StoreResult<Option<UserRecord>>;

    // --- room logs ---
    /// Writes one message. Returns once it is durable (group commit: many
    /// concurrent writes share one disk sync). Keeps at most `max_entries`
    /// inserts per room, trimming the oldest.
    async fn room_write(
        &self,
        tenant: &str,
        room: &str,
        write: RoomWrite,
        max_entries: u64,
    ) -> StoreResult<RoomWriteAck>;
    /// One page from `req.offset`: inserts, then (once the insert log is
    /// exhausted) update values after `req.updates_after`, within the
    /// request's bounds.
    async fn room_read(&self, tenant: &str, room: &str, req: PageRequest) -> StoreResult<RoomPage>;
    /// Removes every stored message of the room and raises its epoch.
    async fn room_clear(&self, tenant: &str, room: &str) -> StoreResult<u64>;
    async fn room_epoch(&self, tenant: &str, room: &str) -> StoreResult<u64>;

    // --- reliable pushes, per (user, device) ---
    /// Assigns the next tenant-wide push seq.
    async fn push_next_seq(&self, tenant: &str) -> StoreResult<u64>;
    /// Queues `entry` for each of `devices` of `uid`; a device queue keeps
    /// at most `max_queue` entries, dropping its oldest.
    async fn push_enqueue(
        &self,
        tenant: &str,
        uid: &str,
        devices: &[String],
        entry: &PushEntry,
        max_queue: u64,
    ) -> StoreResult<()>;
    /// Pending entries of one device, oldest first.
    async fn push_pending(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
    ) -> StoreResult<Vec<PushEntry>>;
    async fn push_ack(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
        seqs: &[u64],
    ) -> StoreResult<PushAckOutcome>;
    async fn push_clear(&self, tenant: &str, uid: &str, device: &str) -> StoreResult<()>;
    /// Moves the entries queued for `from` (e.g. the "no device" queue) to `to`.
    async fn push_move(&self, tenant: &str, uid: &str, from: &str, to: &str) -> StoreResult<()>;
    /// Records that a device of `uid` was online at `now_ms`.
    async fn device_seen(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
        now_ms: u64,
    ) -> StoreResult<()>;
    /// Devices of `uid` with their last-seen time.
    async fn devices(&self, tenant: &str, uid: &str) -> StoreResult<Vec<(String, u64)>>;
    /// Forgets devices (and their queues) last seen before `before_ms`.
    /// Returns how many were forgotten.
    async fn expire_devices(&self, tenant: &str, before_ms: u64) -> StoreResult<usize>;

    // --- plugins ---
    async fn put_plugin(&self, tenant: &str, rec: &PluginRecord, wasm: &[u8]) -> StoreResult<()>;
    async fn list_plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>>;
    async fn get_plugin_wasm(
        &self,
        tenant: &str,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<Vec<u8>>>;
    async fn delete_plugin(&self, tenant: &str, name: &str) -> StoreResult<bool>;
    async fn get_chain(&self, tenant: &str) -> StoreResult<PluginChainRecord>;
    async fn put_chain(&self, tenant: &str, chain: &PluginChainRecord) -> StoreResult<()>;

    // --- plugin key-value store (tenant-scoped; TTL in ms, 0 = none) ---
    async fn kv_get(&self, tenant: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn kv_set(&self, tenant: &str, key: &str, value: &[u8], ttl_ms: u64) -> StoreResult<()>;
    /// Adds `delta` (missing = 0); the TTL is set when the key is created.
    async fn kv_incr(&self, tenant: &str, key: &str, delta: i64, ttl_ms: u64) -> StoreResult<i64>;
    /// Deletes every kv key of `tenant` that starts with `prefix` (the keys
    /// of a deleted plugin, so a new plugin of the same name starts empty).
    async fn kv_delete_prefix(&self, tenant: &str, prefix: &str) -> StoreResult<u64>;
    /// Deletes kv keys expired at `now_ms`, where the backend does not
    /// expire them by itself. Returns how many.
    async fn kv_purge_expired(&self, now_ms: u64) -> StoreResult<u64>;

    /// The kv entries of a store this node alone writes (the embedded one):
    /// the plugin runtime then serves kv from memory and writes behind
    /// through it. `None` for a store shared with other nodes, whose kv
    /// must be read where every node writes it.
    fn kv_entries(&self) -> Option<&dyn KvEntries> {
        None
    }
}

/// A kv write the plugin runtime's memory tier hands back to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct KvWrite {
    pub tenant: String,
    pub key: String,
    /// `None`: the key is gone.
    pub value: Option<Vec<u8>>,
    /// Absolute expiry in ms since the epoch; 0 = none.
    pub expiry_ms: u64,
}

/// Plugin kv by entry, with absolute expiries, for the runtime's memory
/// tier (see [`Store::kv_entries`]).
#[async_trait]
pub trait KvEntries: Send + Sync {
    /// The live value of a key and its absolute expiry (0 = none).
    async fn kv_get_entry(&self, tenant: &str, key: &str) -> StoreResult<Option<(Vec<u8>, u64)>>;
    /// Writes `writes` in one commit, in order.
    async fn kv_put_entries(&self, writes: Vec<KvWrite>) -> StoreResult<()>;
}
