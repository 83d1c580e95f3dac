// HTTP surface: envelope, keys, account API, admin endpoints' errors,
// healthz, metrics, the /demo page. (Room behaviour of the admin endpoints is
// in room-sync-suite.mjs; tenants REST in tenants.test.mjs.)

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { closeAll, connect, login, loginJoin, ok, rid, startServer, tokenFor } from './harness.mjs';

const T = { timeout: 20000 };

describe('HTTP API', () => {
  let srv;
  const clients = [];
  before(async () => { srv = await startServer(); });
  after(async () => { closeAll(clients); await srv?.destroy(); });
  afterEach(() => closeAll(clients.splice(0)));

  const refused = (r, what) => {
    assert.equal(r.status, 401, `${what}: expected HTTP 401, got ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(r.json?.meta?.status, 2, `${what}: meta.status 2`);
    assert.equal(typeof r.json.meta.msg, 'string');
    assert.match(r.json.meta.msg, /key|auth|permission|denied|refused/i, `${what}: meta.msg says the key was refused`);
  };

  test('GET /healthz answers 200 JSON without a key', T, async () => {
    const r = await srv.api('GET', '/healthz', { key: null });
    assert.equal(r.status, 200);
    assert.ok(r.json !== undefined, `healthz is JSON: ${r.text}`);
  });

  test('GET /metrics is Prometheus text with hookwire_ metrics for connections, rooms, messages and store latency', T, async () => {
    const room = rid('r');
    const a = await loginJoin(srv, room);
    const b = await loginJoin(srv, room);
    clients.push(a, b);
    await a.emitAck('msg', { data: 1, storage: 0, msgId: 1 });
    await b.waitFor('msg');
    const r = await srv.api('GET', '/metrics', { key: srv.adminKey });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /text\/plain|openmetrics/);
    const names = [...r.text.matchAll(/^(hookwire_[a-zA-Z0-9_]+)/gm)].map((m) => m[1]);
    assert.ok(names.length > 0, 'has hookwire_ metrics');
    for (const [what, re] of [['connections', /connect/], ['rooms', /room/], ['messages', /msg|message/], ['store latency', /store/]]) {
      assert.ok(names.some((n) => re.test(n)), `a hookwire_ metric about ${what}; have: ${[...new Set(names)].join(', ')}`);
    }
    // samples: name{labels} value
    const samples = [...r.text.matchAll(/^(hookwire_[a-zA-Z0-9_]+)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)/gm)].map((m) => ({ name: m[1], value: Number(m[3]) }));
    assert.ok(samples.some((x) => /msg|message/.test(x.name) && !/bucket|sum|count|bytes/.test(x.name) && x.value >= 1),
      `a message counter counted the msg: ${samples.filter((x) => /msg|message/.test(x.name)).map((x) => `${x.name}=${x.value}`).join(', ')}`);
    assert.ok(samples.some((x) => /connect/.test(x.name) && x.value >= 2), 'a connection metric counts the two clients');
    // The store latency histogram times real operations: the stored msg's write among them.
    const writes = r.text.match(/^hookwire_store_latency_seconds_count\{op="room_write"\} (\d+)/m);
    assert.ok(writes && Number(writes[1]) >= 1, `room writes are timed:\n${r.text.split('\n').filter((l) => /store_/.test(l)).join('\n')}`);
    const tenants = r.text.match(/^hookwire_store_latency_seconds_count\{op="list_tenants"\} (\d+)/m);
    assert.ok(tenants && Number(tenants[1]) >= 1, 'startup reads are timed too');
  });

  test('POST /user/create_token: envelope {meta:{status:0,msg}, data:{uid, token}}; again -> status 1 (user exists)', T, async () => {
    const uid = rid('u');
    const r = await srv.api('POST', '/user/create_token', { body: { uid } });
    assert.equal(r.status, 200);
    assert.equal(r.json.meta.status, 0);
    assert.equal(typeof r.json.meta.msg, 'string');
    assert.equal(String(r.json.data.uid), uid);
    assert.equal(typeof r.json.data.token, 'string');
    assert.ok(r.json.data.token.length >= 8, 'token is not trivially short');
    const again = await srv.api('POST', '/user/create_token', { body: { uid } });
    assert.equal(again.status, 200);
    assert.equal(again.json.meta.status, 1);
  });

  test('create_token accepts a form-encoded body and the ?apiKey= parameter', T, async () => {
    const uid = rid('u');
    const r = await srv.api('POST', '/user/create_token', { form: { uid }, keyVia: 'query' });
    const d = ok(r, 'form create_token');
    assert.equal(String(d.uid), uid);
  });

  test('create_token without uid or with an empty uid: meta.status 4 (param error)', T, async () => {
    for (const body of [{}, { uid: '' }, { uid: null }]) {
      const r = await srv.api('POST', '/user/create_token', { body });
      assert.ok([200, 400].includes(r.status), `HTTP ${r.status}`);
      assert.equal(r.json?.meta?.status, 4, `${JSON.stringify(body)} -> ${r.text}`);
    }
  });

  test('malformed JSON body: HTTP 400, meta.status 4', T, async () => {
    for (const p of ['/user/create_token', '/user/refresh_token', '/admin/system/push', '/send']) {
      const r = await srv.api('POST', p, { rawBody: '{"uid": ' });
      assert.equal(r.status, 400, `${p}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.json?.meta?.status, 4, `${p}: ${r.text.slice(0, 200)}`);
    }
  });

  test('POST /user/refresh_token: new token works, old one stops working; unknown uid -> status 5', T, async () => {
    const uid = rid('u');
    const old = await tokenFor(srv, uid);
    const d = ok(await srv.api('POST', '/user/refresh_token', { body: { uid } }), 'refresh');
    assert.equal(String(d.uid), uid);
    assert.notEqual(d.token, old);
    const c1 = await connect(srv);
    clients.push(c1);
    assert.equal((await c1.emitAck('authenticate', { uid, token: old })).status, 1, 'old token refused');
    const c2 = await connect(srv);
    clients.push(c2);
    assert.equal((await c2.emitAck('authenticate', { uid, token: d.token })).status, 0, 'new token accepted');
    const unknown = await srv.api('POST', '/user/refresh_token', { body: { uid: rid('nobody') } });
    assert.equal(unknown.status, 200);
    assert.equal(unknown.json.meta.status, 5);
  });

  test('keys: Bearer header, ?apiKey=, and the admin key are accepted', T, async () => {
    ok(await srv.api('GET', '/admin/monitor/stat'), 'Bearer tenant key');
    ok(await srv.api('GET', '/admin/monitor/stat', { keyVia: 'query' }), '?apiKey= tenant key');
    ok(await srv.admin('GET', '/admin/monitor/stat'), 'admin key');
    ok(await srv.admin('GET', '/admin/monitor/stat', { keyVia: 'query' }), 'admin key as ?apiKey=');
    ok(await srv.api('GET', '/admin/monitor/stat', { tenant: 'default' }), '?tenant=default');
  });

  test('missing or wrong key: HTTP 401, meta.status 2, on every account/admin/push endpoint', T, async () => {
    const calls = [
      ['POST', '/user/create_token', { uid: rid('u') }],
      ['POST', '/user/refresh_token', { uid: rid('u') }],
      ['GET', '/admin/monitor/stat'],
      ['GET', '/admin/monitor/room_users?roomId=1'],
      ['GET', '/admin/monitor/room_msgs?roomId=1'],
      ['POST', '/admin/system/push', { roomId: '1', content: 'x' }],
      ['POST', '/admin/system/config', { forceUserAuth: false }],
      ['POST', '/admin/system/clear_room_msgs', { roomId: '1' }],
      ['POST', '/admin/system/clear_room_msg', { roomId: '1' }],
      ['POST', '/send', { rooms: ['r'], event: 'e', args: [] }],
    ];
    for (const [method, p, body] of calls) {
      refused(await srv.api(method, p, { body, key: null }), `${method} ${p} without key`);
      refused(await srv.api(method, p, { body, key: 'not-a-key' }), `${method} ${p} with a wrong Bearer key`);
      refused(await srv.api(method, p, { body, key: 'not-a-key', keyVia: 'query' }), `${method} ${p} with a wrong ?apiKey=`);
    }
    // config was never changed by the refused calls
    const c = await connect(srv);
    clients.push(c);
    assert.equal((await c.emitAck('authenticate', { uid: rid('u'), token: 'x' })).status, 1);
  });

  test('unknown tenant: HTTP 404', T, async () => {
    const r = await srv.admin('GET', '/admin/monitor/stat', { tenant: rid('nosuch') });
    assert.equal(r.status, 404, r.text);
    const r2 = await srv.admin('POST', '/user/create_token', { tenant: rid('nosuch'), body: { uid: 'a' } });
    assert.equal(r2.status, 404, r2.text);
  });

  test('admin endpoints without roomId: meta.status 4 (param error)', T, async () => {
    const calls = [
      ['GET', '/admin/monitor/room_users'],
      ['GET', '/admin/monitor/room_msgs'],
      ['GET', '/admin/monitor/room_users?roomId='],
      ['POST', '/admin/system/push', { content: 'x' }],
      ['POST', '/admin/system/push', { roomId: '', content: 'x' }],
      ['POST', '/admin/system/clear_room_msgs', {}],
      ['POST', '/admin/system/clear_room_msg', { roomId: '' }],
    ];
    for (const [method, p, body] of calls) {
      const r = await srv.api(method, p, { body });
      assert.ok([200, 400].includes(r.status), `${method} ${p}: HTTP ${r.status}`);
      assert.equal(r.json?.meta?.status, 4, `${method} ${p} ${JSON.stringify(body)} -> ${r.text.slice(0, 200)}`);
    }
  });

  test('/send without event or rooms: meta.status 4; odd args shapes never crash', T, async () => {
    for (const body of [{ rooms: ['r'], args: [] }, { event: 'e', args: [] }, { rooms: { a: 1 }, event: 'e' }, { rooms: ['r'], event: '' }, { rooms: ['r'], event: 42 }]) {
      const r = await srv.api('POST', '/send', { body });
      assert.ok([200, 400].includes(r.status) && r.json?.meta?.status === 4, `${JSON.stringify(body)} -> ${r.status} ${r.text.slice(0, 200)}`);
    }
    for (const args of [{ a: 1 }, 'text', null, undefined]) {
      const r = await srv.api('POST', '/send', { body: { rooms: ['r'], event: 'e', args } });
      assert.ok([200, 400].includes(r.status) && [0, 4].includes(r.json?.meta?.status), `args ${JSON.stringify(args)} -> ${r.status} ${r.text.slice(0, 200)}`);
    }
    assert.equal((await srv.api('GET', '/healthz', { key: null })).status, 200);
  });

  test('room_users / room_msgs of an unknown room: empty lists', T, async () => {
    const room = rid('empty');
    assert.deepEqual(ok(await srv.api('GET', '/admin/monitor/room_users', { query: { roomId: room } })).users, []);
    const m = ok(await srv.api('GET', '/admin/monitor/room_msgs', { query: { roomId: room } }));
    assert.deepEqual(m.msgs, []);
    assert.equal(m.next, 0);
  });

  test('admin API with ?uid=&token= of a user the tenant marks as admin (admin_uids)', T, async () => {
    const adminUid = rid('boss');
    const token = await tokenFor(srv, adminUid);
    const plainUid = rid('u');
    const plainToken = await tokenFor(srv, plainUid);
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { admin_uids: [adminUid] } }), 'set admin_uids');
    const r = await srv.api('GET', '/admin/monitor/stat', { key: null, query: { uid: adminUid, token } });
    ok(r, 'stat as an admin uid');
    const bad = await srv.api('GET', '/admin/monitor/stat', { key: null, query: { uid: adminUid, token: 'wrong' } });
    assert.notEqual(bad.json?.meta?.status, 0, 'wrong admin token refused');
    const notAdmin = await srv.api('GET', '/admin/monitor/stat', { key: null, query: { uid: plainUid, token: plainToken } });
    assert.notEqual(notAdmin.json?.meta?.status, 0, 'a non-admin user is refused');
  });

  test('GET /demo serves the whiteboard page; /demo/socket.io.min.js the client', T, async () => {
    const r = await srv.api('GET', '/demo', { key: null });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /text\/html/);
    assert.match(r.text, /<canvas/i);
    const js = await srv.api('GET', '/demo/socket.io.min.js', { key: null });
    assert.equal(js.status, 200);
    assert.match(js.text, /Socket\.IO v4/);
  });

  test('an unauthenticated socket on a namespace that is not a tenant is refused', T, async () => {
    const c = await connect(srv, { ns: `/${rid('nosuch')}`, expectConnect: false });
    clients.push(c);
    await c.waitFor('connect_error');
  });

  test('uid 0 is like any other id (login works end to end)', T, async () => {
    // uid 0 is not special: hookwire compares string forms, so 0 is a valid id
    await srv.api('POST', '/user/create_token', { body: { uid: 0 } }); // may exist from an earlier run of this test
    const r = await srv.api('POST', '/user/refresh_token', { body: { uid: 0 } });
    const { uid, token } = ok(r, 'refresh_token uid 0');
    assert.equal(String(uid), '0');
    const room = rid('r');
    const a = await loginJoin(srv, room, { uid: 0, token, label: 'uid0' });
    const b = await loginJoin(srv, room, { label: 'peer' });
    clients.push(a, b);
    assert.equal((await a.emitAck('msg', { data: 'from 0', storage: 0, msgId: 'z' })).status, 0);
    const m = await b.waitFor('msg', undefined, (x) => x?.msgId === 'z');
    assert.equal(String(m.uid), '0', 'the relayed sender is uid 0');
  });

  test('one refusal text: an unknown tenant, a wrong key and another tenant\'s key get the same answer', T, async () => {
    const other = rid('t');
    const created = ok(await srv.admin('POST', '/api/tenants', { body: { name: other } }), 'create a second tenant');
    const otherKey = created.api_key ?? created.apiKey ?? created.key;
    assert.equal(typeof otherKey, 'string', `the new tenant's key: ${JSON.stringify(created)}`);
    // positive control: the key works for its own tenant
    ok(await srv.api('GET', '/admin/monitor/stat', { tenant: other, key: otherKey }), 'own key on its tenant');
    const answers = [
      await srv.api('GET', '/admin/monitor/stat', { tenant: rid('nosuch'), key: 'not-a-key' }),
      await srv.api('GET', '/admin/monitor/stat', { tenant: 'default', key: 'not-a-key' }),
      await srv.api('GET', '/admin/monitor/stat', { tenant: 'default', key: otherKey }),
      await srv.api('GET', '/admin/monitor/stat', { tenant: rid('nosuch'), key: null }),
      await srv.api('GET', '/admin/monitor/stat', { tenant: 'default', key: null }),
    ];
    for (const r of answers) refused(r, 'refused');
    assert.equal(new Set(answers.map((r) => r.json.meta.msg)).size, 1, answers.map((r) => r.json.meta.msg).join(' | '));
    await srv.admin('DELETE', `/api/tenants/${other}`);
  });

  test('socket authenticate: an unknown uid and a wrong token get the same refusal', T, async () => {
    const known = rid('u');
    await tokenFor(srv, known);
    const c = await connect(srv);
    clients.push(c);
    const wrong = await c.emitAck('authenticate', { uid: known, token: 'wrong' });
    const unknown = await c.emitAck('authenticate', { uid: rid('nosuch'), token: 'wrong' });
    assert.equal(wrong?.status, 1, JSON.stringify(wrong));
    assert.deepEqual(unknown, wrong, 'the refusal does not tell which uids exist');
  });
});

describe('/metrics behind a metrics key', () => {
  let srv;
  const metricsKey = rid('mk');
  before(async () => { srv = await startServer({ env: { HOOKWIRE_METRICS_KEY: metricsKey } }); });
  after(async () => { await srv?.destroy(); });

  test('refused without the key or with a tenant key; served with the metrics key or the admin key', T, async () => {
    for (const key of [null, 'wrong', srv.apiKey]) {
      const r = await srv.api('GET', '/metrics', { key });
      assert.equal(r.status, 401, `key ${key}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.doesNotMatch(r.text, /hookwire_|tenant=/, 'nothing of the metrics leaks in the refusal');
    }
    for (const key of [metricsKey, srv.adminKey]) {
      const r = await srv.api('GET', '/metrics', { key });
      assert.equal(r.status, 200, r.text.slice(0, 200));
      assert.match(r.text, /hookwire_/);
    }
  });
});

