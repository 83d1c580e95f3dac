// The /demo whiteboard in a real browser: examples/demo/screenshot.mjs opens two
// pages on one room, draws in one, checks the other drew it live and that a
// reload syncs the drawing, and saves a PNG. Without Chromium or the hookwire
// binary the tests fail and say how to get them; HOOKWIRE_ALLOW_SKIP=1 skips
// them instead.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { BIN, REPO_ROOT } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const missing = [
  !existsSync(CHROMIUM) && `Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`,
  !existsSync(BIN) && `hookwire binary not found at ${BIN}: cargo build -p hookwire (or set HOOKWIRE_BIN)`,
].filter(Boolean).join('; ');
const allowSkip = process.env.HOOKWIRE_ALLOW_SKIP === '1';
const skip = missing && allowSkip ? `${missing} (HOOKWIRE_ALLOW_SKIP=1)` : false;

/** Fails the test when what it needs is missing (and skipping is not allowed). */
function requireTools() {
  if (missing) throw new Error(`the demo test cannot run: ${missing}. Set HOOKWIRE_ALLOW_SKIP=1 to skip it instead.`);
}

async function runScreenshot(t, extraArgs) {
  requireTools();
  const dir = await mkdtemp(path.join(tmpdir(), 'hookwire-demo-test-'));
  const png = process.env.HOOKWIRE_DEMO_PNG || path.join(dir, 'demo.png');
  try {
    const script = path.join(REPO_ROOT, 'examples/demo/screenshot.mjs');
    // t.signal: a test that times out stops the script (and with it its browser and server)
    const child = spawn(process.execPath, [script, png, ...extraArgs], {
      env: { ...process.env, HOOKWIRE_BIN: BIN }, stdio: ['ignore', 'pipe', 'pipe'], signal: t.signal, killSignal: 'SIGTERM',
    });
    child.on('error', () => { /* aborted: the test reports the timeout */ });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const code = await new Promise((r) => child.on('exit', r));
    assert.equal(code, 0, `screenshot.mjs failed:\n${out}`);
    const bytes = await readFile(png);
    assert.ok(bytes.length > 1000, 'PNG has content');
    assert.equal(bytes.subarray(1, 4).toString(), 'PNG');
  } finally {
    if (!process.env.HOOKWIRE_DEMO_PNG) await rm(dir, { recursive: true, force: true });
  }
}

// A real browser drawing ~200 mouse moves: close to 2 minutes on 2 loaded cores.
const DEMO = { timeout: 360000, skip };

test('demo whiteboard served at /demo: live drawing between two pages, sync on reload, screenshot', DEMO, (t) => runScreenshot(t, []));

test('demo whiteboard from examples/demo/index.html (the page as in the repo, even before the server is rebuilt)', DEMO, (t) => runScreenshot(t, ['--page-from-file']));
