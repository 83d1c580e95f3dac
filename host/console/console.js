// hookwire admin console. Talks only to the public HTTP API of the node that
// serves it (docs/console.md). Every value from the server is put on the page
// with textContent, never as HTML: tenant names, room messages and plugin
// logs are written by others.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const SESSION = 'hookwire.console.session';
  const POLL_MS = 3000;
  const HOOK_INPUTS = {
    'on-msg': { room: 'r1', msg: { text: 'hello' } },
    authenticate: { uid: 'u1', token: 'secret', payload: {}, query: '' },
    'on-join': { room: 'r1', dummy: false },
    'storage-mode': { room: 'r1', msg: { text: 'hello' }, proposed: 'insert' },
    'route-push': { rooms: ['user_u1'], event: 'notice', args: [{ text: 'hello' }] },
    describe: {},
  };

  /** One line on each tenant config field (crates/core/src/tenant.rs says more). */
  const FIELD_HELP = {
    force_user_auth: 'Check tokens on authenticate; off accepts any uid (development only).',
    user_room_prefix: 'Every authenticated socket joins <prefix><uid>.',
    auth_timeout_ms: 'Disconnect a socket not authenticated within this time.',
    join_timeout_ms: 'Disconnect a socket in no room this long after authenticating; 0: never.',
    auth_attempts_per_minute: 'authenticate attempts per uid per minute.',
    max_msg_bytes: 'Largest msg payload, in bytes of JSON.',
    max_rooms_per_socket: 'Rooms one socket may be in, besides its user room.',
    max_msgs_per_room: 'Stored messages kept per room; older ones are trimmed.',
    max_connections: 'Sockets of this tenant on one node.',
    sync_page_size: 'Messages per sync reply (1 to 10,000).',
    sync_page_bytes: 'Bytes per sync reply (1 KiB to 16 MiB).',
    device_ttl_secs: 'A device offline longer than this is forgotten with its queue.',
    relay_after_commit: 'Relay a stored msg only once it is durable.',
    max_pending_pushes: 'Pushes queued per device (1 to 100,000).',
    kickout: 'Disconnect older sockets of a uid when it authenticates again.',
    admin_uids: 'Uids whose uid+token may call this tenant\'s admin API.',
    plugin_fail_open: 'Let an operation through when a plugin hook fails.',
    allowed_origins: 'Browser origins allowed to connect (https://app.example.com, or *); empty: any.',
  };

  /** The signed-in session: {key, role: 'admin'|'tenant', tenant}. Tab-scoped on purpose. */
  let session = null;
  let currentView = null;
  let pollTimer = null;
  let viewToken = 0;

  // ---------------------------------------------------------------- API

  class ApiFail extends Error {
    constructor(http, msg, status) {
      super(msg);
      this.http = http;
      this.status = status;
    }
  }

  /** One call with the session's key; resolves `data` of the envelope, throws ApiFail otherwise. */
  async function api(method, path, { body, raw, headers = {}, key } = {}) {
    const h = { ...headers };
    const k = key ?? session?.key;
    if (k) h.authorization = `Bearer ${k}`;
    let payload;
    if (raw !== undefined) payload = raw;
    else if (body !== undefined) {
      payload = JSON.stringify(body);
      h['content-type'] = 'application/json';
    }
    let r;
    try {
      r = await fetch(path, { method, headers: h, body: payload, cache: 'no-store' });
    } catch (e) {
      throw new ApiFail(0, `the server did not answer (${e.message})`);
    }
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not an envelope */ }
    if (json && json.meta && typeof json.meta.status === 'number') {
      if (r.ok && json.meta.status === 0) return json.data;
      throw new ApiFail(r.status, json.meta.msg || `HTTP ${r.status}`, json.meta.status);
    }
    if (r.ok) return json ?? text;
    throw new ApiFail(r.status, text.trim() || `HTTP ${r.status}`);
  }

  const enc = encodeURIComponent;
  const tq = (tenant) => `tenant=${enc(tenant)}`;

  // ---------------------------------------------------------------- helpers

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function showError(node, msg) {
    node.textContent = msg || '';
    node.hidden = !msg;
  }

  let flashTimer = null;
  function flash(msg, bad = false) {
    const f = $('flash');
    f.textContent = msg;
    f.classList.toggle('bad', bad);
    f.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { f.hidden = true; }, 6000);
  }

  const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });
  const fmtNum = (n) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: n < 10 ? 1 : 0 }) : '–');
  const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '–');
  /** `room_msgs` dates in Unix seconds; the rest of the API in milliseconds. */
  const fmtSecs = (s) => (s ? fmtTime(s * 1000) : '–');
  function fmtDuration(secs) {
    const d = Math.floor(secs / 86400), h = Math.floor((secs % 86400) / 3600), m = Math.floor((secs % 3600) / 60);
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${secs % 60} s`;
    return `${secs} s`;
  }
  const fmtBytes = (b) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b} B`);

  /**
   * A modal confirmation; with `word`, the user must type it (deletes); with
   * `reason`, an optional reason field is shown, read from `#confirm-reason`
   * once it resolves. Resolves true/false.
   */
  function confirmAction(text, { title = 'Are you sure?', ok = 'Confirm', word = null, reason = false } = {}) {
    const d = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = ok;
    const typed = $('confirm-type');
    $('confirm-type-wrap').hidden = !word;
    $('confirm-word').textContent = word || '';
    typed.value = '';
    const why = $('confirm-reason');
    $('confirm-reason-wrap').hidden = !reason;
    why.value = '';
    why.onkeydown = (ev) => {
      if (ev.key !== 'Enter') return;
      ev.preventDefault();
      d.close('ok');
    };
    const okBtn = $('confirm-ok');
    okBtn.disabled = !!word;
    typed.oninput = () => { okBtn.disabled = typed.value !== word; };
    // Enter in the field would submit with the form's first button, Cancel.
    typed.onkeydown = (ev) => {
      if (ev.key !== 'Enter') return;
      ev.preventDefault();
      if (typed.value === word) d.close('ok');
    };
    return new Promise((resolve) => {
      d.onclose = () => resolve(d.returnValue === 'ok' && (!word || typed.value === word));
      d.returnValue = 'cancel';
      d.showModal();
      (word ? typed : reason ? why : $('confirm-cancel')).focus();
    });
  }

  // ---------------------------------------------------------------- session

  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION) || 'null');
      if (s && typeof s.key === 'string' && (s.role === 'admin' || s.role === 'tenant')) return s;
    } catch { /* corrupted: sign in again */ }
    return null;
  }

  /** Checks `key` as the chosen kind; throws ApiFail with a message for the user when it is refused. */
  async function identify(kind, key, tenant) {
    if (kind === 'admin') {
      try {
        await api('GET', '/api/tenants', { key });
      } catch (e) {
        if (e.http === 401) throw new ApiFail(401, 'Key refused: this is not the admin key of this node.');
        throw e;
      }
      return { key, role: 'admin', tenant: null };
    }
    try {
      await api('GET', `/admin/monitor/stat?${tq(tenant)}`, { key });
    } catch (e) {
      if (e.http === 401) throw new ApiFail(401, `Key refused: this is not an API key of tenant "${tenant}".`);
      throw e;
    }
    return { key, role: 'tenant', tenant };
  }

  async function signIn(ev) {
    ev.preventDefault();
    const key = $('signin-key').value.trim();
    const kind = $('signin-kind-tenant').checked ? 'tenant' : 'admin';
    const tenant = $('signin-tenant').value.trim() || 'default';
    const err = $('signin-error');
    if (!key) {
      showError(err, 'Enter a key.');
      $('signin-key').setAttribute('aria-invalid', 'true');
      $('signin-key').focus();
      return;
    }
    $('signin-submit').disabled = true;
    showError(err, '');
    try {
      session = await identify(kind, key, tenant);
      sessionStorage.setItem(SESSION, JSON.stringify(session));
      $('signin-key').value = '';
      $('signin-key').removeAttribute('aria-invalid');
      $('flash').hidden = true;
      applySession();
      if (location.hash === '#signin') history.replaceState(null, '', '#overview');
      route(true);
    } catch (e) {
      showError(err, e.message);
      $('signin-key').setAttribute('aria-invalid', 'true');
      $('signin-key').focus();
      $('signin-key').select();
    } finally {
      $('signin-submit').disabled = false;
    }
  }

  function signOut() {
    session = null;
    metricsRefused = null;
    sessionStorage.removeItem(SESSION);
    stopPolling();
    stopTap();
    clearTapList();
    costHistory = [];
    applySession();
    history.replaceState(null, '', '#signin');
    route();
    flash('Signed out.');
  }

  function applySession() {
    const signedIn = !!session;
    $('nav').hidden = !signedIn;
    $('signout').hidden = !signedIn;
    $('who').hidden = !signedIn;
    if (!signedIn) return;
    $('who').textContent = session.role === 'admin' ? 'admin' : `tenant ${session.tenant}`;
    for (const a of document.querySelectorAll('#nav [data-admin]')) a.hidden = session.role !== 'admin';
  }

  /** A refused key mid-session (rotated, or the admin key changed): back to sign-in. */
  function handleFail(e, node) {
    if (e instanceof ApiFail && e.http === 401 && session) {
      signOut();
      showError($('signin-error'), `Signed out: the server refused the key (${e.message}).`);
      return;
    }
    if (node) showError(node, e.message);
    else flash(e.message, true);
  }

  // ---------------------------------------------------------------- routing

  const VIEWS = ['signin', 'overview', 'tenants', 'plugins', 'rooms', 'cost'];
  const ADMIN_ONLY = new Set(['tenants', 'plugins', 'cost']);

  /** `moveFocus`: a navigation, so a screen reader lands on the new page's heading. */
  function route(moveFocus = false) {
    let name, arg, arg2;
    try {
      [name, arg, arg2] = location.hash.replace(/^#/, '').split('/').map(decodeURIComponent);
    } catch {
      // A hand-typed hash with a stray `%`: the overview, as for any unknown page.
    }
    let view = VIEWS.includes(name) ? name : 'overview';
    if (!session) view = 'signin';
    else if (view === 'signin') view = 'overview';
    else if (ADMIN_ONLY.has(view) && session.role !== 'admin') view = 'overview';
    stopPolling();
    stopTap();
    hideKey();
    viewToken++;
    currentView = view;
    for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = `${view === 'signin' ? 'Sign in' : view[0].toUpperCase() + view.slice(1)} · hookwire console`;
    if (view === 'signin') { $('signin-key').focus(); return; }
    if (moveFocus) {
      const h = document.querySelector(`#view-${view} h1`);
      h.setAttribute('tabindex', '-1');
      h.focus();
    }
    const token = viewToken;
    const run = { overview: showOverview, tenants: showTenants, plugins: showPlugins, rooms: showRooms, cost: showCost }[view];
    run(arg, token, arg2).catch((e) => handleFail(e));
  }

  function stopPolling() {
    clearTimeout(pollTimer);
    pollTimer = null;
  }

  // ---------------------------------------------------------------- overview

  /** Samples of the `/metrics` counters, for rates between two polls. */
  let lastSample = null;
  /**
   * The node wants its metrics key and this key is not it: asked once per
   * session, since every refused poll would be one more error in the
   * browser's console.
   */
  let metricsRefused = null;

  /** OpenMetrics text → [{name, labels, value}]. */
  function parseMetrics(text) {
    const out = [];
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[3]) for (const p of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
      out.push({ name: m[1], labels, value: m[4] === '+Inf' ? Infinity : Number(m[4]) });
    }
    return out;
  }

  function sumOf(samples, name) {
    let s = 0;
    for (const x of samples) if (x.name === name) s += x.value;
    return s;
  }

  function byTenant(samples, name) {
    const m = new Map();
    for (const x of samples) if (x.name === name && x.labels.tenant) m.set(x.labels.tenant, (m.get(x.labels.tenant) || 0) + x.value);
    return m;
  }

  function setTile(id, text, cls) {
    const n = $(id);
    n.textContent = text;
    n.classList.remove('status-ok', 'status-bad', 'pending');
    if (cls) n.classList.add(cls);
  }

  async function showOverview(_arg, token) {
    lastSample = null;
    // What an earlier visit (maybe another key's) left must not pass for this one's numbers.
    $('ov-node').replaceChildren();
    for (const id of ['ov-health', 'ov-connections', 'ov-rooms', 'ov-in', 'ov-out', 'ov-users']) setTile(id, '…');
    $('ov-tenants').tBodies[0].replaceChildren();
    $('ov-updated').textContent = '';
    $('ov-tenants-card').hidden = session.role !== 'admin';
    $('ov-nodes-card').hidden = session.role !== 'admin';
    $('ov-nodes').tBodies[0].replaceChildren();
    const tick = async () => {
      try { await pollOverview(); } catch (e) { handleFail(e); }
      if (token === viewToken && session) pollTimer = setTimeout(tick, POLL_MS);
    };
    await tick();
  }

  async function pollOverview() {
    const tenant = session.role === 'tenant' ? session.tenant : null;
    const [health, metricsText, stat, nodes] = await Promise.all([
      fetch('/healthz', { cache: 'no-store' }).then((r) => r.json()).catch((e) => ({ status: 'unreachable', error: e.message })),
      // Without metrics the page still shows health and stat.
      metricsRefused ?? api('GET', '/metrics').catch((e) => {
        if (e.http === 401) metricsRefused = e;
        return e;
      }),
      tenant ? api('GET', `/admin/monitor/stat?${tq(tenant)}`) : null,
      session.role === 'admin' ? api('GET', '/api/cluster/nodes').catch((e) => e) : null,
    ]);
    if (currentView !== 'overview') return;
    const up = health.status === 'ok';
    setTile('ov-health', up ? 'ok' : health.status || 'down', up ? 'status-ok' : 'status-bad');

    const node = $('ov-node');
    node.replaceChildren();
    const fact = (k, v, cls) => node.append(el('dt', { text: k }), el('dd', { text: v, class: cls }));
    if (health.version) fact('Version', health.version);
    if (health.uptime_secs !== undefined) fact('Uptime', fmtDuration(health.uptime_secs));
    if (health.store) fact('Store', `${health.store.kind}: ${health.store.ok ? 'ok' : `down (${health.store.error})`}`, health.store.ok ? 'status-ok' : 'status-bad');
    fact('Redis', health.redis ? (health.redis.ok ? 'ok' : `down (${health.redis.error})`) : 'not configured (single node)', health.redis && !health.redis.ok ? 'status-bad' : undefined);
    if (tenant) fact('Tenant', tenant);

    if (nodes && !(nodes instanceof ApiFail)) {
      const body = $('ov-nodes').tBodies[0];
      body.replaceChildren(...nodes.nodes.map((n) => el('tr', {},
        el('th', { scope: 'row', text: n.self ? `${n.node} (this node)` : n.node }),
        el('td', { text: n.alive ? 'alive' : 'not heard from', class: n.alive ? 'status-ok' : 'status-bad' }),
        el('td', { text: `${fmtDuration(Math.round(n.age_ms / 1000))} ago` }),
        el('td', { text: fmtNum(n.connections) }))));
    } else if (nodes instanceof ApiFail) {
      $('ov-nodes').tBodies[0].replaceChildren(el('tr', {}, el('td', { colspan: 4, class: 'status-bad', text: `The nodes list did not answer: ${nodes.message}` })));
    }

    const note = $('ov-metrics-note');
    if (metricsText instanceof ApiFail) {
      note.hidden = false;
      note.textContent = metricsText.http === 401
        ? 'The node asks for its metrics key at /metrics, which this key is not: message rates are not available.'
        : `/metrics did not answer (${metricsText.message}): message rates are not available.`;
      for (const id of ['ov-connections', 'ov-rooms', 'ov-in', 'ov-out']) setTile(id, '–');
      lastSample = null;
    } else {
      note.hidden = true;
      const samples = parseMetrics(metricsText);
      const now = performance.now();
      const cur = {
        at: now,
        in: byTenant(samples, 'hookwire_messages_in_total'),
        out: byTenant(samples, 'hookwire_messages_out_total'),
      };
      const total = (m) => (tenant ? m.get(tenant) || 0 : [...m.values()].reduce((a, b) => a + b, 0));
      const rate = (kind, t) => {
        if (!lastSample) return NaN;
        const dt = (cur.at - lastSample.at) / 1000;
        const a = t === undefined ? total(cur[kind]) : cur[kind].get(t) || 0;
        const b = t === undefined ? total(lastSample[kind]) : lastSample[kind].get(t) || 0;
        return dt > 0 ? Math.max(0, a - b) / dt : NaN;
      };
      setTile('ov-connections', fmtNum(sumOf(samples, 'hookwire_connections')));
      setTile('ov-rooms', fmtNum(sumOf(samples, 'hookwire_rooms')));
      // A rate needs two polls.
      if (lastSample) {
        setTile('ov-in', fmtNum(rate('in')));
        setTile('ov-out', fmtNum(rate('out')));
      } else {
        setTile('ov-in', 'measuring…', 'pending');
        setTile('ov-out', 'measuring…', 'pending');
      }
      if (session.role === 'admin') {
        const conns = byTenant(samples, 'hookwire_connections');
        const names = [...new Set([...conns.keys(), ...cur.in.keys(), ...cur.out.keys()])].sort();
        const body = $('ov-tenants').tBodies[0];
        body.replaceChildren(...names.map((t) => el('tr', {},
          el('th', { scope: 'row', text: t }),
          el('td', { text: fmtNum(conns.get(t) || 0) }),
          el('td', { text: lastSample ? fmtNum(rate('in', t)) : '…' }),
          el('td', { text: lastSample ? fmtNum(rate('out', t)) : '…' }))));
        if (!names.length) body.append(el('tr', {}, el('td', { colspan: 4, class: 'muted', text: 'No traffic yet.' })));
      }
      lastSample = cur;
    }
    $('ov-users-label').textContent = stat ? 'Users online' : 'Tenants';
    setTile('ov-users', stat ? fmtNum(stat.online_user_count) : fmtNum(health.tenants));
    if (stat) {
      // A tenant's own numbers, from stat: cluster-wide, like its users.
      setTile('ov-connections', fmtNum(stat.online_socket_count));
      setTile('ov-rooms', fmtNum(stat.online_room_count));
    }
    $('ov-updated').textContent = `Last update ${new Date().toLocaleTimeString()}.`;
  }

  // ---------------------------------------------------------------- tenants

  let tenants = [];
  let editing = null;

  async function loadTenants() {
    tenants = await api('GET', '/api/tenants');
    tenants.sort((a, b) => a.name.localeCompare(b.name));
    return tenants;
  }

  async function showTenants(arg) {
    await loadTenants();
    renderTenantList();
    if (arg && tenants.some((t) => t.name === arg)) openTenant(arg);
    else $('tenant-edit').hidden = true;
  }

  function renderTenantList() {
    const body = $('tenant-list').tBodies[0];
    body.replaceChildren(...tenants.map((t) => el('tr', { 'data-tenant': t.name },
      el('th', { scope: 'row' }, el('a', { href: `#tenants/${enc(t.name)}`, text: t.name })),
      el('td', {}, el('code', { text: t.namespace })),
      el('td', { text: String(t.api_keys) }),
      el('td', { text: fmtTime(t.created_ms) }),
      el('td', { class: 'actions-cell' },
        el('button', { type: 'button', class: 'small', text: 'Edit', 'aria-label': `Edit ${t.name}`, onclick: () => { location.hash = `#tenants/${enc(t.name)}`; } }),
        el('button', { type: 'button', class: 'small secondary', text: 'Plugins', 'aria-label': `Plugins of ${t.name}`, onclick: () => { location.hash = `#plugins/${enc(t.name)}`; } }),
        el('button', { type: 'button', class: 'small secondary', text: 'Rooms', 'aria-label': `Rooms of ${t.name}`, onclick: () => { location.hash = `#rooms/${enc(t.name)}`; } })))));
  }

  async function createTenant(ev) {
    ev.preventDefault();
    const input = $('tc-name');
    const name = input.value.trim();
    const err = $('tc-error');
    showError(err, '');
    input.removeAttribute('aria-invalid');
    if (!name) {
      showError(err, 'Enter a name.');
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    try {
      const t = await api('POST', '/api/tenants', { body: { name } });
      input.value = '';
      revealKey(t.name, t.api_key);
      await loadTenants();
      renderTenantList();
      flash(`Tenant ${t.name} created.`);
    } catch (e) {
      if (e.http === 401) return handleFail(e);
      showError(err, e.message);
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }

  function revealKey(tenant, key) {
    $('key-reveal-tenant').textContent = tenant;
    $('key-reveal-value').textContent = key;
    $('key-reveal').hidden = false;
    $('key-reveal').focus();
  }

  function hideKey() {
    $('key-reveal-value').textContent = '';
    $('key-reveal').hidden = true;
  }

  /** The form field of each config entry, typed after its current value. */
  function fieldFor(name, value) {
    const id = `cfg-${name}`;
    const errId = `cfg-err-${name}`;
    const helpId = `cfg-help-${name}`;
    const help = FIELD_HELP[name] ?? (Array.isArray(value) ? '' : null);
    const helpText = [help, Array.isArray(value) ? 'One per line.' : null].filter(Boolean).join(' ');
    const wrap = el('div', { class: typeof value === 'boolean' ? 'field bool' : 'field', 'data-field': name });
    const describedBy = `${helpText ? `${helpId} ` : ''}${errId}`;
    let input;
    if (typeof value === 'boolean') {
      input = el('input', { id, type: 'checkbox', 'aria-describedby': describedBy });
      input.checked = value;
      wrap.append(el('label', { class: 'check', for: id }, input, ` ${name}`));
    } else if (Array.isArray(value)) {
      input = el('textarea', { id, rows: 2, spellcheck: 'false', 'aria-describedby': describedBy });
      input.value = value.join('\n');
      wrap.append(el('label', { for: id, text: name }), input);
    } else {
      input = el('input', { id, type: 'text', spellcheck: 'false', 'aria-describedby': describedBy, inputmode: typeof value === 'number' ? 'numeric' : null });
      input.value = value ?? '';
      wrap.append(el('label', { for: id, text: name }), input);
    }
    if (helpText) wrap.append(el('p', { id: helpId, class: 'help', text: helpText }));
    input.dataset.kind = Array.isArray(value) ? 'array' : typeof value;
    input.dataset.name = name;
    wrap.append(el('p', { id: errId, class: 'field-error', hidden: true }));
    return wrap;
  }

  function readField(input) {
    const k = input.dataset.kind;
    if (k === 'boolean') return input.checked;
    if (k === 'array') return input.value.split('\n').map((s) => s.trim()).filter(Boolean);
    if (k === 'number') {
      const v = input.value.trim();
      // Sent as typed when it is not a plain number, so the server names what is wrong with it.
      return /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    }
    return input.value;
  }

  function openTenant(name) {
    editing = tenants.find((t) => t.name === name);
    if (!editing) return;
    $('te-title').textContent = `Tenant ${name}`;
    const fields = $('te-fields');
    fields.replaceChildren(...Object.entries(editing.config).map(([k, v]) => fieldFor(k, v)));
    showError($('te-error'), '');
    $('te-keys').textContent = `${editing.api_keys} API key${editing.api_keys === 1 ? '' : 's'} in use.`;
    $('te-delete').disabled = name === 'default';
    $('te-delete').title = name === 'default' ? 'The default tenant cannot be deleted' : '';
    $('tenant-edit').hidden = false;
    $('te-title').setAttribute('tabindex', '-1');
    $('te-title').focus();
  }

  function clearFieldErrors() {
    for (const p of $('te-fields').querySelectorAll('.field-error')) showError(p, '');
    for (const i of $('te-fields').querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  }

  /** The config field a server message is about: the first field name it mentions. */
  function fieldOfMessage(msg, candidates) {
    const names = Object.keys(editing.config).sort((a, b) => b.length - a.length);
    for (const n of names) if (new RegExp(`(^|[^a-z_])${n}([^a-z_]|$)`).test(msg)) return n;
    // serde names no field for a wrong type: with one field changed it is that one.
    return candidates.length === 1 ? candidates[0] : null;
  }

  async function saveTenant(ev) {
    ev.preventDefault();
    if (!editing) return;
    clearFieldErrors();
    showError($('te-error'), '');
    const patch = {};
    for (const input of $('te-fields').querySelectorAll('[data-name]')) {
      const v = readField(input);
      if (JSON.stringify(v) !== JSON.stringify(editing.config[input.dataset.name])) patch[input.dataset.name] = v;
    }
    if (!Object.keys(patch).length) {
      flash('Nothing changed.');
      return;
    }
    try {
      const t = await api('PATCH', `/api/tenants/${enc(editing.name)}`, { body: patch });
      await loadTenants();
      renderTenantList();
      openTenant(t.name);
      flash(`Saved ${Object.keys(patch).join(', ')} of ${t.name}.`);
    } catch (e) {
      if (e.http === 401) return handleFail(e);
      const field = fieldOfMessage(e.message, Object.keys(patch));
      const input = field && $(`cfg-${field}`);
      if (input) {
        showError($(`cfg-err-${field}`), e.message);
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      } else {
        showError($('te-error'), e.message);
      }
    }
  }

  async function rotateKey() {
    if (!editing) return;
    const keep = $('te-keep-old').checked;
    const ok = await confirmAction(keep
      ? `A new API key for ${editing.name}; the current keys keep working.`
      : `A new API key for ${editing.name}; every current key stops working at once.`, { title: 'Rotate the API key?', ok: 'Rotate' });
    if (!ok) return;
    hideKey();
    try {
      const r = await api('POST', `/api/tenants/${enc(editing.name)}/keys`, { body: { keep_old: keep } });
      revealKey(r.name, r.api_key);
      await loadTenants();
      renderTenantList();
      $('te-keys').textContent = `${r.api_keys} API key${r.api_keys === 1 ? '' : 's'} in use.`;
    } catch (e) { handleFail(e, $('te-error')); }
  }

  async function deleteTenant() {
    if (!editing) return;
    const name = editing.name;
    const ok = await confirmAction(`Tenant ${name} is deleted with all its users, rooms, messages and plugins; its sockets are disconnected. This cannot be undone.`,
      { title: `Delete ${name}?`, ok: 'Delete', word: name });
    if (!ok) return;
    try {
      await api('DELETE', `/api/tenants/${enc(name)}`);
      editing = null;
      $('tenant-edit').hidden = true;
      history.replaceState(null, '', '#tenants');
      await loadTenants();
      renderTenantList();
      flash(`Tenant ${name} deleted.`);
    } catch (e) { handleFail(e, $('te-error')); }
  }

  // ---------------------------------------------------------------- plugins

  let plTenant = null;
  let listing = null;
  let pendingFile = null;

  async function fillTenantSelect(select, wanted) {
    if (session.role !== 'admin') {
      select.replaceChildren(el('option', { value: session.tenant, text: session.tenant }));
      return session.tenant;
    }
    await loadTenants();
    select.replaceChildren(...tenants.map((t) => el('option', { value: t.name, text: t.name })));
    const pick = tenants.some((t) => t.name === wanted) ? wanted : tenants[0]?.name ?? 'default';
    select.value = pick;
    return pick;
  }

  async function showPlugins(arg) {
    plTenant = await fillTenantSelect($('pl-tenant'), arg || plTenant);
    await loadPlugins();
  }

  async function loadPlugins() {
    listing = await api('GET', `/api/tenants/${enc(plTenant)}/plugins`);
    renderChain();
    renderPluginList();
    renderPlayground();
  }

  function renderChain() {
    const ol = $('pl-chain');
    const entries = listing.chain;
    $('pl-chain-empty').hidden = entries.length > 0;
    ol.replaceChildren(...entries.map((e, i) => {
      const li = el('li', { draggable: 'true', 'data-name': e.name },
        el('span', { class: 'name', text: e.name }),
        el('span', { class: 'muted', text: `v${e.version}` }),
        el('button', { type: 'button', class: 'small secondary', text: '↑', 'aria-label': `Move ${e.name} up`, disabled: i === 0, onclick: () => moveInChain(e.name, -1) }),
        el('button', { type: 'button', class: 'small secondary', text: '↓', 'aria-label': `Move ${e.name} down`, disabled: i === entries.length - 1, onclick: () => moveInChain(e.name, 1) }),
        el('button', { type: 'button', class: 'small danger', text: '✕', 'aria-label': `Take ${e.name} out of the chain`, onclick: () => takeOut(e.name) }));
      li.addEventListener('dragstart', (ev) => {
        ev.dataTransfer.setData('text/plain', e.name);
        ev.dataTransfer.effectAllowed = 'move';
        li.classList.add('dragging');
      });
      li.addEventListener('dragend', () => li.classList.remove('dragging'));
      li.addEventListener('dragover', (ev) => { ev.preventDefault(); li.classList.add('target'); });
      li.addEventListener('dragleave', () => li.classList.remove('target'));
      li.addEventListener('drop', (ev) => {
        ev.preventDefault();
        li.classList.remove('target');
        const from = ev.dataTransfer.getData('text/plain');
        if (!from || from === e.name) return;
        const order = entries.map((x) => x.name).filter((n) => n !== from);
        order.splice(order.indexOf(e.name) + (indexIn(from) < i ? 1 : 0), 0, from);
        saveChain(order, from);
      });
      return li;
    }));
  }

  const indexIn = (name) => listing.chain.findIndex((e) => e.name === name);

  function moveInChain(name, delta) {
    const order = listing.chain.map((e) => e.name);
    const i = order.indexOf(name);
    const j = i + delta;
    if (j < 0 || j >= order.length) return;
    [order[i], order[j]] = [order[j], order[i]];
    saveChain(order, name, delta < 0 ? 'up' : 'down');
  }

  async function saveChain(order, focusName, dir) {
    showError($('pl-chain-error'), '');
    try {
      await api('PUT', `/api/tenants/${enc(plTenant)}/chain`, { body: { order } });
      await loadPlugins();
      flash(`Chain: ${order.join(' → ') || '(empty)'}.`);
      if (focusName) {
        const li = $('pl-chain').querySelector(`li[data-name="${CSS.escape(focusName)}"]`);
        const btn = li && (li.querySelector(`button[aria-label^="Move ${CSS.escape(focusName)} ${dir || 'up'}"]:not(:disabled)`) || li.querySelector('button:not(:disabled)'));
        if (btn) btn.focus();
      }
    } catch (e) { handleFail(e, $('pl-chain-error')); }
  }

  function takeOut(name) {
    saveChain(listing.chain.map((e) => e.name).filter((n) => n !== name));
  }

  function renderPluginList() {
    const list = $('pl-list');
    if (!listing.plugins.length) {
      list.replaceChildren(el('p', { class: 'muted', text: 'No plugin uploaded yet.' }));
      return;
    }
    list.replaceChildren(...listing.plugins.map((p) => {
      const versions = el('table', { 'data-plugin': p.name },
        el('thead', {}, el('tr', {}, ...['Version', 'Hash', 'Size', 'Uploaded', ''].map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, ...[...p.versions].reverse().map((v) => el('tr', {},
          el('td', {}, `v${v.version} `, v.version === p.active_version ? el('span', { class: 'badge', text: 'active' }) : null),
          el('td', {}, el('code', { text: v.hash.slice(0, 12), title: v.hash })),
          el('td', { text: fmtBytes(v.size) }),
          el('td', { text: fmtTime(v.created_ms) }),
          el('td', {})))));
      const active = p.versions.find((v) => v.version === p.active_version) || p.versions[p.versions.length - 1];
      const canRollback = p.active_version !== null && p.versions.some((v) => v.version < p.active_version);
      const cfgId = `pl-cfg-${p.name}`;
      const cfg = el('textarea', { id: cfgId, rows: 8, spellcheck: 'false', 'aria-describedby': `${cfgId}-err` });
      cfg.value = JSON.stringify(active?.manifest ?? {}, null, 2);
      const cfgErr = el('p', { id: `${cfgId}-err`, class: 'error', role: 'alert', hidden: true });
      return el('div', { class: 'plugin', 'data-plugin': p.name },
        el('h3', {}, p.name, ' ', el('span', { class: 'muted', text: p.chain_index === null ? '(not in the chain)' : `(#${p.chain_index + 1} in the chain, v${p.active_version})` })),
        el('div', { class: 'scroll' }, versions),
        el('div', { class: 'actions' },
          el('button', { type: 'button', class: 'secondary', text: 'Roll back', 'aria-label': `Roll back ${p.name} to the previous version`, disabled: !canRollback, onclick: () => rollback(p.name) }),
          p.chain_index === null ? el('button', { type: 'button', class: 'secondary', text: 'Add to the chain', onclick: () => saveChain([...listing.chain.map((e) => e.name), p.name]) }) : null,
          el('button', { type: 'button', class: 'danger', text: 'Delete…', 'aria-label': `Delete plugin ${p.name}`, onclick: () => deletePlugin(p.name) })),
        el('label', { for: cfgId, text: `Manifest of ${p.name} (saving makes a new version)` }),
        cfg, cfgErr,
        el('div', { class: 'actions' },
          el('button', { type: 'button', text: 'Save manifest', onclick: () => saveManifest(p.name, cfg, cfgErr) })));
    }));
  }

  async function rollback(name) {
    try {
      const entry = await api('POST', `/api/tenants/${enc(plTenant)}/plugins/${enc(name)}/rollback`);
      await loadPlugins();
      flash(`${name} rolled back to v${entry.version}.`);
    } catch (e) { handleFail(e); }
  }

  async function deletePlugin(name) {
    const ok = await confirmAction(`Plugin ${name} is taken out of the chain of ${plTenant} and every version of it is deleted.`, { title: `Delete ${name}?`, ok: 'Delete', word: name });
    if (!ok) return;
    try {
      await api('DELETE', `/api/tenants/${enc(plTenant)}/plugins/${enc(name)}`);
      await loadPlugins();
      flash(`Plugin ${name} deleted.`);
    } catch (e) { handleFail(e); }
  }

  async function saveManifest(name, textarea, err) {
    showError(err, '');
    textarea.removeAttribute('aria-invalid');
    let manifest;
    try { manifest = JSON.parse(textarea.value); } catch (e) {
      showError(err, `Not valid JSON: ${e.message}`);
      textarea.setAttribute('aria-invalid', 'true');
      textarea.focus();
      return;
    }
    try {
      const up = await api('PUT', `/api/tenants/${enc(plTenant)}/plugins/${enc(name)}/config`, { body: manifest });
      await loadPlugins();
      flash(`${name}: manifest saved as v${up.version}.`);
    } catch (e) {
      if (e.http === 401) return handleFail(e);
      showError(err, e.message);
      textarea.setAttribute('aria-invalid', 'true');
      textarea.focus();
    }
  }

  function pickFile(file) {
    pendingFile = file || null;
    $('pl-drop-text').textContent = file ? `${file.name} (${fmtBytes(file.size)})` : 'Drop a .wasm component here, or choose a file';
    if (file && !$('pl-name').value) {
      $('pl-name').value = file.name.replace(/\.wasm$/i, '').toLowerCase().replace(/[^a-z0-9_-]/g, '-').slice(0, 64);
    }
    showError($('pl-upload-error'), '');
  }

  async function upload(ev) {
    ev.preventDefault();
    const err = $('pl-upload-error');
    showError(err, '');
    const name = $('pl-name').value.trim();
    if (!pendingFile) return showError(err, 'Choose or drop a .wasm file first.');
    if (!name) {
      $('pl-name').focus();
      return showError(err, 'Enter the plugin\'s name.');
    }
    const headers = { 'content-type': 'application/wasm' };
    const manifest = $('pl-manifest').value.trim();
    if (manifest) {
      try { headers['x-hookwire-manifest'] = JSON.stringify(JSON.parse(manifest)); } catch (e) {
        $('pl-manifest').focus();
        return showError(err, `The manifest is not valid JSON: ${e.message}`);
      }
    }
    const btn = $('pl-upload-submit');
    btn.disabled = true;
    btn.textContent = 'Uploading…';
    try {
      const up = await api('POST', `/api/tenants/${enc(plTenant)}/plugins/${enc(name)}`, { raw: await pendingFile.arrayBuffer(), headers });
      pickFile(null);
      $('pl-file').value = '';
      $('pl-name').value = '';
      $('pl-manifest').value = '';
      await loadPlugins();
      flash(`${up.name} v${up.version} uploaded (${fmtBytes(up.size)}).`);
    } catch (e) {
      if (e.http === 401) return handleFail(e);
      showError(err, e.message);
    } finally {
      btn.disabled = false;
      btn.textContent = 'Upload';
    }
  }

  function renderPlayground() {
    const sel = $('pg-plugin');
    const before = sel.value;
    sel.replaceChildren(...listing.plugins.map((p) => el('option', { value: p.name, text: p.name })));
    $('pl-playground').hidden = !listing.plugins.length;
    if (listing.plugins.some((p) => p.name === before)) sel.value = before;
    renderVersions();
    if (!$('pg-input').value) $('pg-input').value = JSON.stringify(HOOK_INPUTS[$('pg-hook').value], null, 2);
  }

  function renderVersions() {
    const p = listing?.plugins.find((x) => x.name === $('pg-plugin').value);
    const sel = $('pg-version');
    if (!p) { sel.replaceChildren(); return; }
    sel.replaceChildren(el('option', { value: '', text: p.active_version ? `active (v${p.active_version})` : 'latest' }),
      ...[...p.versions].reverse().map((v) => el('option', { value: String(v.version), text: `v${v.version}` })));
  }

  async function runPlayground(ev) {
    ev.preventDefault();
    const err = $('pg-error');
    showError(err, '');
    $('pg-input').removeAttribute('aria-invalid');
    let input;
    try { input = JSON.parse($('pg-input').value || 'null'); } catch (e) {
      $('pg-input').setAttribute('aria-invalid', 'true');
      $('pg-input').focus();
      return showError(err, `The input is not valid JSON: ${e.message}`);
    }
    const body = { hook: $('pg-hook').value, input };
    if ($('pg-version').value) body.version = Number($('pg-version').value);
    const btn = $('pg-run');
    btn.disabled = true;
    try {
      const r = await api('POST', `/api/tenants/${enc(plTenant)}/plugins/${enc($('pg-plugin').value)}/test`, { body });
      $('pg-result').hidden = false;
      const outcome = $('pg-outcome');
      outcome.textContent = r.ok ? `ok (v${r.version}, ${r.hook})` : `fault (v${r.version}, ${r.hook}): ${r.fault?.kind ?? ''} ${r.fault?.message ?? ''}`;
      outcome.className = r.ok ? 'status-ok' : 'status-bad';
      const extra = [r.fuel_used != null ? `fuel ${fmtNum(r.fuel_used)}` : null, r.memory_bytes != null ? `memory ${fmtBytes(r.memory_bytes)}` : null].filter(Boolean);
      $('pg-time').textContent = `${(r.elapsed_us / 1000).toFixed(2)} ms${extra.length ? ` · ${extra.join(' · ')}` : ''}`;
      $('pg-verdict').textContent = JSON.stringify(r.ok ? r.verdict : r.fault, null, 2);
      $('pg-logs').textContent = r.logs.length ? r.logs.map((l) => (typeof l === 'string' ? l : `[${l.level ?? 'log'}] ${l.message ?? JSON.stringify(l)}`)).join('\n') : '(nothing logged)';
    } catch (e) {
      if (e.http === 401) return handleFail(e);
      showError(err, e.message);
    } finally {
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- rooms

  let room = null;

  /** `#rooms/<tenant>/<room>` opens that room, so a room can be linked to; `#rooms/<tenant>` lists the tenant's rooms. */
  async function showRooms(arg, token, roomId) {
    $('rm-tenant-wrap').hidden = session.role !== 'admin';
    $('rm-tap-card').hidden = session.role !== 'admin';
    if (!roomId) {
      // `#rooms` or `#rooms/<tenant>`: the list alone, as the address says.
      // Reset before the tenants load, so a room opened meanwhile stays open.
      room = null;
      $('rm-detail').hidden = true;
      $('rm-room').value = '';
      clearTapList();
    }
    await fillTenantSelect($('rm-tenant'), arg || $('rm-tenant').value);
    if (token !== viewToken) return;
    // Another tenant's (or key's) list must not pass for this one's.
    if (listedTenant !== rmTenant()) clearRoomList();
    if (roomId) {
      $('rm-room').value = roomId;
      await openRoom();
    }
    const tick = async () => {
      try { await pollRoomList(); } catch (e) { handleFail(e, $('rm-list-error')); }
      if (token === viewToken && session) pollTimer = setTimeout(tick, POLL_MS);
    };
    await tick();
  }

  /** The tenant whose rooms the list shows. */
  let listedTenant = null;

  function clearRoomList() {
    listedTenant = null;
    $('rm-list').tBodies[0].replaceChildren();
    $('rm-list-count').textContent = '';
    $('rm-list-updated').textContent = '';
    $('rm-list-empty').hidden = true;
    $('rm-list-truncated').hidden = true;
  }

  async function pollRoomList() {
    const tenant = rmTenant();
    const r = await api('GET', `/admin/monitor/rooms?${tq(tenant)}&limit=${enc($('rm-list-limit').value)}`);
    if (currentView !== 'rooms' || tenant !== rmTenant()) return;
    listedTenant = tenant;
    showError($('rm-list-error'), '');
    $('rm-list').tBodies[0].replaceChildren(...r.rooms.map((x) => el('tr', { 'data-room': x.roomId },
      el('th', { scope: 'row' }, el('a', { href: `#rooms/${enc(tenant)}/${enc(x.roomId)}`, text: x.roomId })),
      el('td', { text: fmtNum(x.users) }),
      el('td', { text: fmtNum(x.sockets) }))));
    $('rm-list-empty').hidden = r.rooms.length > 0;
    $('rm-list-count').textContent = r.total ? `(${fmtNum(r.total)})` : '';
    const cut = $('rm-list-truncated');
    cut.hidden = !r.truncated;
    const more = $('rm-list-limit').value === '1000' ? '' : 'show more above, or ';
    cut.textContent = r.truncated ? `Showing the first ${fmtNum(r.rooms.length)} of ${fmtNum(r.total)} rooms, by name: ${more}open any other by its id at the top.` : '';
    $('rm-list-updated').textContent = `Last update ${new Date().toLocaleTimeString()}.`;
  }

  const rmTenant = () => (session.role === 'admin' ? $('rm-tenant').value : session.tenant);

  async function openRoom(ev) {
    ev?.preventDefault();
    const id = $('rm-room').value.trim();
    showError($('rm-error'), '');
    if (!id) {
      $('rm-room').focus();
      return showError($('rm-error'), 'Enter a room id.');
    }
    if (room?.id !== id || room?.tenant !== rmTenant()) {
      stopTap();
      clearTapList();
    }
    room = { tenant: rmTenant(), id, offset: 0 };
    try {
      await Promise.all([loadMembers(), loadMsgs({ offset: 0 })]);
      $('rm-detail').hidden = false;
      // Replaced, not pushed: a new history entry would route again.
      history.replaceState(null, '', `#rooms/${enc(room.tenant)}/${enc(room.id)}`);
    } catch (e) { handleFail(e, $('rm-error')); }
  }

  const roomQ = () => `${tq(room.tenant)}&roomId=${enc(room.id)}`;

  async function loadMembers() {
    const r = await api('GET', `/admin/monitor/room_users?${roomQ()}`);
    $('rm-count').textContent = `(${r.users.length} in ${room.id})`;
    $('rm-users').replaceChildren(...(r.users.length
      ? r.users.map((u) => el('li', { 'data-uid': u.uid },
        el('span', { class: 'uid', text: u.uid }),
        el('button', { type: 'button', class: 'small danger', text: 'Kick…', 'aria-label': `Kick ${u.uid}`, onclick: () => kickUser(u.uid) })))
      : [el('li', { class: 'muted', text: 'nobody' })]));
    return r.users.map((u) => u.uid);
  }

  /** Disconnects every socket of `uid` in the room's tenant, after a confirmation with an optional reason. */
  async function kickUser(uid) {
    const at = room;
    const ok = await confirmAction(`Every socket of ${uid} in tenant ${at.tenant}, on every node, gets kickout and is disconnected. The app may connect again.`, { title: `Kick ${uid}?`, ok: 'Kick', reason: true });
    if (!ok) return;
    const reason = $('confirm-reason').value.trim();
    if (new TextEncoder().encode(reason).length > 200) return flash('The reason is longer than 200 bytes: nobody was kicked.', true);
    try {
      await api('POST', `/admin/system/kick?${tq(at.tenant)}`, { body: reason ? { uid, reason } : { uid } });
      flash(`${uid} kicked${reason ? ` (${reason})` : ''}.`);
      // The sockets go a moment after kickout: look again until they have (a few seconds at most).
      for (let i = 0; i < 8 && room === at; i++) {
        if (!(await loadMembers()).includes(uid)) break;
        await sleep(500);
      }
      // Its button went with the list: the keyboard continues from the members' heading.
      if (!document.activeElement || document.activeElement === document.body) {
        const h = $('rm-detail-title');
        h.setAttribute('tabindex', '-1');
        h.focus();
      }
    } catch (e) { handleFail(e); }
  }

  // ---------------------------------------------------------------- live tap

  /** The running tap: {ctrl, room, shown, dropped}; null when stopped. */
  let tap = null;
  const TAP_KEEP = 200;

  function setTapRunning(running, status) {
    const start = $('rm-tap-start'), stop = $('rm-tap-stop');
    // A button that turns itself off would drop the keyboard's focus: hand it to the other.
    const refocus = document.activeElement === (running ? start : stop);
    start.disabled = running;
    stop.disabled = !running;
    if (refocus) (running ? stop : start).focus();
    $('rm-tap-status').textContent = status;
  }

  /** Aborts the stream, if any: on Stop, another room, navigation and sign-out. */
  function stopTap(status = '') {
    if (!tap) return;
    const t = tap;
    tap = null;
    t.ctrl.abort();
    setTapRunning(false, status);
  }

  async function startTap() {
    stopTap();
    const err = $('rm-tap-error');
    showError(err, '');
    const ctrl = new AbortController();
    const t = { ctrl, room, shown: 0, dropped: 0 };
    tap = t;
    $('rm-tap-dropped').hidden = true;
    setTapRunning(true, 'Connecting…');
    let r;
    try {
      r = await fetch(`/admin/monitor/tap?${roomQ()}`, {
        headers: { authorization: `Bearer ${session.key}`, accept: 'text/event-stream' },
        signal: ctrl.signal,
        cache: 'no-store',
      });
    } catch (e) {
      if (tap !== t) return;
      stopTap();
      return showError(err, `The tap did not connect (${e.message}).`);
    }
    if (tap !== t) return;
    if (!r.ok) {
      let msg = '';
      try { msg = JSON.parse(await r.text())?.meta?.msg || ''; } catch { /* not an envelope */ }
      stopTap();
      if (r.status === 429) return showError(err, `This node already serves as many live taps as it allows${msg ? ` (${msg})` : ''}: stop one elsewhere, or try again later.`);
      if (r.status === 401) return showError(err, `The server refused the tap: it needs the admin key${msg ? ` (${msg})` : ''}.`);
      return showError(err, `The tap was refused: HTTP ${r.status}${msg ? ` (${msg})` : ''}.`);
    }
    setTapRunning(true, `Watching ${t.room.id}…`);
    try {
      await readEvents(r.body, ctrl.signal, (event, data) => { if (tap === t) onTapEvent(t, event, data); });
      if (tap === t) {
        stopTap('The server ended the tap.');
      }
    } catch (e) {
      if (tap !== t) return;
      stopTap();
      showError(err, `The tap broke off (${e.message}).`);
    }
  }

  /** Reads a `text/event-stream` body, calling `on(event, data)` per event, until it ends or `signal` aborts. */
  async function readEvents(body, signal, on) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    signal.addEventListener('abort', () => reader.cancel().catch(() => {}), { once: true });
    let buf = '';
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        if (signal.aborted) return;
        throw e;
      }
      if (chunk.done) return;
      buf += chunk.value;
      let at;
      while ((at = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, at);
        buf = buf.slice(at).replace(/^\r?\n\r?\n/, '');
        let event = 'message';
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (!line || line[0] === ':') continue;
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'event') event = value;
          else if (field === 'data') data.push(value);
        }
        if (data.length) on(event, data.join('\n'));
      }
    }
  }

  function onTapEvent(t, event, text) {
    let v;
    try { v = JSON.parse(text); } catch { v = text; }
    if (event === 'dropped') {
      t.dropped += Number(v?.dropped) || 0;
      const d = $('rm-tap-dropped');
      d.hidden = false;
      d.textContent = `${fmtNum(t.dropped)} message${t.dropped === 1 ? '' : 's'} dropped (more than 50 a second), last report ${new Date().toLocaleTimeString()}.`;
      return;
    }
    if (event !== 'msg') return;
    t.shown++;
    let data = v;
    let uid = '';
    let ts = 0;
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const { uid: u, ts: at, ...rest } = v;
      uid = u ?? '';
      ts = at;
      data = rest;
    }
    const body = $('rm-tap').tBodies[0];
    body.prepend(el('tr', {},
      el('td', { text: ts ? new Date(ts).toLocaleTimeString() : new Date().toLocaleTimeString() }),
      el('td', { text: String(uid) }),
      el('td', { class: 'data', text: JSON.stringify(data) })));
    while (body.rows.length > TAP_KEEP) body.lastElementChild.remove();
    $('rm-tap-empty').hidden = true;
    $('rm-tap-status').textContent = `Watching ${t.room.id}: ${fmtNum(t.shown)} message${t.shown === 1 ? '' : 's'} so far.`;
  }

  function clearTapList() {
    $('rm-tap').tBodies[0].replaceChildren();
    $('rm-tap-empty').hidden = false;
    $('rm-tap-dropped').hidden = true;
    if (tap) tap.dropped = 0;
  }

  /** The request of a page: `offset` into the inserts, then `cursor` into update values. */
  const pageUrl = (req) => `/admin/monitor/room_msgs?${roomQ()}&offset=${req.offset}${req.cursor ? `&cursor=${enc(req.cursor)}` : ''}`;
  const nextOf = (r) => (r.next ? { offset: r.offset, cursor: r.cursor } : null);

  /** Shows one page; `pages` is the trail of requests that led to it, for Previous. */
  function renderMsgs(r, pages) {
    room.pages = pages;
    room.next = nextOf(r);
    $('rm-msgs').tBodies[0].replaceChildren(...r.msgs.map((m) => {
      // uid and ts have their own columns.
      let data = m.data;
      if (data && typeof data === 'object' && !Array.isArray(data)) {
        const { uid: _u, ts: _t, ...rest } = data;
        data = rest;
      }
      return el('tr', {},
        el('td', { text: fmtSecs(m.ts) }),
        el('td', { text: m.uid ?? '' }),
        el('td', { class: 'data', text: JSON.stringify(data) }));
    }));
    $('rm-msgs-empty').hidden = r.msgs.length > 0;
    $('rm-page').textContent = r.msgs.length ? `Page ${pages.length}${room.next ? '' : ' (the newest)'}` : '';
    $('rm-next').disabled = !room.next;
    $('rm-newest').disabled = !room.next;
    $('rm-prev').disabled = pages.length < 2;
    $('rm-first').disabled = pages.length < 2;
  }

  async function loadMsgs(req, pages = [req]) {
    renderMsgs(await api('GET', pageUrl(req)), pages);
  }

  /** Follows `next` to the last page: the API pages oldest first and has no count. */
  async function loadNewest() {
    const pages = [...room.pages];
    let req = room.next;
    let r = null;
    // A room keeps at most max_msgs_per_room messages, so this ends; the cap
    // only guards against a page that never reports its end.
    for (let i = 0; req && i < 1000; i++) {
      r = await api('GET', pageUrl(req));
      pages.push(req);
      req = nextOf(r);
    }
    if (r) renderMsgs(r, pages);
  }

  async function loadPrev() {
    const pages = room.pages.slice(0, -1);
    if (pages.length) await loadMsgs(pages[pages.length - 1], pages);
  }

  async function clearRoom() {
    const ok = await confirmAction(`Every stored message of room ${room.id} (tenant ${room.tenant}) is deleted; members syncing afterwards start from an empty room.`, { title: `Clear ${room.id}?`, ok: 'Clear' });
    if (!ok) return;
    try {
      await api('POST', `/admin/system/clear_room_msgs?${tq(room.tenant)}`, { body: { roomId: room.id } });
      await loadMsgs({ offset: 0 });
      flash(`Room ${room.id} cleared.`);
    } catch (e) { handleFail(e); }
  }

  async function pushToRoom(ev) {
    ev.preventDefault();
    const err = $('rm-push-error');
    showError(err, '');
    const text = $('rm-content').value;
    if (!text.trim()) return showError(err, 'Enter the content to push.');
    let content;
    try { content = JSON.parse(text); } catch { content = text; }
    try {
      await api('POST', `/admin/system/push?${tq(room.tenant)}`, { body: { roomId: room.id, content } });
      flash(`Pushed to ${room.id}.`);
    } catch (e) { handleFail(e, err); }
  }

  // ---------------------------------------------------------------- cost

  /** Polls kept for the charts: two minutes at POLL_MS. */
  const COST_KEEP = 40;
  /**
   * Successive `/metrics` samples of the plugin families, oldest first, each
   * with the rates of the interval that ends at it (`point`, null for the first).
   */
  let costHistory = [];
  const SVG = 'http://www.w3.org/2000/svg';
  const pluginKey = (l) => `${l.tenant ?? ''}\u0000${l.plugin ?? ''}`;

  function addTo(map, k, v) { map.set(k, (map.get(k) || 0) + v); }

  function costSample(text) {
    const cur = { at: performance.now(), calls: new Map(), faults: new Map(), hist: new Map(), point: null };
    for (const x of parseMetrics(text)) {
      if (x.name === 'hookwire_plugin_calls_total') addTo(cur.calls, pluginKey(x.labels), x.value);
      else if (x.name === 'hookwire_plugin_faults_total') addTo(cur.faults, pluginKey(x.labels), x.value);
      else if (x.name === 'hookwire_plugin_call_seconds_bucket' && x.labels.le !== undefined) {
        const hook = x.labels.hook ?? '';
        if (!cur.hist.has(hook)) cur.hist.set(hook, new Map());
        addTo(cur.hist.get(hook), x.labels.le, x.value);
      }
    }
    return cur;
  }

  /**
   * The `q` quantile of the calls counted between two samples of one
   * histogram (cumulative buckets by `le`), interpolated inside its bucket;
   * NaN when no call fell between them.
   */
  function quantile(q, now, before) {
    if (!now) return NaN;
    const les = [...now.keys()].map((le) => ({ le, at: le === '+Inf' ? Infinity : Number(le) })).sort((a, b) => a.at - b.at);
    const delta = les.map(({ le, at }) => ({ at, n: Math.max(0, now.get(le) - (before?.get(le) || 0)) }));
    const total = delta.length ? delta[delta.length - 1].n : 0;
    if (!total) return NaN;
    const want = q * total;
    let lo = 0, below = 0;
    for (const { at, n } of delta) {
      if (n >= want) {
        // Past the last finite bound nothing tells how far: say the bound.
        if (at === Infinity) return lo;
        const inside = n - below;
        return inside > 0 ? lo + (at - lo) * ((want - below) / inside) : at;
      }
      lo = at;
      below = n;
    }
    return lo;
  }

  function costPoint(cur, prev) {
    const dt = (cur.at - prev.at) / 1000;
    const rate = (m, p) => new Map([...m].map(([k, v]) => [k, dt > 0 ? Math.max(0, v - (p.get(k) || 0)) / dt : NaN]));
    const p50 = new Map(), p99 = new Map();
    for (const [hook, h] of cur.hist) {
      p50.set(hook, quantile(0.5, h, prev.hist.get(hook)));
      p99.set(hook, quantile(0.99, h, prev.hist.get(hook)));
    }
    return { calls: rate(cur.calls, prev.calls), faults: rate(cur.faults, prev.faults), p50, p99 };
  }

  const fmtSeconds = (s) => (!Number.isFinite(s) ? '–' : s < 0.001 ? `${fmtNum(s * 1e6)} µs` : s < 1 ? `${(s * 1000).toFixed(2)} ms` : `${s.toFixed(2)} s`);

  /**
   * A small line chart of `series` ([{values, cls}], one value per kept
   * poll, NaN for none), newest at the right, on one scale from 0.
   */
  function sparkline(series, label) {
    const W = 140, H = 34, PAD = 2;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.setAttribute('class', 'spark');
    // Narrower on a phone (CSS): the chart stretches, its lines keep their width.
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    const title = document.createElementNS(SVG, 'title');
    title.textContent = label;
    svg.append(title);
    const base = document.createElementNS(SVG, 'line');
    base.setAttribute('x1', 0); base.setAttribute('x2', W);
    base.setAttribute('y1', H - PAD); base.setAttribute('y2', H - PAD);
    base.setAttribute('class', 'base');
    svg.append(base);
    const all = series.flatMap((s) => s.values).filter(Number.isFinite);
    const max = Math.max(...all, 0);
    svg.dataset.max = String(max);
    // Few polls yet: spread them over the chart rather than crowd its right edge.
    const slots = Math.max(Math.max(...series.map((x) => x.values.length)), 8);
    const step = W / (slots - 1);
    for (const { values, cls } of series) {
      // A gap (no value) breaks the line; a lone point is still drawn, as a dot.
      let run = [];
      const flush = () => {
        if (run.length === 1) {
          const c = document.createElementNS(SVG, 'circle');
          c.setAttribute('cx', run[0][0]); c.setAttribute('cy', run[0][1]); c.setAttribute('r', 1.8);
          c.setAttribute('class', cls);
          svg.append(c);
        } else if (run.length > 1) {
          const l = document.createElementNS(SVG, 'polyline');
          l.setAttribute('points', run.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '));
          l.setAttribute('class', cls);
          svg.append(l);
        }
        run = [];
      };
      values.forEach((v, i) => {
        if (!Number.isFinite(v)) return flush();
        const x = W - (values.length - 1 - i) * step;
        const y = H - PAD - (max > 0 ? (v / max) * (H - 2 * PAD) : 0);
        run.push([x, y]);
      });
      flush();
    }
    return svg;
  }

  async function showCost(_arg, token) {
    costHistory = [];
    $('cs-window').textContent = `${Math.round((COST_KEEP * POLL_MS) / 60000)} minutes`;
    $('cs-plugins').tBodies[0].replaceChildren();
    $('cs-latency').tBodies[0].replaceChildren();
    $('cs-plugins-empty').hidden = true;
    $('cs-latency-empty').hidden = true;
    $('cs-updated').textContent = '';
    const tick = async () => {
      try { await pollCost(); } catch (e) {
        if (e instanceof ApiFail && e.http === 401) {
          // The node's metrics key is another key: nothing to poll.
          $('cs-note').hidden = false;
          $('cs-note').textContent = `/metrics refused this key (${e.message}).`;
          return;
        }
        handleFail(e);
      }
      if (token === viewToken && session) pollTimer = setTimeout(tick, POLL_MS);
    };
    await tick();
  }

  async function pollCost() {
    const text = await api('GET', '/metrics');
    if (currentView !== 'cost') return;
    $('cs-note').hidden = true;
    const cur = costSample(typeof text === 'string' ? text : '');
    const prev = costHistory[costHistory.length - 1];
    if (prev) cur.point = costPoint(cur, prev);
    costHistory.push(cur);
    if (costHistory.length > COST_KEEP) costHistory.shift();
    renderCost(cur);
  }

  function renderCost(cur) {
    const minutes = $('cs-window').textContent;
    const seriesOf = (kind, k) => costHistory.map((h) => (h.point ? h.point[kind].get(k) ?? 0 : NaN));
    const now = (kind, k) => (cur.point ? cur.point[kind].get(k) ?? 0 : NaN);
    const rateCell = (kind, k, name, cls) => {
      const v = now(kind, k);
      const values = seriesOf(kind, k);
      const high = Math.max(0, ...values.filter(Number.isFinite));
      return el('td', { class: 'chart-cell', 'data-rate': Number.isFinite(v) ? String(v) : '' },
        el('span', { class: cur.point ? 'num' : 'num pending', text: cur.point ? fmtNum(v) : 'measuring…' }),
        sparkline([{ values, cls }], `${name} per second over the last ${minutes}: now ${cur.point ? fmtNum(v) : 'not measured yet'}, highest ${fmtNum(high)}`));
    };

    const keys = [...new Set([...cur.calls.keys(), ...cur.faults.keys()])].sort();
    $('cs-plugins').tBodies[0].replaceChildren(...keys.map((k) => {
      const [t, p] = k.split('\u0000');
      return el('tr', { 'data-tenant': t, 'data-plugin': p },
        el('td', { text: t }),
        el('th', { scope: 'row', text: p }),
        rateCell('calls', k, `calls of ${p} (${t})`, 'calls'),
        rateCell('faults', k, `faults of ${p} (${t})`, 'faults'),
        el('td', { text: fmtNum(cur.calls.get(k) || 0) }));
    }));
    $('cs-plugins-empty').hidden = keys.length > 0;

    // Hooks no plugin has answered yet have nothing to show.
    const hooks = [...cur.hist.keys()].filter((h) => (cur.hist.get(h).get('+Inf') || 0) > 0).sort();
    $('cs-latency').tBodies[0].replaceChildren(...hooks.map((hook) => {
      const p50 = now('p50', hook), p99 = now('p99', hook);
      const s50 = seriesOf('p50', hook);
      const s99 = seriesOf('p99', hook);
      const count = cur.hist.get(hook).get('+Inf') || 0;
      return el('tr', { 'data-hook': hook },
        el('th', { scope: 'row', text: hook }),
        el('td', { text: fmtSeconds(p50) }),
        el('td', { text: fmtSeconds(p99) }),
        el('td', { class: 'chart-cell' }, sparkline([{ values: s50, cls: 'p50' }, { values: s99, cls: 'p99' }],
          `call time of ${hook} over the last ${minutes}: p50 now ${fmtSeconds(p50)}, p99 now ${fmtSeconds(p99)} (the upper line)`)),
        el('td', { text: fmtNum(count) }));
    }));
    $('cs-latency-empty').hidden = hooks.length > 0;
    $('cs-updated').textContent = `Last update ${new Date().toLocaleTimeString()}.`;
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $('signin-form').addEventListener('submit', signIn);
    const kindChanged = () => { $('signin-tenant-wrap').hidden = !$('signin-kind-tenant').checked; };
    $('signin-kind-admin').addEventListener('change', kindChanged);
    $('signin-kind-tenant').addEventListener('change', kindChanged);
    kindChanged();
    $('signout').addEventListener('click', signOut);
    window.addEventListener('hashchange', () => route(true));

    $('tenant-create').addEventListener('submit', createTenant);
    $('key-reveal-done').addEventListener('click', hideKey);
    $('key-reveal-copy').addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText($('key-reveal-value').textContent);
        flash('Copied.');
      } catch {
        flash('Copying is not allowed here: select the key and copy it.', true);
      }
    });
    $('te-form').addEventListener('submit', saveTenant);
    $('te-close').addEventListener('click', () => { $('tenant-edit').hidden = true; history.replaceState(null, '', '#tenants'); });
    $('te-rotate').addEventListener('click', rotateKey);
    $('te-delete').addEventListener('click', deleteTenant);

    $('pl-tenant').addEventListener('change', () => { location.hash = `#plugins/${enc($('pl-tenant').value)}`; });
    $('pl-upload').addEventListener('submit', upload);
    $('pl-file').addEventListener('change', () => pickFile($('pl-file').files[0]));
    const drop = $('pl-drop');
    drop.addEventListener('click', () => $('pl-file').click());
    drop.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); $('pl-file').click(); }
    });
    drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (ev) => {
      ev.preventDefault();
      drop.classList.remove('over');
      const f = ev.dataTransfer.files[0];
      if (f) pickFile(f);
    });
    $('pg-plugin').addEventListener('change', renderVersions);
    $('pg-hook').addEventListener('change', () => { $('pg-input').value = JSON.stringify(HOOK_INPUTS[$('pg-hook').value], null, 2); });
    $('pg-form').addEventListener('submit', runPlayground);

    $('rm-form').addEventListener('submit', openRoom);
    $('rm-tenant').addEventListener('change', () => {
      stopTap();
      room = null;
      $('rm-detail').hidden = true;
      clearRoomList();
      pollRoomList().catch((e) => handleFail(e, $('rm-list-error')));
    });
    $('rm-list-limit').addEventListener('change', () => pollRoomList().catch((e) => handleFail(e, $('rm-list-error'))));
    $('rm-tap-start').addEventListener('click', startTap);
    $('rm-tap-stop').addEventListener('click', () => stopTap('Stopped.'));
    $('rm-tap-clear').addEventListener('click', clearTapList);
    window.addEventListener('pagehide', () => stopTap());
    $('rm-refresh').addEventListener('click', () => loadMembers().catch((e) => handleFail(e)));
    $('rm-first').addEventListener('click', () => loadMsgs({ offset: 0 }).catch((e) => handleFail(e)));
    $('rm-prev').addEventListener('click', () => loadPrev().catch((e) => handleFail(e)));
    $('rm-next').addEventListener('click', () => room.next && loadMsgs(room.next, [...room.pages, room.next]).catch((e) => handleFail(e)));
    $('rm-newest').addEventListener('click', () => loadNewest().catch((e) => handleFail(e)));
    $('rm-clear').addEventListener('click', clearRoom);
    $('rm-push').addEventListener('submit', pushToRoom);
  }

  wire();
  session = loadSession();
  applySession();
  route();
  // For tests and the curious: what the page is showing, never the key.
  window.hookwireConsole = { get view() { return currentView; }, get role() { return session?.role ?? null; } };
})();
