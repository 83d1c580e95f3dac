//! The Redis store: every durable record in Redis, for clusters whose nodes
//! share one Redis (or one Redis Cluster).
//!
//! ## Key layout
//! Every per-tenant key carries the tenant as a hash tag, `hw:{T}:...`, so all
//! of a tenant's keys live on one Redis Cluster slot and every Lua script and
//! `MULTI` below touches a single slot. Variable parts (`T`, room `R`, user
//! `U`, device `D`, plugin `N`, kv key `K`) are percent-encoded (`%`, `:`,
//! `{`, `}` and the glob characters `*?[]\`), so `:` separates components
//! unambiguously and a tenant's `SCAN` pattern matches only its own keys.
//!
//! | key                     | type   | contents                                        |
//! |-------------------------|--------|-------------------------------------------------|
//! | `hw:meta`               | hash   | node-wide metadata                              |
//! | `hw:tenants`            | hash   | tenant name → `TenantRecord` JSON               |
//! | `hw:{T}:users`          | hash   | uid → `UserRecord` JSON                         |
//! | `hw:{T}:room:R:meta`    | hash   | `first`, `next`, `epoch`, `next_update`         |
//! | `hw:{T}:room:R:log`     | list   | kept inserts; index 0 is seq `first`            |
//! | `hw:{T}:room:R:upd`     | hash   | msgId → current `RoomEntry` JSON                |
//! | `hw:{T}:room:R:updlog`  | list   | every update, in order (history)                |
//! | `hw:{T}:pushseq`        | string | last push seq (`INCR`)                          |
//! | `hw:{T}:q:U:D`          | zset   | score = push seq, member = `PushEntry` JSON     |
//! | `hw:{T}:dev:U`          | hash   | device → last seen (unix ms)                    |
//! | `hw:{T}:devices`        | zset   | member `U:D` (encoded), score = last seen       |
//! | `hw:{T}:plugins`        | hash   | `N:version` → `PluginRecord` JSON               |
//! | `hw:{T}:wasm:N:version` | string | component bytes                                 |
//! | `hw:{T}:chain`          | string | `PluginChainRecord` JSON                        |
//! | `hw:{T}:kv:K`           | string | plugin kv value, with a Redis TTL (`PX`)        |
//!
//! Writes that must be atomic (room write with trimming, clear, push ack with
//! its oldest check, push move, kv incr with TTL on create, device expiry) are
//! Lua scripts; multi-key writes that only need all-or-nothing are `MULTI`
//! pipelines. Push seqs are zset scores (doubles): exact up to 2^53.
//!
//! ## What the Redis server must be configured with
//! - Durability: a write is acknowledged when Redis has applied it. For
//!   "acknowledged = durable" run `appendonly yes` with `appendfsync always`
//!   (every write is fsynced before the reply). `appendfsync everysec` loses up
//!   to about one second of acknowledged writes on a power loss or kernel
//!   crash (not on a crash of Redis alone). RDB snapshots alone lose
//!   everything since the last snapshot. [`RedisStore::flush`] issues
//!   `WAITAOF 1 0 0` on Redis >= 7.2 so a graceful shutdown waits for the AOF
//!   fsync even with `everysec`.
//! - `maxmemory-policy noeviction`: an evicting policy would silently drop
//!   room logs, queues and tenants.
//! - Replicas are asynchronous: a failover can lose acknowledged writes that
//!   had not reached the replica.
//!
//! ## Cluster caveats
//! `delete_tenant` `SCAN`s one connection: with Redis Cluster, point it at the
//! node owning the tenant's slot (all of a tenant's keys share it).
//! `hw:meta` and `hw:tenants` are global keys on their own slots.
//!
//! Connection failures map to [`StoreError::Unavailable`]; the
//! [`ConnectionManager`] reconnects in the background with exponential
//! backoff, so the next call after Redis comes back succeeds.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, Script};
use async_trait::async_trait;

use super::redis_keys::*;
use super::*;

/// Keys `UNLINK`ed per round trip by `delete_tenant`.
const DELETE_BATCH: usize = 500;
/// Candidates handed to one device-expiry script call.
const EXPIRE_BATCH: usize = 200;

/// Connection-level failures (Redis down, restarting, loading its dataset,
/// failing over) are `Unavailable`: callers answer 503 and retry later.
fn err(e: RedisError) -> StoreError {
    let transient_code = matches!(
        e.code(),
        Some("LOADING" | "BUSY" | "MASTERDOWN" | "READONLY" | "CLUSTERDOWN" | "TRYAGAIN")
    );
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.is_cluster_error()
        || transient_code
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// Room write: insert (with trimming) or update, plus the room counters, in
/// one step so concurrent writers from any node get unique, gap-free seqs.
/// KEYS: meta, log, upd, updlog. ARGV: kind (`i`/`u`), json, max_entries, msg_id.
const ROOM_WRITE: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'first', 'next', 'epoch')
local first = tonumber(m[1]) or 0
local nxt = tonumber(m[2]) or 0
local epoch = tonumber(m[3]) or 0
if ARGV[1] == 'i' then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  local seq = nxt
  nxt = nxt + 1
  local max = tonumber(ARGV[3])
  if max < 1 then max = 1 end
  local over = nxt - first - max
  if over > 0 then
    redis.call('LTRIM', KEYS[2], over, -1)
    first = first + over
  end
  redis.call('HSET', KEYS[1], 'first', first, 'next', nxt)
  return {seq, epoch}
end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[2])
redis.call('RPUSH', KEYS[4], ARGV[2])
-- The history keeps the last max_entries updates.
local umax = tonumber(ARGV[3])
if umax < 1 then umax = 1 end
redis.call('LTRIM', KEYS[4], -umax, -1)
redis.call('HINCRBY', KEYS[1], 'next_update', 1)
return {nxt, epoch}
"#;

/// One page of a room, read in one step so trimming cannot shift the list
/// between reading the counters and the entries.
/// KEYS: meta, log, upd. ARGV: offset, limit.
/// Returns {epoch, start, next_offset, next, entries, updates (HGETALL)}.
/// KEYS: tenants hash. ARGV: name, expected version ('' = must not
/// exist), record. Returns 1 when written.
const TENANT_SWAP: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if cur then return 0 end
else
  if not cur then return 0 end
  local v = cjson.decode(cur).version or 0
  if string.format('%d', v) ~= ARGV[2] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"#;

const ROOM_READ: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'first', 'next', 'epoch')
local first = tonumber(m[1]) or 0
local nxt = tonumber(m[2]) or 0
local epoch = tonumber(m[3]) or 0
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local max_bytes = tonumber(ARGV[3])
local has_after = ARGV[4] == '1'
local after = ARGV[5]
-- The page's bounds, as PageBudget counts them: at least one message.
local count, bytes = 0, 0
local function admit(n, len)
  if n >= limit then return false end
  if count > 0 and bytes + len > max_bytes then return false end
  count = count + 1
  bytes = bytes + len
  return true
end
local start = math.max(offset, first)
local items = {}
local pos = start
local full = limit <= 0
-- In small chunks, so a page of large entries never copies more than it sends.
while pos < nxt and not full do
  local a = pos - first
  local chunk = redis.call('LRANGE', KEYS[2], a, math.min(a + 15, nxt - first - 1))
  if #chunk == 0 then break end
  for _, v in ipairs(chunk) do
    if admit(#items, #v) then
      items[#items + 1] = v
      pos = pos + 1
    else
      full = true
      break
    end
  end
end
local next_offset
if #items > 0 then next_offset = start + #items else next_offset = math.min(start, nxt) end
local upd = {}
local upd_more = 0
local upd_last = ''
if next_offset >= nxt then
  local fields = redis.call('HKEYS', KEYS[3])
  table.sort(fields)
  for _, f in ipairs(fields) do
    if (not has_after) or f > after then
      if admit(#upd, redis.call('HSTRLEN', KEYS[3], f)) then
        upd[#upd + 1] = redis.call('HGET', KEYS[3], f)
        upd_last = f
      else
        upd_more = 1
        break
      end
    end
  end
end
return {epoch, start, next_offset, nxt, items, upd, upd_more, upd_last}
"#;

/// KEYS: meta, log, upd, updlog. Returns the new epoch.
const ROOM_CLEAR: &str = r#"
local e = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'first', 0, 'next', 0, 'next_update', 0)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return e
"#;

/// KEYS: queue. ARGV: acked seqs. Returns {removed, oldest seq before the
/// ack or ''}; the oldest is read in the same step as the removal.
const PUSH_ACK: &str = r#"
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i])
end
if #oldest == 0 then return {removed, ''} end
return {removed, oldest[2]}
"#;

/// KEYS: from, to. Moving a queue onto itself is a no-op.
const PUSH_MOVE: &str = r#"
if KEYS[1] == KEYS[2] then return 0 end
local items = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #items, 2 do
  redis.call('ZADD', KEYS[2], items[i + 1], items[i])
end
redis.call('DEL', KEYS[1])
return #items / 2
"#;

/// KEYS: devices zset, then (dev hash, queue) per candidate.
/// ARGV: before, then (zset member, raw device) per candidate.
/// Re-checks each candidate's score so a device seen since the scan stays.
const EXPIRE_DEVICES: &str = r#"
local n = 0
local before = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) < before then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[i], ARGV[i + 1])
    redis.call('DEL', KEYS[i + 1])
    n = n + 1
  end
end
return n
"#;

/// KEYS: the kv key. ARGV: delta, ttl_ms. A missing (or expired) key starts
/// at 0 and gets the TTL; an existing one keeps its TTL. A non-integer value
/// counts as 0, like the embedded store. Returns the value as a string
/// because Lua numbers are doubles.
const KV_INCR: &str = r#"
local ttl = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ttl > 0 then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
  else
    redis.call('SET', KEYS[1], ARGV[1])
  end
  return ARGV[1]
end
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
return redis.call('GET', KEYS[1])
"#;

pub struct RedisStore {
    conn: ConnectionManager,
    /// The connection's command queue is bounded: a write whose first poll
    /// finds it full waits, and a later write can take a slot freed
    /// meanwhile and reach Redis first.
    room_locks: super::RoomLocks,
    room_write: Script,
    room_read: Script,
    tenant_swap: Script,
    room_clear: Script,
    push_ack: Script,
    push_move: Script,
    expire_devices: Script,
    kv_incr: Script,
}

impl RedisStore {
    /// UNLINKs every key matching `pattern` (SCAN, in batches).
    async fn unlink_matching(&self, pattern: &str) -> StoreResult<u64> {
        let mut c = self.con();
        let mut n = 0;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .map_err(err)?;
            for chunk in keys.chunks(DELETE_BATCH) {
                n += ::redis::cmd("UNLINK")
                    .arg(chunk)
                    .query_async::<u64>(&mut c)
                    .await
                    .map_err(err)?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(n)
    }

    /// Connects to `url` (`redis://[user:pass@]host:port[/db]`, or `rediss://`
    /// when the redis crate is built with TLS). Fails with `Unavailable` when
    /// Redis cannot be reached now; later outages are retried in the
    /// background.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let client = ::redis::Client::open(url)
            .map_err(|e| StoreError::Backend(format!("bad redis url: {e}")))?;
        // Short timeouts so a dead Redis turns into a quick 503 rather than a
        // hung request; the backoff caps at one second between attempts.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        Ok(RedisStore {
            conn,
            room_locks: super::RoomLocks::new(),
            room_write: Script::new(ROOM_WRITE),
            room_read: Script::new(ROOM_READ),
            tenant_swap: Script::new(TENANT_SWAP),
            room_clear: Script::new(ROOM_CLEAR),
            push_ack: Script::new(PUSH_ACK),
            push_move: Script::new(PUSH_MOVE),
            expire_devices: Script::new(EXPIRE_DEVICES),
            kv_incr: Script::new(KV_INCR),
        })
    }

    /// A handle to the shared multiplexed connection (cheap clone).
    fn con(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn query<T: ::redis::FromRedisValue>(&self, cmd: &::redis::Cmd) -> StoreResult<T> {
        cmd.query_async(&mut self.con()).await.map_err(err)
    }

    async fn exec_atomic(&self, pipe: &::redis::Pipeline) -> StoreResult<()> {
        pipe.exec_async(&mut self.con()).await.map_err(err)
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> StoreResult<()> {
        let _: String = self.query(&::redis::cmd("PING")).await?;
        Ok(())
    }

    async fn flush(&self) -> StoreResult<()> {
        // WAITAOF (Redis >= 7.2) waits until the local AOF has fsynced every
        // write so far. Older servers, or AOF turned off, answer with an
        // error: then there is nothing more a client can force.
        let mut c = self.con();
        match ::redis::cmd("WAITAOF")
            .arg(1)
            .arg(0)
            .arg(0)
            .query_async::<::redis::Value>(&mut c)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match err(e) {
                StoreError::Unavailable(m) => Err(StoreError::Unavailable(m)),
                _ => self.ping().await,
            },
        }
    }

    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        self.query(::redis::cmd("HGET").arg(META_KEY).arg(key))
            .await
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.query::<()>(::redis::cmd("HSET").arg(META_KEY).arg(key).arg(value))
            .await
    }

    async fn put_tenant(&self, t: &TenantRecord) -> StoreResult<()> {
        self.query::<()>(
            ::redis::cmd("HSET")
                .arg(TENANTS_KEY)
                .arg(&t.name)
                .arg(to_json(t)),
        )
        .await
    }

    async fn swap_tenant(&self, t: &TenantRecord, expected: Option<u64>) -> StoreResult<bool> {
        let mut inv = self.tenant_swap.prepare_invoke();
        inv.key(TENANTS_KEY)
            .arg(&t.name)
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(to_json(t));
        let wrote: u8 = inv.invoke_async(&mut self.con()).await.map_err(err)?;
        Ok(wrote == 1)
    }

    async fn get_tenant(&self, name: &str) -> StoreResult<Option<TenantRecord>> {
        let v: Option<String> = self
            .query(::redis::cmd("HGET").arg(TENANTS_KEY).arg(name))
            .await?;
        v.map(|s| from_json(&s)).transpose()
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        let vals: Vec<String> = self.query(::redis::cmd("HVALS").arg(TENANTS_KEY)).await?;
        let mut out: Vec<TenantRecord> = vals
            .iter()
            .map(|s| from_json(s))
            .collect::<StoreResult<_>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_tenant(&self, name: &str) -> StoreResult<bool> {
        let removed: u64 = self
            .query(::redis::cmd("HDEL").arg(TENANTS_KEY).arg(name))
            .await?;
        // The encoded tenant has no glob characters, so this pattern matches
        // exactly this tenant's keys.
        self.unlink_matching(&format!("{}:*", tkey(name, &[])))
            .await?;
        Ok(removed > 0)
    }

    async fn kv_delete_prefix(&self, tenant: &str, prefix: &str) -> StoreResult<u64> {
        // `enc` escapes glob characters: the pattern matches the prefix only.
        self.unlink_matching(&format!("{}*", tkey(tenant, &["kv", &enc(prefix)])))
            .await
    }

    async fn kv_purge_expired(&self, _now_ms: u64) -> StoreResult<u64> {
        Ok(0) // Redis expires kv keys itself (PX)
    }

    async fn put_user(&self, tenant: &str, user: &UserRecord) -> StoreResult<()> {
        self.query::<()>(
            ::redis::cmd("HSET")
                .arg(tkey(tenant, &["users"]))
                .arg(&user.uid)
                .arg(to_json(user)),
        )
        .await
    }

    async fn get_user(&self, tenant: &str, uid: &str) -> StoreResult<Option<UserRecord>> {
        let v: Option<String> = self
            .query(::redis::cmd("HGET").arg(tkey(tenant, &["users"])).arg(uid))
            .await?;
        v.map(|s| from_json(&s)).transpose()
    }

    async fn room_write(
        &self,
        tenant: &str,
        room: &str,
        write: RoomWrite,
        max_entries: u64,
    ) -> StoreResult<RoomWriteAck> {
        let _in_order = self.room_locks.lock(tenant, room).await;
        let k = room_keys(tenant, room);
        let mut inv = self.room_write.prepare_invoke();
        inv.key(&k.meta).key(&k.log).key(&k.upd).key(&k.updlog);
        match &write {
            RoomWrite::Insert(entry) => inv.arg("i").arg(to_json(entry)).arg(max_entries).arg(""),
            RoomWrite::Update { msg_id, entry } => inv
                .arg("u")
                .arg(to_json(entry))
                .arg(max_entries)
                .arg(msg_id),
        };
        let (seq, epoch): (u64, u64) = inv.invoke_async(&mut self.con()).await.map_err(err)?;
        Ok(RoomWriteAck { seq, epoch })
    }

    async fn room_read(&self, tenant: &str, room: &str, req: PageRequest) -> StoreResult<RoomPage> {
        let k = room_keys(tenant, room);
        let mut inv = self.room_read.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.log)
            .key(&k.upd)
            .arg(req.offset)
            .arg(req.max_count)
            .arg(req.max_bytes.min(i64::MAX as usize))
            .arg(u8::from(req.updates_after.is_some()))
            .arg(req.updates_after.as_deref().unwrap_or(""));
        type Reply = (u64, u64, u64, u64, Vec<String>, Vec<String>, u8, String);
        let (epoch, start, next_offset, next, items, upd, upd_more, upd_last): Reply =
            inv.invoke_async(&mut self.con()).await.map_err(err)?;
        let inserts = items
            .iter()
            .enumerate()
            .map(|(i, s)| Ok((start + i as u64, from_json(s)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let updates = upd
            .iter()
            .map(|v| from_json(v))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(RoomPage {
            updates_last: (!updates.is_empty()).then_some(upd_last),
            inserts,
            updates,
            next_offset,
            more: next_offset < next,
            updates_more: upd_more == 1,
            epoch,
        })
    }

    async fn room_clear(&self, tenant: &str, room: &str) -> StoreResult<u64> {
        let k = room_keys(tenant, room);
        let mut inv = self.room_clear.prepare_invoke();
        inv.key(&k.meta).key(&k.log).key(&k.upd).key(&k.updlog);
        inv.invoke_async(&mut self.con()).await.map_err(err)
    }

    async fn room_epoch(&self, tenant: &str, room: &str) -> StoreResult<u64> {
        let v: Option<u64> = self
            .query(
                ::redis::cmd("HGET")
                    .arg(room_keys(tenant, room).meta)
                    .arg("epoch"),
            )
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn push_next_seq(&self, tenant: &str) -> StoreResult<u64> {
        self.query(::redis::cmd("INCR").arg(tkey(tenant, &["pushseq"])))
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
        if devices.is_empty() {
            return Ok(());
        }
        let json = to_json(entry);
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        let keep = i64::try_from(max_queue.max(1)).unwrap_or(i64::MAX);
        for d in devices {
            let key = queue_key(tenant, uid, d);
            pipe.cmd("ZADD")
                .arg(&key)
                .arg(entry.seq)
                .arg(&json)
                .ignore();
            // Oldest first by seq: drop all but the newest `keep`.
            pipe.cmd("ZREMRANGEBYRANK")
                .arg(&key)
                .arg(0)
                .arg(-keep - 1)
                .ignore();
        }
        self.exec_atomic(&pipe).await
    }

    async fn push_pending(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
    ) -> StoreResult<Vec<PushEntry>> {
        let vals: Vec<String> = self
            .query(
                ::redis::cmd("ZRANGE")
                    .arg(queue_key(tenant, uid, device))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        vals.iter().map(|s| from_json(s)).collect()
    }

    async fn push_ack(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
        seqs: &[u64],
    ) -> StoreResult<PushAckOutcome> {
        let mut inv = self.push_ack.prepare_invoke();
        inv.key(queue_key(tenant, uid, device));
        for s in seqs {
            inv.arg(*s);
        }
        let (removed, oldest): (usize, String) =
            inv.invoke_async(&mut self.con()).await.map_err(err)?;
        // Scores come back as decimal text; parse through f64 because that is
        // what Redis stores.
        let oldest = match oldest.as_str() {
            "" => None,
            s => Some(
                s.parse::<f64>()
                    .map_err(|e| StoreError::Corrupt(format!("push score {s:?}: {e}")))?
                    as u64,
            ),
        };
        let min_acked = seqs.iter().copied().min();
        Ok(PushAckOutcome {
            removed,
            was_oldest: oldest.is_none() || min_acked == oldest,
        })
    }

    async fn push_clear(&self, tenant: &str, uid: &str, device: &str) -> StoreResult<()> {
        self.query::<()>(::redis::cmd("DEL").arg(queue_key(tenant, uid, device)))
            .await
    }

    async fn push_move(&self, tenant: &str, uid: &str, from: &str, to: &str) -> StoreResult<()> {
        let mut inv = self.push_move.prepare_invoke();
        inv.key(queue_key(tenant, uid, from))
            .key(queue_key(tenant, uid, to));
        inv.invoke_async::<()>(&mut self.con()).await.map_err(err)
    }

    async fn device_seen(
        &self,
        tenant: &str,
        uid: &str,
        device: &str,
        now_ms: u64,
    ) -> StoreResult<()> {
        let member = format!("{}:{}", enc(uid), enc(device));
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(dev_key(tenant, uid))
            .arg(device)
            .arg(now_ms)
            .ignore()
            .cmd("ZADD")
            .arg(devices_key(tenant))
            .arg(now_ms)
            .arg(member)
            .ignore();
        self.exec_atomic(&pipe).await
    }

    async fn devices(&self, tenant: &str, uid: &str) -> StoreResult<Vec<(String, u64)>> {
        let mut all: Vec<(String, u64)> = self
            .query(::redis::cmd("HGETALL").arg(dev_key(tenant, uid)))
            .await?;
        all.sort();
        Ok(all)
    }

    async fn expire_devices(&self, tenant: &str, before_ms: u64) -> StoreResult<usize> {
        let zkey = devices_key(tenant);
        // Exclusive upper bound: "last seen before".
        let members: Vec<String> = self
            .query(
                ::redis::cmd("ZRANGEBYSCORE")
                    .arg(&zkey)
                    .arg("-inf")
                    .arg(format!("({before_ms}")),
            )
            .await?;
        let mut total = 0;
        for chunk in members.chunks(EXPIRE_BATCH) {
            let mut inv = self.expire_devices.prepare_invoke();
            inv.key(&zkey).arg(before_ms);
            for m in chunk {
                let Some((u, d)) = m.split_once(':') else {
                    return Err(StoreError::Corrupt(format!("device member {m:?}")));
                };
                let (uid, dev) = (dec(u), dec(d));
                inv.key(dev_key(tenant, &uid))
                    .key(queue_key(tenant, &uid, &dev));
                inv.arg(m).arg(dev);
            }
            let n: usize = inv.invoke_async(&mut self.con()).await.map_err(err)?;
            total += n;
        }
        Ok(total)
    }

    async fn put_plugin(&self, tenant: &str, rec: &PluginRecord, wasm: &[u8]) -> StoreResult<()> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(wasm_key(tenant, &rec.name, rec.version))
            .arg(wasm)
            .ignore()
            .cmd("HSET")
            .arg(tkey(tenant, &["plugins"]))
            .arg(plugin_field(&rec.name, rec.version))
            .arg(to_json(rec))
            .ignore();
        self.exec_atomic(&pipe).await
    }

    async fn list_plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>> {
        let vals: Vec<String> = self
            .query(::redis::cmd("HVALS").arg(tkey(tenant, &["plugins"])))
            .await?;
        let mut out: Vec<PluginRecord> = vals
            .iter()
            .map(|s| from_json(s))
            .collect::<StoreResult<_>>()?;
        out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        Ok(out)
    }

    async fn get_plugin_wasm(
        &self,
        tenant: &str,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.query(::redis::cmd("GET").arg(wasm_key(tenant, name, version)))
            .await
    }

    async fn delete_plugin(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        let hkey = tkey(tenant, &["plugins"]);
        let fields: Vec<String> = self.query(::redis::cmd("HKEYS").arg(&hkey)).await?;
        let prefix = format!("{}:", enc(name));
        let versions: Vec<(String, u64)> = fields
            .into_iter()
            .filter_map(|f| {
                let v = f.strip_prefix(&prefix)?.parse::<u64>().ok()?;
                Some((f, v))
            })
            .collect();
        if versions.is_empty() {
            return Ok(false);
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for (field, v) in &versions {
            pipe.cmd("HDEL").arg(&hkey).arg(field).ignore();
            pipe.cmd("DEL").arg(wasm_key(tenant, name, *v)).ignore();
        }
        self.exec_atomic(&pipe).await?;
        Ok(true)
    }

    async fn get_chain(&self, tenant: &str) -> StoreResult<PluginChainRecord> {
        let v: Option<String> = self
            .query(::redis::cmd("GET").arg(tkey(tenant, &["chain"])))
            .await?;
        Ok(v.map(|s| from_json(&s)).transpose()?.unwrap_or_default())
    }

    async fn put_chain(&self, tenant: &str, chain: &PluginChainRecord) -> StoreResult<()> {
        self.query::<()>(
            ::redis::cmd("SET")
                .arg(tkey(tenant, &["chain"]))
                .arg(to_json(chain)),
        )
        .await
    }

    async fn kv_get(&self, tenant: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.query(::redis::cmd("GET").arg(tkey(tenant, &["kv", &enc(key)])))
            .await
    }

    async fn kv_set(&self, tenant: &str, key: &str, value: &[u8], ttl_ms: u64) -> StoreResult<()> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(tkey(tenant, &["kv", &enc(key)])).arg(value);
        // A plain SET also clears an earlier TTL, matching "0 = none".
        if ttl_ms > 0 {
            cmd.arg("PX").arg(ttl_ms);
        }
        self.query::<()>(&cmd).await
    }

    async fn kv_incr(&self, tenant: &str, key: &str, delta: i64, ttl_ms: u64) -> StoreResult<i64> {
        let mut inv = self.kv_incr.prepare_invoke();
        inv.key(tkey(tenant, &["kv", &enc(key)]))
            .arg(delta)
            .arg(ttl_ms);
        let v: String = inv.invoke_async(&mut self.con()).await.map_err(err)?;
        v.parse::<i64>()
            .map_err(|e| StoreError::Corrupt(format!("kv counter {v:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_keeps_components_apart() {
        for s in ["plain", "a:b", "100%", "{x}", "*?[]\\", "ü:%3A"] {
            assert_eq!(dec(&enc(s)), s);
            assert!(!enc(s).contains(':'));
        }
        assert_ne!(queue_key("t", "a:b", "c"), queue_key("t", "a", "b:c"));
    }
}
