//! Sync: M stored messages in one room, C clients paging through them with
//! `sync` from offset 0 until `next` is 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::SinkExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Common, write_result};
use crate::procfs;
use crate::sio::{self, Frame};

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    #[command(flatten)]
    pub common: Common,
    /// Stored messages to page through.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Clients syncing at once.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Size of each stored msg JSON object.
    #[arg(long, default_value_t = 128)]
    pub bytes: usize,
    /// Ask for gzip-encoded pages.
    #[arg(long)]
    pub gzip: bool,
    /// Acks outstanding while storing.
    #[arg(long, default_value_t = 256)]
    pub pipeline: usize,
}

#[derive(Serialize, Debug)]
pub struct SyncResult {
    pub scenario: &'static str,
    pub target: String,
    pub messages: usize,
    pub clients: usize,
    pub gzip: bool,
    pub store_secs: f64,
    pub store_msgs_per_s: f64,
    pub secs: f64,
    pub pages: u64,
    pub synced_msgs: u64,
    pub msgs_per_s: f64,
    pub pages_per_s: f64,
    pub server_cpu_us_per_msg: f64,
    pub server_cpu_us_per_page: f64,
    pub complete_clients: usize,
    pub first_error: Option<String>,
}

/// Stores `m` msgs of about `bytes` bytes each through `msg` with acks, at
/// most `pipeline` unacknowledged; msgId is 1..=m (distinct, so with storage 1
/// each msg is a message of its own in the room's current values).
pub(crate) async fn store_messages(
    ws: &mut sio::Ws,
    m: usize,
    bytes: usize,
    storage: u8,
    pipeline: usize,
    timeout: Duration,
) -> Result<()> {
    let pad = "x".repeat(bytes.saturating_sub(60));
    let mut sent = 0usize;
    let mut acked = 0usize;
    while acked < m {
        while sent < m && sent - acked < pipeline {
            sent += 1;
            let body = format!(
                "{{\"data\":{{\"n\":{sent},\"pad\":\"{pad}\"}},\"storage\":{storage},\"msgId\":{sent}}}"
            );
            ws.feed(sio::event_ack("msg", sent as u64, &body)).await?;
        }
        ws.flush().await?;
        let t = tokio::time::timeout(timeout, sio::next_text(ws))
            .await
            .context("timeout waiting for msg acks")??;
        match sio::classify(&t) {
            Frame::Ack(_, body) => {
                if !body.contains("\"status\":0") {
                    bail!("msg refused: {body:.200}");
                }
                acked += 1;
            }
            Frame::Ping => ws.send(sio::pong()).await?,
            Frame::Disconnect(s) => bail!("disconnected while storing: {s:.200}"),
            _ => {}
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct SyncReply {
    #[serde(default)]
    next: i64,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    status: Option<i64>,
}

async fn page_through(mut ws: sio::Ws, gzip: bool, timeout: Duration) -> Result<(u64, u64)> {
    let mut offset = 0i64;
    let mut pages = 0u64;
    let mut msgs = 0u64;
    loop {
        let req = if gzip {
            format!("{{\"offset\":{offset},\"encoding\":\"gzip\"}}")
        } else {
            format!("{{\"offset\":{offset}}}")
        };
        ws.send(sio::event("sync", &req)).await?;
        let t = sio::wait_event(&mut ws, "sync", timeout).await?;
        let Frame::Event(_, body) = sio::classify(&t) else {
            bail!("bad sync frame")
        };
        let (_, r): (String, SyncReply) = serde_json::from_str(body).context("parse sync reply")?;
        if let Some(s) = r.status
            && s != 0
        {
            bail!("sync refused: {body:.200}");
        }
        pages += 1;
        msgs += match &r.data {
            serde_json::Value::Array(a) => a.len() as u64,
            serde_json::Value::String(_) => (r.offset - offset).max(0) as u64,
            _ => 0,
        };
        if r.next == 0 {
            break;
        }
        if r.offset <= offset {
            bail!("sync offset did not advance ({offset} -> {})", r.offset);
        }
        offset = r.offset;
    }
    let _ = ws.send(Message::Close(None)).await;
    Ok((pages, msgs))
}

pub async fn run(a: SyncArgs) -> Result<()> {
    let c = &a.common;
    let run_id = c.run_id();
    let room = format!("{run_id}-sync");
    let addr = c.servers[0];
    let timeout = Duration::from_secs_f64(c.timeout);
    let pids = c.server_pids.clone();

    let mut seeder = sio::open_seeder(addr, &run_id, &room, timeout).await?;
    let t0 = Instant::now();
    store_messages(&mut seeder, a.messages, a.bytes, 0, a.pipeline, timeout).await?;
    let store_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "[sync {}] stored {} messages in {:.2}s ({:.0}/s)",
        c.target,
        a.messages,
        store_secs,
        a.messages as f64 / store_secs
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // open the readers first, then measure only the paging
    let sem = Arc::new(Semaphore::new(c.concurrency));
    let mut opens = Vec::new();
    for i in 0..a.clients {
        let room = room.clone();
        let uid = format!("{run_id}-sync{i}");
        let sem = sem.clone();
        opens.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            sio::open_joined(addr, Some(sio::source_ip(i + 1)), &uid, &room, timeout).await
        }));
    }
    let mut readers = Vec::new();
    for o in opens {
        readers.push(o.await??);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu0 = procfs::cpu_seconds_all(&pids);
    let t1 = Instant::now();
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|ws| tokio::spawn(page_through(ws, a.gzip, timeout)))
        .collect();
    let mut pages = 0u64;
    let mut msgs = 0u64;
    let mut complete = 0usize;
    let mut first_error = None;
    for t in tasks {
        match t.await? {
            Ok((p, m)) => {
                pages += p;
                msgs += m;
                if m as usize >= a.messages {
                    complete += 1;
                }
            }
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    let secs = t1.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds_all(&pids) - cpu0;
    let res = SyncResult {
        scenario: "sync",
        target: c.target.clone(),
        messages: a.messages,
        clients: a.clients,
        gzip: a.gzip,
        store_secs,
        store_msgs_per_s: a.messages as f64 / store_secs,
        secs,
        pages,
        synced_msgs: msgs,
        msgs_per_s: msgs as f64 / secs,
        pages_per_s: pages as f64 / secs,
        server_cpu_us_per_msg: cpu * 1e6 / msgs.max(1) as f64,
        server_cpu_us_per_page: cpu * 1e6 / pages.max(1) as f64,
        complete_clients: complete,
        first_error,
    };
    eprintln!(
        "[sync {}] {} clients x {} msgs: {:.2}s, {:.0} msgs/s, {:.0} pages/s, {:.2} us CPU/msg, {} complete{}",
        c.target,
        a.clients,
        a.messages,
        secs,
        res.msgs_per_s,
        res.pages_per_s,
        res.server_cpu_us_per_msg,
        complete,
        res.first_error
            .as_deref()
            .map(|e| format!(", first error: {e}"))
            .unwrap_or_default()
    );
    write_result(c, &res)?;
    Ok(())
}
