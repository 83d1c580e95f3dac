// @hookwire/guest: the runtime half of the JavaScript guest SDK.
//
// A plugin imports its helpers from '@hookwire/guest' (the build maps that
// name to this file); they are also set as globals, so a plugin of three
// lines needs no import at all. `build.mjs` wraps the plugin in an entry
// module that calls `exportsFor(plugin)` and exports the six functions of
// the `hookwire:policy/policy@0.1.0` world (wit/policy.wit).
//
// Values cross the component boundary as componentize-js maps WIT types:
// records are objects with camelCase fields, variants `{tag, val}`, enums
// strings, flags objects of booleans, u64/s64 BigInt, list<u8> Uint8Array.
// The `json` (string) fields are parsed on the way in and serialized on the
// way out, so a plugin only sees plain JavaScript values.

import * as sys from 'hookwire:policy/host@0.1.0';

// ---------------------------------------------------------------- verdicts

/** on-msg: relay as is. */
export function pass() {
  return { tag: 'pass' };
}

/** on-msg: refuse with a reason the sender sees (not relayed, not stored). */
export function drop(reason) {
  return { tag: 'drop', val: String(reason) };
}

/** on-msg: relay (and store) `msg` (a JSON object) instead. */
export function rewrite(msg) {
  return { tag: 'rewrite', val: msg };
}

/** on-msg: send `data` as `event` to the sender only. */
export function reply(event, data = null) {
  return { tag: 'reply', val: { event: String(event), data } };
}

/**
 * on-msg: relay elsewhere. `{rooms, users, msg}`: rooms and uids to deliver
 * to instead of the sender's room, and an optional replacement payload.
 */
export function redirect({ rooms = [], users = [], msg } = {}) {
  return {
    tag: 'redirect',
    val: { rooms: rooms.map(String), users: users.map(String), msg },
  };
}

/** on-msg: deliver to these users only (their user rooms). */
export function toUsers(users, msg) {
  return redirect({ users, msg });
}

/** on-msg: deliver to these rooms only. */
export function toRooms(rooms, msg) {
  return redirect({ rooms, msg });
}

/**
 * authenticate: `allow(uid, {rooms, claims})` accepts the socket as `uid`
 * (extra rooms to join, claims kept on the socket: a JSON object).
 * on-join: `allow()` lets the socket join.
 */
export function allow(uid, { rooms = [], claims = {} } = {}) {
  if (uid === undefined || uid === null) return { tag: 'allow' };
  return { tag: 'allow', val: { uid: String(uid), rooms: rooms.map(String), claims } };
}

/** authenticate / on-join: refuse, with the reason the client sees. */
export function deny(reason) {
  return { tag: 'deny', val: String(reason) };
}

/** authenticate: not this plugin's business (next plugin, then the token check). */
export function defer() {
  return { tag: 'defer' };
}

/** route-push: deliver to these rooms. */
export function deliver(rooms) {
  return { tag: 'deliver', val: rooms.map(String) };
}

/** route-push: refuse the push with a reason. */
export function reject(reason) {
  return { tag: 'reject', val: String(reason) };
}

/** storage-mode values. */
export const INSERT = 'insert';
export const UPDATE = 'update';
export const IGNORE = 'ignore';

// ------------------------------------------------------------- small helpers

/**
 * A JSON id (uid, room) in the string form hookwire compares ids by:
 * non-empty strings as they are, numbers in decimal; `undefined` otherwise.
 */
export function idString(v) {
  if (typeof v === 'string') return v === '' ? undefined : v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'bigint') return v.toString();
  return undefined;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: false });

function pctDecode(s) {
  s = s.replace(/\+/g, ' ');
  if (!s.includes('%')) return s;
  const bytes = utf8.encode(s);
  const out = new Uint8Array(bytes.length);
  let n = 0;
  const hex = (b) =>
    b >= 48 && b <= 57 ? b - 48 : b >= 65 && b <= 70 ? b - 55 : b >= 97 && b <= 102 ? b - 87 : -1;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 37 && i + 2 < bytes.length) {
      const h = hex(bytes[i + 1]);
      const l = hex(bytes[i + 2]);
      if (h >= 0 && l >= 0) {
        out[n++] = h * 16 + l;
        i += 2;
        continue;
      }
    }
    out[n++] = bytes[i];
  }
  return fromUtf8.decode(out.subarray(0, n));
}

/**
 * The first value of `name` in an `application/x-www-form-urlencoded` query
 * string (the handshake query), decoded; `undefined` when absent.
 */
export function queryParam(query, name) {
  for (const part of String(query).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = pctDecode(eq < 0 ? part : part.slice(0, eq));
    if (k === name) return pctDecode(eq < 0 ? '' : part.slice(eq + 1));
  }
  return undefined;
}

/** UTF-8 bytes of a string. */
export function encodeUtf8(s) {
  return utf8.encode(String(s));
}

/** A string from UTF-8 bytes (invalid sequences become U+FFFD). */
export function decodeUtf8(bytes) {
  return fromUtf8.decode(bytes);
}

// md5 (RFC 1321), for egg-socket.io style signatures; SpiderMonkey has no
// synchronous digest.
const MD5_S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
const MD5_K = Array.from({ length: 64 }, (_, i) => (Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);

/** md5 of a string (its UTF-8 bytes) or of bytes, as lower-case hex. */
export function md5Hex(input) {
  const data = typeof input === 'string' ? utf8.encode(input) : input;
  const len = data.length;
  const blocks = ((len + 8) >>> 6) + 1;
  const buf = new Uint8Array(blocks * 64);
  buf.set(data);
  buf[len] = 0x80;
  const view = new DataView(buf.buffer);
  view.setUint32(buf.length - 8, (len * 8) >>> 0, true);
  view.setUint32(buf.length - 4, Math.floor(len / 0x20000000), true);
  let a0 = 0x67452301;
  let b0 = 0xefcdab89;
  let c0 = 0x98badcfe;
  let d0 = 0x10325476;
  const m = new Array(16);
  for (let off = 0; off < buf.length; off += 64) {
    for (let j = 0; j < 16; j++) m[j] = view.getUint32(off + j * 4, true);
    let a = a0;
    let b = b0;
    let c = c0;
    let d = d0;
    for (let i = 0; i < 64; i++) {
      let f;
      let g;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const s = MD5_S[(i >> 4) * 4 + (i & 3)];
      const t = (a + f + MD5_K[i] + m[g]) | 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((t << s) | (t >>> (32 - s)))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  let hex = '';
  for (const w of [a0, b0, c0, d0]) {
    for (let i = 0; i < 4; i++) hex += ((w >>> (8 * i)) & 0xff).toString(16).padStart(2, '0');
  }
  return hex;
}

// -------------------------------------------------------------- host imports

function logAt(level) {
  return (...parts) =>
    sys.log(level, parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(' '));
}

/** Structured logs through the host, tagged with tenant and plugin. */
export const log = {
  trace: logAt('trace'),
  debug: logAt('debug'),
  info: logAt('info'),
  warn: logAt('warn'),
  error: logAt('error'),
};

let configText;
let configValue;

/**
 * This plugin's config (the manifest's `config`), parsed; `null` when none
 * was set. Read from the host once per instance: a config change is a new
 * plugin version, run in new instances. Do not call it at the top level of
 * the plugin file (that runs at build time, where there is no host).
 */
export function config() {
  if (configText === undefined) {
    configText = sys.config();
    try {
      configValue = JSON.parse(configText);
    } catch {
      configValue = null;
    }
  }
  return configValue;
}

const states = new Map();

/**
 * `build(config())`, computed once per instance and kept for its life: a
 * compiled word list, a lookup table. Slots are keyed by `key`, by default
 * the source text of `build`, so an inline arrow function is built once too.
 */
export function configState(build, key = String(build)) {
  if (!states.has(key)) states.set(key, build(config()));
  return states.get(key);
}

const ms = (v) => BigInt(Math.max(0, Math.ceil(Number(v) || 0)));

/**
 * The tenant's key-value store (keys are private to the plugin). TTLs are in
 * milliseconds, 0 or absent = no expiry.
 */
export const kv = {
  /** The bytes under `key`, or `undefined`. */
  get(key) {
    return sys.kvGet(String(key));
  },
  /** The value under `key` as text, or `undefined`. */
  getText(key) {
    const b = sys.kvGet(String(key));
    return b === undefined ? undefined : fromUtf8.decode(b);
  },
  /** The value under `key` parsed from JSON, or `undefined`. */
  getJson(key) {
    const t = kv.getText(key);
    return t === undefined ? undefined : JSON.parse(t);
  },
  /** Stores bytes or a string under `key`. */
  set(key, value, ttlMs = 0) {
    const bytes = value instanceof Uint8Array ? value : utf8.encode(String(value));
    sys.kvSet(String(key), bytes, ms(ttlMs));
  },
  /** Stores `value` as JSON. */
  setJson(key, value, ttlMs = 0) {
    kv.set(key, JSON.stringify(value), ttlMs);
  },
  /**
   * Atomically adds `delta` to the integer under `key` (missing = 0) and
   * returns the new value; the TTL applies when the key is created.
   */
  incr(key, delta = 1, ttlMs = 0) {
    return Number(sys.kvIncr(String(key), BigInt(Math.trunc(delta)), ms(ttlMs)));
  },
};

/** Wall clock, unix milliseconds, as the host sees it. */
export function nowMs() {
  return Number(sys.nowMs());
}

/** `len` bytes from the host's secure random source. */
export function randomBytes(len) {
  return sys.randomBytes(len >>> 0);
}

/**
 * Outbound HTTP, only to hosts on the manifest's `allowed_hosts`.
 * `fetch({method, url, headers, body})` (headers an object or a list of
 * pairs, body a string or bytes) returns `{status, ok, headers, body,
 * text(), json()}`, for any status; it throws when no response arrived
 * (host not allowed, connection error, timeout).
 */
export const http = {
  fetch({ method = 'GET', url, headers = [], body } = {}) {
    const pairs = Array.isArray(headers)
      ? headers.map(([k, v]) => [String(k), String(v)])
      : Object.entries(headers).map(([k, v]) => [k, String(v)]);
    let bytes;
    if (body !== undefined && body !== null) {
      bytes = body instanceof Uint8Array ? body : utf8.encode(String(body));
    }
    let r;
    try {
      r = sys.httpFetch({ method, url: String(url), headers: pairs, body: bytes });
    } catch (e) {
      const why = e && e.payload !== undefined ? e.payload : e;
      throw new Error(`http request failed: ${why}`);
    }
    return {
      status: r.status,
      ok: r.status >= 200 && r.status < 300,
      headers: r.headers,
      body: r.body,
      header(name) {
        const n = String(name).toLowerCase();
        const h = r.headers.find(([k]) => k.toLowerCase() === n);
        return h ? h[1] : undefined;
      },
      text() {
        return fromUtf8.decode(r.body);
      },
      json() {
        return JSON.parse(fromUtf8.decode(r.body));
      },
    };
  },
};

// ------------------------------------------------------- the world's exports

// JSON numbers become JS numbers, except integers that a double cannot hold
// exactly (e.g. 64-bit ids): those become BigInts, which JSON.stringify
// writes back digit for digit (BigInt.prototype.toJSON below) and idString()
// reads. The reviver only runs when the text has a run of 16 digits.
const exact = (k, v, c) =>
  typeof v === 'number' && !Number.isSafeInteger(v) && c && /^-?[0-9]+$/.test(c.source) && c.source !== String(v)
    ? BigInt(c.source)
    : v;
const canRaw = typeof JSON.rawJSON === 'function';
if (canRaw) {
  Object.defineProperty(BigInt.prototype, 'toJSON', {
    value() {
      return JSON.rawJSON(this.toString());
    },
    writable: true,
    configurable: true,
  });
}

function parse(text) {
  try {
    return canRaw && /[0-9]{16}/.test(text) ? JSON.parse(text, exact) : JSON.parse(text);
  } catch {
    return null;
  }
}

/** Parses JSON text as the hooks' inputs are parsed (64-bit integers kept exact). */
export function parseJson(text) {
  return canRaw && /[0-9]{16}/.test(text) ? JSON.parse(text, exact) : JSON.parse(text);
}

const jsonText = (v, what) => {
  const t = JSON.stringify(v === undefined ? null : v);
  if (t === undefined) throw new TypeError(`${what} is not JSON`);
  return t;
};

const HOOKS = [
  ['authenticate', 'authenticate'],
  ['onJoin', 'onJoin'],
  ['onMsg', 'onMsg'],
  ['onRawMsg', 'onMsg'],
  ['storageMode', 'storageMode'],
  ['routePush', 'routePush'],
];

function context(c) {
  return { tenant: c.tenant, sid: c.sid, uid: c.uid, device: c.device };
}

function bad(hook, v, expected) {
  let shown;
  try {
    shown = JSON.stringify(v);
  } catch {
    shown = String(v);
  }
  return new TypeError(`${hook} returned ${shown}; expected ${expected}`);
}

/**
 * The six exports of the world for a plugin module's namespace object.
 * `describe` reports exactly the hooks the module exports; the others answer
 * with the server's built-in behaviour (the host never calls them).
 */
export function exportsFor(plugin, defaults = {}) {
  const has = (f) => typeof plugin[f] === 'function';
  const hooks = {
    authenticate: false,
    onJoin: false,
    onMsg: false,
    storageMode: false,
    routePush: false,
  };
  for (const [fn, flag] of HOOKS) if (has(fn)) hooks[flag] = true;
  const info = {
    name: String(plugin.name ?? defaults.name ?? 'plugin'),
    version: String(plugin.version ?? defaults.version ?? '0.1.0'),
    hooks,
  };

  // A throw becomes a trap (the host fails the hook closed, or open if the
  // tenant chose so); log the reason first, since stderr goes nowhere.
  const guarded = (hook, f) => (...args) => {
    try {
      return f(...args);
    } catch (e) {
      try {
        sys.log('error', `${info.name}: ${hook} threw: ${e && e.stack ? `${e}\n${e.stack}` : e}`);
      } catch {
        // the host is gone; trap anyway
      }
      throw e;
    }
  };

  const authenticate = (ctx, req) => {
    if (!has('authenticate')) return { tag: 'defer' };
    const v = plugin.authenticate(context(ctx), {
      uid: req.uid,
      token: req.token,
      payload: parse(req.payload),
      query: req.query,
      queryParam: (name) => queryParam(req.query, name),
    });
    switch (v && v.tag) {
      case 'allow':
        if (v.val && v.val.uid !== undefined) {
          return {
            tag: 'allow',
            val: {
              uid: String(v.val.uid),
              rooms: (v.val.rooms || []).map(String),
              claims: jsonText(v.val.claims ?? {}, 'claims'),
            },
          };
        }
        break;
      case 'deny':
        return { tag: 'deny', val: String(v.val) };
      case 'defer':
        return { tag: 'defer' };
    }
    throw bad('authenticate', v, 'allow(uid), deny(reason) or defer()');
  };

  const onJoin = (ctx, req) => {
    if (!has('onJoin')) return { tag: 'allow' };
    const v = plugin.onJoin(context(ctx), { room: req.room, dummy: req.dummy });
    switch (v && v.tag) {
      case 'allow':
        return { tag: 'allow' };
      case 'deny':
        return { tag: 'deny', val: String(v.val) };
    }
    throw bad('onJoin', v, 'allow() or deny(reason)');
  };

  const msgOut = (v) => {
    switch (v && v.tag) {
      case 'pass':
        return { tag: 'pass' };
      case 'drop':
        return { tag: 'drop', val: String(v.val) };
      case 'rewrite':
        return { tag: 'rewrite', val: jsonText(v.val, 'the rewritten msg') };
      case 'reply':
        return {
          tag: 'reply',
          val: { event: String(v.val.event), data: jsonText(v.val.data, 'reply data') },
        };
      case 'redirect':
        return {
          tag: 'redirect',
          val: {
            rooms: v.val.rooms || [],
            users: v.val.users || [],
            msg: v.val.msg === undefined ? undefined : jsonText(v.val.msg, 'the redirected msg'),
          },
        };
    }
    throw bad('onMsg', v, 'pass(), drop(reason), rewrite(msg), reply(event, data) or redirect({...})');
  };

  const onMsg = (ctx, ev) => {
    if (has('onRawMsg')) {
      const raw = {
        room: ev.room,
        msg: ev.msg,
        parse: () => ({ room: ev.room, msg: parse(ev.msg) }),
        mightContain: (needle) => ev.msg.includes(needle) || ev.msg.includes('\\'),
      };
      return msgOut(plugin.onRawMsg(context(ctx), raw));
    }
    if (!has('onMsg')) return { tag: 'pass' };
    return msgOut(plugin.onMsg(context(ctx), { room: ev.room, msg: parse(ev.msg) }));
  };

  const storageMode = (ctx, ev, proposed) => {
    if (!has('storageMode')) return proposed;
    const v = plugin.storageMode(context(ctx), { room: ev.room, msg: parse(ev.msg) }, proposed);
    if (v === 'insert' || v === 'update' || v === 'ignore') return v;
    throw bad('storageMode', v, "'insert', 'update' or 'ignore'");
  };

  const routePush = (ctx, req) => {
    if (!has('routePush')) return { tag: 'deliver', val: req.rooms };
    const v = plugin.routePush(context(ctx), {
      rooms: req.rooms,
      event: req.event,
      args: parse(req.args),
    });
    switch (v && v.tag) {
      case 'deliver':
        return { tag: 'deliver', val: (v.val || []).map(String) };
      case 'reject':
        return { tag: 'reject', val: String(v.val) };
    }
    throw bad('routePush', v, 'deliver(rooms) or reject(reason)');
  };

  return {
    describe: () => info,
    authenticate: guarded('authenticate', authenticate),
    onJoin: guarded('onJoin', onJoin),
    onMsg: guarded('onMsg', onMsg),
    storageMode: guarded('storageMode', storageMode),
    routePush: guarded('routePush', routePush),
  };
}

// Globals, so a plugin file may skip the import.
Object.assign(globalThis, {
  pass,
  drop,
  rewrite,
  reply,
  redirect,
  toUsers,
  toRooms,
  allow,
  deny,
  defer,
  deliver,
  reject,
  idString,
  parseJson,
  queryParam,
  md5Hex,
  log,
  config,
  configState,
  kv,
  nowMs,
  randomBytes,
  http,
});
