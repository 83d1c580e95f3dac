//! `authenticate` attempts per uid in a fixed 60 s window (30 per minute by
//! default). Every attempt counts, successful or not.
//!
//! With `--redis` the count is cluster-wide (one `INCR` per attempt), so
//! spreading attempts over nodes does not multiply the budget; while Redis
//! does not answer, each node counts on its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::cluster::hub::RedisHub;

const WINDOW_SECS: u64 = 60;

#[derive(Default)]
pub struct AuthLimiter {
    windows: Mutex<HashMap<(String, String), (u64, u32)>>,
    shared: Option<Arc<RedisHub>>,
}

impl AuthLimiter {
    pub fn new(shared: Option<Arc<RedisHub>>) -> AuthLimiter {
        AuthLimiter {
            windows: Mutex::default(),
            shared,
        }
    }

    /// Counts an attempt; false when it is over `per_minute`.
    pub async fn allow(&self, tenant: &str, key: &str, per_minute: u32) -> bool {
        let window = crate::clock::now_ms() / 1000 / WINDOW_SECS;
        if let Some(hub) = &self.shared {
            let k = crate::store::redis_keys::auth_attempts(tenant, window, key);
            let mut pipe = redis::pipe();
            pipe.incr(&k, 1u32)
                .expire(&k, (WINDOW_SECS * 2) as i64)
                .ignore();
            let mut conn = hub.conn();
            let q = pipe.query_async::<(u32,)>(&mut conn);
            match tokio::time::timeout(Duration::from_secs(1), q).await {
                Ok(Ok((n,))) => return n <= per_minute,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "shared auth rate limit unavailable; counting on this node")
                }
                Err(_) => {
                    tracing::debug!("shared auth rate limit timed out; counting on this node")
                }
            }
        }
        let mut map = self.windows.lock();
        let e = map
            .entry((tenant.to_string(), key.to_string()))
            .or_insert((window, 0));
        if e.0 != window {
            *e = (window, 0);
        }
        e.1 += 1;
        e.1 <= per_minute
    }

    /// Drops finished windows (housekeeping).
    pub fn sweep(&self) {
        let window = crate::clock::now_ms() / 1000 / WINDOW_SECS;
        self.windows.lock().retain(|_, (w, _)| *w == window);
    }
}
