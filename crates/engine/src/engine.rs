//! The engine: the map of live sessions, opening and closing them.

use std::{collections::HashMap, sync::Arc};

use engineioxide_core::{ProtocolVersion, Sid, TransportType};
use http::{HeaderMap, header, request::Parts};
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
        let req = session_head(req);
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

/// Headers that served only the request's own hop or the WebSocket
/// handshake: nothing a session's handler could use later.
const HANDSHAKE_HEADERS: [http::HeaderName; 9] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::HeaderName::from_static("keep-alive"),
];

/// A request extension naming the only headers of the request that a
/// session opened by it keeps (in `Socket::req_parts`). Without it, a
/// session keeps every header but the hop-by-hop and handshake ones. A
/// header's copy costs a few hundred bytes per connection for its whole
/// life, most of an idle connection's memory after its task.
#[derive(Debug, Clone, Copy)]
pub struct SessionHeaders(pub &'static [http::HeaderName]);

/// What a session keeps of the request that opened it, for its whole life.
///
/// hyper parses a request head out of one read buffer of 8 KiB or more and
/// hands out the URI and header values as views into it: kept as they are,
/// they would keep that whole buffer alive as long as the session, more than
/// everything else an idle connection holds. So the session gets its own
/// copies, without the hop-by-hop and handshake headers.
///
/// An application that reads only a few headers of that request says which
/// with a [`SessionHeaders`] extension on it; the session then keeps only
/// those.
fn session_head(mut req: Parts) -> Parts {
    if let Ok(uri) = http::Uri::try_from(req.uri.to_string()) {
        req.uri = uri;
    }
    let only = req.extensions.remove::<SessionHeaders>();
    let old = std::mem::take(&mut req.headers);
    let kept = |name: &http::HeaderName| match &only {
        Some(SessionHeaders(names)) => names.contains(name),
        None => !HANDSHAKE_HEADERS.contains(name),
    };
    let mut headers = HeaderMap::with_capacity(old.keys().filter(|n| kept(n)).count());
    for (name, value) in old.iter().filter(|(name, _)| kept(name)) {
        if let Ok(mut copy) = http::HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            headers.append(name.clone(), copy);
        }
    }
    req.headers = headers;
    req
}

impl<H: EngineIoHandler> SessionCloser for EngineIo<H> {
    fn close_session(&self, sid: Sid, reason: DisconnectReason) {
        EngineIo::close_session(self, sid, reason)
    }
}
