// A tenant's `allowed_origins`: a browser page of another site must not open
// a socket.io connection to the tenant (cross-site WebSocket hijacking rides
// on the page's cookies and network position). A connection whose `Origin`
// header is not allowed is refused at the namespace connect, on both
// transports; one without `Origin` (not a browser) is let through.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { closeAll, connect, ok, rid, startServer, tokenFor } from './harness.mjs';

const T = { timeout: 30000 };
const GOOD = 'https://good.example';
const EVIL = 'https://evil.example';
const TRANSPORTS = [['websocket'], ['polling']];

describe('tenant allowed_origins', () => {
  let srv;
  const clients = [];
  const track = (c) => { clients.push(c); return c; };
  before(async () => { srv = await startServer(); });
  after(async () => { closeAll(clients); await srv?.destroy(); });
  afterEach(() => closeAll(clients.splice(0)));

  const headersOf = (origin) => (origin === undefined ? {} : { extraHeaders: { Origin: origin } });

  /** Connects with `origin` (undefined: no Origin header) and resolves the connect_error message, or fails. */
  async function refusedMessage(ns, transports, origin) {
    const c = track(await connect(srv, { ns, transports, expectConnect: false, ioOpts: headersOf(origin), label: `${origin} ${transports}` }));
    const outcome = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${transports} with Origin ${origin} to ${ns}: neither connect nor connect_error`)), 20000);
      c.socket.once('connect', () => { clearTimeout(t); resolve(null); });
      c.socket.once('connect_error', (e) => { clearTimeout(t); resolve(e); });
    });
    assert.ok(outcome, `${transports} with Origin ${origin} to ${ns} must be refused; it connected`);
    return outcome.message;
  }

  /** Connects with `origin`, authenticates and answers the client. */
  async function admitted(ns, transports, origin, tenant) {
    const uid = rid('u');
    const token = await tokenFor(srv, uid, tenant ? { tenant: tenant.name, key: tenant.key } : {});
    const c = track(await connect(srv, { ns, transports, ioOpts: headersOf(origin), label: `${origin ?? 'no origin'} ${transports}` }));
    const r = await c.emitAck('authenticate', { uid, token });
    assert.equal(r?.status, 0, `authenticate with Origin ${origin} on ${transports}: ${JSON.stringify(r)}`);
    return c;
  }

  test('an Origin not in the list is refused on both transports; an allowed one and none connect and authenticate', T, async () => {
    const patched = ok(await srv.admin('PATCH', '/api/tenants/default', { body: { allowed_origins: [GOOD] } }), 'patch allowed_origins');
    assert.deepEqual(patched.config.allowed_origins, [GOOD]);
    try {
      for (const transports of TRANSPORTS) {
        const msg = await refusedMessage('/', transports, EVIL);
        assert.match(msg, /origin not allowed/, `${transports}: connect_error says why: ${msg}`);
        // The scheme and the port are part of the origin.
        await refusedMessage('/', transports, 'http://good.example');
        await refusedMessage('/', transports, 'https://good.example:8443');
        await refusedMessage('/', transports, 'null');
        await admitted('/', transports, GOOD);
        await admitted('/', transports, undefined);
      }
    } finally {
      ok(await srv.admin('PATCH', '/api/tenants/default', { body: { allowed_origins: [] } }), 'reset');
    }
    // Empty list: any origin, as for a tenant that never set one.
    for (const transports of TRANSPORTS) await admitted('/', transports, EVIL);
  });

  test('the list is per tenant; `*` allows any origin', T, async () => {
    const name = rid('t');
    const created = ok(await srv.admin('POST', '/api/tenants', { body: { name, config: { allowed_origins: [GOOD] } } }), 'create');
    const tenant = { name, key: created.api_key };
    for (const transports of TRANSPORTS) {
      assert.match(await refusedMessage(`/${name}`, transports, EVIL), /origin not allowed/);
      await admitted(`/${name}`, transports, GOOD, tenant);
      // The default tenant has no list: the same origin is welcome there.
      await admitted('/', transports, EVIL);
    }
    ok(await srv.admin('PATCH', `/api/tenants/${name}`, { body: { allowed_origins: ['*'] } }), 'patch *');
    for (const transports of TRANSPORTS) await admitted(`/${name}`, transports, EVIL, tenant);
    ok(await srv.admin('DELETE', `/api/tenants/${name}`), 'delete');
  });

  test('an invalid entry is refused with HTTP 400 naming allowed_origins, and changes nothing', T, async () => {
    // A valid list is accepted (and read back) first.
    const good = ok(await srv.admin('PATCH', '/api/tenants/default', { body: { allowed_origins: [GOOD, 'http://127.0.0.1:8080'] } }), 'valid list');
    assert.deepEqual(good.config.allowed_origins, [GOOD, 'http://127.0.0.1:8080']);
    for (const bad of ['good.example', 'https://good.example/', 'https://good.example/app', 'https://', 'https://good.example:99999', 'https://a b', '', 'https://good.example?x=1']) {
      const r = await srv.admin('PATCH', '/api/tenants/default', { body: { allowed_origins: [GOOD, bad] } });
      assert.equal(r.status, 400, `${JSON.stringify(bad)} must be refused with 400: ${r.status} ${r.text}`);
      assert.equal(r.json?.meta?.status, 4);
      assert.match(r.json.meta.msg, /allowed_origins/, `the refusal names the field: ${r.json.meta.msg}`);
    }
    const r = await srv.admin('POST', '/api/tenants', { body: { name: rid('t'), config: { allowed_origins: ['evil'] } } });
    assert.equal(r.status, 400, `create with a bad origin: ${r.text}`);
    assert.deepEqual(ok(await srv.admin('GET', '/api/tenants/default')).config.allowed_origins, [GOOD, 'http://127.0.0.1:8080'], 'refused PATCHes changed nothing');
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { allowed_origins: [] } }), 'reset');
  });
});
