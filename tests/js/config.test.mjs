// Configuration: --help, precedence defaults < TOML file < environment < flags
// (`hookwire config` prints the effective config), and tenant defaults from the
// file reaching the tenants.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, closeAll, loginJoin, ok, rid, serverEnv, startServer, syncAll } from './harness.mjs';

const T = { timeout: 30000 };

const run = (args, env = {}) => new Promise((resolve) => {
  execFile(BIN, args, { env: { ...serverEnv(), RUST_BACKTRACE: '0', ...env }, timeout: 15000 }, (err, stdout, stderr) => {
    resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr });
  });
});

describe('configuration', () => {
  let dir;
  let file;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'hookwire-config-'));
    file = path.join(dir, 'hookwire.toml');
    await writeFile(file, 'commit_delay_us = 100\n\n[tenant_defaults]\nsync_page_size = 5\nmax_rooms_per_socket = 3\n');
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  test('--help explains the commands and every serve option', T, async () => {
    const top = await run(['--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /serve/);
    const serve = await run(['serve', '--help']);
    assert.equal(serve.code, 0);
    for (const opt of ['--config', '--listen', '--data-dir', '--admin-key', '--default-api-key']) assert.ok(serve.stdout.includes(opt), `serve --help mentions ${opt}`);
  });

  test('precedence: defaults < TOML file < HOOKWIRE_* environment < flags', T, async () => {
    const dflt = await run(['config']);
    assert.equal(dflt.code, 0, dflt.stderr);
    assert.match(dflt.stdout, /sync_page_size = 200/);
    const fromFile = await run(['config', '--config', file]);
    assert.match(fromFile.stdout, /commit_delay_us = 100/);
    assert.match(fromFile.stdout, /sync_page_size = 5/);
    const fromEnv = await run(['config', '--config', file], { HOOKWIRE_COMMIT_DELAY_US: '200' });
    assert.match(fromEnv.stdout, /commit_delay_us = 200/);
    const fromFlag = await run(['config', '--config', file, '--commit-delay-us', '300'], { HOOKWIRE_COMMIT_DELAY_US: '200' });
    assert.match(fromFlag.stdout, /commit_delay_us = 300/);
  });

  test('the store: --store, else what the URLs imply; a store without its URL or an embedded one under a cluster is refused', T, async () => {
    const effective = async (args, env) => (await run(['config', ...args], env)).stdout.match(/^store = "(\w+)"$/m)?.[1];
    assert.equal(await effective([]), 'embedded');
    assert.equal(await effective(['--redis', 'redis://127.0.0.1:1/0']), 'redis');
    assert.equal(await effective(['--redis', 'redis://127.0.0.1:1/0', '--mongo', 'mongodb://127.0.0.1:1/x']), 'mongo');
    assert.equal(await effective(['--redis', 'redis://127.0.0.1:1/0', '--store', 'mongo', '--mongo', 'mongodb://127.0.0.1:1/x']), 'mongo');
    assert.equal(await effective([], { HOOKWIRE_STORE: 'redis', HOOKWIRE_REDIS: 'redis://127.0.0.1:1/0' }), 'redis');

    const serve = (args) => run(['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'store-data'), ...args]);
    const refused = [
      [['--store', 'redis'], /store = redis needs the Redis URL: set redis/],
      [['--store', 'mongo', '--redis', 'redis://127.0.0.1:1/0'], /store = mongo needs the MongoDB URL: set mongo/],
      [['--store', 'embedded', '--redis', 'redis://127.0.0.1:1/0'], /store = embedded cannot serve a cluster/],
      [['--store', 'disk'], /invalid value 'disk'[\s\S]*embedded, redis, mongo/],
    ];
    for (const [args, message] of refused) {
      const r = await serve(args);
      assert.notEqual(r.code, 0, `${args.join(' ')} starts`);
      assert.match(r.stderr, message, args.join(' '));
    }
  });

  test('an unknown setting in the file is refused with a clear error', T, async () => {
    const bad = path.join(dir, 'bad.toml');
    await writeFile(bad, 'no_such_setting = 1\n');
    const r = await run(['config', '--config', bad]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /no_such_setting/);
  });

  test('--log-format json: structured log lines (one JSON object per line)', T, async () => {
    const srv = await startServer({ args: ['--log-format', 'json'] });
    try {
      const a = await loginJoin(srv, rid('r'));
      closeAll(a);
      await srv.stop();
      const lines = srv.logs.split('\n').filter((l) => l.trim().startsWith('{'));
      assert.ok(lines.length >= 2, `JSON log lines:\n${srv.excerpt()}`);
      for (const l of lines) {
        const j = JSON.parse(l);
        assert.ok(j.level || j.severity, `a level in ${l}`);
      }
    } finally {
      await srv.destroy();
    }
  });

  test('tenant_defaults from the file apply to the default tenant and to new tenants', T, async () => {
    const srv = await startServer({ args: ['--config', file] });
    const clients = [];
    try {
      const d = ok(await srv.admin('GET', '/api/tenants/default'));
      assert.equal(d.config.sync_page_size, 5);
      assert.equal(d.config.max_rooms_per_socket, 3);
      const t = ok(await srv.admin('POST', '/api/tenants', { body: { name: rid('t') } }));
      assert.equal(t.config.sync_page_size, 5, 'new tenants start from tenant_defaults');
      const a = await loginJoin(srv, rid('r'));
      clients.push(a);
      for (let i = 0; i < 7; i++) await a.emitAck('msg', { data: i, storage: 0, msgId: i });
      const { pages } = await syncAll(a);
      assert.deepEqual(pages.map((p) => p.data.length), [5, 2]);
    } finally {
      closeAll(clients);
      await srv.destroy();
    }
  });
});
