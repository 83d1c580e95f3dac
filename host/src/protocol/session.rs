//! Per-socket state. One [`Session`] per connected socket, shared by that
//! socket's handlers (captured in their closures, never global).

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::adapter::Io;
use parking_lot::Mutex;
use serde_json::Value;
use socketioxide::socket::Sid;

use crate::policy::HookContext;
use crate::tenant::Tenant;

#[derive(Debug, Clone)]
pub struct JoinedRoom {
    pub name: String,
    pub dummy: bool,
}

#[derive(Debug, Default)]
pub struct SessionState {
    pub uid: Option<String>,
    /// Rooms joined with `join`, oldest first.
    pub rooms: Vec<JoinedRoom>,
    /// Disconnected by a newer login of the same uid: announces nothing.
    pub kicked: bool,
    /// Kicked an older socket of its uid: does not announce its `remote_join`.
    pub kicker: bool,
    /// An `authenticate` is in progress (a second one waits its turn).
    pub authenticating: bool,
    /// A `join` is waiting for the tenant's `on_join` hook.
    pub joining: bool,
    /// The auth or join deadline passed: the socket is on its way out and
    /// later `authenticate`/`join` are refused, never answered twice.
    pub expired: bool,
    pub claims: Value,
}

pub struct Session {
    pub sid: Sid,
    pub tenant: Arc<Tenant>,
    pub tenant_name: String,
    /// Namespace path of the tenant.
    pub ns: String,
    /// `deviceId` handshake query parameter.
    pub device: Option<String>,
    /// Raw handshake query string.
    pub query: String,
    pub state: Mutex<SessionState>,
}

impl Session {
    pub fn uid(&self) -> Option<String> {
        self.state.lock().uid.clone()
    }

    pub fn hook_context(&self) -> HookContext {
        HookContext {
            tenant: self.tenant_name.clone(),
            sid: Some(self.sid.to_string()),
            uid: self.uid(),
            device: self.device.clone(),
        }
    }

    /// The device queue this socket reads: its `deviceId`, or the per-user
    /// queue `""` when it gave none.
    pub fn device_key(&self) -> String {
        self.device.clone().unwrap_or_default()
    }

    /// The room a `msg`/`sync` without `roomId` refers to: the most recently
    /// joined one.
    pub fn current_room(&self, requested: Option<&str>) -> Option<JoinedRoom> {
        let st = self.state.lock();
        match requested {
            Some(r) => st.rooms.iter().rev().find(|j| j.name == r).cloned(),
            None => st.rooms.last().cloned(),
        }
    }

    /// Rooms where this socket is visible (not dummy).
    pub fn visible_rooms(&self) -> Vec<String> {
        self.state
            .lock()
            .rooms
            .iter()
            .filter(|r| !r.dummy)
            .map(|r| r.name.clone())
            .collect()
    }
}

/// How long a socket told to go (kickout, a refused authenticate) stays
/// connected: a reply queued just before must reach the client on every
/// transport (a polling client needs one more round trip to fetch it).
pub const DISCONNECT_DELAY: Duration = Duration::from_millis(200);

/// Disconnects a socket after [`DISCONNECT_DELAY`].
pub fn disconnect_soon(io: &Io, ns: &str, sid: Sid) {
    let io = io.clone();
    let ns = ns.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(DISCONNECT_DELAY).await;
        if let Some(s) = io.of(&ns).and_then(|n| n.get_socket(sid)) {
            let _ = s.disconnect();
        }
    });
}
