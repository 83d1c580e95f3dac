//! Server-side measurements read from /proc: CPU time (utime+stime) and VmRSS.

use anyhow::{Context, Result};

/// Clock ticks per second for /proc/<pid>/stat times.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime+stime of `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &s[s.rfind(')').context("bad stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')' : state(3) ppid(4) ... utime is field 14, stime 15 (1-based) => idx 11, 12
    let ut: u64 = f.get(11).context("utime")?.parse()?;
    let st: u64 = f.get(12).context("stime")?.parse()?;
    Ok((ut + st) as f64 / clk_tck())
}

/// Sum of cpu_seconds over several pids (a cluster); missing pids count 0.
pub fn cpu_seconds_all(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_seconds(p).unwrap_or(0.0)).sum()
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            return Ok(v.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    anyhow::bail!("no VmRSS for {pid}")
}

pub fn rss_kib_all(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| rss_kib(p).unwrap_or(0)).sum()
}

/// Number of open fds of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_stat() {
        let me = std::process::id();
        assert!(super::cpu_seconds(me).unwrap() >= 0.0);
        assert!(super::rss_kib(me).unwrap() > 0);
    }
}
