//! Turns one run's results (JSON lines written by the scenarios and by run.sh)
//! into BENCHMARKS.md and a chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use plotters::prelude::*;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// JSON-lines results of one run.
    #[arg(long)]
    pub results: PathBuf,
    /// Markdown file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Chart to write (.png or .svg); the markdown links to it relative to --out's folder.
    #[arg(long, default_value = "bench/results/benchmarks.png")]
    pub chart: PathBuf,
    /// Markdown appended under "Profile" (hand-written reading of a profile).
    #[arg(long, default_value = "bench/profile.md")]
    pub profile: PathBuf,
    /// Markdown appended as "Plugin runtime" (the criterion bench of the
    /// plugin runtime, `cargo bench -p hookwire --bench plugins`, read by hand).
    #[arg(long, default_value = "bench/plugins.md")]
    pub plugins: PathBuf,
    /// Markdown appended under "Notes" (run.sh writes what it skipped and why).
    #[arg(long)]
    pub notes: Option<PathBuf>,
}

const NODE: &str = "node";

fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn fmt(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.digits$}")
    }
}

fn ms(us: f64) -> String {
    if us.is_nan() {
        "–".into()
    } else {
        format!("{:.2}", us / 1000.0)
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "–".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

struct Data {
    meta: Value,
    ramp: Option<Value>,
    /// target -> fixed-rate fanout result
    fanout: BTreeMap<String, Value>,
    connect: BTreeMap<String, Value>,
    sync: BTreeMap<String, Value>,
    syncmem: BTreeMap<String, Value>,
    bigroom: BTreeMap<String, Value>,
    order: Vec<String>,
}

fn load(path: &Path) -> Result<Data> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut d = Data {
        meta: Value::Null,
        ramp: None,
        fanout: BTreeMap::new(),
        connect: BTreeMap::new(),
        sync: BTreeMap::new(),
        syncmem: BTreeMap::new(),
        bigroom: BTreeMap::new(),
        order: Vec::new(),
    };
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let target = v
            .get("target")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !target.is_empty() && !d.order.contains(&target) {
            d.order.push(target.clone());
        }
        match v.get("scenario").and_then(Value::as_str) {
            Some("meta") => d.meta = v,
            Some("fanout") if v.get("ramp").and_then(Value::as_bool) == Some(true) => {
                d.ramp = Some(v)
            }
            Some("fanout") => {
                d.fanout.insert(target, v);
            }
            Some("connect") => {
                d.connect.insert(target, v);
            }
            Some("sync") => {
                d.sync.insert(target, v);
            }
            Some("syncmem") => {
                d.syncmem.insert(target, v);
            }
            Some("bigroom") => {
                d.bigroom.insert(target, v);
            }
            _ => {}
        }
    }
    // node first, then the order of appearance
    d.order.sort_by_key(|t| if t == NODE { 0 } else { 1 });
    Ok(d)
}

fn step<'a>(fan: &'a Value, label: &str) -> Option<&'a Value> {
    fan.get("steps")?
        .as_array()?
        .iter()
        .find(|s| s.get("label").and_then(Value::as_str) == Some(label))
}

fn med(fan: Option<&Value>, label: &str, k: &str) -> f64 {
    fan.and_then(|f| step(f, label))
        .and_then(|s| s.get("median"))
        .map(|m| f(m, k))
        .unwrap_or(f64::NAN)
}

/// A step's sends per delivery, when counted.
fn sends(fan: Option<&Value>, label: &str) -> f64 {
    fan.and_then(|f| step(f, label))
        .and_then(|s| s.get("sends"))
        .map(|w| f(w, "sends_per_delivery"))
        .unwrap_or(f64::NAN)
}

/// "nothing lost", "N lost (x%)" or "–" for a step.
fn lost(fan: Option<&Value>, label: &str) -> String {
    let Some(st) = fan.and_then(|f| step(f, label)) else {
        return "–".into();
    };
    let (Some(l), Some(e)) = (
        st.get("lost").and_then(Value::as_i64),
        st.get("expected").and_then(Value::as_u64),
    ) else {
        return "–".into();
    };
    match l {
        0 => "nothing lost".into(),
        l if l > 0 => format!(
            "**{l} lost** ({:.2}% of {e})",
            l as f64 * 100.0 / e.max(1) as f64
        ),
        l => format!("nothing lost ({} more than expected)", -l),
    }
}

fn mib(kib: f64) -> String {
    if kib.is_nan() {
        "–".into()
    } else {
        format!("{:.1} MiB", kib / 1024.0)
    }
}

fn check(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

pub fn run(a: ReportArgs) -> Result<()> {
    let d = load(&a.results)?;
    let meta = &d.meta;
    let node_rate = f(meta, "node_rate");
    let mut md = String::new();
    let w = &mut md;
    writeln!(w, "# Benchmarks\n")?;
    writeln!(
        w,
        "hookwire side by side with the reference Node stack (socket.io 4 + `@socket.io/redis-adapter` + node-redis v4, \
         `bench/node-peer/`), measured by the Rust load generator in `bench/` (it speaks Engine.IO v4 / socket.io v5 \
         over WebSocket itself). Every figure below comes from **one run** of:\n"
    )?;
    writeln!(
        w,
        "```sh\nbench/run.sh            # full comparison, 8-10 minutes (builds in release first)\nbench/run.sh --quick    # smoke run, about 2 minutes\n# on a shared machine (nice -5 against the other jobs):\nBENCH_NICE=-5 bench/run.sh\n```\n\nOptions: `--no-build`, `--only node,hookwire,...`, `--out FILE`; `BENCH_PIN=0` turns pinning off, `BENCH_SERVER_CPUS` / `BENCH_LOAD_CPUS` choose the CPUs. It needs `node`/`npm`, `jq`, `curl`, `taskset` and `perf`, and installs `redis-server` and `linux-perf` (Debian) when missing; raw results go to `bench/results/results-<mode>.jsonl`, the chart to `bench/results/benchmarks.png`. Single scenarios: `target/release/hookwire-bench fanout|connect|sync|syncmem|bigroom --help`.\n"
    )?;
    writeln!(w, "## Method and conditions\n")?;
    let s = |k: &str| {
        meta.get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    writeln!(
        w,
        "- run started {} UTC, {} ({})",
        s("date"),
        s("mode"),
        s("git")
    )?;
    writeln!(w, "- machine: {}", s("machine"))?;
    writeln!(w, "- load average before the run: {}", s("loadavg"))?;
    if s("nice") != "0" && s("nice") != "?" {
        writeln!(
            w,
            "- servers, redis-server and the load generator ran at nice {} (the other engineers' jobs at 0) to keep their \
             compiles from dominating the latency figures",
            s("nice")
        )?;
    }
    if meta.get("shared").and_then(Value::as_bool).unwrap_or(false) {
        writeln!(
            w,
            "- **the machine was shared**: other engineers were compiling and testing on the same 2 cores during the run, \
             so absolute figures are noisy; compare the ratios (every system was measured in the same run, under the same conditions)."
        )?;
    }
    writeln!(w, "- pinning: {}", s("pinning"))?;
    if meta.get("pinned").and_then(Value::as_bool) != Some(true) {
        writeln!(
            w,
            "- the load generator runs on the same cores as the server, so deliveries/s mostly measures the client"
        )?;
    }
    writeln!(
        w,
        "- the comparison is **server CPU time per delivered message** and **latency at the same offered load**. CPU per \
         delivery = CPU time of the server process(es) over a measurement window ÷ deliveries the clients counted in that \
         window, split into **user** time (`utime`) and **system** time (`stime`, the kernel working for the server: \
         socket sends and receives, TCP over loopback, epoll, futexes), both from `/proc/<pid>/stat` (all threads), in \
         clock ticks of {} ms.",
        fmt(1000.0 / crate::procfs::clk_tck(), 0)
    )?;
    match s("sends_method").as_str() {
        "tcp-sock-sendmsg" => writeln!(
            w,
            "- **sends per delivery** = TCP send calls of the server process(es) in a window ÷ deliveries counted in it. \
             Counted by `perf stat` attached to the server pids on the kernel tracepoint `sock:sock_send_length` filtered \
             to TCP (`protocol == 6`): it fires once per send on a socket whatever the system call (`sendto`, `sendmsg`, \
             `write`, `writev`), and not for writes to files, pipes or eventfds. Sends to Redis count too (the Node peer \
             and `--redis` write each msg to Redis). The split by system call (`sys_enter_*` tracepoints, any fd: a \
             `write` may be an eventfd wake-up) is in the detail table. Counting costs the server a little kernel time \
             per event, so it runs in a window of its own after the measured windows of each rate: the CPU and latency \
             figures come from windows without perf attached (perf itself runs with the load generator's CPU affinity). `/proc/<pid>/io`'s `syscw` is not used: on this kernel it \
             counts `write`/`writev` but not `sendto`/`sendmsg` (checked with a test program), so it sees libuv's socket \
             writes and misses Rust's (`send` is the `sendto` system call)."
        )?,
        "syscalls" => writeln!(
            w,
            "- **sends per delivery** = `sendto` + `sendmsg` + `write` + `writev` system calls of the server process(es) \
             in a window ÷ deliveries counted in it, by `perf stat` on the `syscalls:sys_enter_*` tracepoints, in a window \
             of its own after the measured windows of each rate (the socket-level tracepoint was not available: `write` \
             counts every fd, eventfd wake-ups and log lines included)."
        )?,
        _ => writeln!(
            w,
            "- sends per delivery: not measured in this run (perf could not count tracepoints)"
        )?,
    }
    if s("fd_limit") != "?" {
        writeln!(
            w,
            "- open files: soft limit {} per process (raised to the hard limit); server and load generator are separate \
             processes, each under it",
            s("fd_limit")
        )?;
    }
    if let Some(f0) = d.fanout.values().next() {
        writeln!(
            w,
            "- fan-out: {} rooms × {} subscribers, {} publishers (one per room), {} byte msg objects, storage mode {}; each rate \
             runs a warm-up and then {} measurement windows; figures are the **medians over windows**.",
            f0["rooms"],
            f0["subs"],
            f0["pubs"],
            f0["bytes"],
            f0["storage"],
            f0["steps"][0]["windows"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or(0)
        )?;
    }
    writeln!(w, "- systems measured:\n")?;
    for t in &d.order {
        writeln!(
            w,
            "  - `{t}`: {}",
            meta.get("describe")
                .and_then(|x| x.get(t))
                .and_then(Value::as_str)
                .unwrap_or("")
        )?;
    }
    writeln!(w)?;

    // ---------------------------------------------------------------- ramp
    writeln!(w, "## Node peer's highest sustainable rate\n")?;
    if let Some(r) = &d.ramp {
        writeln!(
            w,
            "Ramp against the Node peer; a rate is sustainable when the deliveries keep up with the offered load (≥ 97%) and the \
             median window p99 stays ≤ {} ms. Highest sustainable: **{} msg/s** = **{} deliveries/s**. The fixed-rate runs below \
             use it (1x) and twice it (2x).\n",
            fmt(f(meta, "ramp_p99_ms"), 0),
            fmt(node_rate, 0),
            fmt(f(meta, "node_deliveries"), 0)
        )?;
        writeln!(
            w,
            "| msg/s | offered deliveries/s | delivered/s | server CPU (cores) | µs CPU/delivery (user + system) | p50 ms | p99 ms | p999 ms | sustainable |"
        )?;
        writeln!(w, "|---:|---:|---:|---:|---:|---:|---:|---:|:--:|")?;
        for st in r["steps"].as_array().into_iter().flatten() {
            let m = &st["median"];
            writeln!(
                w,
                "| {} | {} | {} | {} | {} ({} + {}) | {} | {} | {} | {} |",
                fmt(f(st, "rate_msgs"), 0),
                fmt(f(st, "offered_deliveries_per_s"), 0),
                fmt(f(m, "deliveries_per_s"), 0),
                fmt(f(m, "server_cpu_cores"), 2),
                fmt(f(m, "cpu_us_per_delivery"), 2),
                fmt(f(m, "user_us_per_delivery"), 2),
                fmt(f(m, "sys_us_per_delivery"), 2),
                ms(f(m, "p50_us")),
                ms(f(m, "p99_us")),
                ms(f(m, "p999_us")),
                if st["sustainable"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                }
            )?;
        }
        writeln!(w)?;
    } else {
        writeln!(w, "No ramp in this run.\n")?;
    }

    // ---------------------------------------------------------------- summary
    let nf = d.fanout.get(NODE);
    let nc = d.connect.get(NODE);
    writeln!(w, "## Summary (medians; ratios are hookwire ÷ Node peer)\n")?;
    writeln!(w, "![benchmark chart]({})\n", rel_link(&a.out, &a.chart))?;
    writeln!(
        w,
        "| system | µs server CPU / delivery @1x | ratio | p50 / p99 / p999 ms @1x | p99 ratio | p50 / p99 / p999 ms @2x | deliveries/s @2x (offered) | idle RSS / conn | ratio | projected RSS @1M conns | conn/s |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let ncpu = med(nf, "1x", "cpu_us_per_delivery");
    let np99 = med(nf, "1x", "p99_us");
    let nrss = nc.map(|c| f(c, "rss_per_conn_bytes")).unwrap_or(f64::NAN);
    for t in &d.order {
        let fan = d.fanout.get(t);
        let con = d.connect.get(t);
        let cpu = med(fan, "1x", "cpu_us_per_delivery");
        let aux = med(fan, "1x", "aux_cpu_us_per_delivery");
        let p99 = med(fan, "1x", "p99_us");
        let rss = con.map(|c| f(c, "rss_per_conn_bytes")).unwrap_or(f64::NAN);
        let offered2 = fan
            .and_then(|x| step(x, "2x"))
            .map(|s| f(s, "offered_deliveries_per_s"))
            .unwrap_or(f64::NAN);
        writeln!(
            w,
            "| `{t}` | {}{} | {} | {} / {} / {} | {} | {} / {} / {} | {} ({}) | {} | {} | {} | {} |",
            fmt(cpu, 2),
            if aux.is_nan() || aux == 0.0 {
                String::new()
            } else {
                format!(" (+{} redis)", fmt(aux, 2))
            },
            if t == NODE {
                "1".into()
            } else {
                ratio(cpu, ncpu)
            },
            ms(med(fan, "1x", "p50_us")),
            ms(p99),
            ms(med(fan, "1x", "p999_us")),
            if t == NODE {
                "1".into()
            } else {
                ratio(p99, np99)
            },
            ms(med(fan, "2x", "p50_us")),
            ms(med(fan, "2x", "p99_us")),
            ms(med(fan, "2x", "p999_us")),
            fmt(med(fan, "2x", "deliveries_per_s"), 0),
            fmt(offered2, 0),
            if rss.is_nan() {
                "–".into()
            } else {
                format!("{:.1} KiB", rss / 1024.0)
            },
            if t == NODE {
                "1".into()
            } else {
                ratio(rss, nrss)
            },
            con.map(|c| format!("{:.1} GiB", f(c, "projected_1m_gib")))
                .unwrap_or("–".into()),
            con.map(|c| fmt(f(c, "conns_per_s"), 0))
                .unwrap_or("–".into()),
        )?;
    }
    writeln!(w)?;

    // ---------------------------------------------------------------- cpu split and sends
    writeln!(w, "## Server CPU and sends per delivery at 1x and 2x\n")?;
    writeln!(
        w,
        "1x = the Node peer's highest sustainable rate ({} msg/s), 2x = twice it. CPU per delivery: medians over the \
         measured windows, user and system time apart; the ratio is the total against the Node peer's at the same rate. \
         Sends per delivery: TCP send calls in the send-count window of that rate. p99: median of the windows' p99. \
         Lost: deliveries expected for the msgs sent at that rate (warm-up included) that had not arrived when deliveries \
         stopped coming after the last send.\n",
        fmt(node_rate, 0)
    )?;
    writeln!(
        w,
        "| system | rate | delivered/s (offered) | user µs / delivery | system µs / delivery | total µs / delivery | total ÷ Node | sends / delivery | p99 ms | lost |"
    )?;
    writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for t in &d.order {
        let Some(fan) = d.fanout.get(t) else { continue };
        for label in ["1x", "2x"] {
            let Some(st) = step(fan, label) else { continue };
            let tot = med(Some(fan), label, "cpu_us_per_delivery");
            writeln!(
                w,
                "| `{t}` | {label} ({} msg/s) | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
                fmt(f(st, "rate_msgs"), 0),
                fmt(med(Some(fan), label, "deliveries_per_s"), 0),
                fmt(f(st, "offered_deliveries_per_s"), 0),
                fmt(med(Some(fan), label, "user_us_per_delivery"), 2),
                fmt(med(Some(fan), label, "sys_us_per_delivery"), 2),
                fmt(tot, 2),
                if t == NODE {
                    "1".into()
                } else {
                    ratio(tot, med(nf, label, "cpu_us_per_delivery"))
                },
                fmt(sends(Some(fan), label), 3),
                ms(med(Some(fan), label, "p99_us")),
                lost(Some(fan), label),
            )?;
        }
    }
    writeln!(w)?;
    let any_sends = d.fanout.values().any(|fan| {
        fan["steps"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s.get("sends").is_some_and(|x| !x.is_null()))
        })
    });
    if any_sends {
        writeln!(
            w,
            "Send-count windows (perf attached): TCP sends, and the system calls by name on any fd.\n"
        )?;
        writeln!(
            w,
            "| system | rate | window s | deliveries | TCP sends | sends / delivery | `sendto` | `sendmsg` | `write` | `writev` |"
        )?;
        writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for t in &d.order {
            let Some(fan) = d.fanout.get(t) else { continue };
            for st in fan["steps"].as_array().into_iter().flatten() {
                let Some(sw) = st.get("sends").filter(|x| !x.is_null()) else {
                    continue;
                };
                writeln!(
                    w,
                    "| `{t}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    st["label"].as_str().unwrap_or(""),
                    fmt(f(sw, "secs"), 2),
                    sw["deliveries"],
                    sw.get("tcp_sends")
                        .filter(|x| !x.is_null())
                        .map(|x| x.to_string())
                        .unwrap_or("–".into()),
                    fmt(f(sw, "sends_per_delivery"), 3),
                    sw["sendto"],
                    sw["sendmsg"],
                    sw["write"],
                    sw["writev"],
                )?;
            }
        }
        writeln!(w)?;
    }
    for t in &d.order {
        let Some(fan) = d.fanout.get(t) else { continue };
        for st in fan["steps"].as_array().into_iter().flatten() {
            if let Some(e) = st.get("sends_error").and_then(Value::as_str) {
                writeln!(
                    w,
                    "- `{t}` {}: sends not counted ({})",
                    st["label"].as_str().unwrap_or(""),
                    e.replace('|', "/")
                )?;
            }
        }
    }

    // ---------------------------------------------------------------- targets
    writeln!(w, "## Targets\n")?;
    let hf = d.fanout.get("hookwire");
    let hcpu = med(hf, "1x", "cpu_us_per_delivery");
    let hp99 = med(hf, "1x", "p99_us");
    let hp99_2 = med(hf, "2x", "p99_us");
    let hrss = d
        .connect
        .get("hookwire")
        .map(|c| f(c, "rss_per_conn_bytes"))
        .unwrap_or(f64::NAN);
    let known = |x: f64| !x.is_nan();
    let ncpu_2 = med(nf, "2x", "cpu_us_per_delivery");
    let hcpu_2 = med(hf, "2x", "cpu_us_per_delivery");
    let cpu_ok = (known(hcpu) && known(ncpu)).then_some(hcpu <= 0.5 * ncpu);
    let cpu_2_ok = (known(hcpu_2) && known(ncpu_2)).then_some(hcpu_2 <= 0.5 * ncpu_2);
    let huser = med(hf, "1x", "user_us_per_delivery");
    let huser_2 = med(hf, "2x", "user_us_per_delivery");
    let user_ok = (known(huser) && known(huser_2)).then_some(huser.max(huser_2) <= 1.0);
    let p99_ok = (known(hp99) && known(np99)).then_some(hp99 <= 0.5 * np99);
    let lost_2 = lost(hf, "2x");
    let p99_2_ok = known(hp99_2).then_some(hp99_2 < 10_000.0 && lost_2 == "nothing lost");
    let rss_ok = (known(hrss) && known(nrss)).then_some(hrss <= 0.4 * nrss);
    let sm = d.syncmem.get("hookwire");
    let sm_ratio = sm.map_or(f64::NAN, |m| f(m, "rss_after_kib") / f(m, "rss_idle_kib"));
    let sm_ok = known(sm_ratio).then_some(sm_ratio <= 1.10);
    let br_p99 = d
        .bigroom
        .get("hookwire")
        .map_or(f64::NAN, |b| f(b, "last_p99_us"));
    let br_ok = known(br_p99).then_some(br_p99 <= 10_000.0);
    let rf = d.fanout.get("hookwire-cluster");
    let rp99 = med(rf, "1x", "p99_us");
    let redis_ok = (known(rp99) && known(hp99)).then_some(rp99 - hp99 <= 1000.0);
    let wf = d.fanout.get("hookwire-wordfilter");
    let wcpu = med(wf, "1x", "cpu_us_per_delivery");
    let wf_ok = (known(wcpu) && known(hcpu)).then_some(wcpu <= 1.10 * hcpu);
    writeln!(w, "| target | measured | result |")?;
    writeln!(w, "|---|---|---|")?;
    for (label, h, n, ok) in [("1x", hcpu, ncpu, cpu_ok), ("2x", hcpu_2, ncpu_2, cpu_2_ok)] {
        writeln!(
            w,
            "| server CPU per delivery ≤ 0.5× Node's at {label} | {} vs {} µs = {} | {} |",
            fmt(h, 2),
            fmt(n, 2),
            ratio(h, n),
            check(ok)
        )?;
    }
    writeln!(
        w,
        "| user-space CPU per delivery ≤ 1 µs (1x, 2x) | {} µs, {} µs | {} |",
        fmt(huser, 2),
        fmt(huser_2, 2),
        check(user_ok)
    )?;
    writeln!(
        w,
        "| p99 at Node's highest sustainable rate ≤ 0.5× Node's p99 | {} vs {} ms = {} | {} |",
        ms(hp99),
        ms(np99),
        ratio(hp99, np99),
        check(p99_ok)
    )?;
    writeln!(
        w,
        "| at twice that rate: p99 < 10 ms, nothing lost | {} ms, {} | {} |",
        ms(hp99_2),
        lost_2,
        check(p99_2_ok)
    )?;
    writeln!(
        w,
        "| idle RSS per connection ≤ 0.4× Node's (at {} connections) | {} vs {} B = {} | {} |",
        d.connect
            .get("hookwire")
            .and_then(|c| c["connected"].as_u64())
            .map(|n| n.to_string())
            .unwrap_or("–".into()),
        fmt(hrss, 0),
        fmt(nrss, 0),
        ratio(hrss, nrss),
        check(rss_ok)
    )?;
    writeln!(
        w,
        "| RSS after the sync burst within 10% of idle | {} | {} |",
        if known(sm_ratio) {
            format!("{sm_ratio:.2}× idle")
        } else {
            "–".into()
        },
        check(sm_ok)
    )?;
    writeln!(
        w,
        "| 10,000-member room at 10 msg/s: p99 to the last member ≤ 10 ms | {} ms | {} |",
        ms(br_p99),
        check(br_ok)
    )?;
    writeln!(
        w,
        "| cluster over Redis adds ≤ 1 ms to p99 | {} ms (cluster) − {} ms (embedded) = {} ms | {} |",
        ms(rp99),
        ms(hp99),
        if known(rp99) && known(hp99) {
            ms(rp99 - hp99)
        } else {
            "–".into()
        },
        check(redis_ok)
    )?;
    writeln!(
        w,
        "| word-filter on every message adds ≤ 10% server CPU per delivery | {} vs {} µs = {} | {} |",
        fmt(wcpu, 2),
        fmt(hcpu, 2),
        if known(wcpu) && known(hcpu) {
            format!("{:+.1}%", (wcpu / hcpu - 1.0) * 100.0)
        } else {
            "–".into()
        },
        check(wf_ok)
    )?;
    writeln!(w)?;

    // ---------------------------------------------------------------- details
    writeln!(w, "## Fan-out detail\n")?;
    writeln!(
        w,
        "| system | rate | msg/s sent | offered deliveries/s | delivered/s | server cores | µs CPU/delivery | redis µs/delivery | load generator µs/delivery | p50 ms | p99 ms | p999 ms | max ms |"
    )?;
    writeln!(
        w,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for t in &d.order {
        let Some(fan) = d.fanout.get(t) else { continue };
        for st in fan["steps"].as_array().into_iter().flatten() {
            let m = &st["median"];
            writeln!(
                w,
                "| `{t}` | {} ({} msg/s) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                st["label"].as_str().unwrap_or(""),
                fmt(f(st, "rate_msgs"), 0),
                fmt(f(m, "sent_per_s"), 0),
                fmt(f(st, "offered_deliveries_per_s"), 0),
                fmt(f(m, "deliveries_per_s"), 0),
                fmt(f(m, "server_cpu_cores"), 2),
                fmt(f(m, "cpu_us_per_delivery"), 2),
                fmt(f(m, "aux_cpu_us_per_delivery"), 2),
                fmt(f(m, "client_cpu_us_per_delivery"), 2),
                ms(f(m, "p50_us")),
                ms(f(m, "p99_us")),
                ms(f(m, "p999_us")),
                ms(f(m, "max_us")),
            )?;
        }
    }
    writeln!(w)?;
    writeln!(
        w,
        "Losses over the whole fan-out run of each system (both rates), counted after the drain (until no delivery \
         arrived for 2 s, at most 30 s); sequence gaps are msgs a subscriber never saw while it saw a later one of the \
         same publisher:\n"
    )?;
    writeln!(
        w,
        "| system | connections | sent | expected deliveries | delivered | undelivered | sequence gaps | disconnects | refused (`error` events) | drain s |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for t in &d.order {
        let Some(fan) = d.fanout.get(t) else { continue };
        writeln!(
            w,
            "| `{t}` | {} | {} | {} | {} | {} | {} | {} | {}{} | {} |",
            fan["connections"],
            fan["sent"],
            fan["expected"],
            fan["delivered"],
            fan["undelivered"],
            fan["seq_gaps"],
            fan["errors"],
            fan.get("refused").cloned().unwrap_or(Value::Null),
            fan.get("first_refusal")
                .and_then(Value::as_str)
                .map(|r| format!(" (first: `{}`)", r.replace('|', "/")))
                .unwrap_or_default(),
            fmt(f(fan, "drain_secs"), 1)
        )?;
    }
    writeln!(w)?;

    writeln!(w, "## Idle connections\n")?;
    writeln!(
        w,
        "Connections authenticated and joined (rooms of 10, normal members), client source addresses spread over \
         127.0.0.2–251, held idle; server VmRSS from `/proc/<pid>/status` before (fresh server) and after. RSS / conn = \
         (after − before) ÷ connections; the ratio is against the Node peer's. Projection to 1M = RSS before + 1M × \
         per-connection. Server and load generator are two processes, each holding one fd per connection under its own \
         open-file limit.\n"
    )?;
    writeln!(
        w,
        "| system | connected (failed) | conn/s | server CPU µs / conn | RSS before → after | RSS / conn | ÷ Node | projected @1M | server fds (limit) | load generator fds (limit) | dropped while idle |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for t in &d.order {
        let Some(c) = d.connect.get(t) else { continue };
        let rss = f(c, "rss_per_conn_bytes");
        let opt = |k: &str| {
            c.get(k)
                .filter(|x| !x.is_null())
                .map(|x| x.to_string())
                .unwrap_or("–".into())
        };
        writeln!(
            w,
            "| `{t}` | {} ({}) | {} | {} | {:.0} → {:.0} MiB | {:.0} B | {} | {:.1} GiB | {} ({}) | {} ({}) | {} |",
            c["connected"],
            c["failed"],
            fmt(f(c, "conns_per_s"), 0),
            fmt(f(c, "server_cpu_us_per_conn"), 0),
            f(c, "rss_before_kib") / 1024.0,
            f(c, "rss_after_kib") / 1024.0,
            rss,
            if t == NODE {
                "1".into()
            } else {
                ratio(rss, nrss)
            },
            f(c, "projected_1m_gib"),
            c["server_fds"],
            opt("server_fd_limit"),
            opt("client_fds"),
            opt("client_fd_limit"),
            opt("dropped_while_idle"),
        )?;
    }
    writeln!(w)?;

    writeln!(w, "## Sync\n")?;
    writeln!(
        w,
        "One room with M stored messages (stored through `msg` with acks), then C clients page through them with `sync` from offset 0 until `next` is 0, all at once.\n"
    )?;
    writeln!(
        w,
        "| system | M × C | store msg/s | sync time s | synced msg/s | pages/s | server CPU µs / msg | complete clients |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for t in &d.order {
        let Some(s) = d.sync.get(t) else { continue };
        writeln!(
            w,
            "| `{t}` | {} × {} | {} | {} | {} | {} | {} | {} / {}{} |",
            s["messages"],
            s["clients"],
            fmt(f(s, "store_msgs_per_s"), 0),
            fmt(f(s, "secs"), 2),
            fmt(f(s, "msgs_per_s"), 0),
            fmt(f(s, "pages_per_s"), 0),
            fmt(f(s, "server_cpu_us_per_msg"), 2),
            s["complete_clients"],
            s["clients"],
            s.get("first_error")
                .and_then(Value::as_str)
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default()
        )?;
    }
    writeln!(w)?;

    // ---------------------------------------------------------------- sync memory
    if !d.syncmem.is_empty() {
        writeln!(w, "## Sync memory\n")?;
        let any = d.syncmem.values().next().cloned().unwrap_or(Value::Null);
        writeln!(
            w,
            "One room holding {} msgs stored with `storage: 1` (distinct msgIds, so the first `sync` page holds all of \
             them: about {:.0} KiB), {} connections joined to it (as dummies, so that neither their joins nor their syncs \
             are announced to the room), all asking for that page at once; each reads its page. Server VmRSS: idle (the \
             connections joined, before any sync), peak (VmHWM, reset just before the burst, or the highest of samples \
             every 10 ms), when the last page was received, and after the connections sat idle for the settle time.\n",
            any["messages"],
            f(&any, "page_bytes") / 1024.0,
            any["clients"]
        )?;
        writeln!(
            w,
            "| system | connections × page | pages received | burst s | RSS idle | peak | at last page | after (settle s) | after ÷ idle |"
        )?;
        writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for t in &d.order {
            let Some(m) = d.syncmem.get(t) else { continue };
            writeln!(
                w,
                "| `{t}` | {} × {:.0} KiB | {} / {}{} | {} | {} | {} | {} | {} ({}) | {} |",
                m["clients"],
                f(m, "page_bytes") / 1024.0,
                m["complete"],
                m["clients"],
                m.get("first_error")
                    .and_then(Value::as_str)
                    .map(|e| format!(" (error: {})", e.replace('|', "/")))
                    .unwrap_or_default(),
                fmt(f(m, "burst_secs"), 2),
                mib(f(m, "rss_idle_kib")),
                mib(f(m, "rss_peak_kib")),
                mib(f(m, "rss_done_kib")),
                mib(f(m, "rss_after_kib")),
                fmt(f(m, "settle_secs"), 0),
                ratio(f(m, "rss_after_kib"), f(m, "rss_idle_kib")),
            )?;
        }
        writeln!(w)?;
    }

    // ---------------------------------------------------------------- big room
    if !d.bigroom.is_empty() {
        let any = d.bigroom.values().next().cloned().unwrap_or(Value::Null);
        let members = any["members"].as_u64().unwrap_or(0);
        writeln!(w, "## One room of {members} members\n")?;
        writeln!(
            w,
            "One room, {members} members (dummies: they receive the room's msgs; their joins are not announced), one \
             publisher sending {} msg/s of {} bytes (storage {}) for {} s after a warm-up. For each msg, the latency to \
             the **last member served** is its latest arrival among all members (arrival − send timestamp in the \
             payload); p50, p99, mean and max are over the msgs of the measured period that reached every member. The \
             load generator reads all members' frames on its own core(s), so its time to read {members} frames is part \
             of the figure (its CPU per delivery is in the last column).\n",
            fmt(f(&any, "rate"), 0),
            any["bytes"],
            any["storage"],
            fmt(f(&any, "secs"), 0)
        )?;
        writeln!(
            w,
            "Lost: deliveries of the measured msgs that had not arrived when the drain ended (all arrived, or none for \
             3 s, or 60 s after the last send; the drain column says how long it took). A server that cannot keep up \
             builds a backlog: its late msgs count here and only the msgs that reached every member are in the \
             percentiles.\n"
        )?;
        writeln!(
            w,
            "| system | members | msgs (all members reached) | last member p50 ms | p99 ms | mean ms | max ms | all deliveries p50 / p99 ms | lost | drain s | server µs / delivery (user + system) | server cores | load generator µs / delivery (user + system) | load generator cores |"
        )?;
        writeln!(
            w,
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
        )?;
        for t in &d.order {
            let Some(b) = d.bigroom.get(t) else { continue };
            let lost_n = b["lost_deliveries"].as_u64().unwrap_or(0);
            writeln!(
                w,
                "| `{t}` | {} | {} ({}) | {} | {} | {} | {} | {} / {} | {} | {} | {} ({} + {}) | {} | {} ({} + {}) | {} of {} |",
                b["connected"],
                b["msgs"],
                b["complete_msgs"],
                ms(f(b, "last_p50_us")),
                ms(f(b, "last_p99_us")),
                ms(f(b, "last_mean_us")),
                ms(f(b, "last_max_us")),
                ms(f(b, "all_p50_us")),
                ms(f(b, "all_p99_us")),
                if lost_n == 0 {
                    "nothing lost".to_string()
                } else {
                    format!(
                        "**{lost_n} lost** ({:.2}% of {})",
                        lost_n as f64 * 100.0 / (f(b, "msgs") * f(b, "connected")).max(1.0),
                        (f(b, "msgs") * f(b, "connected")) as u64
                    )
                },
                fmt(f(b, "drain_secs"), 1),
                fmt(f(b, "server_cpu_us_per_delivery"), 2),
                fmt(f(b, "server_user_us_per_delivery"), 2),
                fmt(f(b, "server_sys_us_per_delivery"), 2),
                fmt(f(b, "server_cores"), 2),
                fmt(f(b, "client_cpu_us_per_delivery"), 2),
                fmt(f(b, "client_user_us_per_delivery"), 2),
                fmt(f(b, "client_sys_us_per_delivery"), 2),
                fmt(f(b, "client_cores"), 2),
                b["client_cpus"],
            )?;
        }
        writeln!(w)?;
        let pinned = meta.get("pinned").and_then(Value::as_bool) == Some(true);
        for t in &d.order {
            let Some(b) = d.bigroom.get(t) else { continue };
            let offered = f(b, "rate") * f(b, "connected");
            let (sc, cc, cn) = (
                f(b, "server_cores"),
                f(b, "client_cores"),
                f(b, "client_cpus"),
            );
            let mut busy = Vec::new();
            if pinned && sc >= 0.9 {
                busy.push(format!(
                    "the server used {} cores on its one pinned CPU",
                    fmt(sc, 2)
                ));
            }
            if cc >= 0.9 * cn {
                busy.push(format!(
                    "the load generator used {} cores of its {}",
                    fmt(cc, 2),
                    fmt(cn, 0)
                ));
            }
            if !busy.is_empty() {
                writeln!(
                    w,
                    "- `{t}`: {} deliveries/s offered; {}: saturated, so its latencies measure a growing backlog.",
                    fmt(offered, 0),
                    busy.join(", and ")
                )?;
            }
        }
        writeln!(w)?;
    }

    if let Some(n) = &a.notes
        && let Ok(t) = std::fs::read_to_string(n)
        && !t.trim().is_empty()
    {
        writeln!(w, "## Notes from the run\n\n{}\n", t.trim())?;
    }
    if let Ok(t) = std::fs::read_to_string(&a.plugins) {
        writeln!(w, "## Plugin runtime\n\n{}\n", t.trim())?;
    }
    writeln!(w, "## Profile\n")?;
    match std::fs::read_to_string(&a.profile) {
        Ok(t) => writeln!(w, "{}", t.trim())?,
        Err(_) => writeln!(
            w,
            "(no profile recorded: `{}` is missing)",
            a.profile.display()
        )?,
    }
    writeln!(w)?;
    writeln!(w, "Raw results of this run: `{}`.", a.results.display())?;

    if let Some(p) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&a.out, md)?;
    if let Err(e) = chart(&d, &a.chart) {
        eprintln!("[report] chart not drawn: {e:#}");
    }
    eprintln!(
        "[report] wrote {} and {}",
        a.out.display(),
        a.chart.display()
    );
    Ok(())
}

fn rel_link(md: &Path, chart: &Path) -> String {
    let base = md.parent().filter(|p| !p.as_os_str().is_empty());
    match base.and_then(|b| chart.strip_prefix(b).ok()) {
        Some(r) => r.display().to_string(),
        None => chart.display().to_string(),
    }
}

fn register_font() -> Result<()> {
    const PATHS: &[&str] = &[
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    let path = PATHS
        .iter()
        .find(|p| Path::new(p).exists())
        .context("no TrueType font found (apt-get install fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    for style in [FontStyle::Normal, FontStyle::Bold] {
        plotters::style::register_font("sans-serif", style, bytes)
            .map_err(|_| anyhow::anyhow!("bad font {path}"))?;
    }
    Ok(())
}

/// Three bar panels: server CPU per delivery and p99 latency at 1x and 2x, RSS per idle connection.
fn chart(d: &Data, path: &Path) -> Result<()> {
    register_font()?;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    let svg = path.extension().and_then(|e| e.to_str()) == Some("svg");
    if svg {
        let root = SVGBackend::new(path, (1500, 520)).into_drawing_area();
        draw(d, root)
    } else {
        let root = BitMapBackend::new(path, (1500, 520)).into_drawing_area();
        draw(d, root)
    }
}

fn draw<DB: DrawingBackend>(d: &Data, root: DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let title = format!(
        "hookwire vs Node peer (socket.io 4 + redis-adapter), one run; 1x = Node's highest sustainable rate ({} msg/s)",
        fmt(f(&d.meta, "node_rate"), 0)
    );
    let root = root
        .titled(&title, ("sans-serif", 20))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let panels = root.split_evenly((1, 3));
    let targets: Vec<String> = d.order.clone();
    let colors = [
        RGBColor(214, 96, 77),
        RGBColor(67, 147, 195),
        RGBColor(33, 102, 172),
        RGBColor(90, 174, 97),
        RGBColor(153, 112, 171),
    ];

    // panel 1: CPU per delivery at 1x and 2x
    let series1: Vec<Vec<f64>> = targets
        .iter()
        .map(|t| {
            vec![
                med(d.fanout.get(t), "1x", "cpu_us_per_delivery"),
                med(d.fanout.get(t), "2x", "cpu_us_per_delivery"),
            ]
        })
        .collect();
    bars(
        &panels[0],
        "server CPU µs per delivery at 1x and 2x (lower is better)",
        &targets,
        &series1,
        &["1x", "2x"],
        &colors,
        Scale::Linear,
    )?;
    // panel 2: p99 ms at 1x and 2x
    let series2: Vec<Vec<f64>> = targets
        .iter()
        .map(|t| {
            vec![
                med(d.fanout.get(t), "1x", "p99_us") / 1000.0,
                med(d.fanout.get(t), "2x", "p99_us") / 1000.0,
            ]
        })
        .collect();
    bars(
        &panels[1],
        "p99 latency ms at 1x and 2x",
        &targets,
        &series2,
        &["1x", "2x"],
        &colors,
        // Log scale: Node's seconds at 2x would flatten every other bar.
        Scale::Log,
    )?;
    // panel 3: RSS per idle conn KiB
    let series3: Vec<Vec<f64>> = targets
        .iter()
        .map(|t| {
            vec![
                d.connect
                    .get(t)
                    .map(|c| f(c, "rss_per_conn_bytes") / 1024.0)
                    .unwrap_or(f64::NAN),
            ]
        })
        .collect();
    bars(
        &panels[2],
        "RSS KiB per idle connection",
        &targets,
        &series3,
        &["idle"],
        &colors,
        Scale::Linear,
    )?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Scale {
    Linear,
    Log,
}

/// Grouped bars, one group per target. On a log scale the bars are drawn in
/// log10 space from one decade below the smallest value, and the axis labels
/// are turned back into values.
#[allow(clippy::too_many_arguments)]
fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    targets: &[String],
    series: &[Vec<f64>],
    series_names: &[&str],
    colors: &[RGBColor],
    scale: Scale,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e:?}");
    let values = || {
        series
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let (y0, ymax, to_y): (f64, f64, fn(f64) -> f64) = match scale {
        Scale::Linear => (0.0, values().fold(0.0f64, f64::max).max(1e-3) * 1.15, |v| v),
        Scale::Log => {
            let lo = values().fold(f64::INFINITY, f64::min);
            let hi = values().fold(0.0f64, f64::max);
            let (lo, hi) = if hi > 0.0 { (lo, hi) } else { (1.0, 10.0) };
            (lo.log10().floor() - 1.0, hi.log10() + 0.4, f64::log10)
        }
    };
    let n = targets.len().max(1);
    let k = series_names.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..n as f64, y0..ymax)
        .map_err(e)?;
    let names: Vec<String> = targets.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 12))
        .y_label_style(("sans-serif", 12))
        // On a log scale, one label per decade.
        .y_labels(match scale {
            Scale::Linear => 10,
            Scale::Log => (ymax - y0.ceil()).floor() as usize + 1,
        })
        .y_label_formatter(&|y| match scale {
            Scale::Linear => short(*y),
            Scale::Log => short(10f64.powf(*y)),
        })
        .draw()
        .map_err(e)?;
    let bw = 0.8 / k as f64;
    for (i, vals) in series.iter().enumerate() {
        for (j, &v) in vals.iter().enumerate() {
            if !v.is_finite() || (scale == Scale::Log && v <= 0.0) {
                continue;
            }
            let y = to_y(v);
            let x0 = i as f64 + 0.1 + j as f64 * bw;
            let base = colors[i % colors.len()];
            let color = if j == 0 {
                base
            } else {
                RGBColor(base.0 / 2 + 60, base.1 / 2 + 60, base.2 / 2 + 60)
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, y0), (x0 + bw * 0.95, y)],
                    color.filled(),
                )))
                .map_err(e)?;
            let label = if k > 1 {
                format!("{} {}", series_names[j], short(v))
            } else {
                short(v)
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (x0, y + (ymax - y0) * 0.02),
                    ("sans-serif", 12),
                )))
                .map_err(e)?;
        }
    }
    Ok(())
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
