// The admin console at /console in a real browser (Chromium through
// playwright-core) against a real server: sign-in and refusal, live overview,
// tenants (create, field error, key rotation), plugins (drag-and-drop upload,
// chain reorder, playground, rollback), rooms (the live list, a room's
// members, kick, live tap, stored messages), plugin cost, and a tenant key's
// narrower view. Any page error or console error fails the test it happens in. Each
// page is saved at desktop and phone width under tests/js/artifacts/console/.
//
// Without Chromium or the hookwire binary the tests fail and say how to get
// them; HOOKWIRE_ALLOW_SKIP=1 skips them instead.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  BIN, REPO_ROOT, builtPlugin, closeAll, eventually, login, loginJoin, ok, rid, sleep, startServer,
} from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO_ROOT, 'tests/js/artifacts/console');
const missing = [
  !existsSync(CHROMIUM) && `Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`,
  !existsSync(BIN) && `hookwire binary not found at ${BIN}: cargo build -p hookwire (or set HOOKWIRE_BIN)`,
].filter(Boolean).join('; ');
const skip = missing && process.env.HOOKWIRE_ALLOW_SKIP === '1' ? `${missing} (HOOKWIRE_ALLOW_SKIP=1)` : false;

const T = { timeout: 120000 };

/** Opens the live tap of `roomId` from outside the page; `close()` ends it. */
async function openTap(srv, roomId) {
  const ctrl = new AbortController();
  const u = new URL('/admin/monitor/tap', srv.url);
  u.searchParams.set('roomId', roomId);
  const res = await fetch(u, { headers: { authorization: `Bearer ${srv.adminKey}` }, signal: ctrl.signal });
  if (!res.ok) {
    const text = await res.text();
    return { res, text, close: async () => {} };
  }
  const done = (async () => {
    try {
      for await (const _ of res.body) { /* drained */ }
    } catch (e) {
      if (e.name !== 'AbortError') throw e;
    }
  })();
  return { res, close: async () => { ctrl.abort(); await done; } };
}
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

async function loadChromium() {
  let mod;
  try {
    mod = await import('playwright-core');
  } catch {
    const req = createRequire(path.join(REPO_ROOT, 'tests/js/package.json'));
    mod = await import(pathToFileURL(req.resolve('playwright-core')).href);
  }
  return mod.chromium ?? mod.default.chromium;
}

describe('admin console', { skip }, () => {
  let srv, browser, profile, page, wasm;
  /** Page errors and console errors since the current test began. */
  let problems = [];
  /**
   * Refusals the current test provokes on purpose: Chromium logs every
   * 4xx answer as a console error, and these are the ones the page is
   * expected to explain to the user instead.
   */
  let expectedRefusals = 0;
  const clients = [];

  before(async () => {
    if (missing) throw new Error(`the console test cannot run: ${missing}. Set HOOKWIRE_ALLOW_SKIP=1 to skip it instead.`);
    wasm = builtPlugin('word-filter');
    srv = await startServer();
    await mkdir(ARTIFACTS, { recursive: true });
    const chromium = await loadChromium();
    profile = await mkdtemp(path.join(tmpdir(), 'hookwire-console-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: DESKTOP,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = browser.pages()[0] ?? await browser.newPage();
    page.setDefaultTimeout(20000);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      if (expectedRefusals > 0 && /Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) {
        expectedRefusals--;
        return;
      }
      problems.push(`console error: ${m.text()} (${m.location()?.url ?? ''})`);
    });
  });

  after(async () => {
    closeAll(...clients);
    await browser?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await srv?.destroy();
  });

  beforeEach(() => { problems = []; expectedRefusals = 0; });
  afterEach(() => {
    assert.deepEqual(problems, [], `the page reported errors:\n${problems.join('\n')}`);
  });

  /** Visible controls without an accessible name (nothing a screen reader could call them). */
  const unnamedControls = () => page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button, [role=button], a[href]')]
    .filter((e) => e.offsetParent !== null || e.getClientRects().length)
    .filter((e) => !(e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || e.labels?.length || e.textContent.trim()))
    .map((e) => e.outerHTML.slice(0, 120)));

  /** Screenshots of the page as it is, at desktop and phone width; checks it on the way. */
  async function shoot(name) {
    assert.deepEqual(await unnamedControls(), [], `${name}: controls without a name`);
    await page.setViewportSize(DESKTOP);
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}-desktop.png`), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}-phone.png`), fullPage: true });
    // Nothing may stick out sideways on a phone but what scrolls in its own box.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `${name}: the page is ${overflow} px wider than a phone's viewport`);
    await page.setViewportSize(DESKTOP);
  }

  const text = (sel) => page.locator(sel).innerText();

  async function signIn(key, tenant) {
    await page.goto(`${srv.url}/console`);
    if (await page.locator('#signout').isVisible()) await page.click('#signout');
    if (tenant) {
      await page.check('#signin-kind-tenant');
      await page.fill('#signin-tenant', tenant);
    } else {
      await page.check('#signin-kind-admin');
    }
    await page.fill('#signin-key', key);
    await page.press('#signin-key', 'Enter');
  }

  test('served with its content types and no-cache', T, async () => {
    for (const [p, type] of [['/console', 'text/html'], ['/console/', 'text/html'],
      ['/console/console.js', 'application/javascript'], ['/console/console.css', 'text/css']]) {
      const r = await fetch(srv.url + p);
      assert.equal(r.status, 200, p);
      assert.match(r.headers.get('content-type'), new RegExp(`^${type}`), p);
      assert.equal(r.headers.get('cache-control'), 'no-cache', p);
    }
  });

  test('a wrong key is refused with a clear message, and nothing is stored', T, async () => {
    expectedRefusals = 1;
    await signIn('not-the-admin-key');
    await page.locator('#signin-error').waitFor({ state: 'visible' });
    assert.match(await text('#signin-error'), /refused.*not the admin key/i);
    assert.equal(await page.locator('#nav').isVisible(), false, 'no navigation before sign-in');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept');
    assert.equal(await page.getAttribute('#signin-key', 'aria-invalid'), 'true');

    expectedRefusals = 1;
    await signIn(srv.apiKey, 'no-such-tenant');
    await page.locator('#signin-error').waitFor({ state: 'visible' });
    assert.match(await text('#signin-error'), /not an API key of tenant "no-such-tenant"/);
    await shoot('signin-refused');
  });

  test('sign in as admin: the key is in sessionStorage only, never in the URL', T, async () => {
    await signIn(srv.adminKey);
    await page.locator('#view-overview').waitFor({ state: 'visible' });
    assert.equal(await text('#who'), 'admin');
    assert.ok(!page.url().includes(srv.adminKey), 'the key is not in the URL');
    const stored = await page.evaluate(() => JSON.stringify(sessionStorage));
    assert.ok(stored.includes(srv.adminKey), 'the key is in sessionStorage');
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
    assert.ok(await page.locator('#nav a[data-view=tenants]').isVisible(), 'an admin sees Tenants');
    // A reload keeps the session (same tab).
    await page.reload();
    await page.locator('#view-overview').waitFor({ state: 'visible' });
  });

  /** Presses Tab until the focused element matches `want` (a description of it); fails after `max` presses. */
  async function tabTo(want, max = 40) {
    for (let i = 0; i < max; i++) {
      await page.keyboard.press('Tab');
      const here = await page.evaluate(() => {
        const e = document.activeElement;
        return { id: e?.id ?? '', text: (e?.textContent ?? '').trim(), tag: e?.tagName ?? '' };
      });
      if (want(here)) return here;
    }
    throw new Error(`Tab did not reach the element within ${max} presses`);
  }

  test('from the keyboard alone: sign-in, every section, and back', T, async () => {
    await page.click('#signout');
    await page.locator('#view-signin').waitFor({ state: 'visible' });
    // The key field has the focus on arrival.
    assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-key');
    await page.keyboard.type(srv.adminKey);
    await page.keyboard.press('Enter');
    await page.locator('#view-overview').waitFor({ state: 'visible' });
    for (const section of ['Tenants', 'Plugins', 'Rooms', 'Cost', 'Overview']) {
      await tabTo((e) => e.tag === 'A' && e.text === section);
      await page.keyboard.press('Enter');
      await page.locator(`#view-${section.toLowerCase()}`).waitFor({ state: 'visible' });
      // The new page's heading has the focus, so a screen reader starts there.
      assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1', `${section}: focus on the heading`);
    }
  });

  test('overview shows live connections, rooms and message rates', T, async () => {
    const room = rid('ov');
    const a = await loginJoin(srv, room, { label: 'ov-a' });
    const b = await loginJoin(srv, room, { label: 'ov-b' });
    clients.push(a, b);
    await page.goto(`${srv.url}/console#overview`);
    await page.locator('#view-overview').waitFor({ state: 'visible' });
    await eventually(async () => (await text('#ov-health')) === 'ok', 10000, 'health ok');
    await eventually(async () => Number(await text('#ov-connections')) >= 2, 15000, 'connections tile shows both sockets');
    await eventually(async () => Number(await text('#ov-rooms')) >= 1, 15000, 'rooms tile counts the room');
    // Traffic while the page polls: the rate between two polls is above zero.
    let stop = false;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        await a.emitAck('msg', { data: `m${i}`, storage: 0, msgId: `ov${i}` });
        await sleep(50);
      }
    })();
    try {
      await eventually(async () => Number((await text('#ov-in')).replace(/,/g, '')) > 0, 20000, 'messages in /s above 0');
      await eventually(async () => Number((await text('#ov-out')).replace(/,/g, '')) > 0, 20000, 'messages out /s above 0');
      const before = await text('#ov-updated');
      await eventually(async () => (await text('#ov-updated')) !== before, 10000, 'the overview updates without a reload');
    } finally {
      stop = true;
      await traffic;
    }
    assert.match(await text('#ov-node'), /embedded: ok/);
    assert.match(await text('#ov-tenants'), /default/);
    // One node without Redis: itself, alive, with both sockets.
    await eventually(async () => /this-node \(this node\)\s*alive/.test(await text('#ov-nodes')), 10000, 'the nodes card lists this node, alive');
    assert.match(await text('#ov-nodes'), /ago\s*[2-9]/, 'the node holds the two sockets');
    await shoot('overview');
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: path.join(ARTIFACTS, 'overview-dark.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });
  });

  const tenant = rid('t');
  let tenantKey;

  test('create a tenant: its key is shown once', T, async () => {
    await page.click('#nav a[data-view=tenants]');
    await page.locator('#view-tenants').waitFor({ state: 'visible' });
    await page.fill('#tc-name', tenant);
    await page.press('#tc-name', 'Enter');
    await page.locator('#key-reveal').waitFor({ state: 'visible' });
    tenantKey = await text('#key-reveal-value');
    assert.ok(tenantKey.length >= 16, 'a key is shown');
    assert.equal(await text('#key-reveal-tenant'), tenant);
    // It is a working key of that tenant.
    ok(await srv.api('GET', '/admin/monitor/stat', { tenant, key: tenantKey }), 'stat with the new key');
    await page.locator(`#tenant-list tr[data-tenant="${tenant}"]`).waitFor();
    await shoot('tenants');
    await page.click('#key-reveal-done');
    assert.equal(await page.locator('#key-reveal').isVisible(), false);
    assert.equal(await text('#key-reveal-value'), '', 'the key is gone from the page once dismissed');

    // A name the server refuses shows its message.
    expectedRefusals = 1;
    await page.fill('#tc-name', 'Not A Name');
    await page.press('#tc-name', 'Enter');
    await page.locator('#tc-error').waitFor({ state: 'visible' });
    assert.match(await text('#tc-error'), /name must be/);
  });

  test('edit a tenant\'s config: the server\'s validation error is shown next to its field', T, async () => {
    await page.click(`#tenant-list tr[data-tenant="${tenant}"] button:has-text("Edit")`);
    await page.locator('#tenant-edit').waitFor({ state: 'visible' });
    expectedRefusals = 1;
    await page.fill('#cfg-sync_page_size', '0');
    await page.click('#te-form button[type=submit]');
    const fieldErr = page.locator('#cfg-err-sync_page_size');
    await fieldErr.waitFor({ state: 'visible' });
    assert.match(await fieldErr.innerText(), /sync_page_size must be 1\.\.=/);
    assert.equal(await page.getAttribute('#cfg-sync_page_size', 'aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'cfg-sync_page_size', 'focus moves to the field');
    assert.equal(await page.locator('#te-error').isVisible(), false, 'the error is at the field, not at the top');
    // Only that field shows it.
    assert.equal(await page.locator('.field-error:visible').count(), 1);
    await shoot('tenant-field-error');

    // A wrong type (serde names no field): with one field changed, it is that one.
    expectedRefusals = 1;
    await page.fill('#cfg-sync_page_size', 'many');
    await page.click('#te-form button[type=submit]');
    await eventually(async () => /invalid/.test(await fieldErr.innerText()), 10000, 'type error at its field');

    // A valid change is saved.
    await page.fill('#cfg-sync_page_size', '50');
    await page.fill('#cfg-admin_uids', 'alice\nbob');
    await page.click('#te-form button[type=submit]');
    await eventually(async () => {
      const t = ok(await srv.admin('GET', `/api/tenants/${tenant}`), 'show tenant');
      return t.config.sync_page_size === 50 && t.config.admin_uids.join() === 'alice,bob';
    }, 10000, 'config saved');
    assert.equal(await page.locator('.field-error:visible').count(), 0, 'errors cleared');
  });

  test('rotate a tenant\'s key: the new key is shown once and the old one stops working', T, async () => {
    await page.click('#te-rotate');
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    await page.locator('#key-reveal').waitFor({ state: 'visible' });
    const fresh = await text('#key-reveal-value');
    assert.notEqual(fresh, tenantKey);
    assert.equal((await srv.api('GET', '/admin/monitor/stat', { tenant, key: tenantKey })).status, 401, 'the old key is refused');
    ok(await srv.api('GET', '/admin/monitor/stat', { tenant, key: fresh }), 'the new key works');
    tenantKey = fresh;
    await shoot('tenant-rotated');
    await page.click('#key-reveal-done');
  });

  test('upload the word-filter plugin by drag and drop and by file input; a bad file shows the server\'s message', T, async () => {
    await page.goto(`${srv.url}/console#plugins/${tenant}`);
    await page.locator('#view-plugins').waitFor({ state: 'visible' });
    await eventually(async () => (await page.inputValue('#pl-tenant')) === tenant, 10000, 'the tenant of the URL is picked');

    // Not a component: the server says why.
    expectedRefusals = 1;
    await page.setInputFiles('#pl-file', { name: 'junk.wasm', mimeType: 'application/wasm', buffer: Buffer.from('this is not wasm') });
    await page.click('#pl-upload-submit');
    await page.locator('#pl-upload-error').waitFor({ state: 'visible' });
    assert.match(await text('#pl-upload-error'), /wasm|component/i);
    await page.fill('#pl-name', '');

    // Dropped onto the drop zone, with a manifest.
    const dt = await page.evaluateHandle((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const d = new DataTransfer();
      d.items.add(new File([bytes], 'word_filter.wasm', { type: 'application/wasm' }));
      return d;
    }, wasm.toString('base64'));
    await page.dispatchEvent('#pl-drop', 'drop', { dataTransfer: dt });
    assert.equal(await page.inputValue('#pl-name'), 'word_filter', 'the name follows the file');
    await page.fill('#pl-name', 'word-filter');
    await page.fill('#pl-manifest', JSON.stringify({ timeout_ms: 500, config: { words: ['darn'], mode: 'drop' } }));
    await page.click('#pl-upload-submit');
    await page.locator('#pl-chain li[data-name="word-filter"]').waitFor();

    // The same component under another name, from the keyboard: Enter on the drop zone opens the file picker.
    const chooser = page.waitForEvent('filechooser');
    await page.focus('#pl-drop');
    await page.keyboard.press('Enter');
    await (await chooser).setFiles({ name: 'masker.wasm', mimeType: 'application/wasm', buffer: wasm });
    assert.equal(await page.inputValue('#pl-name'), 'masker');
    await page.fill('#pl-manifest', JSON.stringify({ timeout_ms: 500, config: { words: ['heck'], mode: 'mask' } }));
    await page.click('#pl-upload-submit');
    await page.locator('#pl-chain li[data-name="masker"]').waitFor();
    const listing = ok(await srv.admin('GET', `/api/tenants/${tenant}/plugins`), 'list');
    assert.deepEqual(listing.chain.map((e) => e.name), ['word-filter', 'masker']);
  });

  const chainOrder = async () => ok(await srv.admin('GET', `/api/tenants/${tenant}/plugins`), 'list').chain.map((e) => e.name);
  const pageOrder = () => page.locator('#pl-chain li').evaluateAll((lis) => lis.map((li) => li.dataset.name));

  test('reorder the chain with the keyboard and by dragging', T, async () => {
    // Keyboard: focus "move masker up" and press Enter.
    await page.focus('#pl-chain button[aria-label="Move masker up"]');
    await page.keyboard.press('Enter');
    await eventually(async () => (await chainOrder()).join() === 'masker,word-filter', 10000, 'stored order after keyboard move');
    await eventually(async () => (await pageOrder()).join() === 'masker,word-filter', 10000, 'shown order after keyboard move');
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Move masker down', 'focus stays on the moved plugin');

    // Drag: word-filter onto masker puts it first again.
    await page.dragAndDrop('#pl-chain li[data-name="word-filter"]', '#pl-chain li[data-name="masker"]');
    await eventually(async () => (await chainOrder()).join() === 'word-filter,masker', 10000, 'stored order after drag');
    await eventually(async () => (await pageOrder()).join() === 'word-filter,masker', 10000, 'shown order after drag');
    await shoot('plugins');
  });

  test('playground: a dry run shows verdict, time and logs of the chosen version', T, async () => {
    await page.selectOption('#pg-plugin', 'word-filter');
    await page.selectOption('#pg-hook', 'on-msg');
    await page.fill('#pg-input', JSON.stringify({ room: 'r1', msg: { text: 'darn it' } }));
    await page.click('#pg-run');
    await page.locator('#pg-result').waitFor({ state: 'visible' });
    await eventually(async () => /blocked word/.test(await text('#pg-verdict')), 10000, 'drop verdict');
    assert.match(await text('#pg-outcome'), /^ok \(v1, on-msg\)/);
    assert.match(await text('#pg-time'), /\d+\.\d\d ms/);
    assert.equal(await text('#pg-logs'), '(nothing logged)');

    // Invalid JSON is caught before it is sent.
    await page.fill('#pg-input', '{nope');
    await page.click('#pg-run');
    await page.locator('#pg-error').waitFor({ state: 'visible' });
    assert.match(await text('#pg-error'), /not valid JSON/);
    await page.fill('#pg-input', JSON.stringify({ room: 'r1', msg: { text: 'darn it' } }));
    await page.click('#pg-run');
    await eventually(async () => !(await page.locator('#pg-error').isVisible()), 10000, 'error cleared');

    // A config the plugin cannot use: it says so in its log, and the playground shows the line.
    await page.locator('textarea#pl-cfg-masker').fill(JSON.stringify({ timeout_ms: 500, config: { words: 'heck', mode: 'mask' } }));
    await page.click('.plugin[data-plugin="masker"] button:has-text("Save manifest")');
    await eventually(async () => /v2/.test(await page.locator('#pl-chain li[data-name="masker"]').innerText()), 10000, 'masker v2');
    await page.selectOption('#pg-plugin', 'masker');
    await page.click('#pg-run');
    await eventually(async () => /\[error\] word-filter: /.test(await text('#pg-logs')), 10000, 'the plugin\'s log line');
    assert.match(await text('#pg-verdict'), /misconfigured/);
    await shoot('playground');
  });

  test('a manifest change makes a new version; roll back to the previous one', T, async () => {
    const cfg = page.locator('textarea#pl-cfg-word-filter');
    await cfg.fill(JSON.stringify({ timeout_ms: 500, config: { words: ['darn'], mode: 'mask' } }, null, 2));
    await page.click('.plugin[data-plugin="word-filter"] button:has-text("Save manifest")');
    await eventually(async () => /v2/.test(await page.locator('#pl-chain li[data-name="word-filter"]').innerText()), 10000, 'v2 in the chain');

    // The playground runs the active v2 (mask) or the chosen v1 (drop).
    await page.selectOption('#pg-plugin', 'word-filter');
    await page.fill('#pg-input', JSON.stringify({ room: 'r1', msg: { text: 'darn it' } }));
    await page.click('#pg-run');
    await eventually(async () => /\*\*\*\* it/.test(await text('#pg-verdict')), 10000, 'v2 masks');
    await page.selectOption('#pg-version', '1');
    await page.click('#pg-run');
    await eventually(async () => /blocked word/.test(await text('#pg-verdict')), 10000, 'v1 drops');

    // A broken manifest: the server's message under the editor.
    expectedRefusals = 1;
    await cfg.fill(JSON.stringify({ timeout_ms: 0 }));
    await page.click('.plugin[data-plugin="word-filter"] button:has-text("Save manifest")');
    const err = page.locator('#pl-cfg-word-filter-err');
    await err.waitFor({ state: 'visible' });
    assert.match(await err.innerText(), /timeout_ms/);

    await page.click('button[aria-label="Roll back word-filter to the previous version"]');
    await eventually(async () => {
      const l = ok(await srv.admin('GET', `/api/tenants/${tenant}/plugins`), 'list');
      return l.chain.find((e) => e.name === 'word-filter')?.version === 1;
    }, 10000, 'word-filter back at v1');
    await eventually(async () => /v1/.test(await page.locator('#pl-chain li[data-name="word-filter"]').innerText()), 10000, 'v1 shown');
    assert.ok(await page.locator('button[aria-label="Roll back word-filter to the previous version"]').isDisabled(), 'no version before v1');
  });

  test('rooms: members, stored messages in pages, system push, clear', T, async () => {
    const room = rid('room');
    const a = await loginJoin(srv, room, { label: 'rm-a', uid: 'alice' });
    const b = await loginJoin(srv, room, { label: 'rm-b', uid: 'bob' });
    clients.push(a, b);
    for (let i = 0; i < 5; i++) assert.equal((await a.emitAck('msg', { data: `stored ${i}`, storage: 1, msgId: `s${i}` })).status, 0);
    // Pages of two: three pages to walk.
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { sync_page_size: 2 } }), 'page size 2');
    await page.goto(`${srv.url}/console#rooms/default`);
    await page.locator('#view-rooms').waitFor({ state: 'visible' });
    // The view is ready once its rooms list has answered.
    await eventually(async () => (await text('#rm-list-updated')) !== '', 15000, 'the rooms list loaded');
    await page.fill('#rm-room', room);
    await page.press('#rm-room', 'Enter');
    await page.locator('#rm-detail').waitFor({ state: 'visible' });
    assert.deepEqual((await page.locator('#rm-users li .uid').allInnerTexts()).sort(), ['alice', 'bob']);
    const shown = () => page.locator('#rm-msgs tbody td.data').allInnerTexts();
    await eventually(async () => (await shown()).length === 2, 10000, 'the first page');
    assert.deepEqual((await shown()).map((d) => JSON.parse(d).data), ['stored 0', 'stored 1']);
    assert.ok(await page.locator('#rm-prev').isDisabled());
    await page.click('#rm-next');
    await eventually(async () => (await shown()).map((d) => JSON.parse(d).data).join() === 'stored 2,stored 3', 10000, 'the second page');
    await page.click('#rm-newest');
    await eventually(async () => (await shown()).map((d) => JSON.parse(d).data).join() === 'stored 4', 10000, 'the newest page');
    assert.match(await text('#rm-page'), /Page 3 \(the newest\)/);
    assert.ok(await page.locator('#rm-next').isDisabled());
    await page.click('#rm-prev');
    await eventually(async () => (await shown()).map((d) => JSON.parse(d).data).join() === 'stored 2,stored 3', 10000, 'back one page');
    await page.click('#rm-first');
    await eventually(async () => (await shown()).map((d) => JSON.parse(d).data).join() === 'stored 0,stored 1', 10000, 'back to the oldest');

    await page.fill('#rm-content', JSON.stringify({ notice: 'maintenance at noon' }));
    await page.click('#rm-push button[type=submit]');
    const sys = await b.waitFor('system');
    assert.deepEqual(sys, { notice: 'maintenance at noon' });
    await shoot('rooms');

    // The room's address opens it again.
    assert.ok(page.url().endsWith(`#rooms/default/${room}`), page.url());
    await page.goto('about:blank');
    await page.goto(`${srv.url}/console#rooms/default/${room}`);
    await eventually(async () => (await page.locator('#rm-msgs tbody tr').count()) === 2, 10000, 'opened from its address');

    await page.click('#rm-clear');
    await page.click('#confirm-ok');
    await eventually(async () => page.locator('#rm-msgs-empty').isVisible(), 10000, 'room cleared');
    ok(await srv.admin('PATCH', '/api/tenants/default', { body: { sync_page_size: 200 } }), 'page size back');
  });

  test('rooms list: the tenant\'s rooms with users and sockets, kept up to date, each opening its room', T, async () => {
    const room = rid('list');
    const a = await loginJoin(srv, room, { label: 'ls-a', uid: rid('la') });
    const b = await loginJoin(srv, room, { label: 'ls-b', uid: rid('lb') });
    clients.push(a, b);
    await page.goto(`${srv.url}/console#rooms/default`);
    await page.locator('#view-rooms').waitFor({ state: 'visible' });
    const row = page.locator(`#rm-list tr[data-room="${room}"]`);
    await row.waitFor();
    assert.deepEqual(await row.locator('td').allInnerTexts(), ['2', '2'], 'users, sockets');
    assert.equal(await page.locator('#rm-list-truncated').isVisible(), false, 'a short list is not said to be cut');
    await shoot('rooms-list');
    // The list follows the room without a reload.
    const left = a.waitDisconnect();
    a.close();
    await left;
    await eventually(async () => (await row.locator('td').allInnerTexts()).join() === '1,1', 10000, 'the list shows one user gone');
    // More rooms than the list shows: it says so.
    const many = [];
    for (let i = 0; i < 4; i++) {
      const c = await login(srv, { label: `ls-many-${i}` });
      clients.push(c);
      for (let j = 0; j < 13; j++) {
        const r = `${room}-${i}-${j}`;
        assert.equal((await c.emitAck('join', { roomId: r })).status, 0, `join ${r}`);
        many.push(r);
      }
    }
    await page.selectOption('#rm-list-limit', '50');
    const cut = page.locator('#rm-list-truncated');
    await cut.waitFor({ state: 'visible' });
    const total = Number(/of ([\d,]+) rooms/.exec(await cut.innerText())[1].replace(/,/g, ''));
    assert.ok(total >= many.length + 1, `the total counts every room (${total})`);
    assert.match(await cut.innerText(), /^Showing the first 50 of [\d,]+ rooms, by name: show more above/);
    assert.equal(await page.locator('#rm-list tbody tr').count(), 50);
    await page.selectOption('#rm-list-limit', '200');
    await cut.waitFor({ state: 'hidden' });
    assert.equal(await page.locator('#rm-list tbody tr').count(), total);
    for (const c of clients.splice(-4)) c.close();

    // From the keyboard: the room's link opens it.
    await page.focus(`#rm-list tr[data-room="${room}"] a`);
    await page.keyboard.press('Enter');
    await page.locator('#rm-detail').waitFor({ state: 'visible' });
    await eventually(async () => (await page.locator('#rm-users li .uid').allInnerTexts()).join() === String(b.uid), 10000, 'the room opened from the list');
    assert.ok(page.url().endsWith(`#rooms/default/${room}`), page.url());
  });

  test('kick a member from the room view: kickout with the reason, disconnected, the list refreshed', T, async () => {
    const room = rid('kick');
    const target = await loginJoin(srv, room, { uid: rid('target'), label: 'kick-target' });
    const stays = await loginJoin(srv, room, { uid: rid('stays'), label: 'kick-stays' });
    clients.push(target, stays);
    await page.goto(`${srv.url}/console#rooms/default/${room}`);
    await page.locator('#rm-detail').waitFor({ state: 'visible' });
    const members = () => page.locator('#rm-users li .uid').allInnerTexts();
    await eventually(async () => (await members()).length === 2, 10000, 'both members listed');
    const kick = `#rm-users button[aria-label="Kick ${target.uid}"]`;

    // Escape cancels: nobody is kicked.
    await page.click(kick);
    await page.locator('#confirm').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement.id), 'confirm-reason', 'the reason field has the focus');
    await page.keyboard.press('Escape');
    await page.locator('#confirm').waitFor({ state: 'hidden' });
    await target.expectNo('kickout', 500);
    assert.ok(target.connected, 'still connected after Escape');

    const gone = target.waitDisconnect();
    await page.click(kick);
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.fill('#confirm-reason', 'spamming the lobby');
    await shoot('room-kick-confirm');
    await page.press('#confirm-reason', 'Enter');
    assert.deepEqual(await target.waitFor('kickout'), { uid: String(target.uid), data: 'spamming the lobby' });
    await gone;
    assert.ok(stays.connected, 'the other member stays');
    await eventually(async () => (await members()).join() === String(stays.uid), 10000, 'the member list refreshed without the kicked user');
    await eventually(async () => (await page.evaluate(() => document.activeElement.id)) === 'rm-detail-title', 5000, 'the focus lands on the members heading');
    assert.match(await text('#flash'), /kicked \(spamming the lobby\)/);
  });

  test('live tap: a room\'s msgs appear as they flow, Stop and leaving the view end the stream, a full node is explained', T, async () => {
    const room = rid('tap');
    const a = await loginJoin(srv, room, { label: 'tap-a', uid: rid('ta') });
    const b = await loginJoin(srv, room, { label: 'tap-b' });
    clients.push(a, b);
    await page.goto(`${srv.url}/console#rooms/default/${room}`);
    await page.locator('#rm-detail').waitFor({ state: 'visible' });
    assert.ok(await page.locator('#rm-tap-card').isVisible(), 'an admin sees the tap');
    const rows = page.locator('#rm-tap tbody tr');
    assert.equal(await rows.count(), 0);
    // From the keyboard.
    await page.focus('#rm-tap-start');
    await page.keyboard.press('Enter');
    await eventually(async () => /^Watching/.test(await text('#rm-tap-status')), 10000, 'the tap is open');
    assert.ok(await page.locator('#rm-tap-start').isDisabled(), 'Start is off while it runs');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'rm-tap-stop', 'the focus moves to Stop');

    assert.equal((await a.emitAck('msg', { data: 'through the tap', storage: 0, msgId: 'tp1' })).status, 0);
    await eventually(async () => (await rows.count()) === 1, 10000, 'the msg appears in the page');
    const [when, who, data] = await rows.first().locator('td').allInnerTexts();
    assert.match(when, /\d/, 'its time');
    assert.equal(who, String(a.uid), 'its sender');
    assert.equal(JSON.parse(data).data, 'through the tap', 'its data');
    assert.equal((await a.emitAck('msg', { data: { n: 2 }, storage: 1, msgId: 'tp2' })).status, 0);
    await eventually(async () => (await rows.count()) === 2, 10000, 'the second msg appears');
    assert.deepEqual(JSON.parse(await rows.first().locator('td.data').innerText()).data, { n: 2 }, 'newest first');
    assert.match(await text('#rm-tap-status'), /2 messages so far/);
    assert.equal(await page.locator('#rm-tap-dropped').isVisible(), false, 'nothing dropped yet');

    // Past 50 a second the rest is counted; the count is reported with a later msg.
    for (let i = 0; i < 120; i++) a.emit('msg', { data: `burst ${i}`, storage: 0, msgId: `tb${i}` });
    await eventually(async () => {
      await a.emitAck('msg', { data: 'after the burst', storage: 0, msgId: rid('ta') });
      return page.locator('#rm-tap-dropped').isVisible();
    }, 15000, 'dropped msgs reported');
    assert.match(await text('#rm-tap-dropped'), /^[1-9][\d,]* messages? dropped/);
    await shoot('room-tap');
    await page.click('#rm-tap-clear');
    assert.equal(await rows.count(), 0, 'Clear empties the list');
    assert.ok(await page.locator('#rm-tap-empty').isVisible());

    // A long flow: the page keeps the newest 200.
    const until = Date.now() + 5500;
    for (let i = 0; Date.now() < until; i++) {
      for (let j = 0; j < 6; j++) a.emit('msg', { data: `flow ${i}.${j}`, storage: 0, msgId: `tf${i}.${j}` });
      await sleep(100);
    }
    await eventually(async () => {
      const m = /: ([\d,]+) messages so far/.exec(await text('#rm-tap-status'));
      return m && Number(m[1].replace(/,/g, '')) > 200;
    }, 15000, 'more than 200 tapped');
    assert.equal(await rows.count(), 200, 'the list keeps 200');
    await page.click('#rm-tap-clear');

    await page.focus('#rm-tap-stop');
    await page.keyboard.press('Enter');
    assert.ok(await page.locator('#rm-tap-start').isEnabled(), 'Start again after Stop');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'rm-tap-start', 'the focus moves back to Start');
    assert.equal((await a.emitAck('msg', { data: 'after stop', storage: 0, msgId: 'tp3' })).status, 0);
    await sleep(700);
    assert.equal(await rows.count(), 0, 'nothing arrives after Stop');

    // Fill the node's taps but one, then start the page's: leaving the view must free its place.
    const held = [];
    try {
      for (let i = 0; i < 15; i++) {
        const t = await openTap(srv, room);
        held.push(t);
        assert.equal(t.res.status, 200, `outside tap ${i}`);
      }
      await page.click('#rm-tap-start');
      await eventually(async () => /^Watching/.test(await text('#rm-tap-status')), 10000, 'the page\'s tap is open');
      const over = await openTap(srv, room);
      assert.equal(over.res.status, 429, 'the page holds the 16th place');
      await over.close();
      await page.click('#nav a[data-view=overview]');
      await page.locator('#view-overview').waitFor({ state: 'visible' });
      await eventually(async () => {
        const t = await openTap(srv, room);
        if (t.res.status !== 200) { await t.close(); return false; }
        held.push(t);
        return true;
      }, 10000, 'leaving the view closed the page\'s tap');

      // All 16 places taken: the page says why it cannot watch.
      await page.goto(`${srv.url}/console#rooms/default/${room}`);
      await page.locator('#rm-detail').waitFor({ state: 'visible' });
      expectedRefusals = 1;
      await page.click('#rm-tap-start');
      await page.locator('#rm-tap-error').waitFor({ state: 'visible' });
      assert.match(await text('#rm-tap-error'), /already serves as many live taps as it allows.*16/);
      assert.ok(await page.locator('#rm-tap-start').isEnabled(), 'Start can be tried again');
    } finally {
      for (const t of held) await t.close();
    }
  });

  test('cost: calls, faults and call time of plugins, charted from successive /metrics polls', T, async () => {
    // A plugin that traps on every msg, failing open so msgs still flow: its faults are charted.
    ok(await srv.admin('POST', `/api/tenants/${tenant}/plugins/trap`, {
      rawBody: builtPlugin('trap'),
      headers: { 'content-type': 'application/wasm', 'x-hookwire-manifest': JSON.stringify({ fail_open: true }) },
    }), 'upload trap');
    // First in the chain, so the others' verdicts cannot keep msgs from it.
    const chain = ok(await srv.admin('GET', `/api/tenants/${tenant}/plugins`), 'list').chain.map((e) => e.name).filter((n) => n !== 'trap');
    ok(await srv.admin('PUT', `/api/tenants/${tenant}/chain`, { body: { order: ['trap', ...chain] } }), 'trap first');
    const room = rid('cost');
    const a = await loginJoin(srv, room, { tenant, key: tenantKey, label: 'cost-a' });
    const b = await loginJoin(srv, room, { tenant, key: tenantKey, label: 'cost-b' });
    clients.push(a, b);
    await page.click('#nav a[data-view=cost]');
    await page.locator('#view-cost').waitFor({ state: 'visible' });
    let stop = false;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        await a.emitAck('msg', { data: { text: `hello ${i}` }, storage: 0, msgId: `cost${i}` });
        await sleep(100);
      }
    })();
    const row = page.locator(`#cs-plugins tr[data-tenant="${tenant}"][data-plugin="word-filter"]`);
    try {
      await row.waitFor();
      const calls = row.locator('td.chart-cell').first();
      await eventually(async () => Number(await calls.getAttribute('data-rate')) > 0, 20000, 'word-filter calls /s above 0');
      await eventually(async () => Number(await calls.locator('svg.spark').getAttribute('data-max')) > 0, 10000, 'a chart of non-zero calls');
      assert.ok(await calls.locator('svg.spark polyline, svg.spark circle').count() > 0, 'the chart draws its line');
      assert.match(await calls.locator('svg.spark').getAttribute('aria-label'), /calls of word-filter .* per second over the last 2 minutes: now \d/);
      const trap = page.locator(`#cs-plugins tr[data-tenant="${tenant}"][data-plugin="trap"] td.chart-cell`);
      await eventually(async () => Number(await trap.nth(1).getAttribute('data-rate')) > 0, 20000, 'the trap plugin\'s faults /s above 0');
      assert.equal(Number(await row.locator('td.chart-cell').nth(1).getAttribute('data-rate')), 0, 'word-filter does not fault');
      // Call time per hook, from the histogram's buckets between polls.
      await eventually(async () => {
        const cells = await page.locator('#cs-latency tbody tr td:nth-of-type(1)').allInnerTexts();
        return cells.some((c) => /\d (µs|ms|s)$/.test(c));
      }, 20000, 'a p50 call time');
      // Let the charts grow a few points for the screenshot.
      await sleep(7000);
    } finally {
      stop = true;
      await traffic;
    }
    await shoot('cost');
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: path.join(ARTIFACTS, 'cost-dark.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });
  });

  test('delete a tenant only after typing its name', T, async () => {
    const doomed = rid('gone');
    ok(await srv.admin('POST', '/api/tenants', { body: { name: doomed } }), 'create');
    await page.goto(`${srv.url}/console#tenants/${doomed}`);
    await page.locator('#tenant-edit').waitFor({ state: 'visible' });
    // Escape cancels: nothing is deleted.
    await page.click('#te-delete');
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.keyboard.press('Escape');
    await page.locator('#confirm').waitFor({ state: 'hidden' });
    ok(await srv.admin('GET', `/api/tenants/${doomed}`), 'still there after Escape');
    await page.click('#te-delete');
    assert.ok(await page.locator('#confirm-ok').isDisabled(), 'confirm waits for the name');
    await page.fill('#confirm-type', doomed.slice(0, -1));
    assert.ok(await page.locator('#confirm-ok').isDisabled(), 'a near miss does not confirm');
    // Typing the name and pressing Enter confirms.
    await page.fill('#confirm-type', doomed);
    await page.press('#confirm-type', 'Enter');
    await page.locator(`#tenant-list tr[data-tenant="${doomed}"]`).waitFor({ state: 'detached' });
    assert.equal((await srv.admin('GET', `/api/tenants/${doomed}`)).status, 404);
  });

  test('signed in with a tenant key: only that tenant\'s views', T, async () => {
    await signIn(tenantKey, tenant);
    await page.locator('#view-overview').waitFor({ state: 'visible' });
    assert.equal(await text('#who'), `tenant ${tenant}`);
    assert.equal(await page.locator('#nav a[data-view=tenants]').isVisible(), false);
    assert.equal(await page.locator('#nav a[data-view=plugins]').isVisible(), false);
    assert.equal(await page.locator('#nav a[data-view=cost]').isVisible(), false);
    await eventually(async () => new RegExp(`Tenant\\s+${tenant}`).test(await text('#ov-node')), 10000, 'the tenant named in the node facts');
    assert.equal(await text('#ov-users-label'), 'Users online', 'the tenant\'s users, not the node\'s tenants');
    assert.equal(await page.locator('#ov-tenants-card').isVisible(), false, 'no table of other tenants');
    // An admin-only view asked for by URL falls back to the overview.
    await page.goto(`${srv.url}/console#tenants`);
    await page.locator('#view-overview').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#view-tenants').isVisible(), false);
    await shoot('tenant-overview');

    await page.click('#nav a[data-view=rooms]');
    await page.locator('#view-rooms').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#rm-tenant').isVisible(), false, 'no tenant picker');
    // Its own rooms are listed; the live tap is not offered.
    const mine = rid('mine');
    const c = await loginJoin(srv, mine, { tenant, key: tenantKey, label: 'tenant-list' });
    clients.push(c);
    await page.locator(`#rm-list tr[data-room="${mine}"]`).waitFor();
    await page.fill('#rm-room', 'lobby');
    await page.press('#rm-room', 'Enter');
    await page.locator('#rm-detail').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#rm-tap-card').isVisible(), false, 'no tap for a tenant key');
    assert.equal(await page.locator('#rm-tap-start').count(), 1);
    await shoot('tenant-rooms');

    await page.click('#signout');
    await page.locator('#view-signin').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'sign-out forgets the key');
    await shoot('signin');
  });

  test('a node with a metrics key: a tenant key is told, asked once, and sees its numbers from stat', T, async () => {
    const guarded = await startServer({ env: { HOOKWIRE_METRICS_KEY: `metrics-${rid('k')}` } });
    try {
      const c = await loginJoin(guarded, rid('g'), { label: 'guarded' });
      clients.push(c);
      expectedRefusals = 1;
      await page.goto(`${guarded.url}/console`);
      await page.check('#signin-kind-tenant');
      await page.fill('#signin-tenant', 'default');
      await page.fill('#signin-key', guarded.apiKey);
      await page.press('#signin-key', 'Enter');
      await page.locator('#ov-metrics-note').waitFor({ state: 'visible' });
      assert.match(await text('#ov-metrics-note'), /metrics key/);
      await eventually(async () => (await text('#ov-connections')) === '1', 15000, 'connections from stat');
      // Further polls do not ask again (each refusal would be a console error).
      const before = await text('#ov-updated');
      await eventually(async () => (await text('#ov-updated')) !== before, 10000, 'a later poll');
      await page.click('#signout');
    } finally {
      await guarded.destroy();
    }
  });
});
