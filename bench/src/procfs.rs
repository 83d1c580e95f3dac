//! Server-side measurements read from /proc: CPU time (utime and stime), VmRSS,
//! VmHWM, open files and their limit.

use anyhow::{Context, Result};

/// Clock ticks per second for /proc/<pid>/stat times.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU time of a process in seconds: user and system (kernel) time, all threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: f64,
    pub sys: f64,
}

impl Cpu {
    pub fn total(&self) -> f64 {
        self.user + self.sys
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            user: self.user - o.user,
            sys: self.sys - o.sys,
        }
    }
}

/// utime and stime of `pid` (fields 14 and 15 of /proc/<pid>/stat).
pub fn cpu(pid: u32) -> Result<Cpu> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &s[s.rfind(')').context("bad stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')' : state(3) ppid(4) ... utime is field 14, stime 15 (1-based) => idx 11, 12
    let ut: u64 = f.get(11).context("utime")?.parse()?;
    let st: u64 = f.get(12).context("stime")?.parse()?;
    let t = clk_tck();
    Ok(Cpu {
        user: ut as f64 / t,
        sys: st as f64 / t,
    })
}

/// utime+stime of `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    cpu(pid).map(|c| c.total())
}

/// Sum of `cpu` over several pids (a cluster); missing pids count 0.
pub fn cpu_all(pids: &[u32]) -> Cpu {
    pids.iter().fold(Cpu::default(), |a, &p| {
        let c = cpu(p).unwrap_or_default();
        Cpu {
            user: a.user + c.user,
            sys: a.sys + c.sys,
        }
    })
}

/// Sum of cpu_seconds over several pids (a cluster); missing pids count 0.
pub fn cpu_seconds_all(pids: &[u32]) -> f64 {
    cpu_all(pids).total()
}

fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix(key) {
            return Ok(v.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    anyhow::bail!("no {key} for {pid}")
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

pub fn rss_kib_all(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| rss_kib(p).unwrap_or(0)).sum()
}

/// VmHWM (peak resident set since start or since `reset_hwm`) of `pid` in KiB.
pub fn hwm_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Resets `pid`'s VmHWM to its current RSS (writes 5 to /proc/<pid>/clear_refs;
/// needs the same user or root).
pub fn reset_hwm(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("write /proc/{pid}/clear_refs"))
}

/// Number of open fds of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Soft limit on open files of `pid` ("Max open files" in /proc/<pid>/limits).
pub fn fd_limit(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft open-file limit to its hard limit; returns the soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_stat() {
        let me = std::process::id();
        let c = super::cpu(me).unwrap();
        assert!(c.user >= 0.0 && c.sys >= 0.0);
        assert!(super::rss_kib(me).unwrap() > 0);
        assert!(super::hwm_kib(me).unwrap() > 0);
        assert!(super::fd_limit(me).is_some());
    }
}
