//! Cluster-wide presence: a mirror, in Redis, of every node's local
//! [`Presence`](crate::protocol::Presence), so `remote_join`, kickout,
//! `room_users` and `stat` see the users of all nodes.
//!
//! Layout (keys of tenant `T` under `hw:{T}:`, the one scheme of
//! `store::redis_keys`; a field is `{node}|{sid}`):
//! - `presence:room:R` hash field → uid: visible members of a room;
//! - `presence:user:U` hash field → "": authenticated sockets of a uid;
//! - `presence:rooms`, `presence:users` sets: rooms with members, online uids;
//! - `presence:conns` hash node → connections of that node;
//! - `hw:node:N` set: what a node wrote, so it can be swept;
//! - `hw:nodes` sorted set node → last heartbeat (ms).
//!
//! Each node writes only its own fields, in order, through one queue
//! (pipelined: one round trip per batch). A node whose heartbeat is older
//! than [`NODE_EXPIRY`] is swept by whichever node notices first, so a
//! node killed with -9 leaves no ghosts behind. When Redis was away or lost
//! its data, the node writes its whole local state again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Script;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::hub::RedisHub;
use crate::clock::now_ms;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node silent this long is considered dead and its presence swept.
pub const NODE_EXPIRY: Duration = Duration::from_secs(10);
/// A presence query that Redis does not answer in this time is answered
/// from this node's own view.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

use crate::store::redis_keys::{
    NODES_KEY, node_index as index_key, presence_conns as conns_key, presence_room as room_key,
    presence_rooms as rooms_key, presence_user as user_key, presence_users as users_key,
};

/// Adds a field; answers the hash's values from before (who was there).
const ADD: &str = r"
local before = redis.call('HVALS', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('SADD', KEYS[2], ARGV[3]) end
redis.call('SADD', KEYS[3], ARGV[4])
return before
";

/// Removes a field; the set member goes with the hash's last field.
const REMOVE: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
if ARGV[3] ~= '' then redis.call('SREM', KEYS[3], ARGV[3]) end
return 1
";

/// Removes every field a node wrote (ARGV[1] = node).
const SWEEP: &str = r"
local prefix = ARGV[1] .. '|'
local entries = redis.call('SMEMBERS', KEYS[1])
for _, e in ipairs(entries) do
  local x = cjson.decode(e)
  for _, f in ipairs(redis.call('HKEYS', x.h)) do
    if f == ARGV[1] or string.sub(f, 1, #prefix) == prefix then
      redis.call('HDEL', x.h, f)
    end
  end
  if x.s and redis.call('HLEN', x.h) == 0 then redis.call('SREM', x.s, x.m) end
end
redis.call('DEL', KEYS[1])
return #entries
";

/// One entry written by this node.
#[derive(Debug, Clone)]
pub struct Entry {
    hash: String,
    /// Set and member that track "this hash is not empty"; none for conns.
    set: Option<(String, String)>,
    field: String,
    value: String,
}

impl Entry {
    /// The scripts take a set key either way; a conns entry names its own
    /// hash and no member, which they skip.
    fn set_and_member(&self) -> (&str, &str) {
        match &self.set {
            Some((s, m)) => (s, m),
            None => (&self.hash, ""),
        }
    }

    fn index(&self) -> String {
        match &self.set {
            Some((s, m)) => json!({ "h": self.hash, "s": s, "m": m }).to_string(),
            None => json!({ "h": self.hash }).to_string(),
        }
    }
}

enum Op {
    Add(Entry, Option<oneshot::Sender<Vec<String>>>),
    /// `last`: this node has no other field in the hash; unindex it.
    Remove(Entry, bool),
    /// Forget everything this node wrote, then write `entries`.
    Resync(Vec<Entry>),
    /// Shutdown: forget everything this node wrote and leave.
    Leave(oneshot::Sender<()>),
}

/// The Redis side of one node's presence.
pub struct PresenceMirror {
    hub: Arc<RedisHub>,
    pub node: String,
    tx: mpsc::UnboundedSender<Op>,
    /// A write failed: Redis misses something; resync at the next heartbeat.
    dirty: Arc<AtomicBool>,
}

impl PresenceMirror {
    pub fn new(hub: Arc<RedisHub>) -> PresenceMirror {
        let node = crate::auth::random_secret()[..16].to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let dirty = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer(hub.clone(), node.clone(), rx, dirty.clone()));
        PresenceMirror {
            hub,
            node,
            tx,
            dirty,
        }
    }

    fn field(&self, sid: &str) -> String {
        format!("{}|{sid}", self.node)
    }

    pub fn room_entry(&self, t: &str, room: &str, sid: &str, uid: &str) -> Entry {
        Entry {
            hash: room_key(t, room),
            set: Some((rooms_key(t), room.to_string())),
            field: self.field(sid),
            value: uid.to_string(),
        }
    }

    pub fn user_entry(&self, t: &str, uid: &str, sid: &str) -> Entry {
        Entry {
            hash: user_key(t, uid),
            set: Some((users_key(t), uid.to_string())),
            field: self.field(sid),
            value: String::new(),
        }
    }

    pub fn conns_entry(&self, t: &str, count: usize) -> Entry {
        Entry {
            hash: conns_key(t),
            set: None,
            field: self.node.clone(),
            value: count.to_string(),
        }
    }

    /// Queues a write (call it under the local presence lock, so Redis sees
    /// this node's changes in the order they happened).
    pub fn add(&self, e: Entry) {
        let _ = self.tx.send(Op::Add(e, None));
    }

    /// [`add`](Self::add), answering the hash's values from before.
    pub fn add_and_read(&self, e: Entry) -> oneshot::Receiver<Vec<String>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Op::Add(e, Some(tx)));
        rx
    }

    pub fn remove(&self, e: Entry, last: bool) {
        let _ = self.tx.send(Op::Remove(e, last));
    }

    /// Replaces everything this node wrote with `entries` (a snapshot taken
    /// under the local presence lock).
    pub fn resync(&self, entries: Vec<Entry>) {
        self.dirty.store(false, Ordering::Relaxed);
        let _ = self.tx.send(Op::Resync(entries));
    }

    /// Removes this node's presence (graceful shutdown).
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Leave(tx)).is_ok() {
            let _ = tokio::time::timeout(QUERY_TIMEOUT, rx).await;
        }
    }

    /// Distinct uids in a room on all nodes, sorted; `None` when Redis does
    /// not answer.
    pub async fn room_users(&self, t: &str, room: &str) -> Option<Vec<String>> {
        let mut conn = self.hub.conn();
        let cmd = redis::cmd("HVALS").arg(room_key(t, room)).clone();
        let q = cmd.query_async::<Vec<String>>(&mut conn);
        let mut v = tokio::time::timeout(QUERY_TIMEOUT, q).await.ok()?.ok()?;
        v.sort();
        v.dedup();
        Some(v)
    }

    /// Rooms with visible members on all nodes, as (room, distinct users,
    /// sockets), the first `limit` by name, and how many there are in all;
    /// `None` when Redis does not answer.
    pub async fn rooms(
        &self,
        t: &str,
        limit: usize,
    ) -> Option<(Vec<(String, usize, usize)>, usize)> {
        let mut conn = self.hub.conn();
        let list = redis::cmd("SMEMBERS").arg(rooms_key(t)).clone();
        let q = list.query_async::<Vec<String>>(&mut conn);
        let mut names = tokio::time::timeout(QUERY_TIMEOUT, q).await.ok()?.ok()?;
        let total = names.len();
        names.sort();
        names.truncate(limit);
        let mut pipe = redis::pipe();
        for r in &names {
            pipe.hvals(room_key(t, r));
        }
        let q = pipe.query_async::<Vec<Vec<String>>>(&mut conn);
        let members = tokio::time::timeout(QUERY_TIMEOUT, q).await.ok()?.ok()?;
        let rooms = names
            .into_iter()
            .zip(members)
            .map(|(r, mut uids)| {
                let sockets = uids.len();
                uids.sort();
                uids.dedup();
                (r, uids.len(), sockets)
            })
            .collect();
        Some((rooms, total))
    }

    /// Every node with a heartbeat in Redis as (node, last heartbeat in unix
    /// ms, connections of `tenants` it holds); `None` when Redis does not
    /// answer.
    pub async fn nodes(&self, tenants: &[String]) -> Option<Vec<(String, u64, usize)>> {
        let mut conn = self.hub.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(NODES_KEY)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        for t in tenants {
            pipe.hgetall(conns_key(t));
        }
        let q = pipe.query_async::<redis::Value>(&mut conn);
        let answer = tokio::time::timeout(QUERY_TIMEOUT, q).await.ok()?.ok()?;
        let redis::Value::Array(mut parts) = answer else {
            return None;
        };
        if parts.is_empty() {
            return None;
        }
        let beats: Vec<(String, f64)> = redis::from_redis_value(parts.remove(0)).ok()?;
        let mut conns: HashMap<String, usize> = HashMap::new();
        for part in parts {
            let per_node: HashMap<String, usize> = redis::from_redis_value(part).ok()?;
            for (node, n) in per_node {
                *conns.entry(node).or_default() += n;
            }
        }
        Some(
            beats
                .into_iter()
                .map(|(node, at)| {
                    let n = conns.get(&node).copied().unwrap_or(0);
                    (node, at as u64, n)
                })
                .collect(),
        )
    }

    /// (online users, rooms with visible members, connections) on all nodes.
    pub async fn stat(&self, t: &str) -> Option<(usize, usize, usize)> {
        let mut conn = self.hub.conn();
        let mut pipe = redis::pipe();
        pipe.scard(users_key(t))
            .scard(rooms_key(t))
            .hvals(conns_key(t));
        let q = pipe.query_async::<(usize, usize, Vec<usize>)>(&mut conn);
        let (users, rooms, conns) = tokio::time::timeout(QUERY_TIMEOUT, q).await.ok()?.ok()?;
        Some((users, rooms, conns.iter().sum()))
    }

    /// Heartbeat; sweeps dead nodes. Returns whether this node must write
    /// its whole state again (Redis was away, lost data, or swept us).
    pub async fn heartbeat(&self) -> bool {
        let mut conn = self.hub.conn();
        let now = now_ms();
        let cmd = redis::cmd("ZADD")
            .arg(NODES_KEY)
            .arg(now)
            .arg(&self.node)
            .clone();
        let beat = cmd.query_async::<i64>(&mut conn);
        let added = match tokio::time::timeout(QUERY_TIMEOUT, beat).await {
            Ok(Ok(n)) => n,
            _ => {
                self.dirty.store(true, Ordering::Relaxed);
                self.hub.set_up(false);
                return false;
            }
        };
        self.hub.set_up(true);
        let dead: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(NODES_KEY)
            .arg("-inf")
            .arg(now.saturating_sub(NODE_EXPIRY.as_millis() as u64))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for node in dead.iter().filter(|n| **n != self.node) {
            match sweep(&mut conn, node).await {
                Ok(n) => {
                    tracing::warn!(%node, entries = n, "swept the presence of a node that stopped answering")
                }
                Err(e) => tracing::warn!(%node, error = %e, "sweeping a dead node failed"),
            }
        }
        added == 1 || self.dirty.swap(false, Ordering::Relaxed)
    }
}

async fn sweep(conn: &mut redis::aio::ConnectionManager, node: &str) -> redis::RedisResult<i64> {
    let n = Script::new(SWEEP)
        .key(index_key(node))
        .arg(node)
        .invoke_async(conn)
        .await?;
    let _: i64 = redis::cmd("ZREM")
        .arg(NODES_KEY)
        .arg(node)
        .query_async(conn)
        .await?;
    Ok(n)
}

/// Applies this node's presence writes in order, a batch per round trip.
async fn writer(
    hub: Arc<RedisHub>,
    node: String,
    mut rx: mpsc::UnboundedReceiver<Op>,
    dirty: Arc<AtomicBool>,
) {
    let (add, remove, sweep_script) = (Script::new(ADD), Script::new(REMOVE), Script::new(SWEEP));
    let index = index_key(&node);
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut pipe = redis::pipe();
        // Scripts are loaded with the batch that uses them (a restarted
        // Redis has forgotten them), and only those.
        let uses = |f: fn(&Op) -> bool| batch.iter().any(f);
        if uses(|op| matches!(op, Op::Add(..) | Op::Resync(..))) {
            pipe.load_script(&add).ignore();
        }
        if uses(|op| matches!(op, Op::Remove(..))) {
            pipe.load_script(&remove).ignore();
        }
        if uses(|op| matches!(op, Op::Resync(..) | Op::Leave(..))) {
            pipe.load_script(&sweep_script).ignore();
        }
        let mut replies = Vec::new();
        let mut leaving = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Add(e, reply) => {
                    pipe.invoke_script(&add_invocation(&add, &e, &index));
                    replies.push(reply);
                }
                Op::Remove(e, last) => {
                    let mut inv = remove.prepare_invoke();
                    let (set, member) = e.set_and_member();
                    inv.key(&e.hash).key(set).key(&index);
                    inv.arg(&e.field)
                        .arg(member)
                        .arg(if last { e.index() } else { String::new() });
                    pipe.invoke_script(&inv).ignore();
                }
                Op::Resync(entries) => {
                    pipe.invoke_script(sweep_script.key(&index).arg(&node))
                        .ignore();
                    for e in entries {
                        pipe.invoke_script(&add_invocation(&add, &e, &index))
                            .ignore();
                    }
                }
                Op::Leave(done) => {
                    pipe.invoke_script(sweep_script.key(&index).arg(&node))
                        .ignore();
                    pipe.zrem(NODES_KEY, &node).ignore();
                    leaving.push(done);
                }
            }
        }
        let mut conn = hub.conn();
        match pipe.query_async::<Vec<Vec<String>>>(&mut conn).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    if let Some(tx) = reply {
                        let _ = tx.send(answer);
                    }
                }
            }
            Err(e) => {
                // The waiting callers answer from the local view; the next
                // heartbeat writes everything again.
                tracing::warn!(error = %e, "presence write to redis failed; will resync");
                dirty.store(true, Ordering::Relaxed);
            }
        }
        for done in leaving {
            let _ = done.send(());
        }
    }
}

fn add_invocation<'a>(add: &'a Script, e: &Entry, index: &str) -> redis::ScriptInvocation<'a> {
    let mut inv = add.prepare_invoke();
    let (set, member) = e.set_and_member();
    inv.key(&e.hash).key(set).key(index);
    inv.arg(&e.field).arg(&e.value).arg(member).arg(e.index());
    inv
}

/// Waits for an [`PresenceMirror::add_and_read`] answer, at most
/// `QUERY_TIMEOUT`.
pub async fn answer(rx: oneshot::Receiver<Vec<String>>) -> Option<Vec<String>> {
    tokio::time::timeout(QUERY_TIMEOUT, rx).await.ok()?.ok()
}
