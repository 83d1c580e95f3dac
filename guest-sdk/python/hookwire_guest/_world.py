"""The component side of hookwire_guest: turns a plugin module into the
``WitWorld`` class componentize-py exports. Only imported inside a build
(it needs the generated ``wit_world`` bindings)."""

from __future__ import annotations

import traceback
from typing import Any

import wit_world
from wit_world.imports import host as h
from wit_world.imports import types as t

from . import (
    AuthRequest,
    Context,
    JoinRequest,
    MsgEvent,
    PushRequest,
    RawMsgEvent,
    Verdict,
    _dumps,
    _parse,
)

_HOOKS = [
    ("authenticate", t.Hooks.AUTHENTICATE),
    ("on_join", t.Hooks.ON_JOIN),
    ("on_msg", t.Hooks.ON_MSG),
    ("on_raw_msg", t.Hooks.ON_MSG),
    ("storage_mode", t.Hooks.STORAGE_MODE),
    ("route_push", t.Hooks.ROUTE_PUSH),
]

_MODES = {
    t.StorageMode.INSERT: "insert",
    t.StorageMode.UPDATE: "update",
    t.StorageMode.IGNORE: "ignore",
}
_MODES_OUT = {v: k for k, v in _MODES.items()}


def _ctx(c: t.Context) -> Context:
    return Context(c.tenant, c.sid, c.uid, c.device)


def _bad(hook: str, v: Any, expected: str) -> TypeError:
    return TypeError(f"{hook} returned {v!r}; expected {expected}")


def make_world(plugin, name: str, version: str):
    """The ``WitWorld`` class for ``plugin`` (a module)."""

    def has(fn: str) -> bool:
        return callable(getattr(plugin, fn, None))

    hooks = t.Hooks(0)
    for fn, flag in _HOOKS:
        if has(fn):
            hooks |= flag
    info = t.PluginInfo(
        str(getattr(plugin, "NAME", name)), str(getattr(plugin, "VERSION", version)), hooks
    )

    def guarded(hook: str, f):
        # An exception traps the instance (the host fails the hook closed, or
        # open if the tenant chose so); log why first, stderr goes nowhere.
        def call(*args):
            try:
                return f(*args)
            except BaseException as e:
                try:
                    h.log(
                        h.Level.ERROR,
                        f"{info.name}: {hook} raised: {''.join(traceback.format_exception(e))}",
                    )
                except BaseException:
                    pass
                raise

        return call

    def authenticate(ctx, req):
        if not has("authenticate"):
            return t.AuthVerdict_Defer()
        v = plugin.authenticate(
            _ctx(ctx), AuthRequest(req.uid, req.token, _parse(req.payload), req.query)
        )
        if isinstance(v, Verdict):
            if v.tag == "allow" and v.value is not None:
                uid, rooms, claims = v.value
                return t.AuthVerdict_Allow(t.AuthAllow(uid, list(rooms), _dumps(claims, "claims")))
            if v.tag == "deny":
                return t.AuthVerdict_Deny(v.value)
            if v.tag == "defer":
                return t.AuthVerdict_Defer()
        raise _bad("authenticate", v, "allow(uid), deny(reason) or defer()")

    def on_join(ctx, req):
        if not has("on_join"):
            return t.JoinVerdict_Allow()
        v = plugin.on_join(_ctx(ctx), JoinRequest(req.room, req.dummy))
        if isinstance(v, Verdict):
            if v.tag == "allow":
                return t.JoinVerdict_Allow()
            if v.tag == "deny":
                return t.JoinVerdict_Deny(v.value)
        raise _bad("on_join", v, "allow() or deny(reason)")

    def msg_out(v):
        if isinstance(v, Verdict):
            if v.tag == "pass":
                return t.MsgVerdict_Pass()
            if v.tag == "drop":
                return t.MsgVerdict_Drop(v.value)
            if v.tag == "rewrite":
                return t.MsgVerdict_Rewrite(_dumps(v.value, "the rewritten msg"))
            if v.tag == "reply":
                event, data = v.value
                return t.MsgVerdict_Reply(t.Reply(event, _dumps(data, "reply data")))
            if v.tag == "redirect":
                rooms, users, msg = v.value
                m = None if msg is None else _dumps(msg, "the redirected msg")
                return t.MsgVerdict_Redirect(t.Redirect(rooms, users, m))
        raise _bad(
            "on_msg", v, "pass_(), drop(reason), rewrite(msg), reply(event, data) or redirect(...)"
        )

    def on_msg(ctx, ev):
        if has("on_raw_msg"):
            return msg_out(plugin.on_raw_msg(_ctx(ctx), RawMsgEvent(ev.room, ev.msg)))
        if not has("on_msg"):
            return t.MsgVerdict_Pass()
        return msg_out(plugin.on_msg(_ctx(ctx), MsgEvent(ev.room, _parse(ev.msg))))

    def storage_mode(ctx, ev, proposed):
        if not has("storage_mode"):
            return proposed
        v = plugin.storage_mode(_ctx(ctx), MsgEvent(ev.room, _parse(ev.msg)), _MODES[proposed])
        if v in _MODES_OUT:
            return _MODES_OUT[v]
        raise _bad("storage_mode", v, "'insert', 'update' or 'ignore'")

    def route_push(ctx, req):
        if not has("route_push"):
            return t.PushRoute_Deliver(list(req.rooms))
        v = plugin.route_push(_ctx(ctx), PushRequest(list(req.rooms), req.event, _parse(req.args)))
        if isinstance(v, Verdict):
            if v.tag == "deliver":
                return t.PushRoute_Deliver(list(v.value))
            if v.tag == "reject":
                return t.PushRoute_Reject(v.value)
        raise _bad("route_push", v, "deliver(rooms) or reject(reason)")

    calls = {
        "authenticate": guarded("authenticate", authenticate),
        "on_join": guarded("on_join", on_join),
        "on_msg": guarded("on_msg", on_msg),
        "storage_mode": guarded("storage_mode", storage_mode),
        "route_push": guarded("route_push", route_push),
    }

    class WitWorld(wit_world.WitWorld):
        def describe(self) -> t.PluginInfo:
            return info

        def authenticate(self, ctx, req):
            return calls["authenticate"](ctx, req)

        def on_join(self, ctx, req):
            return calls["on_join"](ctx, req)

        def on_msg(self, ctx, ev):
            return calls["on_msg"](ctx, ev)

        def storage_mode(self, ctx, ev, proposed):
            return calls["storage_mode"](ctx, ev, proposed)

        def route_push(self, ctx, req):
            return calls["route_push"](ctx, req)

    return WitWorld
