//! Tenants: one socket.io namespace each (`default` on `/`, `acme` on
//! `/acme`), with their own API keys, config, data and policy.
//!
//! [`TenantRegistry`] is the in-memory view every handler reads; it is
//! loaded from the [`Store`] at start and written through on every change.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::policy::{BuiltinPolicy, Policy};
use crate::store::{Store, StoreResult, TenantRecord};

/// The tenant served on namespace `/`.
pub const DEFAULT_TENANT: &str = "default";

/// Per-tenant settings. Every field has a default, so a partial update (REST
/// `PATCH`, TOML `[tenant_defaults]`) only names what changes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// When false, `authenticate` accepts any uid without a token check
    /// (`forceUserAuth` of `POST /admin/system/config`; development only).
    pub force_user_auth: bool,
    /// Every authenticated socket joins `<prefix><uid>` (its user room);
    /// pushes to such rooms are delivered reliably.
    pub user_room_prefix: String,
    /// A socket that has not authenticated within this time is disconnected.
    pub auth_timeout_ms: u64,
    /// A socket that has not joined a room within this time after
    /// authenticating is disconnected. 0 disables it (push-only clients).
    pub join_timeout_ms: u64,
    /// `authenticate` attempts per uid in a fixed 60 s window.
    pub auth_attempts_per_minute: u32,
    /// Largest `msg` payload, in bytes of JSON.
    pub max_msg_bytes: usize,
    /// Rooms one socket may be in (not counting its own user room).
    pub max_rooms_per_socket: usize,
    /// Inserted messages kept per room; older ones are trimmed.
    pub max_msgs_per_room: u64,
    /// Concurrent sockets of this tenant on one node.
    pub max_connections: usize,
    /// Messages per `sync` reply.
    pub sync_page_size: usize,
    /// Bytes of stored messages per `sync` reply (a reply always holds at
    /// least one message, however large).
    pub sync_page_bytes: usize,
    /// A device offline longer than this is forgotten with its queue.
    pub device_ttl_secs: u64,
    /// Relay a stored `msg` only once its write committed, so a member that
    /// received it finds it in any `sync` it starts afterwards (on every
    /// node), and on one node `sync` order is the order received. `false`
    /// relays first: lower latency (no commit on the relay path), without
    /// either guarantee; the sender's ack waits for the commit either way.
    pub relay_after_commit: bool,
    /// Pushes kept queued per device (and in the per-user queue of a user
    /// with no known device); past it the oldest are dropped.
    pub max_pending_pushes: u64,
    /// Disconnect older sockets of a uid when it authenticates again.
    pub kickout: bool,
    /// Uids whose `uid`+`token` may call the admin HTTP API of this tenant.
    pub admin_uids: Vec<String>,
    /// When a plugin hook fails (trap, timeout, memory), let the operation
    /// through instead of refusing it.
    pub plugin_fail_open: bool,
    /// Browser origins (`https://app.example.com`, or `*`) whose pages may
    /// open a socket.io connection to this tenant. A browser always sends
    /// `Origin` and a page cannot forge it, so a page of another site cannot
    /// ride on its visitors' cookies or network position (cross-site
    /// WebSocket hijacking). Empty allows any origin; a connection without
    /// `Origin` (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            force_user_auth: true,
            user_room_prefix: "user_".into(),
            auth_timeout_ms: 10_000,
            join_timeout_ms: 10_000,
            auth_attempts_per_minute: 30,
            max_msg_bytes: 512_000,
            max_rooms_per_socket: 16,
            max_msgs_per_room: 10_000,
            max_connections: 100_000,
            sync_page_size: 200,
            sync_page_bytes: 1 << 20,
            device_ttl_secs: 3600,
            max_pending_pushes: 1000,
            relay_after_commit: true,
            kickout: true,
            admin_uids: Vec::new(),
            plugin_fail_open: false,
            allowed_origins: Vec::new(),
        }
    }
}

/// Longest `device_ttl_secs` accepted: ten years.
pub const MAX_DEVICE_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
/// Largest `max_pending_pushes` accepted.
pub const MAX_PENDING_PUSHES: u64 = 100_000;
/// Largest `sync_page_size` accepted.
pub const MAX_SYNC_PAGE_SIZE: usize = 10_000;
/// Range of `sync_page_bytes` accepted: 1 KiB to 16 MiB.
pub const SYNC_PAGE_BYTES: std::ops::RangeInclusive<usize> = 1024..=16 << 20;

impl TenantConfig {
    /// Refuses values the server cannot honour, naming the field and its
    /// accepted range.
    pub fn validate(&self) -> Result<(), String> {
        if self.device_ttl_secs == 0 || self.device_ttl_secs > MAX_DEVICE_TTL_SECS {
            return Err(format!(
                "device_ttl_secs must be 1..={MAX_DEVICE_TTL_SECS} (ten years), got {}",
                self.device_ttl_secs
            ));
        }
        if self.sync_page_size == 0 || self.sync_page_size > MAX_SYNC_PAGE_SIZE {
            return Err(format!(
                "sync_page_size must be 1..={MAX_SYNC_PAGE_SIZE}, got {}",
                self.sync_page_size
            ));
        }
        if !SYNC_PAGE_BYTES.contains(&self.sync_page_bytes) {
            return Err(format!(
                "sync_page_bytes must be {}..={} (1 KiB to 16 MiB), got {}",
                SYNC_PAGE_BYTES.start(),
                SYNC_PAGE_BYTES.end(),
                self.sync_page_bytes
            ));
        }
        if self.max_pending_pushes == 0 || self.max_pending_pushes > MAX_PENDING_PUSHES {
            return Err(format!(
                "max_pending_pushes must be 1..={MAX_PENDING_PUSHES}, got {}",
                self.max_pending_pushes
            ));
        }
        if self.max_msgs_per_room == 0 {
            return Err("max_msgs_per_room must be at least 1".into());
        }
        if self.max_msg_bytes == 0 {
            return Err("max_msg_bytes must be at least 1".into());
        }
        for entry in &self.allowed_origins {
            if entry != "*" && normalize_origin(entry).is_none() {
                return Err(format!(
                    "allowed_origins: {entry:?} is not an origin: expected scheme://host[:port] without a path (e.g. https://app.example.com), or *"
                ));
            }
        }
        Ok(())
    }

    /// May a connection whose `Origin` header is `origin` (`None`: no
    /// header) reach this tenant? See [`TenantConfig::allowed_origins`].
    pub fn allows_origin(&self, origin: Option<&[u8]>) -> bool {
        let Some(origin) = origin else { return true };
        if self.allowed_origins.is_empty() || self.allowed_origins.iter().any(|o| o == "*") {
            return true;
        }
        // `null` (sandboxed frames, file: pages) and anything unparsable
        // match no entry.
        let Some(origin) = std::str::from_utf8(origin).ok().and_then(normalize_origin) else {
            return false;
        };
        self.allowed_origins
            .iter()
            .any(|o| normalize_origin(o).as_deref() == Some(origin.as_str()))
    }

    /// `device_ttl_secs` in milliseconds (saturating: never wraps).
    pub fn device_ttl_ms(&self) -> u64 {
        self.device_ttl_secs.saturating_mul(1000)
    }
}

/// The room writes of a tenant's sockets in flight on this node. Deleting
/// the tenant closes it (later writes are refused) and waits for the ones
/// in flight, so none lands after the delete in a tenant re-created under
/// the same name.
#[derive(Default)]
pub struct WriteGate {
    closed: std::sync::atomic::AtomicBool,
    in_flight: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One write in flight; dropping it ends the write.
pub struct WriteTicket(Arc<Tenant>);

impl Drop for WriteTicket {
    fn drop(&mut self) {
        let gate = &self.0.writes;
        if gate
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            gate.idle.notify_waiters();
        }
    }
}

impl WriteGate {
    /// Refuses new writes, then waits (at most `limit`) for those in
    /// flight. Returns whether they all ended.
    pub async fn close_and_drain(&self, limit: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering;
        self.closed.store(true, Ordering::SeqCst);
        let drained = async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, drained).await.is_ok()
    }
}

/// `scheme://host[:port]` in the form browsers send it (lower case, no
/// default port), so `https://App.example.com:443` in the config matches
/// the `https://app.example.com` a browser sends; `None` when `s` is not
/// such an origin (a path, a query, user info, no host, a bad port).
pub fn normalize_origin(s: &str) -> Option<String> {
    let (scheme, authority) = s.split_once("://")?;
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    // An IPv6 host is bracketed and holds colons of its own.
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        ip.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&authority[..ip.len() + 2], port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
        if !host_ok {
            return None;
        }
        (host, port)
    };
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>().ok()? {
                0 => return None,
                443 if matches!(scheme.as_str(), "https" | "wss") => None,
                80 if matches!(scheme.as_str(), "http" | "ws") => None,
                n => Some(n),
            }
        }
        Some(_) => return None,
    };
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// A live tenant: its record and its current policy, both swappable
/// atomically (calls in flight keep the old value).
pub struct Tenant {
    record: RwLock<TenantRecord>,
    /// The config alone, readable on the hot path without cloning.
    config: ArcSwap<TenantConfig>,
    policy: ArcSwap<Box<dyn Policy>>,
    /// Room writes in flight (see [`WriteGate`]).
    pub writes: WriteGate,
}

impl Tenant {
    /// A room write may start: `None` once the tenant is being deleted.
    pub fn begin_write(self: &Arc<Self>) -> Option<WriteTicket> {
        use std::sync::atomic::Ordering;
        self.writes.in_flight.fetch_add(1, Ordering::SeqCst);
        let ticket = WriteTicket(self.clone());
        (!self.writes.closed.load(Ordering::SeqCst)).then_some(ticket)
    }
    pub fn new(record: TenantRecord) -> Self {
        Tenant {
            config: ArcSwap::from_pointee(record.config.clone()),
            record: RwLock::new(record),
            policy: ArcSwap::from_pointee(Box::new(BuiltinPolicy) as Box<dyn Policy>),
            writes: WriteGate::default(),
        }
    }
    pub fn name(&self) -> String {
        self.record.read().name.clone()
    }
    pub fn config(&self) -> Arc<TenantConfig> {
        self.config.load_full()
    }
    pub fn record(&self) -> TenantRecord {
        self.record.read().clone()
    }
    /// Applies `rec` read from the store unless this node already holds a
    /// later change of the same tenant (announcements and reconciles may
    /// arrive out of order). A re-created tenant (another `created_ms`)
    /// always replaces the old one. Returns whether it applied.
    pub fn follow(&self, rec: TenantRecord) -> bool {
        if !self.is_behind(&rec) {
            return false;
        }
        self.set_record(rec);
        true
    }

    /// Whether `rec` (read from the store) is newer than what this node
    /// holds: a later version, or a re-created tenant.
    pub fn is_behind(&self, rec: &TenantRecord) -> bool {
        let cur = self.record.read();
        cur.created_ms != rec.created_ms || cur.version < rec.version
    }
    pub fn set_record(&self, rec: TenantRecord) {
        self.config.store(Arc::new(rec.config.clone()));
        *self.record.write() = rec;
    }
    /// The policy to use for one call; hold the returned `Arc` for the whole
    /// call so a concurrent swap does not affect it.
    pub fn policy(&self) -> Arc<Box<dyn Policy>> {
        self.policy.load_full()
    }
    pub fn set_policy(&self, p: Box<dyn Policy>) {
        self.policy.store(Arc::new(p));
    }
    /// Socket.io namespace path of this tenant.
    pub fn namespace(&self) -> String {
        namespace_of(&self.record.read().name)
    }
    /// Does `key` match one of this tenant's API keys?
    pub fn accepts_key(&self, key: &str) -> bool {
        let h = crate::auth::sha256_hex(key);
        self.record
            .read()
            .api_key_hashes
            .iter()
            .any(|k| crate::auth::ct_eq(k, &h))
    }
}

pub fn namespace_of(tenant: &str) -> String {
    if tenant == DEFAULT_TENANT {
        "/".to_string()
    } else {
        format!("/{tenant}")
    }
}

/// Tenant names are namespace paths and URL segments: keep them plain.
pub fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !matches!(
            name,
            "socket.io" | "api" | "admin" | "user" | "demo" | "console"
        )
}

/// All tenants of this node, by name.
#[derive(Default)]
pub struct TenantRegistry {
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Held while a tenant is created, deleted or followed from the store
    /// on this node, so a reconcile pass never re-mounts a tenant being
    /// deleted here nor mounts one twice.
    pub lifecycle: tokio::sync::Mutex<()>,
}

impl TenantRegistry {
    pub async fn load(store: &dyn Store) -> StoreResult<Self> {
        let reg = TenantRegistry::default();
        for rec in store.list_tenants().await? {
            reg.insert(rec);
        }
        Ok(reg)
    }
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.read().get(name).cloned()
    }
    /// Inserts or replaces the record; an existing tenant keeps its policy.
    pub fn insert(&self, rec: TenantRecord) -> Arc<Tenant> {
        self.add(Arc::new(Tenant::new(rec)))
    }
    /// Lists a tenant built (and mounted) beforehand; one already listed
    /// under its name takes the new record instead and is returned.
    pub fn add(&self, tenant: Arc<Tenant>) -> Arc<Tenant> {
        let mut map = self.tenants.write();
        if let Some(t) = map.get(&tenant.name()) {
            t.set_record(tenant.record());
            return t.clone();
        }
        map.insert(tenant.name(), tenant.clone());
        tenant
    }
    pub fn remove(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.write().remove(name)
    }
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        let mut v: Vec<_> = self.tenants.read().values().cloned().collect();
        v.sort_by_key(|t| t.name());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize_as_browsers_send_them() {
        for (entry, want) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.com:443", "https://app.example.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://localhost:80", "http://localhost"),
            ("https://[::1]:3000", "https://[::1]:3000"),
            ("capacitor://localhost", "capacitor://localhost"),
        ] {
            assert_eq!(normalize_origin(entry).as_deref(), Some(want), "{entry}");
        }
        for bad in [
            "",
            "*",
            "null",
            "app.example.com",
            "https://",
            "https://app.example.com/",
            "https://app.example.com/app",
            "https://app.example.com?x",
            "https://app.example.com#x",
            "https://user@app.example.com",
            "https://app.example.com:",
            "https://app.example.com:0",
            "https://app.example.com:65536",
            "https://a b",
            "https://[nope]",
            "1http://x",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn allowed_origins_match_exactly_after_normalizing() {
        let mut cfg = TenantConfig::default();
        assert!(
            cfg.allows_origin(Some(b"https://evil.example")),
            "empty allows any"
        );
        cfg.allowed_origins = vec!["https://Good.example:443".into()];
        assert!(cfg.validate().is_ok());
        assert!(cfg.allows_origin(None), "no Origin: not a browser");
        assert!(cfg.allows_origin(Some(b"https://good.example")));
        for other in [
            &b"https://evil.example"[..],
            b"http://good.example",
            b"https://good.example:8443",
            b"https://good.example.evil.example",
            b"null",
            b"\xff",
        ] {
            assert!(!cfg.allows_origin(Some(other)), "{other:?}");
        }
        cfg.allowed_origins.push("*".into());
        assert!(cfg.allows_origin(Some(b"null")));
        cfg.allowed_origins = vec!["https://good.example/".into()];
        let err = cfg.validate().unwrap_err();
        assert!(err.starts_with("allowed_origins"), "{err}");
    }
}
