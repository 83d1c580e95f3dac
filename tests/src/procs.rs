//! Real backing services for tests: `redis-server` and SecantusDB (a MongoDB
//! wire-protocol server from PyPI), each on a free loopback port.
//!
//! Every server runs under a tiny `sh` watchdog that holds the read end of a
//! pipe from the test process: when the test process exits for any reason
//! (even `kill -9`), the pipe closes and the watchdog kills the server, so no
//! test leaves a server behind. Dropping a [`ServiceProc`] stops it at once.
//!
//! Nothing is skipped: a missing binary is an error that says how to install
//! it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// How long a server may take to answer after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `"$@"` in the background with its output in `$HW_LOG`, prints its pid,
/// then waits for stdin to close (the test process dropped it or died) and
/// kills it.
const WATCHDOG: &str = r#""$@" >>"$HW_LOG" 2>&1 &
pid=$!
echo "$pid"
cat >/dev/null
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;

/// A free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr()?.port())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Secantus,
}

/// One running server process (and its watchdog).
pub struct ServiceProc {
    kind: Kind,
    port: u16,
    /// Data directory; kept across [`ServiceProc::restart`].
    dir: tempfile::TempDir,
    log: PathBuf,
    args: Vec<String>,
    /// Pid of the server itself (not the watchdog).
    pid: u32,
    watchdog: Option<(Child, ChildStdin)>,
}

impl ServiceProc {
    /// Starts `redis-server` with the durability the Redis store documents:
    /// AOF on, fsync on every write, no RDB snapshots.
    ///
    /// Binary: `$HOOKWIRE_REDIS_SERVER` or `redis-server` on `PATH`.
    pub fn redis() -> Result<Self> {
        let bin = std::env::var("HOOKWIRE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        if !on_path(&bin) {
            bail!(
                "`{bin}` not found: install it with `apt-get install -y redis-server` \
                 (or set HOOKWIRE_REDIS_SERVER to its path)"
            );
        }
        let dir = tempfile::Builder::new().prefix("hw-redis-").tempdir()?;
        let port = free_port()?;
        let d = dir.path().display().to_string();
        let args: Vec<String> = vec![
            bin,
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            d,
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "always".into(),
            "--save".into(),
            "".into(),
            "--maxmemory-policy".into(),
            "noeviction".into(),
            "--protected-mode".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
        ];
        Self::launch(Kind::Redis, port, dir, args)
    }

    /// Starts SecantusDB with its data in a temporary directory (so a
    /// [`restart`](Self::restart) finds its data again) and fsync on commit.
    ///
    /// Interpreter: `$HOOKWIRE_PYTHON` or `python3`; the module comes from
    /// `pip install secantusdb`.
    pub fn secantus() -> Result<Self> {
        let py = std::env::var("HOOKWIRE_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&py)
            .args(["-c", "import secantus"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match probe {
            Ok(s) if s.success() => {}
            Ok(_) => bail!(
                "python module `secantus` not found: install it with `pip install secantusdb`"
            ),
            Err(e) => {
                bail!("cannot run `{py}` ({e}): install Python 3 and then `pip install secantusdb`")
            }
        }
        let dir = tempfile::Builder::new().prefix("hw-secantus-").tempdir()?;
        let port = free_port()?;
        let data = dir.path().join("data").display().to_string();
        let args: Vec<String> = vec![
            py,
            "-m".into(),
            "secantus".into(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--storage-path".into(),
            data,
            "--sync-on-commit".into(),
            "--log-level".into(),
            "WARNING".into(),
        ];
        Self::launch(Kind::Secantus, port, dir, args)
    }

    fn launch(kind: Kind, port: u16, dir: tempfile::TempDir, args: Vec<String>) -> Result<Self> {
        let log = dir.path().join(match kind {
            Kind::Redis => "redis.log",
            Kind::Secantus => "secantus.log",
        });
        let mut p = ServiceProc {
            kind,
            port,
            dir,
            log,
            args,
            pid: 0,
            watchdog: None,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .args(&self.args)
            .env("HW_LOG", &self.log)
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the service watchdog (sh)")?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("watchdog stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("watchdog stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the server pid")?;
        self.pid = line
            .trim()
            .parse()
            .with_context(|| format!("server pid from watchdog: {line:?}"))?;
        self.watchdog = Some((child, stdin));
        self.wait_ready().with_context(|| {
            format!(
                "{:?} on port {} did not come up; log:\n{}",
                self.kind,
                self.port,
                self.log_tail()
            )
        })
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.alive() {
                bail!("the server exited");
            }
            let ok = match self.kind {
                Kind::Redis => redis_pong(self.port),
                Kind::Secantus => TcpStream::connect_timeout(
                    &([127, 0, 0, 1], self.port).into(),
                    Duration::from_millis(200),
                )
                .is_ok(),
            };
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no answer within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:P` or `mongodb://127.0.0.1:P/?directConnection=true`.
    /// SecantusDB advertises itself as a one-node replica set; connecting
    /// directly avoids depending on the host name it advertises.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Secantus => format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port),
        }
    }

    /// A MongoDB URL naming database `db` (tests use one database each).
    pub fn mongo_url(&self, db: &str) -> String {
        format!(
            "mongodb://127.0.0.1:{}/{db}?directConnection=true",
            self.port
        )
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is still running.
    pub fn alive(&self) -> bool {
        self.watchdog.is_some()
            && Path::new(&format!("/proc/{}", self.pid)).exists()
            && !is_zombie(self.pid)
    }

    /// `kill -9` the server (a crash: no shutdown, no final fsync) and wait
    /// until it is gone. The data directory stays for [`restart`](Self::restart).
    pub fn kill9(&mut self) -> Result<()> {
        self.signal("KILL")?;
        self.reap()
    }

    /// SIGTERM (graceful shutdown) and wait until it is gone.
    pub fn terminate(&mut self) -> Result<()> {
        self.signal("TERM")?;
        self.reap()
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) -> Result<()> {
        if self.alive() {
            self.kill9()?;
        }
        self.spawn()
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .context("running kill")?;
        if !st.success() {
            bail!("kill -{sig} {} failed", self.pid);
        }
        Ok(())
    }

    /// Waits for the server to exit, then closes the watchdog.
    fn reap(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.alive() {
            if Instant::now() > deadline {
                bail!("{:?} (pid {}) did not exit", self.kind, self.pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
        Ok(())
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ServiceProc {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            // Closing stdin makes the watchdog kill -9 the server and exit.
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Whether `bin` is an executable path or found on `PATH`.
fn on_path(bin: &str) -> bool {
    if bin.contains('/') {
        return Path::new(bin).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// `PING` answered with `+PONG` (not `-LOADING`: the dataset is in memory).
fn redis_pong(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
