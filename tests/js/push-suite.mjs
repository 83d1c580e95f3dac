// Business-server push (docs/protocol.md section 7, "Pushes from a business server"):
// POST /send, per-user rooms, acknowledged delivery, _batch, _resync, _settings,
// per-device queues and device_ttl. Run per transport by push.*.test.mjs.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  WAIT_MS, closeAll, connect, eventually, login, ok, pushAcks, pushAcksReach, rid, sleep, startServer, tokenFor,
} from './harness.mjs';

const T = { timeout: 30000 };

export function pushSuite(transport) {
  const transports = [transport];

  describe(`push over ${transport}`, () => {
    let srv;
    const clients = [];
    const track = (c) => { clients.push(c); return c; };

    before(async () => { srv = await startServer(); });
    after(async () => { closeAll(clients); await srv?.destroy(); });
    afterEach(() => closeAll(clients.splice(0)));

    /**
     * With handshake auth, the server's `authenticate` event says the socket is
     * in its user room: `_settings` comes at connect, before the token check, so
     * a push sent on `_settings` could find the socket not yet in its user room
     * and go to the queue instead of being delivered live.
     */
    const authenticated = async (c) => {
      const r = await c.waitFor('authenticate');
      assert.equal(r?.status, 0, `[${c.label}] handshake auth: ${JSON.stringify(r)}`);
      return c;
    };

    /** A device of user uid: handshake auth (+ deviceId) on the tenant's namespace, authenticated. */
    const device = async (uid, { deviceId, tenant, via = 'handshake' } = {}) => {
      const c = track(await login(srv, {
        uid, transports, tenant, via,
        query: deviceId ? { deviceId } : undefined,
        label: `${uid}${deviceId ? '/' + deviceId : ''}`,
      }));
      return via === 'handshake' ? authenticated(c) : c;
    };

    /** Wait until the server no longer counts anyone online (previous sockets fully closed). */
    const allOffline = (tenant) => eventually(async () => {
      const s = ok(await srv.api('GET', '/admin/monitor/stat', { tenant, key: srv.adminKey }), 'stat');
      return s.online_user_count === 0;
    }, 20000, 'every socket closed on the server');

    /** POST /send with the key in the query: ?site=default&apiKey=<key> */
    const send = async (body, { query = {} } = {}) => {
      const r = await srv.api('POST', '/send', { body, keyVia: 'query', query: { site: 'default', ...query } });
      return ok(r, `/send ${JSON.stringify(body)}`);
    };

    /** The `_batch` a fresh connection receives: { events, ack } (events [] when none arrives in time). */
    const batchOf = async (c, ms = WAIT_MS) => {
      try {
        const e = await c.waitForEntry('_batch', ms, (events) => Array.isArray(events) && events.length > 0);
        return { events: e.args[0], ack: e.ack };
      } catch {
        return { events: [], ack: null };
      }
    };

    /**
     * An ack callback is fire-and-forget for the client: nothing tells it when the
     * server has removed the push. Call the ack(s) in fn and wait until the server
     * has handled n more acks (hookwire_push_acks_total) before going on.
     */
    const acked = async (fn, { n = 1, tenant, server = srv } = {}) => {
      const before = await pushAcks(server, tenant);
      await fn();
      await pushAcksReach(server, before + n, tenant);
    };

    /**
     * Nothing is pending for a device. A marker is pushed while the device is
     * offline, then it connects: the `_batch` on connect carries everything
     * pending for the device, oldest first, so it must be exactly the marker
     * (a leftover would be in it, ahead of the marker; a batch that never
     * comes fails too). The marker batch is acked, so the queue ends empty.
     *
     * connectDevice: () => Client (authenticated); sendPush({event, args})
     * pushes to the device's user room; server, tenant: where the ack is
     * counted; marker: the marker's argument (default: a fresh id).
     */
    const expectNothingPending = async ({ connectDevice, sendPush, server, tenant, marker = rid('marker') }) => {
      await sendPush({ event: 'marker', args: [marker] });
      const c = await connectDevice();
      const { events, ack } = await batchOf(c);
      assert.deepEqual(events, [['marker', marker]],
        `[${c.label}] the _batch on connect must carry only the marker pushed just before; anything ahead of it was still pending`);
      await acked(() => ack(), { tenant, server });
      return c;
    };

    /** expectNothingPending for a device of uid on the default tenant of srv. */
    const nothingPendingFor = (uid, { deviceId } = {}) => expectNothingPending({
      connectDevice: () => device(uid, { deviceId }),
      sendPush: (body) => send({ rooms: [`user_${uid}`], ...body }),
    });

    /** The uid of a remote_* payload, as a string. */
    const U = (p) => String(p?.uid);

    test('_settings {device_ttl} on connect (authenticated or not)', T, async () => {
      const c = await device(rid('u'));
      const s = await c.waitFor('_settings');
      assert.equal(s.device_ttl, 3600);
      const plain = track(await connect(srv, { transports }));
      assert.equal((await plain.waitFor('_settings')).device_ttl, 3600);
    });

    test('/send to a user room: the device gets event(...args, ack); after the ack nothing is pending', T, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      await send({ rooms: [`user_${uid}`], event: 'update_store', args: ['user', { id: 1, age: 5 }] });
      const e = await c.waitForEntry('update_store');
      assert.deepEqual(e.args, ['user', { id: 1, age: 5 }]);
      assert.equal(typeof e.ack, 'function', 'a push to a user room asks for an ack');
      await acked(() => e.ack());
      c.close();
      await allOffline();
      await nothingPendingFor(uid);
    });

    test('a socket authenticated with the `authenticate` event is in its user room too', T, async () => {
      const uid = rid('u');
      const c = await device(uid, { via: 'event' });
      await send({ rooms: [`user_${uid}`], event: 'ev_auth', args: [{ ok: true }] });
      const e = await c.waitForEntry('ev_auth');
      assert.deepEqual(e.args, [{ ok: true }]);
      assert.equal(typeof e.ack, 'function');
      e.ack();
    });

    test('not acked: delivered again on reconnect as _batch [[event, ...args], ...] in send order; acking the batch clears it', T, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      await send({ rooms: [`user_${uid}`], event: 'e1', args: [1] });
      await send({ rooms: [`user_${uid}`], event: 'e2', args: ['a', { b: 2 }] });
      await c.waitFor('e1');
      await c.waitFor('e2');
      c.close();
      await allOffline();

      const c2 = await device(uid);
      const { events, ack } = await batchOf(c2);
      assert.deepEqual(events, [['e1', 1], ['e2', 'a', { b: 2 }]]);
      assert.equal(typeof ack, 'function', '_batch asks for one ack');
      await acked(() => ack());
      c2.close();
      await allOffline();
      await nothingPendingFor(uid);
    });

    test('re-login (kickout) with a push still unacked: the newcomer gets it as _batch', T, async () => {
      const uid = rid('u');
      const old = await device(uid);
      await old.waitFor('_settings');
      await send({ rooms: [`user_${uid}`], event: 'pending', args: ['p1'] });
      await old.waitForEntry('pending'); // never acked
      const fresh = await device(uid);
      await old.waitFor('kickout');
      const { events, ack } = await batchOf(fresh);
      assert.deepEqual(events, [['pending', 'p1']]);
      ack();
    });

    test('offline user: pushes queue up and arrive as one _batch on connect', T, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      c.close();
      await allOffline();
      for (let i = 0; i < 3; i++) await send({ rooms: [`user_${uid}`], event: 'n', args: [i] });
      const c2 = await device(uid);
      const { events, ack } = await batchOf(c2);
      assert.deepEqual(events, [['n', 0], ['n', 1], ['n', 2]]);
      ack();
    });

    test('300 queued pushes arrive as ordered _batch pages of 100, each after the previous ack; the acks clear them', { timeout: 60000 }, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      c.close();
      await allOffline();
      await Promise.all(Array.from({ length: 10 }, async (_, k) => {
        for (let i = k * 30; i < (k + 1) * 30; i++) await send({ rooms: [`user_${uid}`], event: 'bulk', args: [i, { pad: 'x'.repeat(100) }] });
      }));
      const c2 = await device(uid);
      const order = [];
      for (let page = 0; page < 3; page++) {
        const { events, ack } = await batchOf(c2, 10000);
        assert.equal(events.length, 100, `page ${page + 1} holds 100`);
        // The next page waits for this ack: nothing more has come yet.
        assert.equal(c2.received('_batch').length, page + 1, 'one page at a time');
        order.push(...events.map((e) => e[1]));
        // The last page's ack settles all three: wait until the server handled it.
        if (page < 2) ack();
        else await acked(() => ack());
      }
      assert.deepEqual([...order].sort((x, y) => x - y), [...Array(300).keys()], 'all 300 pushes');
      for (let k = 0; k < 10; k++) {
        const mine = order.filter((i) => Math.floor(i / 30) === k);
        assert.deepEqual(mine, [...mine].sort((x, y) => x - y), "each sender's pushes keep their send order");
      }
      c2.close();
      await allOffline();
      await nothingPendingFor(uid);
    });

    test('acking a _batch removes only what that batch carried', T, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      c.close();
      await allOffline();
      await send({ rooms: [`user_${uid}`], event: 'm', args: [1] });
      await send({ rooms: [`user_${uid}`], event: 'm', args: [2] });
      const c2 = await device(uid);
      const batch = await batchOf(c2);
      assert.deepEqual(batch.events, [['m', 1], ['m', 2]]);
      await send({ rooms: [`user_${uid}`], event: 'm', args: [3] });
      const live = await c2.waitForEntry('m');
      assert.deepEqual(live.args, [3]);
      await acked(() => batch.ack()); // not live.ack()
      c2.close();
      await allOffline();
      const c3 = await device(uid);
      const again = await batchOf(c3);
      assert.deepEqual(again.events, [['m', 3]], 'only the unacked live push is still pending');
    });

    /**
     * Answered after everything the server sent this socket before (one
     * connection keeps the order): a `_resync` sent before the last ack was
     * counted has arrived once this resolves.
     */
    const flushed = (c) => c.emitAck('join', { roomId: rid('flush') });

    test('resync=true: an ack for a newer push while the older one is never acked (its ack times out) clears the queue and sends _resync', T, async () => {
      // Its own node with a short ack timeout: the older push must time out.
      const quick = await startServer({ env: { HOOKWIRE_ACK_TIMEOUT_MS: '1500' } });
      try {
        const uid = rid('u');
        const c = track(await login(quick, { uid, transports, via: 'handshake' }));
        await authenticated(c);
        await c.waitFor('_settings');
        const qsend = async (body) => ok(await quick.api('POST', '/send', {
          body, keyVia: 'query', query: { site: 'default', resync: 'true' },
        }), '/send');
        await qsend({ rooms: [`user_${uid}`], event: 'r', args: [1] });
        await qsend({ rooms: [`user_${uid}`], event: 'r', args: [2] });
        const got = [await c.waitForEntry('r'), await c.waitForEntry('r')];
        assert.deepEqual(got.map((e) => e.args[0]).sort(), [1, 2]);
        const second = got.find((e) => e.args[0] === 2);
        const before = await pushAcks(quick);
        second.ack(); // 1 is never acked
        await c.waitFor('_resync');
        await pushAcksReach(quick, before + 1);
        c.close();
        await eventually(async () => {
          const s = ok(await quick.api('GET', '/admin/monitor/stat', { key: quick.adminKey }), 'stat');
          return s.online_user_count === 0;
        }, 20000, 'every socket closed on the server');
        // _resync cleared the queue, 1 included
        await expectNothingPending({
          connectDevice: async () => authenticated(track(await login(quick, { uid, transports, via: 'handshake' }))),
          sendPush: (body) => qsend({ rooms: [`user_${uid}`], ...body }),
          server: quick,
        });
      } finally {
        closeAll(clients.splice(0));
        await quick.destroy();
      }
    });

    test('resync=true: acks sent out of order, both before the ack timeout: no _resync, nothing pending', T, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      await send({ rooms: [`user_${uid}`], event: 'r', args: [1] }, { query: { resync: 'true' } });
      await send({ rooms: [`user_${uid}`], event: 'r', args: [2] }, { query: { resync: 'true' } });
      const got = [await c.waitForEntry('r'), await c.waitForEntry('r')];
      const [first, second] = [1, 2].map((n) => got.find((e) => e.args[0] === n));
      await acked(() => { second.ack(); first.ack(); }, { n: 2 });
      await flushed(c);
      await c.expectNo('_resync', 0);
      c.close();
      await allOffline();
      await nothingPendingFor(uid);
    });

    /**
     * The client acks in the order it received, and the server must handle
     * acks that arrive together in that order too: were they handled in
     * whatever order their tasks woke, an ack handled before an older one
     * would look out of order: a `_resync` the client did not deserve.
     */
    const noResyncAfter = async (N, sendAll, ackAll) => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      const burst = (i) => send({ rooms: [`user_${uid}`], event: 'burst', args: [i] }, { query: { resync: 'true' } });
      await acked(() => Promise.all([sendAll(burst), ackAll(c)]), { n: N });
      await flushed(c);
      await c.expectNo('_resync', 0);
      c.close();
      await allOffline();
      await nothingPendingFor(uid);
    };

    test('resync=true: 200 pushes acked in one burst, in the order received: no _resync, nothing pending', { timeout: 90000 }, async () => {
      const N = 200;
      await noResyncAfter(N, async (burst) => {
        for (let i = 0; i < N; i++) await burst(i);
      }, async (c) => {
        const got = [];
        for (let i = 0; i < N; i++) got.push(await c.waitForEntry('burst'));
        assert.deepEqual(got.map((e) => e.args[0]).sort((x, y) => x - y), [...Array(N).keys()]);
        for (const e of got) e.ack();
      });
    });

    test('resync=true: 200 pushes from 10 concurrent senders, each acked as it arrives: no _resync, nothing pending', { timeout: 90000 }, async () => {
      const N = 200;
      await noResyncAfter(N, (burst) => Promise.all(Array.from({ length: 10 }, async (_, k) => {
        for (let i = k; i < N; i += 10) await burst(i);
      })), async (c) => {
        for (let i = 0; i < N; i++) (await c.waitForEntry('burst')).ack();
      });
    });

    test('resync=true with in-order acks: no _resync', T, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      await send({ rooms: [`user_${uid}`], event: 'r', args: [1] }, { query: { resync: 'true' } });
      await send({ rooms: [`user_${uid}`], event: 'r', args: [2] }, { query: { resync: 'true' } });
      const first = await c.waitForEntry('r');
      const second = await c.waitForEntry('r');
      await acked(() => first.ack());
      await acked(() => second.ack());
      // a _resync is sent before its ack is counted: it has arrived once flushed answers
      await flushed(c);
      await c.expectNo('_resync', 0);
    });

    test('resync=false: an out-of-order ack removes just that push (no _resync); the older one stays pending', T, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      await send({ rooms: [`user_${uid}`], event: 'q', args: [1] });
      await send({ rooms: [`user_${uid}`], event: 'q', args: [2] });
      await c.waitForEntry('q');
      const second = await c.waitForEntry('q');
      await acked(() => second.ack());
      await flushed(c);
      await c.expectNo('_resync', 0);
      c.close();
      await allOffline();
      const c2 = await device(uid);
      assert.deepEqual((await batchOf(c2)).events, [['q', 1]]);
    });

    test('per-device queues (deviceId query parameter): each device gets and acks its own copy', T, async () => {
      const uid = rid('u');
      for (const d of ['phone', 'laptop']) {
        const c = await device(uid, { deviceId: d });
        await c.waitFor('_settings');
        c.close();
        await allOffline();
      }
      await send({ rooms: [`user_${uid}`], event: 'dev', args: ['x'] });

      const phone = await device(uid, { deviceId: 'phone' });
      const b1 = await batchOf(phone);
      assert.deepEqual(b1.events, [['dev', 'x']]);
      await acked(() => b1.ack());
      phone.close();
      await allOffline();

      const laptop = await device(uid, { deviceId: 'laptop' });
      const b2 = await batchOf(laptop);
      assert.deepEqual(b2.events, [['dev', 'x']], 'the laptop still has its own copy');
      await acked(() => b2.ack());
      laptop.close();
      await allOffline();

      await nothingPendingFor(uid, { deviceId: 'phone' });
    });

    test('two devices online at once (tenant kickout:false, join_timeout_ms:0 = push-only clients): each gets the live push and acks its own copy', T, async () => {
      const name = rid('t');
      const key = ok(await srv.admin('POST', '/api/tenants', { body: { name, config: { kickout: false, join_timeout_ms: 0 } } }), 'create tenant').api_key;
      const uid = rid('u');
      const token = await tokenFor(srv, uid, { tenant: name, key });
      const dev = async (deviceId) => authenticated(track(await connect(srv, { ns: `/${name}`, transports, query: { uid, token, deviceId }, label: deviceId })));
      const tab1 = await dev('tab1');
      const tab2 = await dev('tab2');
      await Promise.all([tab1.waitFor('_settings'), tab2.waitFor('_settings')]);
      ok(await srv.api('POST', '/send', { key, keyVia: 'query', query: { site: name }, body: { rooms: [`user_${uid}`], event: 'both', args: [7] } }));
      const e1 = await tab1.waitForEntry('both');
      const e2 = await tab2.waitForEntry('both');
      assert.deepEqual([e1.args, e2.args], [[7], [7]]);
      await tab1.expectNo('kickout', 0);
      await acked(() => e1.ack(), { tenant: name });
      tab1.close();
      tab2.close();
      await allOffline(name);
      const tsend = async (body) => ok(await srv.api('POST', '/send', { key, keyVia: 'query', query: { site: name }, body: { rooms: [`user_${uid}`], ...body } }), '/send');
      const marker = rid('marker');
      const again1 = await expectNothingPending({ connectDevice: () => dev('tab1'), sendPush: tsend, tenant: name, marker });
      again1.close();
      await allOffline(name);
      const again2 = await dev('tab2');
      assert.deepEqual((await batchOf(again2)).events, [['both', 7], ['marker', marker]], 'tab2 never acked: its copy is still pending, ahead of the marker');
      await srv.admin('DELETE', `/api/tenants/${name}`);
    });

    test('query auth ?uid=&token=&deviceId= gets its _batch', T, async () => {
      const uid = rid('u');
      const token = await tokenFor(srv, uid);
      const first = track(await connect(srv, { transports, query: { uid, token, deviceId: 'tab1' } }));
      await first.waitFor('_settings');
      first.close();
      await allOffline();
      await send({ rooms: [`user_${uid}`], event: 'hello', args: [] });
      const c = track(await connect(srv, { transports, query: { uid, token, deviceId: 'tab1' } }));
      assert.deepEqual((await batchOf(c)).events, [['hello']]);
    });

    test('form-encoded /send (rooms[]=...&event=...&args[]=...)', T, async () => {
      const uid = rid('u');
      const c = await device(uid);
      await c.waitFor('_settings');
      const form = new URLSearchParams();
      form.append('rooms[]', `user_${uid}`);
      form.append('event', 'formy');
      form.append('args[]', 'a');
      form.append('args[]', 'b');
      const r = await srv.api('POST', '/send', { form: form.toString(), keyVia: 'query' });
      ok(r, 'form /send');
      const e = await c.waitForEntry('formy');
      assert.deepEqual(e.args, ['a', 'b']);
      e.ack();
    });

    test('/send to a shared (non-user) room reaches the sockets that joined it', T, async () => {
      const room = rid('staff');
      const a = track(await login(srv, { transports }));
      assert.equal((await a.emitAck('join', { roomId: room })).status, 0);
      const outsider = track(await login(srv, { transports }));
      const elsewhere = rid('r');
      assert.equal((await outsider.emitAck('join', { roomId: elsewhere })).status, 0);
      await send({ rooms: [room], event: 'broadcast', args: [{ v: 1 }] });
      const e = await a.waitForEntry('broadcast');
      assert.deepEqual(e.args, [{ v: 1 }]);
      // a later push to the outsider's own room arrives after anything the first one sent it
      await send({ rooms: [elsewhere], event: 'broadcast', args: ['marker'] });
      assert.deepEqual((await outsider.waitForEntry('broadcast')).args, ['marker'], 'the outsider\'s first broadcast is the marker, not the push to the other room');
    });

    test('a user cannot `join` another user\'s private room and read (or ack away) their pushes', T, async () => {
      const victim = rid('victim');
      const v = await device(victim);
      await v.waitFor('_settings');
      const attacker = await device(rid('mallory'), { via: 'event' });
      const r = await attacker.emitAck('join', { roomId: `user_${victim}` });
      for (const internal of [`\u0001dev\u0001${victim}\u0001`, `\u0001dev\u0001${victim}\u0001d1`]) await attacker.emitAck('join', { roomId: internal });
      await send({ rooms: [`user_${victim}`], event: 'secret', args: ['for victim only'] });
      const e = await v.waitForEntry('secret');
      // The victim has it, so it has been emitted to every socket it reaches.
      // A later push to the attacker's own user room arrives after it.
      await send({ rooms: [`user_${attacker.uid}`], event: 'secret', args: ['marker'] });
      const first = await attacker.waitForEntry('secret');
      first.ack();
      assert.deepEqual(first.args, ['marker'],
        `a socket that joined user_<victim> (answered ${JSON.stringify(r)}) and the internal device room names received the victim's push; log:\n    ${attacker.summary()}`);
      e.ack();
    });

    test('joining a room named like another user\'s private room does not reach that user\'s socket (no msg, no remote_join)', T, async () => {
      const victim = rid('victim');
      const own = rid('own');
      const v = await device(victim, { via: 'event' });
      assert.equal((await v.emitAck('join', { roomId: own })).status, 0);
      const attacker = await device(rid('mallory'), { via: 'event' });
      for (const roomId of [`user_${victim}`, `\u0001dev\u0001${victim}\u0001`]) {
        const j = await attacker.emitAck('join', { roomId });
        if (j?.status === 0) {
          // joined a room-sync room of that name: a msg there must be relayed to it, and only to it
          const m = await attacker.emitAck('msg', { roomId, data: 'spoof', storage: 2, msgId: 'spoof' });
          assert.equal(m?.status, 0, `msg in the joined room ${JSON.stringify(roomId)}: ${JSON.stringify(m)}`);
        } else {
          // refused: a join refusal about that room name, not a limit or a broken session
          assert.equal(j?.status, 1, `join ${JSON.stringify(roomId)} answered ${JSON.stringify(j)}`);
          assert.ok(typeof j.data === 'string' && j.data.length > 0, `a refused join gives a reason: ${JSON.stringify(j)}`);
          assert.doesNotMatch(j.data, /not authenticated|timeout|too many rooms|roomId is required/, `join ${JSON.stringify(roomId)} refused for an unrelated reason`);
        }
      }
      // Positive control: the attacker's events are handled in order and each msg
      // is relayed before its ack, so anything they sent the victim is queued by
      // now; a friend's join and msg in the victim's own room come after it.
      const friend = track(await login(srv, { transports, label: 'friend' }));
      assert.equal((await friend.emitAck('join', { roomId: own })).status, 0);
      assert.equal((await friend.emitAck('msg', { data: 'marker', storage: 2, msgId: 'marker' })).status, 0);
      await v.waitFor('msg', undefined, (m) => m?.msgId === 'marker');
      assert.deepEqual(v.received('msg').map((m) => m?.msgId), ['marker'], `the victim got a msg from the look-alike rooms; log:\n    ${v.summary()}`);
      assert.deepEqual(v.received('remote_join').map(U), [String(friend.uid)], `the victim got a remote_join from the look-alike rooms; log:\n    ${v.summary()}`);
    });

    test('unicode uids and room ids work end to end (token, auth, user room, join, msg)', T, async () => {
      const uid = `用户-${rid('ü')} 1`;
      const c = await device(uid);
      await c.waitFor('_settings');
      await send({ rooms: [`user_${uid}`], event: 'uni', args: ['ok'] });
      (await c.waitForEntry('uni')).ack();
      const room = `房间 ${rid('é')}`;
      const a = track(await login(srv, { transports }));
      assert.equal((await a.emitAck('join', { roomId: room })).status, 0);
      assert.equal((await c.emitAck('join', { roomId: room })).status, 0);
      await a.emitAck('msg', { data: 'ünïcødé ✓', storage: 0, msgId: 'u' });
      assert.equal((await c.waitFor('msg')).data, 'ünïcødé ✓');
    });

    test('/send with a missing or wrong API key: HTTP 401, meta.status 2', T, async () => {
      const body = { rooms: ['user_x'], event: 'e', args: [] };
      for (const key of [null, 'wrong-key']) {
        const r = await srv.api('POST', '/send', { body, key, keyVia: 'query' });
        assert.equal(r.status, 401, `key ${key}: ${r.text}`);
        assert.equal(r.json?.meta?.status, 2);
        assert.match(r.json.meta.msg, /key/i, 'meta.msg says the key was refused');
      }
      const unknownSite = await srv.api('POST', '/send', { body, keyVia: 'query', query: { site: rid('nosuch') } });
      assert.ok([401, 404].includes(unknownSite.status), `unknown site: ${unknownSite.status}`);
      const bearer = await srv.api('POST', '/send', { body });
      ok(bearer, '/send with Authorization: Bearer');
    });

    test('tenant config: user_room_prefix and device_ttl_secs (a device offline longer than device_ttl is forgotten)', T, async () => {
      const name = rid('t');
      const created = ok(await srv.admin('POST', '/api/tenants', {
        body: { name, config: { user_room_prefix: 'person-', device_ttl_secs: 1 } },
      }), 'create tenant');
      const tenant = { name, key: created.api_key };
      const tsend = (body, o = {}) => srv.api('POST', '/send', { body, key: tenant.key, keyVia: 'query', query: { site: name, ...o } });
      const tdevice = async (uid) => {
        const token = await tokenFor(srv, uid, { tenant: name, key: tenant.key });
        return authenticated(track(await login(srv, { uid, token, tenant: name, transports, via: 'handshake', query: { deviceId: 'd1' } })));
      };
      const uid = rid('u');
      const c = await tdevice(uid);
      assert.equal((await c.waitFor('_settings')).device_ttl, 1);
      ok(await tsend({ rooms: [`person-${uid}`], event: 'pfx', args: [1] }), 'send to person- room');
      const e = await c.waitForEntry('pfx');
      assert.equal(typeof e.ack, 'function', 'the configured prefix makes it a reliable user room');
      await acked(() => e.ack(), { tenant: name });
      c.close();
      await allOffline(name);
      ok(await tsend({ rooms: [`person-${uid}`], event: 'late', args: [1] }), 'send while offline');
      // device_ttl is 1 s: let d1 stay offline well past it
      await sleep(2300);
      // 'late' went to d1's queue, which is forgotten with d1; the marker, sent
      // when d1 is no longer a known device, is kept for the next device of
      // the user: d1's _batch is the marker alone
      await expectNothingPending({
        connectDevice: () => tdevice(uid),
        sendPush: async (body) => ok(await tsend({ rooms: [`person-${uid}`], ...body }), 'send the marker'),
        tenant: name,
      });
      await srv.admin('DELETE', `/api/tenants/${name}`);
    });
  });
}
