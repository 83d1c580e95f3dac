//! Glue between the generated `Guest` trait and [`Plugin`]: what
//! `#[plugin]` expands to refers to these items. Not part of the API.

use std::marker::PhantomData;

use serde_json::Value;

use crate::__bindings::Guest;
use crate::__bindings::hookwire::policy::types as wit;
use crate::{
    AuthRequest, AuthVerdict, Context, Hooks, JoinRequest, JoinVerdict, MsgEvent, MsgVerdict,
    Plugin, PushRequest, PushRoute, RawMsgEvent, StorageMode,
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

/// JSON text for the host. `serde_json::to_string` writes into a byte
/// buffer; `Value::to_string` goes through `fmt` and costs about twice as
/// much.
fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
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
                claims: json_text(&a.claims),
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
        let ev = RawMsgEvent {
            room: ev.room,
            msg: ev.msg,
        };
        match T::on_raw_msg(&context(ctx), ev) {
            MsgVerdict::Pass => wit::MsgVerdict::Pass,
            MsgVerdict::Drop(reason) => wit::MsgVerdict::Drop(reason),
            MsgVerdict::Rewrite(msg) => wit::MsgVerdict::Rewrite(json_text(&msg)),
            MsgVerdict::Reply { event, data } => wit::MsgVerdict::Reply(wit::Reply {
                event,
                data: json_text(&data),
            }),
            MsgVerdict::Redirect(r) => wit::MsgVerdict::Redirect(wit::Redirect {
                rooms: r.rooms,
                users: r.users,
                msg: r.msg.map(|m| json_text(&m)),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Allow, Redirect};

    struct Everything;

    #[crate::plugin(name = "everything", version = "9.9.9")]
    impl Plugin for Everything {
        fn authenticate(ctx: &Context, req: AuthRequest) -> AuthVerdict {
            match req.payload_id("uid") {
                Some(uid) => Allow::new(uid)
                    .rooms([ctx.tenant.clone()])
                    .claim("q", req.query_param("x").unwrap_or_default())
                    .into(),
                None => AuthVerdict::Defer,
            }
        }
        fn on_join(_: &Context, req: JoinRequest) -> JoinVerdict {
            if req.dummy {
                JoinVerdict::Deny(req.room)
            } else {
                JoinVerdict::Allow
            }
        }
        fn on_msg(_: &Context, ev: MsgEvent) -> MsgVerdict {
            match ev.msg["kind"].as_str() {
                Some("reply") => MsgVerdict::Reply {
                    event: "pong".into(),
                    data: ev.msg,
                },
                Some("redirect") => Redirect::to_rooms(["elsewhere"])
                    .with_msg(json!({"x": 1}))
                    .into(),
                Some("rewrite") => MsgVerdict::Rewrite(json!({"room": ev.room})),
                _ => MsgVerdict::Pass,
            }
        }
        fn storage_mode(_: &Context, _: MsgEvent, proposed: StorageMode) -> StorageMode {
            match proposed {
                StorageMode::Insert => StorageMode::Ignore,
                other => other,
            }
        }
        fn route_push(_: &Context, req: PushRequest) -> PushRoute {
            match req.args.as_array() {
                Some(a) if a.is_empty() => PushRoute::Reject("no args".into()),
                _ => PushRoute::Deliver(req.rooms.into_iter().rev().collect()),
            }
        }
    }

    struct Nothing;

    #[crate::plugin]
    impl Plugin for Nothing {}

    fn ctx() -> wit::Context {
        wit::Context {
            tenant: "acme".into(),
            sid: None,
            uid: Some("1".into()),
            device: None,
        }
    }

    fn ev(msg: &str) -> wit::MsgEvent {
        wit::MsgEvent {
            room: "r1".into(),
            msg: msg.into(),
        }
    }

    type A = Adapter<Everything>;
    type N = Adapter<Nothing>;

    #[test]
    fn describe_reports_defined_hooks_only() {
        let info = <A as Guest>::describe();
        assert_eq!(
            (info.name.as_str(), info.version.as_str()),
            ("everything", "9.9.9")
        );
        assert_eq!(info.hooks, Hooks::all());
        let info = <N as Guest>::describe();
        assert_eq!(info.hooks, Hooks::empty());
        assert_eq!(info.name, "hookwire-guest");
    }

    #[test]
    fn authenticate_round_trip() {
        let req = |payload: &str| wit::AuthRequest {
            uid: None,
            token: None,
            payload: payload.into(),
            query: "x=y%21".into(),
        };
        match <A as Guest>::authenticate(ctx(), req(r#"{"uid": 1000}"#)) {
            wit::AuthVerdict::Allow(a) => {
                assert_eq!(a.uid, "1000");
                assert_eq!(a.rooms, ["acme"]);
                assert_eq!(
                    serde_json::from_str::<Value>(&a.claims).unwrap(),
                    json!({"q": "y!"})
                );
            }
            other => panic!("{other:?}"),
        }
        // Invalid JSON from the host reaches the plugin as null.
        assert!(matches!(
            <A as Guest>::authenticate(ctx(), req("{nope")),
            wit::AuthVerdict::Defer
        ));
        assert!(matches!(
            <N as Guest>::authenticate(ctx(), req("{}")),
            wit::AuthVerdict::Defer
        ));
    }

    #[test]
    fn msg_verdicts_round_trip() {
        assert!(matches!(
            <A as Guest>::on_msg(ctx(), ev("{}")),
            wit::MsgVerdict::Pass
        ));
        match <A as Guest>::on_msg(ctx(), ev(r#"{"kind":"reply"}"#)) {
            wit::MsgVerdict::Reply(r) => {
                assert_eq!(r.event, "pong");
                assert_eq!(
                    serde_json::from_str::<Value>(&r.data).unwrap(),
                    json!({"kind": "reply"})
                );
            }
            other => panic!("{other:?}"),
        }
        match <A as Guest>::on_msg(ctx(), ev(r#"{"kind":"redirect"}"#)) {
            wit::MsgVerdict::Redirect(r) => {
                assert_eq!(r.rooms, ["elsewhere"]);
                assert!(r.users.is_empty());
                assert_eq!(r.msg.as_deref(), Some(r#"{"x":1}"#));
            }
            other => panic!("{other:?}"),
        }
        match <A as Guest>::on_msg(ctx(), ev(r#"{"kind":"rewrite"}"#)) {
            wit::MsgVerdict::Rewrite(m) => assert_eq!(m, r#"{"room":"r1"}"#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_hooks_and_defaults() {
        let join = |dummy| wit::JoinRequest {
            room: "r".into(),
            dummy,
        };
        assert!(
            matches!(<A as Guest>::on_join(ctx(), join(true)), wit::JoinVerdict::Deny(r) if r == "r")
        );
        assert!(matches!(
            <N as Guest>::on_join(ctx(), join(true)),
            wit::JoinVerdict::Allow
        ));

        let s = |p| <A as Guest>::storage_mode(ctx(), ev("{}"), p);
        assert!(matches!(
            s(wit::StorageMode::Insert),
            wit::StorageMode::Ignore
        ));
        assert!(matches!(
            s(wit::StorageMode::Update),
            wit::StorageMode::Update
        ));
        let n = <N as Guest>::storage_mode(ctx(), ev("{}"), wit::StorageMode::Update);
        assert!(matches!(n, wit::StorageMode::Update));

        let push = |args: &str| wit::PushRequest {
            rooms: vec!["a".into(), "b".into()],
            event: "e".into(),
            args: args.into(),
        };
        assert!(matches!(
            <A as Guest>::route_push(ctx(), push("[]")),
            wit::PushRoute::Reject(_)
        ));
        assert!(
            matches!(<A as Guest>::route_push(ctx(), push("[1]")), wit::PushRoute::Deliver(r) if r == ["b", "a"])
        );
        assert!(
            matches!(<N as Guest>::route_push(ctx(), push("[]")), wit::PushRoute::Deliver(r) if r == ["a", "b"])
        );
    }
}
