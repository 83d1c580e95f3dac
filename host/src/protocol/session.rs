//! Per-socket state. One [`Session`] per connected socket, shared by that
//! socket's handlers (captured in their closures, never global).
//!
//! A server holds mostly idle sockets, so a session keeps only what an idle
//! socket needs: the tenant's names are shared with its namespace, the uid
//! with presence, and the event queue ([`worker::Queue`]) holds no buffer
//! and no task while nothing is waiting.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::adapter::Io;
use parking_lot::Mutex;
use serde_json::Value;
use socketioxide::socket::Sid;
use tokio::task::{AbortHandle, JoinHandle};

use super::worker;
use crate::policy::HookContext;
use crate::tenant::Tenant;

#[derive(Debug, Clone)]
pub struct JoinedRoom {
    pub name: Box<str>,
    pub dummy: bool,
}

/// A `sync` that stopped inside the update values (see `sync_cursor`).
#[derive(Debug)]
pub struct SyncCursor {
    pub room: Box<str>,
    pub offset: u64,
    pub epoch: u64,
    /// msgId of the last update value sent.
    pub after: String,
}

#[derive(Debug, Default)]
pub struct SessionState {
    /// Shared with this socket's presence entries.
    pub uid: Option<Arc<str>>,
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
    /// Where this socket's last `sync` stopped inside the room's update
    /// values: its next `sync` from the same offset continues there (what a
    /// client does when it pages with `offset` only).
    pub sync_cursor: Option<Box<SyncCursor>>,
    /// What the `authenticate` hook attached to the socket; most sockets
    /// have none, and then it takes no allocation.
    pub claims: Option<Box<Value>>,
    /// The auth deadline until authentication, then the join deadline until
    /// the first join: cancelled once it can no longer fire, so an idle
    /// socket does not keep a sleeping task.
    deadline: Option<AbortHandle>,
}

pub struct Session {
    pub sid: Sid,
    pub tenant: Arc<Tenant>,
    /// The tenant's name, shared by every socket of its namespace.
    pub tenant_name: Arc<str>,
    /// Namespace path of the tenant, shared like `tenant_name`.
    pub ns: Arc<str>,
    /// `deviceId` handshake query parameter.
    pub device: Option<Box<str>>,
    pub state: Mutex<SessionState>,
    /// Events waiting for this socket's worker.
    pub queue: Mutex<worker::Queue>,
}

impl Session {
    pub fn new(
        sid: Sid,
        tenant: Arc<Tenant>,
        tenant_name: Arc<str>,
        ns: Arc<str>,
        device: Option<Box<str>>,
    ) -> Session {
        Session {
            sid,
            tenant,
            tenant_name,
            ns,
            device,
            state: Mutex::new(SessionState::default()),
            queue: Mutex::new(worker::Queue::default()),
        }
    }

    pub fn uid(&self) -> Option<Arc<str>> {
        self.state.lock().uid.clone()
    }

    pub fn hook_context(&self) -> HookContext {
        HookContext {
            tenant: self.tenant_name.to_string(),
            sid: Some(self.sid.to_string()),
            uid: self.uid().map(|u| u.to_string()),
            device: self.device.as_deref().map(str::to_string),
        }
    }

    /// The device queue this socket reads: its `deviceId`, or the per-user
    /// queue `""` when it gave none.
    pub fn device_key(&self) -> &str {
        self.device.as_deref().unwrap_or("")
    }

    /// The room a `msg`/`sync` without `roomId` refers to: the most recently
    /// joined one.
    pub fn current_room(&self, requested: Option<&str>) -> Option<JoinedRoom> {
        let st = self.state.lock();
        match requested {
            Some(r) => st.rooms.iter().rev().find(|j| &*j.name == r).cloned(),
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
            .map(|r| r.name.to_string())
            .collect()
    }

    /// Makes `task` the socket's deadline, in place of any earlier one.
    pub fn set_deadline(&self, task: JoinHandle<()>) {
        if let Some(old) = self.state.lock().deadline.replace(task.abort_handle()) {
            old.abort();
        }
    }

    /// The current deadline can no longer fire (authenticated, joined, or
    /// disconnected): its task ends now rather than when it wakes.
    pub fn cancel_deadline(&self) {
        if let Some(d) = self.state.lock().deadline.take() {
            d.abort();
        }
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
