// CORS of the HTTP API and of socket.io polling (`cors_allowed_origins`): a page of a listed origin
// may call the API from a browser (preflight and the call itself carry
// `access-control-allow-origin` of that origin); any other origin gets no
// `access-control-allow-origin`, so its browser keeps the answer from the
// page. Unset, the API sends no CORS headers at all.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, serverEnv, startServer } from './harness.mjs';

const T = { timeout: 30000 };
const GOOD = 'https://good.example';
const OTHER_GOOD = 'http://127.0.0.1:5173';
const EVIL = 'https://evil.example';

/** A raw HTTP request (any header, Origin included); resolves { status, headers, body }. */
function request(srv, method, pathname, headers = {}, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(pathname, srv.url), { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error(`${method} ${pathname}: timeout`)));
    req.end(body);
  });
}

const preflight = (srv, origin, pathname = '/user/create_token', method = 'POST') => request(srv, 'OPTIONS', pathname, {
  origin,
  'access-control-request-method': method,
  'access-control-request-headers': 'authorization, content-type',
});

const createToken = (srv, origin) => request(srv, 'POST', '/user/create_token', {
  origin,
  authorization: `Bearer ${srv.apiKey}`,
  'content-type': 'application/json',
}, JSON.stringify({ uid: `cors${Math.random().toString(16).slice(2)}` }));

const stat = (srv, origin) => request(srv, 'GET', '/admin/monitor/stat', { origin, authorization: `Bearer ${srv.apiKey}` });

function allows(res, origin, what) {
  assert.equal(res.headers['access-control-allow-origin'], origin, `${what}: access-control-allow-origin (status ${res.status}, headers ${JSON.stringify(res.headers)})`);
  // Keys travel in Authorization, never in cookies: credentials stay off.
  assert.equal(res.headers['access-control-allow-credentials'], undefined, `${what}: no credentials`);
}

/** No grant: without access-control-allow-origin a browser fails the preflight and withholds the answer. */
function none(res, what) {
  for (const h of ['access-control-allow-origin', 'access-control-allow-credentials']) {
    assert.equal(res.headers[h], undefined, `${what}: no ${h} (status ${res.status}, headers ${JSON.stringify(res.headers)})`);
  }
}

describe('CORS of the HTTP API', () => {
  let listed;
  let unset;
  before(async () => {
    // The environment form: a comma-separated list.
    listed = await startServer({ env: { HOOKWIRE_CORS_ALLOWED_ORIGINS: `${GOOD}, ${OTHER_GOOD}` } });
    unset = await startServer();
  });
  after(async () => { await listed?.destroy(); await unset?.destroy(); });

  test('a listed origin gets its preflight answered and access-control-allow-origin on GET and POST', T, async () => {
    for (const origin of [GOOD, OTHER_GOOD]) {
      const pre = await preflight(listed, origin);
      assert.ok(pre.status >= 200 && pre.status < 300, `preflight ${origin}: ${pre.status} ${pre.body}`);
      allows(pre, origin, `preflight ${origin}`);
      assert.match(pre.headers['access-control-allow-methods'] || '', /POST/, 'preflight allows POST');
      assert.match(pre.headers['access-control-allow-headers'] || '', /authorization/i, 'preflight allows Authorization');
      assert.match(pre.headers['access-control-allow-headers'] || '', /content-type/i, 'preflight allows Content-Type');
      const patch = await preflight(listed, origin, '/api/tenants/default', 'PATCH');
      allows(patch, origin, `PATCH preflight ${origin}`);
      assert.match(patch.headers['access-control-allow-methods'] || '', /PATCH/, 'preflight allows PATCH');

      const get = await stat(listed, origin);
      assert.equal(get.status, 200, get.body);
      allows(get, origin, `GET ${origin}`);
      const post = await createToken(listed, origin);
      assert.equal(post.status, 200, post.body);
      allows(post, origin, `POST ${origin}`);
    }
    // Answers vary by Origin: a cache must not hand one origin's answer to another.
    assert.match((await stat(listed, GOOD)).headers.vary || '', /origin/i);
  });

  test('socket.io polling from a listed origin is granted too (a browser page on another origin can poll); others are not', T, async () => {
    const handshake = (srv, origin) => request(srv, 'GET', '/socket.io/?EIO=4&transport=polling', { origin });
    const ok = await handshake(listed, GOOD);
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.body, /"sid"/, 'an Engine.IO open packet');
    allows(ok, GOOD, 'polling handshake from a listed origin');
    const evil = await handshake(listed, EVIL);
    none(evil, 'polling handshake from an origin not listed');
  });

  test('an origin not listed gets no access-control-allow-origin', T, async () => {
    for (const origin of [EVIL, 'http://good.example', 'https://good.example:8443', 'null']) {
      none(await preflight(listed, origin), `preflight ${origin}`);
      const get = await stat(listed, origin);
      assert.equal(get.status, 200, 'the call itself is answered (the browser withholds it)');
      none(get, `GET ${origin}`);
    }
  });

  test('unset: no CORS headers for any origin', T, async () => {
    for (const origin of [GOOD, EVIL]) {
      for (const res of [await preflight(unset, origin), await stat(unset, origin)]) {
        const cors = Object.keys(res.headers).filter((h) => h.startsWith('access-control-'));
        assert.deepEqual(cors, [], `${origin}: no CORS headers (status ${res.status}, headers ${JSON.stringify(res.headers)})`);
      }
    }
  });

  test('a TOML list, `*`, and an invalid entry refused at startup naming the setting', T, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'hookwire-cors-'));
    try {
      const file = path.join(dir, 'hookwire.toml');
      await writeFile(file, 'cors_allowed_origins = ["*"]\n');
      const any = await startServer({ args: ['--config', file] });
      try {
        allows(await preflight(any, EVIL), '*', 'preflight with *');
        allows(await stat(any, EVIL), '*', 'GET with *');
      } finally {
        await any.destroy();
      }
      const bad = await new Promise((resolve) => {
        execFile(BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data')], {
          env: { ...serverEnv(), HOOKWIRE_CORS_ALLOWED_ORIGINS: 'https://good.example/app' },
          timeout: 15000,
        }, (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, out: stdout + stderr }));
      });
      assert.notEqual(bad.code, 0, `an invalid entry must stop startup: ${bad.out}`);
      assert.match(bad.out, /cors_allowed_origins/, `the error names the setting: ${bad.out}`);
      assert.match(bad.out, /good\.example\/app/, `the error names the entry: ${bad.out}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
