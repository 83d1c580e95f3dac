// Timeouts, the auth rate limit, kickout config, and per-tenant limits
// (PROTOCOL.md pinned details). Each test configures its own tenant through
// the tenants REST API, so the limits are short and tests do not interfere.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { closeAll, connect, eventually, login, loginJoin, ok, rid, sleep, startServer, syncAll, syncData, tokenFor } from './harness.mjs';

const T = { timeout: 30000 };

describe('timeouts, rate limit and limits', () => {
  let srv;
  const clients = [];
  const track = (c) => { clients.push(c); return c; };
  before(async () => { srv = await startServer(); });
  after(async () => { closeAll(clients); await srv?.destroy(); });
  afterEach(() => closeAll(clients.splice(0)));

  /** Start a rate-limit test well inside a wall-clock minute, in case the server's fixed window is aligned to minutes. */
  const awayFromMinuteEdge = async () => {
    const intoMinute = Date.now() % 60000;
    if (intoMinute > 50000) await sleep(60000 - intoMinute + 100);
  };

  /** Wait until the server counts at most n connected sockets in tenant t (the max_connections quota). */
  const socketsAtMost = (t, n) => eventually(async () => {
    const st = ok(await srv.admin('GET', '/admin/monitor/stat', { tenant: t.name }));
    return st.online_socket_count <= n;
  }, 20000, `at most ${n} sockets counted in tenant ${t.name}`);

  /** A fresh tenant with the given config; returns { name, key, ns, login(opts), loginJoin(room, opts) }. */
  const tenant = async (config) => {
    const name = rid('t');
    const d = ok(await srv.admin('POST', '/api/tenants', { body: { name, config } }), `create tenant ${JSON.stringify(config)}`);
    const t = { name, key: d.api_key, ns: `/${name}` };
    t.login = async (opts = {}) => track(await login(srv, { tenant: name, key: t.key, ...opts }));
    t.loginJoin = async (room, opts = {}) => track(await loginJoin(srv, room, { tenant: name, key: t.key, ...opts }));
    t.token = (uid) => tokenFor(srv, uid, { tenant: name, key: t.key });
    return t;
  };

  for (const transport of ['websocket', 'polling']) {
    const transports = [transport];
    test(`auth timeout (${transport}): {status:1, data:"authentication timeout"} then disconnect`, T, async () => {
      const t = await tenant({ auth_timeout_ms: 400 });
      const t0 = Date.now();
      const c = track(await connect(srv, { ns: t.ns, transports }));
      const ev = await c.waitFor('authenticate', 5000);
      assert.deepEqual(ev, { status: 1, data: 'authentication timeout' });
      await c.waitDisconnect(2000);
      const dt = Date.now() - t0;
      assert.ok(dt >= 300, `disconnected after ${dt} ms, before the 400 ms timeout`);
    });

    test(`join timeout (${transport}): an authenticated socket that does not join is disconnected`, T, async () => {
      const t = await tenant({ join_timeout_ms: 400 });
      const c = await t.login({ transports });
      const t0 = Date.now();
      assert.equal(await c.waitDisconnect(5000), 'io server disconnect');
      const dt = Date.now() - t0;
      assert.ok(dt >= 300, `disconnected ${dt} ms after auth, before the 400 ms join timeout`);
    });
  }

  test('authenticate right at the auth deadline: either success (and the socket stays) or the timeout, never both', { timeout: 60000 }, async () => {
    const t = await tenant({ auth_timeout_ms: 300, join_timeout_ms: 0 });
    const users = [];
    for (let i = 0; i < 16; i++) {
      const uid = rid('edge');
      users.push({ uid, token: await t.token(uid) });
    }
    const results = await Promise.all(users.map(async ({ uid, token }, i) => {
      const c = track(await connect(srv, { ns: t.ns, label: uid }));
      await sleep(240 + i * 8); // 240..360 ms after connect
      c.emit('authenticate', { uid, token });
      await sleep(900);
      return { uid, auths: c.received('authenticate'), connected: c.connected };
    }));
    for (const r of results) {
      const success = r.auths.some((a) => a.status === 0);
      const timedOut = r.auths.some((a) => a.status === 1);
      assert.ok(!(success && timedOut), `${r.uid} got both the timeout and success: ${JSON.stringify(r.auths)}`);
      if (success) assert.ok(r.connected, `${r.uid} was told "auth success" and then disconnected`);
    }
  });

  test('join right at the join deadline: either "join success" (and the socket stays) or the disconnect, never both', { timeout: 60000 }, async () => {
    const t = await tenant({ join_timeout_ms: 300 });
    const socks = [];
    for (let i = 0; i < 12; i++) socks.push(await t.login({ label: `j${i}` }));
    const t0 = Date.now();
    const results = await Promise.all(socks.map(async (c, i) => {
      await sleep(Math.max(0, 240 + i * 10 - (Date.now() - t0)));
      c.emit('join', { roomId: rid('r') });
      await sleep(900);
      return { label: c.label, joins: c.received('join'), connected: c.connected };
    }));
    for (const r of results) {
      const success = r.joins.some((j) => j.status === 0);
      if (success) assert.ok(r.connected, `${r.label} was told "join success" and then disconnected: ${JSON.stringify(r.joins)}`);
    }
  });

  test('auth timeout does not hit an authenticated socket', T, async () => {
    // long enough for connect + authenticate on a loaded machine
    const t = await tenant({ auth_timeout_ms: 3000, join_timeout_ms: 0 });
    const c = await t.login();
    await sleep(3500);
    assert.ok(c.connected);
    assert.ok(!c.received('authenticate').some((a) => a.status === 1));
  });

  test('join timer starts when authentication succeeds; a joined socket stays', T, async () => {
    // margins of 1.5 s either way: a loaded machine may answer late or oversleep
    const t = await tenant({ auth_timeout_ms: 15000, join_timeout_ms: 3000 });
    const uid = rid('u');
    const token = await t.token(uid);
    const c = track(await connect(srv, { ns: t.ns }));
    await sleep(2400);
    assert.equal((await c.emitAck('authenticate', { uid, token })).status, 0);
    await sleep(1500); // >= 3.9 s after connect, 1.5 s after auth
    assert.ok(c.connected, 'join timer must not start at connect time');
    await c.waitDisconnect(15000);

    const joined = await t.loginJoin(rid('r'));
    await sleep(4500);
    assert.ok(joined.connected, 'a socket that joined is not disconnected by the join timeout');
  });

  test('join_timeout_ms 0 turns the join timeout off', T, async () => {
    const t = await tenant({ join_timeout_ms: 0, auth_timeout_ms: 3000 });
    const c = await t.login();
    await sleep(3500);
    assert.ok(c.connected);
  });

  test('auth rate limit: every attempt counts per uid and client address, the 31st within a minute is refused even with the right token; the uid\'s owner on another address is not locked out', { timeout: 60000 }, async () => {
    const uid = rid('u');
    const token = await tokenFor(srv, uid);
    await awayFromMinuteEdge();
    for (let i = 1; i <= 30; i++) {
      const c = track(await connect(srv, { label: `attempt ${i}` }));
      const right = i > 10; // 10 failures, then 20 successes: all count
      const r = await c.emitAck('authenticate', { uid, token: right ? token : 'wrong' });
      assert.equal(r.status, right ? 0 : 1, `attempt ${i}: ${JSON.stringify(r)}`);
      c.close();
    }
    const c31 = track(await connect(srv, { label: 'attempt 31' }));
    const r31 = await c31.emitAck('authenticate', { uid, token });
    assert.equal(r31.status, 1, `31st attempt must be refused: ${JSON.stringify(r31)}`);
    assert.equal(typeof r31.data, 'string');
    await c31.waitDisconnect();
    // the same uid from another client address (127.0.0.2) still logs in:
    // 30 bad attempts from one client cannot lock the user out
    const owner = track(await connect(srv, { label: 'owner on 127.0.0.2', ioOpts: { localAddress: '127.0.0.2' } }));
    assert.deepEqual(await owner.emitAck('authenticate', { uid, token }), { status: 0, data: 'auth success' });
    // and the first address is still refused (the count was not reset)
    const again = track(await connect(srv, { label: 'attempt 32' }));
    assert.equal((await again.emitAck('authenticate', { uid, token })).status, 1);
    // other uids are not limited
    track(await login(srv));
  });

  test('auth_attempts_per_minute is configurable per tenant', T, async () => {
    const t = await tenant({ auth_attempts_per_minute: 3 });
    const uid = rid('u');
    const token = await t.token(uid);
    await awayFromMinuteEdge();
    for (let i = 0; i < 3; i++) {
      const c = track(await connect(srv, { ns: t.ns }));
      assert.equal((await c.emitAck('authenticate', { uid, token })).status, 0);
      c.close();
    }
    const c = track(await connect(srv, { ns: t.ns }));
    assert.equal((await c.emitAck('authenticate', { uid, token })).status, 1);
  });

  test('kickout:false lets the same uid be online twice', T, async () => {
    const t = await tenant({ kickout: false });
    const room = rid('r');
    const a = await t.loginJoin(room, { label: 'A1' });
    const a2 = await t.loginJoin(room, { uid: a.uid, token: a.token, label: 'A2' });
    await a.expectNo('kickout', 400);
    assert.ok(a.connected && a2.connected);
    await a.emitAck('msg', { data: 'to my other tab', storage: 0, msgId: 1 });
    assert.equal((await a2.waitFor('msg')).data, 'to my other tab', 'msg reaches every other socket, also of the same uid');
    await a.expectNo('msg', 200);
  });

  test('force_user_auth:false (tenant config) accepts any uid without a token', T, async () => {
    const t = await tenant({ force_user_auth: false });
    const c = track(await connect(srv, { ns: t.ns }));
    assert.equal((await c.emitAck('authenticate', { uid: rid('anyone') })).status, 0);
  });

  test('max_msg_bytes: a tenant limit of 1000 bytes refuses a 2000-byte msg, accepts a 500-byte one', T, async () => {
    const t = await tenant({ max_msg_bytes: 1000 });
    const room = rid('r');
    const a = await t.loginJoin(room);
    const b = await t.loginJoin(room);
    const big = await a.emitAck('msg', { data: 'x'.repeat(2000), storage: 0, msgId: 'b' });
    assert.equal(big.status, 1);
    assert.equal((await a.emitAck('msg', { data: 'x'.repeat(500), storage: 0, msgId: 's' })).status, 0);
    assert.equal((await b.waitFor('msg')).msgId, 's');
  });

  test('max_rooms_per_socket: joining one room too many is refused with status 1', T, async () => {
    const t = await tenant({ max_rooms_per_socket: 2 });
    const c = await t.login();
    assert.equal((await c.emitAck('join', { roomId: rid('r') })).status, 0);
    assert.equal((await c.emitAck('join', { roomId: rid('r') })).status, 0);
    const third = await c.emitAck('join', { roomId: rid('r') });
    assert.equal(third.status, 1, JSON.stringify(third));
    assert.ok(c.connected);
  });

  test('max_msgs_per_room: the room keeps the newest N inserts', T, async () => {
    const t = await tenant({ max_msgs_per_room: 5 });
    const a = await t.loginJoin(rid('r'));
    for (let i = 0; i < 8; i++) assert.equal((await a.emitAck('msg', { data: i, storage: 0, msgId: i })).status, 0);
    const { msgs } = await syncAll(a);
    assert.deepEqual(msgs.map((m) => m.data), [3, 4, 5, 6, 7]);
  });

  test('sync_page_size: pages follow the tenant setting', T, async () => {
    const t = await tenant({ sync_page_size: 3 });
    const a = await t.loginJoin(rid('r'));
    for (let i = 0; i < 7; i++) await a.emitAck('msg', { data: i, storage: 0, msgId: i });
    const { pages, msgs } = await syncAll(a);
    assert.deepEqual(pages.map((p) => syncData(p).length), [3, 3, 1]);
    assert.deepEqual(msgs.map((m) => m.data), [0, 1, 2, 3, 4, 5, 6]);
  });

  test('max_connections does not leak: after failed auths, kickouts, leaves, timeouts and refusals the full quota is available again', { timeout: 60000 }, async () => {
    const t = await tenant({ max_connections: 3, auth_timeout_ms: 3000 });
    const uid = rid('u');
    const token = await t.token(uid);
    for (let i = 0; i < 4; i++) {
      const bad = track(await connect(srv, { ns: t.ns }));
      bad.emit('authenticate', { uid, token: 'wrong' });
      await bad.waitDisconnect();
      const a = await t.login({ uid, token });
      const b = await t.login({ uid, token }); // kicks a
      await a.waitDisconnect();
      assert.equal((await b.emitAck('join', { roomId: 'r' })).status, 0);
      b.emit('leave');
      await b.waitDisconnect();
      if (i === 0) {
        const idle = track(await connect(srv, { ns: t.ns })); // auth timeout
        await idle.waitDisconnect(15000);
      }
    }
    // fill the quota, try one more, release, and fill again
    const full = [await t.login(), await t.login(), await t.login()];
    const extra = track(await connect(srv, { ns: t.ns, expectConnect: false }));
    await Promise.race([extra.waitFor('connect_error', 3000), extra.waitFor('disconnect', 3000), extra.waitFor('error', 3000)]).catch(() => {});
    closeAll(full, extra);
    await socketsAtMost(t, 0);
    const again = [await t.login(), await t.login(), await t.login()];
    assert.ok(again.every((c) => c.connected), 'three connections fit again');
    closeAll(again);
    await eventually(async () => {
      const st = ok(await srv.admin('GET', '/admin/monitor/stat', { tenant: t.name }));
      return st.online_user_count === 0 && st.online_room_count === 0;
    }, 20000, 'stat back to 0 users and 0 rooms');
  });

  test('max_connections: the tenant refuses a connection beyond the limit, and admits again after one leaves', T, async () => {
    const t = await tenant({ max_connections: 2 });
    const a = await t.login();
    await t.login();
    const third = track(await connect(srv, { ns: t.ns, expectConnect: false }));
    const outcome = await Promise.race([
      third.waitFor('connect', 5000).then(() => 'connected'),
      third.waitFor('connect_error', 5000).then(() => 'refused'),
    ]);
    if (outcome === 'connected') {
      // refused after connecting: it must not be able to authenticate, and gets disconnected
      const uid = rid('u');
      const r = await third.emitAck('authenticate', { uid, token: await t.token(uid) }).catch(() => ({ status: 'no ack' }));
      assert.notEqual(r.status, 0, 'third connection must not be admitted');
    }
    a.close();
    await socketsAtMost(t, 1);
    await t.login();
  });
});
