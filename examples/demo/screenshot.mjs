#!/usr/bin/env node
// End-to-end check of the whiteboard demo in a real browser, and a screenshot.
//
//   node examples/demo/screenshot.mjs out.png                       # starts its own hookwire
//   node examples/demo/screenshot.mjs out.png --url http://127.0.0.1:3000 --api-key KEY
//   node examples/demo/screenshot.mjs out.png --url http://127.0.0.1:3001 --url2 http://127.0.0.1:3003 --api-key KEY
//                                   # a cluster: bob's page on another node than alice's
//   node examples/demo/screenshot.mjs out.png --page-from-file   # this directory's index.html
//                                   # instead of the copy built into the server (for page work)
//
// Opens two pages on the same room, draws strokes with the mouse in the first,
// checks that the second drew them live, reloads the second and checks that the
// sync brought the whole drawing back, then saves a PNG of the reloaded page.
// Exits non-zero on any failure.
//
// Needs playwright-core (from this directory or tests/js/node_modules) and
// Chromium (/usr/bin/chromium, or CHROMIUM_PATH). Without --url it runs
// HOOKWIRE_BIN (default <repo>/target/debug/hookwire) on a free port and a temp data dir.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv) {
  const out = { png: null, url: null, url2: null, apiKey: null, pageFromFile: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--url') out.url = argv[++i];
    else if (argv[i] === '--url2') out.url2 = argv[++i];
    else if (argv[i] === '--page-from-file') out.pageFromFile = true;
    else if (argv[i] === '--api-key') out.apiKey = argv[++i];
    else if (!out.png) out.png = argv[i];
  }
  if (!out.png) throw new Error('usage: screenshot.mjs OUT.png [--url URL --api-key KEY] [--page-from-file]');
  if (out.url && !out.apiKey) throw new Error('--url needs --api-key (to create the demo users\' tokens)');
  return out;
}

async function loadChromium() {
  let mod;
  try {
    mod = await import('playwright-core');
  } catch {
    const req = createRequire(path.join(REPO, 'tests/js/package.json'));
    mod = await import(pathToFileURL(req.resolve('playwright-core')).href);
  }
  return mod.chromium ?? mod.default.chromium;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** Start hookwire on a free port; returns { url, apiKey, stop }. */
async function startHookwire() {
  const bin = process.env.HOOKWIRE_BIN || path.join(REPO, 'target/debug/hookwire');
  if (!existsSync(bin)) throw new Error(`no hookwire binary at ${bin} (cargo build -p hookwire, or set HOOKWIRE_BIN)`);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'hookwire-demo-'));
  const port = await freePort();
  const apiKey = `demo-${randomBytes(8).toString('hex')}`;
  let logs = '';
  const proc = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HOOKWIRE_'))), HOOKWIRE_ADMIN_KEY: `admin-${randomBytes(8).toString('hex')}`, HOOKWIRE_DEFAULT_API_KEY: apiKey },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => { logs += d; });
  proc.stderr.on('data', (d) => { logs += d; });
  // stopped from outside (SIGTERM, e.g. a test timeout): do not leave the server behind
  process.on('exit', () => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => { proc.once('exit', r); setTimeout(() => { proc.kill('SIGKILL'); r(); }, 5000); });
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`hookwire exited at startup:\n${logs.slice(-3000)}`);
    try {
      if ((await fetch(`${url}/healthz`)).status === 200) return { url, apiKey, stop };
    } catch { /* not up yet */ }
    await sleep(100);
  }
  await stop();
  throw new Error(`hookwire not healthy after 30 s:\n${logs.slice(-3000)}`);
}

async function api(base, key, method, p, body) {
  const r = await fetch(new URL(p, base), {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await r.json().catch(() => null);
  if (r.status !== 200 || json?.meta?.status !== 0) throw new Error(`${method} ${p}: HTTP ${r.status} ${JSON.stringify(json)}`);
  return json.data;
}

async function token(base, key, uid) {
  const r = await fetch(new URL('/user/refresh_token', base), {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ uid }),
  });
  const j = await r.json().catch(() => null);
  if (j?.meta?.status === 0) return j.data.token;
  return (await api(base, key, 'POST', '/user/create_token', { uid })).token;
}

/** Stored segments in the room, counted through the admin API (paged). */
async function storedCount(base, key, room) {
  let offset = 0, n = 0;
  for (let i = 0; i < 100; i++) {
    const d = await api(base, key, 'GET', `/admin/monitor/room_msgs?roomId=${encodeURIComponent(room)}&offset=${offset}`);
    n += d.msgs.length;
    if (!d.next) return n;
    offset = d.offset;
  }
  return n;
}

const inkPixels = (page) => page.evaluate(() => {
  const c = document.getElementById('board');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
});

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  const chromium = await loadChromium();
  const server = args.url ? { url: args.url, apiKey: args.apiKey, stop: async () => {} } : await startHookwire();
  const profile = await mkdtemp(path.join(tmpdir(), 'hookwire-chromium-'));
  let browser;
  try {
    const room = `board-${randomBytes(4).toString('hex')}`;
    const [ta, tb] = [await token(server.url, server.apiKey, 'alice'), await token(server.url, server.apiKey, 'bob')];
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 900, height: 600 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const open = async (uid, tok, url = server.url) => {
      const page = await browser.newPage();
      page.on('pageerror', (e) => console.error(`[${uid}] page error: ${e.message}`));
      const base = args.pageFromFile ? `${pathToFileURL(path.join(HERE, 'index.html')).href}?server=${encodeURIComponent(url)}&` : `${url}/demo?`;
      await page.goto(`${base}uid=${uid}&token=${encodeURIComponent(tok)}#${room}`);
      await page.waitForFunction(() => window.demo && (window.demo.state === 'synced' || window.demo.state === 'error'), null, { timeout: 60000 });
      const st = await page.evaluate(() => ({ state: window.demo.state, error: window.demo.error }));
      if (st.state !== 'synced') throw new Error(`[${uid}] page did not sync: ${JSON.stringify(st)}`);
      return page;
    };
    const a = await open('alice', ta);
    const b = await open('bob', tb, args.url2 || server.url);
    if (args.url2) console.log(`alice on ${server.url}, bob on ${args.url2}`);

    // draw: three strokes on alice's canvas
    const box = await a.locator('#board').boundingBox();
    const at = (fx, fy) => [box.x + fx * box.width, box.y + fy * box.height];
    const stroke = async (pts, color) => {
      await a.click(`.swatch[data-color=${color}]`);
      await a.mouse.move(...at(...pts[0]));
      await a.mouse.down();
      for (const p of pts.slice(1)) await a.mouse.move(...at(...p), { steps: 4 });
      await a.mouse.up();
    };
    await stroke([[0.1, 0.2], [0.3, 0.8], [0.5, 0.2], [0.7, 0.8], [0.9, 0.2]], 'black');
    await stroke([[0.2, 0.5], [0.8, 0.5]], 'red');
    const spiral = Array.from({ length: 40 }, (_, i) => {
      const t = i / 6;
      return [0.5 + 0.03 * t * Math.cos(t), 0.5 + 0.045 * t * Math.sin(t)];
    });
    await stroke(spiral, 'blue');

    const sent = await a.evaluate(() => window.demo.sent);
    if (sent < 10) throw new Error(`alice sent only ${sent} segments`);
    // (a page built into an older binary has no ack counters: then skip this check)
    await a.waitForFunction((n) => typeof window.demo.stored !== 'number' || window.demo.stored + window.demo.refused >= n, sent, { timeout: 60000 })
      .catch(async () => { throw new Error(`alice's acks: ${JSON.stringify(await a.evaluate(() => ({ stored: window.demo.stored, refused: window.demo.refused })))} of ${sent}`); });
    const refused = await a.evaluate(() => window.demo.refused || 0);
    if (refused) throw new Error(`the server refused ${refused} of ${sent} segments`);
    await b.waitForFunction((n) => window.demo.received >= n, sent, { timeout: 60000 })
      .catch(async () => { throw new Error(`bob got ${await b.evaluate(() => window.demo.received)} of ${sent} live segments`); });
    if ((await inkPixels(b)) === 0) throw new Error('bob\'s canvas is blank after the live segments');
    console.log(`live: alice sent ${sent} segments (all acked: stored), bob drew them`);

    // wait until the log has them all, then reload bob: the sync must redraw everything
    const deadline = Date.now() + 60000;
    let stored = 0;
    while ((stored = await storedCount(server.url, server.apiKey, room)) < sent && Date.now() < deadline) await sleep(100);
    if (stored < sent) throw new Error(`only ${stored} of ${sent} segments stored`);
    await b.reload();
    await b.waitForFunction(() => window.demo && (window.demo.state === 'synced' || window.demo.state === 'error'), null, { timeout: 60000 });
    const after = await b.evaluate(() => ({ state: window.demo.state, synced: window.demo.synced, error: window.demo.error }));
    if (after.state !== 'synced' || after.synced < sent) throw new Error(`after reload bob synced ${JSON.stringify(after)}, expected ${sent} segments`);
    if ((await inkPixels(b)) === 0) throw new Error('bob\'s canvas is blank after the reload');
    console.log(`reload: bob synced ${after.synced} segments`);

    await b.screenshot({ path: args.png });
    console.log(`screenshot: ${args.png}`);
  } finally {
    await browser?.close().catch(() => {});
    await server.stop();
    await rm(profile, { recursive: true, force: true });
  }
}

// SIGTERM: exit through the 'exit' handlers (the server above; Playwright kills its browser)
process.once('SIGTERM', () => process.exit(143));

main().then(() => process.exit(0), (err) => {
  console.error(`demo check failed: ${err.message}`);
  process.exit(1);
});
