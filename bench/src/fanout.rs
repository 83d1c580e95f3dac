//! Room fan-out: R rooms x S subscribers, P publishers sending at a total rate,
//! payload B bytes. Measures deliveries/s, end-to-end latency from the send
//! timestamp carried in the payload, losses by sequence numbers and per rate,
//! server CPU time (user and system) per delivered message, and, in a window of
//! its own, the server's TCP send calls per delivery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Common, median, write_result};
use crate::procfs;
use crate::sends;
use crate::sio::{self, Ws};

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Servers publishers connect to (round robin); default: the --server list.
    #[arg(long = "pub-server")]
    pub pub_servers: Vec<SocketAddr>,
    /// Servers subscribers connect to (round robin); default: the --server list.
    #[arg(long = "sub-server")]
    pub sub_servers: Vec<SocketAddr>,
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Subscribers per room.
    #[arg(long, default_value_t = 100)]
    pub subs: usize,
    /// Publishers in total (publisher p is in room p % rooms).
    #[arg(long, default_value_t = 10)]
    pub pubs: usize,
    /// Size of the msg JSON object in bytes (padding added to reach it).
    #[arg(long, default_value_t = 128)]
    pub bytes: usize,
    /// msg storage mode (0 insert, 1 update, 2 ignore).
    #[arg(long, default_value_t = 0)]
    pub storage: u8,
    /// Total publish rates to measure in sequence (messages/s over all publishers).
    #[arg(long, value_delimiter = ',', default_value = "500")]
    pub rates: Vec<f64>,
    /// Labels for the rates (e.g. 1x,2x); default: the rate.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Ramp mode: stop at the first rate that is not sustainable and report the last one that was.
    #[arg(long)]
    pub ramp: bool,
    /// Sustainable means median window p99 at most this (ms) ...
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
    /// ... and deliveries/s at least this fraction of the offered deliveries/s.
    #[arg(long, default_value_t = 0.97)]
    pub min_delivered_ratio: f64,
    /// Seconds at each rate before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds per measurement window.
    #[arg(long, default_value_t = 3.0)]
    pub window: f64,
    /// Measurement windows per rate (medians are over windows).
    #[arg(long, default_value_t = 3)]
    pub windows: usize,
    /// After the last send, wait until no delivery has arrived for this many
    /// seconds before counting losses ...
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// ... but at most this many seconds in all.
    #[arg(long, default_value_t = 30.0)]
    pub max_drain: f64,
    /// After the measurement windows of each rate, one more window with
    /// `perf stat` attached to the server pids, counting its TCP send calls.
    #[arg(long)]
    pub count_sends: bool,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Window {
    pub secs: f64,
    pub sent_per_s: f64,
    pub deliveries_per_s: f64,
    pub server_cpu_cores: f64,
    /// utime + stime
    pub cpu_us_per_delivery: f64,
    pub user_us_per_delivery: f64,
    pub sys_us_per_delivery: f64,
    pub aux_cpu_us_per_delivery: f64,
    /// the load generator's own CPU per delivery
    pub client_cpu_us_per_delivery: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub samples: u64,
}

#[derive(Serialize, Clone, Debug)]
pub struct Step {
    pub label: String,
    pub rate_msgs: f64,
    pub offered_deliveries_per_s: f64,
    pub windows: Vec<Window>,
    pub median: Window,
    pub sustainable: bool,
    /// deliveries expected for the msgs sent at this rate (warm-up included)
    pub expected: u64,
    /// of those, delivered by the end of the drain
    pub delivered: u64,
    /// expected - delivered
    pub lost: i64,
    /// the send-count window (with --count-sends)
    pub sends: Option<sends::SendWindow>,
    pub sends_error: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct FanoutResult {
    pub scenario: &'static str,
    pub target: String,
    pub ramp: bool,
    pub rooms: usize,
    pub subs: usize,
    pub pubs: usize,
    pub bytes: usize,
    pub storage: u8,
    pub connections: usize,
    pub connect_secs: f64,
    pub steps: Vec<Step>,
    pub max_sustainable_rate: Option<f64>,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub undelivered: i64,
    pub seq_gaps: u64,
    pub errors: u64,
    /// `error` events the publishers got back (refused messages)
    pub refused: u64,
    pub first_refusal: Option<String>,
    /// seconds waited after the last send
    pub drain_secs: f64,
}

struct Shared {
    slot: AtomicUsize,
    hists: Vec<Mutex<Histogram<u64>>>,
    delivered: AtomicU64,
    sent: AtomicU64,
    expected: AtomicU64,
    gaps: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    first_refusal: Mutex<Option<String>>,
    rate_gen: AtomicU64,
    rate_per_pub: AtomicU64,
    stop: AtomicBool,
    /// rate index the publishers tag new msgs with
    step: AtomicUsize,
    step_expected: Vec<AtomicU64>,
    step_delivered: Vec<AtomicU64>,
}

const NO_SLOT: usize = usize::MAX;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Receiver {
    last: HashMap<u64, u64>,
}

impl Receiver {
    fn new() -> Self {
        Self {
            last: HashMap::new(),
        }
    }

    /// Handles one incoming frame. Returns Some(reply) for pings, Err on close.
    #[inline]
    fn on_frame(&mut self, sh: &Shared, m: Message) -> std::result::Result<Option<Message>, ()> {
        match m {
            Message::Text(t) => {
                let b = t.as_bytes();
                if b == b"2" {
                    return Ok(Some(sio::pong()));
                }
                if b.starts_with(b"42[\"msg\"") {
                    let now = now_us();
                    let (Some(p), Some(q), Some(ts)) = (
                        sio::find_u64(b, b"\"hwp\":"),
                        sio::find_u64(b, b"\"hwq\":"),
                        sio::find_u64(b, b"\"hwt\":"),
                    ) else {
                        return Ok(None);
                    };
                    sh.delivered.fetch_add(1, Relaxed);
                    if let Some(c) = sio::find_u64(b, b"\"hws\":")
                        .and_then(|s| sh.step_delivered.get(s as usize))
                    {
                        c.fetch_add(1, Relaxed);
                    }
                    let slot = sh.slot.load(Relaxed);
                    if slot != NO_SLOT {
                        let lat = now.saturating_sub(ts).max(1);
                        let _ = sh.hists[slot].lock().record(lat);
                    }
                    let last = self.last.entry(p).or_insert(0);
                    if q > *last + 1 {
                        sh.gaps.fetch_add(q - *last - 1, Relaxed);
                    }
                    if q > *last {
                        *last = q;
                    }
                } else if b.starts_with(b"42[\"error\"") {
                    sh.refused.fetch_add(1, Relaxed);
                    let mut f = sh.first_refusal.lock();
                    if f.is_none() {
                        *f = Some(t.as_str().chars().take(300).collect());
                    }
                } else if b.starts_with(b"41") || b.starts_with(b"1") {
                    return Err(());
                }
                Ok(None)
            }
            Message::Close(_) => Err(()),
            _ => Ok(None),
        }
    }
}

async fn subscriber(mut ws: Ws, sh: Arc<Shared>) {
    let mut rx = Receiver::new();
    while let Some(m) = ws.next().await {
        let Ok(m) = m else { break };
        match rx.on_frame(&sh, m) {
            Ok(Some(reply)) => {
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(()) => break,
        }
    }
    if !sh.stop.load(Relaxed) {
        sh.errors.fetch_add(1, Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn publisher(mut ws: Ws, sh: Arc<Shared>, idx: u64, fan: u64, storage: u8, pad: Arc<str>) {
    let mut rx = Receiver::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut gen_seen = u64::MAX;
    let mut base = Instant::now();
    let mut base_count: u64 = 0;
    let mut rate = 0.0f64;
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            m = ws.next() => {
                let Some(Ok(m)) = m else { break };
                match rx.on_frame(&sh, m) {
                    Ok(Some(reply)) => { if ws.send(reply).await.is_err() { break; } }
                    Ok(None) => {}
                    Err(()) => break,
                }
            }
            _ = tick.tick() => {
                let g = sh.rate_gen.load(Relaxed);
                if g != gen_seen {
                    gen_seen = g;
                    base = Instant::now();
                    base_count = 0;
                    rate = f64::from_bits(sh.rate_per_pub.load(Relaxed));
                }
                if rate <= 0.0 { continue; }
                let step = sh.step.load(Relaxed);
                let due = (base.elapsed().as_secs_f64() * rate) as u64;
                let mut n = 0u64;
                while base_count < due && n < 1000 {
                    seq += 1;
                    base_count += 1;
                    n += 1;
                    let t = now_us();
                    let body = format!(
                        "42[\"msg\",{{\"data\":{{\"hwp\":{idx},\"hwq\":{seq},\"hwt\":{t},\"hws\":{step},\"pad\":\"{pad}\"}},\"storage\":{storage},\"msgId\":{seq}}}]"
                    );
                    if ws.feed(Message::Text(body.into())).await.is_err() { break; }
                }
                if n > 0 {
                    if ws.flush().await.is_err() { break; }
                    sh.sent.fetch_add(n, Relaxed);
                    sh.expected.fetch_add(n * fan, Relaxed);
                    if let Some(c) = sh.step_expected.get(step) {
                        c.fetch_add(n * fan, Relaxed);
                    }
                }
            }
        }
    }
    if !sh.stop.load(Relaxed) {
        sh.errors.fetch_add(1, Relaxed);
    }
}

fn pad_for(bytes: usize) -> String {
    // {"data":{"hwp":N,"hwq":N,"hwt":16digits,"hws":N,"pad":""},"storage":0,"msgId":N} is ~94 bytes
    "x".repeat(bytes.saturating_sub(94))
}

fn window_stats(
    secs: f64,
    sent: u64,
    delivered: u64,
    cpu: procfs::Cpu,
    aux: f64,
    client: f64,
    h: &Histogram<u64>,
) -> Window {
    let d = delivered.max(1) as f64;
    Window {
        secs,
        sent_per_s: sent as f64 / secs,
        deliveries_per_s: delivered as f64 / secs,
        server_cpu_cores: cpu.total() / secs,
        cpu_us_per_delivery: cpu.total() * 1e6 / d,
        user_us_per_delivery: cpu.user * 1e6 / d,
        sys_us_per_delivery: cpu.sys * 1e6 / d,
        aux_cpu_us_per_delivery: aux * 1e6 / d,
        client_cpu_us_per_delivery: client * 1e6 / d,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        samples: h.len(),
    }
}

fn median_window(ws: &[Window]) -> Window {
    let m = |f: &dyn Fn(&Window) -> f64| median(ws.iter().map(f).collect());
    Window {
        secs: m(&|w| w.secs),
        sent_per_s: m(&|w| w.sent_per_s),
        deliveries_per_s: m(&|w| w.deliveries_per_s),
        server_cpu_cores: m(&|w| w.server_cpu_cores),
        cpu_us_per_delivery: m(&|w| w.cpu_us_per_delivery),
        user_us_per_delivery: m(&|w| w.user_us_per_delivery),
        sys_us_per_delivery: m(&|w| w.sys_us_per_delivery),
        aux_cpu_us_per_delivery: m(&|w| w.aux_cpu_us_per_delivery),
        client_cpu_us_per_delivery: m(&|w| w.client_cpu_us_per_delivery),
        p50_us: m(&|w| w.p50_us as f64) as u64,
        p99_us: m(&|w| w.p99_us as f64) as u64,
        p999_us: m(&|w| w.p999_us as f64) as u64,
        max_us: m(&|w| w.max_us as f64) as u64,
        samples: m(&|w| w.samples as f64) as u64,
    }
}

pub async fn run(a: FanoutArgs) -> Result<()> {
    let c = &a.common;
    let pub_servers = if a.pub_servers.is_empty() {
        c.servers.clone()
    } else {
        a.pub_servers.clone()
    };
    let sub_servers = if a.sub_servers.is_empty() {
        c.servers.clone()
    } else {
        a.sub_servers.clone()
    };
    anyhow::ensure!(
        !pub_servers.is_empty() && !sub_servers.is_empty(),
        "no --server given"
    );
    let nslots = a.rates.len() * a.windows;
    let sh = Arc::new(Shared {
        slot: AtomicUsize::new(NO_SLOT),
        hists: (0..nslots)
            .map(|_| Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3).expect("hist")))
            .collect(),
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        first_refusal: Mutex::new(None),
        rate_gen: AtomicU64::new(0),
        rate_per_pub: AtomicU64::new(0f64.to_bits()),
        stop: AtomicBool::new(false),
        step: AtomicUsize::new(0),
        step_expected: (0..a.rates.len()).map(|_| AtomicU64::new(0)).collect(),
        step_delivered: (0..a.rates.len()).map(|_| AtomicU64::new(0)).collect(),
    });
    let send_method = if a.count_sends {
        let m = sends::available();
        if m.is_none() {
            eprintln!(
                "[fanout {}] --count-sends: perf or its tracepoints are missing; sends not counted",
                c.target
            );
        }
        m
    } else {
        None
    };
    let run_id = c.run_id();
    let sem = Arc::new(Semaphore::new(c.concurrency));
    let timeout = Duration::from_secs_f64(c.timeout);
    let pad: Arc<str> = pad_for(a.bytes).into();

    // members per room: subscribers + publishers of that room
    let pubs_in_room = |r: usize| (0..a.pubs).filter(|p| p % a.rooms == r).count();

    let t0 = Instant::now();
    let mut joins = Vec::new();
    let mut conn_idx = 0usize;
    for r in 0..a.rooms {
        for s in 0..a.subs {
            let i = conn_idx;
            conn_idx += 1;
            let addr = sub_servers[i % sub_servers.len()];
            let uid = format!("{run_id}-r{r}s{s}");
            let room = format!("{run_id}-room{r}");
            let sem = sem.clone();
            joins.push(tokio::spawn(async move {
                let _p = sem.acquire_owned().await;
                sio::open_joined(addr, Some(sio::source_ip(i)), &uid, &room, timeout)
                    .await
                    .map(|w| (w, None))
            }));
        }
    }
    for p in 0..a.pubs {
        let i = conn_idx;
        conn_idx += 1;
        let r = p % a.rooms;
        let addr = pub_servers[p % pub_servers.len()];
        let uid = format!("{run_id}-p{p}");
        let room = format!("{run_id}-room{r}");
        let fan = (a.subs + pubs_in_room(r) - 1) as u64;
        let sem = sem.clone();
        joins.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            sio::open_joined(addr, Some(sio::source_ip(i)), &uid, &room, timeout)
                .await
                .map(|w| (w, Some((p as u64, fan))))
        }));
    }
    let mut opened = Vec::new();
    for j in joins {
        opened.push(j.await??);
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let connections = opened.len();
    eprintln!(
        "[fanout {}] {} connections ready in {:.2}s ({:.0}/s)",
        c.target,
        connections,
        connect_secs,
        connections as f64 / connect_secs
    );
    for (ws, role) in opened {
        let sh = sh.clone();
        match role {
            None => {
                tokio::spawn(subscriber(ws, sh));
            }
            Some((idx, fan)) => {
                tokio::spawn(publisher(ws, sh, idx, fan, a.storage, pad.clone()));
            }
        }
    }
    // let the remote_join traffic settle
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let pids = c.server_pids.clone();
    let aux = c.aux_pids.clone();
    let me = std::process::id();
    let mut steps: Vec<Step> = Vec::new();
    let mut max_ok: Option<f64> = None;
    let room_fan: f64 = (0..a.pubs)
        .map(|p| (a.subs + pubs_in_room(p % a.rooms) - 1) as f64)
        .sum::<f64>()
        / a.pubs.max(1) as f64;
    let mut send_windows: Vec<(Option<sends::SendWindow>, Option<String>)> = Vec::new();
    for (ri, &rate) in a.rates.iter().enumerate() {
        sh.step.store(ri, Relaxed);
        sh.rate_per_pub
            .store((rate / a.pubs as f64).to_bits(), Relaxed);
        sh.rate_gen.fetch_add(1, Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
        let mut wins = Vec::new();
        for w in 0..a.windows {
            let slot = ri * a.windows + w;
            let (s0, d0) = (sh.sent.load(Relaxed), sh.delivered.load(Relaxed));
            let (c0, x0) = (procfs::cpu_all(&pids), procfs::cpu_seconds_all(&aux));
            let me0 = procfs::cpu_seconds(me).unwrap_or(0.0);
            let t = Instant::now();
            sh.slot.store(slot, Relaxed);
            tokio::time::sleep(Duration::from_secs_f64(a.window)).await;
            sh.slot.store(NO_SLOT, Relaxed);
            let secs = t.elapsed().as_secs_f64();
            let (s1, d1) = (sh.sent.load(Relaxed), sh.delivered.load(Relaxed));
            let (c1, x1) = (procfs::cpu_all(&pids), procfs::cpu_seconds_all(&aux));
            let me1 = procfs::cpu_seconds(me).unwrap_or(0.0);
            let h = sh.hists[slot].lock().clone();
            wins.push(window_stats(
                secs,
                s1 - s0,
                d1 - d0,
                c1 - c0,
                x1 - x0,
                me1 - me0,
                &h,
            ));
        }
        let sw = match send_method {
            Some(m) => match sends::window(&pids, m, a.window, || sh.delivered.load(Relaxed)).await
            {
                Ok(w) => {
                    eprintln!(
                        "[fanout {}] rate {rate} msg/s: {} TCP sends for {} deliveries in {:.2}s = {:.3} sends/delivery (sendto {}, sendmsg {}, write {}, writev {})",
                        c.target,
                        w.counts.sends(),
                        w.deliveries,
                        w.secs,
                        w.sends_per_delivery,
                        w.counts.sendto,
                        w.counts.sendmsg,
                        w.counts.write,
                        w.counts.writev
                    );
                    (Some(w), None)
                }
                Err(e) => {
                    eprintln!("[fanout {}] counting sends failed: {e:#}", c.target);
                    (None, Some(format!("{e:#}")))
                }
            },
            None => (None, None),
        };
        send_windows.push(sw);
        let med = median_window(&wins);
        let offered = rate * room_fan;
        let sustainable = med.deliveries_per_s >= a.min_delivered_ratio * offered
            && med.sent_per_s >= a.min_delivered_ratio * rate
            && (med.p99_us as f64) <= a.max_p99_ms * 1000.0;
        let label = a
            .labels
            .get(ri)
            .cloned()
            .unwrap_or_else(|| format!("{rate}"));
        eprintln!(
            "[fanout {}] rate {:>8.0} msg/s ({label}): offered {:>9.0} deliv/s, got {:>9.0}/s, server {:.2} cores, {:.2} us/delivery (user {:.2} sys {:.2}; +aux {:.2}, client {:.2}), p50 {} us p99 {} us p999 {} us{}",
            c.target,
            rate,
            offered,
            med.deliveries_per_s,
            med.server_cpu_cores,
            med.cpu_us_per_delivery,
            med.user_us_per_delivery,
            med.sys_us_per_delivery,
            med.aux_cpu_us_per_delivery,
            med.client_cpu_us_per_delivery,
            med.p50_us,
            med.p99_us,
            med.p999_us,
            if sustainable { "" } else { "  NOT SUSTAINABLE" }
        );
        steps.push(Step {
            label,
            rate_msgs: rate,
            offered_deliveries_per_s: offered,
            windows: wins,
            median: med,
            sustainable,
            expected: 0,
            delivered: 0,
            lost: 0,
            sends: None,
            sends_error: None,
        });
        if sustainable {
            max_ok = Some(rate);
        } else if a.ramp {
            break;
        }
    }
    sh.rate_per_pub.store(0f64.to_bits(), Relaxed);
    sh.rate_gen.fetch_add(1, Relaxed);
    // Drain: an overloaded server may still be sending its backlog; wait until
    // deliveries stop arriving, but not forever.
    let td = Instant::now();
    let mut last_count = sh.delivered.load(Relaxed);
    let mut last_change = Instant::now();
    while td.elapsed().as_secs_f64() < a.max_drain && last_change.elapsed().as_secs_f64() < a.drain
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = sh.delivered.load(Relaxed);
        if n != last_count {
            last_count = n;
            last_change = Instant::now();
        }
    }
    let drain_secs = td.elapsed().as_secs_f64();
    for (i, st) in steps.iter_mut().enumerate() {
        st.expected = sh.step_expected[i].load(Relaxed);
        st.delivered = sh.step_delivered[i].load(Relaxed);
        st.lost = st.expected as i64 - st.delivered as i64;
        if let Some((w, e)) = send_windows.get(i).cloned() {
            st.sends = w;
            st.sends_error = e;
        }
        eprintln!(
            "[fanout {}] {}: expected {} delivered {} lost {}",
            c.target, st.label, st.expected, st.delivered, st.lost
        );
    }
    let sent = sh.sent.load(Relaxed);
    let expected = sh.expected.load(Relaxed);
    let delivered = sh.delivered.load(Relaxed);
    sh.stop.store(true, Relaxed);
    let res = FanoutResult {
        scenario: "fanout",
        target: c.target.clone(),
        ramp: a.ramp,
        rooms: a.rooms,
        subs: a.subs,
        pubs: a.pubs,
        bytes: a.bytes,
        storage: a.storage,
        connections,
        connect_secs,
        steps,
        max_sustainable_rate: if a.ramp { max_ok } else { None },
        sent,
        expected,
        delivered,
        undelivered: expected as i64 - delivered as i64,
        seq_gaps: sh.gaps.load(Relaxed),
        errors: sh.errors.load(Relaxed),
        refused: sh.refused.load(Relaxed),
        first_refusal: sh.first_refusal.lock().clone(),
        drain_secs,
    };
    eprintln!(
        "[fanout {}] sent {} expected {} delivered {} undelivered {} gaps {} errors {} refused {}{}{}",
        c.target,
        res.sent,
        res.expected,
        res.delivered,
        res.undelivered,
        res.seq_gaps,
        res.errors,
        res.refused,
        res.first_refusal
            .as_deref()
            .map(|r| format!(" (first: {r})"))
            .unwrap_or_default(),
        res.max_sustainable_rate
            .map(|r| format!("; highest sustainable rate {r} msg/s"))
            .unwrap_or_default()
    );
    write_result(c, &res)?;
    Ok(())
}
