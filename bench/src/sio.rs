//! Hand-rolled minimal Engine.IO v4 / socket.io v5 client over WebSocket.
//!
//! Only what the load generator needs: the `0{...}` open packet, `40` namespace
//! connect, `42["event",{...}]` events, `2`/`3` ping/pong, and `43N[...]` acks.
//! Frames are built with `format!` and read with byte searches, so the client's
//! own cost per message stays small next to the server's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub type Ws = WebSocketStream<TcpStream>;

/// Source address for the `i`-th connection: spreads clients over 127.0.0.2..=127.0.0.251.
pub fn source_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 250) as u8)
}

/// What a frame from the server is, as far as the load generator cares.
pub enum Frame<'a> {
    /// engine.io ping (`2`): answer with `3`.
    Ping,
    /// socket.io event `42["name",...]`: (name, whole payload text after `42`).
    Event(&'a str, &'a str),
    /// socket.io ack `43N[...]`: (id, args text).
    #[allow(dead_code)]
    Ack(u64, &'a str),
    /// namespace connect `40{...}`
    Connect,
    /// namespace disconnect `41` or connect error `44`
    Disconnect(&'a str),
    /// engine.io close (`1`)
    Close,
    Other,
}

pub fn classify(text: &str) -> Frame<'_> {
    let b = text.as_bytes();
    if b.is_empty() {
        return Frame::Other;
    }
    match b[0] {
        b'2' => Frame::Ping,
        b'1' => Frame::Close,
        b'4' if b.len() >= 2 => match b[1] {
            b'2' => {
                // 42 [optional nsp,] [optional ack id] ["name", ...]
                let rest = &text[2..];
                let start = match rest.find('[') {
                    Some(s) => s,
                    None => return Frame::Other,
                };
                let body = &rest[start..];
                let name = body
                    .strip_prefix("[\"")
                    .and_then(|r| r.find('"').map(|e| &r[..e]))
                    .unwrap_or("");
                Frame::Event(name, body)
            }
            b'3' => {
                let rest = &text[2..];
                let start = rest.find('[').unwrap_or(rest.len());
                let id = rest[..start]
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap_or(0);
                Frame::Ack(id, &rest[start..])
            }
            b'0' => Frame::Connect,
            b'1' | b'4' => Frame::Disconnect(text),
            _ => Frame::Other,
        },
        _ => Frame::Other,
    }
}

pub fn event(name: &str, json: &str) -> Message {
    Message::Text(format!("42[\"{name}\",{json}]").into())
}

pub fn event_ack(name: &str, id: u64, json: &str) -> Message {
    Message::Text(format!("42{id}[\"{name}\",{json}]").into())
}

pub fn pong() -> Message {
    Message::Text("3".into())
}

/// Opens a WebSocket to `addr` (socket.io default namespace `/`) from `bind`,
/// reads the engine.io open packet and connects the namespace.
pub async fn connect(addr: SocketAddr, bind: Option<Ipv4Addr>, nsp: &str) -> Result<Ws> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = bind {
        sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = sock
        .connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let mut cfg = WebSocketConfig::default();
    cfg.max_message_size = Some(64 << 20);
    cfg.max_frame_size = Some(64 << 20);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(cfg))
        .await
        .context("websocket handshake")?;
    // engine.io open packet
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        bail!("expected engine.io open packet, got {open:.80}");
    }
    let connect = if nsp == "/" || nsp.is_empty() {
        "40".to_string()
    } else {
        format!("40{nsp},")
    };
    ws.send(Message::Text(connect.into())).await?;
    loop {
        let t = next_text(&mut ws).await?;
        match classify(&t) {
            Frame::Connect => return Ok(ws),
            Frame::Ping => ws.send(pong()).await?,
            Frame::Disconnect(s) => bail!("namespace connect refused: {s:.200}"),
            _ => {}
        }
    }
}

/// Next text frame (ignores ws pings/binary), error on close.
pub async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => bail!("closed by server: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Waits for event `name` (answering pings, skipping other events) and returns its payload
/// text (the JSON array `["name",{...}]`).
pub async fn wait_event(ws: &mut Ws, name: &str, timeout: Duration) -> Result<String> {
    let fut = async {
        loop {
            let t = next_text(ws).await?;
            match classify(&t) {
                Frame::Ping => ws.send(pong()).await?,
                Frame::Event(n, _) if n == name => return Ok(t),
                Frame::Disconnect(s) => bail!("disconnected while waiting for {name}: {s:.200}"),
                Frame::Close => bail!("engine.io close while waiting for {name}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("timeout waiting for {name}"))?
}

/// `"status":0` check on a reply payload.
pub fn status_ok(payload: &str) -> bool {
    payload.contains("\"status\":0")
}

/// Connect, authenticate as `uid` and join `room`. Returns the ready socket.
/// The member that stores a scenario's messages (uid `{run_id}-seed`, the
/// first source address).
pub async fn open_seeder(
    addr: SocketAddr,
    run_id: &str,
    room: &str,
    timeout: Duration,
) -> Result<Ws> {
    open_joined(
        addr,
        Some(source_ip(0)),
        &format!("{run_id}-seed"),
        room,
        timeout,
    )
    .await
}

pub async fn open_joined(
    addr: SocketAddr,
    bind: Option<Ipv4Addr>,
    uid: &str,
    room: &str,
    timeout: Duration,
) -> Result<Ws> {
    open_joined_as(addr, bind, uid, room, false, timeout).await
}

/// `open_joined`, as a dummy member when `dummy` (receives the room's msgs and
/// may sync, is not announced to the room and does not announce its syncs, so
/// a large room costs no join or sync storm of presence events).
/// Opens `n` members of `room` as dummies (uids `{uid_prefix}{i}`, source
/// addresses 1..=n), at most `concurrency` handshakes at a time, in order.
pub async fn open_many_dummies(
    addr: SocketAddr,
    n: usize,
    uid_prefix: &str,
    room: &str,
    concurrency: usize,
    timeout: Duration,
) -> Result<Vec<Ws>> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut opens = Vec::with_capacity(n);
    for i in 0..n {
        let room = room.to_string();
        let uid = format!("{uid_prefix}{i}");
        let sem = sem.clone();
        opens.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            open_joined_as(addr, Some(source_ip(i + 1)), &uid, &room, true, timeout).await
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for o in opens {
        conns.push(o.await??);
    }
    Ok(conns)
}

pub async fn open_joined_as(
    addr: SocketAddr,
    bind: Option<Ipv4Addr>,
    uid: &str,
    room: &str,
    dummy: bool,
    timeout: Duration,
) -> Result<Ws> {
    let mut ws = tokio::time::timeout(timeout, connect(addr, bind, "/"))
        .await
        .map_err(|_| anyhow!("timeout connecting"))??;
    ws.send(event(
        "authenticate",
        &format!("{{\"uid\":\"{uid}\",\"token\":\"\"}}"),
    ))
    .await?;
    let r = wait_event(&mut ws, "authenticate", timeout).await?;
    if !status_ok(&r) {
        bail!("authenticate refused: {r:.200}");
    }
    let join = if dummy {
        format!("{{\"roomId\":\"{room}\",\"dummy\":true}}")
    } else {
        format!("{{\"roomId\":\"{room}\"}}")
    };
    ws.send(event("join", &join)).await?;
    let r = wait_event(&mut ws, "join", timeout).await?;
    if !status_ok(&r) {
        bail!("join refused: {r:.200}");
    }
    Ok(ws)
}

/// Finds an unsigned integer after `key` (e.g. `"hwq":`) in `hay`.
pub fn find_u64(hay: &[u8], key: &[u8]) -> Option<u64> {
    let pos = memchr::memmem::find(hay, key)? + key.len();
    let mut v: u64 = 0;
    let mut any = false;
    for &c in &hay[pos..] {
        if c.is_ascii_digit() {
            v = v * 10 + (c - b'0') as u64;
            any = true;
        } else if c == b' ' && !any {
            continue;
        } else {
            break;
        }
    }
    any.then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_frames() {
        assert!(matches!(classify("2"), Frame::Ping));
        match classify("42[\"msg\",{\"a\":1}]") {
            Frame::Event(n, body) => {
                assert_eq!(n, "msg");
                assert_eq!(body, "[\"msg\",{\"a\":1}]");
            }
            _ => panic!(),
        }
        match classify("4312[{\"status\":0}]") {
            Frame::Ack(id, body) => {
                assert_eq!(id, 12);
                assert_eq!(body, "[{\"status\":0}]");
            }
            _ => panic!(),
        }
        assert!(matches!(classify("40{\"sid\":\"x\"}"), Frame::Connect));
        assert!(matches!(
            classify("44{\"message\":\"no\"}"),
            Frame::Disconnect(_)
        ));
    }

    #[test]
    fn find_numbers() {
        let s = br#"42["msg",{"data":{"hwp":3,"hwq":17,"hwt":1700000000123456},"uid":"x"}]"#;
        assert_eq!(find_u64(s, b"\"hwp\":"), Some(3));
        assert_eq!(find_u64(s, b"\"hwq\":"), Some(17));
        assert_eq!(find_u64(s, b"\"hwt\":"), Some(1700000000123456));
        assert_eq!(find_u64(s, b"\"nope\":"), None);
    }
}
