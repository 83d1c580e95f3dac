//! Who is online: authenticated sockets per uid and the visible (non-dummy)
//! members of each room. Feeds `remote_join`, kickout, `room_users` and
//! `stat`.
//!
//! This node's view is kept here; with `--redis` every change is mirrored
//! (in the same order, queued under the same lock) to a
//! [`PresenceMirror`], and the questions that concern the whole cluster are
//! answered from Redis, or from this node's view while Redis is away.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use socketioxide::socket::Sid;

use super::session::Session;
use crate::cluster::presence::{self as mirror, Entry, PresenceMirror};

#[derive(Default)]
struct TenantPresence {
    users: HashMap<String, HashMap<Sid, Arc<Session>>>,
    rooms: HashMap<String, HashMap<Sid, String>>,
    connections: usize,
}

#[derive(Default)]
pub struct Presence {
    tenants: Mutex<HashMap<String, TenantPresence>>,
    mirror: Option<PresenceMirror>,
}

impl Presence {
    pub fn new(mirror: Option<PresenceMirror>) -> Presence {
        Presence {
            tenants: Mutex::default(),
            mirror,
        }
    }

    fn with<R>(
        &self,
        tenant: &str,
        f: impl FnOnce(&mut TenantPresence, Option<&PresenceMirror>) -> R,
    ) -> R {
        let mut map = self.tenants.lock();
        // Called for every relayed msg: no key allocation once the tenant is known.
        if let Some(t) = map.get_mut(tenant) {
            return f(t, self.mirror.as_ref());
        }
        f(
            map.entry(tenant.to_string()).or_default(),
            self.mirror.as_ref(),
        )
    }

    /// Counts a new connection; refuses it when `limit` is reached.
    pub fn connect(&self, tenant: &str, limit: usize) -> bool {
        self.with(tenant, |t, m| {
            if t.connections >= limit {
                return false;
            }
            t.connections += 1;
            if let Some(m) = m {
                m.add(m.conns_entry(tenant, t.connections));
            }
            true
        })
    }

    pub fn disconnect(&self, tenant: &str) {
        self.with(tenant, |t, m| {
            t.connections = t.connections.saturating_sub(1);
            if let Some(m) = m {
                m.add(m.conns_entry(tenant, t.connections));
            }
        });
    }

    /// Marks `sid` as `uid`. Returns the uid's other sessions on this node
    /// and how many other sockets the uid has on all nodes.
    pub async fn user_online(
        &self,
        tenant: &str,
        uid: &str,
        session: Arc<Session>,
    ) -> (Vec<Arc<Session>>, usize) {
        let sid = session.sid;
        let (local, pending) = self.with(tenant, |t, m| {
            let socks = t.users.entry(uid.to_string()).or_default();
            let others: Vec<_> = socks.values().filter(|s| s.sid != sid).cloned().collect();
            socks.insert(sid, session);
            let pending = m.map(|m| m.add_and_read(m.user_entry(tenant, uid, &sid.to_string())));
            (others, pending)
        });
        let everywhere = match pending {
            Some(rx) => mirror::answer(rx).await.map_or(local.len(), |v| v.len()),
            None => local.len(),
        };
        let everywhere = everywhere.max(local.len());
        (local, everywhere)
    }

    pub fn user_offline(&self, tenant: &str, uid: &str, sid: Sid) {
        self.with(tenant, |t, m| {
            if let Some(socks) = t.users.get_mut(uid)
                && socks.remove(&sid).is_some()
            {
                let last = socks.is_empty();
                if last {
                    t.users.remove(uid);
                }
                if let Some(m) = m {
                    m.remove(m.user_entry(tenant, uid, &sid.to_string()), last);
                }
            }
        });
    }

    /// Adds a visible member; returns the distinct uids already in the room
    /// (other than `uid`), on all nodes.
    pub async fn join_room(&self, tenant: &str, room: &str, sid: Sid, uid: &str) -> Vec<String> {
        let (local, pending) = self.with(tenant, |t, m| {
            let members = t.rooms.entry(room.to_string()).or_default();
            let local: Vec<String> = members.values().cloned().collect();
            members.insert(sid, uid.to_string());
            let pending =
                m.map(|m| m.add_and_read(m.room_entry(tenant, room, &sid.to_string(), uid)));
            (local, pending)
        });
        let all = match pending {
            Some(rx) => mirror::answer(rx).await.unwrap_or(local),
            None => local,
        };
        let mut seen = HashSet::new();
        all.into_iter()
            .filter(|u| u.as_str() != uid && seen.insert(u.clone()))
            .collect()
    }

    pub fn leave_room(&self, tenant: &str, room: &str, sid: Sid) {
        self.with(tenant, |t, m| {
            if let Some(members) = t.rooms.get_mut(room)
                && let Some(uid) = members.remove(&sid)
            {
                let last = members.is_empty();
                if last {
                    t.rooms.remove(room);
                }
                if let Some(m) = m {
                    m.remove(m.room_entry(tenant, room, &sid.to_string(), &uid), last);
                }
            }
        });
    }

    /// Distinct uids visible in the room on all nodes, sorted.
    pub async fn room_users(&self, tenant: &str, room: &str) -> Vec<String> {
        if let Some(m) = &self.mirror
            && let Some(users) = m.room_users(tenant, room).await
        {
            return users;
        }
        self.local_room_users(tenant, room)
    }

    fn local_room_users(&self, tenant: &str, room: &str) -> Vec<String> {
        self.with(tenant, |t, _| {
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

    /// Visible sockets of the room on this node.
    pub fn room_size(&self, tenant: &str, room: &str) -> usize {
        self.with(tenant, |t, _| t.rooms.get(room).map_or(0, HashMap::len))
    }

    /// (online users, rooms with visible members, connections) on all nodes.
    pub async fn stat(&self, tenant: &str) -> (usize, usize, usize) {
        if let Some(m) = &self.mirror
            && let Some(s) = m.stat(tenant).await
        {
            return s;
        }
        self.with(tenant, |t, _| (t.users.len(), t.rooms.len(), t.connections))
    }

    /// Total rooms on this node, all tenants.
    pub fn total_rooms(&self) -> usize {
        self.tenants.lock().values().map(|t| t.rooms.len()).sum()
    }

    /// Every authenticated session of the tenant on this node.
    pub fn sessions(&self, tenant: &str) -> Vec<Arc<Session>> {
        self.with(tenant, |t, _| {
            t.users.values().flat_map(|m| m.values().cloned()).collect()
        })
    }

    pub fn forget_tenant(&self, tenant: &str) {
        self.tenants.lock().remove(tenant);
    }

    /// With `--redis`: heartbeat, sweep dead nodes, and write this node's
    /// whole view again whenever Redis may have missed part of it.
    pub fn spawn_heartbeat(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.mirror.as_ref()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(mirror::HEARTBEAT);
            loop {
                tick.tick().await;
                let Some(m) = &me.mirror else { return };
                if m.heartbeat().await {
                    me.resync();
                }
            }
        }))
    }

    fn resync(&self) {
        let Some(m) = &self.mirror else { return };
        let map = self.tenants.lock();
        let mut entries: Vec<Entry> = Vec::new();
        for (name, t) in map.iter() {
            entries.push(m.conns_entry(name, t.connections));
            for (uid, socks) in &t.users {
                entries.extend(
                    socks
                        .keys()
                        .map(|sid| m.user_entry(name, uid, &sid.to_string())),
                );
            }
            for (room, members) in &t.rooms {
                entries.extend(
                    members
                        .iter()
                        .map(|(sid, uid)| m.room_entry(name, room, &sid.to_string(), uid)),
                );
            }
        }
        tracing::info!(entries = entries.len(), node = %m.node, "writing this node's presence to redis");
        // Queued while the lock is held: later changes follow it.
        m.resync(entries);
    }

    /// Graceful shutdown: this node's users leave the cluster view at once.
    pub async fn leave_cluster(&self) {
        if let Some(m) = &self.mirror {
            m.leave().await;
        }
    }
}
