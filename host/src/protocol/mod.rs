//! socket.io side of hookwire: one namespace per tenant, the room-sync
//! events of always-online ([`room_sync`]), reliable pushes of
//! socket.io-webservice ([`push`]) and who is online ([`Presence`]).

mod limiter;
mod presence;
pub mod push;
pub mod room_sync;
mod session;
pub mod wire;
mod worker;

pub use limiter::AuthLimiter;
pub use presence::Presence;
pub use session::Session;

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::adapter::{Ack, Socket};
use parking_lot::Mutex;
use serde_json::{Value, json};
use socketioxide::extract::TryData;
use socketioxide::handler::ConnectHandler;
use tokio::sync::mpsc;

use crate::server::{AppState, now_ms};
use crate::tenant::Tenant;
use session::{SessionState, disconnect_soon};
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

/// The socket.io rooms a push or admin message to `room` reaches: the
/// room-sync room of that name and the plain room (user rooms, rooms a
/// plugin assigned).
pub fn push_targets<'a>(rooms: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    rooms
        .into_iter()
        .flat_map(|r| [r.clone(), sync_room(r)])
        .collect()
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
pub async fn mount(state: &AppState, tenant: &Arc<Tenant>) {
    let name = tenant.name();
    let (st1, st2) = (state.clone(), state.clone());
    let handler = move |socket: Socket, TryData(auth): TryData<Value>| {
        let st = st1.clone();
        async move { on_connect(st, socket, auth.ok()).await }
    };
    let middleware = move |socket: Socket| {
        let (st, name) = (st2.clone(), name.clone());
        async move { setup(&st, &name, &socket) }
    };
    if let Err(e) = state
        .io
        .ns(tenant.namespace(), handler.with(middleware))
        .await
    {
        tracing::error!(tenant = %tenant.name(), error = ?e, "the namespace's cluster adapter did not start; it reaches this node's sockets only");
    }
}

/// Removes a deleted tenant's namespace; its sockets are disconnected.
pub fn unmount(state: &AppState, tenant: &str) {
    let ns = crate::tenant::namespace_of(tenant);
    state.io.delete_ns(ns);
    state.presence.forget_tenant(tenant);
}

fn ack_opt(wants: bool, ack: Ack) -> Option<Ack> {
    wants.then_some(ack)
}

/// Before CONNECT: admit the socket (tenant, connection limit), create its
/// session and register its event handlers.
fn setup(state: &AppState, tenant_name: &str, socket: &Socket) -> Result<(), String> {
    let Some(tenant) = state.tenants.get(tenant_name) else {
        return Err(format!("unknown tenant `{tenant_name}`"));
    };
    let cfg = tenant.config();
    if !state.presence.connect(tenant_name, cfg.max_connections) {
        state.metrics.refuse(tenant_name, "connections");
        return Err(format!(
            "too many connections: the tenant allows {}",
            cfg.max_connections
        ));
    }
    state
        .metrics
        .connections
        .get_or_create(&crate::telemetry::Metrics::tenant(tenant_name))
        .inc();
    let query = socket.req_parts().uri.query().unwrap_or("").to_string();
    let sess = Arc::new(Session {
        sid: socket.id,
        ns: tenant.namespace(),
        tenant_name: tenant_name.to_string(),
        tenant,
        device: wire::query_param(&query, "deviceId").filter(|d| !d.is_empty()),
        query,
        state: Mutex::new(SessionState::default()),
    });
    // Handshake `auth` {uid, token} (or `?uid=&token=`) is the same as the
    // `authenticate` event; events that need a uid wait for it.
    let (tx, rx) = mpsc::channel(worker::QUEUE);
    register_handlers(state, &sess, socket, tx);
    socket.extensions.insert(sess);
    socket
        .extensions
        .insert(Arc::new(parking_lot::Mutex::new(Some(rx))));
    Ok(())
}

/// The handshake `auth` object, when it carries credentials (or the query
/// string does: `?uid=&token=`, socket.io-webservice's `?token=`).
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

/// After CONNECT: `_settings`, handshake authentication, the auth timeout.
async fn on_connect(state: AppState, socket: Socket, auth: Option<Value>) {
    let Some(sess) = socket.extensions.get::<Arc<Session>>() else {
        let _ = socket.disconnect();
        return;
    };
    let cfg = sess.tenant.config();
    let _ = socket.emit("_settings", &json!({ "device_ttl": cfg.device_ttl_secs }));

    let rx = socket
        .extensions
        .get::<Arc<parking_lot::Mutex<Option<worker::EventRx>>>>()
        .and_then(|r| r.lock().take());
    let Some(rx) = rx else {
        let _ = socket.disconnect();
        return;
    };
    let first = handshake_credentials(auth.as_ref(), &sess.query);

    let timeout = Duration::from_millis(cfg.auth_timeout_ms);
    let io = state.io.clone();
    let timer_sess = sess.clone();
    tokio::spawn(async move {
        let sess = timer_sess;
        tokio::time::sleep(timeout).await;
        // An authenticate in progress is let finish (it disconnects on failure).
        let pending = {
            let mut st = sess.state.lock();
            st.expired = st.uid.is_none() && !st.authenticating;
            st.expired
        };
        if pending && let Some(s) = io.of(&sess.ns).and_then(|n| n.get_socket(sess.sid)) {
            let _ = s.emit("authenticate", &wire::fail("authentication timeout"));
            disconnect_soon(&io, &sess.ns, sess.sid);
        }
    });
    // This task is the socket's worker from here on.
    worker::run(state, sess, socket, rx, first).await;
}

/// Registers the socket's event handlers: each only queues its event for
/// the socket's [`worker`], in arrival order.
fn register_handlers(state: &AppState, sess: &Arc<Session>, socket: &Socket, tx: worker::EventTx) {
    fn queue(tx: &worker::EventTx, sess: &Session, socket: &Socket, ev: worker::Event) {
        if let Err(mpsc::error::TrySendError::Full(ev)) = tx.try_send(Box::new(ev)) {
            tracing::warn!(tenant = %sess.tenant_name, sid = %sess.sid, "socket sends faster than it is served; event refused");
            ev.refuse(
                socket,
                &format!(
                    "server busy: too many events in flight on this socket (at most {}), retry",
                    worker::QUEUE
                ),
            );
        }
    }
    macro_rules! on {
        ($event:literal, |$data:ident, $ack:ident, $wants:ident| $make:expr) => {{
            let (tx, se) = (tx.clone(), sess.clone());
            socket.on(
                $event,
                move |s: Socket,
                      TryData(d): TryData<Value>,
                      $ack: Ack,
                      WantsAck($wants): WantsAck| {
                    let $data = d.unwrap_or(Value::Null);
                    queue(&tx, &se, &s, $make);
                    async {}
                },
            );
        }};
    }
    on!("authenticate", |data, ack, wants| {
        worker::Event::Authenticate(data, ack_opt(wants, ack))
    });
    on!("join", |data, ack, wants| worker::Event::Join(
        data,
        ack_opt(wants, ack)
    ));
    on!("msg", |data, ack, wants| worker::Event::Msg(
        data, ack, wants
    ));
    on!("sync", |data, ack, wants| worker::Event::Sync(
        data,
        ack_opt(wants, ack)
    ));
    on!("leave", |_data, ack, wants| worker::Event::Leave(ack_opt(
        wants, ack
    )));
    let _ = state;
    let se = sess.clone();
    socket.on_disconnect(move |s: Socket| {
        // Still in its rooms here (they are left after this handler): a
        // socket kicked out from any node is in a kick room.
        if s.rooms().iter().any(|r| r.starts_with(KICK_ROOM_PREFIX)) {
            se.state.lock().kicked = true;
        }
        let tx = tx.clone();
        // Queued behind everything else, so the worker cleans up last; a
        // full queue must not lose it.
        async move {
            let _ = tx.send(Box::new(worker::Event::Disconnected)).await;
        }
    });
}

/// Background chores: forget expired devices, refresh the last-seen time of
/// connected ones, drop finished rate-limit windows.
pub fn spawn_housekeeping(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            state.auth_limiter.sweep();
            state.metrics.rooms.set(state.presence.total_rooms() as i64);
            for tenant in state.tenants.all() {
                let name = tenant.name();
                let now = now_ms();
                for s in state.presence.sessions(&name) {
                    if let Some(uid) = s.uid() {
                        let _ = state
                            .store
                            .device_seen(&name, &uid, &s.device_key(), now)
                            .await;
                    }
                }
                let ttl_ms = tenant.config().device_ttl_secs * 1000;
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
