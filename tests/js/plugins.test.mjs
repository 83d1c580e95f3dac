// Plugins end-to-end: the real
// sample plugins (plugins/build.sh) uploaded over the admin REST API while
// official socket.io-client sockets are connected, each taking effect on the
// next event; config change, rollback and delete as hot swaps with no dropped
// connection; hostile plugins (infinite loop, memory bomb, trap, huge output,
// wrong world) failing closed while the node keeps serving other tenants.
//
// Routes: host/src/http/plugins.rs. Plugin behaviour: plugins/README.md.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  REPO_ROOT, closeAll, connect, eventually, loginJoin, ok, rid, sleep, startServer, syncAll, tokenFor,
} from './harness.mjs';

const T = { timeout: 60000 };
const transports = ['websocket'];

/**
 * Deadline given to the well-behaved sample plugins. The engine default (5 ms
 * of guest time) is meant for a quiet production node; these tests share two
 * loaded cores with other builds, where a preempted call could miss 5 ms and
 * turn a functional test into a timing lottery. The hostile plugins run with
 * the engine defaults.
 */
const SAMPLE_TIMEOUT_MS = 500;

const md5 = (s) => createHash('md5').update(s).digest('hex');

/** Build the plugins once (incremental) and map `word_filter` → absolute .wasm path. */
function buildPlugins() {
  const r = spawnSync(path.join(REPO_ROOT, 'plugins/build.sh'), [], {
    cwd: REPO_ROOT, encoding: 'utf8', timeout: 15 * 60 * 1000, maxBuffer: 64 << 20,
  });
  if (r.status !== 0) {
    throw new Error(`plugins/build.sh failed (status ${r.status}, ${r.error?.message || ''}):\n${(r.stderr || '').slice(-3000)}`);
  }
  const wasm = {};
  for (const line of r.stdout.split('\n').map((l) => l.trim()).filter((l) => l.endsWith('.wasm'))) {
    const abs = path.isAbsolute(line) ? line : path.join(REPO_ROOT, line);
    wasm[path.basename(abs, '.wasm')] = abs;
  }
  for (const name of ['sign_check', 'word_filter', 'rate_limit', 'user_router', 'auth_url',
    'spin_loop', 'memory_bomb', 'trap', 'huge_output', 'wrong_world']) {
    assert.ok(wasm[name], `plugins/build.sh did not print ${name}.wasm; stdout:\n${r.stdout}`);
  }
  return wasm;
}

/** A client saw no `disconnect` and is still connected. */
function assertConnected(...clients) {
  for (const c of clients) {
    const d = c.log.find((e) => e.event === 'disconnect');
    assert.equal(d, undefined, `[${c.label}] was disconnected (${JSON.stringify(d?.args)}); log:\n    ${c.summary()}`);
    assert.equal(c.connected, true, `[${c.label}] is not connected`);
  }
}

/**
 * Upload and config changes instantiate the plugin and call `describe` under
 * the plugin's deadline (the engine default is 5 ms of wall-clock epoch time).
 * On a loaded machine that first call of a plugin on engine defaults can miss
 * it, and the change is refused with HTTP 400 "plugin failed its first call:
 * plugin X exceeded its time budget", or stored and then not activated (HTTP
 * 500 "stored, but activation failed: ... plugin failed its first call ...":
 * activation loads the plugin a second time and calls describe again); both
 * seen on the shared 2-core test box.
 * The steps that must use engine defaults retry that one answer a few times
 * and say so in the test output; anything else fails at once.
 */
async function retryFirstCallTimeout(ctx, what, fn) {
  // attempts answered "stored, but activation failed" each left a version behind
  let storedBefore = 0;
  for (let attempt = 1; ; attempt++) {
    const r = await fn();
    const spurious = (r.status === 400 || r.status === 500) && /plugin failed its first call: .*exceeded its time budget/.test(r.text);
    if (!spurious || attempt === 4) return Object.assign(r, { storedBefore });
    if (/stored, but activation failed/.test(r.text)) storedBefore++;
    ctx?.diagnostic(`${what}: attempt ${attempt} refused as "${r.json?.meta?.msg}" (5 ms default deadline on a loaded machine), retrying`);
    await sleep(200);
  }
}

/** The JSON body's `meta.msg` (or the raw text) of an error answer. */
const errText = (r) => r.json?.meta?.msg ?? r.text;

/** Sum of a Prometheus counter's samples whose labels include all of `labels`. */
function counterValue(metricsText, name, labels) {
  let sum = 0;
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!m || (m[1] !== name && m[1] !== `${name}_total`)) continue;
    const lbl = Object.fromEntries([...(m[2] || '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => lbl[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

describe('plugins end-to-end (websocket)', () => {
  let srv;
  let wasm;
  const clients = [];
  const track = (c) => { clients.push(c); return c; };
  const member = (roomId, opts = {}) => loginJoin(srv, roomId, { transports, ...opts }).then(track);

  before(async () => {
    wasm = buildPlugins();
    srv = await startServer();
  });
  after(async () => { closeAll(clients); await srv?.destroy(); });
  afterEach(() => closeAll(clients.splice(0)));

  // ---- helpers (REST) ------------------------------------------------------

  /** POST the raw component; `manifest` in the x-hookwire-manifest header (or `config` as ?config=). */
  function upload(tenant, name, file, { manifest, config, key, body } = {}) {
    const headers = { 'content-type': 'application/wasm' };
    if (manifest) headers['x-hookwire-manifest'] = JSON.stringify(manifest);
    return srv.api('POST', `/api/tenants/${tenant}/plugins/${name}`, {
      key: key === undefined ? srv.adminKey : key,
      rawBody: body ?? readFileSync(wasm[file]),
      headers,
      query: config ? { config: JSON.stringify(config) } : {},
      timeoutMs: 120000,
    });
  }

  async function uploadOk(tenant, name, file, opts) {
    const r = await upload(tenant, name, file, opts);
    return ok(r, `upload ${name} to ${tenant}`);
  }

  /** A new tenant; returns { name, key }. */
  async function newTenant(prefix, config = {}) {
    const name = rid(`${prefix}-`);
    const t = ok(await srv.admin('POST', '/api/tenants', { body: { name, config } }), `create tenant ${name}`);
    return { name, key: t.api_key };
  }

  /** A member of `room` in `tenant` ({name, key}; undefined = default). */
  const tmember = (tenant, room, opts = {}) => member(room, tenant ? { tenant: tenant.name, key: tenant.key, ...opts } : opts);

  /**
   * Positive control for "c got no msg": an admin push to c's room (in
   * `tenant`, undefined = default) arrives after anything relayed to c by the
   * events answered before it (one node and one connection keep the order).
   * Returns (and consumes) the msgs c got before the push that were not
   * consumed yet.
   */
  async function msgsBeforeMarker(c, tenant, roomId) {
    const content = rid('marker');
    ok(await srv.admin('POST', '/admin/system/push', { tenant: tenant?.name, body: { roomId, content } }), 'system push (marker)');
    const marker = await c.waitForEntry('system', undefined, (x) => x === content);
    const before = c.log.slice(0, c.log.indexOf(marker)).filter((e) => e.event === 'msg' && !e.used);
    for (const e of before) e.used = true;
    return before.map((e) => e.args[0]);
  }

  /** `hookwire_messages_in` of a tenant: msgs that reached its on_msg hooks (counted before the call). */
  const messagesIn = async (tenant) => counterValue((await srv.api('GET', '/metrics', { key: srv.adminKey })).text, 'hookwire_messages_in', { tenant });

  /** A sends a msg, B receives it unchanged. */
  async function exchange(a, b, what) {
    const text = `${what} ${rid('m')}`;
    const ack = await a.emitAck('msg', { data: { text }, storage: 0, msgId: rid('id') });
    assert.equal(ack?.status, 0, `${what}: sender ack ${JSON.stringify(ack)}`);
    const m = await b.waitFor('msg', 5000, (x) => x?.data?.text === text);
    assert.equal(String(m.uid), String(a.uid));
  }

  // ---- 1. word-filter: upload, config change, rollback, delete ---------------

  test('word-filter uploaded while two clients are in a room: mask → config drop → rollback → delete, no disconnect', T, async () => {
    const room = rid('r');
    const a = await member(room, { label: 'A' });
    const b = await member(room, { label: 'B' });
    await exchange(a, b, 'before upload: darn it');

    const send = (text) => a.emitAck('msg', { data: { text, n: { deep: [text] } }, storage: 0, msgId: rid('id') });

    // upload (mask) while both are connected → the very next msg is masked
    const up = await uploadOk('default', 'word-filter', 'word_filter', {
      manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn', 'heck'], mode: 'mask' } },
    });
    assert.equal(up.name, 'word-filter');
    assert.equal(up.version, 1);
    let ack = await send('Darn it, what the HECK');
    assert.equal(ack?.status, 0, `masked msg ack: ${JSON.stringify(ack)}`);
    let m = await b.waitFor('msg');
    assert.equal(m.data.text, '**** it, what the ****', `masked for the receiver: ${JSON.stringify(m)}`);
    assert.deepEqual(m.data.n.deep, ['**** it, what the ****'], 'nested strings are masked too');
    assert.equal(String(m.uid), String(a.uid));

    // what is stored is what was relayed: a late joiner syncs the masked text
    const late = await member(room, { label: 'late' });
    const { msgs } = await syncAll(late);
    const stored = msgs.map((x) => x?.data?.text).filter(Boolean);
    assert.ok(stored.includes('**** it, what the ****'), `stored: ${JSON.stringify(stored)}`);
    assert.ok(!stored.some((x) => /darn it, what/i.test(x)), `the unmasked text must not be stored: ${JSON.stringify(stored)}`);
    late.close();
    await b.waitFor('remote_join', 2000).catch(() => {});

    // the short form: id field "1" is left alone, other strings are masked
    ack = await a.emitAck('msg', { 1: 'darn-id', s: 2, d: 'darn short' });
    assert.equal(ack?.status, 0, `short form: ${JSON.stringify(ack)}`);
    m = await b.waitFor('msg', 5000, (x) => x?.['1'] === 'darn-id');
    assert.equal(m.d, '**** short');
    assert.equal(String(m['2']), String(a.uid));

    // new config (mode drop) = new version, effective on the next msg
    const v2 = ok(await srv.admin('PUT', '/api/tenants/default/plugins/word-filter/config', {
      body: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn', 'heck'], mode: 'drop' } },
    }), 'PUT config drop');
    assert.equal(v2.version, 2);
    ack = await send('darn again');
    assert.deepEqual(ack, { status: 1, data: 'message contains a blocked word' });
    ack = await send('a clean one');
    assert.equal(ack?.status, 0, 'clean msgs still pass in drop mode');
    // B's next msg is the clean one: the dropped one was not relayed before it
    m = await b.waitFor('msg');
    assert.equal(m.data.text, 'a clean one');

    // rollback → version 1 (mask)
    const rb = ok(await srv.admin('POST', '/api/tenants/default/plugins/word-filter/rollback'), 'rollback');
    assert.equal(rb.version, 1, `rollback answer: ${JSON.stringify(rb)}`);
    ack = await send('darn, rolled back');
    assert.equal(ack?.status, 0, `after rollback: ${JSON.stringify(ack)}`);
    m = await b.waitFor('msg');
    assert.equal(m.data.text, '****, rolled back');

    const listing = ok(await srv.admin('GET', '/api/tenants/default/plugins'), 'list');
    const wf = listing.plugins.find((p) => p.name === 'word-filter');
    assert.ok(wf, `listing: ${JSON.stringify(listing)}`);
    assert.equal(wf.active_version, 1);
    assert.deepEqual(wf.versions.map((v) => v.version), [1, 2]);
    assert.match(wf.hash, /^[0-9a-f]{64}$/);

    // delete → messages pass unchanged
    ok(await srv.admin('DELETE', '/api/tenants/default/plugins/word-filter'), 'delete');
    ack = await send('darn, deleted');
    assert.equal(ack?.status, 0);
    m = await b.waitFor('msg');
    assert.equal(m.data.text, 'darn, deleted');
    const after = ok(await srv.admin('GET', '/api/tenants/default/plugins'), 'list after delete');
    assert.ok(!after.plugins.some((p) => p.name === 'word-filter'), `still listed: ${JSON.stringify(after)}`);

    assertConnected(a, b);
  });

  test('word-filter config given as ?config= on upload (engine default limits)', T, async (ctx) => {
    const t = await newTenant('wfq');
    const room = rid('r');
    const a = await tmember(t, room, { label: 'A' });
    const b = await tmember(t, room, { label: 'B' });
    const upr = await retryFirstCallTimeout(ctx, 'upload ?config=', () => upload(t.name, 'word-filter', 'word_filter', { config: { words: ['gosh'], mode: 'mask' } }));
    const up = ok(upr, 'upload ?config=');
    assert.equal(up.version, 1 + upr.storedBefore, 'the first version (after any stored-but-not-activated attempts)');
    const listing = ok(await srv.admin('GET', `/api/tenants/${t.name}/plugins`), 'list');
    assert.deepEqual(listing.plugins[0].versions[0].manifest.config, { words: ['gosh'], mode: 'mask' });
    // The ?config= form sets only the config: the engine's 5 ms default deadline
    // applies, which a preempted call on a loaded box can miss (retried, reported).
    const send = async (text) => {
      for (let attempt = 1; ; attempt++) {
        const ack = await a.emitAck('msg', { data: { text }, storage: 0, msgId: rid('id') });
        if (ack?.status === 0 || attempt === 4 || !/exceeded its time budget/.test(ack?.data)) return ack;
        ctx.diagnostic(`msg attempt ${attempt} refused as "${ack.data}" (5 ms default deadline on a loaded machine), retrying`);
      }
    };
    const ack = await send('oh GOSH');
    assert.equal(ack?.status, 0, `ack: ${JSON.stringify(ack)}`);
    const m = await b.waitFor('msg');
    assert.equal(m.data.text, 'oh ****');
    // nothing to roll back to: 4xx, and the plugin stays active (when a retried
    // upload left a stored-but-not-activated version, there is one to go back to)
    if (upr.storedBefore === 0) {
      const rb = await srv.admin('POST', `/api/tenants/${t.name}/plugins/word-filter/rollback`);
      assert.ok(rb.status >= 400 && rb.status < 500, `rollback of a single version: ${rb.status} ${rb.text}`);
    }
    assert.equal((await send('gosh'))?.status, 0);
    assert.equal((await b.waitFor('msg')).data.text, '****');
    assertConnected(a, b);
  });

  // ---- 2. sign-check ---------------------------------------------------------

  test('sign-check: md5(app+key+timestamp+uid) accepted once; replay, another uid, bad sign, stale timestamp refused; no sign → token check', T, async () => {
    const t = await newTenant('sign');
    const room = rid('r');
    // a token-authenticated member, connected before the upload, stays connected
    const old = await tmember(t, room, { label: 'old' });
    const app = 'signatureApp';
    const key = `K${rid('')}`;
    await uploadOk(t.name, 'sign-check', 'sign_check', {
      manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { apps: { [app]: key, central: { key: 'K2' } }, window_ms: 300000 } },
    });
    const ns = `/${t.name}`;
    const signed = (uid, ts = Date.now(), k = key, a = app) => ({ app: a, timestamp: ts, sign: md5(`${a}${k}${ts}${uid}`), uid });

    // good sign (authenticate event) → accepted, may join and talk to the old member
    const uid = rid('s');
    const c = track(await connect(srv, { ns, transports, label: 'signed' }));
    const r = await c.emitAck('authenticate', signed(uid));
    assert.deepEqual(r, { status: 0, data: 'auth success' });
    assert.equal((await c.emitAck('join', { roomId: room }))?.status, 0);
    c.uid = uid;
    await exchange(c, old, 'signed user talks');

    // good sign in the handshake auth, egg-style app object, upper-case hex
    const ts2 = Date.now();
    const hUid = rid('s');
    const h = track(await connect(srv, {
      ns, transports, label: 'signed-handshake',
      auth: { app: 'central', timestamp: String(ts2), sign: md5(`centralK2${ts2}${hUid}`).toUpperCase(), userId: hUid },
    }));
    const hs = await h.waitFor('authenticate');
    assert.deepEqual(hs, { status: 0, data: 'auth success' });

    // good sign in the handshake query (?app=&timestamp=&sign=&uid=)
    const ts3 = Date.now();
    const qUid = rid('s');
    const qs = track(await connect(srv, {
      ns, transports, label: 'signed-query',
      query: { app, timestamp: String(ts3), sign: md5(`${app}${key}${ts3}${qUid}`), uid: qUid },
    }));
    assert.deepEqual(await qs.waitFor('authenticate'), { status: 0, data: 'auth success' });

    // the same signature again (a replay) → refused
    const replayed = signed(rid('s'));
    const first = track(await connect(srv, { ns, transports, label: 'first use' }));
    assert.deepEqual(await first.emitAck('authenticate', replayed), { status: 0, data: 'auth success' });
    const replay = track(await connect(srv, { ns, transports, label: 'replay' }));
    assert.deepEqual(await replay.emitAck('authenticate', replayed), { status: 1, data: 'signature already used' });
    // a signature made for one uid does not log in another
    const swapped = track(await connect(srv, { ns, transports, label: 'other uid' }));
    assert.deepEqual(await swapped.emitAck('authenticate', { ...signed(rid('s')), uid: rid('mallory') }), { status: 1, data: 'bad sign' });
    // egg-socket.io's unbound md5(app+key+timestamp) is refused while bind_uid is on (the default)
    const ts4 = Date.now();
    const egg = track(await connect(srv, { ns, transports, label: 'unbound' }));
    assert.deepEqual(await egg.emitAck('authenticate', { app, timestamp: ts4, sign: md5(`${app}${key}${ts4}`), uid: rid('s') }), { status: 1, data: 'bad sign' });

    // bad sign → the plugin's reason, then disconnect
    const bad = track(await connect(srv, { ns, transports, label: 'bad-sign' }));
    const br = await bad.emitAck('authenticate', { ...signed(rid('s')), sign: md5('nope') });
    assert.deepEqual(br, { status: 1, data: 'bad sign' });
    await bad.waitDisconnect();

    // correctly signed but 10 minutes old → stale
    const stale = track(await connect(srv, { ns, transports, label: 'stale' }));
    const sr = await stale.emitAck('authenticate', signed(rid('s'), Date.now() - 600000));
    assert.deepEqual(sr, { status: 1, data: 'stale timestamp: more than 300000 ms from server time' });
    await stale.waitDisconnect();

    // unknown app
    const unk = track(await connect(srv, { ns, transports, label: 'unknown-app' }));
    const ur = await unk.emitAck('authenticate', signed(rid('s'), Date.now(), key, 'otherApp'));
    assert.deepEqual(ur, { status: 1, data: 'unknown app: otherApp' });

    // no sign → Defer → built-in token check (good token accepted, wrong one refused)
    const tuid = rid('u');
    const token = await tokenFor(srv, tuid, { tenant: t.name, key: t.key });
    const tc = track(await connect(srv, { ns, transports, label: 'token' }));
    assert.deepEqual(await tc.emitAck('authenticate', { uid: tuid, token }), { status: 0, data: 'auth success' });
    const tw = track(await connect(srv, { ns, transports, label: 'wrong-token' }));
    assert.deepEqual(await tw.emitAck('authenticate', { uid: tuid, token: 'wrong' }), { status: 1, data: 'invalid token' });

    assertConnected(old, c, h, qs, tc);
  });

  // ---- 3. rate-limit -----------------------------------------------------------

  test('rate-limit: a burst beyond the bucket is refused with "rate limited"; after a wait it passes again', T, async () => {
    const t = await newTenant('rate');
    const room = rid('r');
    const a = await tmember(t, room, { label: 'A' });
    const b = await tmember(t, room, { label: 'B' });
    const burst = 3;
    await uploadOk(t.name, 'rate-limit', 'rate_limit', {
      manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { rate_per_sec: 2, burst } },
    });
    const N = 10;
    const t0 = Date.now();
    const acks = await Promise.all(Array.from({ length: N }, (_, i) => a.emitAck('msg', { data: { i }, storage: 2, msgId: `m${i}` })));
    // 2 tokens per second come back while the burst is served (slowly on a loaded machine)
    const refill = 1 + Math.ceil((2 * (Date.now() - t0)) / 1000);
    const passed = acks.filter((x) => x?.status === 0).length;
    const limited = acks.filter((x) => x?.status === 1 && x.data === 'rate limited').length;
    assert.equal(passed + limited, N, `every ack is a pass or "rate limited": ${JSON.stringify(acks)}`);
    assert.ok(passed >= burst, `the bucket lets ${burst} through at once: ${JSON.stringify(acks)}`);
    assert.ok(passed <= burst + refill, `at most the burst (+ ${refill} refilled during the burst) passes: ${passed}`);
    assert.ok(limited >= N - burst - refill, `the rest is refused: ${JSON.stringify(acks)}`);
    const passedIds = acks.map((x, i) => (x?.status === 0 ? i : null)).filter((i) => i !== null);
    const relayed = await msgsBeforeMarker(b, t, room);
    assert.deepEqual(relayed.map((x) => x.data.i), passedIds, 'exactly the passed msgs are relayed, in order');

    // 2 tokens per second: a msg passes again once one is back
    let tries = 0;
    await eventually(async () => {
      tries++;
      const again = await a.emitAck('msg', { data: { i: 'later' }, storage: 2, msgId: `later${tries}` });
      assert.ok(again?.status === 0 || (again?.status === 1 && again.data === 'rate limited'), `a retry is a pass or "rate limited": ${JSON.stringify(again)}`);
      return again?.status === 0;
    }, 10000, 'a msg passes again after the bucket refills');
    const m = await b.waitFor('msg', 5000, (x) => x?.data?.i === 'later');
    assert.equal(m.msgId, `later${tries}`, 'only the retry that passed is relayed');
    assert.deepEqual(await msgsBeforeMarker(b, t, room), [], 'refused retries are not relayed');
    // another user has a bucket of their own
    const c = await tmember(t, room, { label: 'C' });
    assert.equal((await c.emitAck('msg', { data: { i: 'c' }, storage: 2, msgId: 'c' }))?.status, 0);
    assertConnected(a, b, c);
  });

  // ---- 4. user-router ----------------------------------------------------------

  test('user-router: a msg with `to` reaches only that user (other room or same room), not the rest of the room', T, async () => {
    const t = await newTenant('route');
    const room = rid('r');
    const a = await tmember(t, room, { label: 'A' });
    const b = await tmember(t, room, { label: 'B' });
    const c = await tmember(t, rid('other'), { label: 'C' });
    const d = await tmember(t, room, { label: 'D' });
    await uploadOk(t.name, 'user-router', 'user_router', { manifest: { timeout_ms: SAMPLE_TIMEOUT_MS } });

    let ack = await a.emitAck('msg', { data: { text: 'psst C', to: c.uid }, storage: 2, msgId: 'p1' });
    assert.equal(ack?.status, 0, `redirect ack: ${JSON.stringify(ack)}`);
    const mc = await c.waitFor('msg');
    assert.equal(mc.data.text, 'psst C');
    assert.equal(String(mc.uid), String(a.uid));

    ack = await a.emitAck('msg', { text: 'psst D', to: d.uid, storage: 2, msgId: 'p2' });
    assert.equal(ack?.status, 0);
    const md = await d.waitFor('msg');
    assert.equal(md.text, 'psst D');

    // no `to` → the whole room, as usual; B's first msg is this one (p1 and p2 did not reach B)
    ack = await a.emitAck('msg', { data: { text: 'all' }, storage: 2, msgId: 'p3' });
    assert.equal(ack?.status, 0);
    assert.equal((await b.waitFor('msg')).data.text, 'all');
    assert.equal((await d.waitFor('msg')).data.text, 'all');

    // a `to` naming nobody is refused, never broadcast
    ack = await a.emitAck('msg', { data: { text: 'oops', to: [] }, storage: 2, msgId: 'p4' });
    assert.equal(ack?.status, 1, `to:[] ack: ${JSON.stringify(ack)}`);

    // Positive controls, after everything above: C's next msg is one sent to C,
    // B's next one is one sent to the room
    ack = await a.emitAck('msg', { data: { text: 'C again', to: c.uid }, storage: 2, msgId: 'p5' });
    assert.equal(ack?.status, 0);
    assert.equal((await c.waitFor('msg'))?.data?.text, 'C again', 'C got nothing of p2, p3, p4');
    ack = await a.emitAck('msg', { data: { text: 'room again' }, storage: 2, msgId: 'p6' });
    assert.equal(ack?.status, 0);
    assert.equal((await b.waitFor('msg'))?.data?.text, 'room again', 'B got nothing of p4');
    assertConnected(a, b, c, d);
  });

  // ---- 5. auth-url -------------------------------------------------------------

  test('auth-url: the allowlisted endpoint names the user and rooms; a /send to such a room arrives; a bad token is refused', T, async () => {
    const users = {
      good: { uid: rid('w'), rooms: [rid('staff')] },
      good2: { uid: rid('w'), rooms: [] },
    };
    users.good2.rooms = [users.good.rooms[0], `user_${users.good2.uid}`];
    const seen = [];
    const web = http.createServer((req, res) => {
      seen.push({ url: req.url, auth: req.headers.authorization, accept: req.headers.accept });
      const tok = (req.headers.authorization || '').replace(/^Bearer /, '');
      if (req.url === '/slow') {
        setTimeout(() => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(users.good)); }, 3000);
      } else if (req.url === '/rooms' && users[tok]) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(users[tok]));
      } else {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":"unauthorized"}');
      }
    });
    await new Promise((r) => web.listen(0, '127.0.0.1', r));
    web.unref();
    const port = web.address().port;
    try {
      const t = await newTenant('authurl', { join_timeout_ms: 0 });
      const ns = `/${t.name}`;
      await uploadOk(t.name, 'auth-url', 'auth_url', {
        manifest: {
          timeout_ms: SAMPLE_TIMEOUT_MS,
          allowed_hosts: [`127.0.0.1:${port}`],
          config: { url: `http://127.0.0.1:${port}/rooms` },
        },
      });

      // ?token=good in the handshake query
      const q = track(await connect(srv, { ns, transports, query: { token: 'good' }, label: 'query-token' }));
      assert.deepEqual(await q.waitFor('authenticate'), { status: 0, data: 'auth success' });
      // {token:'good2'} in the authenticate event
      const e = track(await connect(srv, { ns, transports, label: 'event-token' }));
      assert.deepEqual(await e.emitAck('authenticate', { token: 'good2' }), { status: 0, data: 'auth success' });
      assert.ok(seen.some((s) => s.auth === 'Bearer good' && s.url === '/rooms' && /json/.test(s.accept || '')), `endpoint saw: ${JSON.stringify(seen)}`);

      // a push to a room the endpoint returned reaches both
      const staff = users.good.rooms[0];
      ok(await srv.api('POST', '/send', { key: t.key, keyVia: 'query', query: { site: t.name }, body: { rooms: [staff], event: 'news', args: [{ hi: 1 }] } }), '/send staff');
      assert.deepEqual(await q.waitFor('news'), { hi: 1 });
      assert.deepEqual(await e.waitFor('news'), { hi: 1 });
      // the user room of the uid the endpoint named: only the good2 socket
      ok(await srv.api('POST', '/send', { key: t.key, keyVia: 'query', query: { site: t.name }, body: { rooms: [`user_${users.good2.uid}`], event: 'mine', args: ['x'] } }), '/send user room');
      assert.equal(await e.waitFor('mine'), 'x');
      // Positive control: a later push to q's own user room is q's first `mine`
      ok(await srv.api('POST', '/send', { key: t.key, keyVia: 'query', query: { site: t.name }, body: { rooms: [`user_${users.good.uid}`], event: 'mine', args: ['for q'] } }), '/send q\'s user room');
      assert.equal(await q.waitFor('mine'), 'for q', 'the query-token socket got the push to the other user');
      // the sockets are authenticated as the uids the endpoint named (a relayed msg carries it)
      const room = rid('r');
      assert.equal((await q.emitAck('join', { roomId: room }))?.status, 0);
      assert.equal((await e.emitAck('join', { roomId: room }))?.status, 0);
      assert.equal((await q.emitAck('msg', { data: 'who', storage: 2, msgId: 'w' }))?.status, 0);
      assert.equal(String((await e.waitFor('msg')).uid), users.good.uid);

      // a bad token → refused with the plugin's reason
      const bad = track(await connect(srv, { ns, transports, query: { token: 'bad' }, label: 'bad-token', expectConnect: false }));
      const first = await Promise.race([
        bad.waitFor('authenticate', 5000).then((x) => ({ kind: 'authenticate', x })),
        bad.waitFor('connect_error', 5000).then((x) => ({ kind: 'connect_error', x })),
      ]);
      if (first.kind === 'authenticate') {
        assert.deepEqual(first.x, { status: 1, data: 'token refused (401)' });
        await bad.waitDisconnect();
      }
      // the uid a client claims is never trusted without a token
      const claim = track(await connect(srv, { ns, transports, label: 'claims-uid' }));
      assert.deepEqual(await claim.emitAck('authenticate', { uid: users.good.uid }), { status: 1, data: 'missing token' });

      // an endpoint that does not answer within http_timeout_ms → denied, promptly
      const manifest = (m) => ({ timeout_ms: SAMPLE_TIMEOUT_MS, allowed_hosts: [`127.0.0.1:${port}`], config: { url: `http://127.0.0.1:${port}/slow` }, ...m });
      ok(await srv.admin('PUT', `/api/tenants/${t.name}/plugins/auth-url/config`, { body: manifest({ http_timeout_ms: 300 }) }), 'slow url');
      let t0 = Date.now();
      const slow = track(await connect(srv, { ns, transports, label: 'slow' }));
      const sl = await slow.emitAck('authenticate', { token: 'good' });
      assert.equal(sl?.status, 1, JSON.stringify(sl));
      assert.match(sl.data, /^auth endpoint unreachable: /, sl.data);
      assert.ok(Date.now() - t0 < 2500, `slow endpoint: answered after ${Date.now() - t0} ms`);

      // the host is not in allowed_hosts → every call denied, the endpoint never asked
      ok(await srv.admin('PUT', `/api/tenants/${t.name}/plugins/auth-url/config`, { body: manifest({ allowed_hosts: ['example.com'], config: { url: `http://127.0.0.1:${port}/rooms` } }) }), 'not allowlisted');
      const asked = seen.length;
      const na = track(await connect(srv, { ns, transports, label: 'not-allowlisted' }));
      const nr = await na.emitAck('authenticate', { token: 'good' });
      assert.equal(nr?.status, 1, JSON.stringify(nr));
      assert.match(nr.data, /^auth endpoint unreachable: /, nr.data);
      assert.equal(seen.length, asked, 'a host outside allowed_hosts must not be contacted');

      assertConnected(q, e);
    } finally {
      web.closeAllConnections?.();
      await new Promise((r) => web.close(r));
    }
  });

  // ---- 6. hostile plugins ---------------------------------------------------------

  describe('hostile plugins fail closed; the node keeps serving other tenants', () => {
    let calm;
    let bystanders;
    before(async () => {
      // the bystander tenant runs a plugin too: its calls share the node's
      // instance pool and epoch ticker with the hostile ones
      calm = await newTenant('calm');
      await uploadOk(calm.name, 'word-filter', 'word_filter', {
        manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode: 'mask' } },
      });
    });

    /** Pairs in the default tenant and in another tenant; they must exchange msgs throughout. */
    async function bystandersTalk(what) {
      if (!bystanders) {
        const r1 = rid('r');
        const r2 = rid('r');
        bystanders = [
          [await member(r1, { label: 'default-1' }), await member(r1, { label: 'default-2' })],
          [await tmember(calm, r2, { label: 'calm-1' }), await tmember(calm, r2, { label: 'calm-2' })],
        ];
      }
      await exchange(...bystanders[0], what);
      const [x, y] = bystanders[1];
      const text = `darn ${what} ${rid('m')}`;
      const ack = await x.emitAck('msg', { data: { text }, storage: 0, msgId: rid('id') });
      assert.equal(ack?.status, 0, `calm tenant ${what}: ${JSON.stringify(ack)}`);
      const masked = `****${text.slice(4)}`;
      await y.waitFor('msg', 5000, (m) => m?.data?.text === masked);
      const h = await srv.api('GET', '/healthz', { key: null });
      assert.equal(h.status, 200, `/healthz ${what}: ${h.status} ${h.text}`);
    }
    afterEach(() => { bystanders = undefined; });

    // spin-loop runs with the engine defaults (5 ms deadline, 32 MiB).
    // Filling 32 MiB page by page, or building and returning a 9 MiB string,
    // takes longer than 5 ms: with the default deadline those two are stopped
    // by the clock (kind timeout) before they reach the limit they are meant to
    // test (huge-output also needs more than 32 MiB to build its output). A
    // trap is quick, but a call preempted on a loaded machine can still miss
    // 5 ms and be counted as a timeout instead of the trap.
    // Their manifests give them room so that the memory cap and the output
    // limit are what stop them; a last step puts them back on the engine
    // defaults, where they must still fail closed (whatever stops them).
    const cases = [
      { file: 'spin_loop', name: 'spin-loop', kind: 'timeout', reason: /exceeded its time budget/ },
      { file: 'memory_bomb', name: 'memory-bomb', kind: 'out_of_memory', reason: /exceeded its memory budget/, manifest: { timeout_ms: 5000 } },
      { file: 'trap', name: 'trap', kind: 'trap', reason: /trapped/, manifest: { timeout_ms: 5000 } },
      { file: 'huge_output', name: 'huge-output', kind: 'bad_output', reason: /invalid result/, manifest: { timeout_ms: 5000, memory_bytes: 128 << 20 } },
    ];
    for (const k of cases) {
      test(`${k.name}: on_msg refused promptly with a clear reason, counted as ${k.kind}, other tenants unaffected`, T, async (t) => {
        const evil = await newTenant(`evil-${k.name}`);
        const room = rid('r');
        const a = await tmember(evil, room, { label: 'evil-A' });
        const b = await tmember(evil, room, { label: 'evil-B' });
        await bystandersTalk(`before ${k.name}`);

        const up = await retryFirstCallTimeout(t, `upload ${k.name}`, () => upload(evil.name, k.name, k.file, { manifest: k.manifest }));
        assert.equal(up.status, 200, `upload ${k.name}: HTTP ${up.status} ${up.text}`);

        const times = [];
        for (let i = 0; i < 3; i++) {
          const t0 = Date.now();
          const ack = await a.emitAck('msg', { data: { i }, storage: 0, msgId: `e${i}` }, 10000);
          const ms = Date.now() - t0;
          assert.equal(ack?.status, 1, `${k.name} msg ${i} must fail closed: ${JSON.stringify(ack)}`);
          assert.equal(typeof ack.data, 'string');
          assert.match(ack.data, new RegExp(k.name), `the reason names the plugin: ${ack.data}`);
          assert.match(ack.data, k.reason, `reason for ${k.name}: ${ack.data}`);
          assert.ok(ms < 3000, `${k.name}: refusal took ${ms} ms`);
          times.push(ms);
        }
        t.diagnostic(`${k.name}: refused in ${times.join(', ')} ms`);
        assert.deepEqual(await msgsBeforeMarker(b, evil, room), [], 'refused msgs are not relayed');
        assertConnected(a, b);

        const metrics = await srv.api('GET', '/metrics', { key: srv.adminKey });
        assert.equal(metrics.status, 200);
        const n = counterValue(metrics.text, 'hookwire_plugin_faults', { tenant: evil.name, plugin: k.name, kind: k.kind });
        const lines = metrics.text.split('\n').filter((l) => l.startsWith('hookwire_plugin_faults')).join('\n');
        assert.ok(n >= 3, `hookwire_plugin_faults{tenant=${evil.name},plugin=${k.name},kind=${k.kind}} = ${n}; fault lines:\n${lines}`);

        // logged with the plugin's name and version
        const logs = srv.logs.replace(/\x1b\[[0-9;]*m/g, '');
        const version = 1 + up.storedBefore; // a retried upload may have stored a version that did not activate
        assert.match(logs, new RegExp(`plugin fault tenant=${evil.name} plugin=${k.name} version=${version} .*kind="${k.kind}"`), `no fault log line for ${k.name}`);

        // a dry run reports the fault instead of a verdict
        const dry = ok(await srv.admin('POST', `/api/tenants/${evil.name}/plugins/${k.name}/test`, {
          body: { hook: 'on-msg', input: { room, msg: { data: 1 } } },
        }), `dry run ${k.name}`);
        assert.equal(dry.ok, false, JSON.stringify(dry));
        assert.equal(dry.fault?.kind, k.kind, JSON.stringify(dry));

        await bystandersTalk(`after ${k.name}`);

        // back to the engine defaults (a new version): still refused, promptly
        ok(await retryFirstCallTimeout(t, `${k.name} on engine defaults`, () => srv.admin('PUT', `/api/tenants/${evil.name}/plugins/${k.name}/config`, { body: {} })), 'default manifest');
        const t0 = Date.now();
        const ack = await a.emitAck('msg', { data: 'defaults', storage: 0, msgId: 'd' }, 10000);
        assert.equal(ack?.status, 1, `${k.name} on engine defaults: ${JSON.stringify(ack)}`);
        assert.match(ack.data, new RegExp(`plugin ${k.name} `), ack.data);
        assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
        assert.deepEqual(await msgsBeforeMarker(b, evil, room), [], 'refused msgs are not relayed');

        // the tenant recovers by removing the plugin
        ok(await srv.admin('DELETE', `/api/tenants/${evil.name}/plugins/${k.name}`), 'delete hostile');
        await exchange(a, b, 'after delete');
      });
    }

    test('spinning plugins with a long (allowed) deadline, on several sockets at once, do not stall other tenants', T, async (ctx) => {
      const evil = await newTenant('evil-storm');
      const room = rid('r');
      const spinners = [];
      for (let i = 0; i < 4; i++) spinners.push(await tmember(evil, room, { label: `spinner-${i}` }));
      await bystandersTalk('before the storm');
      // long enough that a bystander blocked behind the spinners (~deadline) stands out
      // from one that is merely slow on a loaded machine (well under deadline / 2)
      const deadline = 4000;
      ok(await upload(evil.name, 'spin-loop', 'spin_loop', { manifest: { timeout_ms: deadline } }), 'upload spin-loop');
      const t0 = Date.now();
      let stormAnswered = false;
      const storm = Promise.all(spinners.map((c) => c.emitAck('msg', { data: 1, storage: 2, msgId: 'x' }, 40000))).finally(() => { stormAnswered = true; });
      // the four calls are in flight: their msgs reached the hook (counted just before the call)
      await eventually(async () => (await messagesIn(evil.name)) >= spinners.length, undefined, 'the spinning calls started');
      // while 4 calls spin (each up to `deadline` ms of guest time), other tenants talk
      const lat = [];
      for (let i = 0; i < 3; i++) {
        const s0 = Date.now();
        await bystandersTalk(`during the storm ${i}`);
        lat.push(Date.now() - s0);
      }
      const talkedDuringStorm = !stormAnswered;
      const acks = await storm;
      const stormMs = Date.now() - t0;
      ctx.diagnostic(`bystander round trips during the storm: ${lat.join(', ')} ms; storm answered after ${stormMs} ms`);
      for (const ack of acks) assert.match(ack?.data ?? '', /exceeded its time budget/, JSON.stringify(ack));
      assert.ok(Math.max(...lat) < deadline / 2, `a bystander round trip took ${Math.max(...lat)} ms while plugins of another tenant spun (deadline ${deadline} ms): guest code blocks the node's async workers`);
      assert.ok(talkedDuringStorm, `the bystanders' round trips ended after the storm was answered (${stormMs} ms): they did not measure the node under the storm`);
    });

    test('fail open: the tenant\'s plugin_fail_open lets msgs through a trapping plugin (still counted)', T, async (ctx) => {
      const evil = await newTenant('evil-open', { plugin_fail_open: true });
      const room = rid('r');
      const a = await tmember(evil, room, { label: 'open-A' });
      const b = await tmember(evil, room, { label: 'open-B' });
      ok(await retryFirstCallTimeout(ctx, 'upload trap', () => upload(evil.name, 'trap', 'trap')), 'upload trap');
      await exchange(a, b, 'through a trap, fail open');
      const metrics = await srv.api('GET', '/metrics', { key: srv.adminKey });
      assert.ok(counterValue(metrics.text, 'hookwire_plugin_faults', { tenant: evil.name, kind: 'trap' }) >= 1);
    });

    test('uploads refused: wrong world, core module, garbage (4xx); missing or wrong admin key (401)', T, async () => {
      const evil = await newTenant('evil-upload');
      let r = await upload(evil.name, 'wrong-world', 'wrong_world');
      assert.ok(r.status >= 400 && r.status < 500, `wrong world: HTTP ${r.status} ${r.text}`);
      assert.match(errText(r), /does not implement world hookwire:policy/, r.text);

      r = await upload(evil.name, 'core', null, { body: Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) });
      assert.ok(r.status >= 400 && r.status < 500, `core module: HTTP ${r.status} ${r.text}`);
      assert.match(errText(r), /not a WebAssembly component/, r.text);
      assert.match(errText(r), /core wasm module/, r.text);

      r = await upload(evil.name, 'garbage', null, { body: Buffer.from('this is not wasm, just some bytes') });
      assert.ok(r.status >= 400 && r.status < 500, `garbage: HTTP ${r.status} ${r.text}`);
      assert.match(errText(r), /not a WebAssembly component/, r.text);

      // component header, garbage after it
      r = await upload(evil.name, 'truncated', null, { body: Buffer.concat([Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]), Buffer.from('garbage garbage')]) });
      assert.ok(r.status >= 400 && r.status < 500, `truncated component: HTTP ${r.status} ${r.text}`);
      assert.match(errText(r), /does not compile/, r.text);

      // above max_component_bytes (64 MiB): 413
      const big = Buffer.alloc((64 << 20) + 1024);
      Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]).copy(big);
      r = await upload(evil.name, 'too-large', null, { body: big });
      assert.equal(r.status, 413, `too large: HTTP ${r.status} ${r.text}`);
      assert.match(errText(r), /67108864/, r.text);

      // a bad plugin name, a manifest that does not parse or asks for more than the engine allows
      r = await upload(evil.name, 'Bad.Name', 'word_filter');
      assert.ok(r.status >= 400 && r.status < 500, `bad name: HTTP ${r.status} ${r.text}`);
      assert.match(errText(r), /invalid plugin name/, r.text);
      r = await srv.admin('POST', `/api/tenants/${evil.name}/plugins/word-filter`, {
        rawBody: readFileSync(wasm.word_filter), headers: { 'content-type': 'application/wasm', 'x-hookwire-manifest': '{not json' },
      });
      assert.ok(r.status >= 400 && r.status < 500, `manifest not JSON: HTTP ${r.status} ${r.text}`);
      r = await upload(evil.name, 'word-filter', 'word_filter', { manifest: { timeout_ms: 10 * 60 * 1000 } });
      assert.ok(r.status >= 400 && r.status < 500, `timeout above the engine limit: HTTP ${r.status} ${r.text}`);
      assert.match(errText(r), /timeout_ms .* above the engine limit/, r.text);
      r = await upload(evil.name, 'word-filter', 'word_filter', { manifest: { memory_bytes: 1 << 30 } });
      assert.ok(r.status >= 400 && r.status < 500, `memory above the engine limit: HTTP ${r.status} ${r.text}`);
      r = await upload(evil.name, 'word-filter', 'word_filter', { manifest: { no_such_field: 1 } });
      assert.ok(r.status >= 400 && r.status < 500, `unknown manifest field: HTTP ${r.status} ${r.text}`);

      for (const [what, key] of [['no key', null], ['wrong key', 'not-the-admin-key'], ['a tenant API key', evil.key]]) {
        r = await upload(evil.name, 'word-filter', 'word_filter', { key });
        assert.equal(r.status, 401, `${what}: HTTP ${r.status} ${r.text}`);
      }
      r = await srv.api('GET', `/api/tenants/${evil.name}/plugins`, { key: null });
      assert.equal(r.status, 401, `list without key: ${r.status}`);

      r = await srv.admin('POST', `/api/tenants/${rid('nosuch')}/plugins/word-filter`, { rawBody: readFileSync(wasm.word_filter), headers: { 'content-type': 'application/wasm' } });
      assert.equal(r.status, 404, `unknown tenant: ${r.status} ${r.text}`);

      // nothing of that was stored
      const listing = ok(await srv.admin('GET', `/api/tenants/${evil.name}/plugins`), 'list');
      assert.deepEqual(listing.plugins, [], JSON.stringify(listing));
      assert.deepEqual(listing.chain, []);
      await bystandersTalk('after refused uploads');
    });
  });

  // ---- hot swap under traffic, chains, restart -------------------------------------

  test('hot swap under traffic: config changes and a rollback during a stream of msgs; each msg is masked or dropped, none lost, no disconnect', T, async (ctx) => {
    const t = await newTenant('swap');
    const room = rid('r');
    const a = await tmember(t, room, { label: 'A' });
    const b = await tmember(t, room, { label: 'B' });
    const mf = (mode) => ({ timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode } });
    await uploadOk(t.name, 'word-filter', 'word_filter', { manifest: mf('mask') });
    const N = 80;
    const sending = (async () => {
      const acks = [];
      for (let i = 0; i < N; i += 8) {
        acks.push(...await Promise.all(Array.from({ length: 8 }, (_, j) => a.emitAck('msg', { data: { text: `darn ${i + j}` }, storage: 2, msgId: `s${i + j}` }, 10000))));
        await sleep(15);
      }
      return acks;
    })();
    const base = `/api/tenants/${t.name}/plugins/word-filter`;
    for (const mode of ['drop', 'mask', 'drop']) {
      await sleep(60);
      ok(await srv.admin('PUT', `${base}/config`, { body: mf(mode) }), `config ${mode}`);
    }
    await sleep(60);
    const rb = ok(await srv.admin('POST', `${base}/rollback`), 'rollback');
    assert.equal(rb.version, 3, `v4 (drop) rolled back to v3 (mask): ${JSON.stringify(rb)}`);
    const acks = await sending;
    const passed = [];
    for (const [i, ack] of acks.entries()) {
      if (ack?.status === 0) passed.push(i);
      else assert.deepEqual(ack, { status: 1, data: 'message contains a blocked word' }, `msg ${i}`);
    }
    ctx.diagnostic(`passed ${passed.length}/${N}`);
    // after the rollback (v4 drop → v3 mask) the next msg is masked; it comes
    // after everything the stream relayed (each relayed before its ack)
    const last = await a.emitAck('msg', { data: { text: 'darn last' }, storage: 2, msgId: 'last' });
    assert.equal(last?.status, 0, JSON.stringify(last));
    assert.equal((await b.waitFor('msg', 5000, (m) => m?.data?.text?.endsWith('last'))).data.text, '**** last');
    const got = b.received('msg').map((m) => m.data.text).filter((x) => x !== '**** last');
    assert.deepEqual(got, passed.map((i) => `**** ${i}`), 'B gets exactly the passed msgs, masked, in order');
    assertConnected(a, b);
  });

  test('a three-plugin chain runs in the order of PUT /chain', T, async () => {
    const t = await newTenant('chain');
    const room = rid('r');
    const a = await tmember(t, room, { label: 'A' });
    const b = await tmember(t, room, { label: 'B' });
    const c = await tmember(t, rid('other'), { label: 'C' });
    await uploadOk(t.name, 'mask', 'word_filter', { manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode: 'mask' } } });
    await uploadOk(t.name, 'block', 'word_filter', { manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode: 'drop' } } });
    const up = await uploadOk(t.name, 'router', 'user_router', { manifest: { timeout_ms: SAMPLE_TIMEOUT_MS } });
    assert.deepEqual(up.chain.map((e) => e.name), ['mask', 'block', 'router'], `upload order = chain order: ${JSON.stringify(up.chain)}`);

    // mask first: `block` sees "****" and lets it through; router sends it to C only
    let ack = await a.emitAck('msg', { data: { text: 'darn you', to: c.uid }, storage: 2, msgId: '1' });
    assert.equal(ack?.status, 0, JSON.stringify(ack));
    assert.equal((await c.waitFor('msg')).data.text, '**** you');

    const ch = ok(await srv.admin('PUT', `/api/tenants/${t.name}/chain`, { body: { order: ['block', 'mask', 'router'] } }), 'PUT chain');
    assert.deepEqual(ch.chain.map((e) => e.name), ['block', 'mask', 'router']);
    ack = await a.emitAck('msg', { data: { text: 'darn you', to: c.uid }, storage: 2, msgId: '2' });
    assert.deepEqual(ack, { status: 1, data: 'message contains a blocked word' });
    ack = await a.emitAck('msg', { data: { text: 'hello' }, storage: 2, msgId: '3' });
    assert.equal(ack?.status, 0);
    // B's first msg: msg 1 (routed to C) and msg 2 (blocked) did not reach B
    assert.equal((await b.waitFor('msg')).data.text, 'hello');
    // Positive control: C's next msg is one routed to C, not msg 2 or 3
    ack = await a.emitAck('msg', { data: { text: 'for C', to: c.uid }, storage: 2, msgId: '4' });
    assert.equal(ack?.status, 0, JSON.stringify(ack));
    assert.equal((await c.waitFor('msg'))?.data?.text, 'for C', 'C got nothing of msgs 2 and 3');

    const listing = ok(await srv.admin('GET', `/api/tenants/${t.name}/plugins`), 'list');
    assert.deepEqual(listing.chain.map((e) => e.name), ['block', 'mask', 'router']);
    const r = await srv.admin('PUT', `/api/tenants/${t.name}/chain`, { body: { order: ['block', 'nope'] } });
    assert.ok(r.status >= 400 && r.status < 500, `unknown plugin in chain: ${r.status} ${r.text}`);
    assertConnected(a, b, c);
  });

  test('concurrent uploads of one plugin get distinct versions; the chain points to one of them', T, async () => {
    const t = await newTenant('conc');
    const rs = await Promise.all([1, 2, 3].map((i) => upload(t.name, 'word-filter', 'word_filter', {
      manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: [`w${i}`], mode: 'mask' } },
    })));
    const versions = rs.map((r) => ok(r, 'concurrent upload').version).sort();
    assert.deepEqual(versions, [1, 2, 3]);
    const listing = ok(await srv.admin('GET', `/api/tenants/${t.name}/plugins`), 'list');
    assert.equal(listing.chain.length, 1, JSON.stringify(listing.chain));
    assert.deepEqual(listing.plugins[0].versions.map((v) => v.version), [1, 2, 3]);
    assert.equal(listing.chain[0].version, 3, 'the last stored version is the active one');
  });

  test('DELETE of a plugin the tenant does not have is 404, also when its chain holds other plugins', T, async () => {
    const t = await newTenant('del');
    let r = await srv.admin('DELETE', `/api/tenants/${t.name}/plugins/nope`);
    assert.equal(r.status, 404, `empty chain: ${r.status} ${r.text}`);
    await uploadOk(t.name, 'word-filter', 'word_filter', { manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['x'] } } });
    r = await srv.admin('DELETE', `/api/tenants/${t.name}/plugins/nope`);
    assert.equal(r.status, 404, `DELETE /api/tenants/${t.name}/plugins/nope with word-filter in the chain: HTTP ${r.status} ${r.text}`);
  });

  test('a deleted tenant\'s plugins do not come back when a tenant of the same name is created', T, async () => {
    const t = await newTenant('reborn');
    await uploadOk(t.name, 'word-filter', 'word_filter', { manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode: 'drop' } } });
    ok(await srv.admin('DELETE', `/api/tenants/${t.name}`), 'delete tenant');
    const again = ok(await srv.admin('POST', '/api/tenants', { body: { name: t.name } }), 'recreate tenant');
    const t2 = { name: t.name, key: again.api_key };
    const listing = ok(await srv.admin('GET', `/api/tenants/${t.name}/plugins`), 'list');
    assert.deepEqual(listing.chain, [], `chain of the new tenant: ${JSON.stringify(listing)}`);
    assert.deepEqual(listing.plugins, [], `plugins of the new tenant: ${JSON.stringify(listing)}`);
    const room = rid('r');
    const a = await tmember(t2, room, { label: 'A' });
    const b = await tmember(t2, room, { label: 'B' });
    const ack = await a.emitAck('msg', { data: { text: 'darn' }, storage: 2, msgId: '1' });
    assert.equal(ack?.status, 0, `the old tenant's word-filter still applies: ${JSON.stringify(ack)}`);
    assert.equal((await b.waitFor('msg')).data.text, 'darn');
  });

  test('rate-limit buckets are per tenant: the same uid exhausted in one tenant is not limited in another', T, async () => {
    const x = await newTenant('rlx');
    const y = await newTenant('rly');
    const uid = rid('same');
    const manifest = { timeout_ms: SAMPLE_TIMEOUT_MS, config: { rate_per_sec: 0.2, burst: 2 } };
    await uploadOk(x.name, 'rate-limit', 'rate_limit', { manifest });
    await uploadOk(y.name, 'rate-limit', 'rate_limit', { manifest });
    const ax = await tmember(x, rid('r'), { uid, label: 'uid@x' });
    const ay = await tmember(y, rid('r'), { uid, label: 'uid@y' });
    const send = (c, i) => c.emitAck('msg', { data: i, storage: 2, msgId: `m${i}` });
    const xs = [];
    for (let i = 0; i < 4; i++) xs.push(await send(ax, i));
    assert.deepEqual(xs.map((a) => a?.status), [0, 0, 1, 1], `tenant x: ${JSON.stringify(xs)}`);
    const ys = [await send(ay, 0), await send(ay, 1)];
    assert.deepEqual(ys.map((a) => a?.status), [0, 0], `tenant y shares no bucket with x: ${JSON.stringify(ys)}`);
  });

  test('swap while a call is in flight: the call finishes on the old version, the next event already uses the new one', T, async () => {
    const t = await newTenant('inflight');
    const room = rid('r');
    const a = await tmember(t, room, { label: 'A' });
    const b = await tmember(t, room, { label: 'B' });
    const c = await tmember(t, room, { label: 'C' });
    // the old version spins for 5 s: an upload that does not wait for it answers well before
    await uploadOk(t.name, 'p', 'spin_loop', { manifest: { timeout_ms: 5000 } });
    const t0 = Date.now();
    let aDone;
    const aAck = a.emitAck('msg', { data: { text: 'darn old' }, storage: 2, msgId: 'a' }, 30000).then((x) => { aDone = Date.now() - t0; return x; });
    // A's call is in flight on the old version: its msg reached the hook (counted just before the call)
    await eventually(async () => (await messagesIn(t.name)) >= 1, undefined, 'A\'s call started');
    assert.equal(aDone, undefined, 'A\'s call is still running when the new version is uploaded');
    const up = await uploadOk(t.name, 'p', 'word_filter', { manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode: 'mask' } } });
    assert.equal(up.version, 2);
    const upMs = Date.now() - t0;
    const cAck = await c.emitAck('msg', { data: { text: 'darn new' }, storage: 2, msgId: 'c' });
    const cMs = Date.now() - t0;
    assert.equal(cAck?.status, 0, JSON.stringify(cAck));
    assert.equal((await b.waitFor('msg', 5000, (m) => m?.data?.text?.endsWith('new'))).data.text, '**** new');
    const old = await aAck;
    assert.equal(old?.status, 1, `the in-flight call ran on the old version: ${JSON.stringify(old)}`);
    assert.match(old.data, /plugin p exceeded its time budget/);
    assert.ok(upMs < 5000 && cMs < aDone, `upload answered at ${upMs} ms, the new version served C at ${cMs} ms, the old call ended at ${aDone} ms: the swap must not wait for calls in flight`);
    assertConnected(a, b, c);
  });

  // ---- 7. dry run ----------------------------------------------------------------------

  test('dry run: POST .../plugins/word-filter/test returns the verdict and the time', T, async () => {
    const t = await newTenant('dry');
    await uploadOk(t.name, 'word-filter', 'word_filter', {
      manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode: 'mask' } },
    });
    const base = `/api/tenants/${t.name}/plugins/word-filter/test`;
    let d = ok(await srv.admin('POST', base, { body: { hook: 'on-msg', input: { room: 'r', msg: { data: { text: 'Darn it' } } } } }), 'dry run');
    assert.equal(d.plugin, 'word-filter');
    assert.equal(d.hook, 'on-msg');
    assert.equal(d.version, 1);
    assert.equal(d.ok, true, JSON.stringify(d));
    assert.equal(typeof d.elapsed_us, 'number');
    assert.ok(d.elapsed_us > 0, JSON.stringify(d));
    assert.match(JSON.stringify(d.verdict), /\*\*\*\* it/, `rewrite verdict: ${JSON.stringify(d.verdict)}`);

    d = ok(await srv.admin('POST', base, { body: { hook: 'on-msg', input: { room: 'r', msg: { data: { text: 'fine' } } } } }), 'dry run pass');
    assert.match(JSON.stringify(d.verdict), /Pass/i, JSON.stringify(d.verdict));

    ok(await srv.admin('PUT', `/api/tenants/${t.name}/plugins/word-filter/config`, { body: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode: 'drop' } } }), 'config drop');
    d = ok(await srv.admin('POST', base, { body: { hook: 'on-msg', input: { msg: { data: 'darn' } } } }), 'dry run drop');
    assert.match(JSON.stringify(d.verdict), /message contains a blocked word/, JSON.stringify(d.verdict));
    // an older version by number
    d = ok(await srv.admin('POST', base, { body: { hook: 'on-msg', version: 1, input: { msg: { data: 'darn' } } } }), 'dry run v1');
    assert.equal(d.version, 1);
    assert.match(JSON.stringify(d.verdict), /\*\*\*\*/);

    let r = await srv.admin('POST', base, { body: { hook: 'no-such-hook' } });
    assert.ok(r.status >= 400 && r.status < 500, `unknown hook: ${r.status} ${r.text}`);
    r = await srv.admin('POST', `/api/tenants/${t.name}/plugins/nope/test`, { body: { hook: 'on-msg' } });
    assert.equal(r.status, 404, `unknown plugin: ${r.status} ${r.text}`);
    r = await srv.api('POST', base, { key: null, body: { hook: 'on-msg' } });
    assert.equal(r.status, 401);
  });

  test('a stored chain that cannot be loaded at startup fails closed (it must not silently fall back to the built-in policy)', T, async () => {
    // Its own server: restarted with a lower engine memory ceiling than a stored manifest asks for.
    const own = await startServer();
    const mine = [];
    try {
      const name = rid('lim-');
      const t = ok(await own.admin('POST', '/api/tenants', { body: { name } }), 'tenant');
      const tn = { name, key: t.api_key };
      const h = { 'content-type': 'application/wasm', 'x-hookwire-manifest': JSON.stringify({ timeout_ms: SAMPLE_TIMEOUT_MS, memory_bytes: 64 << 20, config: { words: ['darn'], mode: 'drop' } }) };
      ok(await own.admin('POST', `/api/tenants/${name}/plugins/word-filter`, { rawBody: readFileSync(wasm.word_filter), headers: h, timeoutMs: 120000 }), 'upload');
      own.env = { ...own.env, HOOKWIRE_PLUGINS__MAX_MEMORY_BYTES: String(32 << 20) };
      await own.restart();
      const room = rid('r');
      const a = await loginJoin(own, room, { transports, tenant: tn.name, key: tn.key, label: 'A' });
      const b = await loginJoin(own, room, { transports, tenant: tn.name, key: tn.key, label: 'B' });
      mine.push(a, b);
      const ack = await a.emitAck('msg', { data: { text: 'darn' }, storage: 2, msgId: '1' });
      const relayed = b.received('msg').concat(await b.waitFor('msg', 500).then((m) => [m], () => []));
      assert.equal(ack?.status, 1, `tenant ${name} has word-filter (drop "darn") stored but its chain could not be loaded (manifest memory_bytes 64 MiB > engine max 32 MiB after restart): the msg must be refused, got ack ${JSON.stringify(ack)} and B received ${JSON.stringify(relayed)}`);
    } finally {
      closeAll(mine);
      await own.destroy();
    }
  });

  test('plugins survive a restart: the chain is active again when clients reconnect (last test: restarts the server)', T, async () => {
    const t = await newTenant('persist');
    await uploadOk(t.name, 'word-filter', 'word_filter', { manifest: { timeout_ms: SAMPLE_TIMEOUT_MS, config: { words: ['darn'], mode: 'mask' } } });
    closeAll(clients.splice(0));
    await srv.restart();
    const room = rid('r');
    const a = await tmember(t, room, { label: 'A' });
    const b = await tmember(t, room, { label: 'B' });
    const ack = await a.emitAck('msg', { data: { text: 'darn restart' }, storage: 0, msgId: 'x' });
    assert.equal(ack?.status, 0, JSON.stringify(ack));
    assert.equal((await b.waitFor('msg')).data.text, '**** restart');
    const listing = ok(await srv.admin('GET', `/api/tenants/${t.name}/plugins`), 'list after restart');
    assert.deepEqual(listing.chain.map((e) => e.name), ['word-filter']);
  });
});
