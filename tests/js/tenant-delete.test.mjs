// Deleting a tenant while its sockets are writing: nothing they sent lands
// after the delete, so a tenant re-created under the same name starts empty.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { closeAll, loginJoin, ok, rid, startServer, syncAll } from './harness.mjs';

describe('tenant delete under writes', () => {
  let srv;
  const clients = [];
  after(async () => { closeAll(...clients); await srv?.destroy(); });

  test('writes of closing sockets do not land after DELETE: the re-created tenant\'s room is empty', { timeout: 120000 }, async () => {
    srv = await startServer();
    const name = rid('gone').toLowerCase().replace(/[^a-z0-9_-]/g, '');
    const room = 'lobby';
    for (let round = 0; round < 3; round++) {
      const key = ok(await srv.admin('POST', '/api/tenants', { body: { name } }), 'create').api_key;
      const writers = [];
      for (let i = 0; i < 3; i++) writers.push(await loginJoin(srv, room, { tenant: name, key, label: `w${i}` }));
      clients.push(...writers);
      // Streams of stored msgs, not waited for: many writes are in flight
      // when the tenant goes.
      for (const w of writers) {
        for (let i = 0; i < 200; i++) w.socket.emit('msg', { data: { i }, storage: 0 });
      }
      // Once one msg of the stream is stored, the rest are queued or in flight.
      await writers[0].waitFor('msg', 20000).catch(() => {});
      ok(await srv.admin('DELETE', `/api/tenants/${name}`), 'delete');
      const key2 = ok(await srv.admin('POST', '/api/tenants', { body: { name } }), 're-create').api_key;
      const reader = await loginJoin(srv, room, { tenant: name, key: key2, label: 'reader' });
      clients.push(reader);
      // A marker written now is stored after anything still in flight.
      const marker = rid('marker');
      assert.equal((await reader.emitAck('msg', { data: { marker }, storage: 0 })).status, 0);
      const { msgs } = await syncAll(reader);
      assert.deepEqual(msgs.map((m) => m.data), [{ marker }], `round ${round}: only the new tenant's own msg in its room`);
      closeAll(reader, ...writers);
      ok(await srv.admin('DELETE', `/api/tenants/${name}`), 'delete again');
    }
  });
});
