//! The callbacks an engine user implements (socketioxide's `Client` is one).

use std::sync::Arc;

use bytes::Bytes;
use engineioxide_core::Str;

use crate::socket::{DisconnectReason, Socket};

/// Receives an engine's socket events. The calls are made from the
/// connection's own task (or the polling request's), so they should not block.
pub trait EngineIoHandler: std::fmt::Debug + Send + Sync + 'static {
    /// Per-socket data kept in [`Socket::data`].
    type Data: Default + Send + Sync + 'static;

    /// A session opened.
    fn on_connect(self: Arc<Self>, socket: Arc<Socket<Self::Data>>);

    /// A session closed (called once per session).
    fn on_disconnect(&self, socket: Arc<Socket<Self::Data>>, reason: DisconnectReason);

    /// A text message arrived.
    fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<Self::Data>>);

    /// A binary message arrived.
    fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<Self::Data>>);
}
