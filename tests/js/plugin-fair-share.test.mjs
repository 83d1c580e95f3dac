// Plugin calls take instance permits per tenant: one tenant flooding slow
// calls cannot stall another tenant's hooks.
//
// The node runs with 4 instance permits in all and 2 per tenant. Tenant
// `slow` runs the hostile `sleeper` on every msg (each call holds its
// instance until its wall ceiling, 110 ms); 12 of its sockets keep a queue
// of msgs each. Tenant `fast` runs word-filter; its one sender sends msgs one
// after the other. Every one of fast's msgs is acked {status:0} (and
// masked) while slow's flood is still being served: without per-tenant
// permits each of fast's calls waited behind the flood's queued calls.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { builtPlugin, closeAll, loginJoin, ok, rid, startServer } from './harness.mjs';

const SLOW_SOCKETS = 12;
const SLOW_EACH = 20;
const FAST_MSGS = 30;

describe('plugin instance permits per tenant', () => {
  let srv;
  const clients = [];
  after(async () => { closeAll(...clients); await srv?.destroy(); });

  test('a tenant flooding slow calls does not stall another tenant\'s msgs', { timeout: 180000 }, async () => {
    srv = await startServer({
      env: {
        HOOKWIRE_PLUGINS__MAX_CONCURRENT_INSTANCES: '4',
        HOOKWIRE_PLUGINS__MAX_INSTANCES_PER_TENANT: '2',
      },
    });
    const keys = {};
    for (const name of ['slow', 'fast']) {
      keys[name] = ok(await srv.admin('POST', '/api/tenants', { body: { name } }), `create ${name}`).api_key;
    }
    const upload = async (tenant, name, bytes, manifest) => ok(await srv.admin('POST', `/api/tenants/${tenant}/plugins/${name}`, {
      rawBody: bytes,
      headers: { 'content-type': 'application/wasm', 'x-hookwire-manifest': JSON.stringify(manifest) },
      timeoutMs: 120000,
    }), `upload ${name} to ${tenant}`);
    await upload('slow', 'sleeper', builtPlugin('sleeper'), {});
    await upload('fast', 'word-filter', builtPlugin('word-filter'), { timeout_ms: 500, config: { words: ['darn'] } });

    const room = rid('room');
    const slow = [];
    for (let i = 0; i < SLOW_SOCKETS; i++) {
      slow.push(await loginJoin(srv, room, { tenant: 'slow', key: keys.slow, label: `slow${i}` }));
    }
    const fast = await loginJoin(srv, room, { tenant: 'fast', key: keys.fast, label: 'fast' });
    clients.push(...slow, fast);

    // The flood: every slow socket queues its msgs at once (each socket's
    // msgs are handled one after the other, so this keeps 12 calls waiting).
    let slowAnswered = 0;
    const flood = slow.flatMap((c) => Array.from({ length: SLOW_EACH }, (_, i) =>
      c.emitAck('msg', { data: { i }, storage: 2 }, 120000).then((a) => { slowAnswered++; return a; })));
    // Fast's msgs, one after the other, while the flood is served.
    const fastAcks = [];
    for (let i = 0; i < FAST_MSGS; i++) {
      fastAcks.push(await fast.emitAck('msg', { data: { text: `darn ${i}` }, storage: 2 }, 60000));
    }
    const slowDoneWhenFastFinished = slowAnswered;
    const slowAcks = await Promise.all(flood);

    for (const a of fastAcks) assert.equal(a?.status, 0, `fast's msg acked: ${JSON.stringify(a)}`);
    assert.ok(
      slowDoneWhenFastFinished < SLOW_SOCKETS * SLOW_EACH,
      `all ${FAST_MSGS} of fast's msgs were answered while slow's flood was still being served (${slowDoneWhenFastFinished}/${SLOW_SOCKETS * SLOW_EACH} answered)`,
    );
    // Slow's own calls end at their wall ceiling (refused: the plugin faulted).
    assert.ok(slowAcks.every((a) => a?.status === 1), `slow's msgs refused at the ceiling: ${JSON.stringify(slowAcks.find((a) => a?.status !== 1))}`);
    assert.ok(slow.every((c) => c.connected) && fast.connected, 'nobody was disconnected');
  });
});
