//! The hook points of the event pipeline.
//!
//! Every tenant has one [`Policy`]. The host calls it at four places:
//! `authenticate`, `on_join`, `on_msg` (+ `storage_mode`) and `route_push`.
//! The trait's default bodies *are* the built-in behaviour, so
//! [`BuiltinPolicy`] is just the empty impl; the wasm
//! `PluginChain` (see `runtime/`) overrides the hooks its plugins export.
//!
//! Hooks return `Result<_, HookError>`: the pipeline turns an error into a
//! refusal with a clear status (fail closed) or ignores it (fail open), as
//! the tenant configured.

use std::sync::OnceLock;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::HookError;

/// The hooks of the `hookwire:policy` world (declared in `wit/policy.wit`).
/// Their names are written once, in [`Hook::TABLE`]: the WIT name (the
/// admin API's, `describe`'s) and the metrics label. A new hook is one row
/// here, its variant, its semantics and the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Describe,
    Authenticate,
    OnJoin,
    OnMsg,
    StorageMode,
    RoutePush,
}

/// One row of [`Hook::TABLE`].
pub struct HookNames {
    pub hook: Hook,
    /// As in the WIT world: `on-msg`.
    pub wit: &'static str,
    /// The `hook` label of the plugin metrics: `on_msg`.
    pub label: &'static str,
}

impl Hook {
    /// Every hook, in `Hook as usize` order.
    pub const TABLE: [HookNames; 6] = [
        HookNames {
            hook: Hook::Describe,
            wit: "describe",
            label: "describe",
        },
        HookNames {
            hook: Hook::Authenticate,
            wit: "authenticate",
            label: "authenticate",
        },
        HookNames {
            hook: Hook::OnJoin,
            wit: "on-join",
            label: "on_join",
        },
        HookNames {
            hook: Hook::OnMsg,
            wit: "on-msg",
            label: "on_msg",
        },
        HookNames {
            hook: Hook::StorageMode,
            wit: "storage-mode",
            label: "storage_mode",
        },
        HookNames {
            hook: Hook::RoutePush,
            wit: "route-push",
            label: "route_push",
        },
    ];
    /// How many hooks there are: the size of per-hook arrays.
    pub const COUNT: usize = Self::TABLE.len();

    pub fn wit_name(self) -> &'static str {
        Self::TABLE[self as usize].wit
    }
    pub fn label(self) -> &'static str {
        Self::TABLE[self as usize].label
    }
    /// Parses a WIT name or a metrics label (`on-msg` or `on_msg`).
    pub fn parse(s: &str) -> Option<Hook> {
        Self::TABLE
            .iter()
            .find(|n| n.wit == s || n.label == s)
            .map(|n| n.hook)
    }
}

/// Who is calling a hook. Tenant-scoped: a policy never sees another tenant.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HookContext {
    pub tenant: String,
    /// Socket id, when the hook runs for a socket.
    pub sid: Option<String>,
    /// Authenticated uid, once known.
    pub uid: Option<String>,
    /// `deviceId` handshake query parameter, when given.
    pub device: Option<String>,
}

/// Input of `authenticate`: the `authenticate` event payload or the socket.io
/// handshake `auth` object, plus the handshake query string (for
/// clients that send `?token=`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub uid: Option<String>,
    pub token: Option<String>,
    /// The whole payload as sent (sign-check reads `app`, `timestamp`, `sign`).
    pub payload: Value,
    /// Raw handshake query string (without `?`).
    pub query: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuthVerdict {
    /// Accept as `uid`; also join `rooms`; `claims` are kept on the socket.
    Allow {
        uid: String,
        rooms: Vec<String>,
        claims: Value,
    },
    /// Refuse with this reason (sent to the client as `data`).
    Deny { reason: String },
    /// Not this hook's business: fall through to the next plugin, and at the
    /// end of the chain to the built-in token check.
    Defer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub room: String,
    pub dummy: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JoinVerdict {
    Allow,
    Deny { reason: String },
}

/// Storage mode of a `msg` (on the wire: 0 insert, 1 update, 2 ignore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageMode {
    Insert,
    Update,
    Ignore,
}

impl StorageMode {
    /// Unknown values map to insert, as docs/protocol.md pins.
    pub fn from_wire(v: Option<&Value>) -> Self {
        match v.and_then(Value::as_i64) {
            Some(1) => StorageMode::Update,
            Some(2) => StorageMode::Ignore,
            _ => StorageMode::Insert,
        }
    }
    pub fn to_wire(self) -> i64 {
        match self {
            StorageMode::Insert => 0,
            StorageMode::Update => 1,
            StorageMode::Ignore => 2,
        }
    }
}

/// JSON text of a value, for the hooks. `serde_json::to_string` writes
/// straight into a byte buffer; `Value::to_string` goes through `fmt` and
/// costs twice as much, which shows on a hook call of 1–2 µs.
pub fn json_text<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// JSON text of a `msg` object. Every serialisation of a message on its
/// way through the pipeline goes through here and is counted, per thread,
/// so a test can see how many times one `msg` was written out (see
/// [`msg_serialisations`]); the count is a thread-local add.
pub fn msg_json(v: &Value) -> String {
    MSG_SERIALISATIONS.with(|c| c.set(c.get() + 1));
    json_text(v)
}

thread_local! {
    static MSG_SERIALISATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times [`msg_json`] ran on this thread.
pub fn msg_serialisations() -> u64 {
    MSG_SERIALISATIONS.with(|c| c.get())
}

/// A `msg` on its way through the pipeline: the sender's room and the
/// message object, with the object's JSON text made at most once. The
/// protocol layer serialises every `msg` anyway (its length is the size
/// checked) and a wasm chain hands that same text to its plugins, so no hook
/// serialises the message again. Replacing the message drops the text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MsgEvent {
    pub room: String,
    /// The message object as the client sent it (long or short form).
    msg: Value,
    #[serde(skip)]
    json: OnceLock<String>,
}

impl MsgEvent {
    pub fn new(room: impl Into<String>, msg: Value) -> Self {
        MsgEvent {
            room: room.into(),
            msg,
            json: OnceLock::new(),
        }
    }

    /// With `msg`'s JSON text already made: `json` must be what
    /// `serde_json::to_string(&msg)` returns.
    pub fn with_json(room: impl Into<String>, msg: Value, json: String) -> Self {
        debug_assert_eq!(serde_json::to_string(&msg).ok().as_deref(), Some(&*json));
        MsgEvent {
            room: room.into(),
            msg,
            json: OnceLock::from(json),
        }
    }

    pub fn msg(&self) -> &Value {
        &self.msg
    }

    /// The message as JSON text, serialised on first use.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| msg_json(&self.msg))
    }

    /// Replaces the message (a plugin's rewrite); its text is `json` when
    /// the plugin returned one (any valid JSON text of `msg`), else made
    /// again when asked for.
    pub fn set_msg(&mut self, msg: Value, json: KnownJson) {
        self.msg = msg;
        self.json = json.0.map_or_else(OnceLock::new, OnceLock::from);
    }

    /// The JSON text made so far, if any.
    pub fn made_json(&self) -> Option<&str> {
        self.json.get().map(String::as_str)
    }

    pub fn into_msg(self) -> Value {
        self.msg
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MsgVerdict {
    /// Relay as is.
    Pass,
    /// Do not relay or store; the sender gets `{status:1, data: reason}`.
    Drop { reason: String },
    /// Relay (and store) this object instead.
    Rewrite {
        msg: Value,
        #[serde(skip)]
        json: KnownJson,
    },
    /// Do not relay; send `event` with `data` back to the sender only.
    Reply { event: String, data: Value },
    /// Relay to these rooms / user rooms instead of the sender's room
    /// (egg-socket.io's `sendToOthers`); `msg` replaces the payload when set.
    Redirect {
        rooms: Vec<String>,
        users: Vec<String>,
        msg: Option<Value>,
    },
}

/// The JSON text of a rewritten message, when the policy already has it (a
/// wasm plugin returns text), so the pipeline does not serialise the
/// message again. A cache, not part of the verdict: any two are equal.
#[derive(Debug, Clone, Default)]
pub struct KnownJson(pub Option<String>);

impl PartialEq for KnownJson {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl MsgVerdict {
    /// A rewrite to `msg`, its text unknown.
    pub fn rewrite(msg: Value) -> Self {
        MsgVerdict::Rewrite {
            msg,
            json: KnownJson::default(),
        }
    }
}

/// A push from the business server (`POST /send`, admin push, Redis channel).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushRequest {
    pub rooms: Vec<String>,
    pub event: String,
    pub args: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PushRoute {
    /// Deliver to these rooms (user rooms get reliable, acknowledged delivery).
    Deliver { rooms: Vec<String> },
    /// Refuse the push with a reason.
    Reject { reason: String },
}

/// The hooks of the event pipeline. Default bodies are the built-in behaviour.
#[async_trait]
pub trait Policy: Send + Sync + 'static {
    /// A short description for logs and `/api` listings.
    fn describe(&self) -> String {
        "builtin".to_string()
    }

    async fn authenticate(
        &self,
        _ctx: &HookContext,
        _req: &AuthRequest,
    ) -> Result<AuthVerdict, HookError> {
        Ok(AuthVerdict::Defer)
    }

    async fn on_join(
        &self,
        _ctx: &HookContext,
        _req: &JoinRequest,
    ) -> Result<JoinVerdict, HookError> {
        Ok(JoinVerdict::Allow)
    }

    async fn on_msg(&self, _ctx: &HookContext, _ev: &MsgEvent) -> Result<MsgVerdict, HookError> {
        Ok(MsgVerdict::Pass)
    }

    /// `proposed` is what the client asked for (unknown → insert).
    async fn storage_mode(
        &self,
        _ctx: &HookContext,
        _ev: &MsgEvent,
        proposed: StorageMode,
    ) -> Result<StorageMode, HookError> {
        Ok(proposed)
    }

    async fn route_push(
        &self,
        _ctx: &HookContext,
        req: &PushRequest,
    ) -> Result<PushRoute, HookError> {
        Ok(PushRoute::Deliver {
            rooms: req.rooms.clone(),
        })
    }
}

/// The built-in behaviour, with no plugin: token check, relay everything,
/// storage as the client asks, pushes where the sender says.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinPolicy;

impl Policy for BuiltinPolicy {}

#[cfg(test)]
mod hook_tests {
    use super::Hook;

    #[test]
    fn the_table_is_in_variant_order_and_parses_both_names() {
        for (i, n) in Hook::TABLE.iter().enumerate() {
            assert_eq!(n.hook as usize, i, "{} out of order", n.wit);
            assert_eq!(Hook::parse(n.wit), Some(n.hook));
            assert_eq!(Hook::parse(n.label), Some(n.hook));
        }
        assert_eq!(Hook::parse("on-nothing"), None);
    }
}
