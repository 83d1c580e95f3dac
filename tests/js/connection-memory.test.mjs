// What an idle connection costs the server: many WebSocket clients, each
// authenticated and joined to a room, then left idle; the server's VmRSS
// growth divided by the connections stays under a documented bound.
//
// The clients speak Engine.IO / socket.io by hand over the `ws` package (a
// socket.io-client per connection would cost this process more than the
// server). The bound is for this build of the server (the tests run the
// debug build); the release figures, side by side with Node, are in
// BENCHMARKS.md.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rid, startServer } from './harness.mjs';
import { WebSocket, openJoined, rssBytes } from './raw-socket.mjs';

const CONNECTIONS = 5000;
const AT_ONCE = 100;
/** Documented bound (docs/transport.md): server RSS per idle joined connection. */
const BOUND_BYTES_PER_CONNECTION = 8.5 * 1024;

describe('memory per idle connection', () => {
  let srv;
  const sockets = [];
  before(async () => {
    srv = await startServer();
    const r = await srv.admin('PATCH', '/api/tenants/default', { body: { force_user_auth: false, join_timeout_ms: 0 } });
    assert.equal(r.status, 200, r.text);
  });
  after(async () => {
    for (const ws of sockets) ws.terminate();
    await srv?.destroy();
  });

  test(`${CONNECTIONS} authenticated, joined, idle connections cost under ${BOUND_BYTES_PER_CONNECTION} B each`, { timeout: 180000 }, async () => {
    const run = rid('mem');
    // A few connections first, so that what every server allocates once
    // (runtime, tenant, room tables) is not counted per connection.
    for (let i = 0; i < 20; i++) sockets.push(await openJoined(srv, `${run}-warm${i}`, `${run}-warm`));
    const pid = srv.proc.pid;
    const before = rssBytes(pid);
    for (let i = 0; i < CONNECTIONS; i += AT_ONCE) {
      const batch = Array.from({ length: AT_ONCE }, (_, k) => openJoined(srv, `${run}-u${i + k}`, `${run}-r${Math.floor((i + k) / 10)}`));
      sockets.push(...(await Promise.all(batch)));
    }
    // Let the set-up's short-lived buffers go back to the allocator.
    await new Promise((r) => setTimeout(r, 2000));
    const perConnection = (rssBytes(pid) - before) / CONNECTIONS;
    console.log(`memory per idle connection: ${perConnection.toFixed(0)} B (bound ${BOUND_BYTES_PER_CONNECTION})`);
    assert.ok(perConnection < BOUND_BYTES_PER_CONNECTION,
      `server RSS grew ${perConnection.toFixed(0)} B per idle connection, bound ${BOUND_BYTES_PER_CONNECTION}`);
    assert.ok(sockets.every((ws) => ws.readyState === WebSocket.OPEN), 'every connection still open');
  });
});
