"""Write hookwire policy plugins in Python.

A plugin is one module that defines the hooks it implements, as plain
functions: ``authenticate(ctx, req)``, ``on_join(ctx, req)``,
``on_msg(ctx, ev)`` (or ``on_raw_msg(ctx, ev)``), ``storage_mode(ctx, ev,
proposed)``, ``route_push(ctx, req)``. ``build.py`` wraps it into a
WebAssembly component of the world ``hookwire:policy/policy@0.1.0``
(``wit/policy.wit``) with componentize-py; ``describe`` then reports exactly
the hooks the module defines, and the others keep the server's built-in
behaviour.

JSON fields (``msg``, ``payload``, ``args``, claims, reply data) arrive
parsed and are serialized on the way out: a plugin sees dicts, lists, str,
int, float, bool and None only.

    from hookwire_guest import pass_, rewrite

    def on_msg(ctx, ev):
        if not isinstance(ev.msg.get("data"), str):
            return pass_()
        return rewrite({**ev.msg, "data": ev.msg["data"].upper()})
"""

from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import unquote_to_bytes as _unquote_to_bytes

try:  # inside a component: the bindings componentize-py generates
    from wit_world.imports import host as _host
except ImportError:  # natively (unit tests): set hookwire_guest._host yourself
    _host = None

__all__ = [
    "pass_", "drop", "rewrite", "reply", "redirect", "to_users", "to_rooms",
    "allow", "deny", "defer", "deliver", "reject",
    "INSERT", "UPDATE", "IGNORE",
    "Verdict", "Context", "AuthRequest", "JoinRequest", "MsgEvent", "RawMsgEvent", "PushRequest",
    "id_string", "query_param", "log", "config", "config_state", "kv", "now_ms", "random_bytes",
    "http", "HttpError",
]


# ------------------------------------------------------------------ verdicts

@dataclass(frozen=True)
class Verdict:
    """What a hook answers; build it with the functions below."""

    tag: str
    value: Any = None


def pass_() -> Verdict:
    """on_msg: relay as is (``pass`` is a Python keyword)."""
    return Verdict("pass")


def drop(reason: str) -> Verdict:
    """on_msg: refuse with a reason the sender sees (not relayed, not stored)."""
    return Verdict("drop", str(reason))


def rewrite(msg: Any) -> Verdict:
    """on_msg: relay (and store) ``msg`` (a JSON object) instead."""
    return Verdict("rewrite", msg)


def reply(event: str, data: Any = None) -> Verdict:
    """on_msg: send ``data`` as ``event`` to the sender only."""
    return Verdict("reply", (str(event), data))


def redirect(rooms=(), users=(), msg: Any = None) -> Verdict:
    """on_msg: deliver to these rooms / users instead (``msg``: a replacement payload)."""
    return Verdict("redirect", ([str(r) for r in rooms], [str(u) for u in users], msg))


def to_users(users, msg: Any = None) -> Verdict:
    """on_msg: deliver to these users only (their user rooms)."""
    return redirect(users=users, msg=msg)


def to_rooms(rooms, msg: Any = None) -> Verdict:
    """on_msg: deliver to these rooms only."""
    return redirect(rooms=rooms, msg=msg)


def allow(uid: Any = None, rooms=(), claims: Optional[Dict[str, Any]] = None) -> Verdict:
    """authenticate: ``allow(uid, rooms=[...], claims={...})`` accepts the socket
    as ``uid``. on_join: ``allow()`` lets it join."""
    if uid is None:
        return Verdict("allow")
    return Verdict("allow", (str(uid), [str(r) for r in rooms], {} if claims is None else claims))


def deny(reason: str) -> Verdict:
    """authenticate / on_join: refuse, with the reason the client sees."""
    return Verdict("deny", str(reason))


def defer() -> Verdict:
    """authenticate: not this plugin's business (next plugin, then the token check)."""
    return Verdict("defer")


def deliver(rooms) -> Verdict:
    """route_push: deliver to these rooms."""
    return Verdict("deliver", [str(r) for r in rooms])


def reject(reason: str) -> Verdict:
    """route_push: refuse the push with a reason."""
    return Verdict("reject", str(reason))


INSERT = "insert"
UPDATE = "update"
IGNORE = "ignore"


# -------------------------------------------------------------- hook inputs

@dataclass
class Context:
    """Who the hook runs for (always one tenant)."""

    tenant: str = ""
    sid: Optional[str] = None
    uid: Optional[str] = None
    device: Optional[str] = None


@dataclass
class AuthRequest:
    """The ``authenticate`` payload or handshake ``auth`` object."""

    uid: Optional[str] = None
    token: Optional[str] = None
    payload: Any = None
    query: str = ""

    def query_param(self, name: str) -> Optional[str]:
        """The first value of ``name`` in the handshake query, decoded."""
        return query_param(self.query, name)


@dataclass
class JoinRequest:
    room: str = ""
    dummy: bool = False


@dataclass
class MsgEvent:
    room: str = ""
    msg: Any = None


@dataclass
class RawMsgEvent:
    """A ``msg`` whose message is still JSON text (see ``on_raw_msg``)."""

    room: str = ""
    msg: str = "null"

    def parse(self) -> MsgEvent:
        return MsgEvent(self.room, _parse(self.msg))

    def might_contain(self, needle: str) -> bool:
        """False only when ``needle`` cannot be in any key or string of the message."""
        return needle in self.msg or "\\" in self.msg


@dataclass
class PushRequest:
    rooms: List[str] = field(default_factory=list)
    event: str = ""
    args: Any = None


# ------------------------------------------------------------------ helpers

def _parse(text: str) -> Any:
    try:
        return _json.loads(text)
    except ValueError:
        return None


def _float_text(f: float) -> str:
    """A float as serde_json (ryu) writes it: 1e16, 1.5e-7, 100.0."""
    r = repr(f)
    if r in ("inf", "-inf", "nan"):
        return r
    sign = "-" if r.startswith("-") else ""
    r = r.lstrip("-")
    mant, _, exp = r.partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.<digits> * 10**kk
    point = len(whole) + (int(exp) if exp else 0)
    lead_zeros = len(whole + frac) - len((whole + frac).lstrip("0"))
    kk = point - lead_zeros
    digits = digits.rstrip("0") or "0"
    if digits == "0":
        return sign + "0.0"
    n = len(digits)
    if n <= kk <= 16:
        return sign + digits + "0" * (kk - n) + ".0"
    if 0 < kk <= 16:
        return sign + digits[:kk] + "." + digits[kk:]
    if -5 < kk <= 0:
        return sign + "0." + "0" * (-kk) + digits
    if n == 1:
        return f"{sign}{digits}e{kk - 1}"
    return f"{sign}{digits[0]}.{digits[1:]}e{kk - 1}"


def id_string(v: Any) -> Optional[str]:
    """A JSON id (uid, room) in the string form hookwire compares ids by:
    non-empty strings as they are, numbers in their JSON form, else None."""
    if isinstance(v, str):
        return v or None
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float_text(v)
    return None


def _form_decode(s: str) -> str:
    return _unquote_to_bytes(s.replace("+", " ")).decode("utf-8", "replace")


def query_param(query: str, name: str) -> Optional[str]:
    """The first value of ``name`` in an ``application/x-www-form-urlencoded``
    query string (the handshake query), decoded; None when absent."""
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        if _form_decode(k) == name:
            return _form_decode(v)
    return None


def _dumps(v: Any, what: str) -> str:
    try:
        return _json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON: {e}") from None


# ------------------------------------------------------------- host imports

def _h():
    if _host is None:
        raise RuntimeError("hookwire_guest: no host (not running in a component)")
    return _host


class _Log:
    """Structured logs through the host, tagged with tenant and plugin."""

    def _at(self, level: str, parts) -> None:
        h = _h()
        msg = " ".join(p if isinstance(p, str) else repr(p) for p in parts)
        h.log(getattr(h.Level, level), msg)

    def trace(self, *parts) -> None:
        self._at("TRACE", parts)

    def debug(self, *parts) -> None:
        self._at("DEBUG", parts)

    def info(self, *parts) -> None:
        self._at("INFO", parts)

    def warn(self, *parts) -> None:
        self._at("WARN", parts)

    def error(self, *parts) -> None:
        self._at("ERROR", parts)


log = _Log()

_config: List[Any] = []
_states: Dict[Any, Any] = {}


def config() -> Any:
    """This plugin's config (the manifest's ``config``), parsed; None when none
    was set. Asked from the host once per instance (a config change is a new
    plugin version, run in new instances). Do not call it at module level:
    that runs at build time, where there is no host."""
    if not _config:
        _config.append(_parse(_h().config()))
    return _config[0]


def config_state(build: Callable[[Any], Any], key: Any = None) -> Any:
    """``build(config())``, computed once per instance and kept for its life.
    Slots are keyed by ``key``, by default the code of ``build``, so a lambda
    written in a hook is built once too."""
    k = getattr(build, "__code__", build) if key is None else key
    if k not in _states:
        _states[k] = build(config())
    return _states[k]


def _ms(ttl_ms) -> int:
    return max(0, int(ttl_ms or 0))


class _Kv:
    """The tenant's key-value store (keys private to the plugin); TTLs in ms,
    0 = no expiry."""

    def get(self, key: str) -> Optional[bytes]:
        return _h().kv_get(key)

    def get_text(self, key: str) -> Optional[str]:
        b = _h().kv_get(key)
        return None if b is None else b.decode("utf-8", "replace")

    def get_json(self, key: str) -> Any:
        t = self.get_text(key)
        return None if t is None else _json.loads(t)

    def set(self, key: str, value, ttl_ms: int = 0) -> None:
        data = value.encode() if isinstance(value, str) else bytes(value)
        _h().kv_set(key, data, _ms(ttl_ms))

    def set_json(self, key: str, value: Any, ttl_ms: int = 0) -> None:
        self.set(key, _dumps(value, "the kv value"), ttl_ms)

    def incr(self, key: str, delta: int = 1, ttl_ms: int = 0) -> int:
        """Atomically adds ``delta`` (missing = 0) and returns the new value;
        the TTL applies when the key is created."""
        return _h().kv_incr(key, int(delta), _ms(ttl_ms))


kv = _Kv()


def now_ms() -> int:
    """Wall clock, unix milliseconds, as the host sees it."""
    return _h().now_ms()


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the host's secure random source."""
    return _h().random_bytes(n)


class HttpError(Exception):
    """No HTTP response: host not allowed, connection error or timeout."""


@dataclass
class HttpResponse:
    status: int
    headers: List[tuple]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> Optional[str]:
        n = name.lower()
        return next((v for k, v in self.headers if k.lower() == n), None)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.body)


class _Http:
    def fetch(self, url: str, method: str = "GET", headers=(), body=None) -> HttpResponse:
        """Outbound HTTP to a host on the manifest's ``allowed_hosts``; any
        status is a response, no response raises HttpError."""
        h = _h()
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if isinstance(body, str):
            body = body.encode()
        req = h.HttpRequest(method, url, [(str(k), str(v)) for k, v in pairs], body)
        try:
            r = h.http_fetch(req)
        except Exception as e:  # componentize_py_types.Err
            raise HttpError(f"http request failed: {getattr(e, 'value', e)}") from None
        return HttpResponse(r.status, list(r.headers), bytes(r.body))


http = _Http()
