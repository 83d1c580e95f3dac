//! Who is online on this node: authenticated sockets per uid and the visible
//! (non-dummy) members of each room. Feeds `remote_join`, kickout,
//! `room_users` and `stat`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use socketioxide::socket::Sid;

use super::session::Session;

#[derive(Default)]
struct TenantPresence {
    users: HashMap<String, HashMap<Sid, Arc<Session>>>,
    rooms: HashMap<String, HashMap<Sid, String>>,
    connections: usize,
}

#[derive(Default)]
pub struct Presence {
    tenants: Mutex<HashMap<String, TenantPresence>>,
}

impl Presence {
    fn with<R>(&self, tenant: &str, f: impl FnOnce(&mut TenantPresence) -> R) -> R {
        let mut map = self.tenants.lock();
        // Called for every relayed msg: no key allocation once the tenant is known.
        if let Some(t) = map.get_mut(tenant) {
            return f(t);
        }
        f(map.entry(tenant.to_string()).or_default())
    }

    /// Counts a new connection; refuses it when `limit` is reached.
    pub fn connect(&self, tenant: &str, limit: usize) -> bool {
        self.with(tenant, |t| {
            if t.connections >= limit {
                return false;
            }
            t.connections += 1;
            true
        })
    }

    pub fn disconnect(&self, tenant: &str) {
        self.with(tenant, |t| t.connections = t.connections.saturating_sub(1));
    }

    /// Marks `sid` as `uid`; returns the uid's other sessions on this node.
    pub fn user_online(&self, tenant: &str, uid: &str, session: Arc<Session>) -> Vec<Arc<Session>> {
        self.with(tenant, |t| {
            let socks = t.users.entry(uid.to_string()).or_default();
            let others = socks
                .values()
                .filter(|s| s.sid != session.sid)
                .cloned()
                .collect();
            socks.insert(session.sid, session);
            others
        })
    }

    pub fn user_offline(&self, tenant: &str, uid: &str, sid: Sid) {
        self.with(tenant, |t| {
            if let Some(socks) = t.users.get_mut(uid) {
                socks.remove(&sid);
                if socks.is_empty() {
                    t.users.remove(uid);
                }
            }
        });
    }

    /// Adds a visible member; returns the distinct uids already in the room
    /// (other than `uid`).
    pub fn join_room(&self, tenant: &str, room: &str, sid: Sid, uid: &str) -> Vec<String> {
        self.with(tenant, |t| {
            let members = t.rooms.entry(room.to_string()).or_default();
            let mut seen = HashSet::new();
            let others = members
                .values()
                .filter(|u| u.as_str() != uid && seen.insert(u.as_str()))
                .cloned()
                .collect();
            members.insert(sid, uid.to_string());
            others
        })
    }

    pub fn leave_room(&self, tenant: &str, room: &str, sid: Sid) {
        self.with(tenant, |t| {
            if let Some(m) = t.rooms.get_mut(room) {
                m.remove(&sid);
                if m.is_empty() {
                    t.rooms.remove(room);
                }
            }
        });
    }

    /// Distinct uids visible in the room, sorted.
    pub fn room_users(&self, tenant: &str, room: &str) -> Vec<String> {
        self.with(tenant, |t| {
            let mut v: Vec<String> = t
                .rooms
                .get(room)
                .map(|m| {
                    m.values()
                        .cloned()
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        })
    }

    /// Visible sockets in the room.
    pub fn room_size(&self, tenant: &str, room: &str) -> usize {
        self.with(tenant, |t| t.rooms.get(room).map_or(0, HashMap::len))
    }

    /// (online users, rooms with visible members, connections).
    pub fn stat(&self, tenant: &str) -> (usize, usize, usize) {
        self.with(tenant, |t| (t.users.len(), t.rooms.len(), t.connections))
    }

    /// Total rooms on this node, all tenants.
    pub fn total_rooms(&self) -> usize {
        self.tenants.lock().values().map(|t| t.rooms.len()).sum()
    }

    /// Every authenticated session of the tenant on this node.
    pub fn sessions(&self, tenant: &str) -> Vec<Arc<Session>> {
        self.with(tenant, |t| {
            t.users.values().flat_map(|m| m.values().cloned()).collect()
        })
    }

    /// This node's sessions of `uid`.
    pub fn user_sessions(&self, tenant: &str, uid: &str) -> Vec<Arc<Session>> {
        self.with(tenant, |t| {
            t.users
                .get(uid)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    pub fn forget_tenant(&self, tenant: &str) {
        self.tenants.lock().remove(tenant);
    }
}
