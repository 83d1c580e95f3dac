// Chaos run: a three-node cluster (A, B, C) on one real Redis and one real
// SecantusDB under steady traffic, while the word-filter plugin is hot-swapped
// every second, node C is killed -9 and restarted, and Redis is killed -9 and
// restarted. Afterwards it checks what the wire contract promises:
//
//   - every acked msg is in `sync` (paged from offset 0 through node A) exactly
//     once, in its sender's order, and went through the filter (masked);
//   - no socket on A or B was dropped (only C's sockets die, with C);
//   - a listener on the sender's own node got every acked msg live (a same-node
//     relay does not depend on Redis);
//   - msgs were acked in every phase, on every node that was up;
//   - at least SECONDS/3 plugin swaps (upload of a new version + PUT /chain)
//     succeeded;
//   - push devices on A and B ack even-numbered pushes only: after the run
//     every push a device did not ack is still queued (it comes back as
//     `_batch` when the device reconnects) and no acked push comes back.
//
// All counts are printed first; then every violation is listed and the exit
// code is 1. Run from the repository root:
//
//   node tests/chaos/run.mjs
//
// Env: CHAOS_SECONDS (traffic time, default 30; the timeline scales with it),
//      CHAOS_DEBUG=1 (timeline, swaps and errors as they happen),
//      CHAOS_WORD_FILTER_WASM (default plugins/target/wasm32-wasip2/release/word_filter.wasm,
//      built by plugins/build.sh), HOOKWIRE_BIN (the server binary, see
//      tests/js/harness.mjs), HOOKWIRE_TEST_LOG=1 (server logs to stderr).

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  REPO_ROOT, BIN, closeAll, eventually, login, loginJoin, ok, pushAcks, rid, sleep, syncAll,
} from '../js/harness.mjs';
import { startCluster } from '../js/cluster-harness.mjs';

const SECONDS = Number(process.env.CHAOS_SECONDS || 30);
const DEBUG = process.env.CHAOS_DEBUG === '1';
const WASM = process.env.CHAOS_WORD_FILTER_WASM || path.join(REPO_ROOT, 'plugins/target/wasm32-wasip2/release/word_filter.wasm');

/** One stored msg every SEND_MS per sender. */
const SEND_MS = 50;
/**
 * A sender skips a tick rather than have more msgs than this waiting for
 * their ack. The shared store is the bottleneck: SecantusDB answers the
 * "highest seq of this room" query of every insert with an in-memory sort of
 * the whole room (no index walk), so an insert costs more the longer the room
 * gets, and a few hundred stored msgs/s is far beyond it. Without a cap the
 * backlog grows until acks take longer than ACK_MS, and the run measures the
 * overload instead of the faults. A few msgs in flight still pipeline (the
 * order check covers that).
 */
const MAX_IN_FLIGHT = 3;
/** A msg without an ack after this long counts as not acked. */
const ACK_MS = 10000;
/** One push (to the next device, round robin) every PUSH_MS, or right after the previous /send answered when that took longer. */
const PUSH_MS = 100;
const DEVICES = 6;
/** One plugin swap every SWAP_MS (or right after the previous one, when it took longer). */
const SWAP_MS = 1000;
/** Deadline of the word-filter calls: the 10 ms default is a lottery on a loaded 2-core box running a debug build. */
const PLUGIN_TIMEOUT_MS = 500;
/** Tenant config for the run: push-only devices never join (no join timeout), and no trimming of the room logs. */
const TENANT_PATCH = { join_timeout_ms: 0, max_msgs_per_room: 1000000 };
/** Whole-run watchdog: traffic plus generous setup and checks. */
const HARD_LIMIT_MS = (SECONDS + 150) * 1000;

// Timeline for the default 30 s: 6 s steady, then kill -9 C; 5 s later
// restart C; 6 s later kill -9 Redis; 5 s later restart Redis; 8 s later the
// traffic ends. Each wait starts when the previous step is done (a restart
// takes a few seconds), and the waits scale with SECONDS.
const scale = SECONDS / 30;
const WAIT = {
  killC: 6 * scale,
  restartC: 5 * scale,
  killRedis: 6 * scale,
  restartRedis: 5 * scale,
  end: 8 * scale,
};

const t0 = Date.now();
const stamp = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s`;
const log = (...a) => console.log(stamp(), ...a);
const debug = (...a) => { if (DEBUG) console.log(stamp(), '[debug]', ...a); };

const watchdog = setTimeout(() => {
  console.error(`${stamp()} FAIL: the chaos run did not finish within ${HARD_LIMIT_MS / 1000} s`);
  process.exit(2);
}, HARD_LIMIT_MS);

// ---------------------------------------------------------------------------
// phases

const PHASES = ['steady', 'C down', 'C back', 'Redis down', 'Redis back'];
let phase = 'setup';
/** Nodes that are up in each phase (where acks are expected). */
const UP_IN = {
  steady: ['A', 'B', 'C'], 'C down': ['A', 'B'], 'C back': ['A', 'B', 'C'], 'Redis down': ['A', 'B', 'C'], 'Redis back': ['A', 'B', 'C'],
};
const phaseStart = {};
function enter(p) {
  phase = p;
  phaseStart[p] = Date.now();
  log(`phase: ${p}`);
}

// ---------------------------------------------------------------------------
// the run

const violations = [];
const fail = (msg) => violations.push(msg);
/** The counts, printed before the violations (also when the run is aborted half way). */
const report = [];
const say = (line) => report.push(line);

let cl;
const everyClient = [];
const track = (c) => { everyClient.push(c); return c; };

async function main() {
  if (!existsSync(WASM)) {
    throw new Error(`word-filter component not found at ${WASM}: build it with \`plugins/build.sh -p word-filter\` (or set CHAOS_WORD_FILTER_WASM)`);
  }
  const wasm = readFileSync(WASM);
  log(`chaos run: ${SECONDS} s of traffic, binary ${BIN}`);

  // Redis without AOF: with --mongo the store is MongoDB and Redis holds
  // nothing durable, so the restarted Redis comes back empty (the nodes write
  // their presence again), the harder of the two cases.
  cl = await startCluster({ nodes: 3, redis: true, mongo: rid('chaos_') });
  const [A, B, C] = cl.nodes;
  const nodes = { A, B, C };
  const up = { A: true, B: true, C: true };
  log(`cluster up: A ${A.url}, B ${B.url}, C ${C.url}, redis :${cl.redis.port}, secantus :${cl.mongo.port}`);

  // ---- tenant config, before traffic ----------------------------------------
  // A tenant change is announced over Redis and applied by each node; traffic
  // waits until every node shows it, so no push-only device meets a join
  // deadline. (That a tenant change is never queued behind another node's
  // plugin compile is checked in cluster.test.mjs.)
  ok(await A.admin('PATCH', '/api/tenants/default', { body: TENANT_PATCH }), 'PATCH /api/tenants/default on A');
  const patchAt = Date.now();
  for (const n of [A, B, C]) {
    await eventually(async () => {
      const cfg = ok(await n.admin('GET', '/api/tenants/default'), `GET tenant on ${n.label}`).config;
      return Object.entries(TENANT_PATCH).every(([k, v]) => cfg[k] === v);
    }, 15000, `node ${n.label} shows the PATCHed tenant config ${JSON.stringify(TENANT_PATCH)}`);
  }
  log(`tenant config ${JSON.stringify(TENANT_PATCH)} seen by A, B and C within ${Date.now() - patchAt} ms of the PATCH answer`);

  // ---- plugin v1 and the chain, active on every node before traffic ---------
  const manifest = (i) => ({ timeout_ms: PLUGIN_TIMEOUT_MS, config: { words: ['darn', `zq${i}x`], mode: 'mask' } });
  const uploadOn = async (node, i) => {
    const up1 = await node.admin('POST', '/api/tenants/default/plugins/word-filter', {
      rawBody: wasm,
      headers: { 'content-type': 'application/wasm', 'x-hookwire-manifest': JSON.stringify(manifest(i)) },
      timeoutMs: 60000,
    });
    const v = ok(up1, `upload word-filter on ${node.label}`).version;
    ok(await node.admin('PUT', '/api/tenants/default/chain', { body: { order: ['word-filter'] }, timeoutMs: 60000 }), `PUT chain on ${node.label}`);
    return v;
  };
  await uploadOn(A, 0);

  // ---- rooms, senders, listeners -------------------------------------------
  const rooms = [rid('room0-'), rid('room1-')];
  const senders = [];
  const listeners = [];
  const mkListener = async (node, room, gen) => {
    const c = track(await loginJoin(node, room, { transports: ['websocket'], label: `listen-${node.label}${gen}-${room}` }));
    const L = { c, node: node.label, gen, room, got: new Map(), since: Date.now() };
    c.socket.on('msg', (m) => {
      if (!m || typeof m.msgId !== 'string') return;
      const prev = L.got.get(m.msgId);
      if (prev) prev.count++;
      else L.got.set(m.msgId, { count: 1, text: m?.data?.text, at: Date.now() });
    });
    listeners.push(L);
    return L;
  };
  const mkSender = async (node, room, gen, ri) => {
    const id = `${node.label}${gen}r${ri}`;
    const c = track(await loginJoin(node, room, { transports: ['websocket'], label: `send-${id}` }));
    const S = {
      id, c, node: node.label, gen, room, next: 0, inFlight: 0, skipped: 0,
      acked: new Map(), // n -> { at, phase }
      refused: new Map(), // reason -> count
      noAck: 0, stopped: false, loop: null,
    };
    senders.push(S);
    return S;
  };
  for (const [ri, room] of rooms.entries()) {
    for (const n of [A, B, C]) {
      await mkListener(n, room, 1);
      await mkSender(n, room, 1, ri);
    }
  }

  // The chain reaches B and C by announcement (each compiles the component):
  // wait until a msg sent on each node comes back masked to the listener
  // there (storage 2: relayed, never stored, so `sync` stays clean).
  const swapT0 = Date.now();
  for (const n of [A, B, C]) {
    const S = senders.find((s) => s.node === n.label && s.room === rooms[0]);
    const L = listeners.find((l) => l.node === n.label && l.room === rooms[0]);
    await eventually(async () => {
      const msgId = rid('probe');
      const r = await S.c.emitAck('msg', { data: { text: 'darn probe' }, storage: 2, msgId }, 5000);
      if (r?.status !== 0) throw new Error(`probe ack ${JSON.stringify(r)}`);
      await eventually(() => L.got.has(msgId), 3000, 'probe relayed');
      return L.got.get(msgId).text === '**** probe';
    }, 60000, `word-filter active on ${n.label}`);
  }
  log(`word-filter v1 active on A, B and C (${Date.now() - swapT0} ms after the chain was set)`);

  // ---- push devices on A and B ---------------------------------------------
  const devices = [];
  for (let i = 0; i < DEVICES; i++) {
    const node = i % 2 ? B : A;
    const uid = rid(`dev${i}-`);
    const c = track(await login(node, { uid, via: 'handshake', query: { deviceId: 'd1' }, transports: ['websocket'], label: `device${i}@${node.label}` }));
    const auth = await c.waitFor('authenticate');
    if (auth?.status !== 0) throw new Error(`device ${i}: handshake auth ${JSON.stringify(auth)}`);
    const D = {
      i, uid, token: c.token, c, node, next: 0,
      sentOk: new Map(), // n -> phase of the /send answer
      sendFailed: new Map(), // n -> reason (outcome unknown: may or may not be queued)
      got: new Map(), // n -> times received live
      acked: new Set(),
    };
    c.socket.on('chaos', (p, ack) => {
      const n = p?.n;
      D.got.set(n, (D.got.get(n) || 0) + 1);
      if (n % 2 === 0 && typeof ack === 'function' && !D.acked.has(n)) {
        D.acked.add(n);
        ack();
      }
    });
    devices.push(D);
  }
  const pushAcksBase = await pushAcks([A, B]);
  log(`${senders.length} senders and ${listeners.length} listeners in ${rooms.length} rooms, ${devices.length} push devices on A and B`);

  // ---- traffic ---------------------------------------------------------------
  let running = true;
  const trafficT0 = Date.now();

  const runSender = (S) => (async () => {
    const start = Date.now();
    for (let k = 0; running && !S.stopped; k++) {
      if (!S.c.connected) break; // its node died
      if (S.inFlight >= MAX_IN_FLIGHT) {
        S.skipped++;
      } else {
        const n = S.next++;
        const msgId = `${S.id}-${n}`;
        S.inFlight++;
        const sentAt = Date.now();
        const sentPhase = phase;
        S.c.socket.timeout(ACK_MS).emit('msg', { data: { text: `darn ${S.id} ${n}`, s: S.id, n }, storage: 0, msgId }, (err, ack) => {
          S.inFlight--;
          if (err) S.noAck++;
          else if (ack?.status === 0) S.acked.set(n, { at: Date.now(), phase, sentAt, sentPhase });
          else {
            const why = JSON.stringify(ack?.data ?? ack).slice(0, 120);
            S.refused.set(why, (S.refused.get(why) || 0) + 1);
            debug(`${S.id} msg ${n} refused: ${why}`);
          }
        });
      }
      const wait = start + (k + 1) * SEND_MS - Date.now();
      await sleep(Math.max(0, wait));
    }
  })();

  const send = (D, n) => D.node.api('POST', '/send', {
    body: { rooms: [`user_${D.uid}`], event: 'chaos', args: [{ d: D.i, n }] },
    keyVia: 'query', query: { site: 'default' }, timeoutMs: 5000,
  });
  const pushLoop = (async () => {
    const start = Date.now();
    for (let k = 0; running; k++) {
      const D = devices[k % devices.length];
      const n = D.next++;
      try {
        const r = await send(D, n);
        if (r.status === 200 && r.json?.meta?.status === 0) D.sentOk.set(n, phase);
        else { D.sendFailed.set(n, `HTTP ${r.status} ${r.text.slice(0, 120)}`); debug(`push ${D.i}/${n} failed: HTTP ${r.status} ${r.text.slice(0, 120)}`); }
      } catch (e) {
        D.sendFailed.set(n, e.message);
        debug(`push ${D.i}/${n} failed: ${e.message}`);
      }
      await sleep(Math.max(0, start + (k + 1) * PUSH_MS - Date.now()));
    }
  })();

  let killCAt = Infinity;

  // Swaps cycle through A, B, C (skipping a node that is down): upload a new
  // version (new config, same component) there and PUT the chain there.
  const swaps = { ok: 0, cut: 0, failed: new Map(), perNode: { A: 0, B: 0, C: 0 }, byPhase: {} };
  const swapLoop = (async () => {
    let i = 1;
    let turn = 0;
    while (running) {
      const began = Date.now();
      const label = ['A', 'B', 'C'].map((_, j) => ['A', 'B', 'C'][(turn + j) % 3]).find((l) => up[l]);
      turn++;
      try {
        const v = await uploadOn(nodes[label], i);
        swaps.ok++;
        swaps.perNode[label]++;
        swaps.byPhase[phase] = (swaps.byPhase[phase] || 0) + 1;
        debug(`swap ${i} on ${label}: version ${v} in ${Date.now() - began} ms`);
      } catch (e) {
        if (label === 'C' && Number.isFinite(killCAt) && killCAt >= began) {
          // C was killed while it handled this one: not a failed swap.
          swaps.cut++;
          debug(`swap ${i} on C cut off by the kill: ${e.message.slice(0, 160)}`);
        } else {
          const why = `${label}: ${e.message.slice(0, 160)}`;
          swaps.failed.set(why, (swaps.failed.get(why) || 0) + 1);
          debug(`swap ${i} failed: ${why}`);
        }
      }
      i++;
      await sleep(Math.max(0, began + SWAP_MS - Date.now()));
    }
  })();

  enter('steady');
  for (const S of senders) S.loop = runSender(S);

  const after = (s) => sleep(s * 1000);

  await after(WAIT.killC);
  up.C = false;
  killCAt = Date.now();
  await C.kill9();
  enter('C down');

  await after(WAIT.restartC);
  await C.start();
  up.C = true;
  enter('C back');
  log('C restarted (same port and data dir); new senders and listeners there');
  for (const [ri, room] of rooms.entries()) {
    await mkListener(C, room, 2);
    const S = await mkSender(C, room, 2, ri);
    S.loop = runSender(S);
  }

  await after(WAIT.killRedis);
  await cl.redis.kill9();
  enter('Redis down');

  await after(WAIT.restartRedis);
  await cl.redis.restart();
  enter('Redis back');

  await after(WAIT.end);
  running = false;
  const trafficEnd = Date.now();
  log('traffic ends');
  await Promise.all([...senders.map((S) => S.loop), pushLoop, swapLoop]);
  await eventually(() => senders.every((S) => S.inFlight === 0), ACK_MS + 5000, 'every msg acked or timed out').catch((e) => fail(e.message));
  const healthT = Date.now();
  await Promise.all([A, B, C].map((n) => eventually(async () => (await n.api('GET', '/healthz', { key: null })).status === 200, 20000, `/healthz 200 on ${n.label}`)))
    .catch((e) => fail(e.message));
  log(`every node healthy ${Date.now() - healthT} ms after the traffic ended`);
  await sleep(1000); // the last relays

  // ---- counts and checks -----------------------------------------------------

  // Connections on A and B: nothing dropped (checked before the script closes any).
  const onAB = [
    ...senders.filter((S) => S.node !== 'C').map((S) => S.c),
    ...listeners.filter((L) => L.node !== 'C').map((L) => L.c),
    ...devices.map((D) => D.c),
  ];
  const dropped = onAB.filter((c) => c.log.some((e) => e.event === 'disconnect' || e.event === 'kickout') || !c.connected);
  const cClients = [...senders, ...listeners].filter((x) => x.node === 'C');
  say(`connections: ${onAB.length} on A/B, dropped ${dropped.length}; on C ${cClients.length} (generation 1 dropped with C: ${cClients.filter((x) => x.gen === 1 && !x.c.connected).length}, generation 2 dropped: ${cClients.filter((x) => x.gen === 2 && !x.c.connected).length})`);
  for (const c of dropped) {
    const evs = c.log.filter((e) => ['disconnect', 'kickout'].includes(e.event)).map((e) => `${e.event} ${JSON.stringify(e.args).slice(0, 80)} at ${((e.at - t0) / 1000).toFixed(1)}s`);
    fail(`[${c.label}] on A/B was dropped: ${evs.join('; ') || 'not connected'}`);
  }
  for (const x of cClients.filter((y) => y.gen === 2 && !y.c.connected)) fail(`[${x.c.label}] on the restarted C was dropped`);

  // msgs per sender and per phase
  let sentTotal = 0;
  let ackedTotal = 0;
  let noAckTotal = 0;
  let skippedTotal = 0;
  const refusedTotal = new Map();
  const ackedBy = {}; // phase -> node -> count
  for (const S of senders) {
    sentTotal += S.next;
    ackedTotal += S.acked.size;
    noAckTotal += S.noAck;
    skippedTotal += S.skipped;
    for (const [why, k] of S.refused) refusedTotal.set(why, (refusedTotal.get(why) || 0) + k);
    for (const { phase: p } of S.acked.values()) {
      ackedBy[p] ??= {};
      ackedBy[p][S.node] = (ackedBy[p][S.node] || 0) + 1;
    }
  }
  say(`msgs: ${sentTotal} sent by ${senders.length} senders, ${ackedTotal} acked, ${noAckTotal} without ack, ${[...refusedTotal.values()].reduce((a, b) => a + b, 0)} refused${refusedTotal.size ? ` (${[...refusedTotal].map(([w, k]) => `${k}× ${w}`).join('; ')})` : ''}, ${skippedTotal} ticks skipped (in-flight cap: store busy)`);
  for (const p of PHASES) {
    const per = ackedBy[p] || {};
    const secs = ((({ steady: phaseStart['C down'], 'C down': phaseStart['C back'], 'C back': phaseStart['Redis down'], 'Redis down': phaseStart['Redis back'], 'Redis back': trafficEnd })[p] - phaseStart[p]) / 1000).toFixed(1);
    say(`  acked in phase "${p}" (${secs} s): A ${per.A || 0}, B ${per.B || 0}, C ${per.C || 0}`);
    for (const n of UP_IN[p]) if (!per[n]) fail(`no msg sent on node ${n} was acked in phase "${p}"`);
  }

  // live delivery to the listener on the sender's node
  let liveExpected = 0;
  let liveMissing = 0;
  let liveUnmasked = 0;
  let liveDupes = 0;
  const cross = {}; // phase -> [received, expected]
  for (const S of senders) {
    const L = listeners.find((l) => l.node === S.node && l.gen === S.gen && l.room === S.room);
    const missing = [];
    for (const [n, { at }] of S.acked) {
      // Generation 1 on C died with kill -9: an ack can be written out before
      // the relay to the neighbour socket, so only msgs acked well before the
      // kill are required there.
      if (S.node === 'C' && S.gen === 1 && at > killCAt - 1000) continue;
      liveExpected++;
      const g = L.got.get(`${S.id}-${n}`);
      if (!g) missing.push(n);
      else {
        if (g.text !== `**** ${S.id} ${n}`) liveUnmasked++;
        if (g.count > 1) liveDupes++;
      }
    }
    liveMissing += missing.length;
    if (missing.length) fail(`listener ${L.c.label} on ${S.node} missed ${missing.length} acked msgs of ${S.id} (same node) live, e.g. ${missing.slice(0, 8).join(', ')}`);
    // Cross-node relays (a msg is relayed when it arrives, its ack comes
    // after the store write), counted by the time and phase of the send, for
    // msgs sent while the listener was there (C's first listeners until 1 s
    // before the kill, the second ones from their join).
    for (const O of listeners.filter((l) => l.node !== S.node && l.room === S.room)) {
      const until = O.node === 'C' && O.gen === 1 ? killCAt - 1000 : Infinity;
      for (const [n, { sentAt, sentPhase: p }] of S.acked) {
        if (sentAt < O.since + 200 || sentAt > until) continue;
        cross[p] ??= [0, 0];
        cross[p][1]++;
        if (O.got.has(`${S.id}-${n}`)) cross[p][0]++;
      }
    }
  }
  say(`live, same node: ${liveExpected - liveMissing}/${liveExpected} acked msgs received, ${liveUnmasked} not masked, ${liveDupes} received twice`);
  say(`live, other nodes, by phase of the send (informative: pub/sub keeps nothing for a node cut off from Redis): ${PHASES.map((p) => `${p} ${(cross[p] || [0, 0]).join('/')}`).join(', ')}`);
  if (liveUnmasked) fail(`${liveUnmasked} msgs reached a listener without the word filter applied`);
  if (liveDupes) fail(`${liveDupes} msgs reached a same-node listener twice`);

  // sync through A
  let stored = 0;
  let syncPages = 0;
  let syncMissing = 0;
  let syncDupes = 0;
  let syncOrder = 0;
  let syncUnknown = 0;
  let syncUnmasked = 0;
  let storedUnacked = 0;
  const syncT = Date.now();
  for (const room of rooms) {
    const reader = track(await loginJoin(A, room, { transports: ['websocket'], label: `sync-reader@A-${room}` }));
    const { msgs, pages } = await syncAll(reader);
    syncPages += pages.length;
    stored += msgs.length;
    const seen = new Map();
    const lastN = new Map();
    for (const m of msgs) {
      const id = m.msgId;
      seen.set(id, (seen.get(id) || 0) + 1);
      const sid = m?.data?.s;
      const S = senders.find((x) => x.id === sid && x.room === room);
      if (!S || `${sid}-${m.data.n}` !== id) { syncUnknown++; continue; }
      if (m.data.text !== `**** ${sid} ${m.data.n}`) syncUnmasked++;
      if (lastN.has(sid) && m.data.n <= lastN.get(sid)) syncOrder++;
      lastN.set(sid, m.data.n);
      if (!S.acked.has(m.data.n)) storedUnacked++;
    }
    for (const [id, k] of seen) if (k > 1) syncDupes++;
    for (const S of senders.filter((x) => x.room === room)) {
      const missing = [...S.acked.keys()].filter((n) => !seen.has(`${S.id}-${n}`));
      syncMissing += missing.length;
      if (missing.length) {
        const phases = [...new Set(missing.map((n) => S.acked.get(n).phase))].join(', ');
        fail(`${missing.length} acked msgs of ${S.id} are not in sync (acked in phase ${phases}), e.g. ${missing.slice(0, 8).join(', ')}`);
      }
    }
  }
  say(`sync via A: ${stored} stored msgs in ${syncPages} pages (${Date.now() - syncT} ms), acked missing ${syncMissing}, stored twice ${syncDupes}, out of sender order ${syncOrder}, unknown ${syncUnknown}, not masked ${syncUnmasked}, stored without an ack ${storedUnacked} (allowed)`);
  if (syncDupes) fail(`${syncDupes} msgIds are stored more than once`);
  if (syncOrder) fail(`${syncOrder} stored msgs come before an earlier msg of the same sender`);
  if (syncUnknown) fail(`${syncUnknown} stored msgs were never sent by this run`);
  if (syncUnmasked) fail(`${syncUnmasked} stored msgs were stored without the word filter applied`);

  // plugin swaps
  const failedSwaps = [...swaps.failed.values()].reduce((a, b) => a + b, 0);
  say(`plugin swaps: ${swaps.ok} ok (A ${swaps.perNode.A}, B ${swaps.perNode.B}, C ${swaps.perNode.C}; by phase ${JSON.stringify(swaps.byPhase)}), ${swaps.cut} cut off by the kill of C, ${failedSwaps} failed${failedSwaps ? `: ${[...swaps.failed].map(([w, k]) => `${k}× ${w}`).join('; ')}` : ''}`);
  if (swaps.ok < SECONDS / 3) fail(`only ${swaps.ok} plugin swaps succeeded, expected at least ${Math.ceil(SECONDS / 3)}`);

  // pushes
  const pushSent = devices.reduce((a, D) => a + D.sentOk.size, 0);
  const pushFailed = devices.reduce((a, D) => a + D.sendFailed.size, 0);
  const pushLive = devices.reduce((a, D) => a + D.got.size, 0);
  const pushLiveDupes = devices.reduce((a, D) => a + [...D.got.values()].filter((k) => k > 1).length, 0);
  const pushAcked = devices.reduce((a, D) => a + D.acked.size, 0);
  let acksHandled = await pushAcks([A, B]) - pushAcksBase;
  if (acksHandled < pushAcked) {
    acksHandled = await eventually(async () => {
      const k = await pushAcks([A, B]) - pushAcksBase;
      return k >= pushAcked ? k : 0;
    }, 20000, `${pushAcked} push acks handled on A and B`).catch(async (e) => {
      const k = await pushAcks([A, B]) - pushAcksBase;
      fail(`${e.message}: only ${k} handled`);
      return k;
    });
  }
  const pushPhases = PHASES.map((p) => {
    let sent = 0;
    let live = 0;
    for (const D of devices) for (const [n, q] of D.sentOk) if (q === p) { sent++; if (D.got.has(n)) live++; }
    return `${p} ${live}/${sent}`;
  });
  say(`pushes: ${pushSent} sent (/send ok), ${pushFailed} /send failed (outcome unknown)${pushFailed ? ` [${[...new Set(devices.flatMap((D) => [...D.sendFailed.values()]))].slice(0, 3).join(' | ')}]` : ''}, ${pushLive} received live (${pushLiveDupes} twice), ${pushAcked} acked by devices, ${acksHandled} acks handled by A+B`);
  say(`  pushes received live / sent, by phase: ${pushPhases.join(', ')}`);

  // Reconnect every device (same uid, token, deviceId, node): what it did not
  // ack must be in its `_batch`; what it acked must not.
  closeAll(devices.map((D) => D.c));
  await sleep(500);
  let batchEvents = 0;
  let batchMissing = 0;
  let batchAckedBack = 0;
  let batchUnknown = 0;
  let batchFailedSend = 0;
  let batchOrder = 0;
  await Promise.all(devices.map(async (D) => {
    const again = track(await login(D.node, { uid: D.uid, token: D.token, via: 'handshake', query: { deviceId: 'd1' }, transports: ['websocket'], label: `device${D.i} again@${D.node.label}` }));
    const auth = await again.waitFor('authenticate');
    if (auth?.status !== 0) { fail(`device ${D.i} reconnect: ${JSON.stringify(auth)}`); return; }
    const expected = [...D.sentOk.keys()].filter((n) => !D.acked.has(n));
    let events = [];
    try {
      const e = await again.waitForEntry('_batch', expected.length ? 15000 : 2000, (ev) => Array.isArray(ev) && ev.length > 0);
      events = e.args[0];
    } catch { /* nothing pending */ }
    batchEvents += events.length;
    const ns = events.map((ev) => (ev[0] === 'chaos' && ev[1]?.d === D.i ? ev[1].n : undefined));
    const inBatch = new Set(ns);
    for (let k = 1; k < ns.length; k++) if (!(ns[k] > ns[k - 1])) batchOrder++;
    const missing = expected.filter((n) => !inBatch.has(n));
    const back = ns.filter((n) => D.acked.has(n));
    const unknown = ns.filter((n) => n === undefined || (!D.sentOk.has(n) && !D.sendFailed.has(n)));
    batchFailedSend += ns.filter((n) => D.sendFailed.has(n)).length;
    batchMissing += missing.length;
    batchAckedBack += back.length;
    batchUnknown += unknown.length;
    if (missing.length) {
      const ph = [...new Set(missing.map((n) => D.sentOk.get(n)))].join(', ');
      fail(`device ${D.i}@${D.node.label}: ${missing.length} unacked pushes are not queued any more (sent in phase ${ph}), e.g. ${missing.slice(0, 8).join(', ')}`);
    }
    if (back.length) fail(`device ${D.i}@${D.node.label}: ${back.length} acked pushes came back in _batch, e.g. ${back.slice(0, 8).join(', ')}`);
    if (unknown.length) fail(`device ${D.i}@${D.node.label}: ${unknown.length} _batch entries this run never sent: ${JSON.stringify(events.filter((_, k) => unknown.includes(ns[k]))).slice(0, 200)}`);
  }));
  const expectedQueued = devices.reduce((a, D) => a + [...D.sentOk.keys()].filter((n) => !D.acked.has(n)).length, 0);
  say(`push queues after reconnect: ${batchEvents} in _batch, ${expectedQueued} expected (sent, not acked), missing ${batchMissing}, acked ones back ${batchAckedBack}, unknown ${batchUnknown}, of failed sends ${batchFailedSend} (allowed), out of order ${batchOrder}`);
  if (batchOrder) fail(`${batchOrder} _batch entries are out of send order`);

  say(`traffic time: ${((trafficEnd - trafficT0) / 1000).toFixed(1)} s`);
}

let code = 0;
try {
  await main();
} catch (e) {
  violations.push(`aborted: ${e.stack || e.message}`);
}
console.log('\n==== chaos counts ====');
for (const line of report) console.log(line);
console.log(`run time: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
if (violations.length) {
  code = 1;
  console.log(`\n==== ${violations.length} violation(s) ====`);
  for (const v of violations) console.log(`FAIL: ${v}`);
  if (cl) {
    for (const n of cl.nodes) console.log(`\n---- last log lines of node ${n.label} ----\n${n.tail(15)}`);
  }
} else {
  console.log('\nchaos run passed');
}
closeAll(everyClient);
await cl?.destroy().catch(() => {});
clearTimeout(watchdog);
process.exit(code);
