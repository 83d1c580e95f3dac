"""sign-check in Python: the same verdicts as plugins/sign-check (Rust).

egg-socket.io's handshake signature, bound to the user: sign = md5(app + key
+ timestamp + uid) in hex; config {"apps": {"app": "KEY" or {"key": "KEY"}},
"window_ms": 300000, "bind_uid": true}. Each signature logs in once
(remembered in kv for twice the window). Fields come from the auth payload,
else its ``meta`` object, else the handshake query; no ``sign`` → defer.
"""

import hashlib
import hmac
import re

from hookwire_guest import allow, config_state, defer, deny, id_string, kv, log, now_ms

U64_MAX = 2**64 - 1


def compile_config(cfg):
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ValueError("config is not an object")
    apps, window, bind_uid = {}, 300000, True
    for k, v in cfg.items():
        if k == "apps":
            if not isinstance(v, dict):
                raise ValueError("`apps` must be a map")
            for app, key in v.items():
                if isinstance(key, dict):
                    key = key.get("key")
                if not isinstance(key, str):
                    raise ValueError(f'apps.{app} must be "KEY" or {{"key": "KEY"}}')
                apps[app] = key
        elif k == "window_ms":
            if type(v) is not int or not 0 <= v <= U64_MAX:
                raise ValueError("`window_ms` must be a non-negative integer")
            window = v
        elif k == "bind_uid":
            if not isinstance(v, bool):
                raise ValueError("`bind_uid` must be a boolean")
            bind_uid = v
        else:
            raise ValueError(f"unknown field `{k}`")
    return apps, window, bind_uid


def from_json(obj):
    """The signed fields of a JSON object, or None when it has no sign."""
    if not isinstance(obj, dict) or id_string(obj.get("sign")) is None:
        return None
    f = lambda k: id_string(obj.get(k))  # noqa: E731
    return {"app": f("app"), "timestamp": f("timestamp"), "sign": f("sign"), "uid": f("uid") or f("userId")}


def from_query(req):
    q = lambda k: req.query_param(k) or None  # noqa: E731
    if q("sign") is None:
        return None
    return {"app": q("app"), "timestamp": q("timestamp"), "sign": q("sign"), "uid": q("uid") or q("userId")}


def lower(s):
    return re.sub("[A-Z]", lambda m: m.group().lower(), s)


def verify(cfg, s, now):
    apps, window, bind_uid = cfg
    app, ts, uid = s["app"], s["timestamp"], s["uid"]
    if app is None:
        return deny("signed auth without app")
    if app not in apps:
        return deny(f"unknown app: {app}")
    if ts is None:
        return deny("signed auth without timestamp")
    if not re.fullmatch(r"\+?[0-9]+", ts, re.ASCII) or int(ts) > U64_MAX:
        return deny("timestamp is not unix milliseconds")
    if uid is None:
        return deny("signed auth without uid or userId")
    text = app + apps[app] + ts + (uid if bind_uid else "")
    expected = hashlib.md5(text.encode()).hexdigest()
    if not hmac.compare_digest(expected.encode(), lower(s["sign"]).encode()):
        return deny("bad sign")
    if abs(now - int(ts)) > window:
        return deny(f"stale timestamp: more than {window} ms from server time")
    return allow(uid, claims={"app": app})


def compiled(cfg):
    try:
        return compile_config(cfg)
    except ValueError as e:
        return str(e)


def authenticate(ctx, req):
    payload = req.payload
    s = from_json(payload) or from_json(payload.get("meta") if isinstance(payload, dict) else None) or from_query(req)
    if s is None:
        return defer()
    if s["uid"] is None and req.uid:
        s["uid"] = req.uid
    cfg = config_state(compiled)
    if isinstance(cfg, str):
        log.error(f"sign-check: invalid plugin config: {cfg}")
        return deny("sign-check is misconfigured")
    v = verify(cfg, s, now_ms())
    if v.tag != "allow":
        return v
    ttl = max(min(cfg[1] * 2, U64_MAX), 1000)
    if kv.incr("seen:" + lower(s["sign"]), 1, ttl) > 1:
        return deny("signature already used")
    return v
