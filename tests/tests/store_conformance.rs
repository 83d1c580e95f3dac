//! One conformance suite for every [`Store`] backend.
//!
//! Each behaviour is a plain async fn over `Arc<dyn Store>`; the
//! `backend_tests!` lines at the bottom run all of them against each backend
//! (test names are `<backend>::<behaviour>`). To add a backend, write a
//! constructor returning a [`Handle`] and add one `backend_tests!` line.
//!
//! Redis and SecantusDB are real processes (see `hookwire_tests::procs`),
//! one per test binary, shared by the tests of that backend; tests isolate
//! themselves with unique tenant names (and one MongoDB database each).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use hookwire::error::StoreError;
use hookwire::store::{
    ChainEntry, PageRequest, PluginChainRecord, PluginRecord, PushAckOutcome, PushEntry, RoomEntry,
    RoomWrite, Store, TenantRecord, UserRecord,
};
use hookwire::tenant::TenantConfig;
use hookwire_tests::procs::ServiceProc;
use serde_json::json;

// ---------------------------------------------------------------- backends

/// A store plus whatever must live as long as it (a temp dir).
pub struct Handle {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send + Sync>,
}

async fn embedded() -> Result<Handle> {
    let dir = tempfile::tempdir()?;
    let store = hookwire::store::embedded::EmbeddedStore::open(
        &dir.path().join("hookwire.redb"),
        Duration::ZERO,
    )?;
    Ok(Handle {
        store: Arc::new(store),
        _keep: Box::new(dir),
    })
}

/// One server per test binary; the watchdog in `procs` stops it when the
/// binary exits.
fn shared(
    cell: &'static OnceLock<Result<ServiceProc, String>>,
    start: fn() -> Result<ServiceProc>,
) -> Result<&'static ServiceProc> {
    cell.get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

static REDIS: OnceLock<Result<ServiceProc, String>> = OnceLock::new();
static SECANTUS: OnceLock<Result<ServiceProc, String>> = OnceLock::new();

async fn redis() -> Result<Handle> {
    let proc =
        tokio::task::spawn_blocking(|| shared(&REDIS, ServiceProc::redis).map(ServiceProc::url))
            .await??;
    let store = hookwire::store::redis::RedisStore::connect(&proc).await?;
    Ok(Handle {
        store: Arc::new(store),
        _keep: Box::new(()),
    })
}

async fn mongo() -> Result<Handle> {
    let base = tokio::task::spawn_blocking(|| {
        shared(&SECANTUS, ServiceProc::secantus).map(|p| p.mongo_url(&unique("db")))
    })
    .await??;
    let store = hookwire::store::mongo::MongoStore::connect(&base).await?;
    Ok(Handle {
        store: Arc::new(store),
        _keep: Box::new(()),
    })
}

// ---------------------------------------------------------------- helpers

/// A name no other test uses (valid as a tenant name: `[a-z0-9_-]`).
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn tenant_rec(name: &str) -> TenantRecord {
    TenantRecord {
        version: 1,
        name: name.into(),
        config: TenantConfig::default(),
        api_key_hashes: vec!["ab".repeat(32)],
        created_ms: 1_700_000_000_000,
    }
}

fn entry(uid: &str, ts: u64, text: &str) -> RoomEntry {
    RoomEntry {
        uid: uid.into(),
        ts,
        msg: json!({ "text": text, "uid": uid, "ts": ts }).to_string(),
    }
}

fn insert(uid: &str, ts: u64, text: &str) -> RoomWrite {
    RoomWrite::Insert(entry(uid, ts, text))
}

fn update(msg_id: &str, text: &str) -> RoomWrite {
    RoomWrite::Update {
        msg_id: msg_id.into(),
        entry: entry("u", 7, text),
    }
}

fn push(seq: u64) -> PushEntry {
    PushEntry {
        seq,
        event: "chat".into(),
        args: vec![json!({ "n": seq }), json!("x")],
        resync: seq.is_multiple_of(2),
    }
}

fn seqs(v: &[PushEntry]) -> Vec<u64> {
    v.iter().map(|e| e.seq).collect()
}

fn plugin(name: &str, version: u64) -> PluginRecord {
    PluginRecord {
        name: name.into(),
        version,
        hash: format!("{name}{version}"),
        size: 3,
        manifest: json!({ "timeout_ms": 50, "config": { "k": [1, 2, { "deep": true }] } }),
        created_ms: 1_700_000_000_000 + version,
    }
}

/// Reads the whole room page by page.
async fn read_all(
    s: &dyn Store,
    t: &str,
    room: &str,
    page: usize,
) -> Result<Vec<(u64, RoomEntry)>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for _ in 0..10_000 {
        let p = s
            .room_read(t, room, PageRequest::count(offset, page))
            .await?;
        out.extend(p.inserts);
        offset = p.next_offset;
        if !p.more {
            return Ok(out);
        }
    }
    Err(anyhow!("room {room} never ended"))
}

// ---------------------------------------------------------------- behaviours

async fn ping_kind_flush(s: Arc<dyn Store>) -> Result<()> {
    s.ping().await?;
    ensure!(
        ["embedded", "redis", "mongodb"].contains(&s.kind()),
        "kind {}",
        s.kind()
    );
    let t = unique("flush");
    s.set_meta(&t, "v").await?;
    s.room_write(&t, "r", insert("a", 1, "x"), 10).await?;
    s.flush().await?;
    ensure!(s.get_meta(&t).await?.as_deref() == Some("v"));
    Ok(())
}

async fn meta(s: Arc<dyn Store>) -> Result<()> {
    let k = unique("meta");
    ensure!(s.get_meta(&k).await?.is_none());
    s.set_meta(&k, "one").await?;
    ensure!(s.get_meta(&k).await?.as_deref() == Some("one"));
    s.set_meta(&k, "two: {x} % *").await?;
    ensure!(s.get_meta(&k).await?.as_deref() == Some("two: {x} % *"));
    ensure!(s.get_meta(&unique("meta")).await?.is_none());
    Ok(())
}

async fn tenants_crud(s: Arc<dyn Store>) -> Result<()> {
    let (a, b) = (unique("ta"), unique("tb"));
    ensure!(s.get_tenant(&a).await?.is_none());
    s.put_tenant(&tenant_rec(&a)).await?;
    s.put_tenant(&tenant_rec(&b)).await?;
    ensure!(s.get_tenant(&a).await? == Some(tenant_rec(&a)));
    let mut changed = tenant_rec(&a);
    changed.config.max_msgs_per_room = 7;
    changed.config.admin_uids = vec!["root".into()];
    changed.api_key_hashes.push("cd".repeat(32));
    s.put_tenant(&changed).await?;
    ensure!(
        s.get_tenant(&a).await? == Some(changed.clone()),
        "put_tenant overwrites"
    );
    let list = s.list_tenants().await?;
    ensure!(
        list.contains(&changed) && list.contains(&tenant_rec(&b)),
        "list has both"
    );
    ensure!(
        list.iter().filter(|t| t.name == a).count() == 1,
        "no duplicate after overwrite"
    );
    let names: Vec<&String> = list.iter().map(|t| &t.name).collect();
    ensure!(
        names.windows(2).all(|w| w[0] <= w[1]),
        "list_tenants is sorted by name"
    );
    ensure!(s.delete_tenant(&a).await?, "delete reports existence");
    ensure!(!s.delete_tenant(&a).await?, "second delete finds nothing");
    ensure!(s.get_tenant(&a).await?.is_none());
    ensure!(!s.list_tenants().await?.iter().any(|t| t.name == a));
    ensure!(
        s.get_tenant(&b).await? == Some(tenant_rec(&b)),
        "other tenant untouched"
    );
    Ok(())
}

/// Fills every kind of per-tenant data.
async fn fill_tenant(s: &dyn Store, t: &str) -> Result<()> {
    s.put_tenant(&tenant_rec(t)).await?;
    s.put_user(
        t,
        &UserRecord {
            uid: "alice".into(),
            token_hash: "h".into(),
            created_ms: 1,
        },
    )
    .await?;
    s.room_write(t, "lobby", insert("alice", 1, "hi"), 100)
        .await?;
    s.room_write(t, "lobby", update("m1", "edited"), 100)
        .await?;
    let seq = s.push_next_seq(t).await?;
    s.push_enqueue(t, "alice", &["phone".into()], &push(seq), 1000)
        .await?;
    s.device_seen(t, "alice", "phone", 1000).await?;
    s.put_plugin(t, &plugin("p", 1), b"\0asm").await?;
    s.put_chain(
        t,
        &PluginChainRecord {
            entries: vec![ChainEntry {
                name: "p".into(),
                version: 1,
            }],
            revision: 1,
        },
    )
    .await?;
    s.kv_set(t, "k", b"v", 0).await?;
    Ok(())
}

async fn delete_tenant_removes_only_its_data(s: Arc<dyn Store>) -> Result<()> {
    let (a, b) = (unique("da"), unique("db"));
    fill_tenant(&*s, &a).await?;
    fill_tenant(&*s, &b).await?;
    ensure!(s.delete_tenant(&a).await?);
    ensure!(s.get_tenant(&a).await?.is_none());
    ensure!(s.get_user(&a, "alice").await?.is_none(), "users gone");
    let p = s.room_read(&a, "lobby", PageRequest::count(0, 100)).await?;
    ensure!(
        p.inserts.is_empty() && p.updates.is_empty() && !p.more && p.next_offset == 0,
        "room gone: {p:?}"
    );
    ensure!(
        s.push_pending(&a, "alice", "phone").await?.is_empty(),
        "queue gone"
    );
    ensure!(s.devices(&a, "alice").await?.is_empty(), "devices gone");
    ensure!(s.list_plugins(&a).await?.is_empty(), "plugins gone");
    ensure!(s.get_plugin_wasm(&a, "p", 1).await?.is_none(), "wasm gone");
    ensure!(
        s.get_chain(&a).await? == PluginChainRecord::default(),
        "chain gone"
    );
    ensure!(s.kv_get(&a, "k").await?.is_none(), "kv gone");
    ensure!(s.push_next_seq(&a).await? == 1, "push seq restarts");

    ensure!(s.get_tenant(&b).await?.is_some());
    ensure!(s.get_user(&b, "alice").await?.is_some());
    let p = s.room_read(&b, "lobby", PageRequest::count(0, 100)).await?;
    ensure!(p.inserts.len() == 1 && p.updates.len() == 1);
    ensure!(seqs(&s.push_pending(&b, "alice", "phone").await?) == vec![1]);
    ensure!(s.devices(&b, "alice").await? == vec![("phone".to_string(), 1000)]);
    ensure!(s.list_plugins(&b).await?.len() == 1);
    ensure!(s.get_plugin_wasm(&b, "p", 1).await?.as_deref() == Some(&b"\0asm"[..]));
    ensure!(s.get_chain(&b).await?.revision == 1);
    ensure!(s.kv_get(&b, "k").await?.as_deref() == Some(&b"v"[..]));
    ensure!(s.push_next_seq(&b).await? == 2);
    Ok(())
}

async fn users(s: Arc<dyn Store>) -> Result<()> {
    let (t, t2) = (unique("users"), unique("users2"));
    ensure!(s.get_user(&t, "bob").await?.is_none());
    let u = UserRecord {
        uid: "bob".into(),
        token_hash: "aa".into(),
        created_ms: 5,
    };
    s.put_user(&t, &u).await?;
    ensure!(s.get_user(&t, "bob").await? == Some(u.clone()));
    let u2 = UserRecord {
        token_hash: "bb".into(),
        ..u.clone()
    };
    s.put_user(&t, &u2).await?;
    ensure!(
        s.get_user(&t, "bob").await? == Some(u2),
        "new token replaces the old"
    );
    ensure!(
        s.get_user(&t2, "bob").await?.is_none(),
        "users are per tenant"
    );
    let odd = UserRecord {
        uid: "42:{x}".into(),
        token_hash: "cc".into(),
        created_ms: 6,
    };
    s.put_user(&t, &odd).await?;
    ensure!(s.get_user(&t, "42:{x}").await? == Some(odd));
    ensure!(s.get_user(&t, "42").await?.is_none());
    Ok(())
}

async fn room_insert_and_read(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("room");
    let empty = s.room_read(&t, "r", PageRequest::count(0, 10)).await?;
    ensure!(
        empty.inserts.is_empty()
            && empty.updates.is_empty()
            && empty.next_offset == 0
            && !empty.more
            && empty.epoch == 0,
        "{empty:?}"
    );
    ensure!(s.room_epoch(&t, "r").await? == 0);
    let mut want = Vec::new();
    for i in 0..5u64 {
        let ack = s
            .room_write(&t, "r", insert("alice", 100 + i, &format!("m{i}")), 100)
            .await?;
        ensure!(ack.seq == i && ack.epoch == 0, "ack {ack:?}");
        want.push((i, entry("alice", 100 + i, &format!("m{i}"))));
    }
    let p = s.room_read(&t, "r", PageRequest::count(0, 100)).await?;
    ensure!(p.inserts == want, "all inserts in order");
    ensure!(p.next_offset == 5 && !p.more && p.epoch == 0 && p.updates.is_empty());
    let p = s.room_read(&t, "r", PageRequest::count(3, 100)).await?;
    ensure!(p.inserts == want[3..] && p.next_offset == 5 && !p.more);
    let p = s.room_read(&t, "r", PageRequest::count(10, 100)).await?;
    ensure!(
        p.inserts.is_empty() && p.next_offset == 5 && !p.more,
        "past the end: {p:?}"
    );
    let p = s.room_read(&t, "r", PageRequest::count(5, 100)).await?;
    ensure!(p.inserts.is_empty() && p.next_offset == 5 && !p.more);
    ensure!(
        s.room_read(&t, "other", PageRequest::count(0, 100))
            .await?
            .inserts
            .is_empty(),
        "rooms are separate"
    );
    Ok(())
}

async fn room_paging(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("paging");
    for i in 0..10u64 {
        s.room_write(&t, "r", insert("a", i, &format!("m{i}")), 100)
            .await?;
    }
    s.room_write(&t, "r", update("x", "ux"), 100).await?;
    s.room_write(&t, "r", update("b", "ub"), 100).await?;
    let p1 = s.room_read(&t, "r", PageRequest::count(0, 4)).await?;
    ensure!(p1.inserts.iter().map(|e| e.0).collect::<Vec<_>>() == vec![0, 1, 2, 3]);
    ensure!(
        p1.next_offset == 4 && p1.more && p1.updates.is_empty(),
        "page 1: {p1:?}"
    );
    let p2 = s
        .room_read(&t, "r", PageRequest::count(p1.next_offset, 4))
        .await?;
    ensure!(p2.inserts.iter().map(|e| e.0).collect::<Vec<_>>() == vec![4, 5, 6, 7]);
    ensure!(
        p2.next_offset == 8 && p2.more && p2.updates.is_empty(),
        "page 2: {p2:?}"
    );
    let p3 = s
        .room_read(&t, "r", PageRequest::count(p2.next_offset, 4))
        .await?;
    ensure!(p3.inserts.iter().map(|e| e.0).collect::<Vec<_>>() == vec![8, 9]);
    ensure!(p3.next_offset == 10 && !p3.more, "page 3: {p3:?}");
    ensure!(
        p3.updates == vec![entry("u", 7, "ub"), entry("u", 7, "ux")],
        "updates on the last page, by msgId"
    );
    // A page that ends exactly at the end of the log is the last page.
    let exact = s.room_read(&t, "r", PageRequest::count(6, 4)).await?;
    ensure!(
        exact.inserts.len() == 4
            && exact.next_offset == 10
            && !exact.more
            && exact.updates.len() == 2,
        "{exact:?}"
    );
    // An empty page stays where it is.
    let zero = s.room_read(&t, "r", PageRequest::count(3, 0)).await?;
    ensure!(
        zero.inserts.is_empty() && zero.next_offset == 3 && zero.more && zero.updates.is_empty(),
        "limit 0: {zero:?}"
    );
    // Up to date: nothing new, but the updates.
    let done = s.room_read(&t, "r", PageRequest::count(10, 4)).await?;
    ensure!(done.inserts.is_empty() && !done.more && done.updates.len() == 2);
    Ok(())
}

async fn room_updates(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("upd");
    s.room_write(&t, "r", insert("a", 1, "first"), 100).await?;
    s.room_write(&t, "r", insert("a", 2, "second"), 100).await?;
    let ack = s.room_write(&t, "r", update("m", "v1"), 100).await?;
    ensure!(
        ack.seq == 2 && ack.epoch == 0,
        "an update acks the log length: {ack:?}"
    );
    s.room_write(&t, "r", update("m", "v2"), 100).await?;
    // Numeric-looking msgIds sort as text.
    s.room_write(&t, "r", update("9", "nine"), 100).await?;
    s.room_write(&t, "r", update("10", "ten"), 100).await?;
    let p = s.room_read(&t, "r", PageRequest::count(0, 100)).await?;
    ensure!(p.inserts.len() == 2, "updates are not inserts");
    ensure!(
        p.updates
            == vec![
                entry("u", 7, "ten"),
                entry("u", 7, "nine"),
                entry("u", 7, "v2")
            ],
        "latest value per msgId: {:?}",
        p.updates
    );
    let ack = s.room_write(&t, "r", insert("a", 3, "third"), 100).await?;
    ensure!(ack.seq == 2, "updates take no insert seq");
    Ok(())
}

async fn room_trimming(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("trim");
    for i in 0..5u64 {
        let ack = s
            .room_write(&t, "r", insert("a", i, &format!("m{i}")), 3)
            .await?;
        ensure!(ack.seq == i);
    }
    let p = s.room_read(&t, "r", PageRequest::count(0, 100)).await?;
    ensure!(
        p.inserts.iter().map(|e| e.0).collect::<Vec<_>>() == vec![2, 3, 4],
        "kept the newest 3: {:?}",
        p.inserts
    );
    ensure!(p.inserts[0].1 == entry("a", 2, "m2"));
    ensure!(p.next_offset == 5 && !p.more);
    let p = s.room_read(&t, "r", PageRequest::count(1, 1)).await?;
    ensure!(
        p.inserts.iter().map(|e| e.0).collect::<Vec<_>>() == vec![2]
            && p.next_offset == 3
            && p.more,
        "trimmed offsets skip ahead: {p:?}"
    );
    // A smaller limit trims further on the next write.
    s.room_write(&t, "r", insert("a", 5, "m5"), 2).await?;
    let p = s.room_read(&t, "r", PageRequest::count(0, 100)).await?;
    ensure!(p.inserts.iter().map(|e| e.0).collect::<Vec<_>>() == vec![4, 5]);
    // 0 is treated as 1: the newest message is always kept.
    s.room_write(&t, "r", insert("a", 6, "m6"), 0).await?;
    let p = s.room_read(&t, "r", PageRequest::count(0, 100)).await?;
    ensure!(p.inserts.iter().map(|e| e.0).collect::<Vec<_>>() == vec![6] && p.next_offset == 7);
    Ok(())
}

async fn room_clear_and_epoch(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("clear");
    for i in 0..3u64 {
        s.room_write(&t, "r", insert("a", i, "x"), 100).await?;
    }
    s.room_write(&t, "r", update("m", "u"), 100).await?;
    s.room_write(&t, "keep", insert("a", 1, "kept"), 100)
        .await?;
    ensure!(s.room_clear(&t, "r").await? == 1);
    ensure!(s.room_epoch(&t, "r").await? == 1);
    let p = s.room_read(&t, "r", PageRequest::count(0, 100)).await?;
    ensure!(
        p.inserts.is_empty()
            && p.updates.is_empty()
            && p.epoch == 1
            && p.next_offset == 0
            && !p.more,
        "cleared: {p:?}"
    );
    let ack = s.room_write(&t, "r", insert("a", 9, "after"), 100).await?;
    ensure!(
        ack.seq == 0 && ack.epoch == 1,
        "seqs restart in the new epoch: {ack:?}"
    );
    let p = s.room_read(&t, "r", PageRequest::count(0, 100)).await?;
    ensure!(p.inserts == vec![(0, entry("a", 9, "after"))] && p.epoch == 1);
    ensure!(s.room_clear(&t, "r").await? == 2);
    ensure!(
        s.room_clear(&t, "never-written").await? == 1,
        "clearing an unknown room raises its epoch too"
    );
    ensure!(s.room_epoch(&t, "keep").await? == 0);
    ensure!(
        s.room_read(&t, "keep", PageRequest::count(0, 100))
            .await?
            .inserts
            .len()
            == 1,
        "other rooms untouched"
    );
    Ok(())
}

async fn numeric_and_odd_ids(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("ids");
    // Rooms that a backend might confuse if it parsed or concatenated ids.
    let rooms = [
        "123", "0123", "1", "01", "1e3", "a:b", "a", "b", "{x}", "%3A", "*", "room:log",
    ];
    for (i, r) in rooms.iter().enumerate() {
        for j in 0..=i as u64 {
            s.room_write(&t, r, insert("9", j, r), 100).await?;
        }
    }
    for (i, r) in rooms.iter().enumerate() {
        let p = s.room_read(&t, r, PageRequest::count(0, 100)).await?;
        ensure!(
            p.inserts.len() == i + 1,
            "room {r:?} has {} entries",
            p.inserts.len()
        );
        ensure!(p.inserts.iter().all(|(_, e)| e == &entry("9", e.ts, r)));
    }
    // Users and devices with such ids.
    s.push_enqueue(&t, "a:b", &["c".into()], &push(1), 1000)
        .await?;
    s.push_enqueue(&t, "a", &["b:c".into()], &push(2), 1000)
        .await?;
    s.push_enqueue(&t, "007", &["7".into()], &push(3), 1000)
        .await?;
    ensure!(seqs(&s.push_pending(&t, "a:b", "c").await?) == vec![1]);
    ensure!(seqs(&s.push_pending(&t, "a", "b:c").await?) == vec![2]);
    ensure!(seqs(&s.push_pending(&t, "007", "7").await?) == vec![3]);
    ensure!(s.push_pending(&t, "7", "7").await?.is_empty());
    s.kv_set(&t, "12", b"twelve", 0).await?;
    s.kv_set(&t, "012", b"zero-twelve", 0).await?;
    ensure!(s.kv_get(&t, "12").await?.as_deref() == Some(&b"twelve"[..]));
    ensure!(s.kv_get(&t, "012").await?.as_deref() == Some(&b"zero-twelve"[..]));
    Ok(())
}

async fn push_seq_monotonic(s: Arc<dyn Store>) -> Result<()> {
    let (t, t2) = (unique("seq"), unique("seq2"));
    let mut last = 0;
    for _ in 0..50 {
        let n = s.push_next_seq(&t).await?;
        ensure!(n > last, "{n} after {last}");
        last = n;
    }
    ensure!(
        s.push_next_seq(&t2).await? == 1,
        "seqs are per tenant and start at 1"
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move {
                let mut v = Vec::new();
                for _ in 0..10 {
                    v.push(s.push_next_seq(&t).await?);
                }
                Ok::<_, anyhow::Error>(v)
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for task in tasks {
        for n in task.await?? {
            ensure!(n > last, "concurrent seq {n} not after {last}");
            ensure!(all.insert(n), "seq {n} handed out twice");
        }
    }
    ensure!(all.len() == 200);
    Ok(())
}

async fn push_enqueue_and_pending(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("enq");
    let devs: Vec<String> = vec!["phone".into(), "laptop".into(), "".into()];
    s.push_enqueue(&t, "u", &devs, &push(1), 1000).await?;
    s.push_enqueue(&t, "u", &devs[..1], &push(2), 1000).await?;
    // Out-of-order enqueue still reads back in seq order.
    s.push_enqueue(&t, "u", &devs[..1], &push(12), 1000).await?;
    s.push_enqueue(&t, "u", &devs[..1], &push(5), 1000).await?;
    s.push_enqueue(&t, "u", &[], &push(6), 1000).await?;
    let phone = s.push_pending(&t, "u", "phone").await?;
    ensure!(
        seqs(&phone) == vec![1, 2, 5, 12],
        "phone: {:?}",
        seqs(&phone)
    );
    ensure!(
        phone[0] == push(1) && phone[1] == push(2),
        "entries round-trip"
    );
    ensure!(seqs(&s.push_pending(&t, "u", "laptop").await?) == vec![1]);
    ensure!(
        seqs(&s.push_pending(&t, "u", "").await?) == vec![1],
        "the no-device queue"
    );
    ensure!(s.push_pending(&t, "u", "tablet").await?.is_empty());
    ensure!(s.push_pending(&t, "other", "phone").await?.is_empty());
    Ok(())
}

async fn push_ack_semantics(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("ack");
    for n in 1..=4 {
        s.push_enqueue(&t, "u", &["d".into(), "e".into()], &push(n), 1000)
            .await?;
    }
    let o = s.push_ack(&t, "u", "d", &[2]).await?;
    ensure!(
        o == PushAckOutcome {
            removed: 1,
            was_oldest: false
        },
        "out of order: {o:?}"
    );
    ensure!(seqs(&s.push_pending(&t, "u", "d").await?) == vec![1, 3, 4]);
    let o = s.push_ack(&t, "u", "d", &[3, 1]).await?;
    ensure!(
        o == PushAckOutcome {
            removed: 2,
            was_oldest: true
        },
        "oldest acked: {o:?}"
    );
    ensure!(seqs(&s.push_pending(&t, "u", "d").await?) == vec![4]);
    let o = s.push_ack(&t, "u", "d", &[99]).await?;
    ensure!(
        o == PushAckOutcome {
            removed: 0,
            was_oldest: false
        },
        "unknown seq: {o:?}"
    );
    let o = s.push_ack(&t, "u", "d", &[4]).await?;
    ensure!(
        o == PushAckOutcome {
            removed: 1,
            was_oldest: true
        }
    );
    let o = s.push_ack(&t, "u", "d", &[4]).await?;
    ensure!(
        o == PushAckOutcome {
            removed: 0,
            was_oldest: true
        },
        "empty queue: {o:?}"
    );
    ensure!(
        seqs(&s.push_pending(&t, "u", "e").await?) == vec![1, 2, 3, 4],
        "other device untouched"
    );
    s.push_clear(&t, "u", "e").await?;
    ensure!(s.push_pending(&t, "u", "e").await?.is_empty());
    Ok(())
}

async fn push_move_queues(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("move");
    s.push_enqueue(&t, "u", &["".into()], &push(1), 1000)
        .await?;
    s.push_enqueue(&t, "u", &["".into()], &push(3), 1000)
        .await?;
    s.push_enqueue(&t, "u", &["d".into()], &push(2), 1000)
        .await?;
    s.push_enqueue(&t, "v", &["".into()], &push(9), 1000)
        .await?;
    s.push_move(&t, "u", "", "d").await?;
    ensure!(
        s.push_pending(&t, "u", "").await?.is_empty(),
        "source emptied"
    );
    let d = s.push_pending(&t, "u", "d").await?;
    ensure!(
        seqs(&d) == vec![1, 2, 3] && d[0] == push(1),
        "merged in order: {:?}",
        seqs(&d)
    );
    ensure!(
        seqs(&s.push_pending(&t, "v", "").await?) == vec![9],
        "other user untouched"
    );
    s.push_move(&t, "u", "nothing", "d").await?;
    ensure!(seqs(&s.push_pending(&t, "u", "d").await?) == vec![1, 2, 3]);
    s.push_move(&t, "u", "d", "d").await?;
    ensure!(
        seqs(&s.push_pending(&t, "u", "d").await?) == vec![1, 2, 3],
        "moving onto itself keeps the queue"
    );
    Ok(())
}

async fn devices_and_expiry(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("dev");
    ensure!(s.devices(&t, "u").await?.is_empty());
    s.device_seen(&t, "u", "phone", 1000).await?;
    s.device_seen(&t, "u", "laptop", 2000).await?;
    s.device_seen(&t, "w", "tablet", 500).await?;
    s.device_seen(&t, "w", "edge", 2500).await?;
    ensure!(
        s.devices(&t, "u").await? == vec![("laptop".into(), 2000), ("phone".into(), 1000)],
        "sorted by device"
    );
    s.device_seen(&t, "u", "phone", 3000).await?;
    ensure!(
        s.devices(&t, "u").await? == vec![("laptop".into(), 2000), ("phone".into(), 3000)],
        "last seen updated"
    );
    for (u, d) in [
        ("u", "phone"),
        ("u", "laptop"),
        ("w", "tablet"),
        ("w", "edge"),
    ] {
        s.push_enqueue(&t, u, &[d.into()], &push(1), 1000).await?;
    }
    let n = s.expire_devices(&t, 2500).await?;
    ensure!(
        n == 2,
        "laptop (2000) and tablet (500) expire, edge (2500) is not before 2500: {n}"
    );
    ensure!(s.devices(&t, "u").await? == vec![("phone".into(), 3000)]);
    ensure!(s.devices(&t, "w").await? == vec![("edge".into(), 2500)]);
    ensure!(
        s.push_pending(&t, "u", "laptop").await?.is_empty(),
        "expired queue removed"
    );
    ensure!(s.push_pending(&t, "w", "tablet").await?.is_empty());
    ensure!(
        seqs(&s.push_pending(&t, "u", "phone").await?) == vec![1],
        "live queue kept"
    );
    ensure!(seqs(&s.push_pending(&t, "w", "edge").await?) == vec![1]);
    ensure!(s.expire_devices(&t, 2500).await? == 0);
    ensure!(s.expire_devices(&unique("dev-none"), u64::MAX).await? == 0);
    Ok(())
}

async fn plugins_and_wasm(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("plug");
    ensure!(s.list_plugins(&t).await?.is_empty());
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    s.put_plugin(&t, &plugin("b", 1), b"b1").await?;
    s.put_plugin(&t, &plugin("a", 2), &big).await?;
    s.put_plugin(&t, &plugin("a", 1), b"\0asm\x01\0\0\0")
        .await?;
    ensure!(
        s.list_plugins(&t).await? == vec![plugin("a", 1), plugin("a", 2), plugin("b", 1)],
        "sorted by name, version"
    );
    ensure!(
        s.get_plugin_wasm(&t, "a", 2).await?.as_deref() == Some(&big[..]),
        "1 MB component round-trips"
    );
    ensure!(s.get_plugin_wasm(&t, "a", 1).await?.as_deref() == Some(&b"\0asm\x01\0\0\0"[..]));
    ensure!(s.get_plugin_wasm(&t, "a", 3).await?.is_none());
    ensure!(
        s.get_plugin_wasm(&unique("plug-other"), "a", 1)
            .await?
            .is_none()
    );
    let mut again = plugin("b", 1);
    again.hash = "new".into();
    s.put_plugin(&t, &again, b"b1-new").await?;
    ensure!(
        s.list_plugins(&t)
            .await?
            .iter()
            .filter(|p| p.name == "b")
            .cloned()
            .collect::<Vec<_>>()
            == vec![again]
    );
    ensure!(s.get_plugin_wasm(&t, "b", 1).await?.as_deref() == Some(&b"b1-new"[..]));
    ensure!(s.delete_plugin(&t, "a").await?);
    ensure!(!s.delete_plugin(&t, "a").await?);
    ensure!(
        s.list_plugins(&t)
            .await?
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            == vec!["b"]
    );
    ensure!(
        s.get_plugin_wasm(&t, "a", 1).await?.is_none()
            && s.get_plugin_wasm(&t, "a", 2).await?.is_none()
    );
    Ok(())
}

async fn chains(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("chain");
    ensure!(s.get_chain(&t).await? == PluginChainRecord::default());
    let c = PluginChainRecord {
        entries: vec![
            ChainEntry {
                name: "auth".into(),
                version: 3,
            },
            ChainEntry {
                name: "filter".into(),
                version: 1,
            },
        ],
        revision: 4,
    };
    s.put_chain(&t, &c).await?;
    ensure!(s.get_chain(&t).await? == c);
    let c2 = PluginChainRecord {
        entries: vec![],
        revision: 5,
    };
    s.put_chain(&t, &c2).await?;
    ensure!(s.get_chain(&t).await? == c2);
    ensure!(s.get_chain(&unique("chain")).await? == PluginChainRecord::default());
    Ok(())
}

async fn kv_basics(s: Arc<dyn Store>) -> Result<()> {
    let (t, t2) = (unique("kv"), unique("kv2"));
    ensure!(s.kv_get(&t, "k").await?.is_none());
    s.kv_set(&t, "k", b"v1", 0).await?;
    ensure!(s.kv_get(&t, "k").await?.as_deref() == Some(&b"v1"[..]));
    s.kv_set(&t, "k", b"\0\xffbin", 0).await?;
    ensure!(
        s.kv_get(&t, "k").await?.as_deref() == Some(&b"\0\xffbin"[..]),
        "binary values"
    );
    s.kv_set(&t, "empty", b"", 0).await?;
    ensure!(
        s.kv_get(&t, "empty").await?.as_deref() == Some(&b""[..]),
        "empty value is not missing"
    );
    ensure!(s.kv_get(&t2, "k").await?.is_none(), "kv is per tenant");
    ensure!(
        s.kv_incr(&t, "n", 5, 0).await? == 5,
        "missing counts from 0"
    );
    ensure!(s.kv_incr(&t, "n", 2, 0).await? == 7);
    ensure!(s.kv_incr(&t, "n", -10, 0).await? == -3);
    ensure!(
        s.kv_get(&t, "n").await?.as_deref() == Some(&b"-3"[..]),
        "counters read back as decimal text"
    );
    s.kv_set(&t, "n", b"40", 0).await?;
    ensure!(
        s.kv_incr(&t, "n", 2, 0).await? == 42,
        "kv_set numbers can be incremented"
    );
    s.kv_set(&t, "text", b"abc", 0).await?;
    ensure!(
        s.kv_incr(&t, "text", 1, 0).await? == 1,
        "a non-number counts as 0"
    );
    Ok(())
}

async fn kv_ttl(s: Arc<dyn Store>) -> Result<()> {
    // TTLs long enough that a loaded machine still reads each key before it
    // expires; every "still there" check follows its write directly.
    const TTL: u64 = 1000;
    let t = unique("ttl");
    s.kv_set(&t, "short", b"x", TTL).await?;
    ensure!(s.kv_get(&t, "short").await?.as_deref() == Some(&b"x"[..]));
    ensure!(s.kv_incr(&t, "ctr", 1, TTL).await? == 1);
    ensure!(
        s.kv_incr(&t, "ctr", 1, TTL).await? == 2,
        "incr within the TTL counts on"
    );
    s.kv_set(&t, "cleared", b"x", TTL).await?;
    s.kv_set(&t, "cleared", b"y", 0).await?;
    s.kv_set(&t, "long", b"x", 600_000).await?;
    s.kv_incr(&t, "plain", 1, 0).await?;
    ensure!(
        s.kv_incr(&t, "plain", 1, TTL).await? == 2,
        "existing key: no TTL added"
    );
    tokio::time::sleep(Duration::from_millis(TTL + 500)).await;
    ensure!(s.kv_get(&t, "short").await?.is_none(), "expired");
    ensure!(
        s.kv_get(&t, "ctr").await?.is_none(),
        "the counter kept its first TTL and expired"
    );
    ensure!(
        s.kv_get(&t, "cleared").await?.as_deref() == Some(&b"y"[..]),
        "set without TTL clears it"
    );
    ensure!(s.kv_get(&t, "long").await?.is_some());
    ensure!(s.kv_get(&t, "plain").await?.as_deref() == Some(&b"2"[..]));
    ensure!(
        s.kv_incr(&t, "ctr", 1, 0).await? == 1,
        "an expired counter starts again"
    );
    Ok(())
}

async fn concurrent_room_writes(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("conc");
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let tasks: Vec<_> = (0..TASKS)
        .map(|k| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..EACH {
                    let text = format!("t{k}-{i}");
                    let ack = s
                        .room_write(&t, "hot", insert(&format!("u{k}"), i, &text), 10_000)
                        .await?;
                    acked.push((ack.seq, text));
                    // Some traffic on other rooms too.
                    s.room_write(&t, &format!("side{k}"), insert("x", i, "side"), 10_000)
                        .await?;
                }
                Ok::<_, anyhow::Error>(acked)
            })
        })
        .collect();
    let mut by_seq = BTreeMap::new();
    for task in tasks {
        for (seq, text) in task.await?? {
            ensure!(by_seq.insert(seq, text).is_none(), "seq {seq} acked twice");
        }
    }
    ensure!(
        by_seq.keys().copied().eq(0..TASKS * EACH),
        "seqs are 0..{} without gaps",
        TASKS * EACH
    );
    let all = read_all(&*s, &t, "hot", 7).await?;
    ensure!(
        all.len() as u64 == TASKS * EACH,
        "read {} of {}",
        all.len(),
        TASKS * EACH
    );
    for (seq, e) in &all {
        let want = by_seq
            .get(seq)
            .ok_or_else(|| anyhow!("unacked seq {seq}"))?;
        ensure!(
            e.msg.contains(&format!("\"{want}\"")),
            "seq {seq} holds {:?}, acked {want}",
            e.msg
        );
    }
    // Each writer's messages are in its own order.
    for k in 0..TASKS {
        let mine: Vec<u64> = all
            .iter()
            .filter(|(_, e)| e.uid == format!("u{k}"))
            .map(|(_, e)| e.ts)
            .collect();
        ensure!(
            mine == (0..EACH).collect::<Vec<_>>(),
            "task {k} order: {mine:?}"
        );
    }
    for k in 0..TASKS {
        ensure!(
            s.room_read(&t, &format!("side{k}"), PageRequest::count(0, 1000))
                .await?
                .inserts
                .len() as u64
                == EACH
        );
    }
    Ok(())
}

/// A reader paging from offset 0 while writers insert: a page that says
/// more remain always serves something and advances (else a client that
/// pages as the contract says spins), and the reader ends with every insert
/// exactly once, in seq order.
async fn paging_while_writers_insert(s: Arc<dyn Store>) -> Result<()> {
    const WRITERS: u64 = 4;
    const EACH: u64 = 40;
    let t = unique("pgw");
    let writers: Vec<_> = (0..WRITERS)
        .map(|k| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    s.room_write(&t, "r", insert(&format!("w{k}"), i, "x"), 100_000)
                        .await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    let (mut seen, mut offset, mut reads, mut empty_more) = (Vec::new(), 0u64, 0u64, 0u64);
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let page = s.room_read(&t, "r", PageRequest::count(offset, 3)).await?;
        reads += 1;
        if page.more && (page.inserts.is_empty() || page.next_offset <= offset) {
            empty_more += 1;
        }
        seen.extend(page.inserts.iter().map(|(seq, _)| *seq));
        offset = page.next_offset;
        if done && !page.more {
            break;
        }
        ensure!(reads < 100_000, "the reader never reached the end");
    }
    for w in writers {
        w.await??;
    }
    ensure!(
        empty_more == 0,
        "{empty_more} of {reads} pages said more remain without serving anything"
    );
    ensure!(
        seen == (0..WRITERS * EACH).collect::<Vec<_>>(),
        "every insert once, in order: {seen:?}"
    );
    Ok(())
}

/// Pages bounded in bytes: inserts stop at the bound (a page always holds
/// at least one, however large), and so do update values, which continue
/// after the last one served: every value once, in msgId order.
async fn pages_bounded_in_bytes(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("bytes");
    let big = "x".repeat(3000);
    for i in 0..5u64 {
        s.room_write(&t, "r", insert("a", i, &format!("{i}{big}")), 100)
            .await?;
    }
    for m in ["m1", "m2", "m3", "m4", "m5"] {
        s.room_write(&t, "r", update(m, &format!("{m}{big}")), 100)
            .await?;
    }
    // Each entry is a little over 3000 bytes: two fit in 7000.
    let (mut offset, mut inserts, mut pages) = (0, Vec::new(), 0);
    loop {
        let p = s
            .room_read(&t, "r", PageRequest::count(offset, 100).bytes(7000))
            .await?;
        pages += 1;
        ensure!(
            !p.inserts.is_empty() || !p.more,
            "an insert page that says more serves one: {p:?}"
        );
        ensure!(
            p.inserts.len() <= 2,
            "at most two entries of ~3 KB in 7000 bytes: {}",
            p.inserts.len()
        );
        inserts.extend(p.inserts.iter().map(|(seq, _)| *seq));
        offset = p.next_offset;
        if !p.more {
            break;
        }
        ensure!(pages < 100, "never ended");
    }
    ensure!(
        inserts == vec![0, 1, 2, 3, 4],
        "inserts once, in order: {inserts:?}"
    );
    // One byte: still one message per page.
    let one = s
        .room_read(&t, "r", PageRequest::count(0, 100).bytes(1))
        .await?;
    ensure!(one.inserts.len() == 1 && one.more, "{one:?}");

    // Update values, from the end of the log, two per page.
    let (mut after, mut values, mut pages) = (None, Vec::new(), 0);
    loop {
        let p = s
            .room_read(
                &t,
                "r",
                PageRequest::count(5, 100)
                    .bytes(7000)
                    .updates_after(after.clone()),
            )
            .await?;
        pages += 1;
        ensure!(
            !p.more && p.next_offset == 5,
            "the insert log stays exhausted: {p:?}"
        );
        ensure!(
            p.updates.len() <= 2,
            "{} update values in 7000 bytes",
            p.updates.len()
        );
        values.extend(p.updates.iter().map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.msg).unwrap_or_default();
            v["text"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(2)
                .collect::<String>()
        }));
        if !p.updates_more {
            break;
        }
        ensure!(
            p.updates_last.is_some(),
            "a page that stops inside the values says where"
        );
        after = p.updates_last;
        ensure!(pages < 100, "never ended");
    }
    ensure!(
        values == ["m1", "m2", "m3", "m4", "m5"],
        "every value once, in msgId order: {values:?}"
    );
    ensure!(pages == 3, "5 values two by two: {pages} pages");

    // A page that ends the inserts with its bytes spent leaves the values
    // for the next page (they start from the first).
    let p = s
        .room_read(&t, "r", PageRequest::count(4, 100).bytes(3100))
        .await?;
    ensure!(
        p.inserts.len() == 1
            && !p.more
            && p.updates.is_empty()
            && p.updates_more
            && p.updates_last.is_none(),
        "{p:?}"
    );
    // Count bounds the values too.
    let p = s.room_read(&t, "r", PageRequest::count(5, 2)).await?;
    ensure!(p.updates.len() == 2 && p.updates_more, "{p:?}");
    // Unbounded: everything at once, as before.
    let p = s.room_read(&t, "r", PageRequest::count(0, 100)).await?;
    ensure!(
        p.inserts.len() == 5 && p.updates.len() == 5 && !p.updates_more,
        "{p:?}"
    );
    Ok(())
}

/// Tenant records change by compare-and-set of their version: a writer
/// holding an older copy cannot overwrite a newer record, a create cannot
/// overwrite an existing one, and racing writers of one version: one wins.
async fn tenant_compare_and_set(s: Arc<dyn Store>) -> Result<()> {
    let name = unique("cas");
    let mut rec = tenant_rec(&name);
    ensure!(s.swap_tenant(&rec, None).await?, "create when missing");
    ensure!(
        !s.swap_tenant(&rec, None).await?,
        "a second create is refused"
    );
    ensure!(
        !s.swap_tenant(&rec, Some(7)).await?,
        "a wrong version is refused"
    );
    let v1 = rec.version;
    rec.version = v1 + 1;
    rec.config.kickout = false;
    ensure!(
        s.swap_tenant(&rec, Some(v1)).await?,
        "the current version wins"
    );
    let stale = TenantRecord {
        version: v1 + 1,
        ..tenant_rec(&name)
    };
    ensure!(
        !s.swap_tenant(&stale, Some(v1)).await?,
        "an older copy is refused"
    );
    let got = s.get_tenant(&name).await?.ok_or_else(|| anyhow!("gone"))?;
    ensure!(got.version == v1 + 1 && !got.config.kickout, "{got:?}");
    // Racing writers from the same version: exactly one lands.
    let tasks: Vec<_> = (0..8u32)
        .map(|k| {
            let (s, mut r) = (s.clone(), got.clone());
            tokio::spawn(async move {
                r.version += 1;
                r.config.max_rooms_per_socket = k as usize;
                s.swap_tenant(&r, Some(got_version(&r))).await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await??);
    }
    ensure!(wins == 1, "{wins} of 8 racing writers landed");
    ensure!(
        !s.swap_tenant(&tenant_rec(&unique("cas-missing")), Some(1))
            .await?,
        "a change of a missing tenant is refused"
    );
    Ok(())
}

/// The version a change of `r` (already raised by one) was made from.
fn got_version(r: &TenantRecord) -> u64 {
    r.version - 1
}

/// A deleted plugin's keys go with it (by prefix, and only those); expired
/// keys are purged where the backend does not expire them itself, and live
/// ones stay.
async fn kv_prefix_delete_and_purge(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("kvp");
    let other = unique("kvp-other");
    for k in [
        "filter/a",
        "filter/b",
        "filter/\u{10FFFF}x",
        "filter2/a",
        "filte/a",
    ] {
        s.kv_set(&t, k, b"1", 0).await?;
    }
    s.kv_set(&other, "filter/a", b"1", 0).await?;
    let n = s.kv_delete_prefix(&t, "filter/").await?;
    ensure!(n == 3, "three keys of filter/ deleted, got {n}");
    for k in ["filter/a", "filter/b", "filter/\u{10FFFF}x"] {
        ensure!(s.kv_get(&t, k).await?.is_none(), "{k} deleted");
    }
    for k in ["filter2/a", "filte/a"] {
        ensure!(s.kv_get(&t, k).await?.is_some(), "{k} kept");
    }
    ensure!(
        s.kv_get(&other, "filter/a").await?.is_some(),
        "other tenant kept"
    );

    s.kv_set(&t, "gone", b"x", 50).await?;
    s.kv_set(&t, "stays", b"x", 600_000).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let purged = s.kv_purge_expired(hookwire::clock::now_ms()).await?;
    // Redis expires keys itself; the others must have removed at least ours.
    ensure!(s.kind() == "redis" || purged >= 1, "purged {purged} keys");
    ensure!(s.kv_get(&t, "gone").await?.is_none(), "expired key gone");
    ensure!(s.kv_get(&t, "stays").await?.is_some(), "live key kept");
    ensure!(
        s.kv_get(&t, "filte/a").await?.is_some(),
        "key without TTL kept"
    );
    // Purging again finds nothing of this tenant left to purge.
    s.kv_purge_expired(hookwire::clock::now_ms()).await?;
    ensure!(s.kv_get(&t, "stays").await?.is_some());
    Ok(())
}

/// A device queue keeps the newest `max_queue` entries; other devices and
/// users are not touched.
async fn push_queue_cap(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("cap");
    for seq in 1..=10 {
        s.push_enqueue(&t, "u", &["a".into(), "b".into()], &push(seq), 4)
            .await?;
    }
    s.push_enqueue(&t, "v", &["a".into()], &push(11), 4).await?;
    ensure!(seqs(&s.push_pending(&t, "u", "a").await?) == vec![7, 8, 9, 10]);
    ensure!(seqs(&s.push_pending(&t, "u", "b").await?) == vec![7, 8, 9, 10]);
    ensure!(seqs(&s.push_pending(&t, "v", "a").await?) == vec![11]);
    Ok(())
}

async fn concurrent_kv_incr(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("ctr");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    s.kv_incr(&t, "hits", 1, 0).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    ensure!(
        s.kv_get(&t, "hits").await?.as_deref() == Some(&b"100"[..]),
        "no lost increments"
    );
    Ok(())
}

// ---------------------------------------------------------------- outages

/// Losing the server: calls fail with `Unavailable` (not `Backend`), the
/// store recovers by itself once the server is back, and every write that was
/// acknowledged before or during the outage is still there exactly once.
async fn survives_restart(proc: &mut ServiceProc, store: Arc<dyn Store>) -> Result<()> {
    let t = unique("outage");
    let writer = {
        let (s, t) = (store.clone(), t.clone());
        tokio::spawn(async move {
            let (mut acked, mut unavailable) = (Vec::new(), 0);
            for i in 0..400u64 {
                match s
                    .room_write(&t, "r", insert("w", i, &format!("w{i}")), 100_000)
                    .await
                {
                    Ok(ack) => acked.push((ack.seq, format!("w{i}"))),
                    Err(StoreError::Unavailable(_)) => unavailable += 1,
                    Err(e) => return Err(anyhow!("write {i}: expected Unavailable, got {e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, anyhow::Error>((acked, unavailable))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| proc.kill9())?;
    match store.ping().await {
        Err(StoreError::Unavailable(_)) => {}
        other => return Err(anyhow!("ping while down: {other:?}")),
    }
    match store.kv_set(&t, "k", b"v", 0).await {
        Err(StoreError::Unavailable(_)) => {}
        other => return Err(anyhow!("write while down: {other:?}")),
    }
    // Long enough for the clients' reconnect backoff to give up once, so
    // recovery after a longer outage is covered too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| proc.restart())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.ping().await.is_err() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "store did not recover after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (acked, unavailable) = writer.await??;
    ensure!(!acked.is_empty(), "some writes were acknowledged");
    let all = read_all(&*store, &t, "r", 50).await?;
    for (seq, text) in &acked {
        let found: Vec<_> = all
            .iter()
            .filter(|(_, e)| e.msg.contains(&format!("\"{text}\"")))
            .collect();
        ensure!(
            found.len() == 1,
            "acked {text} (seq {seq}) stored {} times",
            found.len()
        );
        ensure!(
            found[0].0 == *seq,
            "acked {text} at seq {seq}, stored at {}",
            found[0].0
        );
    }
    let ack = store
        .room_write(&t, "r", insert("w", 999, "after"), 100_000)
        .await?;
    ensure!(
        all.iter().all(|(s, _)| *s < ack.seq),
        "seqs continue after the restart"
    );
    eprintln!(
        "outage: {} writes acknowledged, {unavailable} refused as unavailable",
        acked.len()
    );
    Ok(())
}

mod outage {
    use super::*;

    /// Nothing listening: `connect` fails with `Unavailable`, quickly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_to_nothing_is_unavailable() -> Result<()> {
        let port = hookwire_tests::procs::free_port()?;
        let started = std::time::Instant::now();
        match hookwire::store::redis::RedisStore::connect(&format!("redis://127.0.0.1:{port}"))
            .await
        {
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => return Err(anyhow!("redis: expected Unavailable, got {e:?}")),
            Ok(_) => return Err(anyhow!("redis: connected to nothing")),
        }
        let url = format!("mongodb://127.0.0.1:{port}/x?directConnection=true");
        match hookwire::store::mongo::MongoStore::connect(&url).await {
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => return Err(anyhow!("mongo: expected Unavailable, got {e:?}")),
            Ok(_) => return Err(anyhow!("mongo: connected to nothing")),
        }
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_kill9_and_restart() -> Result<()> {
        let mut proc = tokio::task::spawn_blocking(ServiceProc::redis).await??;
        let store = Arc::new(hookwire::store::redis::RedisStore::connect(&proc.url()).await?);
        survives_restart(&mut proc, store).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mongo_kill9_and_restart() -> Result<()> {
        let mut proc = tokio::task::spawn_blocking(ServiceProc::secantus).await??;
        let store =
            Arc::new(hookwire::store::mongo::MongoStore::connect(&proc.mongo_url("outage")).await?);
        survives_restart(&mut proc, store).await
    }
}

// ---------------------------------------------------------------- wiring

/// Ids that start with the last Unicode scalar (U+10FFFF) are ids like any
/// other: listed, cleared with their room, and deleted with their tenant,
/// so a re-created tenant of the same name starts empty.
async fn ids_at_the_top_of_unicode(s: Arc<dyn Store>) -> Result<()> {
    let t = unique("top");
    let top = |x: &str| format!("\u{10FFFF}{x}");
    let (uid, room, msg_id, dev, key, plug) =
        (top("u"), top("r"), top("m"), top("d"), top("k"), top("p"));
    s.put_tenant(&tenant_rec(&t)).await?;
    s.put_user(
        &t,
        &UserRecord {
            uid: uid.clone(),
            token_hash: "h".into(),
            created_ms: 1,
        },
    )
    .await?;
    s.room_write(&t, &room, insert(&uid, 1, "hi"), 100).await?;
    s.room_write(&t, &room, update(&msg_id, "edited"), 100)
        .await?;
    let seq = s.push_next_seq(&t).await?;
    s.push_enqueue(&t, &uid, std::slice::from_ref(&dev), &push(seq), 1000)
        .await?;
    s.device_seen(&t, &uid, &dev, 1000).await?;
    s.put_plugin(&t, &plugin(&plug, 1), b"\0asm").await?;
    s.kv_set(&t, &key, b"v", 0).await?;

    // positive control: all of it is there and listed
    ensure!(s.get_user(&t, &uid).await?.is_some());
    let p = s.room_read(&t, &room, PageRequest::count(0, 100)).await?;
    ensure!(p.inserts.len() == 1 && p.updates.len() == 1, "room: {p:?}");
    ensure!(s.devices(&t, &uid).await? == vec![(dev.clone(), 1000)]);
    ensure!(s.list_plugins(&t).await?.len() == 1, "plugin listed");
    ensure!(seqs(&s.push_pending(&t, &uid, &dev).await?) == vec![seq]);

    // a clear takes the room's updates too
    s.room_clear(&t, &room).await?;
    let p = s.room_read(&t, &room, PageRequest::count(0, 100)).await?;
    ensure!(
        p.inserts.is_empty() && p.updates.is_empty(),
        "cleared: {p:?}"
    );
    s.room_write(&t, &room, update(&msg_id, "again"), 100)
        .await?;

    ensure!(s.delete_tenant(&t).await?);
    s.put_tenant(&tenant_rec(&t)).await?;
    ensure!(s.get_user(&t, &uid).await?.is_none(), "user gone");
    let p = s.room_read(&t, &room, PageRequest::count(0, 100)).await?;
    ensure!(
        p.inserts.is_empty() && p.updates.is_empty(),
        "room gone: {p:?}"
    );
    ensure!(
        s.push_pending(&t, &uid, &dev).await?.is_empty(),
        "queue gone"
    );
    ensure!(s.devices(&t, &uid).await?.is_empty(), "device gone");
    ensure!(s.list_plugins(&t).await?.is_empty(), "plugin gone");
    ensure!(
        s.get_plugin_wasm(&t, &plug, 1).await?.is_none(),
        "wasm gone"
    );
    ensure!(s.kv_get(&t, &key).await?.is_none(), "kv gone");
    Ok(())
}

macro_rules! behaviour_tests {
    ($make:ident; $($b:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $b() -> Result<()> {
                let h = super::$make().await?;
                super::$b(h.store.clone()).await
            }
        )*
    };
}

/// Every behaviour against one backend, as `<backend>::<behaviour>`.
macro_rules! backend_tests {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            behaviour_tests!($backend;
                ping_kind_flush,
                meta,
                tenants_crud,
                delete_tenant_removes_only_its_data,
                ids_at_the_top_of_unicode,
                users,
                room_insert_and_read,
                room_paging,
                room_updates,
                room_trimming,
                room_clear_and_epoch,
                numeric_and_odd_ids,
                push_seq_monotonic,
                push_enqueue_and_pending,
                push_ack_semantics,
                push_move_queues,
                devices_and_expiry,
                plugins_and_wasm,
                chains,
                kv_basics,
                kv_ttl,
                concurrent_room_writes,
                paging_while_writers_insert,
                pages_bounded_in_bytes,
                tenant_compare_and_set,
                kv_prefix_delete_and_purge,
                push_queue_cap,
                concurrent_kv_incr,
            );
        }
    };
}

backend_tests!(embedded);
backend_tests!(redis);
backend_tests!(mongo);
