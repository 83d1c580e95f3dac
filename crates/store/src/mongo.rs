//! The MongoDB store: every durable record in MongoDB (or a server speaking
//! its wire protocol, such as SecantusDB), through the official driver.
//!
//! ## Collections
//! Records are kept as JSON text in `rec` (like the embedded store), next to
//! the fields they are looked up by, so every backend round-trips the same
//! serde form (u64 beyond i64, arbitrary manifests). Every per-tenant
//! document has a top-level `t`, so `delete_tenant` is one `delete_many` per
//! collection. Indexes are created by [`MongoStore::connect`].
//!
//! | collection            | key                          | other fields                      |
//! |-----------------------|------------------------------|-----------------------------------|
//! | `meta`                | `_id` = key                  | `v`                               |
//! | `tenants`             | `_id` = name                 | `rec`                             |
//! | `users`               | `_id` = {t, u}               | `t`, `rec`                        |
//! | `room_meta`           | `_id` = {t, r}               | `t`, `epoch`, `next_update`       |
//! | `room_log`            | unique (t, r, e, s)          | `doc` (the entry JSON)            |
//! | `room_updates`        | `_id` = {t, r, e, m}         | `t`, `r`, `e`, `m`, `doc`         |
//! | `room_update_history` | (t, r, e, u)                 | `doc`                             |
//! | `push_seq`            | `_id` = tenant               | `n`                               |
//! | `push_queue`          | unique (t, u, d, s)          | `rec`                             |
//! | `devices`             | `_id` = {t, u, d}            | `t`, `u`, `d`, `seen`             |
//! | `plugins`             | `_id` = {t, n, v}            | `t`, `n`, `v`, `rec`              |
//! | `plugin_wasm`         | `_id` = {t, n, v}            | `t`, `n`, `wasm` (binary)         |
//! | `chains`              | `_id` = tenant               | `rec`                             |
//! | `kv`                  | `_id` = {t, k}               | `t`, `v` (binary), `exp`, `ver`, `exp_at` |
//!
//! ## Atomicity without transactions
//! Nothing here needs a multi-document transaction, so the store works on a
//! standalone server and on servers with partial transaction support:
//! - Room inserts claim their seq with the unique index on (t, r, e, s): the
//!   writer inserts `max(s) + 1` and retries on a duplicate key. A seq only
//!   exists once its document does, so readers never see a later seq while an
//!   earlier one is still in flight, and a crashed writer leaves no gap.
//! - Epochs partition the log: `room_clear` raises the epoch in `room_meta`
//!   (`$inc`, upsert) and then deletes older epochs; reads only see the
//!   current epoch, so a write racing a clear is ordered before it.
//! - Push seqs and the update-history counter are `find_one_and_update` +
//!   `$inc` + upsert.
//! - `kv_incr` is a compare-and-swap loop on a `ver` field.
//! - `push_ack` reads the oldest entry and then deletes: two acks racing on the
//!   same device may both report `was_oldest = false` (a spurious resync).
//!
//! ## Durability
//! Unless the URL sets a write concern, writes use `w: majority, j: true`: a
//! write is acknowledged once it is journaled on a majority. SecantusDB only
//! fsyncs its log on commit with `--sync-on-commit`.
//!
//! Documents are limited to 16 MiB, so a plugin component must be smaller
//! than that.
//!
//! Connection failures (no server selectable, I/O, pool cleared, primary
//! stepping down) map to [`StoreError::Unavailable`]; the driver keeps
//! monitoring the servers and the next call after recovery succeeds.

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc, spec::BinarySubtype};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, DatabaseOptions, IndexOptions, ReturnDocument, WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::de::DeserializeOwned;

use super::*;

/// Attempts for a write that can lose a race (duplicate key, CAS miss).
const MAX_RACE_RETRIES: usize = 1000;
/// Documents fetched per round trip when a page is read: entries can be
/// large, and a page stops at its byte bound.
const PAGE_BATCH: u32 = 8;

fn is_dup(e: &MongoError) -> bool {
    const DUP: i32 = 11000;
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUP,
        ErrorKind::Command(c) => c.code == DUP,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .as_ref()
            .is_some_and(|ws| !ws.is_empty() && ws.iter().all(|w| w.code == DUP)),
        _ => false,
    }
}

/// Server codes meaning "this node cannot serve you right now".
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

fn err(e: MongoError) -> StoreError {
    let unavailable = match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Command(c) => UNAVAILABLE_CODES.contains(&c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => UNAVAILABLE_CODES.contains(&w.code),
        _ => e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR),
    };
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// The JSON text in field `f` of `d`, parsed.
fn rec<T: DeserializeOwned>(d: &Document, f: &str) -> StoreResult<T> {
    from_json(d.get_str(f).map_err(|e| corrupt(f, e))?)
}

/// An integer field (servers may store small numbers as int32).
fn int(d: &Document, f: &str) -> StoreResult<i64> {
    match d.get(f) {
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Double(x)) if x.fract() == 0.0 => Ok(*x as i64),
        other => Err(corrupt(f, format!("not an integer: {other:?}"))),
    }
}

fn int_or0(d: &Document, f: &str) -> StoreResult<i64> {
    if d.contains_key(f) { int(d, f) } else { Ok(0) }
}

fn bin(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

fn get_bin(d: &Document, f: &str) -> StoreResult<Vec<u8>> {
    match d.get(f) {
        Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
        other => Err(corrupt(f, format!("not binary: {other:?}"))),
    }
}

/// u64 counters are stored as BSON int64 (seqs and timestamps stay far below
/// 2^63).
fn i(n: u64) -> i64 {
    n as i64
}

use hookwire_core::clock::now_ms;

pub struct MongoStore {
    db: Database,
    /// The driver spreads concurrent operations over a connection pool.
    room_locks: super::RoomLocks,
}

impl MongoStore {
    /// Connects to `url` (`mongodb://host:port[/db][?options]`; the database
    /// defaults to `hookwire`) and creates the indexes. Fails with
    /// `Unavailable` when no server answers within a few seconds.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let mut opts = ClientOptions::parse(url)
            .await
            .map_err(|e| StoreError::Backend(format!("bad mongodb url: {e}")))?;
        // The driver's 30 s defaults would hold a request that long while the
        // server is down; fail fast and let the caller answer 503.
        opts.server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        opts.connect_timeout.get_or_insert(Duration::from_secs(2));
        if opts.app_name.is_none() {
            opts.app_name = Some("hookwire".into());
        }
        let write_concern = opts.write_concern.clone().unwrap_or_else(|| {
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build()
        });
        let name = opts
            .default_database
            .clone()
            .unwrap_or_else(|| "hookwire".into());
        let client = Client::with_options(opts).map_err(err)?;
        let db = client.database_with_options(
            &name,
            DatabaseOptions::builder()
                .write_concern(write_concern)
                .build(),
        );
        let store = MongoStore {
            db,
            room_locks: super::RoomLocks::new(),
        };
        store.ping().await?;
        store.create_indexes().await?;
        Ok(store)
    }

    async fn create_indexes(&self) -> StoreResult<()> {
        let plain = |keys: Document| IndexModel::builder().keys(keys).build();
        let unique = |keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(true).build())
                .build()
        };
        let indexes: Vec<(&str, IndexModel)> = vec![
            ("users", plain(doc! { "t": 1 })),
            ("room_meta", plain(doc! { "t": 1 })),
            // The seq claim: at most one entry per (tenant, room, epoch, seq).
            ("room_log", unique(doc! { "t": 1, "r": 1, "e": 1, "s": 1 })),
            (
                "room_updates",
                plain(doc! { "t": 1, "r": 1, "e": 1, "m": 1 }),
            ),
            (
                "room_update_history",
                plain(doc! { "t": 1, "r": 1, "e": 1, "u": 1 }),
            ),
            ("push_seq", plain(doc! { "t": 1 })),
            (
                "push_queue",
                unique(doc! { "t": 1, "u": 1, "d": 1, "s": 1 }),
            ),
            ("devices", plain(doc! { "t": 1, "u": 1, "d": 1 })),
            ("devices", plain(doc! { "t": 1, "seen": 1 })),
            ("plugins", plain(doc! { "t": 1, "n": 1, "v": 1 })),
            ("plugin_wasm", plain(doc! { "t": 1, "n": 1 })),
            ("kv", plain(doc! { "t": 1 })),
            // Lets MongoDB purge expired kv keys (its reaper runs about once
            // a minute; reads check `exp` themselves). Servers that accept
            // but never run TTL indexes only keep dead keys around.
            (
                "kv",
                IndexModel::builder()
                    .keys(doc! { "exp_at": 1 })
                    .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
                    .build(),
            ),
        ];
        for (coll, model) in indexes {
            self.c(coll).create_index(model).await.map_err(err)?;
        }
        Ok(())
    }

    fn c(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Runs an upsert, retrying when two upserts of the same new `_id` race
    /// (the loser gets a duplicate key and then finds the document).
    async fn upsert(&self, coll: &str, filter: Document, update: Document) -> StoreResult<()> {
        let mut tries = 0;
        loop {
            match self
                .c(coll)
                .update_one(filter.clone(), update.clone())
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_dup(&e) && tries < 3 => tries += 1,
                Err(e) => return Err(err(e)),
            }
        }
    }

    async fn find_all(
        &self,
        coll: &str,
        filter: Document,
        sort: Document,
    ) -> StoreResult<Vec<Document>> {
        let cursor = self.c(coll).find(filter).sort(sort).await.map_err(err)?;
        cursor.try_collect().await.map_err(err)
    }

    async fn room_epoch_of(&self, tenant: &str, room: &str) -> StoreResult<i64> {
        let m = self
            .c("room_meta")
            .find_one(doc! { "_id": { "t": tenant, "r": room } })
            .await
            .map_err(err)?;
        m.map(|d| int_or0(&d, "epoch"))
            .transpose()
            .map(|e| e.unwrap_or(0))
    }

    /// One past the highest seq of the room's current epoch (0 when empty).
    async fn room_next(&self, tenant: &str, room: &str, epoch: i64) -> StoreResult<i64> {
        let last = self
            .c("room_log")
            .find_one(doc! { "t": tenant, "r": room, "e": epoch })
            .sort(doc! { "s": -1 })
            .projection(doc! { "s": 1 })
            .await
            .map_err(err)?;
        Ok(match last {
            Some(d) => int(&d, "s")? + 1,
            None => 0,
        })
    }
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.run_command(doc! { "ping": 1 }).await.map_err(err)?;
        Ok(())
    }

    async fn flush(&self) -> StoreResult<()> {
        // Every write was acknowledged under the journaled write concern, so
        // there is nothing left to force; check the server is still there.
        self.ping().await
    }

    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        let d = self
            .c("meta")
            .find_one(doc! { "_id": key })
            .await
            .map_err(err)?;
        d.map(|d| {
            d.get_str("v")
                .map(str::to_string)
                .map_err(|e| corrupt("meta", e))
        })
        .transpose()
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.upsert("meta", doc! { "_id": key }, doc! { "$set": { "v": value } })
            .await
    }

    async fn put_tenant(&self, t: &TenantRecord) -> StoreResult<()> {
        self.upsert(
            "tenants",
            doc! { "_id": &t.name },
            doc! { "$set": { "rec": to_json(t), "v": i(t.version) } },
        )
        .await
    }

    async fn swap_tenant(&self, t: &TenantRecord, expected: Option<u64>) -> StoreResult<bool> {
        let set = doc! { "rec": to_json(t), "v": i(t.version) };
        let Some(v) = expected else {
            let mut d = set;
            d.insert("_id", &t.name);
            return match self.c("tenants").insert_one(d).await {
                Ok(_) => Ok(true),
                Err(e) if is_dup(&e) => Ok(false),
                Err(e) => Err(err(e)),
            };
        };
        // Records written before versions existed have no `v`: version 0.
        let filter = if v == 0 {
            doc! { "_id": &t.name, "$or": [ { "v": 0_i64 }, { "v": { "$exists": false } } ] }
        } else {
            doc! { "_id": &t.name, "v": i(v) }
        };
        let r = self
            .c("tenants")
            .update_one(filter, doc! { "$set": set })
            .await
            .map_err(err)?;
        Ok(r.matched_count == 1)
    }

    async fn get_tenant(&self, name: &str) -> StoreResult<Option<TenantRecord>> {
        let d = self
            .c("tenants")
            .find_one(doc! { "_id": name })
            .await
            .map_err(err)?;
        d.map(|d| rec(&d, "rec")).transpose()
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        self.find_all("tenants", doc! {}, doc! { "_id": 1 })
            .await?
            .iter()
            .map(|d| rec(d, "rec"))
            .collect()
    }

    async fn delete_tenant(&self, name: &str) -> StoreResult<bool> {
        let existed = self
            .c("tenants")
            .delete_one(doc! { "_id": name })
            .await
            .map_err(err)?
            .deleted_count
            > 0;
        for coll in [
            "users",
            "room_meta",
            "room_log",
            "room_updates",
            "room_update_history",
            "push_seq",
            "push_queue",
            "devices",
            "plugins",
            "plugin_wasm",
            "kv",
        ] {
            self.c(coll)
                .delete_many(doc! { "t": name })
                .await
                .map_err(err)?;
        }
        self.c("chains")
            .delete_one(doc! { "_id": name })
            .await
            .map_err(err)?;
        Ok(existed)
    }

    async fn put_user(&self, tenant: &str, user: &UserRecord) -> StoreResult<()> {
        self.upsert(
            "users",
            doc! { "_id": { "t": tenant, "u": &user.uid } },
            doc! { "$set": { "t": tenant, "rec": to_json(user) } },
        )
        .await
    }

    async fn get_user(&self, tenant: &str, uid: &str) -> StoreResult<Option<UserRecord>> {
        let d = self
            .c("users")
            .find_one(doc! { "_id": { "t": tenant, "u": uid } })
            .await
            .map_err(err)?;
        d.map(|d| rec(&d, "rec")).transpose()
    }

    async fn room_write(
        &self,
        tenant: &str,
        room: &str,
        write: RoomWrite,
        max_entries: u64,
    ) -> StoreResult<RoomWriteAck> {
        let _in_order = self.room_locks.lock(tenant, room).await;
        match write {
            RoomWrite::Insert(entry) => {
                let json = to_json(&entry);
                let epoch = self.room_epoch_of(tenant, room).await?;
                let mut seq = self.room_next(tenant, room, epoch).await?;
                let mut tries = 0;
                // Claim `seq` by inserting it; a duplicate means another
                // writer got there first, so look again.
                loop {
                    let d = doc! { "t": tenant, "r": room, "e": epoch, "s": seq, "doc": &json };
                    match self.c("room_log").insert_one(d).await {
                        Ok(_) => break,
                        Err(e) if is_dup(&e) && tries < MAX_RACE_RETRIES => {
                            tries += 1;
                            seq = self.room_next(tenant, room, epoch).await?.max(seq + 1);
                        }
                        Err(e) => return Err(err(e)),
                    }
                }
                let max = i(max_entries.max(1));
                if seq + 1 > max {
                    self.c("room_log")
                        .delete_many(
                            doc! { "t": tenant, "r": room, "e": epoch, "s": { "$lte": seq - max } },
                        )
                        .await
                        .map_err(err)?;
                }
                Ok(RoomWriteAck {
                    seq: seq as u64,
                    epoch: epoch as u64,
                })
            }
            RoomWrite::Update { msg_id, entry } => {
                let json = to_json(&entry);
                // One round trip gives the epoch and a history slot.
                let meta = self
                    .c("room_meta")
                    .find_one_and_update(
                        doc! { "_id": { "t": tenant, "r": room } },
                        doc! { "$inc": { "next_update": 1_i64 }, "$set": { "t": tenant } },
                    )
                    .upsert(true)
                    .return_document(ReturnDocument::After)
                    .await
                    .map_err(err)?
                    .ok_or_else(|| {
                        StoreError::Backend("room_meta upsert returned nothing".into())
                    })?;
                let epoch = int_or0(&meta, "epoch")?;
                let slot = int(&meta, "next_update")? - 1;
                self.upsert(
                    "room_updates",
                    doc! { "_id": { "t": tenant, "r": room, "e": epoch, "m": &msg_id } },
                    doc! { "$set": { "t": tenant, "r": room, "e": epoch, "m": &msg_id, "doc": &json } },
                )
                .await?;
                self.c("room_update_history")
                    .insert_one(
                        doc! { "t": tenant, "r": room, "e": epoch, "u": slot, "doc": &json },
                    )
                    .await
                    .map_err(err)?;
                // The history keeps the last `max_entries` updates.
                let max = i(max_entries.max(1));
                if slot >= max {
                    self.c("room_update_history")
                        .delete_many(
                            doc! { "t": tenant, "r": room, "e": epoch, "u": { "$lte": slot - max } },
                        )
                        .await
                        .map_err(err)?;
                }
                let next = self.room_next(tenant, room, epoch).await?;
                Ok(RoomWriteAck {
                    seq: next as u64,
                    epoch: epoch as u64,
                })
            }
        }
    }

    async fn room_read(&self, tenant: &str, room: &str, req: PageRequest) -> StoreResult<RoomPage> {
        let (offset, limit) = (req.offset, req.max_count);
        let epoch = self.room_epoch_of(tenant, room).await?;
        let base = doc! { "t": tenant, "r": room, "e": epoch };
        let mut budget = PageBudget::new(&req);
        let mut inserts = Vec::new();
        let mut more = false;
        if limit > 0 {
            let mut filter = base.clone();
            filter.insert("s", doc! { "$gte": i(offset.min(i64::MAX as u64)) });
            // One extra document tells whether more remain; small batches,
            // so a page of large entries never fetches much more than it sends.
            let mut docs = self
                .c("room_log")
                .find(filter)
                .sort(doc! { "s": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
                .batch_size(PAGE_BATCH)
                .await
                .map_err(err)?;
            while let Some(d) = docs.try_next().await.map_err(err)? {
                let text = d.get_str("doc").map_err(|e| corrupt("doc", e))?;
                if !budget.admit(inserts.len(), text.len()) {
                    more = true;
                    break;
                }
                inserts.push((int(&d, "s")? as u64, from_json(text)?));
            }
        }
        let next_offset = match inserts.last() {
            Some((s, _)) => s + 1,
            None => {
                // Nothing served: stay at the offset, clamped to the log's
                // bounds (like the embedded store's `min(max(offset, first), next)`).
                // The find saw no insert at or after `offset`, so none remains
                // as of this page: an insert that lands after the find is
                // for the next sync. (Answering "more" here, from a later look
                // at the log's end, would send an empty page that says more
                // remain, and a client paging as the contract says would spin.)
                // A page of limit 0 asked for nothing: it tells whether inserts remain.
                let next = self.room_next(tenant, room, epoch).await? as u64;
                let first = self
                    .c("room_log")
                    .find_one(base.clone())
                    .sort(doc! { "s": 1 })
                    .projection(doc! { "s": 1 })
                    .await
                    .map_err(err)?
                    .map(|d| int(&d, "s"))
                    .transpose()?
                    .map(|s| s as u64)
                    .unwrap_or(next);
                let start = offset.max(first).min(next);
                more = limit == 0 && start < next;
                start
            }
        };
        let mut updates = Vec::new();
        let (mut updates_more, mut updates_last) = (false, None);
        if !more {
            let mut filter = base;
            if let Some(after) = &req.updates_after {
                filter.insert("m", doc! { "$gt": after.as_str() });
            }
            let mut docs = self
                .c("room_updates")
                .find(filter)
                .sort(doc! { "m": 1 })
                .batch_size(PAGE_BATCH)
                .await
                .map_err(err)?;
            while let Some(d) = docs.try_next().await.map_err(err)? {
                let text = d.get_str("doc").map_err(|e| corrupt("doc", e))?;
                if !budget.admit(updates.len(), text.len()) {
                    updates_more = true;
                    break;
                }
                updates.push(from_json(text)?);
                updates_last = Some(d.get_str("m").map_err(|e| corrupt("m", e))?.to_string());
            }
        }
        Ok(RoomPage {
            inserts,
            updates,
            next_offset,
            more,
            updates_more,
            updates_last,
            epoch: epoch as u64,
        })
    }

    async fn room_clear(&self, tenant: &str, room: &str) -> StoreResult<u64> {
        let meta = self
            .c("room_meta")
            .find_one_and_update(
                doc! { "_id": { "t": tenant, "r": room } },
                doc! { "$inc": { "epoch": 1_i64 }, "$set": { "t": tenant, "next_update": 0_i64 } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(err)?
            .ok_or_else(|| StoreError::Backend("room_meta upsert returned nothing".into()))?;
        let epoch = int(&meta, "epoch")?;
        let older = doc! { "t": tenant, "r": room, "e": { "$lt": epoch } };
        for coll in ["room_log", "room_updates", "room_update_history"] {
            self.c(coll).delete_many(older.clone()).await.map_err(err)?;
        }
        Ok(epoch as u64)
    }

    async fn room_epoch(&self, tenant: &str, room: &str) -> StoreResult<u64> {
        Ok(self.room_epoch_of(tenant, room).await? as u64)
    }

    async fn push_next_seq(&self, tenant: &str) -> StoreResult<u64> {
        let d = self
            .c("push_seq")
            .find_one_and_update(
                doc! { "_id": tenant },
                doc! { "$inc": { "n": 1_i64 }, "$set": { "t": tenant } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(err)?
            .ok_or_else(|| StoreError::Backend("push_seq upsert returned nothing".into()))?;
        Ok(int(&d, "n")? as u64)
    }

    async fn push_enqueue(
        &self,
        tenant: &str,
        uid: &str,
        devices: &[String],
        entry: &PushEntry,
        max_queue: u64,
    ) -> StoreResult<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let json = to_json(entry);
        let docs: Vec<Document> = devices
            .iter()
            .map(|d| doc! { "t": tenant, "u": uid, "d": d, "s": i(entry.seq), "rec": &json })
            .collect();
        // Unordered, and a duplicate (a retried enqueue) is already queued.
        match self.c("push_queue").insert_many(docs).ordered(false).await {
            Ok(_) => {}
            Err(e) if is_dup(&e) => {}
            Err(e) => return Err(err(e)),
        }
        // Keep the newest `max_queue` of each device: the first one past
        // them, if any, and everything older goes.
        for d in devices {
            let past = self
                .c("push_queue")
                .find_one(doc! { "t": tenant, "u": uid, "d": d })
                .sort(doc! { "s": -1 })
                .skip(max_queue.max(1))
                .projection(doc! { "s": 1 })
                .await
                .map_err(err)?;
            if let Some(p) = past {
                let s = int(&p, "s")?;
                self.c("push_queue")
                    .delete_many(doc! { "t": tenant, "u": uid, "d": d, "s": { "$lte": s } })
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    async fn push_pending(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
    ) -> StoreResult<Vec<PushEntry>> {
        self.find_all(
            "push_queue",
            doc! { "t": tenant, "u": uid, "d": device },
            doc! { "s": 1 },
        )
        .await?
        .iter()
        .map(|d| rec(d, "rec"))
        .collect()
    }

    async fn push_ack(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
        seqs: &[u64],
    ) -> StoreResult<PushAckOutcome> {
        let q = doc! { "t": tenant, "u": uid, "d": device };
        let oldest = self
            .c("push_queue")
            .find_one(q.clone())
            .sort(doc! { "s": 1 })
            .projection(doc! { "s": 1 })
            .await
            .map_err(err)?
            .map(|d| int(&d, "s"))
            .transpose()?
            .map(|s| s as u64);
        let removed = if seqs.is_empty() {
            0
        } else {
            let mut filter = q;
            filter.insert(
                "s",
                doc! { "$in": seqs.iter().map(|s| i(*s)).collect::<Vec<_>>() },
            );
            self.c("push_queue")
                .delete_many(filter)
                .await
                .map_err(err)?
                .deleted_count as usize
        };
        let min_acked = seqs.iter().copied().min();
        Ok(PushAckOutcome {
            removed,
            was_oldest: oldest.is_none() || min_acked == oldest,
        })
    }

    async fn push_clear(&self, tenant: &str, uid: &str, device: &str) -> StoreResult<()> {
        self.c("push_queue")
            .delete_many(doc! { "t": tenant, "u": uid, "d": device })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn push_move(&self, tenant: &str, uid: &str, from: &str, to: &str) -> StoreResult<()> {
        if from == to {
            return Ok(());
        }
        let docs = self
            .find_all(
                "push_queue",
                doc! { "t": tenant, "u": uid, "d": from },
                doc! { "s": 1 },
            )
            .await?;
        if docs.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::with_capacity(docs.len());
        let mut copies = Vec::with_capacity(docs.len());
        for d in &docs {
            let s = int(d, "s")?;
            seqs.push(s);
            copies.push(doc! { "t": tenant, "u": uid, "d": to, "s": s, "rec": d.get_str("rec").map_err(|e| corrupt("rec", e))? });
        }
        // Copy first, then delete exactly what was copied: a crash in between
        // leaves the entries in both queues (delivered at least once), and an
        // entry enqueued to `from` meanwhile is not lost.
        match self
            .c("push_queue")
            .insert_many(copies)
            .ordered(false)
            .await
        {
            Ok(_) => {}
            Err(e) if is_dup(&e) => {}
            Err(e) => return Err(err(e)),
        }
        self.c("push_queue")
            .delete_many(doc! { "t": tenant, "u": uid, "d": from, "s": { "$in": seqs } })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn device_seen(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.upsert(
            "devices",
            doc! { "_id": { "t": tenant, "u": uid, "d": device } },
            doc! { "$set": { "t": tenant, "u": uid, "d": device, "seen": i(now_ms) } },
        )
        .await
    }

    async fn devices(&self, tenant: &str, uid: &str) -> StoreResult<Vec<(String, u64)>> {
        self.find_all("devices", doc! { "t": tenant, "u": uid }, doc! { "d": 1 })
            .await?
            .iter()
            .map(|d| {
                Ok((
                    d.get_str("d").map_err(|e| corrupt("d", e))?.to_string(),
                    int(d, "seen")? as u64,
                ))
            })
            .collect()
    }

    async fn expire_devices(&self, tenant: &str, before_ms: u64) -> StoreResult<usize> {
        let stale = self
            .find_all(
                "devices",
                doc! { "t": tenant, "seen": { "$lt": i(before_ms) } },
                doc! { "seen": 1 },
            )
            .await?;
        let mut n = 0;
        for d in stale {
            let id = d
                .get_document("_id")
                .map_err(|e| corrupt("_id", e))?
                .clone();
            let (uid, dev) = (
                d.get_str("u").map_err(|e| corrupt("u", e))?,
                d.get_str("d").map_err(|e| corrupt("d", e))?,
            );
            // Re-check the time so a device seen since the scan is kept.
            let gone = self
                .c("devices")
                .delete_one(doc! { "_id": id, "seen": { "$lt": i(before_ms) } })
                .await
                .map_err(err)?;
            if gone.deleted_count > 0 {
                self.c("push_queue")
                    .delete_many(doc! { "t": tenant, "u": uid, "d": dev })
                    .await
                    .map_err(err)?;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn put_plugin(&self, tenant: &str, rec: &PluginRecord, wasm: &[u8]) -> StoreResult<()> {
        let id = doc! { "t": tenant, "n": &rec.name, "v": i(rec.version) };
        // The component first: a listed version always has its bytes.
        self.upsert(
            "plugin_wasm",
            doc! { "_id": id.clone() },
            doc! { "$set": { "t": tenant, "n": &rec.name, "v": i(rec.version), "wasm": bin(wasm) } },
        )
        .await?;
        self.upsert(
            "plugins",
            doc! { "_id": id },
            doc! { "$set": { "t": tenant, "n": &rec.name, "v": i(rec.version), "rec": to_json(rec) } },
        )
        .await
    }

    async fn list_plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>> {
        self.find_all("plugins", doc! { "t": tenant }, doc! { "n": 1, "v": 1 })
            .await?
            .iter()
            .map(|d| rec(d, "rec"))
            .collect()
    }

    async fn get_plugin_wasm(
        &self,
        tenant: &str,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        let d = self
            .c("plugin_wasm")
            .find_one(doc! { "_id": { "t": tenant, "n": name, "v": i(version) } })
            .await
            .map_err(err)?;
        d.map(|d| get_bin(&d, "wasm")).transpose()
    }

    async fn delete_plugin(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        let n = self
            .c("plugins")
            .delete_many(doc! { "t": tenant, "n": name })
            .await
            .map_err(err)?
            .deleted_count;
        self.c("plugin_wasm")
            .delete_many(doc! { "t": tenant, "n": name })
            .await
            .map_err(err)?;
        Ok(n > 0)
    }

    async fn get_chain(&self, tenant: &str) -> StoreResult<PluginChainRecord> {
        let d = self
            .c("chains")
            .find_one(doc! { "_id": tenant })
            .await
            .map_err(err)?;
        Ok(d.map(|d| rec(&d, "rec")).transpose()?.unwrap_or_default())
    }

    async fn put_chain(&self, tenant: &str, chain: &PluginChainRecord) -> StoreResult<()> {
        self.upsert(
            "chains",
            doc! { "_id": tenant },
            doc! { "$set": { "rec": to_json(chain) } },
        )
        .await
    }

    async fn kv_get(&self, tenant: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let d = self
            .c("kv")
            .find_one(doc! { "_id": { "t": tenant, "k": key } })
            .await
            .map_err(err)?;
        match d {
            Some(d) if live(&d, now_ms())? => Ok(Some(get_bin(&d, "v")?)),
            _ => Ok(None),
        }
    }

    async fn kv_set(&self, tenant: &str, key: &str, value: &[u8], ttl_ms: u64) -> StoreResult<()> {
        let exp = if ttl_ms == 0 { 0 } else { now_ms() + ttl_ms };
        let mut set = doc! { "t": tenant, "v": bin(value), "exp": i(exp) };
        let mut update = doc! { "$inc": { "ver": 1_i64 } };
        if exp == 0 {
            update.insert("$unset", doc! { "exp_at": "" });
        } else {
            set.insert("exp_at", DateTime::from_millis(i(exp)));
        }
        update.insert("$set", set);
        self.upsert("kv", doc! { "_id": { "t": tenant, "k": key } }, update)
            .await
    }

    async fn kv_delete_prefix(&self, tenant: &str, prefix: &str) -> StoreResult<u64> {
        let Some(end) = prefix_end(prefix) else {
            return Ok(0);
        };
        let r = self
            .c("kv")
            .delete_many(doc! { "t": tenant, "_id.k": { "$gte": prefix, "$lt": end } })
            .await
            .map_err(err)?;
        Ok(r.deleted_count)
    }

    async fn kv_purge_expired(&self, now_ms: u64) -> StoreResult<u64> {
        // The TTL index expires them too, but only about once a minute, and
        // not every MongoDB-compatible server runs one.
        let r = self
            .c("kv")
            .delete_many(doc! { "exp": { "$gt": 0_i64, "$lte": i(now_ms) } })
            .await
            .map_err(err)?;
        Ok(r.deleted_count)
    }

    async fn kv_incr(&self, tenant: &str, key: &str, delta: i64, ttl_ms: u64) -> StoreResult<i64> {
        let id = doc! { "t": tenant, "k": key };
        for _ in 0..MAX_RACE_RETRIES {
            let now = now_ms();
            let fresh_exp = if ttl_ms == 0 { 0 } else { now + ttl_ms };
            let found = self
                .c("kv")
                .find_one(doc! { "_id": id.clone() })
                .await
                .map_err(err)?;
            let (current, exp, ver) = match &found {
                Some(d) if live(d, now)? => {
                    let v = get_bin(d, "v")?;
                    let n = std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(0);
                    (n, int_or0(d, "exp")? as u64, Some(int_or0(d, "ver")?))
                }
                // Expired: starts again from 0 with a fresh TTL.
                Some(d) => (0, fresh_exp, Some(int_or0(d, "ver")?)),
                None => (0, fresh_exp, None),
            };
            let n = current.saturating_add(delta);
            let mut set = doc! { "t": tenant, "v": bin(n.to_string().as_bytes()), "exp": i(exp) };
            if exp != 0 {
                set.insert("exp_at", DateTime::from_millis(i(exp)));
            }
            let ok = match ver {
                Some(ver) => {
                    let filter = if found.as_ref().is_some_and(|d| d.contains_key("ver")) {
                        doc! { "_id": id.clone(), "ver": ver }
                    } else {
                        doc! { "_id": id.clone(), "ver": { "$exists": false } }
                    };
                    let mut update = doc! { "$set": set };
                    update.insert("$inc", doc! { "ver": 1_i64 });
                    if exp == 0 {
                        update.insert("$unset", doc! { "exp_at": "" });
                    }
                    self.c("kv")
                        .update_one(filter, update)
                        .await
                        .map_err(err)?
                        .matched_count
                        == 1
                }
                None => {
                    set.insert("_id", id.clone());
                    set.insert("ver", 1_i64);
                    match self.c("kv").insert_one(set).await {
                        Ok(_) => true,
                        Err(e) if is_dup(&e) => false,
                        Err(e) => return Err(err(e)),
                    }
                }
            };
            if ok {
                return Ok(n);
            }
        }
        Err(StoreError::Backend(format!(
            "kv_incr on {key:?}: too much contention"
        )))
    }
}

/// Whether a kv document has not expired at `now` (`exp` 0 = never).
fn live(d: &Document, now: u64) -> StoreResult<bool> {
    let exp = int_or0(d, "exp")?;
    Ok(exp == 0 || exp as u64 > now)
}
