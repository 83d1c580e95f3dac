// A msg a member has received is in every `sync` it starts afterwards, on
// every store and across nodes; on one node, `sync` returns a room's
// messages in the order its members received them.
//
// Two senders stream stored msgs into one room without waiting for acks (so
// the store's group commit is always busy); a reader syncs from its cursor
// each time something arrived and checks that everything it had received
// before starting that sync is in the history read so far.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { closeAll, loginJoin, rid, startServer } from './harness.mjs';
import { startCluster, startNode, startRedis, startSecantus } from './cluster-harness.mjs';

const PER_SENDER = 120;

/** Streams `n` stored msgs from `c` without waiting; resolves all their acks. */
function stream(c, tag, n) {
  const acks = [];
  for (let i = 0; i < n; i++) {
    acks.push(c.emitAck('msg', { data: { tag, i }, storage: 0, msgId: `${tag}-${i}` }, 60000));
  }
  return Promise.all(acks);
}

/**
 * The reader's side: after each arrival, `sync` from the cursor; every msg
 * received before the sync started must be in the history read so far.
 * Resolves { received, synced } (msgIds in arrival and in history order).
 */
async function readWhileStreaming(reader, total) {
  const received = [];
  reader.socket.on('msg', (m) => received.push(m.msgId));
  const synced = [];
  let offset = 0;
  let syncs = 0;
  const deadline = Date.now() + 60000;
  while (synced.length < total) {
    if (Date.now() > deadline) throw new Error(`only ${synced.length}/${total} msgs in sync after 60 s (received ${received.length})`);
    if (received.length <= synced.length) {
      await reader.waitFor('msg', 20000).catch(() => {});
      continue;
    }
    const seenBefore = received.slice();
    const r = await reader.emitAck('sync', { offset });
    assert.equal(r.status, 0, JSON.stringify(r).slice(0, 300));
    syncs++;
    synced.push(...r.data.map((m) => m.msgId));
    offset = r.offset;
    const have = new Set(synced);
    const missing = seenBefore.filter((id) => !have.has(id));
    assert.deepEqual(missing, [], `sync #${syncs} started after these msgs had arrived, but did not return them`);
  }
  // A msg is committed before it is relayed, so the history can hold msgs
  // whose relay is still on its way to this socket.
  while (received.length < total && Date.now() < deadline) await reader.waitFor('msg', 5000).catch(() => {});
  return { received, synced };
}

async function check({ sendersAt, readerAt, sameNode }) {
  const room = rid('room');
  const reader = await loginJoin(readerAt, room, { label: 'reader' });
  const alice = await loginJoin(sendersAt, room, { label: 'alice' });
  const carol = await loginJoin(sendersAt, room, { label: 'carol' });
  try {
    const reading = readWhileStreaming(reader, 2 * PER_SENDER);
    const [a, c] = await Promise.all([stream(alice, 'a', PER_SENDER), stream(carol, 'c', PER_SENDER)]);
    for (const ack of [...a, ...c]) assert.equal(ack?.status, 0, JSON.stringify(ack));
    const { received, synced } = await reading;
    assert.equal(received.length, 2 * PER_SENDER, 'every msg was relayed to the reader');
    assert.equal(new Set(synced).size, synced.length, 'no msg twice in sync');
    if (sameNode) {
      assert.deepEqual(synced, received, 'sync returns the room in the order its members received it');
    } else {
      // Across nodes each sender's msgs keep their order.
      for (const tag of ['a', 'c']) {
        const mine = (ids) => ids.filter((id) => id.startsWith(`${tag}-`));
        assert.deepEqual(mine(synced), mine(received), `${tag}'s msgs in sync in the order received`);
      }
    }
  } finally {
    closeAll(reader, alice, carol);
  }
}

describe('a received msg is in the next sync', () => {
  const cleanups = [];
  after(async () => {
    for (const f of cleanups.reverse()) await f().catch(() => {});
  });

  test('embedded store, one node', { timeout: 120000 }, async () => {
    const srv = await startServer();
    cleanups.push(() => srv.destroy());
    await check({ sendersAt: srv, readerAt: srv, sameNode: true });
  });

  test('Redis store, one node', { timeout: 120000 }, async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.destroy());
    const srv = await startNode({ redis: redis.url(0) });
    cleanups.push(() => srv.destroy());
    await check({ sendersAt: srv, readerAt: srv, sameNode: true });
  });

  test('MongoDB store, one node', { timeout: 120000 }, async () => {
    const mongo = await startSecantus();
    cleanups.push(() => mongo.destroy());
    const srv = await startNode({ mongo: mongo.url(rid('relay_')) });
    cleanups.push(() => srv.destroy());
    await check({ sendersAt: srv, readerAt: srv, sameNode: true });
  });

  test('two nodes on Redis: senders on A, reader on B', { timeout: 120000 }, async () => {
    const cl = await startCluster({ nodes: 2, redis: true });
    cleanups.push(() => cl.destroy());
    const [A, B] = cl.nodes;
    await check({ sendersAt: A, readerAt: B, sameNode: false });
  });

  test('relay_after_commit false: relayed first, still acked after the write and stored', { timeout: 120000 }, async () => {
    const srv = await startServer();
    cleanups.push(() => srv.destroy());
    const r = await srv.admin('PATCH', '/api/tenants/default', { body: { relay_after_commit: false } });
    assert.equal(r.status, 200, r.text);
    const room = rid('room');
    const [a, b] = [await loginJoin(srv, room, { label: 'a' }), await loginJoin(srv, room, { label: 'b' })];
    try {
      const acks = await stream(a, 'a', 50);
      assert.ok(acks.every((x) => x?.status === 0 && typeof x.seq === 'number'), 'every msg acked with its seq');
      for (let i = 0; i < 50; i++) assert.equal((await b.waitFor('msg')).msgId, `a-${i}`);
      const got = await b.emitAck('sync', { offset: 0 });
      assert.deepEqual(got.data.map((m) => m.msgId), Array.from({ length: 50 }, (_, i) => `a-${i}`));
    } finally {
      closeAll(a, b);
    }
  });

  test('two nodes on Redis and MongoDB: senders on A, reader on B', { timeout: 120000 }, async () => {
    const cl = await startCluster({ nodes: 2, redis: true, mongo: true });
    cleanups.push(() => cl.destroy());
    const [A, B] = cl.nodes;
    await check({ sendersAt: A, readerAt: B, sameNode: false });
  });
});
