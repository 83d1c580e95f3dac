// Tenant changes across nodes: every change is a compare-and-set of the
// store's current record, so no node writes an older copy back; and every
// node re-reads the tenants from the store every few seconds (and as soon as
// Redis is back), so a change whose announcement was lost still reaches it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eventually, ok } from './harness.mjs';
import { startCluster } from './cluster-harness.mjs';

const T = { timeout: 120000 };

const configOf = async (node) => ok(await node.admin('GET', '/api/tenants/default'), `GET default on ${node.label}`).config;
/** HTTP status of a tenant-key call with `key` on `node`. */
const statusWith = async (node, key) => (await node.api('GET', '/admin/monitor/stat', { key })).status;

describe('tenant changes across three nodes', () => {
  let cl;
  before(async () => { cl = await startCluster({ nodes: 3, redis: true, mongo: true }); });
  after(async () => { await cl?.destroy(); });

  test('a change on one node is not undone by a change of another field on another node', T, async () => {
    const [A, B] = cl.nodes;
    ok(await A.api('POST', '/admin/system/config', { body: { forceUserAuth: false } }), 'system/config on A');
    ok(await B.admin('PATCH', '/api/tenants/default', { body: { kickout: false } }), 'PATCH on B');
    for (const node of cl.nodes) {
      await eventually(async () => {
        const c = await configOf(node);
        return c.force_user_auth === false && c.kickout === false;
      }, 15000, `both changes on ${node.label}`);
    }
    // Put them back (and prove they can still change).
    ok(await A.api('POST', '/admin/system/config', { body: { forceUserAuth: true } }), 'system/config back');
    ok(await B.admin('PATCH', '/api/tenants/default', { body: { kickout: true } }), 'PATCH back');
    // B's change reaches A by announcement (or the reconcile pass), not at once.
    await eventually(async () => {
      const c = await configOf(A);
      return c.force_user_auth === true && c.kickout === true;
    }, 15000, 'both changes put back, seen on A');
  });

  test('concurrent changes of different fields on different nodes all land', T, async () => {
    const [A, B, C] = cl.nodes;
    for (let i = 1; i <= 5; i++) {
      const answers = await Promise.all([
        A.admin('PATCH', '/api/tenants/default', { body: { max_rooms_per_socket: 10 + i } }),
        B.admin('PATCH', '/api/tenants/default', { body: { auth_attempts_per_minute: 20 + i } }),
        C.admin('PATCH', '/api/tenants/default', { body: { sync_page_size: 100 + i } }),
      ]);
      answers.forEach((r, k) => ok(r, `PATCH ${k} of round ${i}`));
    }
    for (const node of cl.nodes) {
      await eventually(async () => {
        const c = await configOf(node);
        return c.max_rooms_per_socket === 15 && c.auth_attempts_per_minute === 25 && c.sync_page_size === 105;
      }, 15000, `every last value on ${node.label}`);
    }
  });

  test('a key rotated while Redis is down reaches every node, and the old key is refused everywhere', T, async () => {
    const [A, B, C] = cl.nodes;
    const oldKey = cl.apiKey;
    for (const node of cl.nodes) assert.equal(await statusWith(node, oldKey), 200, `old key works on ${node.label} first`);
    await cl.redis.kill9();
    // No announcement can reach B and C now; the store (MongoDB) is up.
    const rotated = ok(await A.admin('POST', '/api/tenants/default/keys', { body: {} }), 'rotate on A');
    const newKey = rotated.api_key;
    assert.equal(await statusWith(A, newKey), 200, 'new key on A');
    assert.equal(await statusWith(A, oldKey), 401, 'old key refused on A');
    for (const node of [B, C]) {
      await eventually(async () => (await statusWith(node, newKey)) === 200, 15000, `new key accepted on ${node.label} with Redis down`);
      assert.equal(await statusWith(node, oldKey), 401, `old key refused on ${node.label}`);
    }
    await cl.redis.restart();
    await eventually(async () => {
      const h = await B.api('GET', '/healthz', { key: null });
      return h.status === 200;
    }, 30000, 'B healthy after the Redis restart');
    for (const node of cl.nodes) {
      assert.equal(await statusWith(node, newKey), 200, `new key on ${node.label} after the restart`);
      assert.equal(await statusWith(node, oldKey), 401, `old key still refused on ${node.label}`);
    }
    for (const node of cl.nodes) node.apiKey = newKey;
    cl.apiKey = newKey;
  });
});
