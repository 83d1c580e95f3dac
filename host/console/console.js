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

  /** A modal confirmation; with `word`, the user must type it (deletes). Resolves true/false. */
  function confirmAction(text, { title = 'Are you sure?', ok = 'Confirm', word = null } = {}) {
    const d = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = ok;
    const typed = $('confirm-type');
    $('confirm-type-wrap').hidden = !word;
    $('confirm-word').textContent = word || '';
    typed.value = '';
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
      (word ? typed : $('confirm-cancel')).focus();
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

  const VIEWS = ['signin', 'overview', 'tenants', 'plugins', 'rooms'];
  const ADMIN_ONLY = new Set(['tenants', 'plugins']);

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
    const run = { overview: showOverview, tenants: showTenants, plugins: showPlugins, rooms: showRooms }[view];
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
      out.push({ name: m[1], labels, value: Number(m[4]) });
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
    const tick = async () => {
      try { await pollOverview(); } catch (e) { handleFail(e); }
      if (token === viewToken && session) pollTimer = setTimeout(tick, POLL_MS);
    };
    await tick();
  }

  async function pollOverview() {
    const tenant = session.role === 'tenant' ? session.tenant : null;
    const [health, metricsText, stat] = await Promise.all([
      fetch('/healthz', { cache: 'no-store' }).then((r) => r.json()).catch((e) => ({ status: 'unreachable', error: e.message })),
      // Without metrics the page still shows health and stat.
      metricsRefused ?? api('GET', '/metrics').catch((e) => {
        if (e.http === 401) metricsRefused = e;
        return e;
      }),
      tenant ? api('GET', `/admin/monitor/stat?${tq(tenant)}`) : null,
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

  /** `#rooms/<tenant>/<room>` opens that room, so a room can be linked to. */
  async function showRooms(arg, _token, roomId) {
    $('rm-tenant-wrap').hidden = session.role !== 'admin';
    await fillTenantSelect($('rm-tenant'), arg || $('rm-tenant').value);
    if (roomId) {
      $('rm-room').value = roomId;
      await openRoom();
    } else if (!room) {
      $('rm-detail').hidden = true;
    }
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
    $('rm-users').replaceChildren(...(r.users.length ? r.users.map((u) => el('li', { text: u.uid })) : [el('li', { class: 'muted', text: 'nobody' })]));
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
    $('rm-tenant').addEventListener('change', () => { room = null; $('rm-detail').hidden = true; });
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
