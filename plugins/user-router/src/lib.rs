//! `user-router`: a `msg` with a `to` field goes only to those users.
//!
//! `to` is a uid (string or number) or a list of them, in the message
//! object or in its `data` object:
//! `{"data": {"text": "psst", "to": 1001}, "storage": 2}` reaches only the
//! user rooms of 1001 (egg-socket.io's `sendToOthers`). A message without
//! `to` (or with `to: null`) passes unchanged. A `to` that names nobody
//! usable (`[]`, `{}`, `""`, `true`) is dropped with a reason rather than
//! relayed to the whole room: it was meant to be private. No config.

use hookwire_guest::serde_json::Value;
use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin, RawMsgEvent, Redirect, id_string};

/// Where a message is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No `to`: the room, as usual.
    Room,
    /// These users (deduplicated, in order).
    Users(Vec<String>),
    /// A `to` that cannot be delivered, with the reason.
    Invalid(&'static str),
}

/// Reads `to` from the message, then from its `data` object.
pub fn target(msg: &Value) -> Target {
    let to = match msg.get("to").filter(|v| !v.is_null()) {
        Some(to) => to,
        None => match msg
            .get("data")
            .and_then(|d| d.get("to"))
            .filter(|v| !v.is_null())
        {
            Some(to) => to,
            None => return Target::Room,
        },
    };
    let mut users = Vec::new();
    match to {
        Value::Array(items) => {
            for item in items {
                match id_string(item) {
                    Some(u) if !users.contains(&u) => users.push(u),
                    Some(_) => {}
                    None => return Target::Invalid("`to` must list uids (strings or numbers)"),
                }
            }
        }
        other => match id_string(other) {
            Some(u) => users.push(u),
            None => return Target::Invalid("`to` must be a uid or a list of uids"),
        },
    }
    if users.is_empty() {
        Target::Invalid("`to` names no user")
    } else {
        Target::Users(users)
    }
}

/// The verdict for `msg`.
pub fn route(msg: &Value) -> MsgVerdict {
    match target(msg) {
        Target::Room => MsgVerdict::Pass,
        Target::Users(users) => Redirect::to_users(users).into(),
        Target::Invalid(reason) => MsgVerdict::Drop(reason.into()),
    }
}

/// The plugin.
pub struct UserRouter;

#[hookwire_guest::plugin]
impl Plugin for UserRouter {
    fn on_msg(_ctx: &Context, ev: MsgEvent) -> MsgVerdict {
        route(&ev.msg)
    }

    /// A message whose text has no `"to"` key passes unparsed.
    fn on_raw_msg(ctx: &Context, ev: RawMsgEvent) -> MsgVerdict {
        if ev.might_contain(r#""to""#) {
            Self::on_msg(ctx, ev.parse())
        } else {
            MsgVerdict::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use hookwire_guest::serde_json::json;
    use hookwire_guest::{Hooks, describe};

    use super::*;

    fn users(u: &[&str]) -> MsgVerdict {
        Redirect::to_users(u.iter().copied()).into()
    }

    #[test]
    fn no_to_passes() {
        assert_eq!(
            route(&json!({"data": "hi", "storage": 0})),
            MsgVerdict::Pass
        );
        assert_eq!(route(&json!({"data": {"text": "hi"}})), MsgVerdict::Pass);
        assert_eq!(
            route(&json!({"to": null, "data": {"to": null}})),
            MsgVerdict::Pass
        );
        assert_eq!(route(&json!("just a string")), MsgVerdict::Pass);
    }

    #[test]
    fn to_in_msg_or_data_string_or_number() {
        assert_eq!(route(&json!({"to": "u1", "data": "hi"})), users(&["u1"]));
        assert_eq!(route(&json!({"to": 1001})), users(&["1001"]));
        assert_eq!(
            route(&json!({"data": {"to": 7, "text": "x"}})),
            users(&["7"])
        );
        // Short form messages carry it at the top level too.
        assert_eq!(
            route(&json!({"1": "m1", "s": 2, "to": "u9"})),
            users(&["u9"])
        );
        // The message's own `to` wins over the data's.
        assert_eq!(
            route(&json!({"to": "a", "data": {"to": "b"}})),
            users(&["a"])
        );
    }

    #[test]
    fn lists_are_deduplicated_by_string_form() {
        assert_eq!(
            route(&json!({"to": [1, "1", "u2", 3]})),
            users(&["1", "u2", "3"])
        );
    }

    #[test]
    fn unusable_to_is_dropped_not_broadcast() {
        for to in [json!([]), json!({}), json!(""), json!(true), json!([1, {}])] {
            assert!(
                matches!(route(&json!({ "to": to })), MsgVerdict::Drop(_)),
                "{to}"
            );
        }
    }

    #[test]
    fn hook() {
        let ev = MsgEvent {
            room: "r".into(),
            msg: json!({"data": {"to": ["a", "b"]}}),
        };
        assert_eq!(
            UserRouter::on_msg(&Context::default(), ev.clone()),
            users(&["a", "b"])
        );
        let raw = |msg: &str| RawMsgEvent {
            room: "r".into(),
            msg: msg.into(),
        };
        let on_raw = |msg| UserRouter::on_raw_msg(&Context::default(), raw(msg));
        assert_eq!(
            UserRouter::on_raw_msg(&Context::default(), ev.into()),
            users(&["a", "b"])
        );
        assert_eq!(on_raw(r#"{"data":"hi"}"#), MsgVerdict::Pass);
        assert_eq!(on_raw(r#"{"t\u006f":"u1"}"#), users(&["u1"]));
        assert_eq!(describe::<UserRouter>().hooks, Hooks::ON_MSG);
    }
}
