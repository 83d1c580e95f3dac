//! Why the server refuses what a client asked: one type for every refusal
//! of the session protocol. Each has its text on the wire (the `data` of a
//! `{status: 1, data}` reply, or of the `error` event) and a stable kind,
//! the `reason` label of `hookwire_refused`, so a dashboard tells a flood
//! of oversized messages from a plugin that denies them.

use crate::policy::Hook;

/// A refused connection, `authenticate`, `join` or `msg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    // Connecting.
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    #[error("origin not allowed")]
    Origin,
    #[error("too many connections: the tenant allows {limit}")]
    Connections { limit: usize },

    // `authenticate`.
    #[error("already authenticated as another uid")]
    OtherUid,
    #[error("authentication timeout")]
    AuthTimeout,
    #[error("authentication already in progress")]
    AuthInProgress,
    #[error("too many authentication attempts, retry in a minute")]
    AuthRateLimited,
    #[error("uid is required")]
    UidRequired,
    #[error("token is required")]
    TokenRequired,
    /// One text whether the uid exists or not, so a client cannot probe.
    #[error("invalid token")]
    InvalidToken,
    /// The store or the `authenticate` hook could not answer.
    #[error("authentication unavailable: {0}")]
    AuthUnavailable(String),

    // `join`, `msg`.
    #[error("not authenticated")]
    NotAuthenticated,
    #[error("roomId is required")]
    RoomIdRequired,
    #[error("join timeout")]
    JoinTimeout,
    #[error("too many rooms: at most {limit} per socket")]
    TooManyRooms { limit: usize },
    /// The `on_join` hook failed and the tenant fails closed.
    #[error("join refused: {0}")]
    JoinUnavailable(String),
    #[error("msg must be a JSON object")]
    MsgNotObject,
    #[error("message too large: {size} bytes, the limit is {limit}")]
    MsgTooLarge { size: usize, limit: usize },
    #[error("join a room before sending msg")]
    MsgWithoutRoom,
    #[error("a dummy member may not send msg")]
    DummySender,
    #[error("a plugin rewrote the message into a non-object")]
    RewriteNotObject,
    #[error("msgId is required to update a stored message")]
    UpdateWithoutMsgId,
    /// An `on_msg` or `storage_mode` hook failed and the tenant fails closed.
    #[error("message refused: {0}")]
    MsgUnavailable(String),
    #[error("tenant is being deleted")]
    TenantDeleting,
    /// The store refused the write: nothing was relayed either.
    #[error("message not stored, so not relayed: {0}")]
    NotStored(String),

    // `sync`.
    #[error("sync takes an object: {{offset, encoding?, epoch?}}")]
    SyncNotObject,
    #[error("join a room before sync")]
    SyncWithoutRoom,
    /// The store could not read the room.
    #[error("sync unavailable: {0}")]
    SyncUnavailable(String),
    /// The page could not be encoded.
    #[error("sync failed: {0}")]
    SyncFailed(String),

    /// The socket's queue of events is full.
    #[error("server busy: too many events in flight on this socket (at most {limit}), retry")]
    Busy { limit: usize },

    /// A plugin's verdict: its own reason, sent as it gave it.
    #[error("{reason}")]
    Plugin { hook: Hook, reason: String },
}

impl Refusal {
    /// The `reason` label of `hookwire_refused`: one per variant, stable.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownTenant(_) => "unknown_tenant",
            Refusal::Origin => "origin",
            Refusal::Connections { .. } => "connections",
            Refusal::OtherUid => "other_uid",
            Refusal::AuthTimeout => "auth_timeout",
            Refusal::AuthInProgress => "auth_in_progress",
            Refusal::AuthRateLimited => "auth_rate_limited",
            Refusal::UidRequired => "uid_required",
            Refusal::TokenRequired => "token_required",
            Refusal::InvalidToken => "invalid_token",
            Refusal::AuthUnavailable(_) => "auth_unavailable",
            Refusal::NotAuthenticated => "not_authenticated",
            Refusal::RoomIdRequired => "room_id_required",
            Refusal::JoinTimeout => "join_timeout",
            Refusal::TooManyRooms { .. } => "rooms_per_socket",
            Refusal::JoinUnavailable(_) => "join_unavailable",
            Refusal::MsgNotObject => "msg_not_object",
            Refusal::MsgTooLarge { .. } => "msg_too_large",
            Refusal::MsgWithoutRoom => "msg_without_room",
            Refusal::DummySender => "dummy_sender",
            Refusal::RewriteNotObject => "rewrite_not_object",
            Refusal::UpdateWithoutMsgId => "update_without_msg_id",
            Refusal::MsgUnavailable(_) => "msg_unavailable",
            Refusal::TenantDeleting => "tenant_deleting",
            Refusal::NotStored(_) => "not_stored",
            Refusal::SyncNotObject => "sync_not_object",
            Refusal::SyncWithoutRoom => "sync_without_room",
            Refusal::SyncUnavailable(_) => "sync_unavailable",
            Refusal::SyncFailed(_) => "sync_failed",
            Refusal::Busy { .. } => "busy",
            Refusal::Plugin { hook, .. } => match hook {
                Hook::Authenticate => "auth_denied_by_plugin",
                Hook::OnJoin => "join_denied_by_plugin",
                Hook::OnMsg => "msg_denied_by_plugin",
                _ => "denied_by_plugin",
            },
        }
    }
}

impl From<Refusal> for serde_json::Value {
    /// The refusal as a reply: `{status: 1, data: text}`.
    fn from(r: Refusal) -> Self {
        super::wire::fail(r.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts clients match on stay as they are; the kinds are distinct.
    #[test]
    fn texts_and_kinds() {
        let all = [
            Refusal::UnknownTenant("t".into()),
            Refusal::Origin,
            Refusal::Connections { limit: 3 },
            Refusal::OtherUid,
            Refusal::AuthTimeout,
            Refusal::AuthInProgress,
            Refusal::AuthRateLimited,
            Refusal::UidRequired,
            Refusal::TokenRequired,
            Refusal::InvalidToken,
            Refusal::AuthUnavailable("x".into()),
            Refusal::NotAuthenticated,
            Refusal::RoomIdRequired,
            Refusal::JoinTimeout,
            Refusal::TooManyRooms { limit: 2 },
            Refusal::JoinUnavailable("x".into()),
            Refusal::MsgNotObject,
            Refusal::MsgTooLarge { size: 10, limit: 5 },
            Refusal::MsgWithoutRoom,
            Refusal::DummySender,
            Refusal::RewriteNotObject,
            Refusal::UpdateWithoutMsgId,
            Refusal::MsgUnavailable("x".into()),
            Refusal::TenantDeleting,
            Refusal::NotStored("x".into()),
            Refusal::SyncNotObject,
            Refusal::SyncWithoutRoom,
            Refusal::SyncUnavailable("x".into()),
            Refusal::SyncFailed("x".into()),
            Refusal::Busy { limit: 1024 },
            Refusal::Plugin {
                hook: Hook::Authenticate,
                reason: "no".into(),
            },
            Refusal::Plugin {
                hook: Hook::OnJoin,
                reason: "no".into(),
            },
            Refusal::Plugin {
                hook: Hook::OnMsg,
                reason: "banned word".into(),
            },
        ];
        let kinds: std::collections::HashSet<_> = all.iter().map(Refusal::kind).collect();
        assert_eq!(kinds.len(), all.len(), "every refusal has its own kind");
        assert_eq!(
            Refusal::MsgTooLarge {
                size: 2000,
                limit: 1000
            }
            .to_string(),
            "message too large: 2000 bytes, the limit is 1000"
        );
        assert_eq!(
            Refusal::TooManyRooms { limit: 2 }.to_string(),
            "too many rooms: at most 2 per socket"
        );
        assert_eq!(
            Refusal::Plugin {
                hook: Hook::OnMsg,
                reason: "banned word".into()
            }
            .to_string(),
            "banned word"
        );
        assert_eq!(
            Refusal::SyncNotObject.to_string(),
            "sync takes an object: {offset, encoding?, epoch?}"
        );
        assert_eq!(
            serde_json::Value::from(Refusal::InvalidToken),
            serde_json::json!({"status": 1, "data": "invalid token"})
        );
    }
}
