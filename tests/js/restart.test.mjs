// Durability: everything acknowledged before a kill -9 is there after a
// restart on the same data dir (msg ack = durable; an HTTP 200 from
// create_token, /send or the tenants API = durable). Plus graceful SIGTERM.

import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';
import { closeAll, eventually, login, loginJoin, ok, rid, startServer, syncAll, tokenFor } from './harness.mjs';

const T = { timeout: 90000 };

describe('restart', () => {
  const servers = [];
  const clients = [];
  const track = (c) => { clients.push(c); return c; };
  after(async () => { closeAll(clients); for (const s of servers) await s.destroy(); });
  afterEach(() => closeAll(clients.splice(0)));

  const offline = (srv, tenant) => eventually(async () => ok(await srv.admin('GET', '/admin/monitor/stat', { tenant })).online_user_count === 0,
    20000, 'all sockets closed');

  test('kill -9 after acks: messages, updates, tokens, refreshed tokens, tenants and pending pushes survive', T, async () => {
    const srv = await startServer();
    servers.push(srv);
    const room = rid('r');

    // tokens
    const writer = track(await loginJoin(srv, room, { label: 'writer' }));
    const refreshedUid = rid('u');
    await tokenFor(srv, refreshedUid);
    const refreshed = ok(await srv.api('POST', '/user/refresh_token', { body: { uid: refreshedUid } })).token;

    // a tenant with its own key and config, patched, key rotated
    const acme0 = ok(await srv.admin('POST', '/api/tenants', { body: { name: 'acme', config: { sync_page_size: 7 } } }));
    ok(await srv.admin('PATCH', '/api/tenants/acme', { body: { kickout: false } }), 'patch acme');
    const acme = ok(await srv.admin('POST', '/api/tenants/acme/keys', { body: {} }), 'rotate acme key');

    // a cleared room stays cleared
    const cleared = rid('cleared');
    const clearer = track(await loginJoin(srv, cleared, { label: 'clearer' }));
    for (let i = 0; i < 5; i++) await clearer.emitAck('msg', { data: i, storage: 0, msgId: i });
    ok(await srv.api('POST', '/admin/system/clear_room_msgs', { body: { roomId: cleared } }), 'clear');
    assert.equal((await clearer.emitAck('msg', { data: 'after clear', storage: 0, msgId: 'ac' })).status, 0);

    // messages: each acked = durable
    for (let i = 0; i < 60; i++) assert.equal((await writer.emitAck('msg', { data: { i }, storage: 0, msgId: `m${i}` })).status, 0);
    assert.equal((await writer.emitAck('msg', { data: 'v1', storage: 1, msgId: 'cur' })).status, 0);
    assert.equal((await writer.emitAck('msg', { data: 'v2', storage: 1, msgId: 'cur' })).status, 0);
    // a burst (group commit): all sent at once, all acks awaited
    const burst = await Promise.all(Array.from({ length: 100 }, (_, i) => writer.emitAck('msg', { data: { b: i }, storage: 0, msgId: `b${i}` }, 15000)));
    assert.ok(burst.every((r) => r.status === 0));

    // pending pushes for an offline user (device seen once)
    const pushUid = rid('p');
    const dev = track(await login(srv, { uid: pushUid, via: 'handshake', query: { deviceId: 'd1' } }));
    await dev.waitFor('_settings');
    dev.close();
    await eventually(async () => ok(await srv.api('GET', '/admin/monitor/stat')).online_user_count === 2, 20000, 'push device offline (writer and clearer stay)');
    for (let i = 0; i < 3; i++) ok(await srv.api('POST', '/send', { keyVia: 'query', query: { site: 'default' }, body: { rooms: [`user_${pushUid}`], event: 'queued', args: [i, { n: i }] } }));

    closeAll(clients.splice(0));
    await srv.kill9();
    await srv.start();

    const reader = track(await login(srv, { uid: writer.uid, token: writer.token, label: 'old token after restart' }));
    assert.equal((await reader.emitAck('join', { roomId: room })).status, 0);
    const { msgs } = await syncAll(reader);
    const inserts = msgs.filter((m) => m.storage !== 1);
    assert.deepEqual(inserts.slice(0, 60).map((m) => m.data.i), [...Array(60).keys()], 'acked inserts in order');
    assert.deepEqual(new Set(inserts.slice(60).map((m) => m.data.b)), new Set([...Array(100).keys()]), 'burst inserts all there');
    assert.equal(inserts.length, 160);
    const upd = msgs.filter((m) => m.msgId === 'cur');
    assert.deepEqual(upd.map((m) => m.data), ['v2'], 'latest update value');

    track(await login(srv, { uid: refreshedUid, token: refreshed, label: 'refreshed token after restart' }));

    const acmeNow = ok(await srv.admin('GET', '/api/tenants/acme'));
    assert.equal(acmeNow.config.sync_page_size, 7);
    assert.equal(acmeNow.config.kickout, false, 'PATCHed config after restart');
    ok(await srv.api('GET', '/admin/monitor/stat', { tenant: 'acme', key: acme.api_key }), 'rotated acme key after restart');
    assert.equal((await srv.api('GET', '/admin/monitor/stat', { tenant: 'acme', key: acme0.api_key })).status, 401, 'rotated-out key stays refused');

    const reClear = track(await loginJoin(srv, cleared, { uid: clearer.uid, token: clearer.token, label: 'clearer after restart' }));
    const cs = await reClear.emitAck('sync', { offset: 0 });
    assert.deepEqual(cs.data.map((m) => m.data), ['after clear'], 'cleared messages do not come back');
    assert.equal(cs.epoch, 1, 'the epoch survives the restart');

    const dev2 = track(await login(srv, { uid: pushUid, via: 'handshake', query: { deviceId: 'd1' }, label: 'push device after restart' }));
    const batch = await dev2.waitForEntry('_batch', 15000, (ev) => Array.isArray(ev) && ev.length > 0);
    assert.deepEqual(batch.args[0], [['queued', 0, { n: 0 }], ['queued', 1, { n: 1 }], ['queued', 2, { n: 2 }]]);
    batch.ack();
  });

  for (const how of ['kill -9', 'SIGTERM']) {
    test(`${how} in the middle of a write burst: every msg acked {status:0} before the stop is there after the restart`, T, async () => {
      const srv = await startServer();
      servers.push(srv);
      const room = rid('r');
      const a = track(await loginJoin(srv, room, { label: 'writer' }));
      const acked = [];
      let stopAt = null;
      const stopped = new Promise((resolve) => { stopAt = resolve; });
      const sends = Array.from({ length: 600 }, (_, i) => a.emitAck('msg', { data: i, storage: 0, msgId: i }, 20000)
        .then((r) => {
          if (r?.status === 0) acked.push(i);
          if (acked.length === 150) stopAt();
        })
        .catch(() => { /* lost with the connection: not acked */ }));
      await Promise.race([stopped, Promise.all(sends)]);
      const ackedBeforeStop = [...acked];
      if (how === 'kill -9') await srv.kill9();
      else await srv.stop();
      await Promise.all(sends);
      closeAll(clients.splice(0));
      await srv.start();
      const b = track(await loginJoin(srv, room, { uid: a.uid, token: a.token, label: 'reader' }));
      const stored = new Set((await syncAll(b)).msgs.map((m) => m.data));
      const lost = ackedBeforeStop.filter((i) => !stored.has(i));
      assert.deepEqual(lost, [], `${lost.length} of ${ackedBeforeStop.length} acked messages lost after ${how}`);
      const lateLost = acked.filter((i) => !stored.has(i));
      assert.deepEqual(lateLost, [], 'acks that raced the stop were durable too');
    });
  }

  test('SIGTERM: graceful exit (code 0, within 10 s), store flushed, data back after restart', T, async () => {
    const srv = await startServer();
    servers.push(srv);
    const room = rid('r');
    const a = track(await loginJoin(srv, room));
    const acks = await Promise.all(Array.from({ length: 50 }, (_, i) => a.emitAck('msg', { data: i, storage: 0, msgId: i })));
    assert.ok(acks.every((r) => r.status === 0));
    const t0 = Date.now();
    const exit = await srv.stop(10000);
    assert.ok(Date.now() - t0 < 10000, 'stopped within 10 s');
    assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}:\n${srv.tail()}`);
    closeAll(clients.splice(0));
    await srv.start();
    const b = track(await loginJoin(srv, room, { uid: a.uid, token: a.token }));
    assert.equal((await syncAll(b)).msgs.length, 50);
  });

  test('first start without keys: the server generates the admin and default keys, says where they are, and keeps them across restarts', T, async () => {
    const srv = await startServer({ adminKey: null, apiKey: null });
    servers.push(srv);
    const found = (what) => {
      const m = srv.logs.match(new RegExp(`${what}[^\\n]*?(/[^\\s"']+)`));
      assert.ok(m, `the first start tells where the ${what} is:\n${srv.excerpt()}`);
      return m[1];
    };
    const adminPath = found('admin key');
    const apiPath = found('default');
    const { readFile } = await import('node:fs/promises');
    srv.adminKey = (await readFile(adminPath, 'utf8')).trim();
    srv.apiKey = (await readFile(apiPath, 'utf8')).trim();
    ok(await srv.admin('GET', '/api/tenants'), 'generated admin key works');
    const token = await tokenFor(srv, 'first');
    srv.logs = '';
    await srv.restart();
    ok(await srv.admin('GET', '/api/tenants'), 'same admin key after restart');
    track(await login(srv, { uid: 'first', token }));
    assert.equal((await readFile(adminPath, 'utf8')).trim(), srv.adminKey, 'key file unchanged');
  });

  test('a restart with connected clients: clients see a disconnect, can log in again', T, async () => {
    const srv = await startServer();
    servers.push(srv);
    const a = track(await loginJoin(srv, rid('r')));
    await srv.kill9();
    await a.waitDisconnect(10000);
    await srv.start();
    await offline(srv);
    track(await loginJoin(srv, rid('r'), { uid: a.uid, token: a.token }));
  });
});
