//! `rate-limit`: a token bucket per user for `msg`.
//!
//! Config: `{"rate_per_sec": 5, "burst": 10}` (these are the defaults). Each
//! uid has a bucket of `burst` tokens refilled at `rate_per_sec`; a message
//! takes one token, and with none left it is dropped with the reason
//! `"rate limited"`.
//!
//! Buckets live in the tenant's key-value store, so every node of a cluster
//! shares them, and expire once they would be full again, so idle users cost
//! nothing. The read-modify-write is not atomic: two messages of one user
//! handled at the same instant on two nodes may both take the last token.
//! The limit is a guard against floods, not an exact quota.

use std::time::Duration;

use hookwire_guest::{Context, MsgVerdict, Plugin, RawMsgEvent, kv, log};
use serde::{Deserialize, Serialize};

/// The plugin config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Tokens added per second.
    pub rate_per_sec: f64,
    /// Bucket size: the most messages sent in one burst.
    pub burst: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rate_per_sec: 5.0,
            burst: 10.0,
        }
    }
}

impl Config {
    /// Why this config cannot work, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            Some("rate_per_sec must be a positive number")
        } else if !(self.burst.is_finite() && self.burst >= 1.0) {
            Some("burst must be at least 1")
        } else {
            None
        }
    }

    /// How long until an emptied bucket is full again: after that, a missing
    /// bucket and a full one are the same, so the key can expire.
    pub fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(self.burst / self.rate_per_sec) + Duration::from_secs(1)
    }
}

/// A user's bucket as stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tokens left at `at_ms`.
    pub tokens: f64,
    /// When `tokens` was computed, unix ms.
    pub at_ms: u64,
}

/// Takes one token from `bucket` (a missing one is full) at `now_ms`;
/// returns whether a token was available and the bucket to store.
pub fn take(cfg: &Config, bucket: Option<Bucket>, now_ms: u64) -> (bool, Bucket) {
    let b = bucket.unwrap_or(Bucket {
        tokens: cfg.burst,
        at_ms: now_ms,
    });
    // A clock that went backwards (another node's) refills nothing.
    let elapsed = now_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
    let tokens = (b.tokens + elapsed * cfg.rate_per_sec).min(cfg.burst);
    let at_ms = now_ms.max(b.at_ms);
    if tokens >= 1.0 {
        (
            true,
            Bucket {
                tokens: tokens - 1.0,
                at_ms,
            },
        )
    } else {
        (false, Bucket { tokens, at_ms })
    }
}

/// The reason a limited sender sees.
pub const REASON: &str = "rate limited";

/// The plugin.
pub struct RateLimit;

#[hookwire_guest::plugin]
impl Plugin for RateLimit {
    // The raw hook: the message itself does not matter, so it is never
    // parsed.
    fn on_raw_msg(ctx: &Context, _ev: RawMsgEvent) -> MsgVerdict {
        let cfg = match hookwire_guest::config_cached::<Config>() {
            Ok(c) => c,
            Err(e) => return misconfigured(&e.to_string()),
        };
        if let Some(p) = cfg.problem() {
            return misconfigured(p);
        }
        // Messages come from authenticated sockets; the socket id is a
        // fallback so that a missing uid is limited too, not exempt.
        let who = ctx.uid.as_deref().or(ctx.sid.as_deref()).unwrap_or("-");
        let key = format!("bucket:{who}");
        // An unreadable entry (e.g. from an older version) counts as full.
        let stored = kv::get_json::<Bucket>(&key).unwrap_or(None);
        let (ok, bucket) = take(&cfg, stored, hookwire_guest::now_ms());
        if let Err(e) = kv::set_json(&key, &bucket, Some(cfg.refill_time())) {
            log::warn(format!("rate-limit: cannot store bucket: {e}"));
        }
        if ok {
            MsgVerdict::Pass
        } else {
            MsgVerdict::Drop(REASON.into())
        }
    }
}

fn misconfigured(why: &str) -> MsgVerdict {
    log::error(format!("rate-limit: {why}"));
    MsgVerdict::Drop(format!("rate-limit is misconfigured: {why}"))
}

#[cfg(test)]
mod tests {
    use hookwire_guest::serde_json::json;
    use hookwire_guest::{Hooks, describe, testing};

    use super::*;

    const T0: u64 = 1_000_000;

    #[test]
    fn burst_then_refill() {
        let cfg = Config {
            rate_per_sec: 5.0,
            burst: 10.0,
        };
        let mut b = None;
        for i in 0..10 {
            let (ok, nb) = take(&cfg, b, T0);
            assert!(ok, "message {i} of the burst");
            b = Some(nb);
        }
        let (ok, nb) = take(&cfg, b, T0);
        assert!(!ok);
        // 5 per second: one token every 200 ms.
        let (ok, nb) = take(&cfg, Some(nb), T0 + 199);
        assert!(!ok);
        let (ok, nb) = take(&cfg, Some(nb), T0 + 200);
        assert!(ok);
        // Never more than `burst`, however long idle.
        let (_, nb) = take(&cfg, Some(nb), T0 + 3_600_000);
        assert_eq!(nb.tokens, 9.0);
    }

    #[test]
    fn clock_going_back_refills_nothing() {
        let cfg = Config {
            rate_per_sec: 1.0,
            burst: 1.0,
        };
        let (_, b) = take(&cfg, None, T0);
        let (ok, b2) = take(&cfg, Some(b), T0 - 10_000);
        assert!(!ok);
        assert_eq!(b2.at_ms, T0);
    }

    #[test]
    fn config_checks() {
        assert_eq!(Config::default().problem(), None);
        assert!(
            Config {
                rate_per_sec: 0.0,
                burst: 1.0
            }
            .problem()
            .is_some()
        );
        assert!(
            Config {
                rate_per_sec: 1.0,
                burst: 0.5
            }
            .problem()
            .is_some()
        );
        assert_eq!(
            Config {
                rate_per_sec: 5.0,
                burst: 10.0
            }
            .refill_time(),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn hook_limits_per_uid_through_kv() {
        testing::set_config(json!({"rate_per_sec": 1, "burst": 2}));
        let ctx = |uid: &str| Context {
            tenant: "t".into(),
            uid: Some(uid.into()),
            ..Default::default()
        };
        let ev = || RawMsgEvent {
            room: "r".into(),
            msg: json!({"data": 1}).to_string(),
        };
        assert_eq!(RateLimit::on_raw_msg(&ctx("a"), ev()), MsgVerdict::Pass);
        assert_eq!(RateLimit::on_raw_msg(&ctx("a"), ev()), MsgVerdict::Pass);
        assert_eq!(
            RateLimit::on_raw_msg(&ctx("a"), ev()),
            MsgVerdict::Drop(REASON.into())
        );
        // Another user has a bucket of their own.
        assert_eq!(RateLimit::on_raw_msg(&ctx("b"), ev()), MsgVerdict::Pass);
        testing::advance_ms(1000);
        assert_eq!(RateLimit::on_raw_msg(&ctx("a"), ev()), MsgVerdict::Pass);
        assert_eq!(
            RateLimit::on_raw_msg(&ctx("a"), ev()),
            MsgVerdict::Drop(REASON.into())
        );
        // The key expires once the bucket would be full again.
        testing::advance_ms(3_001);
        assert_eq!(kv::get("bucket:a"), None);
        assert_eq!(RateLimit::on_raw_msg(&ctx("a"), ev()), MsgVerdict::Pass);
    }

    #[test]
    fn bad_config_drops_with_reason() {
        testing::set_config(json!({"rate_per_sec": -1}));
        let v = RateLimit::on_raw_msg(&Context::default(), RawMsgEvent::default());
        assert!(matches!(v, MsgVerdict::Drop(r) if r.contains("rate_per_sec")));
        assert_eq!(describe::<RateLimit>().hooks, Hooks::ON_MSG);
    }
}
