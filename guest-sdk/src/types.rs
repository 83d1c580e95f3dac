//! Plain Rust types for hook inputs and verdicts.
//!
//! They mirror the records and variants of `hookwire:policy/types` in
//! `wit/policy.wit`, with the WIT `json` strings parsed into
//! [`serde_json::Value`] on the way in and serialized on the way out, so a
//! plugin never touches JSON text or generated bindings.

use serde_json::{Map, Value};

/// Who a hook runs for. Always one tenant: a plugin never sees another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The tenant whose chain this plugin belongs to.
    pub tenant: String,
    /// The socket id, when the hook runs for a socket.
    pub sid: Option<String>,
    /// The authenticated uid, once known (absent during `authenticate`).
    pub uid: Option<String>,
    /// The `deviceId` handshake query parameter, when the client sent one.
    pub device: Option<String>,
}

/// An `authenticate` event payload or a socket.io handshake `auth` object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthRequest {
    /// The `uid` the client claims, in its string form.
    pub uid: Option<String>,
    /// The `token` the client sent.
    pub token: Option<String>,
    /// The whole payload as sent (e.g. egg-socket.io's `app`, `timestamp`,
    /// `sign`). `Value::Null` if the host sent none.
    pub payload: Value,
    /// The raw handshake query string, without `?`. See
    /// [`AuthRequest::query_param`].
    pub query: String,
}

impl AuthRequest {
    /// The first value of `name` in the handshake query string, URL-decoded.
    ///
    /// ```
    /// # use hookwire_guest::AuthRequest;
    /// let req = AuthRequest { query: "token=a%20b&deviceId=7".into(), ..Default::default() };
    /// assert_eq!(req.query_param("token").as_deref(), Some("a b"));
    /// assert_eq!(req.query_param("nope"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// A field of the payload as an id string: strings as they are, numbers
    /// in their decimal form (hookwire compares ids by their string form, so
    /// `1000` and `"1000"` are the same user). `None` for anything else.
    pub fn payload_id(&self, field: &str) -> Option<String> {
        self.payload.get(field).and_then(id_string)
    }
}

/// A JSON id (uid, room id) in the string form hookwire compares ids by:
/// strings as they are, integers and other numbers in their JSON form, `None`
/// for empty strings and every other kind of value.
///
/// ```
/// # use hookwire_guest::id_string;
/// # use serde_json::json;
/// assert_eq!(id_string(&json!(1000)).as_deref(), Some("1000"));
/// assert_eq!(id_string(&json!("1000")).as_deref(), Some("1000"));
/// assert_eq!(id_string(&json!(null)), None);
/// ```
pub fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What [`Plugin::authenticate`](crate::Plugin::authenticate) decides.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthVerdict {
    /// Accept the socket as this user.
    Allow(Allow),
    /// Refuse, with the reason the client sees as `{status:1, data:<reason>}`.
    Deny(String),
    /// Not this plugin's business: the next plugin decides, and at the end
    /// of the chain the built-in token check.
    Defer,
}

impl AuthVerdict {
    /// `Allow` the user `uid` with no extra rooms and no claims.
    pub fn allow(uid: impl Into<String>) -> Self {
        AuthVerdict::Allow(Allow::new(uid))
    }

    /// `Deny` with the reason the client sees.
    pub fn deny(reason: impl Into<String>) -> Self {
        AuthVerdict::Deny(reason.into())
    }
}

impl From<Allow> for AuthVerdict {
    fn from(allow: Allow) -> Self {
        AuthVerdict::Allow(allow)
    }
}

/// An accepted socket: its user, the extra rooms it joins and claims kept on
/// it. Build with [`Allow::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq)]
pub struct Allow {
    /// The user the socket is authenticated as.
    pub uid: String,
    /// Extra rooms the socket joins (besides its own user room).
    pub rooms: Vec<String>,
    /// Kept on the socket; always a JSON object.
    pub claims: Map<String, Value>,
}

impl Allow {
    /// The user `uid`, no extra rooms, no claims.
    pub fn new(uid: impl Into<String>) -> Self {
        Allow {
            uid: uid.into(),
            rooms: Vec::new(),
            claims: Map::new(),
        }
    }

    /// Adds rooms the socket joins.
    pub fn rooms<I, S>(mut self, rooms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rooms.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// Sets one claim kept on the socket.
    pub fn claim(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(key.into(), value.into());
        self
    }
}

/// A socket asking to `join` a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinRequest {
    /// The `roomId`, in its string form.
    pub room: String,
    /// A dummy watches and syncs but is invisible and may not send `msg`.
    pub dummy: bool,
}

/// What [`Plugin::on_join`](crate::Plugin::on_join) decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinVerdict {
    /// Let the socket join.
    Allow,
    /// Refuse, with the reason the client sees.
    Deny(String),
}

/// A `msg` a socket sent to its room.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MsgEvent {
    /// The room the sender is in.
    pub room: String,
    /// The message object as sent: long form `{data, storage, msgId}` or
    /// short form `{"1": msgId, "s": storage, ...}`.
    pub msg: Value,
}

/// A `msg` as the host sends it: the message is still JSON text.
///
/// [`Plugin::on_raw_msg`](crate::Plugin::on_raw_msg) receives it, so a
/// plugin that can decide without the parsed message, or from a glance at
/// the text ([`RawMsgEvent::might_contain`]), skips the parse;
/// [`RawMsgEvent::parse`] gives the [`MsgEvent`] otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMsgEvent {
    /// The room the sender is in.
    pub room: String,
    /// The message object as JSON text.
    pub msg: String,
}

impl RawMsgEvent {
    /// The parsed event. Text that is not JSON (the host only sends valid
    /// JSON) becomes `null`.
    pub fn parse(self) -> MsgEvent {
        MsgEvent {
            room: self.room,
            msg: serde_json::from_str(&self.msg).unwrap_or(Value::Null),
        }
    }

    /// Whether the message could contain `needle`, in a key or a string:
    /// false only when `needle` is nowhere in the text and the text has no
    /// `\` (an escape such as `\u0074` could spell it). A cheap test before
    /// parsing.
    ///
    /// ```
    /// # use hookwire_guest::RawMsgEvent;
    /// let ev = |msg: &str| RawMsgEvent { room: "r".into(), msg: msg.into() };
    /// assert!(!ev(r#"{"data":"hi"}"#).might_contain(r#""to""#));
    /// assert!(ev(r#"{"to":7}"#).might_contain(r#""to""#));
    /// assert!(ev(r#"{"t\u006f":7}"#).might_contain(r#""to""#));
    /// ```
    pub fn might_contain(&self, needle: &str) -> bool {
        self.msg.contains(needle) || self.msg.contains('\\')
    }
}

impl From<MsgEvent> for RawMsgEvent {
    /// The event as the host would send it (handy in tests).
    fn from(ev: MsgEvent) -> Self {
        RawMsgEvent {
            room: ev.room,
            msg: ev.msg.to_string(),
        }
    }
}

/// What [`Plugin::on_msg`](crate::Plugin::on_msg) decides.
#[derive(Debug, Clone, PartialEq)]
pub enum MsgVerdict {
    /// Relay (and store) the message as it is.
    Pass,
    /// Refuse with a reason the sender sees: not relayed, not stored.
    Drop(String),
    /// Relay (and store) this object instead.
    Rewrite(Value),
    /// Send only to the sender, as `event` with `data`.
    Reply {
        /// The event name the sender receives.
        event: String,
        /// Its payload.
        data: Value,
    },
    /// Relay elsewhere (egg-socket.io's `sendToOthers`).
    Redirect(Redirect),
}

impl From<Redirect> for MsgVerdict {
    fn from(r: Redirect) -> Self {
        MsgVerdict::Redirect(r)
    }
}

/// Where a redirected message goes instead of the sender's room.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Redirect {
    /// Rooms to deliver to.
    pub rooms: Vec<String>,
    /// Users to deliver to (their user rooms).
    pub users: Vec<String>,
    /// A replacement payload; `None` relays the message as sent.
    pub msg: Option<Value>,
}

impl Redirect {
    /// Deliver to these users only.
    pub fn to_users<I, S>(users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Redirect {
            users: users.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Deliver to these rooms only.
    pub fn to_rooms<I, S>(rooms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Redirect {
            rooms: rooms.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Deliver `msg` instead of the message as sent.
    pub fn with_msg(mut self, msg: Value) -> Self {
        self.msg = Some(msg);
        self
    }
}

/// How a `msg` is stored (its `storage` field: 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageMode {
    /// 0: appended to the room log.
    Insert,
    /// 1: replaces the stored entry for its `msgId`.
    Update,
    /// 2: relayed, never stored, not part of `sync`.
    Ignore,
}

/// A business-server push (`POST /send`) or a relayed message about to be
/// delivered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushRequest {
    /// The rooms it is addressed to.
    pub rooms: Vec<String>,
    /// The event name.
    pub event: String,
    /// The event arguments, a JSON array.
    pub args: Value,
}

/// What [`Plugin::route_push`](crate::Plugin::route_push) decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRoute {
    /// Deliver to these rooms.
    Deliver(Vec<String>),
    /// Refuse the push with a reason.
    Reject(String),
}

/// What `describe` reports: the plugin's name, version and the hooks the host
/// should call. [`macro@crate::plugin`] generates it; read it in tests with
/// [`describe`](crate::describe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Defaults to the plugin crate's package name.
    pub name: String,
    /// Defaults to the plugin crate's package version.
    pub version: String,
    /// The hooks the plugin's `impl Plugin` defines.
    pub hooks: crate::Hooks,
}
