//! The embedded store: one redb file, the default backend.
//!
//! ## Group commit
//! Every write goes to one writer thread. The writer takes the first queued
//! write, then everything else already queued (up to [`MAX_BATCH`]), runs them
//! all in one redb write transaction and commits once (`Durability::Immediate`:
//! one fsync). Only after that commit does each caller's future resolve, so a
//! write is durable exactly when its `await` returns `Ok`. A burst of N
//! concurrent messages costs about N / batch-size disk syncs. While writes
//! keep arriving during commits, the writer waits `commit_delay` after each
//! commit to gather a larger batch; a write to an idle store is committed at
//! once.
//!
//! Reads open their own read transaction and never wait for the writer.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::oneshot;

use super::*;

const MAX_BATCH: usize = 1024;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("users");
const ROOM_LOG: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("room_log");
const ROOM_META: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("room_meta");
const ROOM_UPDATES: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("room_updates");
const ROOM_UPDATE_HISTORY: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("room_update_history");
const PUSH_SEQ: TableDefinition<&str, u64> = TableDefinition::new("push_seq");
const PUSH_QUEUE: TableDefinition<(&str, &str, &str, u64), &[u8]> =
    TableDefinition::new("push_queue");
const DEVICES: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("devices");
const PLUGINS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("plugins");
const PLUGIN_WASM: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("plugin_wasm");
const CHAINS: TableDefinition<&str, &[u8]> = TableDefinition::new("chains");
/// Value: 8 bytes big-endian expiry (unix ms, 0 = never) + the value.
const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");

/// Per-room counters.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct RoomMeta {
    /// Seq of the oldest kept insert.
    first: u64,
    /// Seq the next insert gets (= insert log length, trimmed or not).
    next: u64,
    epoch: u64,
    /// Seq of the next update-history entry.
    next_update: u64,
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(&WriteTransaction) -> Completion + Send>;

pub struct EmbeddedStore {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Bounds the large reads (sync pages) running at once.
    large_reads: tokio::sync::Semaphore,
}

/// How many large reads run at once. Each materialises up to a page
/// (`sync_page_bytes`, 1 MiB by default): unbounded, a thousand readers
/// asking at once would hold a thousand pages on a thousand blocking
/// threads before the first one is sent. A handful keeps the disk busy
/// while the pages already read go out.
const LARGE_READS_AT_ONCE: usize = 4;

impl Drop for EmbeddedStore {
    /// Waits for the writer to finish what was queued, so the file is closed
    /// (and can be opened again) when the store is gone.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(e)
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records always serialise")
}

fn from_json<T: DeserializeOwned>(b: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

use hookwire_core::clock::now_ms;

impl EmbeddedStore {
    /// Opens (or creates) the database file and starts the writer thread.
    /// `commit_delay`: while writes keep arriving during commits, the writer
    /// waits this long after a commit to gather the next batch (0 = never
    /// waits); a write to an idle store is committed at once.
    pub fn open(path: &Path, commit_delay: Duration) -> StoreResult<Self> {
        let db = Arc::new(Database::create(path).map_err(err)?);
        // Create every table up front so read transactions never miss one.
        {
            let txn = db.begin_write().map_err(err)?;
            txn.open_table(META).map_err(err)?;
            txn.open_table(TENANTS).map_err(err)?;
            txn.open_table(USERS).map_err(err)?;
            txn.open_table(ROOM_LOG).map_err(err)?;
            txn.open_table(ROOM_META).map_err(err)?;
            txn.open_table(ROOM_UPDATES).map_err(err)?;
            txn.open_table(ROOM_UPDATE_HISTORY).map_err(err)?;
            txn.open_table(PUSH_SEQ).map_err(err)?;
            txn.open_table(PUSH_QUEUE).map_err(err)?;
            txn.open_table(DEVICES).map_err(err)?;
            txn.open_table(PLUGINS).map_err(err)?;
            txn.open_table(PLUGIN_WASM).map_err(err)?;
            txn.open_table(CHAINS).map_err(err)?;
            txn.open_table(KV).map_err(err)?;
            txn.commit().map_err(err)?;
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let wdb = db.clone();
        let writer = std::thread::Builder::new()
            .name("hookwire-store-writer".into())
            .spawn(move || writer_loop(wdb, rx, commit_delay))
            .map_err(err)?;
        Ok(EmbeddedStore {
            db,
            jobs: tx,
            writer: Some(writer),
            large_reads: tokio::sync::Semaphore::new(LARGE_READS_AT_ONCE),
        })
    }

    /// Runs `f` inside the next group commit; resolves after the commit.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let r = f(txn);
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(r));
            })
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// `read` on a blocking thread, for reads that can be large.
    async fn read_off_workers<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        let _permit = self
            .large_reads
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || f(&db.begin_read().map_err(err)?))
            .await
            .map_err(StoreError::backend)?
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> StoreResult<T>) -> StoreResult<T> {
        let txn = self.db.begin_read().map_err(err)?;
        f(&txn)
    }
}

fn writer_loop(db: Arc<Database>, rx: mpsc::Receiver<Job>, commit_delay: Duration) {
    // A write that arrived while the previous commit ran: taken from the
    // queue right after it, it shows the load is steady.
    let mut carry: Option<Job> = None;
    loop {
        let (first, steady) = match carry.take() {
            Some(j) => (j, true),
            None => match rx.recv() {
                Ok(j) => (j, false),
                Err(_) => break,
            },
        };
        // Under a steady stream of writes, gather for `commit_delay` so
        // one commit (one fsync) carries more of them: fewer commits cost
        // the relay less CPU. A write to an idle store, or one sent after
        // the ack of the previous, is committed at once.
        if steady && !commit_delay.is_zero() {
            std::thread::sleep(commit_delay);
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "store: cannot begin a write transaction");
                // Each job still has to answer: run it against nothing is not
                // possible, so report the failure through a dummy completion.
                for job in batch {
                    drop(job);
                }
                continue;
            }
        };
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(&txn)).collect();
        let result = txn.commit().map_err(err);
        if let Err(e) = &result {
            tracing::error!(error = %e, "store: group commit failed");
        }
        for c in completions {
            c(result
                .as_ref()
                .map(|_| ())
                .map_err(|e| StoreError::Backend(e.to_string())));
        }
        carry = rx.try_recv().ok();
    }
}

fn room_meta_get(
    t: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    tenant: &str,
    room: &str,
) -> StoreResult<RoomMeta> {
    match t.get((tenant, room)).map_err(err)? {
        Some(v) => from_json(v.value()),
        None => Ok(RoomMeta::default()),
    }
}

/// Deletes every key of `table` in `lo..hi` (a tuple-key prefix range);
/// evaluates to how many.
macro_rules! delete_prefix {
    ($txn:expr, $table:expr, $lo:expr, $hi:expr) => {{
        let mut t = $txn.open_table($table).map_err(err)?;
        t.extract_from_if($lo..$hi, |_, _| true)
            .map_err(err)?
            .count()
    }};
}

/// The string right after `s` in key order (`s` + NUL): `(s, ..)..(after(s), ..)`
/// covers every key whose component is exactly `s`, whatever follows it.
/// (An upper bound like "\u{10FFFF}" would miss components that start with
/// that character.)
fn after(s: &str) -> String {
    let mut next = String::with_capacity(s.len() + 1);
    next.push_str(s);
    next.push('\0');
    next
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn kv_entries(&self) -> Option<&dyn KvEntries> {
        Some(self)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|_| Ok(()))
    }

    async fn flush(&self) -> StoreResult<()> {
        // A no-op write completes after every write queued before it.
        self.write(|_| Ok(())).await
    }

    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        self.read(|txn| {
            let t = txn.open_table(META).map_err(err)?;
            Ok(t.get(key).map_err(err)?.map(|v| v.value().to_string()))
        })
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        let (k, v) = (key.to_string(), value.to_string());
        self.write(move |txn| {
            txn.open_table(META)
                .map_err(err)?
                .insert(k.as_str(), v.as_str())
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn put_tenant(&self, rec: &TenantRecord) -> StoreResult<()> {
        let (name, bytes) = (rec.name.clone(), to_json(rec));
        self.write(move |txn| {
            txn.open_table(TENANTS)
                .map_err(err)?
                .insert(name.as_str(), bytes.as_slice())
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn swap_tenant(&self, rec: &TenantRecord, expected: Option<u64>) -> StoreResult<bool> {
        let (name, bytes) = (rec.name.clone(), to_json(rec));
        self.write(move |txn| {
            let mut t = txn.open_table(TENANTS).map_err(err)?;
            let current: Option<TenantRecord> = t
                .get(name.as_str())
                .map_err(err)?
                .map(|v| from_json(v.value()))
                .transpose()?;
            if current.map(|c| c.version) != expected {
                return Ok(false);
            }
            t.insert(name.as_str(), bytes.as_slice()).map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn get_tenant(&self, name: &str) -> StoreResult<Option<TenantRecord>> {
        self.read(|txn| {
            let t = txn.open_table(TENANTS).map_err(err)?;
            t.get(name)
                .map_err(err)?
                .map(|v| from_json(v.value()))
                .transpose()
        })
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        self.read(|txn| {
            let t = txn.open_table(TENANTS).map_err(err)?;
            t.iter()
                .map_err(err)?
                .map(|r| from_json(r.map_err(err)?.1.value()))
                .collect()
        })
    }

    async fn delete_tenant(&self, name: &str) -> StoreResult<bool> {
        let n = name.to_string();
        self.write(move |txn| {
            let existed = txn
                .open_table(TENANTS)
                .map_err(err)?
                .remove(n.as_str())
                .map_err(err)?
                .is_some();
            let n = n.as_str();
            let n1 = after(n);
            let n1 = n1.as_str();
            delete_prefix!(txn, USERS, (n, ""), (n1, ""));
            delete_prefix!(txn, ROOM_LOG, (n, "", 0), (n1, "", 0));
            delete_prefix!(txn, ROOM_META, (n, ""), (n1, ""));
            delete_prefix!(txn, ROOM_UPDATES, (n, "", ""), (n1, "", ""));
            delete_prefix!(txn, ROOM_UPDATE_HISTORY, (n, "", 0), (n1, "", 0));
            delete_prefix!(txn, PUSH_QUEUE, (n, "", "", 0), (n1, "", "", 0));
            delete_prefix!(txn, DEVICES, (n, "", ""), (n1, "", ""));
            delete_prefix!(txn, PLUGINS, (n, "", 0), (n1, "", 0));
            delete_prefix!(txn, PLUGIN_WASM, (n, "", 0), (n1, "", 0));
            delete_prefix!(txn, KV, (n, ""), (n1, ""));
            txn.open_table(CHAINS)
                .map_err(err)?
                .remove(n)
                .map_err(err)?;
            txn.open_table(PUSH_SEQ)
                .map_err(err)?
                .remove(n)
                .map_err(err)?;
            Ok(existed)
        })
        .await
    }

    async fn put_user(&self, tenant: &str, user: &UserRecord) -> StoreResult<()> {
        let (tn, uid, bytes) = (tenant.to_string(), user.uid.clone(), to_json(user));
        self.write(move |txn| {
            txn.open_table(USERS)
                .map_err(err)?
                .insert((tn.as_str(), uid.as_str()), bytes.as_slice())
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, tenant: &str, uid: &str) -> StoreResult<Option<UserRecord>> {
        self.read(|txn| {
            let t = txn.open_table(USERS).map_err(err)?;
            t.get((tenant, uid))
                .map_err(err)?
                .map(|v| from_json(v.value()))
                .transpose()
        })
    }

    async fn room_write(
        &self,
        tenant: &str,
        room: &str,
        write: RoomWrite,
        max_entries: u64,
    ) -> StoreResult<RoomWriteAck> {
        let (tn, rm) = (tenant.to_string(), room.to_string());
        self.write(move |txn| {
            let (tn, rm) = (tn.as_str(), rm.as_str());
            let mut metas = txn.open_table(ROOM_META).map_err(err)?;
            let mut meta = room_meta_get(&metas, tn, rm)?;
            let seq = match write {
                RoomWrite::Insert(entry) => {
                    let mut log = txn.open_table(ROOM_LOG).map_err(err)?;
                    let seq = meta.next;
                    log.insert((tn, rm, seq), to_json(&entry).as_slice())
                        .map_err(err)?;
                    meta.next += 1;
                    while meta.next - meta.first > max_entries.max(1) {
                        log.remove((tn, rm, meta.first)).map_err(err)?;
                        meta.first += 1;
                    }
                    seq
                }
                RoomWrite::Update { msg_id, entry } => {
                    let bytes = to_json(&entry);
                    txn.open_table(ROOM_UPDATES)
                        .map_err(err)?
                        .insert((tn, rm, msg_id.as_str()), bytes.as_slice())
                        .map_err(err)?;
                    txn.open_table(ROOM_UPDATE_HISTORY)
                        .map_err(err)?
                        .insert((tn, rm, meta.next_update), bytes.as_slice())
                        .map_err(err)?;
                    meta.next_update += 1;
                    // The history keeps the last `max_entries` updates.
                    let keep_from = meta.next_update.saturating_sub(max_entries.max(1));
                    if keep_from > 0 {
                        delete_prefix!(txn, ROOM_UPDATE_HISTORY, (tn, rm, 0), (tn, rm, keep_from));
                    }
                    meta.next
                }
            };
            metas
                .insert((tn, rm), to_json(&meta).as_slice())
                .map_err(err)?;
            Ok(RoomWriteAck {
                seq,
                epoch: meta.epoch,
            })
        })
        .await
    }

    async fn room_read(&self, tenant: &str, room: &str, req: PageRequest) -> StoreResult<RoomPage> {
        let (tenant, room) = (tenant.to_string(), room.to_string());
        // A page can be megabytes: read it off the async workers.
        self.read_off_workers(move |txn| {
            let (tenant, room) = (tenant.as_str(), room.as_str());
            let meta = room_meta_get(&txn.open_table(ROOM_META).map_err(err)?, tenant, room)?;
            let log = txn.open_table(ROOM_LOG).map_err(err)?;
            let offset = req.offset;
            let start = offset.max(meta.first);
            let mut budget = PageBudget::new(&req);
            let mut inserts = Vec::new();
            for r in log
                .range((tenant, room, start)..(tenant, room, meta.next))
                .map_err(err)?
            {
                let (k, v) = r.map_err(err)?;
                if !budget.admit(inserts.len(), v.value().len()) {
                    break;
                }
                inserts.push((k.value().2, from_json(v.value())?));
            }
            let next_offset = inserts
                .last()
                .map(|(s, _)| s + 1)
                .unwrap_or(start.min(meta.next).max(offset.min(meta.next)));
            let more = next_offset < meta.next;
            let mut updates = Vec::new();
            let (mut updates_more, mut updates_last) = (false, None);
            if !more {
                let t = txn.open_table(ROOM_UPDATES).map_err(err)?;
                let from = req.updates_after.as_deref().map(after).unwrap_or_default();
                for r in t
                    .range((tenant, room, from.as_str())..(tenant, after(room).as_str(), ""))
                    .map_err(err)?
                {
                    let (k, v) = r.map_err(err)?;
                    if !budget.admit(updates.len(), v.value().len()) {
                        updates_more = true;
                        break;
                    }
                    updates.push(from_json(v.value())?);
                    updates_last = Some(k.value().2.to_string());
                }
            }
            Ok(RoomPage {
                inserts,
                updates,
                next_offset,
                more,
                updates_more,
                updates_last,
                epoch: meta.epoch,
            })
        })
        .await
    }

    async fn room_clear(&self, tenant: &str, room: &str) -> StoreResult<u64> {
        let (tn, rm) = (tenant.to_string(), room.to_string());
        self.write(move |txn| {
            let (tn, rm) = (tn.as_str(), rm.as_str());
            let mut metas = txn.open_table(ROOM_META).map_err(err)?;
            let old = room_meta_get(&metas, tn, rm)?;
            delete_prefix!(txn, ROOM_LOG, (tn, rm, 0), (tn, rm, u64::MAX));
            delete_prefix!(
                txn,
                ROOM_UPDATES,
                (tn, rm, ""),
                (tn, after(rm).as_str(), "")
            );
            delete_prefix!(txn, ROOM_UPDATE_HISTORY, (tn, rm, 0), (tn, rm, u64::MAX));
            let meta = RoomMeta {
                epoch: old.epoch + 1,
                ..RoomMeta::default()
            };
            metas
                .insert((tn, rm), to_json(&meta).as_slice())
                .map_err(err)?;
            Ok(meta.epoch)
        })
        .await
    }

    async fn room_epoch(&self, tenant: &str, room: &str) -> StoreResult<u64> {
        self.read(|txn| {
            Ok(room_meta_get(&txn.open_table(ROOM_META).map_err(err)?, tenant, room)?.epoch)
        })
    }

    async fn push_next_seq(&self, tenant: &str) -> StoreResult<u64> {
        let tn = tenant.to_string();
        self.write(move |txn| {
            let mut t = txn.open_table(PUSH_SEQ).map_err(err)?;
            let next = t
                .get(tn.as_str())
                .map_err(err)?
                .map(|v| v.value())
                .unwrap_or(0)
                + 1;
            t.insert(tn.as_str(), next).map_err(err)?;
            Ok(next)
        })
        .await
    }

    async fn push_enqueue(
        &self,
        tenant: &str,
        uid: &str,
        devices: &[String],
        entry: &PushEntry,
        max_queue: u64,
    ) -> StoreResult<()> {
        let (tn, uid, devices, seq, bytes) = (
            tenant.to_string(),
            uid.to_string(),
            devices.to_vec(),
            entry.seq,
            to_json(entry),
        );
        self.write(move |txn| {
            let mut q = txn.open_table(PUSH_QUEUE).map_err(err)?;
            for d in &devices {
                q.insert(
                    (tn.as_str(), uid.as_str(), d.as_str(), seq),
                    bytes.as_slice(),
                )
                .map_err(err)?;
                let range = (tn.as_str(), uid.as_str(), d.as_str(), 0)
                    ..=(tn.as_str(), uid.as_str(), d.as_str(), u64::MAX);
                let len = q.range(range.clone()).map_err(err)?.count() as u64;
                if len > max_queue.max(1) {
                    let oldest: Vec<u64> = q
                        .range(range)
                        .map_err(err)?
                        .take((len - max_queue.max(1)) as usize)
                        .map(|r| r.map(|(k, _)| k.value().3).map_err(err))
                        .collect::<StoreResult<_>>()?;
                    for s in oldest {
                        q.remove((tn.as_str(), uid.as_str(), d.as_str(), s))
                            .map_err(err)?;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn push_pending(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
    ) -> StoreResult<Vec<PushEntry>> {
        self.read(|txn| {
            let q = txn.open_table(PUSH_QUEUE).map_err(err)?;
            q.range((tenant, uid, device, 0)..=(tenant, uid, device, u64::MAX))
                .map_err(err)?
                .map(|r| from_json(r.map_err(err)?.1.value()))
                .collect()
        })
    }

    async fn push_ack(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
        seqs: &[u64],
    ) -> StoreResult<PushAckOutcome> {
        let (tn, uid, dev, seqs) = (
            tenant.to_string(),
            uid.to_string(),
            device.to_string(),
            seqs.to_vec(),
        );
        self.write(move |txn| {
            let mut q = txn.open_table(PUSH_QUEUE).map_err(err)?;
            let key = |s| (tn.as_str(), uid.as_str(), dev.as_str(), s);
            let oldest = q
                .range(key(0)..=key(u64::MAX))
                .map_err(err)?
                .next()
                .transpose()
                .map_err(err)?
                .map(|(k, _)| k.value().3);
            let min_acked = seqs.iter().copied().min();
            let mut removed = 0;
            for s in &seqs {
                if q.remove(key(*s)).map_err(err)?.is_some() {
                    removed += 1;
                }
            }
            Ok(PushAckOutcome {
                removed,
                was_oldest: oldest.is_none() || min_acked == oldest,
            })
        })
        .await
    }

    async fn push_clear(&self, tenant: &str, uid: &str, device: &str) -> StoreResult<()> {
        let (tn, uid, dev) = (tenant.to_string(), uid.to_string(), device.to_string());
        self.write(move |txn| {
            let (tn, uid, dev) = (tn.as_str(), uid.as_str(), dev.as_str());
            delete_prefix!(txn, PUSH_QUEUE, (tn, uid, dev, 0), (tn, uid, dev, u64::MAX));
            Ok(())
        })
        .await
    }

    async fn push_move(&self, tenant: &str, uid: &str, from: &str, to: &str) -> StoreResult<()> {
        let (tn, uid, from, to) = (
            tenant.to_string(),
            uid.to_string(),
            from.to_string(),
            to.to_string(),
        );
        self.write(move |txn| {
            let (tn, uid, from, to) = (tn.as_str(), uid.as_str(), from.as_str(), to.as_str());
            let mut q = txn.open_table(PUSH_QUEUE).map_err(err)?;
            let moved: Vec<(u64, Vec<u8>)> = q
                .extract_from_if((tn, uid, from, 0)..=(tn, uid, from, u64::MAX), |_, _| true)
                .map_err(err)?
                .map(|r| r.map(|(k, v)| (k.value().3, v.value().to_vec())))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            for (seq, v) in moved {
                q.insert((tn, uid, to, seq), v.as_slice()).map_err(err)?;
            }
            Ok(())
        })
        .await
    }

    async fn device_seen(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
        now: u64,
    ) -> StoreResult<()> {
        let (tn, uid, dev) = (tenant.to_string(), uid.to_string(), device.to_string());
        self.write(move |txn| {
            txn.open_table(DEVICES)
                .map_err(err)?
                .insert((tn.as_str(), uid.as_str(), dev.as_str()), now)
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn devices(&self, tenant: &str, uid: &str) -> StoreResult<Vec<(String, u64)>> {
        self.read(|txn| {
            let t = txn.open_table(DEVICES).map_err(err)?;
            t.range((tenant, uid, "")..(tenant, after(uid).as_str(), ""))
                .map_err(err)?
                .map(|r| {
                    r.map(|(k, v)| (k.value().2.to_string(), v.value()))
                        .map_err(err)
                })
                .collect()
        })
    }

    async fn expire_devices(&self, tenant: &str, before: u64) -> StoreResult<usize> {
        let tn = tenant.to_string();
        self.write(move |txn| {
            let tn = tn.as_str();
            let mut devs = txn.open_table(DEVICES).map_err(err)?;
            let expired: Vec<(String, String)> = devs
                .extract_from_if((tn, "", "")..(after(tn).as_str(), "", ""), |_, seen| {
                    seen < before
                })
                .map_err(err)?
                .map(|r| r.map(|(k, _)| (k.value().1.to_string(), k.value().2.to_string())))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            for (uid, dev) in &expired {
                delete_prefix!(
                    txn,
                    PUSH_QUEUE,
                    (tn, uid.as_str(), dev.as_str(), 0),
                    (tn, uid.as_str(), dev.as_str(), u64::MAX)
                );
            }
            Ok(expired.len())
        })
        .await
    }

    async fn put_plugin(&self, tenant: &str, rec: &PluginRecord, wasm: &[u8]) -> StoreResult<()> {
        let (tn, name, ver, meta, wasm) = (
            tenant.to_string(),
            rec.name.clone(),
            rec.version,
            to_json(rec),
            wasm.to_vec(),
        );
        self.write(move |txn| {
            let key = (tn.as_str(), name.as_str(), ver);
            txn.open_table(PLUGINS)
                .map_err(err)?
                .insert(key, meta.as_slice())
                .map_err(err)?;
            txn.open_table(PLUGIN_WASM)
                .map_err(err)?
                .insert(key, wasm.as_slice())
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn list_plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>> {
        self.read(|txn| {
            let t = txn.open_table(PLUGINS).map_err(err)?;
            t.range((tenant, "", 0)..(after(tenant).as_str(), "", 0))
                .map_err(err)?
                .map(|r| from_json(r.map_err(err)?.1.value()))
                .collect()
        })
    }

    async fn get_plugin_wasm(
        &self,
        tenant: &str,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.read(|txn| {
            let t = txn.open_table(PLUGIN_WASM).map_err(err)?;
            Ok(t.get((tenant, name, version))
                .map_err(err)?
                .map(|v| v.value().to_vec()))
        })
    }

    async fn delete_plugin(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        let (tn, name) = (tenant.to_string(), name.to_string());
        self.write(move |txn| {
            let (tn, nm) = (tn.as_str(), name.as_str());
            let existed = {
                let t = txn.open_table(PLUGINS).map_err(err)?;
                t.range((tn, nm, 0)..=(tn, nm, u64::MAX))
                    .map_err(err)?
                    .next()
                    .is_some()
            };
            delete_prefix!(txn, PLUGINS, (tn, nm, 0), (tn, nm, u64::MAX));
            delete_prefix!(txn, PLUGIN_WASM, (tn, nm, 0), (tn, nm, u64::MAX));
            Ok(existed)
        })
        .await
    }

    async fn get_chain(&self, tenant: &str) -> StoreResult<PluginChainRecord> {
        self.read(|txn| {
            let t = txn.open_table(CHAINS).map_err(err)?;
            Ok(t.get(tenant)
                .map_err(err)?
                .map(|v| from_json(v.value()))
                .transpose()?
                .unwrap_or_default())
        })
    }

    async fn put_chain(&self, tenant: &str, chain: &PluginChainRecord) -> StoreResult<()> {
        let (tn, bytes) = (tenant.to_string(), to_json(chain));
        self.write(move |txn| {
            txn.open_table(CHAINS)
                .map_err(err)?
                .insert(tn.as_str(), bytes.as_slice())
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn kv_get(&self, tenant: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let now = now_ms();
        self.read(|txn| {
            let t = txn.open_table(KV).map_err(err)?;
            Ok(t.get((tenant, key))
                .map_err(err)?
                .and_then(|v| live_value(v.value(), now).map(<[u8]>::to_vec)))
        })
    }

    async fn kv_set(&self, tenant: &str, key: &str, value: &[u8], ttl_ms: u64) -> StoreResult<()> {
        let (tn, k) = (tenant.to_string(), key.to_string());
        let expiry = if ttl_ms == 0 { 0 } else { now_ms() + ttl_ms };
        let mut v = expiry.to_be_bytes().to_vec();
        v.extend_from_slice(value);
        self.write(move |txn| {
            txn.open_table(KV)
                .map_err(err)?
                .insert((tn.as_str(), k.as_str()), v.as_slice())
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn kv_delete_prefix(&self, tenant: &str, prefix: &str) -> StoreResult<u64> {
        let (tn, from) = (tenant.to_string(), prefix.to_string());
        self.write(move |txn| {
            let Some(end) = prefix_end(&from) else {
                return Ok(0);
            };
            let (tn, from, end) = (tn.as_str(), from.as_str(), end.as_str());
            Ok(delete_prefix!(txn, KV, (tn, from), (tn, end)) as u64)
        })
        .await
    }

    async fn kv_purge_expired(&self, now_ms: u64) -> StoreResult<u64> {
        // Read first (off the writer), then delete what is still expired.
        let expired: Vec<(String, String)> = self
            .read_off_workers(move |txn| {
                let t = txn.open_table(KV).map_err(err)?;
                let mut out = Vec::new();
                for r in t.iter().map_err(err)? {
                    let (k, v) = r.map_err(err)?;
                    if live_value(v.value(), now_ms).is_none() {
                        let (tn, key) = k.value();
                        out.push((tn.to_string(), key.to_string()));
                    }
                }
                Ok(out)
            })
            .await?;
        if expired.is_empty() {
            return Ok(0);
        }
        self.write(move |txn| {
            let mut t = txn.open_table(KV).map_err(err)?;
            let mut n = 0;
            for (tn, key) in &expired {
                let gone = match t.get((tn.as_str(), key.as_str())).map_err(err)? {
                    Some(v) => live_value(v.value(), now_ms).is_none(),
                    None => false,
                };
                if gone {
                    t.remove((tn.as_str(), key.as_str())).map_err(err)?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    async fn kv_incr(&self, tenant: &str, key: &str, delta: i64, ttl_ms: u64) -> StoreResult<i64> {
        let (tn, k) = (tenant.to_string(), key.to_string());
        self.write(move |txn| {
            let now = now_ms();
            let mut t = txn.open_table(KV).map_err(err)?;
            let key = (tn.as_str(), k.as_str());
            let (current, expiry) = match t.get(key).map_err(err)? {
                Some(v) => match live_value(v.value(), now) {
                    Some(val) => {
                        let n = std::str::from_utf8(val)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok())
                            .unwrap_or(0);
                        (n, u64::from_be_bytes(v.value()[..8].try_into().unwrap()))
                    }
                    None => (0, if ttl_ms == 0 { 0 } else { now + ttl_ms }),
                },
                None => (0, if ttl_ms == 0 { 0 } else { now + ttl_ms }),
            };
            let n = current.saturating_add(delta);
            let mut v = expiry.to_be_bytes().to_vec();
            v.extend_from_slice(n.to_string().as_bytes());
            t.insert(key, v.as_slice()).map_err(err)?;
            Ok(n)
        })
        .await
    }
}

/// The value part of a KV record, or `None` when it has expired.
#[async_trait]
impl KvEntries for EmbeddedStore {
    async fn kv_get_entry(&self, tenant: &str, key: &str) -> StoreResult<Option<(Vec<u8>, u64)>> {
        let now = now_ms();
        self.read(|txn| {
            let t = txn.open_table(KV).map_err(err)?;
            Ok(t.get((tenant, key)).map_err(err)?.and_then(|v| {
                let raw = v.value();
                let value = live_value(raw, now)?;
                Some((
                    value.to_vec(),
                    u64::from_be_bytes(raw[..8].try_into().ok()?),
                ))
            }))
        })
    }

    async fn kv_put_entries(&self, writes: Vec<KvWrite>) -> StoreResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        self.write(move |txn| {
            let mut t = txn.open_table(KV).map_err(err)?;
            for w in &writes {
                let key = (w.tenant.as_str(), w.key.as_str());
                match &w.value {
                    Some(value) => {
                        let mut v = w.expiry_ms.to_be_bytes().to_vec();
                        v.extend_from_slice(value);
                        t.insert(key, v.as_slice()).map_err(err)?;
                    }
                    None => {
                        t.remove(key).map_err(err)?;
                    }
                }
            }
            Ok(())
        })
        .await
    }
}

fn live_value(raw: &[u8], now: u64) -> Option<&[u8]> {
    if raw.len() < 8 {
        return None;
    }
    let expiry = u64::from_be_bytes(raw[..8].try_into().ok()?);
    (expiry == 0 || expiry > now).then_some(&raw[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(msg_id: &str, n: u64) -> RoomWrite {
        RoomWrite::Update {
            msg_id: msg_id.into(),
            entry: RoomEntry {
                uid: "u".into(),
                ts: n,
                msg: format!("{{\"n\":{n}}}"),
            },
        }
    }

    #[tokio::test]
    async fn update_history_keeps_the_last_max_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("db"), Duration::ZERO).unwrap();
        for n in 0..25 {
            s.room_write("t", "r", update(&format!("m{}", n % 3), n), 10)
                .await
                .unwrap();
        }
        s.room_write("t", "other", update("x", 0), 10)
            .await
            .unwrap();
        let slots: Vec<u64> = s
            .read(|txn| {
                let t = txn.open_table(ROOM_UPDATE_HISTORY).map_err(err)?;
                t.range(("t", "r", 0)..("t", "r", u64::MAX))
                    .map_err(err)?
                    .map(|r| r.map(|(k, _)| k.value().2).map_err(err))
                    .collect()
            })
            .unwrap();
        assert_eq!(slots, (15..25).collect::<Vec<_>>());
        let page = s
            .room_read("t", "r", PageRequest::count(0, 100))
            .await
            .unwrap();
        assert_eq!(page.updates.len(), 3, "current values are kept");
    }
}
