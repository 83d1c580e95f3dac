//! What one observed hook call did, beyond its verdict: the lines it
//! logged, the fuel it burnt and the memory its instance holds. A dry run (the admin API's playground,
//! `hookwire plugin run`) runs its call inside [`observe`]; the host's
//! `log` import and the call's end record into it. Live calls run outside
//! any probe and pay one empty task-local lookup per log line.

use std::cell::RefCell;
use std::future::Future;

use serde::Serialize;

/// One `log` call of the plugin.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// What [`observe`] saw.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Observed {
    pub logs: Vec<LogLine>,
    /// Fuel the call burnt, when the engine meters fuel.
    pub fuel_used: Option<u64>,
    /// Linear memory of the instance after the call, in bytes.
    pub memory_bytes: Option<u64>,
}

/// At most this many log lines are kept per observed call.
const MAX_LINES: usize = 200;

tokio::task_local! {
    static PROBE: RefCell<Observed>;
}

/// Runs `call` and returns what it logged and burnt beside its result.
pub async fn observe<T>(call: impl Future<Output = T>) -> (T, Observed) {
    PROBE
        .scope(RefCell::new(Observed::default()), async {
            let out = call.await;
            (out, PROBE.with(|p| p.take()))
        })
        .await
}

pub(crate) fn record_log(level: &'static str, message: &str) {
    let _ = PROBE.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.logs.len() < MAX_LINES {
            p.logs.push(LogLine {
                level,
                message: message.to_string(),
            });
        }
    });
}

pub(crate) fn record_memory(bytes: usize) {
    let _ = PROBE.try_with(|p| p.borrow_mut().memory_bytes = Some(bytes as u64));
}

pub(crate) fn record_fuel(used: u64) {
    let _ = PROBE.try_with(|p| p.borrow_mut().fuel_used = Some(used));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_only_inside_observe() {
        record_log("info", "outside");
        let ((), seen) = observe(async {
            record_log("warn", "inside");
            record_fuel(42);
        })
        .await;
        assert_eq!(
            seen,
            Observed {
                logs: vec![LogLine {
                    level: "warn",
                    message: "inside".into()
                }],
                fuel_used: Some(42),
                memory_bytes: None,
            }
        );
    }
}
