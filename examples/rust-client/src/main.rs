//! A small hookwire client in Rust (rust_socketio, async).
//!
//! Creates (or refreshes) a token for `uid` over the account HTTP API, connects
//! with the handshake `auth` payload `{uid, token}`, waits for the namespace to
//! be connected (`open`), joins a room, sends one
//! message, syncs the room log page by page and prints it.
//!
//! ```text
//! HOOKWIRE_API_KEY=<tenant key> cargo run -p hookwire-rust-client-example -- \
//!     [URL=http://127.0.0.1:3000] [ROOM=lobby] [UID=rust-client] [MESSAGE="hello from Rust"]
//! ```
//! Environment: `HOOKWIRE_API_KEY` (to create the token), or `HOOKWIRE_TOKEN`
//! (an existing token; then no HTTP call is made); `HOOKWIRE_TENANT` (default
//! `default`, namespace `/`; other tenants are namespace `/<name>`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::FutureExt;
use rust_socketio::Payload;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

const ACK_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let room = args.next().unwrap_or_else(|| "lobby".into());
    let uid = args.next().unwrap_or_else(|| "rust-client".into());
    let text = args.next().unwrap_or_else(|| "hello from Rust".into());
    let tenant = std::env::var("HOOKWIRE_TENANT").unwrap_or_else(|_| "default".into());
    let url = url.trim_end_matches('/').to_string();

    let token = match std::env::var("HOOKWIRE_TOKEN") {
        Ok(t) => t,
        Err(_) => {
            let key = std::env::var("HOOKWIRE_API_KEY")
                .context("set HOOKWIRE_API_KEY (the tenant's API key) or HOOKWIRE_TOKEN")?;
            get_token(&url, &tenant, &key, &uid).await?
        }
    };
    println!("token for {uid}: {token}");

    let namespace = if tenant == "default" {
        "/".to_string()
    } else {
        format!("/{tenant}")
    };
    // `connect()` returns once the handshake is sent; events emitted before the
    // server's CONNECT reply (the `open` event) may be dropped, so wait for it.
    let connected = Arc::new(Notify::new());
    let on_open = connected.clone();
    let client = ClientBuilder::new(url.as_str())
        .namespace(namespace)
        .auth(json!({ "uid": uid, "token": token }))
        .reconnect(false)
        .on("open", move |_p: Payload, _c: Client| {
            let on_open = on_open.clone();
            async move { on_open.notify_one() }.boxed()
        })
        .on("msg", |payload: Payload, _c: Client| {
            async move { println!("<- msg {}", first(&payload)) }.boxed()
        })
        .on("remote_join", |payload: Payload, _c: Client| {
            async move { println!("<- remote_join {}", first(&payload)) }.boxed()
        })
        .on("kickout", |_p: Payload, _c: Client| {
            async move { println!("<- kickout") }.boxed()
        })
        .on("error", |payload: Payload, _c: Client| {
            async move { eprintln!("<- error {payload:?}") }.boxed()
        })
        .connect()
        .await
        .context("socket.io connect")?;
    tokio::time::timeout(ACK_TIMEOUT, connected.notified())
        .await
        .map_err(|_| anyhow!("the server did not accept the connection within {ACK_TIMEOUT:?}"))?;

    let joined = call(&client, "join", json!({ "roomId": room })).await?;
    expect_ok("join", &joined)?;
    println!("joined {room}");

    let msg_id = format!("rust-{}", std::process::id());
    let sent = call(
        &client,
        "msg",
        json!({ "data": { "text": text }, "storage": 0, "msgId": msg_id }),
    )
    .await?;
    expect_ok("msg", &sent)?;
    println!("sent msg {msg_id} (stored: the ack is the durability point)");

    let mut offset = json!(0);
    let mut total = 0usize;
    loop {
        let page = call(&client, "sync", json!({ "offset": offset })).await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        for m in &data {
            println!("   [{}] uid={} {}", m["msgId"], m["uid"], m["data"]);
        }
        total += data.len();
        if page["next"].as_i64().unwrap_or(0) == 0 {
            println!(
                "sync done: {total} messages, offset {}, epoch {}",
                page["offset"], page["epoch"]
            );
            break;
        }
        offset = page["offset"].clone();
    }

    client.disconnect().await.context("disconnect")?;
    Ok(())
}

/// Emits `event` with `data` and waits for the ack callback's first argument.
async fn call(client: &Client, event: &str, data: Value) -> Result<Value> {
    let (tx, rx) = oneshot::channel::<Value>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    client
        .emit_with_ack(
            event,
            data,
            ACK_TIMEOUT,
            move |payload: Payload, _c: Client| {
                let tx = tx.clone();
                async move {
                    if let Some(tx) = tx.lock().expect("ack lock").take() {
                        let _ = tx.send(ack_value(&payload));
                    }
                }
                .boxed()
            },
        )
        .await
        .with_context(|| format!("emit {event}"))?;
    tokio::time::timeout(ACK_TIMEOUT, rx)
        .await
        .map_err(|_| anyhow!("no ack for {event} within {ACK_TIMEOUT:?}"))?
        .map_err(|_| anyhow!("ack for {event} dropped"))
}

/// The first argument of an ack. rust_socketio hands an ack's arguments over
/// as one JSON array (`Text([[arg0, arg1, ...]])`), events as `Text([arg0, ...])`.
fn ack_value(payload: &Payload) -> Value {
    match first(payload) {
        Value::Array(args) => args.into_iter().next().unwrap_or(Value::Null),
        v => v,
    }
}

/// The first argument of an event.
fn first(payload: &Payload) -> Value {
    match payload {
        Payload::Text(values) => values.first().cloned().unwrap_or(Value::Null),
        #[allow(deprecated)]
        Payload::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Payload::Binary(b) => json!({ "binary_len": b.len() }),
    }
}

fn expect_ok(what: &str, reply: &Value) -> Result<()> {
    if reply["status"].as_i64() == Some(0) {
        Ok(())
    } else {
        bail!("{what} refused: {reply}")
    }
}

/// `POST /user/refresh_token`, or `create_token` for a new user; returns the token.
async fn get_token(url: &str, tenant: &str, key: &str, uid: &str) -> Result<String> {
    let http = reqwest::Client::new();
    for path in ["/user/refresh_token", "/user/create_token"] {
        let reply: Value = http
            .post(format!("{url}{path}"))
            .query(&[("tenant", tenant)])
            .bearer_auth(key)
            .json(&json!({ "uid": uid }))
            .send()
            .await
            .with_context(|| format!("POST {path}"))?
            .json()
            .await
            .with_context(|| format!("POST {path}: body is not JSON"))?;
        match reply["meta"]["status"].as_i64() {
            Some(0) => {
                return reply["data"]["token"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("{path}: no token in {reply}"));
            }
            Some(5) => continue, // user does not exist yet: create it
            _ => bail!("{path} failed: {reply}"),
        }
    }
    bail!("could not get a token for {uid}")
}
