//! Glue between the generated `Guest` trait and [`Plugin`]: what
//! `#[plugin]` expands to refers to these items. Not part of the API.

use std::marker::PhantomData;

use serde_json::Value;

use crate::__bindings::Guest;
use crate::__bindings::hookwire::policy::types as wit;
use crate::{
    AuthRequest, AuthVerdict, Context, Hooks, JoinRequest, JoinVerdict, MsgEvent, MsgVerdict,
    Plugin, PushRequest, PushRoute, StorageMode,
};

/// What `describe` returns, fixed at compile time by `#[plugin]`.
pub struct StaticInfo {
    /// The plugin's name.
    pub name: &'static str,
    /// The plugin's version.
    pub version: &'static str,
    /// The hooks its `impl Plugin` defines.
    pub hooks: Hooks,
}

/// Implemented only by `#[plugin]`, and a supertrait of [`Plugin`]: so an
/// `impl Plugin` without the attribute (which would export nothing) does
/// not compile.
#[diagnostic::on_unimplemented(
    message = "`{Self}` implements `Plugin` without `#[hookwire_guest::plugin]`",
    label = "put `#[hookwire_guest::plugin]` on the `impl Plugin for {Self}` block",
    note = "the attribute exports the plugin and reports which hooks it defines"
)]
pub trait Describe {
    /// The plugin's metadata.
    const INFO: StaticInfo;
}

/// The type handed to wit-bindgen's export macro: it implements the
/// generated `Guest` trait for any plugin.
pub struct Adapter<T>(PhantomData<T>);

/// JSON text from the host. The host only sends valid JSON; should it not,
/// the plugin sees `null` rather than trapping on the host's mistake.
fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or(Value::Null)
}

fn context(c: wit::Context) -> Context {
    Context {
        tenant: c.tenant,
        sid: c.sid,
        uid: c.uid,
        device: c.device,
    }
}

fn msg_event(ev: wit::MsgEvent) -> MsgEvent {
    MsgEvent {
        room: ev.room,
        msg: parse(&ev.msg),
    }
}

fn storage_in(m: wit::StorageMode) -> StorageMode {
    match m {
        wit::StorageMode::Insert => StorageMode::Insert,
        wit::StorageMode::Update => StorageMode::Update,
        wit::StorageMode::Ignore => StorageMode::Ignore,
    }
}

fn storage_out(m: StorageMode) -> wit::StorageMode {
    match m {
        StorageMode::Insert => wit::StorageMode::Insert,
        StorageMode::Update => wit::StorageMode::Update,
        StorageMode::Ignore => wit::StorageMode::Ignore,
    }
}

impl<T: Plugin> Guest for Adapter<T> {
    fn describe() -> wit::PluginInfo {
        wit::PluginInfo {
            name: T::INFO.name.into(),
            version: T::INFO.version.into(),
            hooks: T::INFO.hooks,
        }
    }

    fn authenticate(ctx: wit::Context, req: wit::AuthRequest) -> wit::AuthVerdict {
        let req = AuthRequest {
            uid: req.uid,
            token: req.token,
            payload: parse(&req.payload),
            query: req.query,
        };
        match T::authenticate(&context(ctx), req) {
            AuthVerdict::Allow(a) => wit::AuthVerdict::Allow(wit::AuthAllow {
                uid: a.uid,
                rooms: a.rooms,
                claims: Value::Object(a.claims).to_string(),
            }),
            AuthVerdict::Deny(reason) => wit::AuthVerdict::Deny(reason),
            AuthVerdict::Defer => wit::AuthVerdict::Defer,
        }
    }

    fn on_join(ctx: wit::Context, req: wit::JoinRequest) -> wit::JoinVerdict {
        let req = JoinRequest {
            room: req.room,
            dummy: req.dummy,
        };
        match T::on_join(&context(ctx), req) {
            JoinVerdict::Allow => wit::JoinVerdict::Allow,
            JoinVerdict::Deny(reason) => wit::JoinVerdict::Deny(reason),
        }
    }

    fn on_msg(ctx: wit::Context, ev: wit::MsgEvent) -> wit::MsgVerdict {
        match T::on_msg(&context(ctx), msg_event(ev)) {
            MsgVerdict::Pass => wit::MsgVerdict::Pass,
            MsgVerdict::Drop(reason) => wit::MsgVerdict::Drop(reason),
            MsgVerdict::Rewrite(msg) => wit::MsgVerdict::Rewrite(msg.to_string()),
            MsgVerdict::Reply { event, data } => wit::MsgVerdict::Reply(wit::Reply {
                event,
                data: data.to_string(),
            }),
            MsgVerdict::Redirect(r) => wit::MsgVerdict::Redirect(wit::Redirect {
                rooms: r.rooms,
                users: r.users,
                msg: r.msg.map(|m| m.to_string()),
            }),
        }
    }

    fn storage_mode(
        ctx: wit::Context,
        ev: wit::MsgEvent,
        proposed: wit::StorageMode,
    ) -> wit::StorageMode {
        storage_out(T::storage_mode(
            &context(ctx),
            msg_event(ev),
            storage_in(proposed),
        ))
    }

    fn route_push(ctx: wit::Context, req: wit::PushRequest) -> wit::PushRoute {
        let req = PushRequest {
            rooms: req.rooms,
            event: req.event,
            args: parse(&req.args),
        };
        match T::route_push(&context(ctx), req) {
            PushRoute::Deliver(rooms) => wit::PushRoute::Deliver(rooms),
            PushRoute::Reject(reason) => wit::PushRoute::Reject(reason),
        }
    }
}
