//! An Engine.IO session and its outbound path.
//!
//! Every packet for a socket goes through [`Outbox`]: when the socket is on
//! WebSocket and nothing is queued, the emitting task writes the frame
//! straight to the kernel (`try_write_vectored`: the header, then the
//! shared payload); only what the kernel does not take at once is queued,
//! and the connection's task drains the queue with vectored writes, several
//! frames per call. On polling, packets queue until a GET takes them.
//! The queue is bounded in packets and bytes; a socket past either bound is
//! a slow consumer and is closed rather than allowed to grow.

use std::{
    collections::VecDeque,
    fmt,
    io::{self, IoSlice},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use engineioxide_core::{ProtocolVersion, Str, TransportType};
use http::request::Parts;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc::error::TrySendError};

use crate::{
    config::EngineIoConfig,
    stats,
    ws::{frame, wire::Wire},
};

pub use engineioxide_core::Sid;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the transport (or sent a close packet).
    TransportClose,
    /// A second polling GET arrived while one was pending.
    MultipleHttpPollingError,
    /// The client sent something that is not Engine.IO.
    PacketParsingError,
    /// The transport failed: an I/O error, a WebSocket protocol violation,
    /// or a client too slow to read what it was sent.
    TransportError,
    /// The client did not answer a ping in time.
    HeartbeatTimeout,
    /// The server closed the session.
    ClosingServer,
}

/// What the engine writes: an Engine.IO packet whose encoding depends on the
/// transport that finally carries it (a packet queued on polling may leave
/// over WebSocket after an upgrade).
#[derive(Debug, Clone)]
pub(crate) struct OutPacket {
    kind: OutKind,
    body: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OutKind {
    /// A message packet: `4` then the body (text).
    Message,
    /// A complete text packet (`2`, `6`, `0{...}`...).
    Raw,
    /// Binary data.
    Binary,
    /// A WebSocket control frame (a pong answering a client's ping).
    WsControl(u8),
}

impl OutPacket {
    pub(crate) fn message(msg: Str) -> Self {
        Self {
            kind: OutKind::Message,
            body: msg.into(),
        }
    }
    pub(crate) fn raw(text: impl Into<Bytes>) -> Self {
        Self {
            kind: OutKind::Raw,
            body: text.into(),
        }
    }
    pub(crate) fn binary(data: Bytes) -> Self {
        Self {
            kind: OutKind::Binary,
            body: data,
        }
    }
    pub(crate) fn ws_control(opcode: u8, payload: Bytes) -> Self {
        Self {
            kind: OutKind::WsControl(opcode),
            body: payload,
        }
    }
    pub(crate) fn is_noop(&self) -> bool {
        self.kind == OutKind::Raw && self.body.as_ref() == b"6"
    }

    /// The WebSocket frame header (and the `4` of a message) in `head`;
    /// returns its length. The frame is `head` then `body`.
    fn ws_head(&self, head: &mut [u8; frame::MAX_HEAD + 1]) -> usize {
        match self.kind {
            OutKind::Message => {
                let n = frame::write_header(frame::OP_TEXT, self.body.len() + 1, head);
                head[n] = b'4';
                n + 1
            }
            OutKind::Raw => frame::write_header(frame::OP_TEXT, self.body.len(), head),
            OutKind::Binary => frame::write_header(frame::OP_BINARY, self.body.len(), head),
            OutKind::WsControl(op) => frame::write_header(op, self.body.len(), head),
        }
    }

    fn ws_len(&self) -> usize {
        let mut head = [0; frame::MAX_HEAD + 1];
        self.ws_head(&mut head) + self.body.len()
    }

    /// Appends the packet as one element of a polling payload.
    pub(crate) fn encode_polling(&self, out: &mut Vec<u8>) {
        use base64::Engine;
        match self.kind {
            OutKind::Message => {
                out.push(b'4');
                out.extend_from_slice(&self.body);
            }
            OutKind::Raw => out.extend_from_slice(&self.body),
            // Only queued on WebSocket.
            OutKind::WsControl(_) => {}
            OutKind::Binary => {
                out.push(b'b');
                let start = out.len();
                let n = base64::encoded_len(self.body.len(), true).unwrap_or(0);
                out.resize(start + n, 0);
                let written = base64::engine::general_purpose::STANDARD
                    .encode_slice(&self.body, &mut out[start..])
                    .unwrap_or(0);
                out.truncate(start + written);
            }
        }
    }

    pub(crate) fn polling_len(&self) -> usize {
        match self.kind {
            OutKind::Message => 1 + self.body.len(),
            OutKind::Raw => self.body.len(),
            OutKind::WsControl(_) => 0,
            OutKind::Binary => 1 + self.body.len().div_ceil(3) * 4,
        }
    }
}

/// The socket's outbound state, under one lock: the order of packets is the
/// order in which emitters took it.
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) queue: VecDeque<OutPacket>,
    /// Bytes of queued packets not yet written (WebSocket encoding).
    queued_bytes: usize,
    /// How much of the front packet's frame is already written.
    front_written: usize,
    /// The live WebSocket, when write-through is on.
    direct: Option<Arc<Wire>>,
    pub(crate) closed: bool,
    /// A write failed; the connection task closes the session.
    pub(crate) broken: bool,
}

/// How many frames one thread writes through in a burst before it hands the
/// rest to the sockets' own tasks.
///
/// A broadcast to a large room is one loop in one task; written through,
/// its last member would wait for every send before it. Past the budget the
/// frames are queued and each socket's connection task (woken on whichever
/// worker is free) writes its own, so the sends spread over the runtime's
/// workers. The burst is counted per thread over a 1 ms window.
mod burst {
    use std::{
        cell::Cell,
        time::{Duration, Instant},
    };

    const BUDGET: u32 = 256;
    const WINDOW: Duration = Duration::from_millis(1);

    thread_local! {
        static BURST: Cell<Option<(Instant, u32)>> = const { Cell::new(None) };
    }

    pub(super) fn write_through_allowed() -> bool {
        BURST.with(|b| {
            let now = Instant::now();
            match b.get() {
                Some((start, n)) if now.duration_since(start) < WINDOW => {
                    b.set(Some((start, n + 1)));
                    n < BUDGET
                }
                _ => {
                    b.set(Some((now, 1)));
                    true
                }
            }
        })
    }
}

/// Why a packet was not taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Refused {
    Closed,
    Full,
}

/// Closes a session on behalf of a socket (the engine that owns it).
pub(crate) trait SessionCloser: Send + Sync {
    fn close_session(&self, sid: Sid, reason: DisconnectReason);
}

/// One Engine.IO session.
pub struct Socket<D>
where
    D: Default + Send + Sync + 'static,
{
    /// The session id.
    pub id: Sid,
    /// The Engine.IO protocol version of the client.
    pub protocol: ProtocolVersion,
    /// The transport's outbound path.
    pub(crate) out: Sender,
    transport: AtomicU8,
    upgrading: AtomicBool,
    /// A polling GET is pending.
    pub(crate) polling: AtomicBool,
    /// The client sent a close packet before its GET: the next GET ends
    /// the session.
    pub(crate) close_after_poll: AtomicBool,
    /// When the outstanding polling ping must be answered by (ms since
    /// [`epoch`]; 0: none outstanding).
    ping_deadline: AtomicU64,
    closer: Arc<dyn SessionCloser>,
    /// User data of the handler.
    pub data: D,
    /// The request that opened the session.
    pub req_parts: Parts,
}

/// The part of a socket that emitting needs (a [`Permit`] borrows it).
pub(crate) struct Sender {
    pub(crate) state: Mutex<Outbox>,
    /// Wakes whoever drains the queue: the WebSocket task or a pending GET.
    pub(crate) attention: Notify,
    closed_event: Notify,
    closed: AtomicBool,
    max_packets: usize,
    max_bytes: usize,
}

impl Sender {
    fn new(config: &EngineIoConfig) -> Self {
        Self {
            state: Mutex::default(),
            attention: Notify::new(),
            closed_event: Notify::new(),
            closed: AtomicBool::new(false),
            max_packets: config.max_buffer_size.max(1),
            max_bytes: config.max_buffer_bytes.max(1),
        }
    }

    /// Writes `packet` through to the WebSocket when nothing is queued,
    /// queues it otherwise. `Err(Full)`: the socket is a slow consumer
    /// (the caller closes it).
    pub(crate) fn push(&self, packet: OutPacket) -> Result<(), Refused> {
        let mut ob = self.state.lock();
        if ob.closed {
            return Err(Refused::Closed);
        }
        let was_empty = ob.queue.is_empty();
        let mut written = 0;
        if was_empty
            && let Some(wire) = &ob.direct
            && burst::write_through_allowed()
        {
            let mut head = [0; frame::MAX_HEAD + 1];
            let n = packet.ws_head(&mut head);
            let total = n + packet.body.len();
            match wire.try_write_vectored(&[IoSlice::new(&head[..n]), IoSlice::new(&packet.body)]) {
                Ok(w) if w == total => {
                    stats::FRAMES_DIRECT.inc();
                    return Ok(());
                }
                // The rest goes out when the socket is writable again: the
                // connection task drains from here.
                Ok(w) => written = w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    ob.broken = true;
                    drop(ob);
                    self.attention.notify_one();
                    return Ok(());
                }
            }
        } else if ob.queue.len() >= self.max_packets
            // The bound is on the backlog: one packet larger than it still
            // goes out to a reader that keeps up (a large `sync` page, say).
            || (!was_empty && ob.queued_bytes + packet.body.len() > self.max_bytes)
        {
            return Err(Refused::Full);
        } else if was_empty && ob.direct.is_some() {
            stats::FRAMES_HANDED_OFF.inc();
        }
        if was_empty {
            ob.front_written = written;
        }
        ob.queued_bytes += packet.ws_len() - written;
        ob.queue.push_back(packet);
        stats::FRAMES_QUEUED.inc();
        drop(ob);
        if was_empty {
            self.attention.notify_one();
        }
        Ok(())
    }

    /// Whether `push` would be refused now (for [`Socket::reserve`]).
    fn check(&self) -> Result<(), Refused> {
        let ob = self.state.lock();
        if ob.closed {
            Err(Refused::Closed)
        } else if ob.queue.len() >= self.max_packets || ob.queued_bytes > self.max_bytes {
            Err(Refused::Full)
        } else {
            Ok(())
        }
    }

    /// Writes queued frames to `wire` until the queue is empty
    /// (`Ok(true)`) or the kernel takes no more (`Ok(false)`). Up to 64
    /// frames go out per call.
    pub(crate) fn drain_to(&self, wire: &Wire) -> io::Result<bool> {
        const BATCH: usize = 64;
        let mut ob = self.state.lock();
        loop {
            if ob.queue.is_empty() {
                ob.queued_bytes = 0;
                // The queue stays allocated only while it is used.
                if ob.queue.capacity() > 16 {
                    ob.queue = VecDeque::new();
                }
                return Ok(true);
            }
            let mut heads = [[0u8; frame::MAX_HEAD + 1]; BATCH];
            let mut lens = [0usize; BATCH];
            let count = ob.queue.len().min(BATCH);
            for (i, p) in ob.queue.iter().take(count).enumerate() {
                lens[i] = p.ws_head(&mut heads[i]);
            }
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(count * 2);
            let mut skip = ob.front_written;
            for (i, p) in ob.queue.iter().take(count).enumerate() {
                for part in [&heads[i][..lens[i]], &p.body[..]] {
                    if skip >= part.len() {
                        skip -= part.len();
                    } else {
                        slices.push(IoSlice::new(&part[skip..]));
                        skip = 0;
                    }
                }
            }
            let res = wire.try_write_vectored(&slices);
            drop(slices);
            let mut n = match res {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            ob.queued_bytes = ob.queued_bytes.saturating_sub(n);
            // Pop what was written whole; remember how far into the next.
            n += ob.front_written;
            ob.front_written = 0;
            while let Some(p) = ob.queue.front() {
                let len = p.ws_len();
                if n >= len {
                    n -= len;
                    ob.queue.pop_front();
                } else {
                    ob.front_written = n;
                    break;
                }
            }
            if ob.front_written > 0 {
                return Ok(false);
            }
        }
    }

    /// Makes `wire` the write-through target (after the queue is drained
    /// there) or removes it.
    pub(crate) fn set_direct(&self, wire: Option<Arc<Wire>>) {
        self.state.lock().direct = wire;
    }

    /// Takes up to `max` bytes of packets for a polling response.
    pub(crate) fn take_polling(&self, max: usize) -> Option<Vec<u8>> {
        let mut ob = self.state.lock();
        let mut out = Vec::with_capacity(ob.queue.front()?.polling_len());
        let mut taken = 0;
        // At least one packet, then as many as fit in `max`.
        while let Some(p) = ob.queue.front() {
            if !out.is_empty() {
                if out.len() + 1 + p.polling_len() > max {
                    break;
                }
                out.push(0x1e);
            }
            p.encode_polling(&mut out);
            taken += p.ws_len();
            ob.queue.pop_front();
        }
        ob.queued_bytes = ob.queued_bytes.saturating_sub(taken);
        if ob.queue.is_empty() && ob.queue.capacity() > 16 {
            ob.queue = VecDeque::new();
        }
        Some(out)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the outbox closed (packets already queued still go out).
    pub(crate) fn mark_closed(&self) {
        self.state.lock().closed = true;
        self.closed.store(true, Ordering::Release);
        self.closed_event.notify_waiters();
        self.attention.notify_one();
    }

    async fn closed(&self) {
        loop {
            let notified = self.closed_event.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// Room for one packet in a socket's outbound path, taken by
/// [`Socket::reserve`] before the packet is encoded.
pub struct Permit<'a> {
    sender: &'a Sender,
    closer: &'a dyn SessionCloser,
    sid: Sid,
}

impl Permit<'_> {
    fn push(&self, packet: OutPacket) {
        push_or_close(self.sender, self.closer, self.sid, packet).ok();
    }

    /// Sends a text message.
    #[inline]
    pub fn emit(self, msg: Str) {
        self.push(OutPacket::message(msg));
    }

    /// Sends binary data.
    #[inline]
    pub fn emit_binary(self, data: Bytes) {
        self.push(OutPacket::binary(data));
    }

    /// Sends a text message and its binary attachments, in order.
    pub fn emit_many(self, msg: Str, data: VecDeque<Bytes>) {
        self.push(OutPacket::message(msg));
        for bin in data {
            self.push(OutPacket::binary(bin));
        }
    }

    /// Sends binary data and its attachments, in order.
    pub fn emit_many_binary(self, bin: Bytes, data: Vec<Bytes>) {
        self.push(OutPacket::binary(bin));
        for d in data {
            self.push(OutPacket::binary(d));
        }
    }
}

/// Pushes `packet`; a socket whose backlog is past its bound is a slow
/// consumer and is closed.
fn push_or_close(
    sender: &Sender,
    closer: &dyn SessionCloser,
    sid: Sid,
    packet: OutPacket,
) -> Result<(), Refused> {
    let res = sender.push(packet);
    if res == Err(Refused::Full) {
        stats::SLOW_CONSUMERS.inc();
        #[cfg(feature = "tracing")]
        tracing::debug!(%sid, "outbound queue full: closing a slow consumer");
        closer.close_session(sid, DisconnectReason::TransportError);
    }
    res
}

impl<D> Socket<D>
where
    D: Default + Send + Sync + 'static,
{
    pub(crate) fn new(
        protocol: ProtocolVersion,
        transport: TransportType,
        config: &EngineIoConfig,
        req_parts: Parts,
        closer: Arc<dyn SessionCloser>,
    ) -> Self {
        Self {
            id: Sid::new(),
            protocol,
            out: Sender::new(config),
            transport: AtomicU8::new(transport as u8),
            upgrading: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            ping_deadline: AtomicU64::new(0),
            close_after_poll: AtomicBool::new(false),
            closer,
            data: D::default(),
            req_parts,
        }
    }

    /// Queues or writes an engine-level packet (ping, noop, close).
    pub(crate) fn send_raw(&self, text: &'static str) -> Result<(), Refused> {
        self.out
            .push(OutPacket::raw(Bytes::from_static(text.as_bytes())))
    }

    fn send(&self, packet: OutPacket) -> Result<(), Refused> {
        push_or_close(&self.out, self.closer.as_ref(), self.id, packet)
    }

    /// A ping went out; it must be answered by `deadline`.
    pub(crate) fn ping_sent(&self, deadline: tokio::time::Instant) {
        self.ping_deadline
            .store(epoch_ms(deadline).max(1), Ordering::Release);
    }
    /// The client answered (or sent any heartbeat).
    pub(crate) fn pong_received(&self) {
        self.ping_deadline.store(0, Ordering::Release);
    }
    /// Whether a ping is outstanding past its deadline.
    pub(crate) fn ping_overdue(&self) -> bool {
        let deadline = self.ping_deadline.load(Ordering::Acquire);
        deadline != 0 && epoch_ms(tokio::time::Instant::now()) >= deadline
    }

    pub(crate) fn is_upgrading(&self) -> bool {
        self.upgrading.load(Ordering::Acquire)
    }
    /// Marks the session as upgrading unless it already is; whether this
    /// call did.
    pub(crate) fn claim_upgrade(&self) -> bool {
        self.upgrading
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    pub(crate) fn set_upgrading(&self, on: bool) {
        self.upgrading.store(on, Ordering::Release);
    }
    pub(crate) fn is_ws(&self) -> bool {
        self.transport_type() == TransportType::Websocket
    }
    pub(crate) fn is_http(&self) -> bool {
        self.transport_type() == TransportType::Polling
    }
    pub(crate) fn set_transport(&self, t: TransportType) {
        self.transport.store(t as u8, Ordering::Release);
    }

    /// The transport the session is on now.
    pub fn transport_type(&self) -> TransportType {
        TransportType::from(self.transport.load(Ordering::Acquire))
    }

    /// Takes room for one packet. `Full`: the outbound queue is at its
    /// bound; `Closed`: the session ended.
    #[inline]
    pub fn reserve(&self) -> Result<Permit<'_>, TrySendError<()>> {
        match self.out.check() {
            Ok(()) => Ok(Permit {
                sender: &self.out,
                closer: self.closer.as_ref(),
                sid: self.id,
            }),
            Err(Refused::Closed) => Err(TrySendError::Closed(())),
            Err(Refused::Full) => Err(TrySendError::Full(())),
        }
    }

    /// Sends a text message.
    pub fn emit(&self, msg: impl Into<Str>) -> Result<(), TrySendError<Str>> {
        let msg = msg.into();
        self.send(OutPacket::message(msg.clone()))
            .map_err(|e| refused(e, msg))
    }

    /// Sends binary data.
    pub fn emit_binary<B: Into<Bytes>>(&self, data: B) -> Result<(), TrySendError<Bytes>> {
        let data = data.into();
        self.send(OutPacket::binary(data.clone()))
            .map_err(|e| refused(e, data))
    }

    /// Closes the session: a close packet is sent if the transport still
    /// works, then the handler's `on_disconnect` is called with `reason`.
    pub fn close(&self, reason: DisconnectReason) {
        self.send_raw("1").ok();
        self.closer.close_session(self.id, reason);
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.out.is_closed()
    }

    /// Resolves when the session has ended.
    pub async fn closed(&self) {
        self.out.closed().await
    }

    /// Sends a text message unless packets are waiting: a volatile message
    /// is dropped rather than queued behind others.
    pub fn emit_volatile(&self, msg: impl Into<Str>) -> bool {
        self.send_volatile(&[OutPacket::message(msg.into())])
    }

    /// [`Self::emit_volatile`] for binary data.
    pub fn emit_binary_volatile<B: Into<Bytes>>(&self, data: B) -> bool {
        self.send_volatile(&[OutPacket::binary(data.into())])
    }

    /// [`Self::emit_volatile`] for a message with attachments.
    pub fn emit_many_volatile(&self, msg: Str, data: VecDeque<Bytes>) -> bool {
        let mut packets = Vec::with_capacity(1 + data.len());
        packets.push(OutPacket::message(msg));
        packets.extend(data.into_iter().map(OutPacket::binary));
        self.send_volatile(&packets)
    }

    fn send_volatile(&self, packets: &[OutPacket]) -> bool {
        {
            let ob = self.out.state.lock();
            if ob.closed || !ob.queue.is_empty() {
                return false;
            }
        }
        packets.iter().all(|p| self.out.push(p.clone()).is_ok())
    }
}

/// Milliseconds since the first call (a process-wide origin for deadlines
/// kept in atomics).
fn epoch_ms(t: tokio::time::Instant) -> u64 {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        let now = tokio::time::Instant::now();
        now.checked_sub(std::time::Duration::from_secs(1))
            .unwrap_or(now)
    });
    t.saturating_duration_since(epoch).as_millis() as u64
}

fn refused<T>(e: Refused, value: T) -> TrySendError<T> {
    match e {
        Refused::Closed => TrySendError::Closed(value),
        Refused::Full => TrySendError::Full(value),
    }
}

impl<D: Default + Send + Sync + 'static> fmt::Debug for Socket<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("sid", &self.id)
            .field("protocol", &self.protocol)
            .field("transport", &self.transport_type())
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(feature = "__test_harness")]
mod harness {
    use super::*;

    struct FnCloser(Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>);
    impl SessionCloser for FnCloser {
        fn close_session(&self, sid: Sid, reason: DisconnectReason) {
            (self.0)(sid, reason)
        }
    }

    impl<D> Socket<D>
    where
        D: Default + Send + Sync + 'static,
    {
        /// A socket with no transport (socketioxide's own tests).
        #[doc(hidden)]
        pub fn new_dummy(
            sid: Sid,
            close_fn: Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>,
        ) -> Arc<Socket<D>> {
            let mut s = Socket::new(
                ProtocolVersion::V4,
                TransportType::Websocket,
                &EngineIoConfig::default(),
                http::Request::<()>::default().into_parts().0,
                Arc::new(FnCloser(close_fn)),
            );
            s.id = sid;
            Arc::new(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{io::AsyncReadExt, net::UnixStream};

    fn sender(max_bytes: usize) -> Sender {
        let config = EngineIoConfig {
            max_buffer_size: 100_000,
            max_buffer_bytes: max_bytes,
            ..Default::default()
        };
        Sender::new(&config)
    }

    fn expected_frame(p: &OutPacket) -> Vec<u8> {
        let mut head = [0; frame::MAX_HEAD + 1];
        let n = p.ws_head(&mut head);
        [&head[..n], &p.body[..]].concat()
    }

    /// Frames written through, partly written and queued come out whole and
    /// in order, however the kernel splits the writes.
    #[tokio::test]
    async fn write_through_and_drain_keep_frames_whole_and_in_order() {
        let (near, mut far) = UnixStream::pair().unwrap();
        let wire = Arc::new(Wire::Unix(near));
        let out = Arc::new(sender(usize::MAX));
        out.set_direct(Some(wire.clone()));
        let packets: Vec<OutPacket> = (0..400)
            .map(|i| match i % 3 {
                0 => OutPacket::message(Str::from(format!("[\"m\",{i}]"))),
                1 => OutPacket::binary(Bytes::from(vec![i as u8; 70_000])),
                _ => OutPacket::message(Str::from("x".repeat(300))),
            })
            .collect();
        let expected: Vec<u8> = packets.iter().flat_map(expected_frame).collect();
        let reader = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            far.read_exact(&mut got).await.unwrap();
            assert!(
                got == expected,
                "the byte stream differs from the frames in order"
            );
        });
        let mut queued_at_some_point = false;
        for p in packets {
            out.push(p).unwrap();
            queued_at_some_point |= !out.state.lock().queue.is_empty();
        }
        assert!(
            queued_at_some_point,
            "the socket buffer never filled: nothing was queued"
        );
        while !out.drain_to(&wire).unwrap() {
            wire.writable().await.unwrap();
        }
        reader.await.unwrap();
        assert_eq!(out.state.lock().queued_bytes, 0);
    }

    /// Without a live transport (polling), the backlog is bounded in bytes;
    /// one packet larger than the bound is still taken when nothing waits.
    #[test]
    fn backlog_is_bounded_in_bytes() {
        let out = sender(1000);
        out.push(OutPacket::binary(Bytes::from(vec![0; 5000])))
            .unwrap();
        assert_eq!(
            out.push(OutPacket::message(Str::from("x"))),
            Err(Refused::Full)
        );
        assert!(out.take_polling(usize::MAX).is_some());
        for _ in 0..9 {
            out.push(OutPacket::binary(Bytes::from(vec![0; 100])))
                .unwrap();
        }
        assert_eq!(
            out.push(OutPacket::binary(Bytes::from(vec![0; 200]))),
            Err(Refused::Full)
        );
    }

    #[test]
    fn polling_payload_joins_packets_with_record_separators() {
        let out = sender(usize::MAX);
        out.push(OutPacket::message(Str::from("a"))).unwrap();
        out.push(OutPacket::raw("2")).unwrap();
        out.push(OutPacket::binary(Bytes::from_static(b"\x01\x02\x03")))
            .unwrap();
        assert_eq!(out.take_polling(1000).unwrap(), b"4a\x1e2\x1ebAQID");
        out.push(OutPacket::message(Str::from("long"))).unwrap();
        out.push(OutPacket::message(Str::from("next"))).unwrap();
        // Past max, the rest waits for the next GET (at least one packet goes).
        assert_eq!(out.take_polling(3).unwrap(), b"4long");
        assert_eq!(out.take_polling(3).unwrap(), b"4next");
        assert!(out.take_polling(3).is_none());
    }
}
