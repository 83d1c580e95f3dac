// Tenants REST (admin key), key rotation, and tenant isolation: keys, tokens,
// rooms, messages and pushes never cross from one tenant to another.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Client, closeAll, connect, eventually, login, loginJoin, ok, rid, startServer, syncAll, tokenFor } from './harness.mjs';

const T = { timeout: 30000 };

const DEFAULTS = {
  force_user_auth: true,
  user_room_prefix: 'user_',
  auth_timeout_ms: 10000,
  join_timeout_ms: 10000,
  auth_attempts_per_minute: 30,
  max_msg_bytes: 512000,
  max_rooms_per_socket: 16,
  max_msgs_per_room: 10000,
  max_connections: 100000,
  sync_page_size: 200,
  device_ttl_secs: 3600,
  kickout: true,
  admin_uids: [],
  plugin_fail_open: false,
  allowed_origins: [],
};

const names = (data) => {
  const list = Array.isArray(data) ? data : data?.tenants;
  assert.ok(Array.isArray(list), `tenant list: ${JSON.stringify(data)}`);
  return list.map((t) => (typeof t === 'string' ? t : t.name));
};

describe('tenants', () => {
  let srv;
  const clients = [];
  const track = (c) => { clients.push(c); return c; };
  before(async () => { srv = await startServer(); });
  after(async () => { closeAll(clients); await srv?.destroy(); });
  afterEach(() => closeAll(clients.splice(0)));

  test('GET /api/tenants lists default; default config has the documented defaults', T, async () => {
    const list = ok(await srv.admin('GET', '/api/tenants'), 'list');
    assert.ok(names(list).includes('default'));
    const d = ok(await srv.admin('GET', '/api/tenants/default'), 'get default');
    assert.equal(d.name, 'default');
    for (const [k, v] of Object.entries(DEFAULTS)) assert.deepEqual(d.config[k], v, `default config.${k}`);
  });

  test('create, get, patch, delete a tenant', T, async () => {
    const name = rid('acme');
    const created = ok(await srv.admin('POST', '/api/tenants', { body: { name, config: { auth_timeout_ms: 5000, user_room_prefix: 'p_' } } }), 'create');
    assert.equal(created.name, name);
    assert.equal(typeof created.api_key, 'string');
    assert.ok(created.api_key.length >= 16, 'api key long enough');
    assert.equal(created.config.auth_timeout_ms, 5000);
    assert.equal(created.config.user_room_prefix, 'p_');
    assert.equal(created.config.max_msg_bytes, DEFAULTS.max_msg_bytes, 'unset fields get defaults');
    assert.equal(created.config.kickout, true);

    const dup = await srv.admin('POST', '/api/tenants', { body: { name } });
    assert.notEqual(dup.json?.meta?.status, 0, `duplicate create must fail: ${dup.status} ${dup.text}`);

    assert.ok(names(ok(await srv.admin('GET', '/api/tenants'))).includes(name));
    const got = ok(await srv.admin('GET', `/api/tenants/${name}`), 'get');
    assert.equal(got.name, name);
    assert.equal(got.config.auth_timeout_ms, 5000);

    const patched = ok(await srv.admin('PATCH', `/api/tenants/${name}`, { body: { max_rooms_per_socket: 3, kickout: false } }), 'patch');
    assert.equal(patched.config.max_rooms_per_socket, 3);
    assert.equal(patched.config.kickout, false);
    assert.equal(patched.config.auth_timeout_ms, 5000, 'patch keeps the other fields');
    assert.equal(ok(await srv.admin('GET', `/api/tenants/${name}`)).config.max_rooms_per_socket, 3);

    // the tenant works: namespace /<name>, its key, its tokens
    const c = track(await loginJoin(srv, 'room1', { tenant: name, key: created.api_key }));
    assert.ok(c.connected);
    c.close();

    ok(await srv.admin('DELETE', `/api/tenants/${name}`), 'delete');
    assert.equal((await srv.admin('GET', `/api/tenants/${name}`)).status, 404);
    assert.ok(!names(ok(await srv.admin('GET', '/api/tenants'))).includes(name));
    const afterDelete = await srv.api('POST', '/user/create_token', { tenant: name, key: created.api_key, body: { uid: 'x' } });
    assert.ok([401, 404].includes(afterDelete.status), `the deleted tenant's key: ${afterDelete.status}`);
    assert.equal((await srv.admin('POST', '/user/create_token', { tenant: name, body: { uid: 'x' } })).status, 404, 'deleted tenant is unknown');
    const gone = track(await connect(srv, { ns: `/${name}`, expectConnect: false }));
    await gone.waitFor('connect_error');
  });

  test('tenants REST: unknown tenant 404, bad body 400, default cannot be deleted', T, async () => {
    assert.equal((await srv.admin('GET', `/api/tenants/${rid('nosuch')}`)).status, 404);
    assert.equal((await srv.admin('PATCH', `/api/tenants/${rid('nosuch')}`, { body: { kickout: false } })).status, 404);
    assert.equal((await srv.admin('DELETE', `/api/tenants/${rid('nosuch')}`)).status, 404);
    const bad = await srv.admin('POST', '/api/tenants', { rawBody: '{"name":' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json?.meta?.status, 4);
    const noName = await srv.admin('POST', '/api/tenants', { body: { config: {} } });
    assert.ok([200, 400].includes(noName.status) && noName.json?.meta?.status === 4, `no name: ${noName.status} ${noName.text}`);
    for (const name of ['Bad Name', 'a/b', '', 'x'.repeat(200), 'api', 'admin', 'user', 'demo', 'console', 'socket.io']) {
      const r = await srv.admin('POST', '/api/tenants', { body: { name } });
      assert.notEqual(r.json?.meta?.status, 0, `tenant name ${JSON.stringify(name)} must be refused: ${r.status} ${r.text}`);
    }
    const wrongType = await srv.admin('PATCH', '/api/tenants/default', { body: { max_msg_bytes: 'big' } });
    assert.ok([200, 400].includes(wrongType.status) && wrongType.json?.meta?.status === 4, `wrong type: ${wrongType.status} ${wrongType.text}`);
    assert.equal(ok(await srv.admin('GET', '/api/tenants/default')).config.max_msg_bytes, 512000, 'a refused PATCH changes nothing');
    // values out of range are refused with the field's name, and change nothing
    for (const [field, value] of [['device_ttl_secs', 2 ** 62], ['device_ttl_secs', 0], ['sync_page_size', 0], ['sync_page_size', 1e6], ['max_msgs_per_room', 0], ['max_msg_bytes', 0],
      // larger than a socket.io packet may be on this node (max_payload_bytes, 4 MiB): such a
      // msg would close the sender's connection instead of being refused
      ['max_msg_bytes', 8 << 20]]) {
      const r = await srv.admin('PATCH', '/api/tenants/default', { body: { [field]: value } });
      assert.equal(r.json?.meta?.status, 4, `${field}=${value} must be refused: ${r.status} ${r.text}`);
      assert.match(r.json.meta.msg, new RegExp(field), `the refusal names ${field}: ${r.json.meta.msg}`);
    }
    const cfg = ok(await srv.admin('GET', '/api/tenants/default')).config;
    assert.deepEqual([cfg.device_ttl_secs, cfg.sync_page_size], [3600, 200], 'refused PATCHes changed nothing');
    const created = await srv.admin('POST', '/api/tenants', { body: { name: rid('t'), config: { device_ttl_secs: 2 ** 62 } } });
    assert.equal(created.json?.meta?.status, 4, `a new tenant with an out-of-range config is refused: ${created.text}`);
    const del = await srv.admin('DELETE', '/api/tenants/default');
    assert.notEqual(del.json?.meta?.status, 0, 'deleting default is refused');
    assert.equal((await srv.admin('GET', '/api/tenants/default')).status, 200);
  });

  test('tenants REST needs the admin key: tenant keys and no key get 401', T, async () => {
    for (const key of [null, srv.apiKey, 'nope']) {
      for (const [m, p, body] of [['GET', '/api/tenants'], ['POST', '/api/tenants', { name: rid('t') }], ['GET', '/api/tenants/default'],
        ['PATCH', '/api/tenants/default', { kickout: false }], ['POST', '/api/tenants/default/keys', {}]]) {
        const r = await srv.api(m, p, { key, body });
        assert.equal(r.status, 401, `${m} ${p} with key ${key}: ${r.status}`);
        assert.equal(r.json?.meta?.status, 2);
      }
    }
    assert.equal(ok(await srv.admin('GET', '/api/tenants/default')).config.kickout, true, 'refused PATCH changed nothing');
  });

  test('key rotation: the old key stops working unless keep_old', T, async () => {
    const name = rid('rot');
    const k0 = ok(await srv.admin('POST', '/api/tenants', { body: { name } })).api_key;
    const use = (key) => srv.api('GET', '/admin/monitor/stat', { tenant: name, key });
    ok(await use(k0), 'initial key');
    const k1 = ok(await srv.admin('POST', `/api/tenants/${name}/keys`, { body: {} }), 'rotate').api_key;
    assert.notEqual(k1, k0);
    assert.equal((await use(k0)).status, 401, 'old key refused after rotation');
    ok(await use(k1), 'new key');
    const k2 = ok(await srv.admin('POST', `/api/tenants/${name}/keys`, { body: { keep_old: true } }), 'rotate keep_old').api_key;
    ok(await use(k1), 'kept old key still works');
    ok(await use(k2), 'newest key works');
    // /send with ?site=&apiKey= follows the rotation too
    const send = (key) => srv.api('POST', '/send', { key, keyVia: 'query', query: { site: name }, body: { rooms: ['x'], event: 'e', args: [] } });
    ok(await send(k2), '/send new key');
    assert.equal((await send(k0)).status, 401, '/send rotated-out key');
    await srv.admin('DELETE', `/api/tenants/${name}`);
  });

  describe('isolation between default and acme', () => {
    let acmeKey;
    before(async () => {
      const r = await srv.admin('POST', '/api/tenants', { body: { name: 'acme' } });
      acmeKey = ok(r, 'create acme').api_key;
    });

    test('an acme key is refused on default and a default key on acme (401)', T, async () => {
      const r1 = await srv.api('POST', '/user/create_token', { key: acmeKey, body: { uid: rid('u') } });
      assert.equal(r1.status, 401, `acme key on default: ${r1.status}`);
      const r2 = await srv.api('POST', '/user/create_token', { tenant: 'acme', body: { uid: rid('u') } });
      assert.equal(r2.status, 401, `default key on acme: ${r2.status}`);
      const r3 = await srv.api('POST', '/send', { key: srv.apiKey, keyVia: 'query', query: { site: 'acme' }, body: { rooms: ['x'], event: 'e', args: [] } });
      assert.equal(r3.status, 401, `/send?site=acme with the default key: ${r3.status}`);
      const r4 = await srv.api('GET', '/admin/monitor/stat', { key: acmeKey });
      assert.equal(r4.status, 401, `acme key on default admin API: ${r4.status}`);
      ok(await srv.admin('GET', '/admin/monitor/stat', { tenant: 'acme' }), 'the admin key works on every tenant');
    });

    test('an admin uid of acme is an admin on acme only, and never on the tenants REST API', T, async () => {
      const boss = rid('boss');
      const token = await tokenFor(srv, boss, { tenant: 'acme', key: acmeKey });
      ok(await srv.admin('PATCH', '/api/tenants/acme', { body: { admin_uids: [boss] } }));
      try {
        ok(await srv.api('GET', '/admin/monitor/stat', { key: null, tenant: 'acme', query: { uid: boss, token } }), 'admin uid on its tenant');
        const onDefault = await srv.api('GET', '/admin/monitor/stat', { key: null, tenant: 'default', query: { uid: boss, token } });
        assert.notEqual(onDefault.json?.meta?.status, 0, `acme admin uid on default: ${onDefault.status} ${onDefault.text}`);
        const rest = await srv.api('GET', '/api/tenants', { key: null, query: { uid: boss, token } });
        assert.equal(rest.status, 401, 'tenants REST is admin-key only');
      } finally {
        await srv.admin('PATCH', '/api/tenants/acme', { body: { admin_uids: [] } });
      }
    });

    test('users are per tenant: the same uid exists separately, tokens do not cross', T, async () => {
      const uid = rid('same');
      const tDefault = await tokenFor(srv, uid);
      const tAcme = await tokenFor(srv, uid, { tenant: 'acme', key: acmeKey });
      assert.notEqual(tDefault, tAcme);
      const onDefault = track(await connect(srv));
      assert.equal((await onDefault.emitAck('authenticate', { uid, token: tAcme })).status, 1, 'acme token refused on /');
      const onAcme = track(await connect(srv, { ns: '/acme' }));
      assert.equal((await onAcme.emitAck('authenticate', { uid, token: tDefault })).status, 1, 'default token refused on /acme');
      const good = track(await connect(srv, { ns: '/acme' }));
      assert.equal((await good.emitAck('authenticate', { uid, token: tAcme })).status, 0);
    });

    test('same room name and uid in both tenants: no presence, messages, sync data, system push or /send crosses', T, async () => {
      const room = rid('shared');
      const uidX = rid('x');
      const d1 = track(await loginJoin(srv, room, { uid: uidX, label: 'default/X' }));
      const a1 = track(await loginJoin(srv, room, { uid: uidX, tenant: 'acme', key: acmeKey, label: 'acme/X' }));
      await d1.expectNo('kickout', 200);
      assert.ok(d1.connected, 'same uid in another tenant does not kick');
      const d2 = track(await loginJoin(srv, room, { label: 'default/2' }));
      await d1.waitFor('remote_join');
      await a1.expectNo('remote_join', 200);

      await d2.emitAck('msg', { data: 'default only', storage: 0, msgId: 1 });
      await d1.waitFor('msg');
      await a1.expectNo('msg', 300);
      assert.deepEqual((await syncAll(a1)).msgs, [], 'acme room log is empty');
      assert.deepEqual(ok(await srv.api('GET', '/admin/monitor/room_msgs', { tenant: 'acme', key: acmeKey, query: { roomId: room } })).msgs, []);
      assert.deepEqual(ok(await srv.api('GET', '/admin/monitor/room_users', { tenant: 'acme', key: acmeKey, query: { roomId: room } })).users.map((u) => String(u.uid)), [uidX]);

      ok(await srv.api('POST', '/admin/system/push', { body: { roomId: room, content: 'hi default' } }));
      assert.equal(await d1.waitFor('system'), 'hi default');
      await a1.expectNo('system', 300);

      ok(await srv.api('POST', '/send', { keyVia: 'query', query: { site: 'acme' }, key: acmeKey, body: { rooms: [room], event: 'acme_only', args: [1] } }));
      await a1.waitFor('acme_only');
      await d1.expectNo('acme_only', 300);

      ok(await srv.api('POST', '/admin/system/clear_room_msgs', { tenant: 'acme', key: acmeKey, body: { roomId: room } }));
      assert.deepEqual((await syncAll(d1)).msgs.map((m) => m.data), ['default only'], 'clearing acme room leaves default room alone');
    });

    test('one multiplexed connection (same Manager) to / and /acme: each namespace is its own tenant', T, async () => {
      const { Manager } = await import('socket.io-client');
      const uid = rid('mx');
      const tDefault = await tokenFor(srv, uid);
      const tAcme = await tokenFor(srv, uid, { tenant: 'acme', key: acmeKey });
      const manager = new Manager(srv.url, { transports: ['websocket'], reconnection: false });
      const sd = track(new Client(manager.socket('/'), 'mx /'));
      const sa = track(new Client(manager.socket('/acme'), 'mx /acme'));
      await Promise.all([sd.waitFor('connect'), sa.waitFor('connect')]);
      assert.equal((await sd.emitAck('authenticate', { uid, token: tDefault })).status, 0);
      assert.equal((await sa.emitAck('authenticate', { uid, token: tAcme })).status, 0, 'same uid on the other tenant over the same connection');
      await sd.expectNo('kickout', 200);
      const room = rid('r');
      assert.equal((await sd.emitAck('join', { roomId: room })).status, 0);
      assert.equal((await sa.emitAck('join', { roomId: room })).status, 0);
      const other = track(await loginJoin(srv, room, { label: 'default/other' }));
      await other.emitAck('msg', { data: 'x', storage: 0, msgId: 1 });
      await sd.waitFor('msg');
      await sa.expectNo('msg', 300);
      const syncA = await sa.emitAck('sync', { offset: 0 });
      assert.deepEqual(syncA.data, [], 'acme room log is empty');
    });

    test('acme config changes do not affect default', T, async () => {
      ok(await srv.admin('PATCH', '/api/tenants/acme', { body: { force_user_auth: false } }));
      try {
        const c = track(await connect(srv, { ns: '/acme' }));
        assert.equal((await c.emitAck('authenticate', { uid: rid('anyone') })).status, 0, 'acme: no token needed');
        const d = track(await connect(srv));
        assert.equal((await d.emitAck('authenticate', { uid: rid('anyone') })).status, 1, 'default still checks tokens');
      } finally {
        await srv.admin('PATCH', '/api/tenants/acme', { body: { force_user_auth: true } });
      }
    });

    test('/admin/system/config on acme does not change default', T, async () => {
      ok(await srv.api('POST', '/admin/system/config', { tenant: 'acme', key: acmeKey, body: { forceUserAuth: false } }));
      try {
        // positive control: acme changed
        const a = track(await connect(srv, { ns: '/acme' }));
        assert.equal((await a.emitAck('authenticate', { uid: rid('anyone') })).status, 0, 'acme: no token needed now');
        const d = track(await connect(srv));
        assert.equal((await d.emitAck('authenticate', { uid: rid('anyone') })).status, 1);
      } finally {
        await srv.api('POST', '/admin/system/config', { tenant: 'acme', key: acmeKey, body: { forceUserAuth: true } });
      }
    });

    test('stat counts per tenant', T, async () => {
      const stat = async (tenant) => ok(await srv.admin('GET', '/admin/monitor/stat', { tenant })).online_user_count;
      // sockets of earlier tests may still be closing: start from empty tenants
      await eventually(async () => (await stat('acme')) === 0 && (await stat('default')) === 0, 15000, 'no one online at the start');
      const [acme0, default0] = [0, 0];
      track(await login(srv));
      track(await login(srv));
      // positive control: default counts its two new users
      await eventually(async () => (await stat('default')) === default0 + 2, 10000, 'default counts its two logins');
      assert.equal(await stat('acme'), acme0, 'default logins are not counted on acme');
      const acmeUid = rid('u');
      track(await login(srv, { tenant: 'acme', uid: acmeUid, key: acmeKey }));
      await eventually(async () => (await stat('acme')) === acme0 + 1, 10000, 'acme counts its own login');
    });
  });
});
