// `sync` of a room of large stored messages: every reader gets every value,
// page by page, and the node's memory stays bounded while they read.
//
// 300 msgs of 400 KB stored with `storage: 1` (distinct msgIds, so they are
// the room's update values: about 120 MB), then four readers sync the room
// at once from offset 0, paging with `offset` only, without `cursor`
// (one of them with gzip). Each page holds at most `sync_page_bytes`
// (1 MiB by default) or one message; every reader gets all 300 values; the
// server's VmRSS, sampled every 20 ms, grows by less than RSS_BOUND_MB over
// its level before the syncs.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { closeAll, loginJoin, ok, rid, sleep, startServer, syncData } from './harness.mjs';
import { WebSocket, nextFrame, openJoined } from './raw-socket.mjs';

const MSGS = 300;
const MSG_BYTES = 400_000;
const READERS = 4;
const PAGE_BYTES = 1 << 20;
/** Documented bound on RSS growth while the four readers sync (README). */
const RSS_BOUND_MB = 64;

function rssMb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Pages through the room with `offset` only (the session keeps the update cursor). */
async function readAll(c, encoding) {
  const ids = new Set();
  let req = { offset: 0, ...(encoding ? { encoding } : {}) };
  let pages = 0;
  for (;;) {
    const r = await c.emitAck('sync', req, 60000);
    assert.equal(r.status, 0, JSON.stringify(r).slice(0, 200));
    const data = syncData(r);
    pages++;
    const bytes = data.reduce((n, m) => n + JSON.stringify(m).length, 0);
    assert.ok(data.length >= 1 || !r.next, `a page that says more holds a message (page ${pages})`);
    assert.ok(data.length === 1 || bytes <= PAGE_BYTES, `page ${pages}: ${data.length} msgs, ${bytes} bytes`);
    for (const m of data) {
      assert.equal(m.data.pad.length, MSG_BYTES, `value of ${m.msgId} whole`);
      ids.add(m.msgId);
    }
    if (!r.next) return { ids, pages };
    assert.ok(pages < 1000, 'sync never ended');
    req = { offset: r.offset, ...(encoding ? { encoding } : {}) };
  }
}

describe('sync of 300 values of 400 KB to four readers at once', () => {
  let srv;
  const clients = [];
  before(async () => { srv = await startServer(); });
  after(async () => { closeAll(...clients); await srv?.destroy(); });

  test('every reader gets all 300 values in bounded pages; RSS growth stays under the bound', { timeout: 300000 }, async () => {
    const room = rid('big');
    const writer = await loginJoin(srv, room, { label: 'writer' });
    clients.push(writer);
    const pad = 'x'.repeat(MSG_BYTES);
    for (let i = 0; i < MSGS; i += 10) {
      const acks = await Promise.all(Array.from({ length: Math.min(10, MSGS - i) }, (_, k) =>
        writer.emitAck('msg', { data: { pad }, storage: 1, msgId: `m${String(i + k).padStart(3, '0')}` }, 60000)));
      for (const a of acks) assert.equal(a?.status, 0, JSON.stringify(a));
    }
    const readers = [];
    for (let i = 0; i < READERS; i++) {
      readers.push(await loginJoin(srv, room, { label: `reader${i}`, dummy: true }));
    }
    clients.push(...readers);

    const pid = srv.proc.pid;
    const base = rssMb(pid);
    let peak = base;
    const sampler = setInterval(() => { peak = Math.max(peak, rssMb(pid)); }, 20);
    let results;
    try {
      results = await Promise.all(readers.map((r, i) => readAll(r, i === READERS - 1 ? 'gzip' : undefined)));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssMb(pid));
    for (const [i, { ids, pages }] of results.entries()) {
      assert.equal(ids.size, MSGS, `reader${i} got every value (${pages} pages)`);
      assert.ok(pages >= MSGS / 2, `reader${i}: 120 MB in pages of at most 1 MiB (${pages} pages)`);
    }
    const growth = peak - base;
    console.log(`sync memory: RSS ${base.toFixed(1)} MiB before, peak ${peak.toFixed(1)} MiB, growth ${growth.toFixed(1)} MiB (bound ${RSS_BOUND_MB})`);
    assert.ok(growth < RSS_BOUND_MB, `RSS grew by ${growth.toFixed(1)} MiB during the syncs (bound ${RSS_BOUND_MB} MiB)`);
    assert.ok(writer.connected && readers.every((r) => r.connected), 'nobody was disconnected');
  });
  test('the update cursor: sent back on another socket it continues there; room_msgs pages the same way; a bad sync_page_bytes is refused', { timeout: 60000 }, async () => {
    const bad = await srv.admin('PATCH', '/api/tenants/default', { body: { sync_page_bytes: 10 } });
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.text, /sync_page_bytes must be 1024\.\.=16777216/);
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { sync_page_bytes: 1024 } }), 'patch');
    try {
      const room = rid('cur');
      const w = await loginJoin(srv, room, { label: 'w' });
      clients.push(w);
      const ids = ['a', 'b', 'c', 'd', 'e'];
      for (const id of ids) {
        assert.equal((await w.emitAck('msg', { data: { pad: 'y'.repeat(700) }, storage: 1, msgId: id })).status, 0);
      }
      // One value per page (each is over half of 1024 bytes).
      const first = await w.emitAck('sync', { offset: 0 });
      assert.deepEqual([first.next, first.data.map((m) => m.msgId), first.cursor], [1, ['a'], 'a']);
      const other = await loginJoin(srv, room, { label: 'other', dummy: true });
      clients.push(other);
      const got = [];
      let req = { offset: first.offset, cursor: first.cursor };
      for (;;) {
        const r = await other.emitAck('sync', req);
        got.push(...r.data.map((m) => m.msgId));
        if (!r.next) break;
        req = { offset: r.offset, cursor: r.cursor };
      }
      assert.deepEqual(got, ['b', 'c', 'd', 'e'], 'the cursor continues after a, on another socket');
      // Admin paging.
      const seen = [];
      let q = 'offset=0';
      for (let i = 0; i < 20; i++) {
        const page = ok(await srv.api('GET', `/admin/monitor/room_msgs?roomId=${room}&${q}`), 'room_msgs');
        seen.push(...page.msgs.map((m) => m.data.msgId));
        if (!page.next) break;
        q = `offset=${page.offset}${page.cursor ? `&cursor=${encodeURIComponent(page.cursor)}` : ''}`;
      }
      assert.deepEqual(seen, ids, 'room_msgs pages the values once each');
    } finally {
      ok(await srv.admin('PATCH', '/api/tenants/default', { body: { sync_page_bytes: PAGE_BYTES } }), 'patch back');
    }
  });
});

// Many readers asking for a large page at the same moment. Each page is read
// from the store, encoded and written out; the store reads a few large pages
// at a time, and a page's memory goes as soon as its frame is written, so
// the node's peak is bounded however many ask at once, and its RSS comes
// back near where it was.
const BURST_READERS = 500;
/** Two values of 450 KB (a msg is at most 500 KB): one page of about 900 KB. */
const BURST_VALUE_BYTES = 450_000;
/** Documented bounds (README): peak RSS growth during the burst, and what is left after it (a share of the RSS before). */
const BURST_PEAK_BOUND_MB = 48;
const BURST_AFTER_SHARE = 0.1;

describe(`${BURST_READERS} readers ask for a 900 KB sync page at once`, () => {
  let srv;
  const sockets = [];
  before(async () => {
    srv = await startServer();
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { force_user_auth: false, join_timeout_ms: 0 } }), 'patch');
  });
  after(async () => {
    for (const ws of sockets) ws.terminate();
    await srv?.destroy();
  });

  test('every reader gets its page; peak RSS growth and what is left after stay under their bounds', { timeout: 240000 }, async () => {
    const room = rid('burst');
    const writer = await loginJoin(srv, room, { label: 'writer' });
    try {
      for (const msgId of ['big1', 'big2']) {
        const a = await writer.emitAck('msg', { data: { pad: 'z'.repeat(BURST_VALUE_BYTES) }, storage: 1, msgId }, 60000);
        assert.equal(a?.status, 0, JSON.stringify(a));
      }
    } finally {
      writer.close();
    }
    for (let i = 0; i < BURST_READERS; i += 100) {
      const batch = Array.from({ length: 100 }, (_, k) => openJoined(srv, `${room}-r${i + k}`, room));
      sockets.push(...(await Promise.all(batch)));
    }
    // One read first: what the store caches of the room is not the burst's.
    const page = (ws) => {
      const got = nextFrame(ws, (t) => (t.startsWith('431[') ? t.length : undefined), 120000);
      ws.send('421["sync",{"offset":0}]');
      return got;
    };
    await page(sockets[0]);
    const pid = srv.proc.pid;
    await sleep(1000);
    const base = rssMb(pid);
    let peak = base;
    const sampler = setInterval(() => { peak = Math.max(peak, rssMb(pid)); }, 20);
    let sizes;
    try {
      sizes = await Promise.all(sockets.map(page));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssMb(pid));
    for (const [i, n] of sizes.entries()) assert.ok(n > 2 * BURST_VALUE_BYTES, `reader ${i} got both values in one page (${n} bytes)`);
    // The allocator returns freed pages to the system after a short delay.
    await sleep(3000);
    const left = rssMb(pid) - base;
    const growth = peak - base;
    const leftBound = BURST_AFTER_SHARE * base;
    console.log(`sync burst: RSS ${base.toFixed(1)} MiB before, peak ${peak.toFixed(1)} MiB (+${growth.toFixed(1)}, bound ${BURST_PEAK_BOUND_MB}), after ${left >= 0 ? '+' : ''}${left.toFixed(1)} MiB (bound ${leftBound.toFixed(1)})`);
    assert.ok(growth < BURST_PEAK_BOUND_MB, `RSS grew by ${growth.toFixed(1)} MiB during the burst (bound ${BURST_PEAK_BOUND_MB} MiB)`);
    assert.ok(left < leftBound, `RSS stayed ${left.toFixed(1)} MiB above its level before the burst (bound: ${BURST_AFTER_SHARE * 100}% of it, ${leftBound.toFixed(1)} MiB)`);
    assert.ok(sockets.every((ws) => ws.readyState === WebSocket.OPEN), 'every reader still connected');
  });
});
