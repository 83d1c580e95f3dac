//! socket.io side of hookwire: room sync (always-online), reliable pushes
//! (socket.io-webservice) and presence.

mod presence;

pub use presence::Presence;

use std::sync::Arc;

use crate::server::AppState;
use crate::tenant::Tenant;

/// Mounts the tenant's namespace on the socket.io server.
pub fn mount(_state: &AppState, _tenant: &Arc<Tenant>) {}

/// Background chores: forgetting expired devices.
pub fn spawn_housekeeping(_state: &AppState) {}
