//! How a session handler answers: a reply on its event (and the client's
//! callback), a refusal counted by its kind, a hook fault counted and
//! turned into fail-closed or fail-open as the tenant configured.

use serde_json::Value;

use super::Services;
use super::refusal::Refusal;
use super::session::Session;
use crate::cluster::adapter::{Ack, Socket};
use crate::error::HookError;
use crate::policy::Hook;
use crate::telemetry::Metrics;

/// Sends a reply on `event` and, when the client passed a callback, to it.
pub fn reply<T: serde::Serialize + ?Sized>(socket: &Socket, ack: Option<Ack>, event: &str, v: &T) {
    let _ = socket.emit(event, v);
    if let Some(a) = ack {
        let _ = a.send(v);
    }
}

/// Counts a refusal by its kind and returns its reply.
pub fn refused(state: &Services, sess: &Session, r: Refusal) -> Value {
    state.metrics.refuse(&sess.tenant_name, r.kind());
    r.into()
}

/// A hook failed: count it, then refuse (fail closed) or let the operation
/// through (fail open), as the tenant configured.
pub fn hook_failed(metrics: &Metrics, sess: &Session, hook: Hook, e: &HookError) -> bool {
    metrics.refuse(&sess.tenant_name, "plugin_fault");
    tracing::warn!(tenant = %sess.tenant_name, hook = hook.label(), error = %e, "plugin hook failed");
    sess.tenant.config().plugin_fail_open
}
