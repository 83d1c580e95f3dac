// The sample plugins in every language give the same verdicts: word-filter
// and sign-check in Rust (plugins/), JavaScript (plugins/js/) and Python
// (plugins/python/), each uploaded to its own tenant of a real server and
// driven by socket.io clients on both transports through one shared table,
// plugins/verdicts.json. A hostile JavaScript and Python plugin (an endless
// loop, unbounded memory growth) is contained like a Rust one: the msg is
// refused, the node and the other tenants go on.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT, builtPlugin, closeAll, connect, loginJoin, ok, rid, startServer } from './harness.mjs';

const TABLE = JSON.parse(readFileSync(path.join(REPO_ROOT, 'plugins/verdicts.json'), 'utf8'));
const TRANSPORTS = [['websocket'], ['polling']];
const md5 = (s) => createHash('md5').update(s).digest('hex');

/** The JavaScript and Python components, built by plugins/build-guests.sh: `js-word-filter` etc. → bytes. */
function builtGuests() {
  const r = spawnSync(path.join(REPO_ROOT, 'plugins/build-guests.sh'), [], {
    cwd: REPO_ROOT, encoding: 'utf8', timeout: 25 * 60 * 1000, maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`plugins/build-guests.sh failed:\n${(r.stderr || '').slice(-4000)}`);
  const out = {};
  for (const line of r.stdout.split('\n')) {
    // "<bytes>  <MiB> MiB  <path>"
    const file = line.trim().split(/\s+/).pop();
    if (file?.endsWith('.wasm')) out[path.basename(file, '.wasm')] = readFileSync(path.isAbsolute(file) ? file : path.join(REPO_ROOT, file));
  }
  return out;
}

describe('sample plugins in Rust, JavaScript and Python: one verdict table', () => {
  let srv;
  let guests;
  const clients = [];
  const track = (c) => { clients.push(c); return c; };
  before(async () => {
    guests = builtGuests();
    srv = await startServer();
  });
  after(async () => { closeAll(...clients); await srv?.destroy(); });

  // The node's default limits: they must serve every toolchain's
  // components as they are (the same for all three, so only the language
  // differs).
  const MANIFEST = {};
  const LANGS = {
    rust: (name) => builtPlugin(name),
    js: (name) => guests[`js-${name}`],
    python: (name) => guests[`py-${name}`],
  };

  async function tenant(lang) {
    const name = rid(`${lang}-`);
    const t = ok(await srv.admin('POST', '/api/tenants', { body: { name, config: { join_timeout_ms: 0 } } }), `create tenant ${name}`);
    return { name, key: t.api_key };
  }

  async function upload(t, plugin, bytes, config, limits = {}) {
    assert.ok(bytes, `${plugin} is built`);
    return ok(await srv.admin('POST', `/api/tenants/${t.name}/plugins/${plugin}`, {
      rawBody: bytes,
      headers: { 'content-type': 'application/wasm', 'x-hookwire-manifest': JSON.stringify({ ...MANIFEST, ...limits, config }) },
      timeoutMs: 300000,
    }), `upload ${plugin} to ${t.name}`);
  }

  async function setConfig(t, plugin, config) {
    ok(await srv.admin('PUT', `/api/tenants/${t.name}/plugins/${plugin}/config`, { body: { ...MANIFEST, config }, timeoutMs: 300000 }), `config of ${plugin}`);
  }

  for (const [lang, component] of Object.entries(LANGS)) {
    test(`${lang}: word-filter and sign-check give the table's verdicts on both transports`, { timeout: 20 * 60 * 1000 }, async () => {
      const t = await tenant(lang);
      const ns = `/${t.name}`;
      const groups = TABLE['word-filter'];
      await upload(t, 'word-filter', component('word-filter'), groups[0].config);
      for (const [i, group] of groups.entries()) {
        if (i > 0) await setConfig(t, 'word-filter', group.config);
        for (const transports of TRANSPORTS) {
          const room = rid('r');
          const opts = { tenant: t.name, key: t.key, transports };
          const a = track(await loginJoin(srv, room, { ...opts, label: `${lang}/${transports}/a` }));
          const b = track(await loginJoin(srv, room, { ...opts, label: `${lang}/${transports}/b` }));
          for (const row of group.rows) {
            const what = `${lang} word-filter ${JSON.stringify(group.config)} on ${transports}: ${JSON.stringify(row.send)}`;
            const ack = await a.emitAck('msg', { data: row.send, storage: 2 });
            if ('refused' in row) {
              assert.deepEqual([ack?.status, ack?.data], [1, row.refused], what);
            } else {
              assert.equal(ack?.status, 0, `${what}: ${JSON.stringify(ack)}`);
              const got = await b.waitFor('msg');
              assert.deepEqual(got.data, row.relayed, what);
            }
          }
        }
      }

      for (const group of TABLE['sign-check']) {
        await upload(t, 'sign-check', component('sign-check'), group.config);
        const [app, key] = Object.entries(group.config.apps)[0];
        for (const transports of TRANSPORTS) {
          let last;
          const payload = (kind) => {
            const uid = rid('s');
            const ts = kind === 'stale' ? Date.now() - 2 * group.config.window_ms : Date.now();
            const a = kind === 'unknown-app' ? 'nope' : app;
            const p = { app: a, timestamp: ts, sign: md5(`${a}${key}${ts}${uid}`), uid };
            if (kind === 'valid') last = p;
            if (kind === 'replay') return last;
            if (kind === 'bad-sign') p.sign = 'f'.repeat(32);
            if (kind === 'other-uid') p.uid = rid('mallory');
            return p;
          };
          for (const row of group.rows) {
            const c = track(await connect(srv, { ns, transports, label: `${lang}/${transports}/${row.auth}` }));
            const answer = await c.emitAck('authenticate', payload(row.auth));
            assert.deepEqual(answer, row.answer, `${lang} sign-check on ${transports}: ${row.auth}`);
            c.close();
          }
        }
      }
    });
  }

  for (const lang of ['js', 'python']) {
    test(`${lang}: an endless loop and unbounded memory growth are contained`, { timeout: 10 * 60 * 1000 }, async () => {
      const bystander = await tenant(`${lang}-ok`);
      const room = rid('r');
      const calm = track(await loginJoin(srv, room, { tenant: bystander.name, key: bystander.key, label: 'bystander' }));
      // The memory bomb gets time enough to reach its memory cap.
      const limits = { 'spin-loop': {}, 'memory-bomb': { timeout_ms: 2000, memory_bytes: 32 << 20 } };
      for (const hostile of ['spin-loop', 'memory-bomb']) {
        const t = await tenant(`${lang}-${hostile}`);
        await upload(t, hostile, LANGS[lang](hostile), {}, limits[hostile]);
        const c = track(await loginJoin(srv, rid('r'), { tenant: t.name, key: t.key, label: `${lang}/${hostile}` }));
        const ack = await c.emitAck('msg', { data: 'x', storage: 2 });
        assert.equal(ack?.status, 1, `${lang} ${hostile}: the msg is refused: ${JSON.stringify(ack)}`);
        // The node answers, and another tenant's room works, at once.
        const health = await srv.api('GET', '/healthz');
        assert.equal(health.json?.status, 'ok', `healthz: ${health.text}`);
        assert.equal((await calm.emitAck('msg', { data: hostile, storage: 2 }))?.status, 0, 'the bystander tenant goes on');
      }
      const metrics = (await srv.api('GET', '/metrics', { key: srv.adminKey })).text;
      assert.match(metrics, /hookwire_plugin_faults_total\{[^}]*plugin="spin-loop"[^}]*kind="timeout"\}/);
      assert.match(metrics, /hookwire_plugin_faults_total\{[^}]*plugin="memory-bomb"[^}]*kind="(out_of_memory|trap)"\}/);
    });
  }
});
