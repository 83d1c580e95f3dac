//! Small wire-format helpers shared by the socket handlers and the HTTP API.

use std::sync::Arc;

use serde::Serialize;
use serde::ser::SerializeTuple;
use serde_json::{Map, Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::handler::{FromMessageParts, Value as SioValue};
use socketioxide::socket::Socket;

/// `uid` and `roomId` may be numbers or strings; they are compared by their
/// string form. Empty strings, `null`, objects and arrays are not ids.
pub fn id_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Serialises a list as separate socket.io event arguments
/// (`["event", a, b, c]`) rather than one array argument.
pub struct Args<'a>(pub &'a [Value]);

impl Serialize for Args<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for v in self.0 {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

/// The reply shape of the socket events, `{status, data}`.
pub fn status(code: u8, data: impl Into<Value>) -> Value {
    json!({ "status": code, "data": data.into() })
}

pub fn ok(data: impl Into<Value>) -> Value {
    status(0, data)
}

pub fn fail(reason: impl Into<String>) -> Value {
    status(1, Value::String(reason.into()))
}

/// The first argument of an event as an object (`{}` when absent or not an
/// object is reported by `None`).
pub fn first_object(v: &Value) -> Option<&Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Array(a) => a.first().and_then(Value::as_object),
        _ => None,
    }
}

/// Whether the client asked for an acknowledgement (socketioxide's
/// `AckSender` hides it, and a `msg` without ack reports errors as an
/// `error` event instead).
pub struct WantsAck(pub bool);

impl<A: Adapter> FromMessageParts<A> for WantsAck {
    type Error = std::convert::Infallible;
    fn from_message_parts(
        _: &Arc<Socket<A>>,
        _: &mut SioValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        Ok(WantsAck(ack_id.is_some()))
    }
}

/// A query-string parameter (percent-decoded).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
