//! A [`Store`] that times every operation of the store it wraps and tells
//! a [`StoreObserver`] (the node's `hookwire_store_latency_seconds` and
//! `hookwire_store_errors` metrics): timing written once, around every
//! backend, instead of at call sites.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::*;

/// Where a [`Timed`] store reports each operation.
pub trait StoreObserver: Send + Sync + 'static {
    /// `op` is the [`Store`] method's name; `ok` whether it succeeded.
    fn observe(&self, op: &'static str, seconds: f64, ok: bool);
}

/// `inner`, with every operation timed.
pub struct Timed {
    inner: Arc<dyn Store>,
    observer: Arc<dyn StoreObserver>,
}

impl Timed {
    pub fn new(inner: Arc<dyn Store>, observer: Arc<dyn StoreObserver>) -> Timed {
        Timed { inner, observer }
    }
}

/// The `Store` impl: each listed method forwards to `inner` and reports.
macro_rules! timed_store {
    ($(async fn $op:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for Timed {
            fn kind(&self) -> &'static str {
                self.inner.kind()
            }

            // The memory tier's write-behind batches are not single
            // operations of the pipeline; they stay untimed.
            fn kv_entries(&self) -> Option<&dyn KvEntries> {
                self.inner.kv_entries()
            }

            $(
                async fn $op(&self $(, $arg: $ty)*) -> $ret {
                    let started = Instant::now();
                    let r = self.inner.$op($($arg),*).await;
                    self.observer.observe(stringify!($op), started.elapsed().as_secs_f64(), r.is_ok());
                    r
                }
            )*
        }
    };
}

timed_store! {
    async fn ping(&self) -> StoreResult<()>;
    async fn flush(&self) -> StoreResult<()>;
    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;
    async fn put_tenant(&self, t: &TenantRecord) -> StoreResult<()>;
    async fn get_tenant(&self, name: &str) -> StoreResult<Option<TenantRecord>>;
    async fn swap_tenant(&self, t: &TenantRecord, expected: Option<u64>) -> StoreResult<bool>;
    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>>;
    async fn delete_tenant(&self, name: &str) -> StoreResult<bool>;
    async fn put_user(&self, tenant: &str, user: &UserRecord) -> StoreResult<()>;
    async fn get_user(&self, tenant: &str, uid: &str) -> StoreResult<Option<UserRecord>>;
    async fn room_write(&self, tenant: &str, room: &str, write: RoomWrite, max_entries: u64) -> StoreResult<RoomWriteAck>;
    async fn room_read(&self, tenant: &str, room: &str, req: PageRequest) -> StoreResult<RoomPage>;
    async fn room_clear(&self, tenant: &str, room: &str) -> StoreResult<u64>;
    async fn room_epoch(&self, tenant: &str, room: &str) -> StoreResult<u64>;
    async fn push_next_seq(&self, tenant: &str) -> StoreResult<u64>;
    async fn push_enqueue(&self, tenant: &str, uid: &str, devices: &[String], entry: &PushEntry, max_queue: u64) -> StoreResult<()>;
    async fn push_pending(&self, tenant: &str, uid: &str, device: &str) -> StoreResult<Vec<PushEntry>>;
    async fn push_ack(&self, tenant: &str, uid: &str, device: &str, seqs: &[u64]) -> StoreResult<PushAckOutcome>;
    async fn push_clear(&self, tenant: &str, uid: &str, device: &str) -> StoreResult<()>;
    async fn push_move(&self, tenant: &str, uid: &str, from: &str, to: &str) -> StoreResult<()>;
    async fn device_seen(&self, tenant: &str, uid: &str, device: &str, now_ms: u64) -> StoreResult<()>;
    async fn devices(&self, tenant: &str, uid: &str) -> StoreResult<Vec<(String, u64)>>;
    async fn expire_devices(&self, tenant: &str, before_ms: u64) -> StoreResult<usize>;
    async fn put_plugin(&self, tenant: &str, rec: &PluginRecord, wasm: &[u8]) -> StoreResult<()>;
    async fn list_plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>>;
    async fn get_plugin_wasm(&self, tenant: &str, name: &str, version: u64) -> StoreResult<Option<Vec<u8>>>;
    async fn delete_plugin(&self, tenant: &str, name: &str) -> StoreResult<bool>;
    async fn get_chain(&self, tenant: &str) -> StoreResult<PluginChainRecord>;
    async fn put_chain(&self, tenant: &str, chain: &PluginChainRecord) -> StoreResult<()>;
    async fn kv_get(&self, tenant: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn kv_set(&self, tenant: &str, key: &str, value: &[u8], ttl_ms: u64) -> StoreResult<()>;
    async fn kv_incr(&self, tenant: &str, key: &str, delta: i64, ttl_ms: u64) -> StoreResult<i64>;
    async fn kv_delete_prefix(&self, tenant: &str, prefix: &str) -> StoreResult<u64>;
    async fn kv_purge_expired(&self, now_ms: u64) -> StoreResult<u64>;
}
