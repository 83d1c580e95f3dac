// sign-check in JavaScript: the same verdicts as plugins/sign-check (Rust).
//
// egg-socket.io's handshake signature, bound to the user: sign = md5(app +
// key + timestamp + uid) in hex; config {"apps": {"app": "KEY" or {"key":
// "KEY"}}, "window_ms": 300000, "bind_uid": true}. Each signature logs in
// once (remembered in kv for twice the window). Fields come from the auth
// payload, else its `meta` object, else the handshake query; no `sign` →
// defer.
import { allow, deny, defer, idString, md5Hex, kv, nowMs, configState, log } from '@hookwire/guest';

function compile(cfg) {
  cfg ??= {};
  if (typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error('config is not an object');
  const c = { apps: new Map(), window: 300000n, bindUid: true };
  for (const [k, v] of Object.entries(cfg)) {
    if (k === 'apps') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('`apps` must be a map');
      for (const [app, key] of Object.entries(v)) {
        const secret = typeof key === 'string' ? key : key !== null && typeof key === 'object' && !Array.isArray(key) ? key.key : undefined;
        if (typeof secret !== 'string') throw new Error(`apps.${app} must be "KEY" or {"key": "KEY"}`);
        c.apps.set(app, secret);
      }
    } else if (k === 'window_ms') {
      if (!Number.isSafeInteger(v) || v < 0) throw new Error('`window_ms` must be a non-negative integer');
      c.window = BigInt(v);
    } else if (k === 'bind_uid') {
      if (typeof v !== 'boolean') throw new Error('`bind_uid` must be a boolean');
      c.bindUid = v;
    } else {
      throw new Error(`unknown field \`${k}\``);
    }
  }
  return c;
}

// The signed fields of a JSON object, or undefined when it has no sign.
function fromJson(obj) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return undefined;
  const sign = idString(obj.sign);
  if (sign === undefined) return undefined;
  const app = idString(obj.app);
  return { app, timestamp: idString(obj.timestamp), sign, uid: idString(obj.uid) ?? idString(obj.userId) };
}

function fromQuery(req) {
  const q = (k) => (req.queryParam(k) || undefined);
  const sign = q('sign');
  if (sign === undefined) return undefined;
  return { app: q('app'), timestamp: q('timestamp'), sign, uid: q('uid') ?? q('userId') };
}

const lower = (s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
const U64_MAX = 2n ** 64n - 1n;

// Compares without stopping at the first difference.
function same(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

function verify(cfg, s, now) {
  if (s.app === undefined) return deny('signed auth without app');
  const key = cfg.apps.get(s.app);
  if (key === undefined) return deny(`unknown app: ${s.app}`);
  if (s.timestamp === undefined) return deny('signed auth without timestamp');
  if (!/^\+?[0-9]+$/.test(s.timestamp) || BigInt(s.timestamp) > U64_MAX) {
    return deny('timestamp is not unix milliseconds');
  }
  if (s.uid === undefined) return deny('signed auth without uid or userId');
  const bound = cfg.bindUid ? s.uid : '';
  if (!same(md5Hex(s.app + key + s.timestamp + bound), lower(s.sign))) return deny('bad sign');
  const ts = BigInt(s.timestamp);
  if ((now > ts ? now - ts : ts - now) > cfg.window) {
    return deny(`stale timestamp: more than ${cfg.window} ms from server time`);
  }
  return allow(s.uid, { claims: { app: s.app } });
}

function compiled(cfg) {
  try {
    return compile(cfg);
  } catch (e) {
    return { error: e.message };
  }
}

export function authenticate(ctx, req) {
  const s = fromJson(req.payload) ?? fromJson(req.payload?.meta) ?? fromQuery(req);
  if (s === undefined) return defer();
  if (s.uid === undefined && req.uid) s.uid = req.uid;
  const cfg = configState(compiled); // once per instance
  if (cfg.error) {
    log.error(`sign-check: invalid plugin config: ${cfg.error}`);
    return deny('sign-check is misconfigured');
  }
  const v = verify(cfg, s, BigInt(nowMs()));
  if (v.tag !== 'allow') return v;
  const ttl = Number(cfg.window * 2n > 1000n ? cfg.window * 2n : 1000n);
  if (kv.incr(`seen:${lower(s.sign)}`, 1, ttl) > 1) return deny('signature already used');
  return v;
}
