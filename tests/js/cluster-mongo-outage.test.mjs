// Clustering: MongoDB (SecantusDB, data on disk) goes away under
// two nodes on one Redis. The nodes keep their connections and keep relaying
// unstored msgs through Redis, refuse (and do not relay) msgs they cannot store, report the store as down on /healthz, refuse to ack what
// they could not store, and after the restart every acked msg is there,
// once, in order.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAll, eventually, loginJoin, rid, syncAll } from './harness.mjs';
import { startCluster } from './cluster-harness.mjs';

const transports = ['websocket'];

describe('cluster: MongoDB outage under two nodes', () => {
  let cl;
  const clients = [];
  before(async () => {
    cl = await startCluster({ nodes: 2, redis: true, mongo: rid('outage_'), mongoOnDisk: true });
  });
  after(async () => { closeAll(clients); await cl?.destroy(); });

  test('connections kept, unstored msgs still relayed, unstorable ones refused, /healthz 503, no ack without a write, acked msgs all back after the restart', { timeout: 120000 }, async () => {
    const [A, B] = cl.nodes;
    const room = rid('room');
    const alice = await loginJoin(A, room, { transports, label: 'alice@A' });
    const bob = await loginJoin(B, room, { transports, label: 'bob@B' });
    clients.push(alice, bob);
    const acked = [];
    const send = async (text, timeoutMs) => {
      const msgId = rid('m');
      const ack = await alice.emitAck('msg', { data: { text }, storage: 0, msgId }, timeoutMs);
      if (ack?.status === 0) acked.push(msgId);
      return { ack, msgId };
    };
    for (let i = 0; i < 5; i++) assert.equal((await send(`before ${i}`)).ack.status, 0);

    await cl.mongo.kill9();
    const health = await eventually(async () => {
      const h = await A.api('GET', '/healthz', { key: null });
      return h.status === 503 ? h : null;
    }, 15000, '/healthz 503 while MongoDB is down');
    assert.equal(health.json?.store?.ok, false, JSON.stringify(health.json));
    assert.equal(health.json?.redis?.ok, true, 'redis is still up');

    // A msg that cannot be stored is refused and not relayed (nobody sees a
    // msg that sync could never return); storage 2 msgs still cross nodes.
    // The unstored marker sent after it is relayed behind it in the room's
    // order, so bob seeing the marker first proves the refused one never came.
    const down = await send('while down', 30000);
    assert.equal(down.ack?.status, 1, `ack while MongoDB is down: ${JSON.stringify(down.ack)}`);
    assert.match(String(down.ack?.data), /not stored/);
    const marker = rid('marker');
    const markerAck = await alice.emitAck('msg', { data: { text: 'unstored' }, storage: 2, msgId: marker }, 10000);
    assert.equal(markerAck?.status, 0, JSON.stringify(markerAck));
    const next = await bob.waitFor('msg', 10000, (m) => m?.msgId === marker || m?.msgId === down.msgId);
    assert.equal(next.msgId, marker, 'the refused msg was not relayed');
    assert.ok(alice.connected && bob.connected, 'both clients stay connected during the outage');

    await cl.mongo.restart();
    await eventually(async () => (await A.api('GET', '/healthz', { key: null })).status === 200, 30000, '/healthz 200 after the restart');
    await eventually(async () => (await send('after', 10000)).ack?.status === 0, 30000, 'a stored msg after the restart');

    const { msgs } = await syncAll(bob);
    const ids = msgs.map((m) => m.msgId);
    assert.deepEqual(ids.filter((id) => acked.includes(id)), acked, 'every acked msg, once, in order');
    assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  });
});
