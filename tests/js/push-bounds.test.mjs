// Bounds of the reliable push queues: a device queue keeps at most
// `max_pending_pushes` (the oldest go), and a device that comes back to a
// long queue gets it as `_batch` pages of at most 100, each sent once the
// previous one is acked.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { closeAll, eventually, login, ok, rid, sleep, startServer } from './harness.mjs';

describe('push queue bounds', () => {
  let srv;
  const clients = [];
  after(async () => { closeAll(...clients); await srv?.destroy(); });

  const send = async (uid, i) => ok(await srv.api('POST', '/send', {
    body: { rooms: [`user_${uid}`], event: 'p', args: [i] }, keyVia: 'query', query: { site: 'default' },
  }), `/send ${i}`);

  /** Connects a device of uid and collects its `_batch` pages, acking each, until `total` events. */
  async function drain(uid, deviceId, total) {
    const c = await login(srv, { uid, via: 'handshake', query: { deviceId }, label: `${uid}/${deviceId}` });
    clients.push(c);
    const pages = [];
    let got = 0;
    while (got < total) {
      const e = await c.waitForEntry('_batch', 20000);
      pages.push(e.args[0].map((ev) => ev[1]));
      got += e.args[0].length;
      e.ack();
    }
    return { c, pages };
  }

  /** Registers the device (so pushes queue for it), then takes it offline. */
  async function knownDevice(uid, deviceId) {
    const c = await login(srv, { uid, via: 'handshake', query: { deviceId }, label: 'first' });
    await c.waitFor('authenticate');
    c.close();
    await eventually(async () => ok(await srv.admin('GET', '/admin/monitor/stat'), 'stat').online_user_count === 0, 20000, 'offline');
  }

  test('a device queue keeps the newest max_pending_pushes; a bad value is refused', { timeout: 120000 }, async () => {
    srv = await startServer();
    const bad = await srv.admin('PATCH', '/api/tenants/default', { body: { max_pending_pushes: 0 } });
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.text, /max_pending_pushes must be 1\.\.=100000/);
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { max_pending_pushes: 5 } }), 'patch');
    const uid = rid('u');
    await knownDevice(uid, 'phone');
    for (let i = 1; i <= 8; i++) await send(uid, i);
    const { pages } = await drain(uid, 'phone', 5);
    assert.deepEqual(pages, [[4, 5, 6, 7, 8]], 'the 5 newest, oldest first');
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { max_pending_pushes: 1000 } }), 'patch back');
  });

  test('250 pending pushes come as _batch pages of 100, 100 and 50, each after the previous ack', { timeout: 120000 }, async () => {
    srv ??= await startServer();
    const uid = rid('u');
    await knownDevice(uid, 'tab');
    for (let i = 1; i <= 250; i++) await send(uid, i);
    const { c, pages } = await drain(uid, 'tab', 250);
    assert.deepEqual(pages.map((p) => p.length), [100, 100, 50]);
    assert.deepEqual(pages.flat(), Array.from({ length: 250 }, (_, i) => i + 1), 'all of them once, in order');
    c.close();
    await eventually(async () => ok(await srv.admin('GET', '/admin/monitor/stat'), 'stat').online_user_count === 0, 20000, 'offline');
    // All acked: a marker pushed now is the only thing pending.
    await send(uid, 'marker');
    const { pages: after } = await drain(uid, 'tab', 1);
    assert.deepEqual(after, [['marker']]);
  });
  test('the queue of a user with no known device keeps pushes for the first device, and is forgotten device_ttl after it started', { timeout: 120000 }, async () => {
    srv ??= await startServer();
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { device_ttl_secs: 1 } }), 'patch');
    try {
      // Within the TTL: everything is kept for the first device.
      const kept = rid('u');
      for (const x of ['a', 'b', 'marker']) await send(kept, x);
      const { pages } = await drain(kept, 'first', 3);
      assert.deepEqual(pages, [['a', 'b', 'marker']]);
      // Past the TTL: the old queue is gone; a push then starts a new one.
      const gone = rid('u');
      for (const x of ['a', 'b']) await send(gone, x);
      await sleep(1300); // the 1 s TTL must pass in real time
      await send(gone, 'marker');
      const { pages: after } = await drain(gone, 'first', 1);
      assert.deepEqual(after, [['marker']], 'only what was pushed after the old queue expired');
    } finally {
      ok(await srv.admin('PATCH', '/api/tenants/default', { body: { device_ttl_secs: 3600 } }), 'patch back');
    }
  });

  test('a /send body may be as large as max_payload_bytes (4 MiB), and one above it is refused with 413', { timeout: 120000 }, async () => {
    srv ??= await startServer();
    const uid = rid('u');
    const c = await login(srv, { uid, label: 'big' });
    clients.push(c);
    await c.waitFor('authenticate');
    const big = 'x'.repeat(3 << 20); // above axum's 2 MB default, below the node's 4 MiB
    ok(await srv.api('POST', '/send', {
      body: { rooms: [`user_${uid}`], event: 'big', args: [big] }, keyVia: 'query', query: { site: 'default' },
    }), '/send of 3 MiB');
    assert.equal((await c.waitFor('big')).length, big.length);
    const tooBig = await srv.api('POST', '/send', {
      body: { rooms: [`user_${uid}`], event: 'big', args: ['x'.repeat(5 << 20)] }, keyVia: 'query', query: { site: 'default' },
    });
    assert.equal(tooBig.status, 413, tooBig.text);
  });
});
