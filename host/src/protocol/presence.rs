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
    /// Keyed by the uid the sessions hold too (one allocation per uid).
    users: HashMap<Arc<str>, UserSockets>,
    rooms: HashMap<String, HashMap<Sid, Arc<str>>>,
    connections: usize,
}

/// The authenticated sockets of one uid on this node. With kickout (the
/// default) a uid has one socket, held without a map of its own.
enum UserSockets {
    One(Arc<Session>),
    /// Kickout off, or the moment a newer login kicks the older ones.
    Many(Vec<Arc<Session>>),
}

impl UserSockets {
    fn iter(&self) -> std::slice::Iter<'_, Arc<Session>> {
        match self {
            UserSockets::One(s) => std::slice::from_ref(s).iter(),
            UserSockets::Many(v) => v.iter(),
        }
    }

    /// Adds or replaces the session of its sid.
    fn insert(&mut self, session: Arc<Session>) {
        match self {
            UserSockets::One(s) if s.sid == session.sid => *s = session,
            UserSockets::One(s) => *self = UserSockets::Many(vec![s.clone(), session]),
            UserSockets::Many(v) => match v.iter_mut().find(|s| s.sid == session.sid) {
                Some(s) => *s = session,
                None => v.push(session),
            },
        }
    }

    /// Removes `sid`: whether it was there, and whether none is left.
    fn remove(&mut self, sid: Sid) -> (bool, bool) {
        match self {
            UserSockets::One(s) => {
                let found = s.sid == sid;
                (found, found)
            }
            UserSockets::Many(v) => {
                let Some(i) = v.iter().position(|s| s.sid == sid) else {
                    return (false, v.is_empty());
                };
                v.swap_remove(i);
                if let [last] = v.as_slice() {
                    *self = UserSockets::One(last.clone());
                    return (true, false);
                }
                (true, v.is_empty())
            }
        }
    }
}

/// The name a node without Redis (or with Redis not answering) gives
/// itself in the nodes list.
pub const LOCAL_NODE: &str = "this-node";

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
        uid: &Arc<str>,
        session: Arc<Session>,
    ) -> (Vec<Arc<Session>>, usize) {
        let sid = session.sid;
        let (local, pending) = self.with(tenant, |t, m| {
            let others = match t.users.get_mut(&**uid) {
                Some(socks) => {
                    let others: Vec<_> = socks.iter().filter(|s| s.sid != sid).cloned().collect();
                    socks.insert(session);
                    others
                }
                None => {
                    t.users.insert(uid.clone(), UserSockets::One(session));
                    Vec::new()
                }
            };
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
                && let (true, last) = socks.remove(sid)
            {
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
    pub async fn join_room(
        &self,
        tenant: &str,
        room: &str,
        sid: Sid,
        uid: &Arc<str>,
    ) -> Vec<String> {
        let (local, pending) = self.with(tenant, |t, m| {
            let members = match t.rooms.get_mut(room) {
                Some(m) => m,
                None => t.rooms.entry(room.to_string()).or_default(),
            };
            let local: Vec<String> = members.values().map(|u| u.to_string()).collect();
            members.insert(sid, uid.clone());
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
            .filter(|u| u.as_str() != &**uid && seen.insert(u.clone()))
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
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .map(|u| u.to_string())
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

    /// The nodes of the cluster (this one alone without Redis) as (node,
    /// last heartbeat in unix ms, connections), and this node's id.
    pub async fn nodes(&self, tenants: &[String]) -> (Vec<(String, u64, usize)>, String) {
        let me = self
            .mirror
            .as_ref()
            .map_or_else(|| LOCAL_NODE.to_string(), |m| m.node.clone());
        if let Some(m) = &self.mirror
            && let Some(nodes) = m.nodes(tenants).await
        {
            return (nodes, me);
        }
        let conns = self.tenants.lock().values().map(|t| t.connections).sum();
        (vec![(me.clone(), crate::clock::now_ms(), conns)], me)
    }

    /// Rooms with visible members on all nodes as (room, distinct users,
    /// sockets), the first `limit` by name, and how many there are in all.
    pub async fn rooms(&self, tenant: &str, limit: usize) -> (Vec<(String, usize, usize)>, usize) {
        if let Some(m) = &self.mirror
            && let Some(r) = m.rooms(tenant, limit).await
        {
            return r;
        }
        self.with(tenant, |t, _| {
            let mut rooms: Vec<(String, usize, usize)> = t
                .rooms
                .iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(r, m)| {
                    let users = m.values().collect::<HashSet<_>>().len();
                    (r.clone(), users, m.len())
                })
                .collect();
            let total = rooms.len();
            rooms.sort();
            rooms.truncate(limit);
            (rooms, total)
        })
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
            t.users.values().flat_map(|m| m.iter().cloned()).collect()
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
                        .iter()
                        .map(|s| m.user_entry(name, uid, &s.sid.to_string())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TenantRecord;
    use crate::tenant::Tenant;

    fn session(tenant: &Arc<Tenant>) -> Arc<Session> {
        Arc::new(Session::new(
            Sid::new(),
            tenant.clone(),
            "t".into(),
            "/t".into(),
            None,
        ))
    }

    fn sids(socks: &UserSockets) -> Vec<Sid> {
        let mut v: Vec<Sid> = socks.iter().map(|s| s.sid).collect();
        v.sort_by_key(|s| s.to_string());
        v
    }

    #[test]
    fn a_uid_goes_from_one_socket_to_several_and_back() {
        let tenant = Arc::new(Tenant::new(TenantRecord {
            version: 1,
            name: "t".into(),
            config: Default::default(),
            api_key_hashes: Vec::new(),
            created_ms: 0,
        }));
        let (a, b, c) = (session(&tenant), session(&tenant), session(&tenant));
        let mut socks = UserSockets::One(a.clone());
        socks.insert(a.clone());
        assert!(
            matches!(socks, UserSockets::One(_)),
            "the same sid again replaces it"
        );
        socks.insert(b.clone());
        socks.insert(c.clone());
        let mut all = vec![a.sid, b.sid, c.sid];
        all.sort_by_key(|s| s.to_string());
        assert_eq!(sids(&socks), all);

        assert_eq!(socks.remove(Sid::new()), (false, false), "an unknown sid");
        assert_eq!(socks.remove(b.sid), (true, false));
        assert_eq!(socks.remove(c.sid), (true, false));
        assert!(matches!(&socks, UserSockets::One(s) if s.sid == a.sid));
        assert_eq!(socks.remove(a.sid), (true, true), "the last one leaves");
    }
}
