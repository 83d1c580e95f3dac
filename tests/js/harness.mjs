// Test harness for hookwire: runs the real server binary and drives it with the
// official socket.io-client. No mocks: every test talks to a real process.
//
//   const srv = await startServer();           // fresh temp data dir, free port
//   const c = await login(srv, { transports }); // token + connect + authenticate
//   await c.emitAck('join', { roomId: 'r1' });
//   const m = await other.waitFor('msg');
//   await srv.kill9(); await srv.start();       // crash + restart on the same dir
//
// Env: HOOKWIRE_BIN (binary path; default <repo>/target/debug/hookwire),
//      HOOKWIRE_TEST_LOG=1 (copy server logs to stderr).
//
// A server started with TLS (tls_cert / tls_key in its env or args) needs
// startServer({ tls: { ca } }): its url is https:// and the startup wait
// trusts `ca`. srv.api() stays plain fetch (no custom CA): TLS tests make
// their own requests with `ca`.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { io } from 'socket.io-client';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.HOOKWIRE_BIN || path.join(REPO_ROOT, 'target/debug/hookwire');

/**
 * Default timeout of a single wait (ms). Generous: it only runs out when
 * something is wrong, and a loaded CI machine (slow disk syncs, other builds)
 * can take seconds to answer one event.
 */
export const WAIT_MS = Number(process.env.HOOKWIRE_TEST_WAIT_MS || 15000);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A short random id, unique enough to keep tests from seeing each other's rooms and users. */
export function rid(prefix = 'x') {
  return `${prefix}${randomBytes(5).toString('hex')}`;
}

/** A free TCP port on 127.0.0.1 (bind to 0, read the port, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The environment for a server process: ours minus every HOOKWIRE_* variable
 * (the server treats HOOKWIRE_* as its config and refuses unknown ones, and the
 * test knobs HOOKWIRE_BIN / HOOKWIRE_TEST_* are not its business).
 */
export function serverEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HOOKWIRE_')));
}

const liveProcs = new Set();
process.on('exit', () => {
  for (const p of liveProcs) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** One hookwire process (and its data dir, which survives restarts). */
export class HookwireServer {
  constructor({ dataDir, port, adminKey, apiKey, env = {}, args = [], tls = null }) {
    this.dataDir = dataDir;
    this.port = port;
    this.adminKey = adminKey;
    this.apiKey = apiKey;
    this.env = env;
    this.args = args;
    this.proc = null;
    this.logs = '';
    this.tls = tls;
    this.url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  }

  /** Last lines of the server's stdout+stderr, for error messages. */
  tail(n = 30) {
    return this.logs.split('\n').slice(-n).join('\n');
  }

  /** First and last lines of the logs (a startup error is at the top, above any backtrace). */
  excerpt() {
    const lines = this.logs.split('\n');
    if (lines.length <= 40) return this.logs;
    return [...lines.slice(0, 20), '    [...]', ...lines.slice(-15)].join('\n');
  }

  async start(timeoutMs = 30000) {
    if (!existsSync(BIN)) {
      throw new Error(`hookwire binary not found at ${BIN}: run \`cargo build -p hookwire\` or set HOOKWIRE_BIN`);
    }
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir, ...this.args];
    const proc = spawn(BIN, args, {
      env: {
        ...serverEnv(),
        RUST_LOG: process.env.RUST_LOG || 'info',
        ...(this.adminKey ? { HOOKWIRE_ADMIN_KEY: this.adminKey } : {}),
        ...(this.apiKey ? { HOOKWIRE_DEFAULT_API_KEY: this.apiKey } : {}),
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    liveProcs.add(proc);
    const onData = (d) => {
      this.logs += d.toString();
      if (this.logs.length > 200000) this.logs = this.logs.slice(-100000);
      if (process.env.HOOKWIRE_TEST_LOG) process.stderr.write(d);
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        liveProcs.delete(proc);
        resolve({ code, signal });
      });
    });
    let exitInfo = null;
    this.exited.then((e) => { exitInfo = e; });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (exitInfo) {
        throw new Error(`hookwire exited during startup (${JSON.stringify(exitInfo)}):\n${this.excerpt()}`);
      }
      try {
        const status = this.tls
          ? await httpsStatus(`${this.url}/healthz`, this.tls.ca)
          : (await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) })).status;
        if (status === 200) return this;
      } catch { /* not yet listening */ }
      await sleep(50);
    }
    proc.kill('SIGKILL');
    throw new Error(`hookwire did not answer GET /healthz 200 within ${timeoutMs} ms:\n${this.excerpt()}`);
  }

  /** Graceful stop: SIGTERM, wait for exit (kill -9 after timeoutMs). Returns {code, signal}. */
  async stop(timeoutMs = 10000) {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exitInfo;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const info = await this.exited;
    clearTimeout(t);
    this.exitInfo = info;
    return info;
  }

  /** Crash: kill -9. */
  async kill9() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  async restart({ crash = false } = {}) {
    if (crash) await this.kill9();
    else await this.stop();
    await this.start();
    return this;
  }

  /** stop and delete the data dir. */
  async destroy() {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  /**
   * HTTP call. Returns { status, json, text, headers }.
   * opts: body (JSON), form (object -> x-www-form-urlencoded, or a ready string),
   *       key (default: tenant default API key; null = no key), keyVia ('header'|'query'),
   *       query (object), tenant (adds ?tenant=), headers, rawBody (string sent as JSON content type).
   */
  async api(method, pathname, opts = {}) {
    const u = new URL(pathname, this.url);
    for (const [k, v] of Object.entries(opts.query || {})) u.searchParams.set(k, String(v));
    if (opts.tenant) u.searchParams.set('tenant', opts.tenant);
    const headers = { ...(opts.headers || {}) };
    const key = opts.key === undefined ? this.apiKey : opts.key;
    if (key !== null) {
      if (opts.keyVia === 'query') u.searchParams.set('apiKey', key);
      else headers.authorization = `Bearer ${key}`;
    }
    let body;
    if (opts.rawBody !== undefined) {
      body = opts.rawBody;
      headers['content-type'] ??= 'application/json';
    } else if (opts.form !== undefined) {
      body = typeof opts.form === 'string' ? opts.form : new URLSearchParams(opts.form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const r = await fetch(u, { method, headers, body, signal: AbortSignal.timeout(opts.timeoutMs || 15000) });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: r.status, json, text, headers: r.headers };
  }

  /** Admin-key call. */
  admin(method, pathname, opts = {}) {
    return this.api(method, pathname, { key: this.adminKey, ...opts });
  }
}

/** Status of GET `url` over https trusting `ca` (fetch takes no CA of its own). */
function httpsStatus(url, ca) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 1000 }, (res) => { res.resume(); resolve(res.statusCode); });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Start a server on a fresh temp data dir (or opts.dataDir) and a free port. */
export async function startServer(opts = {}) {
  const dataDir = opts.dataDir || (await mkdtemp(path.join(tmpdir(), 'hookwire-test-')));
  const port = opts.port || (await freePort());
  const srv = new HookwireServer({
    dataDir,
    port,
    // null: let the server generate its keys (first start)
    adminKey: opts.adminKey === null ? null : opts.adminKey || `admin-${rid('k')}`,
    apiKey: opts.apiKey === null ? null : opts.apiKey || `default-${rid('k')}`,
    env: opts.env,
    args: opts.args,
    tls: opts.tls,
  });
  await srv.start();
  return srv;
}

// ---------------------------------------------------------------------------
// socket.io client wrapper

/** Events the client library itself emits; recorded in the same log. */
const LIFECYCLE = ['connect', 'disconnect', 'connect_error'];

export class Client {
  constructor(socket, label) {
    this.socket = socket;
    this.label = label;
    this.log = []; // {event, args, ack, at, used}
    this.waiters = [];
    socket.onAny((event, ...args) => this._record(event, args));
    for (const ev of LIFECYCLE) socket.on(ev, (...args) => this._record(ev, args));
  }

  _record(event, args) {
    let ack = null;
    if (args.length && typeof args[args.length - 1] === 'function') ack = args.pop();
    const entry = { event, args, ack, at: Date.now(), used: false };
    this.log.push(entry);
    for (const w of [...this.waiters]) {
      if (!entry.used && w.event === event && w.filter(...entry.args)) {
        entry.used = true;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  }

  get connected() { return this.socket.connected; }

  summary() {
    return this.log.map((e) => `${e.event}${e.args.length ? ' ' + JSON.stringify(e.args).slice(0, 160) : ''}`).join('\n    ');
  }

  /** Wait for the next unconsumed `event` (optionally matching filter(...args)); resolves the whole entry {args, ack}. */
  waitForEntry(event, timeoutMs = WAIT_MS, filter = () => true) {
    const hit = this.log.find((e) => !e.used && e.event === event && filter(...e.args));
    if (hit) {
      hit.used = true;
      return Promise.resolve(hit);
    }
    return new Promise((resolve, reject) => {
      const w = { event, filter, resolve };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`[${this.label}] no "${event}" within ${timeoutMs} ms; received so far:\n    ${this.summary() || '(nothing)'}`));
      }, timeoutMs);
      w.resolve = (e) => { clearTimeout(t); resolve(e); };
      this.waiters.push(w);
    });
  }

  /** Wait for the next unconsumed `event`; resolves its first argument. */
  async waitFor(event, timeoutMs = WAIT_MS, filter) {
    const e = await this.waitForEntry(event, timeoutMs, filter);
    return e.args[0];
  }

  /** Assert that no (unconsumed) `event` matching filter arrives within ms. */
  async expectNo(event, ms = 300, filter = () => true) {
    await sleep(ms);
    const hit = this.log.find((e) => !e.used && e.event === event && filter(...e.args));
    if (hit) {
      throw new Error(`[${this.label}] unexpected "${event}" ${JSON.stringify(hit.args)}; log:\n    ${this.summary()}`);
    }
  }

  /** All payloads (first args) of `event` received so far. */
  received(event) {
    return this.log.filter((e) => e.event === event).map((e) => e.args[0]);
  }

  /** Emit with an ack callback; resolves the ack's first argument, rejects after timeoutMs. */
  async emitAck(event, data, timeoutMs = WAIT_MS) {
    try {
      return await this.socket.timeout(timeoutMs).emitWithAck(event, data);
    } catch (err) {
      throw new Error(`[${this.label}] no ack for "${event}" within ${timeoutMs} ms (${err.message}); log:\n    ${this.summary()}`);
    }
  }

  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  /** Resolves when the socket is disconnected (by either side); resolves the reason. */
  async waitDisconnect(timeoutMs = WAIT_MS) {
    const hit = this.log.find((e) => e.event === 'disconnect');
    if (hit) return hit.args[0];
    return this.waitFor('disconnect', timeoutMs);
  }

  close() {
    this.socket.disconnect();
  }
}

/**
 * Connect a socket.io client. opts: ns ('/' or '/acme'), transports, auth, query,
 * label, expectConnect (default true: rejects on connect_error), ioOpts (extra client options).
 */
export async function connect(srv, opts = {}) {
  const ns = opts.ns && opts.ns !== '/' ? opts.ns : '';
  const socket = io(srv.url + ns, {
    forceNew: true,
    reconnection: false,
    timeout: 20000,
    transports: opts.transports || ['websocket'],
    auth: opts.auth,
    query: opts.query,
    ...(opts.ioOpts || {}),
  });
  const c = new Client(socket, opts.label || 'client');
  if (opts.expectConnect === false) return c;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`[${c.label}] connect timeout`)), 20000);
    socket.once('connect', () => { clearTimeout(t); resolve(); });
    socket.once('connect_error', (e) => { clearTimeout(t); reject(new Error(`[${c.label}] connect_error: ${e.message}`)); });
  });
  return c;
}

/** Envelope check: HTTP 200 and meta.status 0; returns data. */
export function ok(res, what = 'request') {
  if (res.status !== 200 || !res.json || !res.json.meta || res.json.meta.status !== 0) {
    throw new Error(`${what}: expected HTTP 200 with meta.status 0, got HTTP ${res.status}: ${res.text.slice(0, 500)}`);
  }
  return res.json.data;
}

/** Create a user (or refresh its token if it exists) and return the token. */
export async function tokenFor(srv, uid, { tenant, key } = {}) {
  const opts = { body: { uid }, tenant };
  if (key !== undefined) opts.key = key;
  let r = await srv.api('POST', '/user/create_token', opts);
  if (r.json?.meta?.status === 1) r = await srv.api('POST', '/user/refresh_token', opts);
  const data = ok(r, `create_token ${uid}`);
  if (!data || typeof data.token !== 'string' || !data.token) throw new Error(`create_token: no token in ${r.text}`);
  return data.token;
}

/**
 * Token + connect + authenticate. opts: uid, token, tenant (ns '/<tenant>' unless 'default'),
 * transports, via ('event' | 'handshake'), query, label, key.
 * Returns the Client with .uid and .token set.
 */
export async function login(srv, opts = {}) {
  const uid = opts.uid ?? rid('u');
  const tenant = opts.tenant && opts.tenant !== 'default' ? opts.tenant : undefined;
  const token = opts.token ?? (await tokenFor(srv, String(uid), { tenant, key: opts.key }));
  const ns = tenant ? `/${tenant}` : '/';
  const label = opts.label || `uid=${uid}`;
  let c;
  if (opts.via === 'handshake') {
    c = await connect(srv, { ns, transports: opts.transports, auth: { uid, token }, query: opts.query, label });
  } else {
    c = await connect(srv, { ns, transports: opts.transports, query: opts.query, label });
    const r = await c.emitAck('authenticate', { uid, token });
    if (!r || r.status !== 0) throw new Error(`[${label}] authenticate failed: ${JSON.stringify(r)}`);
  }
  c.uid = uid;
  c.token = token;
  return c;
}

/** login + join roomId; returns the client. */
export async function loginJoin(srv, roomId, opts = {}) {
  const c = await login(srv, opts);
  const r = await c.emitAck('join', { roomId, ...(opts.dummy ? { dummy: true } : {}) });
  if (!r || r.status !== 0) throw new Error(`[${c.label}] join ${roomId} failed: ${JSON.stringify(r)}`);
  c.roomId = roomId;
  return c;
}

/** Decode a sync reply's data (plain array, or base64 gzip JSON when encoding is 'gzip'). */
export function syncData(reply) {
  if (reply.encoding === 'gzip') {
    if (typeof reply.data !== 'string') throw new Error(`gzip sync data is not a string: ${JSON.stringify(reply).slice(0, 200)}`);
    return JSON.parse(gunzipSync(Buffer.from(reply.data, 'base64')).toString('utf8'));
  }
  return reply.data;
}

/** Sync a room from offset until next=0. Returns { msgs, pages, last }. */
export async function syncAll(c, { offset = 0, encoding, epoch, maxPages = 1000 } = {}) {
  const msgs = [];
  const pages = [];
  let req = { offset };
  if (encoding) req.encoding = encoding;
  if (epoch !== undefined) req.epoch = epoch;
  for (let i = 0; i < maxPages; i++) {
    const r = await c.emitAck('sync', req);
    pages.push(r);
    const data = syncData(r);
    if (!Array.isArray(data)) throw new Error(`sync data is not an array: ${JSON.stringify(r).slice(0, 300)}`);
    msgs.push(...data);
    if (!r.next) return { msgs, pages, last: r };
    req = { ...req, offset: r.offset };
    delete req.epoch;
    if (r.epoch !== undefined && epoch !== undefined) req.epoch = r.epoch;
  }
  throw new Error('sync did not finish');
}

/** Wait until fn() is truthy (polling every 50 ms). */
export async function eventually(fn, timeoutMs = WAIT_MS, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { last = e; }
    await sleep(50);
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/**
 * Push acks the server has fully handled (`hookwire_push_acks_total`) in a
 * tenant, summed over the given servers (the node that delivered a push is
 * the one that records its ack). An ack callback is fire-and-forget for the
 * client; wait for this counter to know the server removed the push:
 *
 *   const before = await pushAcks(srv); e.ack(); await pushAcksReach(srv, before + 1);
 */
export async function pushAcks(servers, tenant = 'default') {
  let sum = 0;
  for (const srv of [servers].flat()) {
    const text = (await srv.api('GET', '/metrics', { key: null })).text;
    for (const line of text.split('\n')) {
      const m = line.match(/^hookwire_push_acks_total\{([^}]*)\}\s+(\S+)/);
      if (m && new RegExp(`(^|,)tenant="${tenant}"(,|$)`).test(m[1])) sum += Number(m[2]);
    }
  }
  return sum;
}

/** Wait until the servers have handled at least `n` push acks in `tenant` (see pushAcks). */
export function pushAcksReach(servers, n, tenant = 'default', timeoutMs = 20000) {
  return eventually(async () => (await pushAcks(servers, tenant)) >= n, timeoutMs, `${n} push acks handled in tenant ${tenant}`);
}

/** Close clients quietly. */
export function closeAll(...clients) {
  for (const c of clients.flat()) {
    try { c?.close(); } catch { /* ignore */ }
  }
}

/**
 * The component of sample plugin `pkg` (a package of plugins/, e.g.
 * `word-filter`), built (incrementally) by plugins/build.sh; its bytes.
 */
export function builtPlugin(pkg) {
  const r = spawnSync(path.join(REPO_ROOT, 'plugins/build.sh'), ['-p', pkg], {
    cwd: REPO_ROOT, encoding: 'utf8', timeout: 15 * 60 * 1000, maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`plugins/build.sh -p ${pkg} failed:\n${(r.stderr || '').slice(-3000)}`);
  const file = `/${pkg.replace(/-/g, '_')}.wasm`;
  const line = r.stdout.split('\n').map((l) => l.trim()).find((l) => l.endsWith(file));
  if (!line) throw new Error(`plugins/build.sh printed no ${file.slice(1)}:\n${r.stdout}`);
  return readFileSync(path.isAbsolute(line) ? line : path.join(REPO_ROOT, line));
}

/** Opens the live tap of `roomId` on `srv` (a node) and collects its server-sent events ({event, data}) until `close()`. */
export async function openTap(srv, roomId, key = srv.adminKey) {
  const ctrl = new AbortController();
  const u = new URL('/admin/monitor/tap', srv.url);
  u.searchParams.set('roomId', roomId);
  const res = await fetch(u, { headers: { authorization: `Bearer ${key}` }, signal: ctrl.signal });
  const events = [];
  let done;
  if (res.ok) {
    done = (async () => {
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body) {
          buf += dec.decode(chunk, { stream: true });
          let at;
          while ((at = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, at);
            buf = buf.slice(at + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
            if (event) events.push({ event, data: JSON.parse(data) });
          }
        }
      } catch (e) {
        if (e.name !== 'AbortError') throw e;
      }
    })();
  }
  return { res, events, close: async () => { ctrl.abort(); await done; } };
}
