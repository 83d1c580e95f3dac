//! The host's hook inputs as WIT records. They borrow the caller's strings:
//! a chain converts its input once and lends it to every plugin, so the only
//! copy is the one into the guest.

use super::bindings as b;
use hookwire_core::policy::{AuthRequest, HookContext, MsgEvent, PushRequest};

pub(crate) fn to_ctx(c: &HookContext) -> b::Context<'_> {
    b::Context {
        tenant: &c.tenant,
        sid: c.sid.as_deref(),
        uid: c.uid.as_deref(),
        device: c.device.as_deref(),
    }
}

/// `payload` is `req.payload` as JSON text.
pub(crate) fn to_auth<'a>(req: &'a AuthRequest, payload: &'a str) -> b::AuthRequest<'a> {
    b::AuthRequest {
        uid: req.uid.as_deref(),
        token: req.token.as_deref(),
        payload,
        query: &req.query,
    }
}

/// `json` is the message as JSON text: `ev.json()`, or a rewrite's.
pub(crate) fn to_msg<'a>(ev: &'a MsgEvent, json: &'a str) -> b::MsgEvent<'a> {
    b::MsgEvent {
        room: &ev.room,
        msg: json,
    }
}

/// `rooms` may differ from `req.rooms`: a chain passes each plugin the
/// rooms the previous one chose. `args` is `req.args` as JSON text (a
/// `Vec<Value>` serialises as the JSON array, without a clone).
pub(crate) fn to_push<'a>(
    req: &'a PushRequest,
    rooms: &'a [&'a str],
    args: &'a str,
) -> b::PushRequest<'a> {
    b::PushRequest {
        rooms,
        event: &req.event,
        args,
    }
}

pub(crate) fn str_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
