//! The HTTP long-polling transport: the opening GET, the GETs that take
//! queued packets, and the POSTs that carry the client's.

use std::sync::{Arc, atomic::Ordering};
use std::time::Duration;

use tokio::time::Instant;

use engineioxide_core::{Packet, PacketParseError, ProtocolVersion, Sid, TransportType, payload};
use futures_util::StreamExt;
use http::{Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body::Body;

use crate::{
    body::ResponseBody,
    engine::EngineIo,
    errors::Error,
    handler::EngineIoHandler,
    socket::{DisconnectReason, Socket},
    ws,
};

fn text<B>(data: impl Into<bytes::Bytes>) -> Response<ResponseBody<B>> {
    let data = data.into();
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/plain; charset=UTF-8")
        .header(http::header::CONTENT_LENGTH, data.len())
        .body(ResponseBody::full(data))
        .expect("static headers")
}

/// Opens a polling session: the open packet, and the heartbeat task.
pub(crate) fn open<H: EngineIoHandler, B, R>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    req: Request<R>,
) -> Response<ResponseBody<B>> {
    let (parts, _) = req.into_parts();
    let socket = engine.create_session(protocol, TransportType::Polling, parts);
    let open = ws::polling_open_packet(&engine, socket.id);
    tokio::spawn(heartbeat(engine, socket, Instant::now()));
    text(open)
}

/// Pings a polling session every `ping_interval` until it ends or moves to
/// WebSocket (whose connection task then keeps the heartbeat); a ping not
/// answered within `ping_timeout` ends the session.
///
/// Deadlines count from the session's opening, not from when the timer
/// happened to fire, so they hold to the millisecond a client expects.
async fn heartbeat<H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    opened: Instant,
) {
    let (interval, timeout) = (engine.config.ping_interval, engine.config.ping_timeout);
    let mut next_ping = opened + interval;
    loop {
        tokio::time::sleep_until(next_ping).await;
        if socket.is_closed() || socket.is_ws() {
            return;
        }
        let scheduled = next_ping;
        next_ping = scheduled + interval;
        if socket.is_upgrading() {
            continue;
        }
        socket.ping_sent(scheduled + timeout);
        if socket.send_raw("2").is_err() {
            return;
        }
        tokio::time::sleep_until(scheduled + timeout).await;
        if socket.is_closed() || socket.is_ws() {
            return;
        }
        if socket.ping_overdue() && !socket.is_upgrading() {
            engine.close_session(socket.id, DisconnectReason::HeartbeatTimeout);
            return;
        }
    }
}

/// The session `sid` on polling, or why a request for it is refused. A
/// session whose ping went unanswered past its deadline is closed here, so
/// a request cannot slip in before the heartbeat task wakes.
fn polling_session<H: EngineIoHandler>(
    engine: &EngineIo<H>,
    sid: Sid,
) -> Result<Arc<Socket<H::Data>>, Error> {
    let socket = engine.get_socket(sid).ok_or(Error::UnknownSessionID(sid))?;
    if socket.is_http() && socket.ping_overdue() && !socket.is_upgrading() {
        engine.close_session(sid, DisconnectReason::HeartbeatTimeout);
        return Err(Error::UnknownSessionID(sid));
    }
    if !socket.is_http() {
        return Err(Error::TransportMismatch);
    }
    Ok(socket)
}

/// Marks a socket's GET as pending for as long as it lives.
struct PendingGet<'a>(&'a std::sync::atomic::AtomicBool);
impl Drop for PendingGet<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// How long a polling GET waits for an upgrade in progress to end.
const UPGRADE_GRACE: Duration = Duration::from_millis(50);

/// A GET: waits for packets and returns them as one payload.
pub(crate) async fn get<H: EngineIoHandler, B>(
    engine: Arc<EngineIo<H>>,
    sid: Sid,
) -> Result<Response<ResponseBody<B>>, Error> {
    let socket = polling_session(&engine, sid)?;
    // A GET that arrives while the session upgrades waits a moment for the
    // upgrade's `5`: a client that sent `5` before this GET gets the answer
    // of a session on WebSocket (400) whichever request the server reads
    // first; a client still polling (it has not seen `3probe` yet) is
    // served as before once the moment has passed.
    let grace = Instant::now() + UPGRADE_GRACE;
    while socket.is_upgrading() && Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if !socket.is_http() {
        return Err(Error::TransportMismatch);
    }
    if socket.polling.swap(true, Ordering::AcqRel) {
        socket.close(DisconnectReason::MultipleHttpPollingError);
        return Err(Error::MultipleHttpPolling);
    }
    let _pending = PendingGet(&socket.polling);
    let max = usize::try_from(engine.config.max_payload).unwrap_or(usize::MAX);
    loop {
        let notified = socket.out.attention.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(payload) = socket.out.take_polling(max) {
            if socket.close_after_poll.load(Ordering::Acquire) {
                engine.close_session(sid, DisconnectReason::TransportClose);
            }
            return Ok(text(payload));
        }
        if socket.is_closed() {
            return Ok(text("1"));
        }
        if !socket.is_http() {
            // The session moved to WebSocket while this GET waited.
            return Err(Error::TransportMismatch);
        }
        notified.await;
    }
}

/// A POST: the client's packets, handed to the handler in order.
pub(crate) async fn post<H, R, B>(
    engine: Arc<EngineIo<H>>,
    sid: Sid,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error>
where
    H: EngineIoHandler,
    R: Body + Send + Unpin + 'static,
    R::Error: std::fmt::Debug,
    R::Data: Send,
{
    let socket = polling_session(&engine, sid)?;
    let (parts, body) = req.into_parts();
    let max = engine.config.max_payload;
    let packets = payload::decoder(
        body,
        parts.headers.get(CONTENT_TYPE),
        ProtocolVersion::V4,
        max,
    );
    futures_util::pin_mut!(packets);
    while let Some(packet) = packets.next().await {
        match packet {
            Ok(Packet::Message(msg)) => engine.handler.on_message(msg, socket.clone()),
            Ok(Packet::Binary(bin) | Packet::BinaryV3(bin)) => {
                engine.handler.on_binary(bin, socket.clone())
            }
            Ok(Packet::Pong | Packet::Ping) => socket.pong_received(),
            Ok(Packet::Close) => {
                // The client's GET gets a noop before the session ends: the
                // pending one at once, or the next one if the POST came first
                // (the two are sent together, on two connections).
                socket.send_raw("6").ok();
                if socket.polling.load(Ordering::Acquire) {
                    engine.close_session(sid, DisconnectReason::TransportClose);
                } else {
                    // The next GET takes the noop and ends the session; if
                    // none comes, the session ends after `ping_timeout`.
                    socket.close_after_poll.store(true, Ordering::Release);
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(engine.config.ping_timeout).await;
                        engine.close_session(sid, DisconnectReason::TransportClose);
                    });
                }
                break;
            }
            Ok(_) => {
                engine.close_session(sid, DisconnectReason::PacketParsingError);
                return Err(Error::BadPayload(PacketParseError::InvalidPacketType(None)));
            }
            Err(PacketParseError::PayloadTooLarge { max }) => {
                engine.close_session(sid, DisconnectReason::PacketParsingError);
                return Err(Error::PayloadTooLarge { max });
            }
            Err(e) => {
                engine.close_session(sid, DisconnectReason::PacketParsingError);
                return Err(Error::BadPayload(e));
            }
        }
    }
    Ok(text("ok"))
}
