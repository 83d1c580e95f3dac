//! The WebSocket transport: the HTTP upgrade, the polling → WebSocket
//! upgrade of an existing session, and the one task each connection runs
//! (reading, draining what queued, heartbeat).
//!
//! The task holds no read buffer while the connection is idle: it reads into
//! a stack buffer and keeps a heap buffer only for a frame that arrived in
//! part, sized to that frame and dropped once it is complete.

pub(crate) mod frame;
pub(crate) mod wire;

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use engineioxide_core::{OpenPacket, Packet, ProtocolVersion, Sid, Str, TransportType};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, request::Parts};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpStream, UnixStream},
    time::{Instant, sleep_until},
};

use crate::{
    body::ResponseBody,
    engine::EngineIo,
    errors::Error,
    handler::EngineIoHandler,
    socket::{DisconnectReason, OutPacket, Socket},
    stats,
};

use self::{
    frame::{FrameReader, Incoming, close_code},
    wire::Wire,
};

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
pub(crate) fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Checks the upgrade headers and returns the client's key.
fn upgrade_key(headers: &HeaderMap) -> Result<HeaderValue, Error> {
    let has_token = |name: http::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(http::header::UPGRADE, "websocket")
        || !has_token(http::header::CONNECTION, "upgrade")
    {
        return Err(Error::NotWebSocketUpgrade);
    }
    if headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() != b"13")
    {
        return Err(Error::NotWebSocketUpgrade);
    }
    headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or(Error::InvalidWebSocketKey)
}

/// Answers a WebSocket request with 101 and runs the connection once hyper
/// hands the upgraded socket over.
pub(crate) fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let key = upgrade_key(req.headers())?;
    // An upgrade of a session that does not exist (or is on WebSocket
    // already) is refused before switching protocols.
    // An upgrade of a session that does not exist is refused before
    // switching protocols. A second WebSocket for a session already on (or
    // moving to) WebSocket is accepted and then closed, as the reference
    // server does, so the first one is left alone.
    let mut duplicate = false;
    if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => return Err(Error::UnknownSessionID(sid)),
            // The first WebSocket claims the upgrade at once: a second one
            // may arrive before the first has sent `2probe`.
            Some(s) => duplicate = !s.is_http() || !s.claim_upgrade(),
        }
    }
    let accept = accept_key(key.as_bytes());
    tokio::spawn(connection(Box::new(Start {
        engine,
        protocol,
        sid,
        duplicate,
        req,
    })));
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(ResponseBody::empty())
        .expect("static headers"))
}

/// What a WebSocket connection's task starts from.
struct Start<H: EngineIoHandler, R> {
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    /// A second WebSocket for a session: accepted, then closed.
    duplicate: bool,
    req: Request<R>,
}

/// A WebSocket connection's task, from hyper's upgrade to the close frame.
///
/// Everything before the session's life (hyper's upgrade, the request head,
/// the handshake and its timers) and everything after (the last flush, the
/// close frame) runs in futures of their own, boxed and freed once they
/// return: inline, their states would be part of every connection's task
/// for its whole life. The start is boxed too: the argument of an async fn
/// keeps its place in the future as long as the future lives.
async fn connection<H: EngineIoHandler, R: Send + 'static>(start: Box<Start<H, R>>) {
    if let Some((conn, engine, socket)) = Box::pin(upgraded(start)).await {
        live(conn, engine, socket).await;
    }
}

/// Waits for hyper's upgrade, then opens (or upgrades) the session on it.
async fn upgraded<H: EngineIoHandler, R: Send + 'static>(
    start: Box<Start<H, R>>,
) -> Option<(Conn, Arc<EngineIo<H>>, Arc<Socket<H::Data>>)> {
    let Start {
        engine,
        protocol,
        sid,
        duplicate,
        mut req,
    } = *start;
    // Takes hyper's upgrade handle out of the request's extensions: the
    // session keeps only the request head.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    drop(body);
    let Ok(upgraded) = on_upgrade.await else {
        if let (Some(sid), false) = (sid, duplicate)
            && let Some(s) = engine.get_socket(sid)
        {
            s.set_upgrading(false);
        }
        return None;
    };
    if duplicate {
        drop(upgraded);
        return None;
    }
    let (wire, prefix) = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(p) => (Wire::Tcp(p.io.into_inner()), p.read_buf),
        Err(upgraded) => match bridge(TokioIo::new(upgraded)) {
            Ok(w) => (w, Bytes::new()),
            Err(_) => return None,
        },
    };
    open(engine, Arc::new(wire), prefix, protocol, sid, parts).await
}

/// A socket pair whose far end a task copies to and from `io`: the
/// connection task then works on a kernel socket whatever `io` is.
pub(crate) fn bridge<S>(io: S) -> std::io::Result<Wire>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (near, mut far) = UnixStream::pair()?;
    let mut io = io;
    tokio::spawn(async move {
        tokio::io::copy_bidirectional(&mut io, &mut far).await.ok();
    });
    Ok(Wire::Unix(near))
}

/// Runs a WebSocket connection over any stream (socketioxide's harness).
pub(crate) async fn run_stream<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    parts: Parts,
) -> Result<(), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let wire = bridge(conn).map_err(|_| Error::Upgrade)?;
    let opened = Box::pin(open(
        engine,
        Arc::new(wire),
        Bytes::new(),
        protocol,
        sid,
        parts,
    ))
    .await;
    if let Some((conn, engine, socket)) = opened {
        live(conn, engine, socket).await;
    }
    Ok(())
}

/// How a connection ended, and what to tell the client.
struct Ending {
    reason: Option<DisconnectReason>,
    close: (u16, &'static str),
}

/// Opens a session on a new WebSocket (the open packet), or moves an
/// existing one onto it (the probe handshake).
async fn open<H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    wire: Arc<Wire>,
    prefix: Bytes,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    parts: Parts,
) -> Option<(Conn, Arc<EngineIo<H>>, Arc<Socket<H::Data>>)> {
    let mut conn = Conn {
        reader: FrameReader::new(
            engine.config.ws_message_limit(),
            engine.config.ws_max_frame_size,
        ),
        pending: (!prefix.is_empty()).then(|| BytesMut::from(&prefix[..])),
        wire,
    };
    // `prefix` is a view into hyper's 8 KiB read buffer: an argument of an
    // async fn lives as long as its future, so keeping it would hold that
    // buffer for the connection's whole life.
    drop(prefix);
    let socket = match sid {
        None => {
            let socket = engine.create_session(protocol, TransportType::Websocket, parts);
            let open: String = Packet::Open(open_packet(&engine, socket.id, false)).into();
            if conn.write_text(open.as_bytes()).await.is_err() {
                engine.close_session(socket.id, DisconnectReason::TransportError);
                return None;
            }
            socket
        }
        Some(sid) => {
            drop(parts);
            let Some(socket) = engine.get_socket(sid) else {
                conn.send_close(close_code::POLICY, "unknown session").await;
                return None;
            };
            let timeout = engine.config.upgrade_timeout;
            match tokio::time::timeout(timeout, conn.upgrade(&socket)).await {
                Ok(Ok(())) => socket,
                Ok(Err(end)) => {
                    socket.set_upgrading(false);
                    conn.send_close(end.close.0, end.close.1).await;
                    return None;
                }
                Err(_) => {
                    socket.set_upgrading(false);
                    conn.send_close(close_code::POLICY, "upgrade timed out")
                        .await;
                    return None;
                }
            }
        }
    };
    Some((conn, engine, socket))
}

/// The session's life on its WebSocket, then the close.
async fn live<H: EngineIoHandler>(
    mut conn: Conn,
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
) {
    socket.set_transport(TransportType::Websocket);
    socket.out.set_direct(Some(conn.wire.clone()));
    // A polling GET still waiting sees the switch and returns.
    socket.out.attention.notify_waiters();

    let end = conn.serve(&engine, &socket).await;
    Box::pin(close(conn, engine, socket, end)).await;
}

/// Ends the session if the connection's end did, flushes what it queued
/// and sends the close frame.
async fn close<H: EngineIoHandler>(
    conn: Conn,
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    end: Ending,
) {
    socket.out.set_direct(None);
    if let Some(reason) = end.reason {
        engine.close_session(socket.id, reason);
    }
    // Flush what the session queued before it ended (a close packet, a
    // last message), then the close frame.
    let flush = async {
        loop {
            match socket.out.drain_to(&conn.wire) {
                Ok(true) => break,
                Ok(false) => {
                    if conn.wire.writable().await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), flush)
        .await
        .ok();
    conn.send_close(end.close.0, end.close.1).await;
}

fn open_packet<H: EngineIoHandler>(engine: &EngineIo<H>, sid: Sid, polling: bool) -> OpenPacket {
    let upgrades = if polling {
        vec![TransportType::Websocket]
    } else {
        vec![]
    };
    OpenPacket {
        sid,
        upgrades: upgrades.into(),
        ping_interval: engine.config.ping_interval,
        ping_timeout: engine.config.ping_timeout,
        max_payload: engine.config.max_payload,
    }
}

pub(crate) fn polling_open_packet<H: EngineIoHandler>(engine: &EngineIo<H>, sid: Sid) -> String {
    Packet::Open(open_packet(engine, sid, true)).into()
}

/// A connection's reading side and its socket.
struct Conn {
    reader: FrameReader,
    /// Bytes of a frame that arrived in part.
    pending: Option<BytesMut>,
    wire: Arc<Wire>,
}

/// What the server does about one client message.
enum Step {
    Continue,
    End(Ending),
}

impl Conn {
    async fn write_text(&self, payload: &[u8]) -> std::io::Result<()> {
        self.write_frame(frame::OP_TEXT, payload).await
    }

    async fn write_frame(&self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut f = Vec::with_capacity(frame::MAX_HEAD + payload.len());
        f.resize(frame::MAX_HEAD, 0);
        let n = frame::write_header(opcode, payload.len(), &mut f);
        f.truncate(n);
        f.extend_from_slice(payload);
        self.wire.write_all(&f).await
    }

    async fn send_close(&self, code: u16, reason: &str) {
        let payload = frame::close_payload(code, reason);
        let write = self.write_frame(frame::OP_CLOSE, &payload);
        tokio::time::timeout(Duration::from_secs(1), write)
            .await
            .ok();
    }

    /// Waits for the next complete client message.
    async fn next(&mut self) -> Result<Option<Incoming>, Ending> {
        loop {
            if let Some(buf) = self.pending.as_mut() {
                let (used, msg) = self.reader.read(buf).map_err(violation)?;
                if used > 0 {
                    let _ = buf.split_to(used);
                    if buf.is_empty() {
                        self.pending = None;
                    }
                }
                if msg.is_some() {
                    return Ok(msg);
                }
                if used > 0 {
                    continue;
                }
            }
            self.wire.readable().await.map_err(|_| io_ending())?;
            match self.read_some() {
                Ok(0) => {
                    return Err(Ending {
                        reason: Some(DisconnectReason::TransportClose),
                        close: (close_code::NORMAL, ""),
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(io_ending()),
            }
        }
    }

    /// One read into a stack buffer, kept in `pending`. Not async: the
    /// buffer is not part of the task's state, so an idle connection's task
    /// stays small.
    fn read_some(&mut self) -> std::io::Result<usize> {
        let mut stack = [0u8; 4096];
        let n = self.wire.try_read(&mut stack)?;
        if n > 0 {
            self.take(&stack[..n]);
        }
        Ok(n)
    }

    /// Appends newly read bytes, sizing the buffer to the frame they start.
    fn take(&mut self, data: &[u8]) {
        match self.pending.as_mut() {
            Some(buf) => buf.extend_from_slice(data),
            None => {
                let want = self.reader.frame_len(data).unwrap_or(0).max(data.len());
                let mut buf = BytesMut::with_capacity(want.min(1 << 20));
                buf.extend_from_slice(data);
                self.pending = Some(buf);
            }
        }
    }

    /// The polling → WebSocket upgrade: `2probe` → `3probe`, the pending GET
    /// released with a noop, then `5`.
    async fn upgrade<D>(&mut self, socket: &Arc<Socket<D>>) -> Result<(), Ending>
    where
        D: Default + Send + Sync + 'static,
    {
        let bad = || Ending {
            reason: None,
            close: (close_code::POLICY, "bad upgrade"),
        };
        match self.next().await? {
            Some(Incoming::Text(t)) if t == "2probe" => {}
            _ => return Err(bad()),
        }
        self.write_text(b"3probe").await.map_err(|_| io_ending())?;
        socket.set_upgrading(true);
        socket.out.push(OutPacket::raw("6")).ok();
        loop {
            match self.next().await? {
                Some(Incoming::Text(t)) if t == "5" => break,
                Some(Incoming::Ping(p)) => {
                    self.write_frame(frame::OP_PONG, &p)
                        .await
                        .map_err(|_| io_ending())?;
                }
                Some(Incoming::Pong) => {}
                _ => return Err(bad()),
            }
        }
        // Noops were for the polling GET; they mean nothing on WebSocket.
        socket.out.state.lock().queue.retain(|p| !p.is_noop());
        // On WebSocket before the upgrade ends: a polling GET waiting for the
        // upgrade (see `polling::get`) then sees the session moved.
        socket.set_transport(crate::TransportType::Websocket);
        socket.set_upgrading(false);
        Ok(())
    }

    /// The session's life on this connection.
    async fn serve<H: EngineIoHandler>(
        &mut self,
        engine: &Arc<EngineIo<H>>,
        socket: &Arc<Socket<H::Data>>,
    ) -> Ending {
        let interval = engine.config.ping_interval;
        let timeout = engine.config.ping_timeout;
        let mut next_ping = Instant::now() + interval;
        let mut ping_sent: Option<Instant> = None;
        let wire = self.wire.clone();
        loop {
            let (queued, closed, broken) = {
                let ob = socket.out.state.lock();
                (!ob.queue.is_empty(), ob.closed, ob.broken)
            };
            if broken {
                return io_ending();
            }
            if closed {
                return Ending {
                    reason: None,
                    close: (close_code::NORMAL, ""),
                };
            }
            let deadline = ping_sent.map_or(next_ping, |t| t + timeout);
            let attention = socket.out.attention.notified();
            tokio::select! {
                biased;
                () = attention => {}
                w = wire.writable(), if queued => {
                    if w.is_err() {
                        return io_ending();
                    }
                    if socket.out.drain_to(&wire).is_err() {
                        return io_ending();
                    }
                }
                msg = self.next() => {
                    match msg {
                        Ok(Some(msg)) => {
                            if let Step::End(end) = self.handle(engine, socket, msg, &mut ping_sent) {
                                return end;
                            }
                        }
                        Ok(None) => {}
                        Err(end) => return end,
                    }
                }
                () = sleep_until(deadline) => {
                    if ping_sent.is_some() {
                        return Ending {
                            reason: Some(DisconnectReason::HeartbeatTimeout),
                            close: (close_code::GOING_AWAY, "ping timeout"),
                        };
                    }
                    let now = Instant::now();
                    ping_sent = Some(now);
                    next_ping = now + interval;
                    if socket.send_raw("2").is_err() {
                        continue;
                    }
                }
            }
        }
    }

    fn handle<H: EngineIoHandler>(
        &mut self,
        engine: &Arc<EngineIo<H>>,
        socket: &Arc<Socket<H::Data>>,
        msg: Incoming,
        ping_sent: &mut Option<Instant>,
    ) -> Step {
        match msg {
            Incoming::Text(text) => match Packet::parse(ProtocolVersion::V4, Str::from(text)) {
                Ok(Packet::Message(msg)) => engine.handler.on_message(msg, socket.clone()),
                Ok(Packet::Pong | Packet::Ping) => *ping_sent = None,
                Ok(Packet::Close) => {
                    return Step::End(Ending {
                        reason: Some(DisconnectReason::TransportClose),
                        close: (close_code::NORMAL, ""),
                    });
                }
                _ => {
                    return Step::End(Ending {
                        reason: Some(DisconnectReason::PacketParsingError),
                        close: (close_code::POLICY, "not an engine.io packet"),
                    });
                }
            },
            Incoming::Binary(data) => engine.handler.on_binary(data, socket.clone()),
            Incoming::Ping(payload) => {
                // Through the outbox, so it never lands inside a frame that
                // an emitter left half-written.
                socket
                    .out
                    .push(OutPacket::ws_control(frame::OP_PONG, payload))
                    .ok();
            }
            Incoming::Pong => {}
            Incoming::Close(code) => {
                let echo = if code == 1005 {
                    close_code::NORMAL
                } else {
                    code
                };
                return Step::End(Ending {
                    reason: Some(DisconnectReason::TransportClose),
                    close: (echo, ""),
                });
            }
        }
        Step::Continue
    }
}

fn violation(v: frame::Violation) -> Ending {
    stats::WS_PROTOCOL_ERRORS.inc();
    #[cfg(feature = "tracing")]
    tracing::debug!(
        code = v.code,
        reason = v.reason,
        "websocket protocol violation"
    );
    Ending {
        reason: Some(DisconnectReason::TransportError),
        close: (v.code, v.reason),
    }
}

fn io_ending() -> Ending {
    Ending {
        reason: Some(DisconnectReason::TransportError),
        close: (close_code::INTERNAL, ""),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_of_rfc6455_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
