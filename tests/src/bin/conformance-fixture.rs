//! The server the official Engine.IO and Socket.IO protocol conformance
//! suites (`tests/conformance/`) run against, with the suites' reference
//! settings rather than hookwire's production ones.
//!
//! ```text
//! conformance-fixture [--engineio PORT] [--socketio PORT]
//! ```
//!
//! `--engineio` serves a bare Engine.IO echo on `/engine.io/` (every message
//! packet is sent back as is); `--socketio` serves Socket.IO on `/socket.io/`
//! with the namespaces and events the socket.io suite expects. Both may run
//! in one process. Port 0 picks a free port; each server prints one line
//! `engineio http://127.0.0.1:PORT` / `socketio http://127.0.0.1:PORT` on
//! stdout once it accepts connections. SIGTERM or Ctrl-C stops the process.
//! `RUST_LOG` (e.g. `engineioxide=debug`) logs to stderr.

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use bytes::Bytes;
use engineioxide::{
    DisconnectReason, Socket, Str, config::EngineIoConfig, handler::EngineIoHandler,
    service::EngineIoService,
};
use hyper::{
    Request, Response,
    body::{Body, Incoming},
    server::conn::http1,
    service::Service,
};
use hyper_util::rt::TokioIo;
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{MapAccess, SeqAccess, Visitor},
    ser::{SerializeMap, SerializeSeq, SerializeTuple},
};
use socketioxide::{
    SocketIo,
    extract::{AckSender, Data, SocketRef},
};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
};

// The suites hard-code these: they assert them in the handshake and time
// their heartbeat tests with them.
const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_PAYLOAD: u64 = 1_000_000;
// "closes the connection if no handshake is received" waits for the close
// within mocha's 2 s test timeout, so the server must give up on a missing
// Socket.IO CONNECT well before that (socketioxide's default is 45 s). The
// reference server uses 1 s; the heartbeat tests, which never send a
// CONNECT, get their three pings 300 ms apart within it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Engine.IO echo: the engine.io suite checks that each message it sends
/// comes back unchanged, text as text and binary as binary.
#[derive(Debug)]
struct Echo;

impl EngineIoHandler for Echo {
    type Data = ();

    fn on_connect(self: Arc<Self>, _socket: Arc<Socket<()>>) {}

    fn on_disconnect(&self, _socket: Arc<Socket<()>>, _reason: DisconnectReason) {}

    fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
        // A full buffer or a closed socket only means the client is gone.
        let _ = socket.emit(msg);
    }

    fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<()>>) {
        let _ = socket.emit_binary(data);
    }
}

/// One event argument, as received. `serde_json::Value` cannot hold the
/// binary attachments socketioxide hands over as bytes (so they could not be
/// sent back as attachments) and sorts object keys; this keeps both.
enum Arg {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Binary(Bytes),
    Array(Vec<Arg>),
    Object(Vec<(String, Arg)>),
}

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Arg::Null => s.serialize_unit(),
            Arg::Bool(b) => s.serialize_bool(*b),
            Arg::Number(n) => n.serialize(s),
            Arg::String(v) => s.serialize_str(v),
            // socketioxide turns bytes into a placeholder plus an attachment.
            Arg::Binary(b) => s.serialize_bytes(b),
            Arg::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Arg::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ArgVisitor)
    }
}

struct ArgVisitor;

impl<'de> Visitor<'de> for ArgVisitor {
    type Value = Arg;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value or a binary attachment")
    }
    fn visit_unit<E>(self) -> Result<Arg, E> {
        Ok(Arg::Null)
    }
    fn visit_none<E>(self) -> Result<Arg, E> {
        Ok(Arg::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Arg, D::Error> {
        Arg::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Arg, E> {
        Ok(Arg::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Arg, E> {
        Ok(Arg::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Arg, E> {
        Ok(Arg::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Arg, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Arg::Null, Arg::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Arg, E> {
        Ok(Arg::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Arg, E> {
        Ok(Arg::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Arg, E> {
        Ok(Arg::Binary(Bytes::copy_from_slice(v)))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Arg, E> {
        Ok(Arg::Binary(v.into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Arg, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Arg::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Arg, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Arg::Object(entries))
    }
}

/// All the arguments of an event. socketioxide spreads a tuple-like type over
/// the event's arguments (and back when emitting); any other type would get
/// the first argument only, or be sent as one array argument.
struct Args(Vec<Arg>);

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut tuple = s.serialize_tuple(self.0.len())?;
        for arg in &self.0 {
            tuple.serialize_element(arg)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element()? {
                    args.push(arg);
                }
                Ok(Args(args))
            }
        }
        // The length is unknown; JSON reads a tuple as a sequence anyway.
        d.deserialize_tuple(usize::MAX, ArgsVisitor)
    }
}

/// Connect handler of `/` and `/custom`.
async fn on_connect(socket: SocketRef, Data(auth): Data<Arg>) {
    // Handlers first: the client may send an event as soon as it has the
    // `auth` event.
    socket.on(
        "message",
        async |socket: SocketRef, Data(args): Data<Args>| {
            let _ = socket.emit("message-back", &args);
        },
    );
    socket.on(
        "message-with-ack",
        async |ack: AckSender, Data(args): Data<Args>| {
            let _ = ack.send(&args);
        },
    );
    // socketioxide reads a missing handshake payload as `{}`, which is what
    // the suite expects back.
    let _ = socket.emit("auth", &auth);
}

async fn engineio(listener: TcpListener) -> anyhow::Result<()> {
    let config = EngineIoConfig::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_payload(MAX_PAYLOAD)
        .build();
    let svc = EngineIoService::with_config(Arc::new(Echo), config);
    serve(listener, svc).await
}

async fn socketio(listener: TcpListener) -> anyhow::Result<()> {
    let (svc, io) = SocketIo::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_payload(MAX_PAYLOAD)
        .connect_timeout(CONNECT_TIMEOUT)
        .build_svc();
    // Any other namespace is refused by socketioxide ("Invalid namespace").
    io.ns("/", on_connect);
    io.ns("/custom", on_connect);
    serve(listener, svc).await
}

/// HTTP/1.1 with upgrades (WebSocket), one task per connection.
async fn serve<S, B>(listener: TcpListener, svc: S) -> anyhow::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let (tcp, _) = listener.accept().await?;
        // As hookwire does: without it Nagle can hold a small frame until
        // the peer's delayed ACK, which the suites' sub-second timings notice.
        let _ = tcp.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            // A connection error is the client's doing (the suites close
            // sockets abruptly on purpose); the test that caused it reports it.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        });
    }
}

async fn bind(name: &str, port: u16) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {name} fixture to {addr}"))?;
    println!("{name} http://{}", listener.local_addr()?);
    Ok(listener)
}

fn parse_args() -> anyhow::Result<(Option<u16>, Option<u16>)> {
    let (mut eio, mut sio) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--engineio" => &mut eio,
            "--socketio" => &mut sio,
            "-h" | "--help" => {
                println!("usage: conformance-fixture [--engineio PORT] [--socketio PORT]");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (expected --engineio or --socketio)"),
        };
        let port = args
            .next()
            .with_context(|| format!("{flag} needs a port"))?;
        *slot = Some(
            port.parse()
                .with_context(|| format!("{flag}: `{port}` is not a port"))?,
        );
    }
    if eio.is_none() && sio.is_none() {
        bail!("nothing to serve: give --engineio PORT and/or --socketio PORT (0 = any free port)");
    }
    Ok((eio, sio))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (eio, sio) = parse_args()?;
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut servers = tokio::task::JoinSet::new();
    if let Some(port) = eio {
        servers.spawn(engineio(bind("engineio", port).await?));
    }
    if let Some(port) = sio {
        servers.spawn(socketio(bind("socketio", port).await?));
    }
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
        // A server only returns on an accept error.
        Some(res) = servers.join_next() => res?,
    }
}
