// Backing services and multi-node setups for the JS tests: real `redis-server`
// and SecantusDB (a MongoDB wire-protocol server, `pip install secantusdb`)
// processes on free loopback ports, and N hookwire nodes sharing them.
//
//   const redis = await startRedis({ appendonly: true });
//   const mongo = await startSecantus();
//   const node = await startNode({ redis: redis.url(0), mongo: mongo.url('mydb') });
//   const cl = await startCluster({ nodes: 3, redis: true, mongo: 'cluster' });
//   await cl.redis.kill9(); await cl.redis.restart();   // same port, same dir
//   await cl.nodes[0].kill9(); await cl.nodes[0].start(); // a node crash
//   await redisCommand(cl.redis.port, 'PUBLISH', 'notification', '{...}');
//
// Like the Rust helpers (tests/src/procs.rs), every service runs under a tiny
// `sh` watchdog that holds the read end of a pipe from this process: when the
// test process ends for any reason (even kill -9), the pipe closes and the
// watchdog kills the service, so no test leaves a server behind. Nothing is
// skipped: a missing binary is an error that says how to install it.
//
// Env: HOOKWIRE_REDIS_SERVER (redis-server binary), HOOKWIRE_PYTHON (python3
// with the `secantus` module), HOOKWIRE_TEST_LOG=1 (service logs are always
// in their temp dir; the path is in every error message).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { freePort, rid, sleep, startServer } from './harness.mjs';

/** How long a service may take to answer after it is started (ms). */
const READY_TIMEOUT_MS = 30000;

/**
 * Runs "$@" in the background with its output in $HW_LOG, prints its pid,
 * then waits for stdin to close (the test process closed it or died) and
 * kills it.
 */
const WATCHDOG = `"$@" >>"$HW_LOG" 2>&1 &
pid=$!
echo "$pid"
cat >/dev/null
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0`;

const liveServices = new Set();
process.on('exit', () => {
  // Belt and braces: the watchdogs do this too when our end of the pipe closes.
  for (const s of liveServices) {
    try { process.kill(s.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

/** Whether `pid` is running (not gone, not a zombie waiting for its watchdog). */
function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 1).trim().startsWith('Z');
  } catch {
    return false;
  }
}

/** Whether `bin` is an executable path or on PATH. */
function onPath(bin) {
  if (bin.includes('/')) return existsSync(bin);
  return (process.env.PATH || '').split(':').some((d) => d && existsSync(path.join(d, bin)));
}

/** One backing service process (redis-server or SecantusDB) and its watchdog. */
export class ServiceProc {
  constructor({ kind, port, dir, args, ready }) {
    this.kind = kind;
    this.port = port;
    this.dir = dir;
    this.args = args;
    this.ready = ready;
    this.log = path.join(dir, `${kind}.log`);
    this.pid = 0;
    this.watchdog = null;
  }

  /** Last lines of the service's log. */
  tail(n = 30) {
    try {
      return readFileSync(this.log, 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '(no log)';
    }
  }

  get alive() {
    return this.pid !== 0 && alive(this.pid);
  }

  async start() {
    const wd = spawn('sh', ['-c', WATCHDOG, 'sh', ...this.args], {
      cwd: this.dir,
      env: { ...process.env, HW_LOG: this.log },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    wd.on('error', () => {});
    const line = await new Promise((resolve, reject) => {
      const rl = createInterface({ input: wd.stdout });
      rl.once('line', (l) => { rl.close(); resolve(l); });
      wd.once('exit', () => reject(new Error(`${this.kind} watchdog exited before printing a pid`)));
    });
    this.pid = Number(line.trim());
    if (!this.pid) throw new Error(`${this.kind}: bad pid from watchdog: ${JSON.stringify(line)}`);
    this.watchdog = wd;
    liveServices.add(this);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (!this.alive) throw new Error(`${this.kind} on port ${this.port} exited at startup; log ${this.log}:\n${this.tail()}`);
      if (await this.ready(this.port)) return this;
      if (Date.now() > deadline) {
        await this.kill9();
        throw new Error(`${this.kind} on port ${this.port} did not answer within ${READY_TIMEOUT_MS} ms; log ${this.log}:\n${this.tail()}`);
      }
      await sleep(50);
    }
  }

  async _reap() {
    const deadline = Date.now() + 30000;
    while (this.alive) {
      if (Date.now() > deadline) throw new Error(`${this.kind} (pid ${this.pid}) did not exit`);
      await sleep(20);
    }
    liveServices.delete(this);
    if (this.watchdog) {
      const wd = this.watchdog;
      this.watchdog = null;
      const exited = wd.exitCode !== null ? null : new Promise((r) => wd.once('exit', r));
      wd.stdin.end();
      await exited;
    }
  }

  /** kill -9 (a crash: no shutdown, no final fsync); the data dir stays for restart(). */
  async kill9() {
    if (!this.alive) return this._reap();
    try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
    return this._reap();
  }

  /** SIGTERM and wait for the exit. */
  async stop() {
    if (!this.alive) return this._reap();
    try { process.kill(this.pid, 'SIGTERM'); } catch { /* gone */ }
    return this._reap();
  }

  /** Start again on the same port with the same data dir (kill -9 first if running). */
  async restart() {
    if (this.alive) await this.kill9();
    else await this._reap();
    return this.start();
  }

  /** Stop and delete the data dir. */
  async destroy() {
    await this.kill9();
    await rm(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Redis

/** Encode a command as a RESP array of bulk strings. */
function resp(args) {
  let s = `*${args.length}\r\n`;
  for (const a of args) {
    const b = Buffer.from(String(a), 'utf8');
    s += `$${b.length}\r\n${b.toString('utf8')}\r\n`;
  }
  return s;
}

/** Parse one RESP reply from buf at pos; returns {value, pos} or null when incomplete. */
function parseResp(buf, pos = 0) {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+': return { value: line, pos: next };
    case '-': return { value: new RedisError(line), pos: next };
    case ':': return { value: Number(line), pos: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, pos: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString('utf8', next, next + n), pos: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, pos: next };
      const out = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseResp(buf, p);
        if (!r) return null;
        out.push(r.value);
        p = r.pos;
      }
      return { value: out, pos: p };
    }
    default: throw new Error(`unexpected RESP reply: ${JSON.stringify(buf.toString('utf8', pos, Math.min(buf.length, pos + 80)))}`);
  }
}

export class RedisError extends Error {}

/**
 * Send one command to the Redis server on 127.0.0.1:port over a fresh TCP
 * connection (plain RESP, no npm client) and resolve its reply: a string,
 * number, null, array, or reject with the server's error.
 */
export function redisCommand(port, ...args) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { sock.destroy(); reject(new Error(`redis ${args[0]}: no reply within 5 s`)); }, 5000);
    sock.on('connect', () => sock.write(resp(args)));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r;
      try { r = parseResp(buf); } catch (e) { clearTimeout(t); sock.destroy(); reject(e); return; }
      if (!r) return;
      clearTimeout(t);
      sock.end();
      if (r.value instanceof RedisError) reject(r.value);
      else resolve(r.value);
    });
    sock.on('error', (e) => { clearTimeout(t); reject(e); });
  });
}

async function redisPong(port) {
  try {
    return (await redisCommand(port, 'PING')) === 'PONG';
  } catch {
    return false; // not listening yet, or -LOADING
  }
}

/**
 * Start `redis-server` on a free loopback port in a fresh temp dir.
 * opts.appendonly: AOF on with fsync on every write (for tests that restart
 * Redis and expect its data back); default off (`--save '' --appendonly no`).
 * Returns a ServiceProc with .url(db) and .command(...args).
 */
export async function startRedis({ appendonly = false } = {}) {
  const bin = process.env.HOOKWIRE_REDIS_SERVER || 'redis-server';
  if (!onPath(bin)) {
    throw new Error(`\`${bin}\` not found: install it with \`apt-get install -y redis-server\` (or set HOOKWIRE_REDIS_SERVER to its path)`);
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'hw-redis-'));
  const port = await freePort();
  const args = [
    bin, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '',
    '--appendonly', appendonly ? 'yes' : 'no',
    ...(appendonly ? ['--appendfsync', 'always'] : []),
    '--maxmemory-policy', 'noeviction', '--protected-mode', 'no', '--daemonize', 'no',
  ];
  const p = new ServiceProc({ kind: 'redis', port, dir, args, ready: redisPong });
  p.url = (db = 0) => `redis://127.0.0.1:${port}/${db}`;
  p.command = (...a) => redisCommand(port, ...a);
  return p.start();
}

// ---------------------------------------------------------------------------
// SecantusDB (MongoDB wire protocol)

let secantusChecked = false;

function tcpOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const t = setTimeout(() => { s.destroy(); resolve(false); }, 500);
    s.on('connect', () => { clearTimeout(t); s.end(); resolve(true); });
    s.on('error', () => { clearTimeout(t); resolve(false); });
  });
}

/**
 * Start SecantusDB on a free loopback port. opts.memory (default true):
 * `--storage-path :memory:`; false keeps the data in the temp dir (fsync on
 * commit), so that restart() finds it again.
 * Returns a ServiceProc with .url(db) = mongodb://127.0.0.1:P/<db>?directConnection=true
 * (SecantusDB advertises itself as a one-node replica set; connecting directly
 * avoids depending on the host name it advertises).
 */
export async function startSecantus({ memory = true } = {}) {
  const py = process.env.HOOKWIRE_PYTHON || 'python3';
  if (!secantusChecked) {
    const probe = spawnSync(py, ['-c', 'import secantus'], { stdio: 'ignore' });
    if (probe.error) throw new Error(`cannot run \`${py}\` (${probe.error.message}): install Python 3 and then \`pip install secantusdb\``);
    if (probe.status !== 0) throw new Error('python module `secantus` not found: install it with `pip install secantusdb`');
    secantusChecked = true;
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'hw-secantus-'));
  const port = await freePort();
  const args = [
    py, '-m', 'secantus', '--host', '127.0.0.1', '--port', String(port),
    '--storage-path', memory ? ':memory:' : path.join(dir, 'data'),
    ...(memory ? [] : ['--sync-on-commit']),
    '--log-level', 'WARNING',
  ];
  const p = new ServiceProc({ kind: 'secantus', port, dir, args, ready: tcpOpen });
  p.url = (db) => `mongodb://127.0.0.1:${port}/${db}?directConnection=true`;
  return p.start();
}

// ---------------------------------------------------------------------------
// hookwire nodes

/**
 * Start one hookwire node (fresh data dir, free port) on the given stores.
 * opts: redis (URL), mongo (URL), adminKey, apiKey, args (extra flags), env.
 * The keys are passed as flags (--admin-key, --default-api-key) and in the
 * environment; nodes of one cluster must share them.
 */
export async function startNode(opts = {}) {
  const adminKey = opts.adminKey || `admin-${rid('k')}`;
  const apiKey = opts.apiKey || `default-${rid('k')}`;
  const args = [
    '--admin-key', adminKey, '--default-api-key', apiKey,
    ...(opts.redis ? ['--redis', opts.redis] : []),
    ...(opts.mongo ? ['--mongo', opts.mongo] : []),
    ...(opts.args || []),
  ];
  const srv = await startServer({ adminKey, apiKey, args, env: opts.env });
  srv.label = opts.label || `node:${srv.port}`;
  return srv;
}

/**
 * Redis and/or SecantusDB plus N hookwire nodes on them, all with the same
 * admin key and default API key.
 * opts: nodes (default 3), redis (true | {appendonly}), redisDb (default 0),
 *       mongo (database name, or true for a random one; omitted = no MongoDB),
 *       mongoOnDisk (SecantusDB keeps its data in its temp dir, so a restart finds it),
 *       labels (node labels, default A, B, C, ...), args (extra node flags).
 * Returns { redis, mongo, nodes, node(label), addNode(label), destroy() }.
 */
export async function startCluster(opts = {}) {
  const n = opts.nodes ?? 3;
  const cl = {
    redis: null,
    mongo: null,
    nodes: [],
    adminKey: `admin-${rid('k')}`,
    apiKey: `default-${rid('k')}`,
  };
  try {
    const [redis, mongo] = await Promise.all([
      opts.redis ? startRedis(typeof opts.redis === 'object' ? opts.redis : {}) : null,
      opts.mongo ? startSecantus({ memory: !opts.mongoOnDisk }) : null,
    ]);
    cl.redis = redis;
    cl.mongo = mongo;
    cl.redisUrl = redis ? redis.url(opts.redisDb ?? 0) : undefined;
    cl.mongoUrl = mongo ? mongo.url(typeof opts.mongo === 'string' ? opts.mongo : rid('hw')) : undefined;
    const labels = opts.labels || 'ABCDEFGH'.split('');
    cl.addNode = async (label = labels[cl.nodes.length]) => {
      const node = await startNode({
        redis: cl.redisUrl, mongo: cl.mongoUrl, adminKey: cl.adminKey, apiKey: cl.apiKey, args: opts.args, label,
      });
      cl.nodes.push(node);
      return node;
    };
    // The first node creates the shared `default` tenant; the others start after it.
    await cl.addNode(labels[0]);
    await Promise.all(Array.from({ length: n - 1 }, (_, i) => cl.addNode(labels[i + 1])));
    cl.nodes.sort((a, b) => labels.indexOf(a.label) - labels.indexOf(b.label));
  } catch (e) {
    await destroyCluster(cl);
    throw e;
  }
  cl.node = (label) => cl.nodes.find((x) => x.label === label);
  cl.destroy = () => destroyCluster(cl);
  return cl;
}

async function destroyCluster(cl) {
  await Promise.all(cl.nodes.map((s) => s.destroy().catch(() => {})));
  await Promise.all([cl.redis?.destroy(), cl.mongo?.destroy()].map((p) => p?.catch(() => {})));
}
