//! Big room: one room with N members (10,000 by default) and one publisher
//! sending R msg/s. For each msg, the latency to the LAST member served is the
//! latest arrival among all members (arrival time minus the send timestamp in
//! the payload); p50, p99, mean and max are over the msgs of the measured
//! period. Also: latency over all deliveries, deliveries missing, and server
//! CPU (user, system) and load generator CPU per delivery.
//!
//! Members join as dummies: they receive the room's msgs, but their joins are
//! not announced, so setting up the room does not cost N² presence events
//! (what a join storm costs is another question than fan-out latency). The
//! publisher is a normal member.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Common, write_result};
use crate::procfs;
use crate::sio::{self, Ws};

#[derive(Args, Debug, Clone)]
pub struct BigRoomArgs {
    #[command(flatten)]
    pub common: Common,
    /// Members receiving (the publisher comes on top).
    #[arg(long, default_value_t = 10_000)]
    pub members: usize,
    /// msgs per second from the publisher.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of sending before the measured period (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds of the measured period.
    #[arg(long, default_value_t = 30.0)]
    pub secs: f64,
    /// Size of the msg JSON object in bytes.
    #[arg(long, default_value_t = 128)]
    pub bytes: usize,
    /// msg storage mode (0 insert, 1 update, 2 ignore).
    #[arg(long, default_value_t = 0)]
    pub storage: u8,
    /// After the last msg, wait until every member has every msg, or no
    /// delivery arrived for this many seconds ...
    #[arg(long, default_value_t = 3.0)]
    pub drain_quiet: f64,
    /// ... or this many seconds have passed.
    #[arg(long, default_value_t = 60.0)]
    pub drain: f64,
}

#[derive(Serialize, Debug)]
pub struct BigRoomResult {
    pub scenario: &'static str,
    pub target: String,
    pub members: usize,
    pub connected: usize,
    pub connect_secs: f64,
    pub rate: f64,
    pub secs: f64,
    pub bytes: usize,
    pub storage: u8,
    /// msgs of the measured period
    pub msgs: usize,
    /// of those, delivered to every member
    pub complete_msgs: usize,
    pub lost_deliveries: u64,
    /// latency to the last member served, over complete msgs
    pub last_p50_us: u64,
    pub last_p99_us: u64,
    pub last_mean_us: f64,
    pub last_max_us: u64,
    /// latency over all deliveries of the measured msgs
    pub all_p50_us: u64,
    pub all_p99_us: u64,
    pub deliveries: u64,
    pub server_user_us_per_delivery: f64,
    pub server_sys_us_per_delivery: f64,
    pub server_cpu_us_per_delivery: f64,
    pub client_cpu_us_per_delivery: f64,
    pub client_user_us_per_delivery: f64,
    pub client_sys_us_per_delivery: f64,
    /// CPU used over the measured period (sends and drain), in cores: a
    /// figure near the number of CPUs a side may use means that side was
    /// saturated and the latencies measure its backlog
    pub server_cores: f64,
    pub client_cores: f64,
    /// CPUs the load generator may run on (its affinity)
    pub client_cpus: usize,
    /// member connections that ended early
    pub errors: u64,
    /// seconds waited after the last send
    pub drain_secs: f64,
}

struct Slot {
    max_lat: AtomicU64,
    count: AtomicU32,
}

struct Shared {
    slots: Vec<Slot>,
    /// first measured seq (1-based)
    first: u64,
    hist: Mutex<Histogram<u64>>,
    deliveries: AtomicU64,
    stop: AtomicBool,
    errors: AtomicU64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn member(mut ws: Ws, sh: Arc<Shared>) {
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(t) = m else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        let b = t.as_bytes();
        if b == b"2" {
            if ws.send(sio::pong()).await.is_err() {
                break;
            }
            continue;
        }
        if !b.starts_with(b"42[\"msg\"") {
            continue;
        }
        let now = now_us();
        let (Some(q), Some(ts)) = (sio::find_u64(b, b"\"hwq\":"), sio::find_u64(b, b"\"hwt\":"))
        else {
            continue;
        };
        let lat = now.saturating_sub(ts).max(1);
        if let Some(s) = sh.slots.get(q as usize) {
            s.max_lat.fetch_max(lat, Relaxed);
            s.count.fetch_add(1, Relaxed);
        }
        if q >= sh.first {
            sh.deliveries.fetch_add(1, Relaxed);
            let _ = sh.hist.lock().record(lat);
        }
    }
    if !sh.stop.load(Relaxed) {
        sh.errors.fetch_add(1, Relaxed);
    }
}

fn pct(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub async fn run(a: BigRoomArgs) -> Result<()> {
    let c = &a.common;
    procfs::raise_fd_limit();
    let run_id = c.run_id();
    let room = format!("{run_id}-big");
    let addr = c.servers[0];
    let timeout = Duration::from_secs_f64(c.timeout);
    let pids = c.server_pids.clone();
    let warm_n = (a.warmup * a.rate).round() as u64;
    let meas_n = (a.secs * a.rate).round().max(1.0) as u64;
    let total = warm_n + meas_n;
    let sh = Arc::new(Shared {
        slots: (0..=total)
            .map(|_| Slot {
                max_lat: AtomicU64::new(0),
                count: AtomicU32::new(0),
            })
            .collect(),
        first: warm_n + 1,
        hist: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
        deliveries: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        errors: AtomicU64::new(0),
    });

    let mut publisher = sio::open_joined(
        addr,
        Some(sio::source_ip(0)),
        &format!("{run_id}-pub"),
        &room,
        timeout,
    )
    .await?;
    let t0 = Instant::now();
    let members = sio::open_many_dummies(
        addr,
        a.members,
        &format!("{run_id}-m"),
        &room,
        c.concurrency,
        timeout,
    )
    .await?;
    let connected = members.len();
    for ws in members {
        tokio::spawn(member(ws, sh.clone()));
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "[bigroom {}] {connected} members joined in {connect_secs:.2}s; {} msg/s for {}s (+{}s warm-up)",
        c.target, a.rate, a.secs, a.warmup
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let pad = "x".repeat(a.bytes.saturating_sub(80));
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let mut cpu0 = procfs::cpu_all(&pids);
    let mut me0 = procfs::cpu(std::process::id()).unwrap_or_default();
    let mut tm0 = Instant::now();
    let mut d0 = 0u64;
    let mut seq = 0u64;
    while seq < total {
        let due = start + period * seq as u32;
        tokio::select! {
            m = publisher.next() => match m {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => publisher.send(sio::pong()).await?,
                Some(Ok(_)) => {}
                _ => anyhow::bail!("publisher connection ended"),
            },
            _ = tokio::time::sleep_until(due) => {
                seq += 1;
                if seq == warm_n + 1 {
                    cpu0 = procfs::cpu_all(&pids);
                    me0 = procfs::cpu(std::process::id()).unwrap_or_default();
                    tm0 = Instant::now();
                    d0 = sh.deliveries.load(Relaxed);
                }
                let body = format!(
                    "{{\"data\":{{\"hwq\":{seq},\"hwt\":{},\"pad\":\"{pad}\"}},\"storage\":{},\"msgId\":{seq}}}",
                    now_us(),
                    a.storage
                );
                publisher.send(sio::event("msg", &body)).await?;
            }
        }
    }
    // wait for the last msgs' deliveries
    let members = connected as u32;
    let td = Instant::now();
    let mut seen = sh.deliveries.load(Relaxed);
    let mut last_change = Instant::now();
    while td.elapsed().as_secs_f64() < a.drain
        && last_change.elapsed().as_secs_f64() < a.drain_quiet
    {
        let done = sh.slots[sh.first as usize..=total as usize]
            .iter()
            .all(|s| s.count.load(Relaxed) >= members);
        if done {
            break;
        }
        let n = sh.deliveries.load(Relaxed);
        if n != seen {
            seen = n;
            last_change = Instant::now();
        }
        tokio::select! {
            m = publisher.next() => if let Some(Ok(Message::Text(t))) = m && t.as_str() == "2" {
                publisher.send(sio::pong()).await?;
            },
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let drain_secs = td.elapsed().as_secs_f64();
    let cpu = procfs::cpu_all(&pids) - cpu0;
    let me = procfs::cpu(std::process::id()).unwrap_or_default() - me0;
    let period = tm0.elapsed().as_secs_f64().max(1e-9);
    let deliveries = sh.deliveries.load(Relaxed) - d0;
    sh.stop.store(true, Relaxed);

    let mut last = Vec::new();
    let mut lost = 0u64;
    for s in &sh.slots[sh.first as usize..=total as usize] {
        let n = s.count.load(Relaxed);
        if n >= members {
            last.push(s.max_lat.load(Relaxed));
        } else {
            lost += (members - n) as u64;
        }
    }
    last.sort_unstable();
    let h = sh.hist.lock().clone();
    let d = deliveries.max(1) as f64;
    let res = BigRoomResult {
        scenario: "bigroom",
        target: c.target.clone(),
        members: a.members,
        connected,
        connect_secs,
        rate: a.rate,
        secs: a.secs,
        bytes: a.bytes,
        storage: a.storage,
        msgs: meas_n as usize,
        complete_msgs: last.len(),
        lost_deliveries: lost,
        last_p50_us: pct(&last, 0.5),
        last_p99_us: pct(&last, 0.99),
        last_mean_us: last.iter().sum::<u64>() as f64 / last.len().max(1) as f64,
        last_max_us: last.last().copied().unwrap_or(0),
        all_p50_us: h.value_at_quantile(0.5),
        all_p99_us: h.value_at_quantile(0.99),
        deliveries,
        server_user_us_per_delivery: cpu.user * 1e6 / d,
        server_sys_us_per_delivery: cpu.sys * 1e6 / d,
        server_cpu_us_per_delivery: cpu.total() * 1e6 / d,
        client_cpu_us_per_delivery: me.total() * 1e6 / d,
        client_user_us_per_delivery: me.user * 1e6 / d,
        client_sys_us_per_delivery: me.sys * 1e6 / d,
        server_cores: cpu.total() / period,
        client_cores: me.total() / period,
        client_cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        errors: sh.errors.load(Relaxed),
        drain_secs,
    };
    eprintln!(
        "[bigroom {}] {} msgs x {} members: last member p50 {} us p99 {} us mean {:.0} us max {} us; all deliveries p50 {} us p99 {} us; {} complete, {} deliveries lost after {:.1}s of drain; server {:.2} us/delivery (user {:.2} sys {:.2}), {:.2} cores; client {:.2} us/delivery (user {:.2} sys {:.2}), {:.2} cores of {}",
        c.target,
        res.msgs,
        res.connected,
        res.last_p50_us,
        res.last_p99_us,
        res.last_mean_us,
        res.last_max_us,
        res.all_p50_us,
        res.all_p99_us,
        res.complete_msgs,
        res.lost_deliveries,
        res.drain_secs,
        res.server_cpu_us_per_delivery,
        res.server_user_us_per_delivery,
        res.server_sys_us_per_delivery,
        res.server_cores,
        res.client_cpu_us_per_delivery,
        res.client_user_us_per_delivery,
        res.client_sys_us_per_delivery,
        res.client_cores,
        res.client_cpus
    );
    write_result(c, &res)?;
    Ok(())
}
