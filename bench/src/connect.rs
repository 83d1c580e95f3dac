//! Idle connections: N sockets authenticated and joined, then held idle.
//! Measures the connection rate and the server's resident memory per connection
//! (VmRSS before/after from /proc), with client source addresses spread over
//! 127.0.0.0/8.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Common, write_result};
use crate::procfs;
use crate::sio;

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 19_900)]
    pub n: usize,
    /// Connections per room.
    #[arg(long, default_value_t = 10)]
    pub room_size: usize,
    /// Seconds to hold the connections idle before measuring RSS.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
}

#[derive(Serialize, Debug)]
pub struct ConnectResult {
    pub scenario: &'static str,
    pub target: String,
    pub requested: usize,
    pub connected: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub secs: f64,
    pub conns_per_s: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_per_conn_bytes: f64,
    pub projected_1m_gib: f64,
    pub server_fds: usize,
    pub server_cpu_us_per_conn: f64,
    pub client_rss_kib: u64,
    pub dropped_while_idle: u64,
    /// soft open-file limits of the server (first pid) and the load generator
    pub server_fd_limit: Option<u64>,
    pub client_fd_limit: u64,
    pub client_fds: usize,
}

pub async fn run(a: ConnectArgs) -> Result<()> {
    let c = &a.common;
    let client_fd_limit = procfs::raise_fd_limit();
    let pids = c.server_pids.clone();
    let server_fd_limit = pids.first().and_then(|&p| procfs::fd_limit(p));
    for (who, lim) in [
        ("load generator", Some(client_fd_limit)),
        ("server", server_fd_limit),
    ] {
        if let Some(l) = lim
            && (a.n as u64) + 30 > l
        {
            eprintln!(
                "[connect] warning: {} connections near the {who}'s open-file limit {l}",
                a.n
            );
        }
    }
    let run_id = c.run_id();
    let rss_before = procfs::rss_kib_all(&pids);
    let cpu_before = procfs::cpu_seconds_all(&pids);
    let sem = Arc::new(Semaphore::new(c.concurrency));
    let timeout = Duration::from_secs_f64(c.timeout);
    let dropped = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut joins = Vec::with_capacity(a.n);
    for i in 0..a.n {
        let addr = c.servers[i % c.servers.len()];
        let uid = format!("{run_id}-c{i}");
        let room = format!("{run_id}-idle{}", i / a.room_size.max(1));
        let sem = sem.clone();
        let dropped = dropped.clone();
        joins.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let mut ws =
                sio::open_joined(addr, Some(sio::source_ip(i)), &uid, &room, timeout).await?;
            drop(permit);
            let done = Instant::now();
            // idle: answer pings until the process ends
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    match m {
                        Message::Text(t)
                            if t.as_str() == "2" && ws.send(sio::pong()).await.is_err() =>
                        {
                            break;
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                dropped.fetch_add(1, Relaxed);
            });
            anyhow::Ok(done)
        }));
    }
    let mut ok = 0usize;
    let mut failed = 0usize;
    let mut first_error = None;
    let mut last = t0;
    for j in joins {
        match j.await? {
            Ok(done) => {
                ok += 1;
                last = last.max(done);
            }
            Err(e) => {
                failed += 1;
                if first_error.is_none() {
                    first_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    let secs = (last - t0).as_secs_f64().max(1e-9);
    let cpu_after = procfs::cpu_seconds_all(&pids);
    eprintln!(
        "[connect {}] {ok} connected ({failed} failed) in {secs:.2}s = {:.0} conn/s; settling {}s",
        c.target,
        ok as f64 / secs,
        a.settle
    );
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let rss_after = procfs::rss_kib_all(&pids);
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / ok.max(1) as f64;
    let res = ConnectResult {
        scenario: "connect",
        target: c.target.clone(),
        requested: a.n,
        connected: ok,
        failed,
        first_error,
        secs,
        conns_per_s: ok as f64 / secs,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_conn_bytes: per_conn,
        projected_1m_gib: (rss_before as f64 * 1024.0 + per_conn * 1e6) / (1u64 << 30) as f64,
        server_fds: pids.iter().map(|&p| procfs::open_fds(p)).sum(),
        server_cpu_us_per_conn: (cpu_after - cpu_before) * 1e6 / ok.max(1) as f64,
        client_rss_kib: procfs::rss_kib(std::process::id()).unwrap_or(0),
        dropped_while_idle: dropped.load(Relaxed),
        server_fd_limit,
        client_fd_limit,
        client_fds: procfs::open_fds(std::process::id()),
    };
    eprintln!(
        "[connect {}] server RSS {} -> {} KiB: {:.0} B/conn, projected 1M conns {:.1} GiB; server fds {} (limit {:?}), load generator fds {} (limit {}); {:.0} us CPU/conn; dropped {}",
        c.target,
        res.rss_before_kib,
        res.rss_after_kib,
        res.rss_per_conn_bytes,
        res.projected_1m_gib,
        res.server_fds,
        res.server_fd_limit,
        res.client_fds,
        res.client_fd_limit,
        res.server_cpu_us_per_conn,
        res.dropped_while_idle
    );
    write_result(c, &res)?;
    Ok(())
}
