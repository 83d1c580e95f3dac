// The commands the plugin pages tell a reader to type, run as written
// against a real node: every ```sh block of a page, in order, in one shell
// (`set -euo pipefail`), with the `hookwire` binary of this checkout first
// on PATH and HOOKWIRE_SERVER / HOOKWIRE_ADMIN_KEY pointing at the node.
// A page whose commands stop working fails here.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { BIN, REPO_ROOT, builtPlugin, closeAll, connect, startServer } from './harness.mjs';

/** The ```sh blocks of a markdown file, in order. */
export function shBlocks(file) {
  const text = readFileSync(path.join(REPO_ROOT, file), 'utf8');
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Runs `script` in `cwd` against `srv`; its output on failure. */
function runPage(what, script, cwd, srv) {
  // A page's own `node --test` must run as a test runner of its own, not as
  // a file of this one.
  const { NODE_TEST_CONTEXT: _, ...outer } = process.env;
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], {
    cwd,
    encoding: 'utf8',
    timeout: 15 * 60 * 1000,
    maxBuffer: 64 << 20,
    env: {
      ...outer,
      PATH: `${path.dirname(BIN)}:${process.env.PATH}`,
      HOOKWIRE_SERVER: srv.url,
      HOOKWIRE_ADMIN_KEY: srv.adminKey,
      // The pages' "your checkout" is this one.
      HOOKWIRE_GUEST_SDK: path.join(REPO_ROOT, 'guest-sdk'),
    },
  });
  assert.equal(r.status, 0, `${what}: the commands fail (exit ${r.status}):\n${script}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

describe('the plugin pages, run as written', () => {
  let srv;
  const clients = [];
  after(async () => { closeAll(...clients); await srv?.destroy(); });

  test('docs/plugins/rust.md: a first plugin in Rust', { timeout: 15 * 60 * 1000 }, async () => {
    srv ??= await startServer();
    const dir = await mkdtemp(path.join(tmpdir(), 'hookwire-page-'));
    const out = runPage('docs/plugins/rust.md', shBlocks('docs/plugins/rust.md').join('\n'), dir, srv);
    // What the page says the commands print.
    assert.match(out, /verdict {4}accepted by this node's limits/);
    assert.match(out, /"data": "HELLO THERE"/);
    assert.match(out, /"Drop"/, 'the uploaded plugin refuses a blocked word');
  });

  for (const [page, name] of [['docs/plugins/js.md', 'hello-js'], ['docs/plugins/python.md', 'hello-py']]) {
    test(`${page}: a first plugin, from new to upload`, { timeout: 15 * 60 * 1000 }, async () => {
      srv ??= await startServer();
      const dir = await mkdtemp(path.join(tmpdir(), 'hookwire-page-'));
      const out = runPage(page, shBlocks(page).join('\n'), dir, srv);
      assert.match(out, /verdict {4}accepted by this node's limits/);
      assert.match(out, /"data": "HELLO THERE"/);
      assert.match(out, /"Drop"/, `the uploaded ${name} refuses a blocked word`);
    });
  }

  test('plugins/README.md: the auth-url example, with its allowed_hosts, authenticates', { timeout: 5 * 60 * 1000 }, async () => {
    srv ??= await startServer();
    builtPlugin('auth-url');
    const web = http.createServer((req, res) => {
      const ok = req.url === '/rooms' && req.headers.authorization === 'Bearer t0k';
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(ok ? JSON.stringify({ uid: 'ann', rooms: ['staff'] }) : '{}');
    });
    await new Promise((r) => web.listen(0, '127.0.0.1', r));
    web.unref();
    try {
      const block = shBlocks('plugins/README.md').find((b) => b.includes('auth-url.json'));
      assert.ok(block, 'plugins/README.md has the auth-url example');
      // The page's endpoint is 127.0.0.1:8080; the test's listens on a free port.
      const script = block.replaceAll('127.0.0.1:8080', `127.0.0.1:${web.address().port}`);
      const cwd = await mkdtemp(path.join(tmpdir(), 'hookwire-page-'));
      const wasm = path.join(REPO_ROOT, 'plugins/target/wasm32-wasip2/release/auth_url.wasm');
      assert.ok(existsSync(wasm), wasm);
      runPage('plugins/README.md (auth-url)', script.replaceAll('target/wasm32-wasip2/release/auth_url.wasm', wasm), cwd, srv);
      const c = await connect(srv, { query: { token: 't0k' }, label: 'auth-url' });
      clients.push(c);
      assert.deepEqual(await c.waitFor('authenticate'), { status: 0, data: 'auth success' });
    } finally {
      web.close();
    }
  });
});
