//! What the protocol's unit tests run on: real [`Services`] over a real
//! embedded store in a temporary directory, and sessions made without a
//! socket. No server, no listener, no Redis.

use std::sync::Arc;
use std::time::Duration;

use super::session::{JoinedRoom, Session};
use super::{AuthLimiter, Presence, Services};
use crate::policy::Policy;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, TenantRecord};
use crate::tenant::{Tenant, TenantConfig};
use socketioxide::socket::Sid;

/// A store file of its own per test, removed with the guard.
pub struct TempStore {
    pub services: Services,
    dir: std::path::PathBuf,
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Services on a fresh embedded store (a 0 ms group commit).
pub fn services() -> TempStore {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hookwire-unit-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.join("hookwire.redb"), Duration::ZERO).unwrap());
    let (_layer, io) = socketioxide::SocketIo::builder()
        .with_adapter::<crate::cluster::adapter::Adapter>(crate::cluster::adapter::adapter_state(
            None,
        ))
        .build_layer();
    let services = Services {
        store,
        tenants: Default::default(),
        io,
        metrics: Default::default(),
        presence: Arc::new(Presence::new(None)),
        auth_limiter: Arc::new(AuthLimiter::new(None)),
        push_order: Default::default(),
        relays: Default::default(),
        taps: Default::default(),
    };
    TempStore { services, dir }
}

/// A socket's session of tenant `t1` with `policy`, authenticated as `u1`
/// and joined to room `r1`.
pub fn session(policy: Box<dyn Policy>, cfg: TenantConfig) -> Session {
    let tenant = Arc::new(Tenant::new(TenantRecord {
        name: "t1".into(),
        config: cfg,
        api_key_hashes: vec![],
        created_ms: 0,
        version: 0,
    }));
    tenant.set_policy(policy);
    let sess = Session::new(Sid::new(), tenant, "t1".into(), "/t1".into(), None);
    {
        let mut st = sess.state.lock();
        st.uid = Some("u1".into());
        st.rooms.push(JoinedRoom {
            name: "r1".into(),
            dummy: false,
        });
    }
    sess
}

/// [`session`] with the built-in policy.
pub fn builtin_session(cfg: TenantConfig) -> Session {
    session(Box::new(crate::policy::BuiltinPolicy), cfg)
}
