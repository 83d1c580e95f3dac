//! Sync memory: C connections joined to one room that holds stored messages
//! each ask for one `sync` page of about 1 MiB, all at once; the server's
//! resident memory is read before (idle, connections joined), at its peak
//! during the burst, and after the pages went out and the connections sat
//! idle for a while: does the memory go back?
//!
//! The messages are stored with `storage: 1` (update by msgId, distinct ids),
//! so a page from offset 0 holds all of them (the room's current values come
//! in the last page of the insert log, which is empty here). Readers join as
//! dummies: they may sync, and neither their joins nor their syncs announce
//! anything to the room, so what is measured is the pages alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Common, write_result};
use crate::procfs;
use crate::sio::{self, Frame};

#[derive(Args, Debug, Clone)]
pub struct SyncMemArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections that each receive one page.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Stored messages (all of them make up the page).
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// Size the page should have, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub page_bytes: usize,
    /// Seconds to hold the connections idle after the last page before reading RSS.
    #[arg(long, default_value_t = 10.0)]
    pub settle: f64,
    /// RSS sampling period (ms).
    #[arg(long, default_value_t = 10)]
    pub sample_ms: u64,
}

#[derive(Serialize, Debug)]
pub struct SyncMemResult {
    pub scenario: &'static str,
    pub target: String,
    pub clients: usize,
    pub messages: usize,
    pub page_bytes_target: usize,
    /// mean size of the sync frames received
    pub page_bytes: f64,
    pub complete: usize,
    pub first_error: Option<String>,
    /// server RSS with the room stored, before the readers connected
    pub rss_base_kib: u64,
    /// with the readers joined, before any sync
    pub rss_idle_kib: u64,
    /// highest RSS during the burst and the settle time
    pub rss_peak_kib: u64,
    /// "VmHWM" (peak reset before the burst) or "sampled" (every sample_ms)
    pub peak_from: &'static str,
    /// when the last page had been received
    pub rss_done_kib: u64,
    /// after `settle_secs` of idle connections
    pub rss_after_kib: u64,
    pub after_idle_ratio: f64,
    pub settle_secs: f64,
    /// from the first sync request to the last page received
    pub burst_secs: f64,
    pub server_cpu_secs: f64,
    /// (seconds since the burst started, RSS KiB), about every 0.5 s
    pub rss_series: Vec<(f64, u64)>,
    pub dropped: u64,
}

async fn reader(
    mut ws: sio::Ws,
    mut go: watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    timeout: Duration,
) -> Result<usize> {
    // wait for the start signal, answering pings
    loop {
        if *go.borrow() {
            break;
        }
        tokio::select! {
            r = go.changed() => { if r.is_err() { bail!("start signal lost") } }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => ws.send(sio::pong()).await?,
                Some(Ok(_)) => {}
                _ => bail!("connection ended before sync"),
            }
        }
    }
    ws.send(sio::event("sync", "{\"offset\":0}")).await?;
    let t = sio::wait_event(&mut ws, "sync", timeout).await?;
    let Frame::Event(_, body) = sio::classify(&t) else {
        bail!("bad sync frame")
    };
    // {"status":0,...} comes first in both servers' replies; the page is not parsed
    let head = &body.as_bytes()[..body.len().min(200)];
    if memchr::memmem::find(head, b"\"status\":0").is_none() {
        bail!("sync refused: {}", String::from_utf8_lossy(head));
    }
    let len = t.len();
    drop(t);
    // idle until the end of the settle time
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if stop.load(Relaxed) {
                break;
            }
            match m {
                Message::Text(t) if t.as_str() == "2" && ws.send(sio::pong()).await.is_err() => {
                    break;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        if !stop.load(Relaxed) {
            dropped.fetch_add(1, Relaxed);
        }
    });
    Ok(len)
}

pub async fn run(a: SyncMemArgs) -> Result<()> {
    let c = &a.common;
    procfs::raise_fd_limit();
    let run_id = c.run_id();
    let room = format!("{run_id}-syncmem");
    let addr = c.servers[0];
    let timeout = Duration::from_secs_f64(c.timeout);
    let pid = *c
        .server_pids
        .first()
        .ok_or_else(|| anyhow::anyhow!("--server-pid needed"))?;

    let mut seeder = sio::open_seeder(addr, &run_id, &room, timeout).await?;
    let per_msg = a.page_bytes / a.messages.max(1);
    crate::sync::store_messages(&mut seeder, a.messages, per_msg, 1, 256, timeout).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_base = procfs::rss_kib(pid)?;

    let conns = sio::open_many_dummies(
        addr,
        a.clients,
        &format!("{run_id}-sm"),
        &room,
        c.concurrency,
        timeout,
    )
    .await?;
    eprintln!(
        "[syncmem {}] {} stored msgs of ~{per_msg} B, {} readers joined",
        c.target,
        a.messages,
        conns.len()
    );
    let (go_tx, go_rx) = watch::channel(false);
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|ws| {
            tokio::spawn(reader(
                ws,
                go_rx.clone(),
                stop.clone(),
                dropped.clone(),
                timeout,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_idle = procfs::rss_kib(pid)?;
    let hwm_ok = procfs::reset_hwm(pid).is_ok();

    // sampler
    let sampling = Arc::new(AtomicBool::new(true));
    let t0 = Instant::now();
    let sampler = {
        let sampling = sampling.clone();
        let period = Duration::from_millis(a.sample_ms.max(1));
        tokio::spawn(async move {
            let mut max = 0u64;
            let mut series = Vec::new();
            let mut next_point = 0.0;
            while sampling.load(Relaxed) {
                let r = procfs::rss_kib(pid).unwrap_or(0);
                max = max.max(r);
                let t = t0.elapsed().as_secs_f64();
                if t >= next_point {
                    series.push(((t * 100.0).round() / 100.0, r));
                    next_point += 0.5;
                }
                tokio::time::sleep(period).await;
            }
            (max, series)
        })
    };
    let cpu0 = procfs::cpu_seconds(pid).unwrap_or(0.0);
    go_tx.send(true)?;
    let mut complete = 0usize;
    let mut bytes = 0usize;
    let mut first_error = None;
    for t in tasks {
        match t.await? {
            Ok(n) => {
                complete += 1;
                bytes += n;
            }
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    let burst_secs = t0.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let rss_done = procfs::rss_kib(pid)?;
    eprintln!(
        "[syncmem {}] {complete} pages of {:.0} B in {burst_secs:.2}s; RSS idle {rss_idle} KiB, now {rss_done} KiB; settling {}s",
        c.target,
        bytes as f64 / complete.max(1) as f64,
        a.settle
    );
    let ts = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let settle_secs = ts.elapsed().as_secs_f64();
    let rss_after = procfs::rss_kib(pid)?;
    sampling.store(false, Relaxed);
    let (sampled_max, rss_series) = sampler.await?;
    let hwm = if hwm_ok {
        procfs::hwm_kib(pid).ok()
    } else {
        None
    };
    stop.store(true, Relaxed);
    let res = SyncMemResult {
        scenario: "syncmem",
        target: c.target.clone(),
        clients: a.clients,
        messages: a.messages,
        page_bytes_target: a.page_bytes,
        page_bytes: bytes as f64 / complete.max(1) as f64,
        complete,
        first_error,
        rss_base_kib: rss_base,
        rss_idle_kib: rss_idle,
        rss_peak_kib: hwm.unwrap_or(0).max(sampled_max),
        peak_from: if hwm.is_some() { "VmHWM" } else { "sampled" },
        rss_done_kib: rss_done,
        rss_after_kib: rss_after,
        after_idle_ratio: rss_after as f64 / rss_idle.max(1) as f64,
        settle_secs,
        burst_secs,
        server_cpu_secs: cpu,
        rss_series,
        dropped: dropped.load(Relaxed),
    };
    eprintln!(
        "[syncmem {}] RSS idle {} KiB, peak {} KiB ({}), after {:.1}s {} KiB = {:.2}x idle; dropped {}{}",
        c.target,
        res.rss_idle_kib,
        res.rss_peak_kib,
        res.peak_from,
        res.settle_secs,
        res.rss_after_kib,
        res.after_idle_ratio,
        res.dropped,
        res.first_error
            .as_deref()
            .map(|e| format!(", first error: {e}"))
            .unwrap_or_default()
    );
    drop(seeder);
    write_result(c, &res)?;
    Ok(())
}
