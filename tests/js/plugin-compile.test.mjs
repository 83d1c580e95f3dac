// Compiling an uploaded component: bounded in time (plugins.max_compile_ms),
// and done outside the node's admin lock, so other admin calls keep
// answering while a big component compiles. Uses word-filter as built by
// plugins/build.sh (the JS plugin suite builds it first; this file does too).

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { builtPlugin, ok, startServer } from './harness.mjs';

const T = { timeout: 120000 };

const upload = (srv, bytes) => srv.admin('POST', '/api/tenants/default/plugins/word-filter', {
  rawBody: bytes,
  headers: { 'content-type': 'application/wasm', 'x-hookwire-manifest': JSON.stringify({ timeout_ms: 500, config: { words: ['darn'] } }) },
  timeoutMs: 120000,
});

describe('plugin compile', () => {
  const servers = [];
  after(async () => { for (const s of servers) await s.destroy(); });
  const bytes = builtPlugin('word-filter');

  test('a compile past plugins.max_compile_ms is refused with the setting named; nothing is stored', T, async () => {
    const srv = await startServer({ env: { HOOKWIRE_PLUGINS__MAX_COMPILE_MS: '1' } });
    servers.push(srv);
    const r = await upload(srv, bytes);
    assert.notEqual(r.json?.meta?.status, 0, `refused: ${r.status} ${r.text}`);
    assert.match(r.text, /max_compile_ms/, r.text);
    const listing = ok(await srv.admin('GET', '/api/tenants/default/plugins'), 'list plugins');
    assert.deepEqual(listing.chain, [], 'nothing in the chain');
  });

  test('while a component compiles, other admin calls of the node answer first', T, async () => {
    const srv = await startServer(); // a fresh data dir: a cold compile (seconds in a debug build)
    servers.push(srv);
    const order = [];
    const uploading = upload(srv, bytes).then((r) => { order.push('upload'); return r; });
    // An admin call that takes the node's admin lock (as uploads do) once
    // the upload has surely started compiling.
    await new Promise((r) => setTimeout(r, 200));
    const chain = await srv.admin('PUT', '/api/tenants/default/chain', { body: { order: [] } });
    order.push('chain');
    ok(chain, 'PUT /chain during the compile');
    ok(await uploading, 'the upload itself succeeds');
    assert.deepEqual(order, ['chain', 'upload'], 'the chain call was not held behind the compile');
  });
});
