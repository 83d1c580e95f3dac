// A plugin's kv goes with the plugin: after DELETE, a new plugin uploaded
// under the same name starts with an empty kv instead of inheriting the old
// one's keys. Uses rate-limit, whose token buckets live in the kv.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { builtPlugin, closeAll, loginJoin, ok, rid, startServer } from './harness.mjs';

describe('plugin kv and plugin deletion', () => {
  let srv;
  const clients = [];
  after(async () => { closeAll(...clients); await srv?.destroy(); });

  test('a plugin uploaded again under a deleted plugin\'s name does not inherit its kv', { timeout: 120000 }, async () => {
    srv = await startServer();
    const wasm = builtPlugin('rate-limit');
    // Two msgs per bucket, refilled so slowly that it stays empty for the test.
    const upload = async () => ok(await srv.admin('POST', '/api/tenants/default/plugins/rate-limit', {
      rawBody: wasm,
      headers: {
        'content-type': 'application/wasm',
        'x-hookwire-manifest': JSON.stringify({ timeout_ms: 500, config: { rate_per_sec: 0.001, burst: 2 } }),
      },
      timeoutMs: 120000,
    }), 'upload rate-limit');
    await upload();
    const a = await loginJoin(srv, rid('room'), { label: 'a' });
    clients.push(a);
    const send = (i) => a.emitAck('msg', { data: { i }, storage: 2 });
    assert.deepEqual([(await send(1)).status, (await send(2)).status], [0, 0], 'the burst passes');
    const limited = await send(3);
    assert.deepEqual([limited.status, limited.data], [1, 'rate limited'], 'the bucket is empty');

    ok(await srv.admin('DELETE', '/api/tenants/default/plugins/rate-limit'), 'delete');
    assert.equal((await send(4)).status, 0, 'no plugin, no limit');
    await upload();
    const fresh = await send(5);
    assert.equal(fresh.status, 0, `the new plugin starts with an empty kv (a full bucket): ${JSON.stringify(fresh)}`);
  });
});
