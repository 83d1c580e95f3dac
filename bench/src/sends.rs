//! Counts the send calls a server makes on its TCP sockets during a window,
//! with `perf stat` on kernel tracepoints, attached to the server's pids.
//!
//! The primary count is the `sock:sock_send_length` tracepoint filtered to
//! TCP (`protocol == 6`): the kernel fires it once per `sendmsg` on a socket,
//! whatever the system call (`sendto`, `send`, `sendmsg`, `write` and `writev`
//! on a socket all end there), and never for writes to files, pipes or
//! eventfds. Next to it, the `sys_enter` tracepoints of `sendto`, `sendmsg`,
//! `write` and `writev` give the split by system call; those count every fd
//! (a `write` is also an eventfd wake-up or a log line).
//!
//! `/proc/<pid>/io`'s `syscw` is not usable for this: it counts `write` and
//! `writev` but not `sendto` or `sendmsg` (checked on this kernel), so it
//! would see the Node peer's sends (libuv writes with `write`/`writev`) and
//! miss hookwire's (Rust's `send` is the `sendto` system call).
//!
//! perf is started with its events disabled (`-D -1`) and enabled and
//! disabled through its control fifo, so the count covers exactly the window
//! between the two acknowledgements. Counting tracepoints costs the server a
//! little kernel time per event; callers run it in a window of its own, apart
//! from the windows whose CPU time and latency they report.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

const SOCK_EVENT: &str = "sock:sock_send_length";
const SYSCALLS: [(&str, &str); 4] = [
    ("sendto", "syscalls:sys_enter_sendto"),
    ("sendmsg", "syscalls:sys_enter_sendmsg"),
    ("write", "syscalls:sys_enter_write"),
    ("writev", "syscalls:sys_enter_writev"),
];

#[derive(Serialize, Clone, Debug, Default)]
pub struct SendCounts {
    /// "tcp-sock-sendmsg" (sock_send_length, TCP only) or "syscalls" (sum of
    /// the four system calls on any fd, when the sock tracepoint is missing)
    pub method: String,
    /// sends on TCP sockets (sock_send_length with protocol == 6)
    pub tcp_sends: Option<u64>,
    pub sendto: u64,
    pub sendmsg: u64,
    pub write: u64,
    pub writev: u64,
}

impl SendCounts {
    /// The send count used for "sends per delivery".
    pub fn sends(&self) -> u64 {
        self.tcp_sends
            .unwrap_or(self.sendto + self.sendmsg + self.write + self.writev)
    }
}

fn tracefs_has(event: &str) -> bool {
    let (sys, name) = event.split_once(':').unwrap_or(("", event));
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|root| Path::new(root).join(sys).join(name).exists())
}

/// Whether perf and the tracepoints are there; returns the method name.
pub fn available() -> Option<&'static str> {
    let perf = Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !perf {
        return None;
    }
    if tracefs_has(SOCK_EVENT) {
        Some("tcp-sock-sendmsg")
    } else if tracefs_has(SYSCALLS[0].1) {
        Some("syscalls")
    } else {
        None
    }
}

fn mkfifo(p: &Path) -> Result<()> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        bail!(
            "mkfifo {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn open_fifo(p: &Path) -> Result<File> {
    // O_RDWR: opening a fifo this way never blocks, whether perf has opened its end yet or not.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .with_context(|| format!("open {}", p.display()))
}

/// One perf process counting the given pids, events disabled until `enable`.
pub struct SendCounter {
    child: Child,
    ctl: File,
    ack: File,
    dir: PathBuf,
    method: &'static str,
}

impl SendCounter {
    pub fn start(pids: &[u32], method: &'static str) -> Result<Self> {
        anyhow::ensure!(!pids.is_empty(), "no server pid to count sends of");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hookwire-bench-perf-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let (ctl_p, ack_p) = (dir.join("ctl"), dir.join("ack"));
        mkfifo(&ctl_p)?;
        mkfifo(&ack_p)?;
        let ctl = open_fifo(&ctl_p)?;
        let ack = open_fifo(&ack_p)?;
        let mut cmd = Command::new("perf");
        cmd.arg("stat")
            .arg("-x,")
            .arg("--control")
            .arg(format!("fifo:{},{}", ctl_p.display(), ack_p.display()))
            .arg("-D")
            .arg("-1")
            .arg("-o")
            .arg(dir.join("out"));
        if method == "tcp-sock-sendmsg" {
            cmd.arg("-e")
                .arg(SOCK_EVENT)
                .arg("--filter")
                .arg("protocol == 6");
        }
        for (_, ev) in SYSCALLS {
            cmd.arg("-e").arg(ev);
        }
        cmd.arg("-p")
            .arg(
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("err"))?);
        let child = cmd.spawn().context("spawn perf stat")?;
        Ok(Self {
            child,
            ctl,
            ack,
            dir,
            method,
        })
    }

    fn command(&mut self, what: &str) -> Result<()> {
        self.ctl.write_all(format!("{what}\n").as_bytes())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        loop {
            let mut b = [0u8; 64];
            match self.ack.read(&mut b) {
                Ok(n) if n > 0 => {
                    got.extend_from_slice(&b[..n]);
                    if got.windows(3).any(|w| w == b"ack") {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(s) = self.child.try_wait()? {
                bail!("perf stat exited ({s}): {}", self.stderr());
            }
            if Instant::now() > deadline {
                bail!("perf stat did not acknowledge `{what}`: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("err"))
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect()
    }

    pub fn enable(&mut self) -> Result<()> {
        self.command("enable")
    }

    pub fn disable(&mut self) -> Result<()> {
        self.command("disable")
    }

    /// Stops perf and returns what it counted while enabled.
    pub fn finish(mut self) -> Result<SendCounts> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("perf stat did not stop");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = std::fs::read_to_string(self.dir.join("out")).unwrap_or_default();
        let mut c = SendCounts {
            method: self.method.to_string(),
            ..Default::default()
        };
        let mut seen = 0;
        for line in out.lines() {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 3 {
                continue;
            }
            let Ok(n) = f[0].trim().parse::<u64>() else {
                continue;
            };
            seen += 1;
            match f[2].trim() {
                SOCK_EVENT => c.tcp_sends = Some(n),
                ev => {
                    for (k, name) in SYSCALLS {
                        if ev == name {
                            match k {
                                "sendto" => c.sendto = n,
                                "sendmsg" => c.sendmsg = n,
                                "write" => c.write = n,
                                _ => c.writev = n,
                            }
                        }
                    }
                }
            }
        }
        if seen == 0 {
            bail!(
                "perf stat counted nothing: {} {}",
                out.chars().take(200).collect::<String>(),
                self.stderr()
            );
        }
        Ok(c)
    }
}

impl Drop for SendCounter {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends counted over one window, with the deliveries the clients counted in it.
#[derive(Serialize, Clone, Debug)]
pub struct SendWindow {
    pub secs: f64,
    pub deliveries: u64,
    pub sends_per_delivery: f64,
    #[serde(flatten)]
    pub counts: SendCounts,
}

/// Counts `pids`' sends for `secs` seconds; `delivered` reads the clients'
/// running delivery count.
pub async fn window(
    pids: &[u32],
    method: &'static str,
    secs: f64,
    delivered: impl Fn() -> u64,
) -> Result<SendWindow> {
    let mut c = tokio::task::block_in_place(|| -> Result<SendCounter> {
        let mut c = SendCounter::start(pids, method)?;
        c.enable()?;
        Ok(c)
    })?;
    let d0 = delivered();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let d1 = delivered();
    let secs = t.elapsed().as_secs_f64();
    let counts = tokio::task::block_in_place(move || -> Result<SendCounts> {
        c.disable()?;
        c.finish()
    })?;
    let deliveries = d1.saturating_sub(d0);
    Ok(SendWindow {
        secs,
        deliveries,
        sends_per_delivery: counts.sends() as f64 / deliveries.max(1) as f64,
        counts,
    })
}
