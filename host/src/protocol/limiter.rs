//! `authenticate` attempts per uid in a fixed 60 s window (always-online's
//! 30 per minute by default). Every attempt counts, successful or not.

use std::collections::HashMap;

use parking_lot::Mutex;

const WINDOW_SECS: u64 = 60;

#[derive(Default)]
pub struct AuthLimiter {
    windows: Mutex<HashMap<(String, String), (u64, u32)>>,
}

impl AuthLimiter {
    /// Counts an attempt; false when it is over `per_minute`.
    pub fn allow(&self, tenant: &str, key: &str, per_minute: u32) -> bool {
        let window = crate::server::now_ms() / 1000 / WINDOW_SECS;
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
        let window = crate::server::now_ms() / 1000 / WINDOW_SECS;
        self.windows.lock().retain(|_, (w, _)| *w == window);
    }
}
