// Live administration over the public API: the rooms of a tenant with their
// member counts, kicking a user off every socket, and the live tap (a room's
// msg traffic as server-sent events, admin key only, bounded).

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { closeAll, eventually, loginJoin, ok, openTap, rid, startServer } from './harness.mjs';

const T = { timeout: 30000 };

describe('live administration', () => {
  let srv;
  const clients = [];
  const taps = [];
  before(async () => { srv = await startServer(); });
  after(async () => { await srv?.destroy(); });
  afterEach(async () => {
    closeAll(clients.splice(0));
    for (const t of taps.splice(0)) await t.close();
  });

  test('rooms: every room with members, its distinct users and sockets; limit checked', T, async () => {
    const [r1, r2] = [rid('rooms-a'), rid('rooms-b')];
    const a = await loginJoin(srv, r1);
    const b = await loginJoin(srv, r1);
    const c = await loginJoin(srv, r2);
    clients.push(a, b, c);
    const r = ok(await srv.api('GET', '/admin/monitor/rooms'), 'rooms');
    const mine = r.rooms.filter((x) => x.roomId === r1 || x.roomId === r2);
    assert.deepEqual(mine, [{ roomId: r1, users: 2, sockets: 2 }, { roomId: r2, users: 1, sockets: 1 }]);
    assert.equal(r.truncated, false);
    const one = ok(await srv.api('GET', '/admin/monitor/rooms', { query: { limit: 1 } }), 'rooms limit 1');
    assert.equal(one.rooms.length, 1);
    assert.ok(one.total >= 2 && one.truncated, JSON.stringify(one));
    for (const limit of ['0', 'x', '1001']) {
      const bad = await srv.api('GET', '/admin/monitor/rooms', { query: { limit } });
      assert.equal(bad.status, 400, `limit=${limit}: ${bad.text}`);
      assert.match(bad.json.meta.msg, /limit must be 1\.\.=1000/);
    }
    c.close();
    await eventually(async () => {
      const now = ok(await srv.api('GET', '/admin/monitor/rooms'), 'rooms').rooms;
      return !now.some((x) => x.roomId === r2);
    }, 10000, 'an emptied room leaves the list');
  });

  test('nodes: without Redis the node lists itself, alive, with its connections; admin key only', T, async () => {
    const a = await loginJoin(srv, rid('nodes'));
    clients.push(a);
    const r = ok(await srv.api('GET', '/api/cluster/nodes', { key: srv.adminKey }), 'nodes');
    assert.equal(r.nodes.length, 1, JSON.stringify(r));
    const [me] = r.nodes;
    assert.equal(me.self, true);
    assert.equal(me.alive, true);
    assert.ok(me.connections >= 1, JSON.stringify(me));
    assert.ok(me.age_ms < r.expiry_ms, JSON.stringify(r));
    const tenantKey = await srv.api('GET', '/api/cluster/nodes');
    assert.equal(tenantKey.status, 401, tenantKey.text);
  });

  test('kick: the user gets kickout with the reason and is disconnected; the room hears remote_disconnect', T, async () => {
    const room = rid('kick');
    const target = await loginJoin(srv, room);
    const other = await loginJoin(srv, room);
    clients.push(target, other);
    const gone = target.waitDisconnect();
    const r = ok(await srv.api('POST', '/admin/system/kick', { body: { uid: target.uid, reason: 'spamming' } }), 'kick');
    assert.equal(r.uid, String(target.uid));
    const k = await target.waitFor('kickout');
    assert.deepEqual(k, { uid: String(target.uid), data: 'spamming' });
    await gone;
    const who = await other.waitFor('remote_disconnect');
    assert.equal(String(who.uid), String(target.uid));
    assert.ok(other.connected, 'the others stay');

    for (const [body, msg] of [[{}, /uid is required/], [{ uid: 'u', reason: 7 }, /reason must be a string/], [{ uid: 'u', reason: 'x'.repeat(201) }, /reason must be a string/]]) {
      const bad = await srv.api('POST', '/admin/system/kick', { body });
      assert.equal(bad.status, 400, bad.text);
      assert.match(bad.json.meta.msg, msg);
    }
  });

  test('tap: a room\'s relayed msgs as they flow, its room only; the admin key only', T, async () => {
    const room = rid('tap');
    const tap = await openTap(srv, room);
    taps.push(tap);
    assert.equal(tap.res.status, 200);
    assert.match(tap.res.headers.get('content-type'), /text\/event-stream/);
    const a = await loginJoin(srv, room);
    const b = await loginJoin(srv, room);
    const elsewhere = await loginJoin(srv, rid('tap-other'));
    clients.push(a, b, elsewhere);
    await elsewhere.emitAck('msg', { data: 'not here', storage: 0 });
    await a.emitAck('msg', { data: 'hello', storage: 0 });
    await a.emitAck('msg', { data: 'stored', storage: 0, msgId: 'm1' });
    await b.waitFor('msg', undefined, (m) => m.data === 'stored');
    await eventually(() => tap.events.length >= 2, 10000, 'two tapped msgs');
    assert.deepEqual(tap.events.map((e) => [e.event, e.data.data, String(e.data.uid)]), [['msg', 'hello', String(a.uid)], ['msg', 'stored', String(a.uid)]]);

    const tenantKey = await openTap(srv, room, srv.apiKey);
    assert.equal(tenantKey.res.status, 401);
    assert.match((await tenantKey.res.json()).meta.msg, /needs the admin key/);
    const noRoom = await srv.api('GET', '/admin/monitor/tap', { key: srv.adminKey });
    assert.equal(noRoom.status, 400);
  });

  test('tap: a node serves a bounded number of watchers, and a closed one frees its place', T, async () => {
    const room = rid('tap-many');
    const open = [];
    for (let i = 0; i < 16; i += 1) {
      const t = await openTap(srv, room);
      assert.equal(t.res.status, 200, `tap ${i}`);
      open.push(t);
    }
    const over = await openTap(srv, room);
    assert.equal(over.res.status, 429);
    assert.match((await over.res.json()).meta.msg, /already serves 16 live taps/);
    await open.pop().close();
    await eventually(async () => {
      const t = await openTap(srv, room);
      if (t.res.status === 200) { open.push(t); return true; }
      return false;
    }, 10000, 'a place is free again');
    taps.push(...open);
  });

  test('tap: past its rate a watcher is told how many it missed, and the room is not slowed', T, async () => {
    const room = rid('tap-rate');
    const tap = await openTap(srv, room);
    taps.push(tap);
    const a = await loginJoin(srv, room);
    const b = await loginJoin(srv, room);
    clients.push(a, b);
    const n = 120;
    await Promise.all(Array.from({ length: n }, (_, i) => a.emitAck('msg', { data: i, storage: 2 })));
    await eventually(() => b.received('msg').length === n, 10000, 'every msg reaches the room');
    // Drops are reported once a second, with the next tapped msg: ticks
    // carry the reports out (a tick inside the burst's second is dropped too).
    const msgs = (f) => tap.events.filter((e) => e.event === 'msg' && f(e.data.data)).length;
    const dropped = () => tap.events.filter((e) => e.event === 'dropped').reduce((s, e) => s + e.data.dropped, 0);
    let ticks = 0;
    await eventually(async () => {
      await new Promise((r) => setTimeout(r, 400));
      ticks += 1;
      await a.emitAck('msg', { data: 'tick', storage: 2 });
      await new Promise((r) => setTimeout(r, 100));
      return msgs(Number.isInteger) + msgs((d) => d === 'tick') + dropped() === n + ticks;
    }, 15000, 'every tapped msg sent or counted as dropped');
    assert.ok(dropped() > 0, 'the burst passed the rate');
    assert.ok(msgs(Number.isInteger) < n, `fewer than all ${n} reached the watcher: ${msgs(Number.isInteger)}`);
  });
});
