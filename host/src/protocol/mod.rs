//! The session protocol on socket.io: one namespace per tenant, and what
//! each socket's events do. Every handler receives [`Services`], the part of
//! the node the protocol declares it uses, and never the application
//! context, so the protocol can be run and tested without a server.
//!
//! - [`wire`], [`refusal`]: the shapes on the wire and the typed refusals.
//! - `session`, `worker`: one socket's state, and the task that runs its
//!   events in order.
//! - `answer`: replies, counted refusals, hook faults.
//! - [`auth`]: `authenticate`, kick-out.
//! - [`rooms`]: `join`, `leave`, disconnect announcements.
//! - [`msg`]: the `msg` pipeline ([`msg::plan`]) and its store write.
//! - [`relay`]: each room's committed messages relayed in order.
//! - [`sync`]: pages of a room's history.
//! - [`push`]: reliable pushes to users' devices, acked in order.
//! - [`tap`]: administrators watching a room's traffic, bounded.
//! - `presence`, `limiter`: who is online where; auth attempts per minute.

mod answer;
pub mod auth;
mod limiter;
pub mod msg;
mod presence;
pub mod push;
pub mod refusal;
pub mod relay;
pub mod rooms;
mod session;
pub mod sync;
pub mod tap;
#[cfg(test)]
mod testing;
pub mod wire;
mod worker;

pub use limiter::AuthLimiter;
pub use presence::Presence;
pub use session::Session;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cluster::adapter::{Ack, Socket};
use parking_lot::Mutex;
use serde_json::{Value, json};
use socketioxide::extract::{Event as EventName, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Sid;

use self::refusal::Refusal;
use crate::clock::now_ms;
use crate::cluster::adapter::Io;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::tenant::{Tenant, TenantRegistry};

/// What the session protocol uses of the node: the store, the tenants, the
/// socket.io server, counters, presence, the auth limiter, and the two
/// orderings it keeps (push acks per device, relays per room). Built once by
/// the composition root; cloning copies handles.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub tenants: Arc<TenantRegistry>,
    pub io: Io,
    pub metrics: Arc<Metrics>,
    pub presence: Arc<Presence>,
    pub auth_limiter: Arc<AuthLimiter>,
    /// Puts each device's push acks in order (node-local).
    pub push_order: Arc<push::AckOrder>,
    /// Relays each room's stored `msg`s after their commit, in order.
    pub relays: Arc<relay::RoomRelays>,
    /// Administrators watching rooms' traffic on this node.
    pub taps: Arc<tap::Taps>,
}
use session::disconnect_soon;
use wire::WantsAck;

/// Hidden room of one device of one user: live pushes go there. The control
/// characters keep it apart from any room a client can name.
pub fn device_room(uid: &str, device: &str) -> String {
    format!("\u{1}dev\u{1}{uid}\u{1}{device}")
}

/// Hidden room of every authenticated socket of a uid, on any node: kickout
/// reaches the older sockets through it.
pub fn uid_room(uid: &str) -> String {
    format!("\u{1}uid\u{1}{uid}")
}

/// Hidden room the sockets kicked out by socket `kicker` are put in, on
/// whichever node they live: the kickout is emitted to it, and a socket
/// that disconnects while in it announces nothing.
pub fn kick_room(kicker: socketioxide::socket::Sid) -> String {
    format!("{KICK_ROOM_PREFIX}{kicker}")
}
const KICK_ROOM_PREFIX: &str = "\u{1}kick\u{1}";

/// The socket.io room behind a room-sync room (`join {roomId}`). Rooms a
/// client can join live apart from user rooms (`user_<uid>`), rooms a
/// plugin assigns and the hidden device rooms, so joining `user_alice` never
/// reaches Alice's pushes.
pub fn sync_room(room_id: &str) -> String {
    format!("r:{room_id}")
}

/// The socket.io rooms a push or admin message to `rooms` reaches: a user
/// room (`user_room_prefix` + uid) reaches that user's sockets only; any
/// other name reaches the room-sync room of that name and the plain room
/// (rooms a plugin assigned). Every sender (`/send`, admin push) targets
/// through here, so a socket that joined a room-sync room named like a user
/// room never receives that user's messages.
pub fn push_targets<'a>(
    user_room_prefix: &str,
    rooms: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for r in rooms {
        out.push(r.clone());
        if user_of_room(user_room_prefix, r).is_none() {
            out.push(sync_room(r));
        }
    }
    out
}

/// The uid whose user room `room` is (`user_room_prefix` + uid), if it is one.
pub fn user_of_room<'a>(user_room_prefix: &str, room: &'a str) -> Option<&'a str> {
    room.strip_prefix(user_room_prefix)
        .filter(|u| !u.is_empty() && !user_room_prefix.is_empty())
}

/// What every socket of one tenant's namespace shares. The namespace's
/// handlers hold it once; a socket's own handlers hold a pointer to it
/// rather than a copy of the state each.
struct MountedNamespace {
    state: Services,
    tenant_name: Arc<str>,
    ns: Arc<str>,
    connecting: Mutex<Connecting>,
}

/// Sessions the connect middleware admitted whose connect handler has not
/// taken them yet. socketioxide calls the handler right after it sent
/// CONNECT, so an entry lives for moments, and a socket's session is not
/// kept in its extensions (a map of their own per socket) for its whole
/// life just so the handler can find it.
///
/// Weak: a socket whose CONNECT could not be sent never gets its handler
/// called; its session goes with the socket, and the dead entry is swept.
#[derive(Default)]
struct Connecting {
    sessions: HashMap<Sid, Weak<Session>>,
    sweep_at: usize,
}

impl Connecting {
    /// Entries past which dead ones are swept (then twice what is left).
    const SWEEP_MIN: usize = 64;

    fn insert(&mut self, sess: &Arc<Session>) {
        if self.sessions.len() >= self.sweep_at {
            self.sessions.retain(|_, s| s.strong_count() > 0);
            self.sweep_at = (self.sessions.len() * 2).max(Self::SWEEP_MIN);
        }
        self.sessions.insert(sess.sid, Arc::downgrade(sess));
    }

    fn take(&mut self, sid: Sid) -> Option<Arc<Session>> {
        self.sessions.remove(&sid)?.upgrade()
    }
}

/// Mounts the tenant's namespace (`/` for `default`, `/<name>` otherwise).
///
/// Event handlers are registered in a connect *middleware*: socketioxide
/// sends the CONNECT packet before it runs the connect handler, so a client
/// that emits at once would otherwise hit a socket with no handlers yet.
///
/// With `--redis` the namespace's adapter subscribes to its cluster
/// channels here; a failure is logged and the namespace serves this node's
/// sockets until Redis is back.
pub async fn mount(state: &Services, tenant: &Arc<Tenant>) {
    let mounted = Arc::new(MountedNamespace {
        state: state.clone(),
        tenant_name: tenant.name().into(),
        ns: tenant.namespace().into(),
        connecting: Mutex::default(),
    });
    let (m1, m2) = (mounted.clone(), mounted);
    // Both run to completion before they return their future, so no task
    // is left per socket.
    let handler = move |socket: Socket, TryData(auth): TryData<Value>| {
        on_connect(&m1, &socket, auth.ok());
        std::future::ready(())
    };
    let middleware = move |socket: Socket| std::future::ready(setup(&m2, &socket));
    if let Err(e) = state
        .io
        .ns(tenant.namespace(), handler.with(middleware))
        .await
    {
        tracing::error!(tenant = %tenant.name(), error = ?e, "the namespace's cluster adapter did not start; it reaches this node's sockets only");
    }
}

/// Removes a deleted tenant's namespace; its sockets are disconnected.
pub fn unmount(state: &Services, tenant: &str) {
    let ns = crate::tenant::namespace_of(tenant);
    state.io.delete_ns(ns);
    state.presence.forget_tenant(tenant);
}

fn ack_opt(wants: bool, ack: Ack) -> Option<Ack> {
    wants.then_some(ack)
}

/// Before CONNECT: admit the socket (tenant, connection limit), create its
/// session and register its event handlers.
fn setup(mounted: &Arc<MountedNamespace>, socket: &Socket) -> Result<(), Refusal> {
    let (state, tenant_name) = (&mounted.state, &*mounted.tenant_name);
    let Some(tenant) = state.tenants.get(tenant_name) else {
        return Err(Refusal::UnknownTenant(tenant_name.to_string()));
    };
    let cfg = tenant.config();
    // First, before the connection takes a quota slot: a page of a site the
    // tenant did not allow must not get a socket at all. Every header is
    // checked: a request carrying two `Origin`s is not let through on the
    // first one.
    let mut origins = socket
        .req_parts()
        .headers
        .get_all(axum::http::header::ORIGIN)
        .iter();
    let allowed = match origins.next() {
        None => cfg.allows_origin(None),
        Some(first) => std::iter::once(first)
            .chain(origins)
            .all(|o| cfg.allows_origin(Some(o.as_bytes()))),
    };
    if !allowed {
        state.metrics.refuse(tenant_name, Refusal::Origin.kind());
        return Err(Refusal::Origin);
    }
    if !state.presence.connect(tenant_name, cfg.max_connections) {
        let refusal = Refusal::Connections {
            limit: cfg.max_connections,
        };
        state.metrics.refuse(tenant_name, refusal.kind());
        return Err(refusal);
    }
    state
        .metrics
        .connections
        .get_or_create(&crate::telemetry::Metrics::tenant(tenant_name))
        .inc();
    let device = wire::query_param(worker::query(socket), "deviceId")
        .filter(|d| !d.is_empty())
        .map(String::into_boxed_str);
    let sess = Arc::new(Session::new(
        socket.id,
        tenant,
        mounted.tenant_name.clone(),
        mounted.ns.clone(),
        device,
    ));
    register_handlers(mounted, &sess, socket);
    mounted.connecting.lock().insert(&sess);
    Ok(())
}

/// The handshake `auth` object, when it carries credentials (or the query
/// string does: `?uid=&token=`, or `?token=` alone).
fn handshake_credentials(auth: Option<&Value>, query: &str) -> Option<Value> {
    match auth.filter(|a| a.as_object().is_some_and(|m| !m.is_empty())) {
        Some(a) => Some(a.clone()),
        None if wire::query_param(query, "token").is_some()
            || wire::query_param(query, "uid").is_some() =>
        {
            Some(Value::Null)
        }
        None => None,
    }
}

/// After CONNECT: `_settings`, the auth deadline, then the handshake
/// authentication and whatever the client already sent, in that order.
fn on_connect(mounted: &MountedNamespace, socket: &Socket, auth: Option<Value>) {
    let Some(sess) = mounted.connecting.lock().take(socket.id) else {
        let _ = socket.clone().disconnect();
        return;
    };
    let cfg = sess.tenant.config();
    let _ = socket.emit("_settings", &json!({ "device_ttl": cfg.device_ttl_secs }));
    let first = handshake_credentials(auth.as_ref(), worker::query(socket));

    let timeout = Duration::from_millis(cfg.auth_timeout_ms);
    let io = mounted.state.io.clone();
    let timer_sess = sess.clone();
    let deadline = tokio::spawn(async move {
        let sess = timer_sess;
        tokio::time::sleep(timeout).await;
        // An authenticate in progress is let finish (it disconnects on failure).
        let pending = {
            let mut st = sess.state.lock();
            st.expired = st.uid.is_none() && !st.authenticating;
            st.expired
        };
        if pending && let Some(s) = io.of(&sess.ns).and_then(|n| n.get_socket(sess.sid)) {
            let _ = s.emit(
                "authenticate",
                &serde_json::Value::from(Refusal::AuthTimeout),
            );
            disconnect_soon(&io, &sess.ns, sess.sid);
        }
    });
    // Set before any event is handled: only `connected` lets the worker start.
    sess.set_deadline(deadline);
    worker::connected(&mounted.state, &sess, socket, first);
}

/// Registers the socket's event handlers: each only queues its event for
/// the socket's [`worker`], in arrival order.
///
/// One fallback handler takes every event rather than one handler per event
/// name: socketioxide keeps a socket's named handlers in a map of its own,
/// its fallback in a single slot.
fn register_handlers(mounted: &Arc<MountedNamespace>, sess: &Arc<Session>, socket: &Socket) {
    let (mo, se) = (mounted.clone(), sess.clone());
    socket.on_fallback(
        move |s: Socket,
              EventName(name): EventName,
              TryData(d): TryData<Value>,
              ack: Ack,
              WantsAck(wants): WantsAck| {
            let data = d.unwrap_or(Value::Null);
            let event = match name.as_str() {
                "authenticate" => worker::Event::Authenticate(data, ack_opt(wants, ack)),
                "join" => worker::Event::Join(data, ack_opt(wants, ack)),
                "msg" => worker::Event::Msg(data, ack, wants),
                "sync" => worker::Event::Sync(data, ack_opt(wants, ack)),
                "leave" => worker::Event::Leave(ack_opt(wants, ack)),
                // Not an event of this protocol: ignored, as socketioxide
                // ignores an event without a handler.
                _ => return std::future::ready(()),
            };
            worker::queue(&mo.state, &se, &s, event);
            std::future::ready(())
        },
    );
    let (mo, se) = (mounted.clone(), sess.clone());
    socket.on_disconnect(move |s: Socket| {
        // Still in its rooms here (they are left after this handler): a
        // socket kicked out from any node is in a kick room.
        if s.rooms().iter().any(|r| r.starts_with(KICK_ROOM_PREFIX)) {
            se.state.lock().kicked = true;
        }
        // Queued behind everything else, so the worker cleans up last.
        worker::queue(&mo.state, &se, &s, worker::Event::Disconnected);
        std::future::ready(())
    });
}

/// Background chores: forget expired devices, refresh the last-seen time of
/// connected ones, drop finished rate-limit windows.
pub fn spawn_housekeeping(state: &Services) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            state.auth_limiter.sweep();
            match state.store.kv_purge_expired(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(keys = n, "purged expired plugin kv keys"),
                Err(e) => tracing::warn!(error = %e, "purging expired plugin kv keys failed"),
            }
            state.metrics.rooms.set(state.presence.total_rooms() as i64);
            for tenant in state.tenants.all() {
                let name = tenant.name();
                let now = now_ms();
                for s in state.presence.sessions(&name) {
                    if let Some(uid) = s.uid() {
                        let _ = state
                            .store
                            .device_seen(&name, &uid, s.device_key(), now)
                            .await;
                    }
                }
                let ttl_ms = tenant.config().device_ttl_ms();
                match state
                    .store
                    .expire_devices(&name, now.saturating_sub(ttl_ms))
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(tenant = %name, devices = n, "forgot devices offline longer than device_ttl")
                    }
                    Err(e) => tracing::warn!(tenant = %name, error = %e, "expiring devices failed"),
                }
            }
        }
    })
}
