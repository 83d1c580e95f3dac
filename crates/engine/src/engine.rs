//! The engine: the map of live sessions, opening and closing them.

use std::{collections::HashMap, sync::Arc};

use engineioxide_core::{ProtocolVersion, Sid, TransportType};
use http::request::Parts;
use parking_lot::RwLock;

use crate::{
    config::EngineIoConfig,
    handler::EngineIoHandler,
    socket::{DisconnectReason, SessionCloser, Socket},
};

/// One engine: its handler, settings and sessions.
pub struct EngineIo<H: EngineIoHandler> {
    sockets: RwLock<HashMap<Sid, Arc<Socket<H::Data>>>>,
    /// The handler of socket events.
    pub handler: Arc<H>,
    /// The settings.
    pub config: EngineIoConfig,
}

impl<H: EngineIoHandler> EngineIo<H> {
    /// An engine with no session.
    pub fn new(handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self {
            sockets: RwLock::new(HashMap::new()),
            handler,
            config,
        }
    }

    /// Opens a session and tells the handler.
    pub(crate) fn create_session(
        self: &Arc<Self>,
        protocol: ProtocolVersion,
        transport: TransportType,
        req: Parts,
    ) -> Arc<Socket<H::Data>> {
        let closer: Arc<dyn SessionCloser> = self.clone();
        let socket = Arc::new(Socket::new(protocol, transport, &self.config, req, closer));
        self.sockets.write().insert(socket.id, socket.clone());
        self.handler.clone().on_connect(socket.clone());
        socket
    }

    /// The live session `sid`.
    pub fn get_socket(&self, sid: Sid) -> Option<Arc<Socket<H::Data>>> {
        self.sockets.read().get(&sid).cloned()
    }

    /// Ends session `sid` (once: later calls do nothing). Packets already
    /// queued are still written; the handler hears of it from a task of its
    /// own, so a close from inside a handler call does not re-enter it.
    pub fn close_session(&self, sid: Sid, reason: DisconnectReason) {
        let Some(socket) = self.sockets.write().remove(&sid) else {
            return;
        };
        socket.out.mark_closed();
        let handler = self.handler.clone();
        tokio::spawn(async move { handler.on_disconnect(socket, reason) });
    }
}

impl<H: EngineIoHandler> SessionCloser for EngineIo<H> {
    fn close_session(&self, sid: Sid, reason: DisconnectReason) {
        EngineIo::close_session(self, sid, reason)
    }
}
