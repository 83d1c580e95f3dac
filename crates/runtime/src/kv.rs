//! Plugin kv (`kv-get`, `kv-set`, `kv-incr`) at memory speed.
//!
//! A rate limit or a counter does a kv write per message; as a durable
//! store commit each, that held a room to a few thousand messages per
//! second. When the store is this node's alone (the embedded store, see
//! [`Store::kv_entries`]) kv is served from memory: a key is read from the
//! store once, then every read and write is a map operation, and a
//! background task writes the changed keys behind, in one store commit per
//! [`FLUSH_EVERY`]. What a crash can lose: the kv writes of the last flush
//! period (a counter restarts a few increments low); a shutdown flushes
//! them all ([`PluginKv::flush`]).
//!
//! A store shared with other nodes (Redis, MongoDB) has no memory tier:
//! every node must see one counter, so every call goes to the store.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hookwire_core::clock::now_ms;
use hookwire_core::store::{KvWrite, Store, StoreResult};
use parking_lot::Mutex;

/// How often changed keys are written behind.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Keys kept in memory over all tenants; beyond it, unchanged keys are
/// dropped (and read again from the store when next used).
const MAX_KEYS: usize = 200_000;

type Key = (Arc<str>, String);

#[derive(Debug, Clone)]
struct Slot {
    /// `None`: known to be absent.
    value: Option<Vec<u8>>,
    /// Absolute expiry in ms, 0 = none.
    expiry_ms: u64,
    /// Changed since the last flush.
    dirty: bool,
}

impl Slot {
    fn live(&self, now: u64) -> Option<&[u8]> {
        let alive = self.expiry_ms == 0 || self.expiry_ms > now;
        self.value.as_deref().filter(|_| alive)
    }
}

#[derive(Default)]
struct Tier {
    slots: HashMap<Key, Slot>,
    /// Keys with `dirty` set, in the order they first changed.
    dirty: Vec<Key>,
}

/// The runtime's plugin kv over a store.
pub struct PluginKv {
    store: Arc<dyn Store>,
    /// Present when the store is this node's alone.
    memory: Option<Arc<Mutex<Tier>>>,
    /// Held while a flush writes, so [`PluginKv::flush`] waits for the
    /// background one.
    flushing: tokio::sync::Mutex<()>,
}

fn ttl_expiry(now: u64, ttl_ms: u64) -> u64 {
    if ttl_ms == 0 {
        0
    } else {
        now.saturating_add(ttl_ms)
    }
}

impl PluginKv {
    /// A kv over `store`; with a memory tier (and its flusher task) when
    /// the store allows one and a tokio runtime is running.
    pub fn new(store: Arc<dyn Store>) -> Arc<PluginKv> {
        let tokio = tokio::runtime::Handle::try_current().ok();
        let memory = (store.kv_entries().is_some() && tokio.is_some())
            .then(|| Arc::new(Mutex::new(Tier::default())));
        let kv = Arc::new(PluginKv {
            store,
            memory,
            flushing: tokio::sync::Mutex::new(()),
        });
        if let (Some(handle), Some(_)) = (tokio, &kv.memory) {
            let weak = Arc::downgrade(&kv);
            handle.spawn(flush_loop(weak));
        }
        kv
    }

    /// Whether kv is served from memory.
    pub fn in_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// The slot of `(tenant, key)`, read from the store on a miss.
    async fn load(&self, tier: &Mutex<Tier>, tenant: &str, key: &str) -> StoreResult<()> {
        let k: Key = (tenant.into(), key.to_string());
        if tier.lock().slots.contains_key(&k) {
            return Ok(());
        }
        let entries = self
            .store
            .kv_entries()
            .expect("a memory tier has kv entries");
        let found = entries.kv_get_entry(tenant, key).await?;
        let mut t = tier.lock();
        // Another call may have loaded (or written) it meanwhile: keep that.
        t.slots.entry(k).or_insert_with(|| match found {
            Some((value, expiry_ms)) => Slot {
                value: Some(value),
                expiry_ms,
                dirty: false,
            },
            None => Slot {
                value: None,
                expiry_ms: 0,
                dirty: false,
            },
        });
        evict(&mut t);
        Ok(())
    }

    pub async fn get(&self, tenant: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let Some(tier) = &self.memory else {
            return self.store.kv_get(tenant, key).await;
        };
        let k: Key = (tenant.into(), key.to_string());
        if let Some(slot) = tier.lock().slots.get(&k) {
            return Ok(slot.live(now_ms()).map(<[u8]>::to_vec));
        }
        self.load(tier, tenant, key).await?;
        Ok(tier
            .lock()
            .slots
            .get(&k)
            .and_then(|s| s.live(now_ms()).map(<[u8]>::to_vec)))
    }

    pub async fn set(&self, tenant: &str, key: &str, value: &[u8], ttl_ms: u64) -> StoreResult<()> {
        let Some(tier) = &self.memory else {
            return self.store.kv_set(tenant, key, value, ttl_ms).await;
        };
        let mut t = tier.lock();
        let slot = Slot {
            value: Some(value.to_vec()),
            expiry_ms: ttl_expiry(now_ms(), ttl_ms),
            dirty: true,
        };
        mark(&mut t, (tenant.into(), key.to_string()), slot);
        Ok(())
    }

    /// Adds `delta` (missing = 0); the TTL is set when the key is created,
    /// as the stores do.
    pub async fn incr(&self, tenant: &str, key: &str, delta: i64, ttl_ms: u64) -> StoreResult<i64> {
        let Some(tier) = &self.memory else {
            return self.store.kv_incr(tenant, key, delta, ttl_ms).await;
        };
        self.load(tier, tenant, key).await?;
        let now = now_ms();
        let mut t = tier.lock();
        let k: Key = (tenant.into(), key.to_string());
        let (current, expiry_ms) = match t.slots.get(&k) {
            Some(s) => match s.live(now) {
                Some(v) => (
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(0),
                    s.expiry_ms,
                ),
                None => (0, ttl_expiry(now, ttl_ms)),
            },
            None => (0, ttl_expiry(now, ttl_ms)),
        };
        let n = current.saturating_add(delta);
        let slot = Slot {
            value: Some(n.to_string().into_bytes()),
            expiry_ms,
            dirty: true,
        };
        mark(&mut t, k, slot);
        Ok(n)
    }

    /// Deletes every key of `tenant` under `prefix`, in memory and in the
    /// store (a removed plugin's keys).
    pub async fn delete_prefix(&self, tenant: &str, prefix: &str) -> StoreResult<u64> {
        if let Some(tier) = &self.memory {
            // Written first, so a flush cannot bring a deleted key back.
            self.flush().await?;
            let mut t = tier.lock();
            t.slots
                .retain(|(tn, k), _| !(&**tn == tenant && k.starts_with(prefix)));
        }
        self.store.kv_delete_prefix(tenant, prefix).await
    }

    /// Writes every changed key to the store now (at shutdown, and at the
    /// end of a `hookwire plugin run`).
    pub async fn flush(&self) -> StoreResult<()> {
        let Some(tier) = &self.memory else {
            return Ok(());
        };
        let _one = self.flushing.lock().await;
        let writes = {
            let mut t = tier.lock();
            let keys = std::mem::take(&mut t.dirty);
            let mut writes = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(slot) = t.slots.get_mut(&k) {
                    slot.dirty = false;
                    writes.push(KvWrite {
                        tenant: k.0.to_string(),
                        key: k.1.clone(),
                        value: slot.value.clone(),
                        expiry_ms: slot.expiry_ms,
                    });
                }
            }
            writes
        };
        if writes.is_empty() {
            return Ok(());
        }
        let entries = self
            .store
            .kv_entries()
            .expect("a memory tier has kv entries");
        if let Err(e) = entries.kv_put_entries(writes.clone()).await {
            // Kept dirty for the next flush, unless changed again meanwhile
            // (then the newer value is already queued).
            let mut t = tier.lock();
            for w in writes {
                let k: Key = (w.tenant.as_str().into(), w.key);
                if let Some(slot) = t.slots.get_mut(&k)
                    && !slot.dirty
                {
                    slot.dirty = true;
                    t.dirty.push(k);
                }
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Stores `slot` under `k` as changed.
fn mark(t: &mut Tier, k: Key, slot: Slot) {
    let was_dirty = t.slots.get(&k).is_some_and(|s| s.dirty);
    if !was_dirty {
        t.dirty.push(k.clone());
    }
    t.slots.insert(k, slot);
    evict(t);
}

/// Keeps the map within [`MAX_KEYS`] by dropping unchanged keys (expired
/// ones first); changed keys stay until flushed.
fn evict(t: &mut Tier) {
    if t.slots.len() <= MAX_KEYS {
        return;
    }
    let now = now_ms();
    t.slots.retain(|_, s| s.dirty || s.live(now).is_some());
    let mut over = t.slots.len().saturating_sub(MAX_KEYS * 9 / 10);
    if over > 0 {
        t.slots.retain(|_, s| {
            if over > 0 && !s.dirty {
                over -= 1;
                false
            } else {
                true
            }
        });
    }
}

async fn flush_loop(kv: Weak<PluginKv>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(kv) = kv.upgrade() else { return };
        if let Err(e) = kv.flush().await {
            tracing::warn!(error = %e, "plugin kv write-behind failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookwire_store::embedded::EmbeddedStore;

    fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(&dir.path().join("kv.redb"), Duration::ZERO).unwrap())
    }

    #[tokio::test]
    async fn serves_from_memory_and_writes_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        store.kv_set("t", "old", b"7", 0).await.unwrap();
        let kv = PluginKv::new(store.clone());
        assert!(kv.in_memory());
        // Read through on a miss, then counted in memory.
        assert_eq!(kv.incr("t", "old", 1, 0).await.unwrap(), 8);
        assert_eq!(kv.incr("t", "new", 5, 60_000).await.unwrap(), 5);
        kv.set("t", "s", b"v", 0).await.unwrap();
        assert_eq!(kv.get("t", "s").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(kv.get("t", "missing").await.unwrap(), None);
        // Not in the store yet...
        assert_eq!(store.kv_get("t", "s").await.unwrap(), None);
        // ...until a flush (the background one or this one).
        kv.flush().await.unwrap();
        assert_eq!(
            store.kv_get("t", "old").await.unwrap().as_deref(),
            Some(&b"8"[..])
        );
        assert_eq!(
            store.kv_get("t", "new").await.unwrap().as_deref(),
            Some(&b"5"[..])
        );
        let (_, expiry) = store
            .kv_entries()
            .unwrap()
            .kv_get_entry("t", "new")
            .await
            .unwrap()
            .unwrap();
        assert!(expiry > now_ms(), "the counter's TTL is written too");
        // A new tier (a restart) reads what was written.
        drop(kv);
        let kv = PluginKv::new(store.clone());
        assert_eq!(kv.incr("t", "new", 1, 60_000).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn expiry_and_delete_prefix_hold_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let kv = PluginKv::new(store.clone());
        kv.set("t", "p/short", b"x", 1).await.unwrap();
        kv.incr("t", "p/n", 1, 0).await.unwrap();
        kv.set("t", "q/keep", b"k", 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(kv.get("t", "p/short").await.unwrap(), None, "expired");
        kv.flush().await.unwrap();
        assert_eq!(kv.delete_prefix("t", "p/").await.unwrap(), 2);
        assert_eq!(kv.get("t", "p/n").await.unwrap(), None);
        kv.flush().await.unwrap();
        assert_eq!(store.kv_get("t", "p/n").await.unwrap(), None);
        assert_eq!(
            store.kv_get("t", "q/keep").await.unwrap().as_deref(),
            Some(&b"k"[..])
        );
    }

    #[tokio::test]
    async fn background_flush_writes_within_a_few_periods() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let kv = PluginKv::new(store.clone());
        kv.incr("t", "c", 3, 0).await.unwrap();
        let mut waited = Duration::ZERO;
        while store.kv_get("t", "c").await.unwrap().is_none() {
            assert!(waited < Duration::from_secs(5), "never written behind");
            tokio::time::sleep(FLUSH_EVERY).await;
            waited += FLUSH_EVERY;
        }
        assert_eq!(
            store.kv_get("t", "c").await.unwrap().as_deref(),
            Some(&b"3"[..])
        );
    }
}
