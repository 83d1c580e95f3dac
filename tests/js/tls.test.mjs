// TLS without a proxy (`tls_cert` / `tls_key`): the node serves HTTPS and
// WSS on its one listener. A self-signed certificate for 127.0.0.1 is made
// with openssl for the run; every client trusts it by passing it as `ca`
// (certificate checks stay on: an unverified connection proves nothing).

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { BIN, closeAll, connect, rid, serverEnv, startServer } from './harness.mjs';

const T = { timeout: 60000 };

/** One HTTPS request trusting `ca`; resolves { status, json, text, headers }. */
function httpsJson(srv, method, pathname, { ca, headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(new URL(pathname, srv.url), {
      method,
      ca,
      headers: { ...headers, ...(data ? { 'content-type': 'application/json' } : {}) },
      timeout: 15000,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, json, text, headers: res.headers });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${pathname}: timeout`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** `hookwire serve` that is expected to stop at startup: resolves { code, out }. */
function startupFailure(env, dataDir) {
  return new Promise((resolve) => {
    execFile(BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      env: { ...serverEnv(), RUST_BACKTRACE: '0', HOOKWIRE_ADMIN_KEY: 'a', HOOKWIRE_DEFAULT_API_KEY: 'b', ...env },
      timeout: 15000,
    }, (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, out: stdout + stderr }));
  });
}

describe('TLS (tls_cert, tls_key)', () => {
  let dir;
  let cert;
  let key;
  let ca;
  let srv;
  const clients = [];
  const track = (c) => { clients.push(c); return c; };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'hookwire-tls-'));
    cert = path.join(dir, 'cert.pem');
    key = path.join(dir, 'key.pem');
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1'], { stdio: 'pipe' });
    } catch (e) {
      throw new Error(`openssl could not make a test certificate (apt-get install -y openssl): ${e.stderr || e.message}`);
    }
    ca = await readFile(cert);
    srv = await startServer({ env: { HOOKWIRE_TLS_CERT: cert, HOOKWIRE_TLS_KEY: key }, tls: { ca } });
  });
  after(async () => {
    closeAll(clients);
    await srv?.destroy();
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => closeAll(clients.splice(0)));

  const token = async (uid) => {
    const r = await httpsJson(srv, 'POST', '/user/create_token', { ca, headers: { authorization: `Bearer ${srv.apiKey}` }, body: { uid } });
    assert.equal(r.json?.meta?.status, 0, `create_token over https: ${r.status} ${r.text}`);
    return r.json.data.token;
  };

  /** Connects over https/wss with the CA, authenticates and joins `room`. */
  const joined = async (room, transports, label) => {
    const uid = rid('u');
    const t = await token(uid);
    const c = track(await connect(srv, { transports, label, ioOpts: { ca } }));
    const a = await c.emitAck('authenticate', { uid, token: t });
    assert.equal(a?.status, 0, `[${label}] authenticate: ${JSON.stringify(a)}`);
    const j = await c.emitAck('join', { roomId: room });
    assert.equal(j?.status, 0, `[${label}] join: ${JSON.stringify(j)}`);
    c.uid = uid;
    return c;
  };

  test('GET /healthz over https answers 200; the certificate is the configured one', T, async () => {
    const r = await httpsJson(srv, 'GET', '/healthz', { ca });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json, `healthz is JSON: ${r.text}`);
    // Without the CA the client refuses the self-signed certificate: the
    // check above was a verified connection.
    await assert.rejects(httpsJson(srv, 'GET', '/healthz'), /self[- ]signed|certificate/i);
  });

  test('plain http to the TLS port gets no answer', T, async () => {
    const outcome = await new Promise((resolve) => {
      const req = http.get(`http://127.0.0.1:${srv.port}/healthz`, { timeout: 5000 }, (res) => { res.resume(); resolve(`HTTP ${res.statusCode}`); });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => resolve(`error: ${e.code || e.message}`));
    });
    assert.match(outcome, /^error/, `plain http must fail on the TLS port, got ${outcome}`);
  });

  test('socket.io over wss and over https polling: authenticate, join, msgs both ways; polling upgrades to wss', T, async () => {
    const room = rid('r');
    const ws = await joined(room, ['websocket'], 'wss');
    const polling = await joined(room, ['polling'], 'polling');
    assert.equal(ws.socket.io.engine.transport.name, 'websocket');
    assert.equal(polling.socket.io.engine.transport.name, 'polling');
    const r1 = await ws.emitAck('msg', { data: 'from wss', storage: 0, msgId: 1 });
    assert.equal(r1?.status, 0, JSON.stringify(r1));
    assert.equal((await polling.waitFor('msg', undefined, (m) => m.data === 'from wss')).uid, ws.uid);
    const r2 = await polling.emitAck('msg', { data: 'from polling', storage: 0, msgId: 2 });
    assert.equal(r2?.status, 0, JSON.stringify(r2));
    assert.equal((await ws.waitFor('msg', undefined, (m) => m.data === 'from polling')).uid, polling.uid);

    // The default client starts on polling and moves to WebSocket: the
    // upgrade happens on a TLS connection too.
    const upgraded = await joined(room, ['polling', 'websocket'], 'upgrade');
    const deadline = Date.now() + 15000;
    while (upgraded.socket.io.engine.transport.name !== 'websocket' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(upgraded.socket.io.engine.transport.name, 'websocket', 'the polling client upgraded to wss');
    await ws.emitAck('msg', { data: 'after upgrade', storage: 0, msgId: 3 });
    await upgraded.waitFor('msg', undefined, (m) => m.data === 'after upgrade');
    const r3 = await upgraded.emitAck('msg', { data: 'from upgraded', storage: 0, msgId: 4 });
    assert.equal(r3?.status, 0, JSON.stringify(r3));
    await polling.waitFor('msg', undefined, (m) => m.data === 'from upgraded');
  });

  test('tls_cert without tls_key, an unreadable or invalid file: startup stops with an error naming it', T, async () => {
    const data = path.join(dir, 'bad-data');
    const garbage = path.join(dir, 'garbage.pem');
    await writeFile(garbage, 'not a certificate\n');
    const missing = path.join(dir, 'nope', 'cert.pem');
    const otherKey = path.join(dir, 'other-key.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', otherKey], { stdio: 'pipe' });
    const cases = [
      [{ HOOKWIRE_TLS_CERT: cert }, /tls_key/, 'cert without key'],
      [{ HOOKWIRE_TLS_KEY: key }, /tls_cert/, 'key without cert'],
      [{ HOOKWIRE_TLS_CERT: missing, HOOKWIRE_TLS_KEY: key }, /nope\/cert\.pem/, 'missing cert file'],
      [{ HOOKWIRE_TLS_CERT: garbage, HOOKWIRE_TLS_KEY: key }, /garbage\.pem/, 'cert file without a certificate'],
      [{ HOOKWIRE_TLS_CERT: cert, HOOKWIRE_TLS_KEY: garbage }, /garbage\.pem/, 'key file without a key'],
      // A certificate where the key belongs: no private key in it.
      [{ HOOKWIRE_TLS_CERT: cert, HOOKWIRE_TLS_KEY: cert }, /cert\.pem/, 'key file holding a certificate'],
      [{ HOOKWIRE_TLS_CERT: cert, HOOKWIRE_TLS_KEY: otherKey }, /other-key\.pem/, 'a key of another certificate'],
    ];
    for (const [env, names, what] of cases) {
      const r = await startupFailure(env, data);
      assert.notEqual(r.code, 0, `${what}: startup must fail: ${r.out}`);
      assert.match(r.out, names, `${what}: the error names it: ${r.out}`);
      assert.doesNotMatch(r.out, /listening/, `${what}: never listened`);
    }
    // The flags name the files too.
    const flags = await new Promise((resolve) => {
      execFile(BIN, ['config', '--tls-cert', cert, '--tls-key', key], { env: serverEnv(), timeout: 15000 },
        (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }));
    });
    assert.equal(flags.code, 0, flags.out);
    assert.match(flags.out, new RegExp(`tls_cert = "${cert.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`));
  });

  test('SIGTERM with TLS connections open exits 0', T, async () => {
    const room = rid('r');
    await joined(room, ['websocket'], 'wss');
    await joined(room, ['polling'], 'polling');
    const info = await srv.stop();
    assert.equal(info?.code, 0, `exit ${JSON.stringify(info)}:\n${srv.tail()}`);
  });
});
