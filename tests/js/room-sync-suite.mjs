// The room-sync contract (docs/protocol.md sections 2 to 6), written once
// and run per transport by room-sync.websocket.test.mjs and
// room-sync.polling.test.mjs (embedded store), and per store by
// room-sync.redis.test.mjs and room-sync.mongo.test.mjs.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  closeAll, connect, eventually, login, loginJoin, ok, rid, startServer, syncAll, syncData, tokenFor,
} from './harness.mjs';

const T = { timeout: 30000 };

/** The uid of a remote_* payload, as a string. */
const U = (p) => String(p?.uid);

/**
 * opts.store: a name for the test titles (default: the embedded store);
 * opts.start: async () => ({ srv, cleanup? }) starts the server under test
 * (default: startServer() on a fresh embedded data dir); cleanup runs after
 * the server is destroyed (e.g. to stop its Redis or MongoDB).
 */
export function roomSyncSuite(transport, opts = {}) {
  const transports = [transport];
  const start = opts.start || (async () => ({ srv: await startServer() }));

  describe(`room-sync over ${transport}${opts.store ? ` on the ${opts.store} store` : ''}`, () => {
    let srv;
    let cleanup;
    const clients = [];
    const track = (c) => { clients.push(c); return c; };
    const user = (opts = {}) => login(srv, { transports, ...opts }).then(track);
    const member = (roomId, opts = {}) => loginJoin(srv, roomId, { transports, ...opts }).then(track);

    before(async () => { ({ srv, cleanup } = await start()); });
    after(async () => {
      closeAll(clients);
      await srv?.destroy();
      await cleanup?.();
    });
    afterEach(() => closeAll(clients.splice(0)));

    // ---- authenticate -----------------------------------------------------

    test('authenticate event: reply on the event and on the ack callback', T, async () => {
      const uid = rid('u');
      const token = await tokenFor(srv, uid);
      const c = track(await connect(srv, { transports, label: uid }));
      const ack = await c.emitAck('authenticate', { uid, token });
      assert.deepEqual(ack, { status: 0, data: 'auth success' });
      const ev = await c.waitFor('authenticate');
      assert.deepEqual(ev, { status: 0, data: 'auth success' });
    });

    test('authenticate emitted the moment `connect` fires is never lost (40 sockets, each emitting it from its `connect` handler)', T, async () => {
      const uid = rid('u');
      const { io } = await import('socket.io-client');
      const lost = [];
      const one = (i) => new Promise((resolve) => {
        const s = io(srv.url, { forceNew: true, reconnection: false, transports });
        // generous: a loaded machine may take seconds to connect and answer, a lost event never answers
        const t = setTimeout(() => { lost.push(i); s.disconnect(); resolve(); }, 10000);
        // buffered by socket.io-client and flushed the instant the CONNECT packet arrives
        if (i % 2) s.emit('authenticate', { uid: `${uid}-${i}`, token: 'x' });
        else s.on('connect', () => s.emit('authenticate', { uid: `${uid}-${i}`, token: 'x' }));
        s.on('authenticate', () => { clearTimeout(t); s.disconnect(); resolve(); });
      });
      for (let i = 0; i < 40; i += 4) await Promise.all([i, i + 1, i + 2, i + 3].map(one));
      assert.deepEqual(lost, [], `${lost.length}/40 sockets never got an authenticate reply: an event sent right after connect was dropped`);
    });

    test('authenticate with a wrong token: {status:1, data:reason}, then disconnect', T, async () => {
      const uid = rid('u');
      await tokenFor(srv, uid);
      const c = track(await connect(srv, { transports }));
      c.emit('authenticate', { uid, token: 'definitely-wrong' });
      const ev = await c.waitFor('authenticate');
      assert.equal(ev.status, 1);
      assert.equal(typeof ev.data, 'string');
      assert.ok(ev.data.length > 0, 'reason must not be empty');
      const reason = await c.waitDisconnect();
      assert.equal(reason, 'io server disconnect');
    });

    test('authenticate for an unknown uid is refused', T, async () => {
      const c = track(await connect(srv, { transports }));
      c.emit('authenticate', { uid: rid('nobody'), token: 'x' });
      const ev = await c.waitFor('authenticate');
      assert.equal(ev.status, 1);
      await c.waitDisconnect();
    });

    test('handshake auth payload {uid, token} authenticates like the event', T, async () => {
      const uid = rid('u');
      const token = await tokenFor(srv, uid);
      const c = track(await connect(srv, { transports, auth: { uid, token } }));
      const r = await c.emitAck('join', { roomId: rid('r') });
      assert.equal(r.status, 0, `join after handshake auth: ${JSON.stringify(r)}`);
    });

    test('handshake query ?uid=&token= authenticates like the event', T, async () => {
      const uid = rid('u');
      const token = await tokenFor(srv, uid);
      const c = track(await connect(srv, { transports, query: { uid, token } }));
      const r = await c.emitAck('join', { roomId: rid('r') });
      assert.equal(r.status, 0, `join after query auth: ${JSON.stringify(r)}`);
    });

    test('handshake auth with a wrong token is refused (connect_error, or authenticate status 1 + disconnect)', T, async () => {
      const uid = rid('u');
      await tokenFor(srv, uid);
      const c = track(await connect(srv, { transports, auth: { uid, token: 'wrong' }, expectConnect: false }));
      const first = await Promise.race([
        c.waitFor('connect_error', 5000).then((e) => ({ kind: 'connect_error', e })),
        c.waitFor('disconnect', 5000).then((e) => ({ kind: 'disconnect', e })),
      ]);
      if (first.kind === 'disconnect') {
        const auths = c.received('authenticate');
        assert.ok(auths.some((a) => a.status === 1), `expected authenticate {status:1} before the disconnect, got ${JSON.stringify(auths)}`);
      }
      assert.equal(c.connected, false);
    });

    test('events before authenticate are not served (join is not accepted)', T, async () => {
      const c = track(await connect(srv, { transports }));
      const room = rid('r');
      const uid = rid('u');
      const token = await tokenFor(srv, uid);
      c.emit('join', { roomId: room });
      // A socket's events are handled in order: once authenticate is
      // answered, the join before it has been handled, so an accepted join
      // would show in room_users now.
      assert.equal((await c.emitAck('authenticate', { uid, token })).status, 0);
      assert.ok(!c.received('join').some((r) => r?.status === 0), 'no join success before authenticate');
      const users = ok(await srv.api('GET', '/admin/monitor/room_users', { query: { roomId: room } }), 'room_users').users;
      assert.deepEqual(users, [], 'the pre-auth join did not put the socket in the room');
      // positive control: the same join after authenticate is accepted and listed
      assert.equal((await c.emitAck('join', { roomId: room })).status, 0);
      const after = ok(await srv.api('GET', '/admin/monitor/room_users', { query: { roomId: room } }), 'room_users').users;
      assert.deepEqual(after.map((u) => String(u.uid)), [uid]);
    });

    test('msg and sync before any join: {status:1}, the socket stays usable', T, async () => {
      const c = await user();
      const m = await c.emitAck('msg', { data: 1, storage: 0, msgId: 1 });
      assert.equal(m?.status, 1, `msg before join: ${JSON.stringify(m)}`);
      const s = await c.emitAck('sync', { offset: 0 });
      assert.equal(s?.status, 1, `sync before join: ${JSON.stringify(s)}`);
      assert.equal((await c.emitAck('join', { roomId: rid('r') })).status, 0);
    });

    // ---- join ---------------------------------------------------------------

    test('join without roomId or with an empty roomId: {status:1}', T, async () => {
      const c = await user();
      for (const payload of [{}, { roomId: '' }, { roomId: null }]) {
        const ack = await c.emitAck('join', payload);
        assert.equal(ack.status, 1, `join ${JSON.stringify(payload)} ack: ${JSON.stringify(ack)}`);
        assert.ok(ack.data !== undefined, 'failure reply carries data');
        const ev = await c.waitFor('join');
        assert.equal(ev.status, 1);
      }
      c.emit('join', { roomId: '' });
      const ev = await c.waitFor('join');
      assert.equal(ev.status, 1, 'without an ack the failure comes as a join event');
      assert.ok(c.connected, 'a failed join does not disconnect');
    });

    test('join: {status:0, data:"join success"} on event and ack; remote_join both ways', T, async () => {
      const room = rid('r');
      const a = await user({ label: 'A' });
      const ack = await a.emitAck('join', { roomId: room });
      assert.deepEqual(ack, { status: 0, data: 'join success' });
      assert.deepEqual(await a.waitFor('join'), { status: 0, data: 'join success' });

      const b = await member(room, { label: 'B' });
      assert.equal(U(await a.waitFor('remote_join')), String(b.uid), 'A learns that B joined');
      assert.equal(U(await b.waitFor('remote_join')), String(a.uid), 'B is told A is already there');

      const c = await member(room, { label: 'C' });
      await a.waitFor('remote_join', undefined, (p) => U(p) === String(c.uid));
      await b.waitFor('remote_join', undefined, (p) => U(p) === String(c.uid));
      const seen = new Set([U(await c.waitFor('remote_join')), U(await c.waitFor('remote_join'))]);
      assert.deepEqual(seen, new Set([String(a.uid), String(b.uid)]), 'C gets one remote_join per user already in the room');
      // Positive control: D joins after; C's next remote_join is D's
      const d = await member(room, { label: 'D' });
      assert.equal(U(await c.waitFor('remote_join')), String(d.uid), 'C got no remote_join beyond one per user already there');
      await a.expectNo('remote_join', 0, (p) => U(p) === String(a.uid));
    });

    // ---- msg ----------------------------------------------------------------

    test('msg: relayed to the others with uid, not to the sender nor other rooms; ack {status:0}', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      const c = await member(room, { label: 'C' });
      const outsider = await member(rid('r'), { label: 'outsider' });
      const msg = { data: { x: 1, s: 'héllo' }, storage: 0, msgId: 'm1' };
      const ack = await a.emitAck('msg', msg);
      assert.equal(ack?.status, 0, `msg ack: ${JSON.stringify(ack)}`);
      for (const peer of [b, c]) {
        const got = await peer.waitFor('msg', undefined, (m) => m?.msgId === 'm1');
        assert.deepEqual(got.data, msg.data);
        assert.equal(got.storage, 0);
        assert.equal(String(got.uid), String(a.uid));
      }
      // without an ack callback the message is relayed too
      a.emit('msg', { data: 2, storage: 0, msgId: 'm2' });
      assert.equal((await b.waitFor('msg', undefined, (m) => m?.msgId === 'm2')).data, 2);
      // Positive control: B answers in the room, and a system push goes to the
      // outsider's room; each arrives after anything A's msgs sent A or the outsider.
      assert.equal((await b.emitAck('msg', { data: 'reply', storage: 2, msgId: 'reply' })).status, 0);
      assert.equal((await a.waitFor('msg')).msgId, 'reply', 'the sender does not get its own msgs back');
      ok(await srv.api('POST', '/admin/system/push', { body: { roomId: outsider.roomId, content: 'marker' } }), 'system push to the outsider');
      assert.equal(await outsider.waitFor('system'), 'marker');
      assert.deepEqual(outsider.received('msg'), [], 'a msg does not reach other rooms');
    });

    test('msg storage: insert (0) logged in order, update (1) keeps the latest per msgId after the inserts, ignore (2) relayed but never stored, unknown storage = insert', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      const send = async (m) => assert.equal((await a.emitAck('msg', m)).status, 0, JSON.stringify(m));
      await send({ data: 'i1', storage: 0, msgId: 'ins1' });
      await send({ data: 'v1', storage: 1, msgId: 'upd' });
      await send({ data: 'i2', storage: 0, msgId: 'ins2' });
      await send({ data: 'v2', storage: 1, msgId: 'upd' });
      await send({ data: 'gone', storage: 2, msgId: 'ign' });
      await send({ data: 'i3', storage: 7, msgId: 'ins3' });
      assert.equal((await b.waitFor('msg', undefined, (m) => m?.msgId === 'ign')).data, 'gone', 'ignore is relayed live');

      const { msgs, last } = await syncAll(b);
      assert.deepEqual(msgs.map((m) => m.data), ['i1', 'i2', 'i3', 'v2'], `sync data: ${JSON.stringify(msgs)}`);
      assert.deepEqual(msgs.map((m) => m.msgId), ['ins1', 'ins2', 'ins3', 'upd']);
      for (const m of msgs) assert.equal(String(m.uid), String(a.uid), 'stored messages carry the sender uid');
      assert.equal(last.next, 0);
      assert.equal(last.offset, 3, 'offset is a position in the insert log; updates do not advance it');

      await send({ data: 'i4', storage: 0, msgId: 'ins4' });
      const more = await syncAll(b, { offset: last.offset });
      assert.equal(more.msgs[0]?.data, 'i4', `a later sync from the returned offset starts with the new insert: ${JSON.stringify(more.msgs)}`);
      assert.ok(!more.msgs.some((m) => m.msgId === 'ign'));

      const r = await srv.api('GET', '/admin/monitor/room_msgs', { query: { roomId: room } });
      const data = ok(r, 'room_msgs');
      assert.ok(!JSON.stringify(data.msgs).includes('"gone"'), 'ignored message is not stored');
    });

    test('sync paging: 450 inserts come back in 200-message pages in insert order (plain and gzip), room_msgs pages too', { timeout: 120000 }, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const N = 450;
      for (let i = 0; i < N; i++) {
        const r = await a.emitAck('msg', { data: { i }, storage: 0, msgId: `p${i}` });
        assert.equal(r.status, 0);
      }
      await a.emitAck('msg', { data: 'latest', storage: 1, msgId: 'cursor' });
      const b = await member(room, { label: 'B' });

      const plain = await syncAll(b);
      assert.deepEqual(plain.pages.map((p) => syncData(p).length), [200, 200, 51]);
      assert.deepEqual(plain.pages.map((p) => p.next), [1, 1, 0]);
      assert.deepEqual(plain.pages.map((p) => p.offset), [200, 400, 450]);
      assert.ok(plain.pages.every((p) => p.epoch === 0), 'every sync reply carries the epoch');
      assert.deepEqual(plain.msgs.slice(0, N).map((m) => m.data.i), [...Array(N).keys()], 'insert order');
      assert.equal(plain.msgs[N].data, 'latest', 'update entries come after the insert log');

      const gz = await syncAll(b, { encoding: 'gzip' });
      for (const p of gz.pages) {
        assert.equal(p.encoding, 'gzip');
        assert.equal(typeof p.data, 'string', 'gzip data is base64 text');
      }
      assert.deepEqual(gz.msgs, plain.msgs, 'gzip carries the same messages');

      // admin view, paged like sync
      let offset = 0;
      const all = [];
      for (let page = 0; page < 10; page++) {
        const d = ok(await srv.api('GET', '/admin/monitor/room_msgs', { query: { roomId: room, offset } }), 'room_msgs');
        assert.ok(Array.isArray(d.msgs), `room_msgs data.msgs is an array: ${JSON.stringify(d).slice(0, 200)}`);
        all.push(...d.msgs);
        if (!d.next) break;
        assert.ok(d.offset > offset, 'room_msgs offset advances');
        offset = d.offset;
      }
      assert.equal(all.length, N + 1);
      const first = all[0];
      assert.equal(typeof first.ts, 'number', 'room_msgs entries have ts');
      assert.equal(String(first.uid), String(a.uid), 'room_msgs entries have uid');
      const payload = first.data?.data !== undefined ? first.data.data : first.data;
      assert.deepEqual(payload, { i: 0 });
    });

    test('pipelined msgs (no waiting between emits, like a whiteboard) keep their order: relay, room log, and the last update wins', { timeout: 60000 }, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      const N = 100; // 201 events in flight: under any sane per-socket limit
      for (let i = 0; i < N; i++) {
        a.emit('msg', { data: i, storage: 0, msgId: `o${i}` });
        a.emit('msg', { data: i, storage: 1, msgId: 'cursor' });
      }
      assert.equal((await a.emitAck('msg', { data: 'end', storage: 0, msgId: 'end' }, 15000)).status, 0);
      await b.waitFor('msg', 15000, (m) => m?.msgId === 'end');
      const relayed = b.received('msg').filter((m) => m.storage === 0 && m.msgId !== 'end').map((m) => m.data);
      assert.deepEqual(relayed, [...Array(N).keys()], 'relay order = send order');
      const cursors = b.received('msg').filter((m) => m.msgId === 'cursor').map((m) => m.data);
      assert.deepEqual(cursors, [...Array(N).keys()], 'update relay order = send order');
      const { msgs } = await syncAll(b);
      assert.deepEqual(msgs.filter((m) => m.storage !== 1).map((m) => m.data), [...Array(N).keys(), 'end'], 'log order = send order');
      assert.deepEqual(msgs.filter((m) => m.msgId === 'cursor').map((m) => m.data), [N - 1], 'the last update sent is the stored one');
    });

    test('a burst of 400 msgs with acks: every one is acked {status:0}, relayed and stored once, in send order; nothing is lost', { timeout: 180000 }, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      const N = 400;
      // 400 msgs of one socket are served in order, each after the previous one's
      // store write: on the MongoDB store of a loaded machine the last ack takes a while
      const acks = await Promise.all(Array.from({ length: N }, (_, i) => a.emitAck('msg', { data: i, storage: 0, msgId: `b${i}` }, 90000)));
      const refused = acks.map((r, i) => [i, r]).filter(([, r]) => r?.status !== 0);
      assert.deepEqual(refused, [], `every msg of the burst is accepted (${refused.length} of ${N} were not)`);
      const marker = await a.emitAck('msg', { data: 'end', storage: 0, msgId: 'end' }, 30000);
      assert.equal(marker.status, 0, 'the socket works after the burst');
      await b.waitFor('msg', 30000, (m) => m?.msgId === 'end');
      const all = [...Array(N).keys()];
      assert.deepEqual(b.received('msg').map((m) => m.data), [...all, 'end'], 'every msg relayed once, in send order');
      const { msgs } = await syncAll(b);
      assert.deepEqual(msgs.map((m) => m.data), [...all, 'end'], 'every msg stored once, in send order');
    });

    test('sync while another socket writes: continuing from each reply\'s offset sees every insert exactly once, in order', { timeout: 180000 }, async () => {
      const room = rid('r');
      const w = await member(room, { label: 'writer' });
      const r = await member(room, { label: 'reader' });
      const N = 300;
      let written = false;
      const writing = (async () => {
        for (let i = 0; i < N; i += 20) {
          await Promise.all(Array.from({ length: 20 }, (_, k) => w.emitAck('msg', { data: i + k, storage: 0, msgId: i + k }, 30000)));
          if (i % 100 === 0) await w.emitAck('msg', { data: `u${i}`, storage: 1, msgId: 'cursor' });
        }
      })().finally(() => { written = true; });
      const seen = [];
      let offset = 0;
      // until every insert is seen, or a sync that started after the last write was acked reaches the end
      for (;;) {
        const after = written;
        const rep = await r.emitAck('sync', { offset });
        seen.push(...syncData(rep).filter((m) => m.storage !== 1).map((m) => m.data));
        offset = rep.offset;
        if (seen.length >= N || (after && !rep.next)) break;
        if (!rep.next) await sleep(20);
      }
      await writing;
      assert.deepEqual(seen, [...Array(N).keys()], 'no gap, no duplicate, insert order');
    });

    test('short form {"1":id,"s":storage,...}: relayed with "2" = sender uid, other keys kept, storage honoured', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      const ack = await a.emitAck('msg', { 1: 'short1', s: 0, d: { k: 'v' }, x: [1, 2] });
      assert.equal(ack?.status ?? ack?.['0'], 0, `short msg ack: ${JSON.stringify(ack)}`);
      const got = await b.waitFor('msg', undefined, (m) => m?.['1'] === 'short1');
      assert.equal(String(got['2']), String(a.uid), '"2" carries the sender uid');
      assert.equal(got.s, 0);
      assert.deepEqual(got.d, { k: 'v' });
      assert.deepEqual(got.x, [1, 2]);
      assert.equal(got.storage, undefined, 'answered in the short form: no long keys added');
      assert.equal(got.msgId, undefined, 'answered in the short form: no long keys added');

      await a.emitAck('msg', { 1: 'cursor', s: 1, v: 1 });
      await a.emitAck('msg', { 1: 'cursor', s: 1, v: 2 });
      await a.emitAck('msg', { 1: 'noise', s: 2, v: 3 });
      await b.waitFor('msg', undefined, (m) => m?.['1'] === 'noise');
      const { msgs } = await syncAll(b);
      assert.deepEqual(msgs.map((m) => m['1']), ['short1', 'cursor'], JSON.stringify(msgs));
      assert.equal(msgs[1].v, 2, 'update keeps the latest value');
      assert.equal(String(msgs[0]['2']), String(a.uid));

      // "1" without "s" is the short form too (storage defaults to insert)
      await a.emitAck('msg', { 1: 'only1', d: 3 });
      const only1 = await b.waitFor('msg', undefined, (m) => m?.['1'] === 'only1');
      assert.equal(String(only1['2']), String(a.uid));
      // "s" together with msgId is the long form: the sender is in uid
      await a.emitAck('msg', { s: 5, msgId: 'long', data: 4, storage: 0 });
      const long = await b.waitFor('msg', undefined, (m) => m?.msgId === 'long');
      assert.equal(String(long.uid), String(a.uid), 'long form carries uid');
      assert.equal(long['2'], undefined, 'long form gets no "2"');
    });

    test('the server owns the sender: a client-sent uid, "2" or ts never reaches others or sync', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      const before = Date.now();
      // long form with a forged uid, a forged short-form sender and an old ts
      const long = await a.emitAck('msg', { msgId: 'forged-long', storage: 0, data: 'hi', uid: 'carol', 2: 'carol', ts: 1 });
      assert.equal(long?.status, 0, JSON.stringify(long));
      // short form with a forged long-form sender, a forged "2" and an old ts
      const short = await a.emitAck('msg', { 1: 'forged-short', s: 0, d: 'hi', uid: 'carol', 2: 'carol', ts: 1 });
      assert.equal(short?.status ?? short?.['0'], 0, JSON.stringify(short));
      const gotLong = await b.waitFor('msg', undefined, (m) => m?.msgId === 'forged-long');
      const gotShort = await b.waitFor('msg', undefined, (m) => m?.['1'] === 'forged-short');
      const check = (m, where) => {
        if (m.msgId === 'forged-long') {
          assert.equal(String(m.uid), String(a.uid), `${where}: long form carries the real sender`);
          assert.equal(m['2'], undefined, `${where}: long form drops a client-sent "2"`);
        } else {
          assert.equal(String(m['2']), String(a.uid), `${where}: short form carries the real sender`);
          assert.equal(m.uid, undefined, `${where}: short form drops a client-sent uid`);
        }
        assert.ok(m.ts >= before - 1000, `${where}: ts is the server's, not the client's: ${m.ts}`);
      };
      check(gotLong, 'live');
      check(gotShort, 'live');
      const { msgs } = await syncAll(b);
      const stored = msgs.filter((m) => m.msgId === 'forged-long' || m['1'] === 'forged-short');
      assert.equal(stored.length, 2, JSON.stringify(msgs));
      for (const m of stored) check(m, 'sync');
    });

    test('numeric and string ids are the same user and the same room', T, async () => {
      const n = 100000 + Math.floor(Math.random() * 1e8);
      const r1 = await srv.api('POST', '/user/create_token', { body: { uid: n } });
      const { token } = ok(r1, 'create_token numeric uid');
      const dup = await srv.api('POST', '/user/create_token', { body: { uid: String(n) } });
      assert.equal(dup.json?.meta?.status, 1, `string form of an existing numeric uid is "user exists": ${dup.text}`);

      const roomNum = 700000 + Math.floor(Math.random() * 1e8);
      const a = await member(roomNum, { uid: n, token, label: 'A(numeric)' });
      const b = await member(String(roomNum), { label: 'B(string room)' });
      assert.equal(U(await a.waitFor('remote_join')), String(b.uid));
      await a.emitAck('msg', { data: 'n', storage: 0, msgId: 1 });
      const got = await b.waitFor('msg');
      assert.equal(String(got.uid), String(n));
      const users = ok(await srv.api('GET', '/admin/monitor/room_users', { query: { roomId: roomNum } }), 'room_users');
      assert.deepEqual(new Set(users.users.map((x) => String(x.uid))), new Set([String(n), String(b.uid)]));

      ok(await srv.api('POST', '/admin/system/push', { body: { roomId: String(roomNum), content: 'by string' } }));
      assert.equal(await a.waitFor('system'), 'by string', 'system push by the string form reaches a numeric join');
      ok(await srv.api('POST', '/send', { body: { rooms: [roomNum], event: 'by_number', args: [] } }));
      await b.waitFor('by_number');

      // same user with the string uid and the same token
      const c = track(await connect(srv, { transports }));
      const auth = await c.emitAck('authenticate', { uid: String(n), token });
      assert.equal(auth.status, 0, 'string uid with the token of the numeric uid');
    });

    // ---- dummy --------------------------------------------------------------

    test('dummy: watches and syncs, invisible (no remote_join/remote_sync/remote_disconnect, not in room_users), may not send msg', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      await a.emitAck('msg', { data: 'before', storage: 0, msgId: 'b' });
      const d = await member(room, { label: 'D(dummy)', dummy: true });
      assert.equal(U(await d.waitFor('remote_join')), String(a.uid), 'the dummy sees who is there');

      const users = ok(await srv.api('GET', '/admin/monitor/room_users', { query: { roomId: room } }), 'room_users');
      assert.deepEqual(users.users.map((x) => String(x.uid)), [String(a.uid)], 'dummy not in room_users');

      const { msgs } = await syncAll(d);
      assert.deepEqual(msgs.map((m) => m.data), ['before'], 'dummy may sync');

      const ack = await d.emitAck('msg', { data: 'from dummy', storage: 0, msgId: 'dm' });
      assert.notEqual(ack?.status, 0, `dummy msg must be refused: ${JSON.stringify(ack)}`);
      d.emit('msg', { data: 'from dummy 2', storage: 0, msgId: 'dm2' });
      // the dummy's events are handled in order: once this is answered, the msg before it was handled
      await d.emitAck('sync', { offset: 1 });
      const after = await syncAll(a);
      assert.deepEqual(after.msgs.map((m) => m.data), ['before'], 'dummy msg not stored');

      // Positive control: a visible member B joins, syncs from 0 and sends a msg.
      // A gets remote_join, remote_sync and the msg of B, after anything the
      // dummy's join, sync and msgs sent A.
      const b = await member(room, { label: 'B' });
      assert.equal((await b.emitAck('sync', { offset: 0 })).status, 0);
      assert.equal((await b.emitAck('msg', { data: 'live', storage: 2, msgId: 'l' })).status, 0);
      await a.waitFor('msg', undefined, (m) => m?.msgId === 'l');
      assert.deepEqual(a.received('remote_join').map(U), [String(b.uid)], 'A is told of B only, never of the dummy');
      assert.deepEqual(a.received('remote_sync').map(U), [String(b.uid)], 'the dummy\'s sync from 0 sent no remote_sync');
      assert.deepEqual(a.received('msg').map((m) => m.msgId), ['l'], 'the dummy\'s msgs were not relayed');
      assert.equal((await d.waitFor('msg', undefined, (m) => m?.msgId === 'l')).data, 'live', 'dummy receives room traffic');
      assert.equal(U(await b.waitFor('remote_join')), String(a.uid));

      d.close();
      const d2 = await member(room, { label: 'D2(dummy)', dummy: true });
      d2.emit('leave');
      await d2.waitDisconnect();

      // Positive control: a visible member C joins and leaves; A gets its
      // remote_join, remote_leave and remote_disconnect, after anything the
      // dummies' disconnect and leave sent A.
      const c = await member(room, { label: 'C' });
      c.emit('leave');
      await a.waitFor('remote_disconnect', undefined, (p) => U(p) === String(c.uid));
      await b.waitFor('remote_disconnect', undefined, (p) => U(p) === String(c.uid));
      assert.deepEqual(a.received('remote_join').map(U), [String(b.uid), String(c.uid)], 'the dummies were never announced');
      assert.deepEqual(a.received('remote_leave').map(U), [String(c.uid)], 'a dummy\'s leave is not announced');
      assert.deepEqual(a.received('remote_disconnect').map(U), [String(c.uid)], 'a dummy\'s disconnect is not announced');
      assert.deepEqual(b.received('remote_join').map(U), [String(a.uid), String(c.uid)], 'B is never told of the dummies');
    });

    // ---- sync extras --------------------------------------------------------

    test('sync offset 0 sends remote_sync {uid} to the others; a later offset does not', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      for (let i = 0; i < 3; i++) await a.emitAck('msg', { data: i, storage: 0, msgId: i });
      const r = await b.emitAck('sync', { offset: 0 });
      assert.equal(r.next, 0);
      assert.equal(U(await a.waitFor('remote_sync')), String(b.uid));
      await b.expectNo('remote_sync', 0, (p) => U(p) === String(b.uid));
      const ev = await b.waitFor('sync');
      assert.equal(ev.offset, r.offset, 'the reply is also emitted as a sync event');
      await b.emitAck('sync', { offset: 2 });
      // Positive control: B's events are handled in order, one after the other,
      // so a remote_sync for offset 2 would reach A before this msg.
      assert.equal((await b.emitAck('msg', { data: 'marker', storage: 2, msgId: 'marker' })).status, 0);
      await a.waitFor('msg', undefined, (m) => m?.msgId === 'marker');
      await a.expectNo('remote_sync', 0);
    });

    test('sync epoch: 0 for a new room; clear_room_msgs and clear_room_msg empty the room, raise the epoch, and a stale epoch is answered from 0 with reset:1', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      for (let i = 0; i < 3; i++) await a.emitAck('msg', { data: `old${i}`, storage: 0, msgId: i });
      await a.emitAck('msg', { data: 'old cursor', storage: 1, msgId: 'cur' });
      const s0 = await a.emitAck('sync', { offset: 0 });
      assert.equal(s0.epoch, 0, `new room epoch: ${JSON.stringify(s0)}`);
      assert.ok(!s0.reset, 'no reset on a normal reply');
      assert.equal(s0.offset, 3);

      ok(await srv.api('POST', '/admin/system/clear_room_msgs', { body: { roomId: room } }), 'clear_room_msgs');
      const s1 = await a.emitAck('sync', { offset: 0 });
      assert.deepEqual(syncData(s1), [], 'messages (inserts and updates) gone after clear');
      assert.equal(s1.epoch, 1, 'epoch raised by the clear');
      const rm = ok(await srv.api('GET', '/admin/monitor/room_msgs', { query: { roomId: room } }), 'room_msgs');
      assert.equal(rm.msgs.length, 0);

      await a.emitAck('msg', { data: 'new0', storage: 0, msgId: 'n' });
      const stale = await a.emitAck('sync', { offset: 3, epoch: 0 });
      assert.equal(stale.reset, 1, `stale epoch must be answered with reset:1: ${JSON.stringify(stale)}`);
      assert.equal(stale.epoch, 1);
      assert.deepEqual(syncData(stale).map((m) => m.data), ['new0'], 'answered from offset 0');

      const cur = await a.emitAck('sync', { offset: 0, epoch: 1 });
      assert.ok(!cur.reset);
      const future = await a.emitAck('sync', { offset: 1, epoch: 7 });
      assert.equal(future.reset, 1, 'any epoch other than the room\'s resets');
      assert.deepEqual(syncData(future).map((m) => m.data), ['new0']);

      ok(await srv.api('POST', '/admin/system/clear_room_msg', { body: { roomId: room } }), 'clear_room_msg (singular)');
      const s2 = await a.emitAck('sync', { offset: 0 });
      assert.deepEqual(syncData(s2), []);
      assert.equal(s2.epoch, 2);
    });

    test('odd sync requests (negative, huge, non-numeric offsets, unknown encoding) get an answer, never a crash', T, async () => {
      const a = await member(rid('r'));
      for (let i = 0; i < 3; i++) await a.emitAck('msg', { data: i, storage: 0, msgId: i });
      for (const req of [{ offset: -5 }, { offset: 1e12 }, { offset: 'abc' }, { offset: 1.5 }, { offset: 0, encoding: 'brotli' }, { offset: 0, epoch: 'x' }]) {
        const r = await a.emitAck('sync', req);
        assert.ok(r && (r.status === 1 || Array.isArray(r.data) || typeof r.data === 'string'), `sync ${JSON.stringify(req)} -> ${JSON.stringify(r)}`);
      }
      const big = await a.emitAck('sync', { offset: 1e12 });
      if (big.status !== 1) assert.deepEqual(syncData(big).filter((m) => m.storage !== 1), [], 'past the end: no inserts');
      assert.equal((await srv.api('GET', '/healthz', { key: null })).status, 200);
      assert.equal((await syncAll(a)).msgs.length, 3);
    });

    test('odd ids: uid/roomId as objects or arrays are refused; a 10,000-character roomId is handled', T, async () => {
      const c = track(await connect(srv, { transports }));
      const r = await c.emitAck('authenticate', { uid: { a: 1 }, token: 'x' });
      assert.equal(r.status, 1);
      const a = await user();
      for (const roomId of [{ a: 1 }, [1, 2], true]) {
        const j = await a.emitAck('join', { roomId });
        assert.equal(j.status, 1, `join ${JSON.stringify(roomId)} -> ${JSON.stringify(j)}`);
      }
      const long = await a.emitAck('join', { roomId: 'r'.repeat(10000) });
      assert.ok(long.status === 0 || long.status === 1, JSON.stringify(long).slice(0, 200));
      assert.ok(a.connected);
    });

    // ---- leave / disconnect / kickout --------------------------------------

    test('leave: others get remote_leave then remote_disconnect; the leaver is disconnected', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      a.emit('leave');
      const leave = await b.waitForEntry('remote_leave');
      const disc = await b.waitForEntry('remote_disconnect');
      assert.equal(U(leave.args[0]), String(a.uid));
      assert.equal(U(disc.args[0]), String(a.uid));
      assert.ok(b.log.indexOf(leave) < b.log.indexOf(disc), 'remote_leave before remote_disconnect');
      assert.equal(await a.waitDisconnect(), 'io server disconnect');
      await eventually(async () => {
        const d = ok(await srv.api('GET', '/admin/monitor/room_users', { query: { roomId: room } }));
        return d.users.length === 1 && String(d.users[0].uid) === String(b.uid);
      }, 15000, 'room_users without the leaver');
    });

    test('msg then leave back to back: the msg is relayed and stored before remote_leave', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      a.emit('msg', { data: 'last words', storage: 0, msgId: 'lw' });
      a.emit('leave');
      const m = await b.waitForEntry('msg');
      const l = await b.waitForEntry('remote_leave');
      assert.ok(b.log.indexOf(m) < b.log.indexOf(l), 'msg before remote_leave');
      assert.deepEqual((await syncAll(b)).msgs.map((x) => x.data), ['last words']);
    });

    test('leave with an ack callback gets {status:0} before the disconnect', T, async () => {
      const a = await member(rid('r'));
      const ack = await a.emitAck('leave', {});
      assert.equal(ack?.status, 0);
      await a.waitDisconnect();
    });

    test('disconnect: others get remote_disconnect (and no remote_leave)', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      a.close();
      assert.equal(U(await b.waitFor('remote_disconnect')), String(a.uid));
      // Positive control: C joins and leaves; B gets its remote_leave, after
      // anything A's disconnect sent B.
      const c = await member(room, { label: 'C' });
      c.emit('leave');
      assert.equal(U(await b.waitFor('remote_leave')), String(c.uid), 'a disconnect sends no remote_leave');
    });

    test('kickout: re-login of a uid kicks the older socket; the newcomer is not announced; the kicked one is not mourned', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A(old)' });
      const b = await member(room, { label: 'B' });
      await b.waitFor('remote_join');
      const a2 = await user({ uid: a.uid, token: a.token, label: 'A(new)' });
      await a.waitFor('kickout');
      await a.waitDisconnect();
      const r = await a2.emitAck('join', { roomId: room });
      assert.equal(r.status, 0);
      assert.equal(U(await a2.waitFor('remote_join')), String(b.uid), 'the newcomer gets the room list');
      const d = ok(await srv.api('GET', '/admin/monitor/room_users', { query: { roomId: room } }));
      assert.equal(d.users.filter((x) => String(x.uid) === String(a.uid)).length, 1, `room_users lists the uid once: ${JSON.stringify(d)}`);
      await a2.emitAck('msg', { data: 'still me', storage: 0, msgId: 'k' });
      assert.equal(String((await b.waitFor('msg')).uid), String(a.uid));
      // Positive control: C joins and leaves; B gets remote_join, remote_leave
      // and remote_disconnect of C, after anything the kickout and the
      // newcomer's join sent B.
      const c = await member(room, { label: 'C' });
      c.emit('leave');
      await b.waitFor('remote_disconnect', undefined, (p) => U(p) === String(c.uid));
      assert.deepEqual(b.received('remote_join').map(U), [String(a.uid), String(c.uid)], 'the newcomer is not announced');
      assert.deepEqual(b.received('remote_leave').map(U), [String(c.uid)], 'the kicked socket is not mourned (remote_leave)');
      assert.deepEqual(b.received('remote_disconnect').map(U), [String(c.uid)], 'the kicked socket is not mourned (remote_disconnect)');
    });

    test('a failed login with someone else\'s uid (wrong token, event or handshake) does not kick them', T, async () => {
      const room = rid('r');
      const v = await member(room, { label: 'victim' });
      const e = track(await connect(srv, { transports, label: 'attacker(event)' }));
      e.emit('authenticate', { uid: v.uid, token: 'guess' });
      assert.equal((await e.waitFor('authenticate')).status, 1);
      const h = track(await connect(srv, { transports, auth: { uid: v.uid, token: 'guess' }, expectConnect: false, label: 'attacker(handshake)' }));
      const refused = await eventually(() => h.log.find((x) => x.event === 'connect_error' || x.event === 'disconnect')?.event, undefined, 'the handshake attacker is refused');
      if (refused === 'disconnect') assert.ok(h.received('authenticate').some((x) => x?.status === 1), `handshake attacker: ${h.summary()}`);
      // A kickout is sent before the newcomer's authenticate is answered, and
      // both attackers were answered: one would have reached the victim before
      // the answer to this msg.
      assert.equal((await v.emitAck('msg', { data: 1, storage: 2, msgId: 1 })).status, 0);
      await v.expectNo('kickout', 0);
      assert.ok(v.connected, 'victim still connected');
      // Positive control: a login with the right token does kick the victim
      const real = await user({ uid: v.uid, token: v.token, label: 'victim again' });
      await v.waitFor('kickout');
      assert.ok(real.connected);
    });

    // ---- limits and bad input ----------------------------------------------

    test('oversized msg with an ack: {status:1, data:reason}, not relayed, connection stays open', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      const big = 'x'.repeat(600000);
      const ack = await a.emitAck('msg', { data: big, storage: 0, msgId: 'big' }, 15000);
      assert.equal(ack?.status, 1, `oversized ack: ${JSON.stringify(ack).slice(0, 200)}`);
      assert.equal(typeof ack.data, 'string');
      assert.ok(a.connected, 'sender still connected');
      assert.equal((await a.emitAck('msg', { data: 'small', storage: 0, msgId: 's' })).status, 0);
      // B's first msg is the small one: the refused one was not relayed before it
      assert.equal((await b.waitFor('msg')).data, 'small');
      const { msgs } = await syncAll(b);
      assert.deepEqual(msgs.map((m) => m.msgId), ['s'], 'oversized message not stored');
    });

    test('oversized msg without an ack: an `error` event, connection stays open', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      a.emit('msg', { data: 'y'.repeat(600000), storage: 0, msgId: 'big' });
      const err = await a.waitFor('error', 15000);
      assert.ok(err !== undefined && err !== null, 'error event carries a reason');
      assert.ok(a.connected);
      assert.equal((await a.emitAck('msg', { data: 'after', storage: 0, msgId: 'a' })).status, 0);
      // B's first msg is the later one: the refused one was not relayed before it
      assert.equal((await b.waitFor('msg')).data, 'after');
    });

    test('a 450 KB msg (under the 512,000-byte limit) is relayed and stored', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      // not one repeated character: a truncated or reordered copy must not compare equal
      const data = Array.from({ length: 45000 }, (_, i) => String(i % 100000).padStart(10, '.')).join('');
      assert.equal(data.length, 450000);
      const ack = await a.emitAck('msg', { data, storage: 0, msgId: 'big-ok' }, 15000);
      assert.equal(ack?.status, 0, `450 KB msg ack: ${JSON.stringify(ack).slice(0, 200)}`);
      const live = await b.waitFor('msg', 15000);
      assert.equal(live.msgId, 'big-ok');
      assert.ok(live.data === data, `relayed data differs (length ${live.data?.length})`);
      const { msgs } = await syncAll(b);
      assert.deepEqual(msgs.map((m) => m.msgId), ['big-ok'], 'sync returns the stored msg');
      assert.ok(msgs[0].data === data, `stored data differs (length ${msgs[0].data?.length})`);
      assert.equal(String(msgs[0].uid), String(a.uid));
    });

    test('non-object payloads get {status:1}, never a crash or a hang', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      for (const ev of ['join', 'msg', 'sync']) {
        for (const bad of ['not json {', 42, null, [1, 2], true]) {
          const ack = await a.emitAck(ev, bad);
          assert.ok(ack && typeof ack === 'object' && ack.status === 1, `${ev} ${JSON.stringify(bad)} -> ${JSON.stringify(ack)}`);
        }
        const noArg = await a.socket.timeout(5000).emitWithAck(ev);
        assert.equal(noArg?.status, 1, `${ev} without payload -> ${JSON.stringify(noArg)}`);
      }
      assert.equal((await a.emitAck('msg', { storage: 0, msgId: 'nodata' })).status, 0, 'msg without data field is still a msg');
      await b.waitFor('msg', undefined, (m) => m?.msgId === 'nodata');
      assert.ok(a.connected);
      assert.equal((await a.emitAck('msg', { data: 'fine', storage: 0, msgId: 'f' })).status, 0);
      await b.waitFor('msg', undefined, (m) => m?.msgId === 'f');

      const c = track(await connect(srv, { transports }));
      const r = await c.emitAck('authenticate', 'garbage');
      assert.equal(r?.status, 1);
      assert.equal((await srv.api('GET', '/healthz', { key: null })).status, 200, 'server alive');
    });

    test('malformed socket.io packets (broken JSON on the wire) never take the server down', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const b = await member(room, { label: 'B' });
      const evil = await member(room, { label: 'evil' });
      for (const raw of ['2["msg",{"data":', '2[', '2{"not":"an array"}', '21["msg",{"data":1}', '2["msg"', '9garbage']) {
        evil.socket.io.engine.write(raw);
      }
      // The server has read the garbage once it closes the evil connection or
      // answers an event sent after it.
      const closed = () => evil.waitDisconnect().then((reason) => `disconnected (${reason})`);
      const evilOutcome = await Promise.race([closed(), evil.emitAck('sync', { offset: 0 }).then(() => 'answered', closed)]);
      assert.match(evilOutcome, /^(answered|disconnected)/, 'the server handled the malformed packets');
      assert.equal((await srv.api('GET', '/healthz', { key: null })).status, 200, 'server alive');
      assert.equal((await a.emitAck('msg', { data: 'still fine', storage: 0, msgId: 'ok' })).status, 0);
      assert.equal((await b.waitFor('msg', undefined, (m) => m?.msgId === 'ok')).data, 'still fine');
      await b.expectNo('msg', 0, (m) => m?.msgId !== 'ok');
    });

    // ---- admin pushes and config -------------------------------------------

    test('POST /admin/system/push {roomId, content} reaches every socket of the room as `system`', T, async () => {
      const room = rid('r');
      const a = await member(room, { label: 'A' });
      const d = await member(room, { label: 'D(dummy)', dummy: true });
      const other = await member(rid('r'), { label: 'other room' });
      const content = { notice: 'maintenance', at: 5 };
      ok(await srv.api('POST', '/admin/system/push', { body: { roomId: room, content } }), 'system push');
      assert.deepEqual(await a.waitFor('system'), content);
      assert.deepEqual(await d.waitFor('system'), content);
      ok(await srv.admin('POST', '/admin/system/push', { body: { roomId: room, content: 'text' } }), 'system push with the admin key');
      assert.equal(await a.waitFor('system'), 'text');
      // Positive control: a push to the other room arrives after anything the two before sent it
      ok(await srv.api('POST', '/admin/system/push', { body: { roomId: other.roomId, content: 'marker' } }), 'system push to the other room');
      assert.equal(await other.waitFor('system'), 'marker', 'the other room got nothing of the pushes to this room');
    });

    test('POST /admin/system/push to a user room reaches that user only, not a socket that joined a room-sync room of the same name', T, async () => {
      const bob = await login(srv, { transports, label: 'bob' });
      track(bob);
      const eve = await member(`user_${bob.uid}`, { label: 'eve in room user_<bob>' });
      ok(await srv.api('POST', '/admin/system/push', { body: { roomId: `user_${bob.uid}`, content: 'for bob' } }), 'system push to bob');
      assert.equal(await bob.waitFor('system'), 'for bob', 'the user gets it');
      // A later push to eve's own user room: pushes from one node reach a
      // socket in order, so once eve has the marker the first one is moot.
      ok(await srv.api('POST', '/admin/system/push', { body: { roomId: `user_${eve.uid}`, content: 'marker' } }), 'system push to eve');
      assert.equal(await eve.waitFor('system'), 'marker');
      assert.deepEqual(eve.received('system'), ['marker'], 'eve never got the push meant for bob');
    });

    test('GET /admin/monitor/stat counts online users and rooms', T, async () => {
      const stat = async () => ok(await srv.api('GET', '/admin/monitor/stat'), 'stat');
      const base = await eventually(async () => {
        const s = await stat();
        return s.online_user_count === 0 && s.online_room_count === 0 ? s : null;
      }, 15000, 'no one online at the start');
      assert.equal(typeof base.online_user_count, 'number');
      const room = rid('r');
      const a = await member(room);
      const b = await member(room);
      await member(rid('r'));
      await eventually(async () => {
        const s = await stat();
        return s.online_user_count === 3 && s.online_room_count === 2;
      }, 15000, 'stat = 3 users in 2 rooms');
      closeAll(a, b);
      await eventually(async () => {
        const s = await stat();
        return s.online_user_count === 1 && s.online_room_count === 1;
      }, 15000, 'stat = 1 user in 1 room after two disconnects');
    });

    test('POST /admin/system/config {forceUserAuth:false} lets any uid in without a token; true restores the check', T, async () => {
      try {
        ok(await srv.api('POST', '/admin/system/config', { body: { forceUserAuth: false } }), 'config false');
        const c = track(await connect(srv, { transports }));
        const r = await c.emitAck('authenticate', { uid: rid('free') });
        assert.equal(r.status, 0, `no-token auth with forceUserAuth false: ${JSON.stringify(r)}`);
        assert.equal((await c.emitAck('join', { roomId: rid('r') })).status, 0);
      } finally {
        ok(await srv.api('POST', '/admin/system/config', { body: { forceUserAuth: true } }), 'config true');
      }
      const c2 = track(await connect(srv, { transports }));
      const r2 = await c2.emitAck('authenticate', { uid: rid('free'), token: 'nope' });
      assert.equal(r2.status, 1);
    });

    if (transport === 'websocket') {
      test('default client options (polling, then upgrade to websocket) work end to end', T, async () => {
        const room = rid('r');
        const a = await member(room, { transports: ['polling', 'websocket'], label: 'A' });
        const b = await member(room, { transports: ['polling', 'websocket'], label: 'B' });
        for (const c of [a, b]) {
          await eventually(() => c.socket.io.engine.transport.name === 'websocket', undefined, `[${c.label}] upgrade from polling to websocket`);
        }
        assert.equal((await a.emitAck('msg', { data: 'up', storage: 0, msgId: 'u' })).status, 0);
        assert.equal((await b.waitFor('msg')).data, 'up');
        assert.equal((await b.emitAck('msg', { data: 'down', storage: 0, msgId: 'd' })).status, 0);
        assert.equal((await a.waitFor('msg')).data, 'down');
        assert.deepEqual((await syncAll(b)).msgs.map((m) => m.data), ['up', 'down']);
      });
    }
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
