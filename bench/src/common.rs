//! Arguments and helpers shared by the scenarios.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server address (repeatable for a cluster).
    #[arg(long = "server", default_value = "127.0.0.1:3000")]
    pub servers: Vec<SocketAddr>,
    /// Label of the system under test (e.g. hookwire, node).
    #[arg(long, default_value = "server")]
    pub target: String,
    /// Pid(s) of the server process(es) whose CPU/RSS is measured (comma separated).
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Pid(s) of helper processes (e.g. redis-server) whose CPU is reported separately.
    #[arg(long = "aux-pid", value_delimiter = ',')]
    pub aux_pids: Vec<u32>,
    /// Append the JSON result as one line to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Per-step timeout in seconds (connect, auth, join, replies).
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Prefix of uids and room ids (default: random per run).
    #[arg(long)]
    pub run_id: Option<String>,
}

impl Common {
    pub fn run_id(&self) -> String {
        self.run_id.clone().unwrap_or_else(|| {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            format!(
                "b{:x}",
                (n ^ ((std::process::id() as u64) << 32)) & 0xffff_ffff
            )
        })
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn write_result<T: Serialize>(c: &Common, r: &T) -> Result<()> {
    let line = serde_json::to_string(r)?;
    if let Some(p) = &c.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        writeln!(f, "{line}")?;
    }
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(super::median(vec![]), 0.0);
    }
}
