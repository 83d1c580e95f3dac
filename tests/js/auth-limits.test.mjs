// Timeouts, the auth rate limit, kickout config, and per-tenant limits
// (docs/protocol.md, "Tenant settings"). Each test configures its own tenant through
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

  /** Asserts that an answer c got is `want`; when it is not, the message shows c's whole log. */
  const expectAnswer = (c, got, want) => assert.deepEqual(got, want, `[${c.label}] log:\n    ${c.summary()}`);

  test('authenticate right at the auth deadline: either success (and the socket stays) or the timeout (and the disconnect), never both', { timeout: 60000 }, async (ctx) => {
    const t = await tenant({ auth_timeout_ms: 300, join_timeout_ms: 0 });
    const users = [];
    for (let i = 0; i < 16; i++) {
      const uid = rid('edge');
      users.push({ uid, token: await t.token(uid) });
    }
    const socks = await Promise.all(users.map(async (u) => ({ ...u, c: track(await connect(srv, { ns: t.ns, label: u.uid })), at: Date.now() })));
    // Positive control: a socket connected after all of them that never
    // authenticates; once it has timed out, every deadline above has passed.
    const control = track(await connect(srv, { ns: t.ns, label: 'control (never authenticates)' }));
    const allDeadlinesPassed = control.waitFor('authenticate');
    const outcomes = await Promise.all(socks.map(async ({ uid, token, c, at }, i) => {
      await sleep(Math.max(0, at + 240 + i * 8 - Date.now())); // 240..360 ms after connect
      c.emit('authenticate', { uid, token });
      const first = await c.waitFor('authenticate');
      if (first?.status === 0) {
        expectAnswer(c, first, { status: 0, data: 'auth success' });
        await allDeadlinesPassed;
        // answered after anything the deadline sent this socket
        expectAnswer(c, await c.emitAck('join', { roomId: rid('r') }), { status: 0, data: 'join success' });
        assert.deepEqual(c.received('authenticate'), [first], `[${uid}] was told "auth success" and then the timeout`);
        assert.ok(c.connected && !c.received('disconnect').length, `[${uid}] was told "auth success" and then disconnected`);
        return 'success';
      }
      expectAnswer(c, first, { status: 1, data: 'authentication timeout' });
      assert.equal(await c.waitDisconnect(), 'io server disconnect', `[${uid}] timed out but was not disconnected`);
      // the log is complete once disconnected
      assert.ok(c.received('authenticate').every((a) => a?.status === 1), `[${uid}] got both the timeout and success: ${JSON.stringify(c.received('authenticate'))}`);
      return 'timeout';
    }));
    expectAnswer(control, await allDeadlinesPassed, { status: 1, data: 'authentication timeout' });
    ctx.diagnostic(`auth success: ${outcomes.filter((o) => o === 'success').length}, timeout: ${outcomes.filter((o) => o === 'timeout').length}`);
  });

  test('join right at the join deadline: either "join success" (and the socket stays) or the timeout (and the disconnect), never both', { timeout: 60000 }, async (ctx) => {
    const t = await tenant({ join_timeout_ms: 300 });
    const socks = await Promise.all(Array.from({ length: 12 }, async (_, i) => ({ c: await t.login({ label: `j${i}` }), at: Date.now() })));
    // Positive control: a socket authenticated after all of them that never
    // joins; once it has timed out, every join deadline above has passed.
    const control = await t.login({ label: 'control (never joins)' });
    const allDeadlinesPassed = control.waitFor('join');
    const outcomes = await Promise.all(socks.map(async ({ c, at }, i) => {
      await sleep(Math.max(0, at + 240 + i * 10 - Date.now())); // 240..350 ms after authentication
      c.emit('join', { roomId: rid('r') });
      const first = await c.waitFor('join');
      if (first?.status === 0) {
        expectAnswer(c, first, { status: 0, data: 'join success' });
        await allDeadlinesPassed;
        // answered after anything the deadline sent this socket
        assert.equal((await c.emitAck('sync', { offset: 0 }))?.status, 0, `[${c.label}] sync after the deadline`);
        assert.deepEqual(c.received('join'), [first], `[${c.label}] was told "join success" and then the timeout`);
        assert.ok(c.connected && !c.received('disconnect').length, `[${c.label}] was told "join success" and then disconnected`);
        return 'success';
      }
      expectAnswer(c, first, { status: 1, data: 'join timeout' });
      assert.equal(await c.waitDisconnect(), 'io server disconnect', `[${c.label}] timed out but was not disconnected`);
      assert.ok(c.received('join').every((j) => j?.status === 1), `[${c.label}] got both the timeout and "join success": ${JSON.stringify(c.received('join'))}`);
      return 'timeout';
    }));
    expectAnswer(control, await allDeadlinesPassed, { status: 1, data: 'join timeout' });
    ctx.diagnostic(`join success: ${outcomes.filter((o) => o === 'success').length}, timeout: ${outcomes.filter((o) => o === 'timeout').length}`);
  });

  test('auth timeout does not hit an authenticated socket', T, async () => {
    // long enough for connect + authenticate on a loaded machine
    const t = await tenant({ auth_timeout_ms: 3000, join_timeout_ms: 0 });
    const c = await t.login();
    // Positive control: a socket connected after c that never authenticates
    // times out; c's deadline, which started earlier, has passed too.
    const control = track(await connect(srv, { ns: t.ns, label: 'control (never authenticates)' }));
    expectAnswer(control, await control.waitFor('authenticate'), { status: 1, data: 'authentication timeout' });
    // answered after anything c's deadline sent it
    expectAnswer(c, await c.emitAck('join', { roomId: rid('r') }), { status: 0, data: 'join success' });
    assert.ok(c.connected);
    assert.deepEqual(c.received('authenticate').map((a) => a?.status), [0], 'only "auth success", never the timeout');
  });

  test('join timer starts when authentication succeeds; a joined socket stays', T, async () => {
    const t = await tenant({ auth_timeout_ms: 15000, join_timeout_ms: 3000 });
    const uid = rid('u');
    const token = await t.token(uid);
    const c = track(await connect(srv, { ns: t.ns, label: 'authenticates late' }));
    // Positive control: a socket authenticated right after c connected, that
    // never joins: its join timeout fires after a timer started at c's connect
    // would have, and before c's own (started at c's authentication).
    const early = await t.login({ label: 'control (authenticated at once)' });
    await sleep(2400); // c authenticates 2.4 s after connecting: before 3 s from connect
    assert.equal((await c.emitAck('authenticate', { uid, token })).status, 0);
    expectAnswer(early, await early.waitFor('join'), { status: 1, data: 'join timeout' });
    // answered after anything a join timer started at connect would have sent c
    assert.equal((await c.emitAck('sync', { offset: 0 }))?.status, 1, 'sync before a join is refused, but answered');
    assert.deepEqual(c.received('join'), [], 'join timer must not start at connect time');
    assert.ok(c.connected, 'join timer must not start at connect time');
    // and it does run from the authentication
    expectAnswer(c, await c.waitFor('join'), { status: 1, data: 'join timeout' });
    assert.equal(await c.waitDisconnect(), 'io server disconnect');

    const joined = await t.loginJoin(rid('r'));
    // Positive control: a socket authenticated after it that never joins times out
    const idle = await t.login({ label: 'control (never joins)' });
    expectAnswer(idle, await idle.waitFor('join'), { status: 1, data: 'join timeout' });
    // answered after anything the join deadline sent the joined socket
    assert.equal((await joined.emitAck('sync', { offset: 0 }))?.status, 0);
    assert.deepEqual(joined.received('join').map((j) => j?.status), [0], 'a socket that joined gets no join timeout');
    assert.ok(joined.connected, 'a socket that joined is not disconnected by the join timeout');
  });

  test('join_timeout_ms 0 turns the join timeout off', T, async () => {
    const t = await tenant({ join_timeout_ms: 0, auth_timeout_ms: 3000 });
    const c = await t.login();
    // Positive control: in a tenant with a 3 s join timeout, a socket
    // authenticated after c that does not join is timed out.
    const timed = await tenant({ join_timeout_ms: 3000 });
    const control = await timed.login({ label: 'control (3 s join timeout)' });
    expectAnswer(control, await control.waitFor('join'), { status: 1, data: 'join timeout' });
    // c, 3 s after authenticating without a join: answered, no timeout, connected
    assert.equal((await c.emitAck('sync', { offset: 0 }))?.status, 1, 'sync before a join is refused, but answered');
    assert.deepEqual(c.received('join'), [], 'no join timeout');
    assert.ok(c.connected);
    expectAnswer(c, await c.emitAck('join', { roomId: rid('r') }), { status: 0, data: 'join success' });
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
    // a kickout is sent before A2's authenticate is answered: it would reach A before this ack
    assert.equal((await a.emitAck('msg', { data: 'to my other tab', storage: 0, msgId: 1 })).status, 0);
    await a.expectNo('kickout', 0);
    assert.ok(a.connected && a2.connected);
    assert.equal((await a2.waitFor('msg')).data, 'to my other tab', 'msg reaches every other socket, also of the same uid');
    // Positive control: A2 answers; A's first msg is the answer, not its own msg back
    assert.equal((await a2.emitAck('msg', { data: 'back', storage: 0, msgId: 2 })).status, 0);
    assert.equal((await a.waitFor('msg')).data, 'back', 'the sender does not get its own msg back');
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
    assert.match(big.data, /^message too large: \d+ bytes, the limit is 1000$/);
    assert.equal((await a.emitAck('msg', { data: 'x'.repeat(500), storage: 0, msgId: 's' })).status, 0);
    assert.equal((await b.waitFor('msg')).msgId, 's');
    // Counted by its kind, not as any refused msg.
    const metrics = (await srv.api('GET', '/metrics', { key: srv.adminKey })).text;
    assert.match(metrics, new RegExp(`^hookwire_refused_total\\{tenant="${t.name}",reason="msg_too_large"\\} 1$`, 'm'));
    assert.doesNotMatch(metrics, new RegExp(`^hookwire_refused_total\\{tenant="${t.name}",reason="msg"\\}`, 'm'));
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
    const extra = track(await connect(srv, { ns: t.ns, expectConnect: false, label: 'one too many' }));
    // answered one way or the other (refused, or let in and then refused), before it is closed
    await eventually(() => extra.log.some((e) => e.event === 'connect_error' || e.event === 'connect'), undefined, 'the connection beyond the quota is answered');
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
