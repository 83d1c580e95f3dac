//! socket.io side of hookwire: one namespace per tenant, the room-sync
//! events of always-online ([`room_sync`]), reliable pushes of
//! socket.io-webservice ([`push`]) and who is online ([`Presence`]).

mod limiter;
mod presence;
pub mod push;
pub mod room_sync;
mod session;
pub mod wire;

pub use limiter::AuthLimiter;
pub use presence::Presence;
pub use session::Session;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use socketioxide::extract::{AckSender, SocketRef, TryData};

use crate::server::{AppState, now_ms};
use crate::tenant::Tenant;
use session::{SessionState, disconnect_soon};
use wire::WantsAck;

/// Hidden room of one device of one user: live pushes go there. The control
/// characters keep it apart from any room a client can name.
pub fn device_room(uid: &str, device: &str) -> String {
    format!("\u{1}dev\u{1}{uid}\u{1}{device}")
}

/// Mounts the tenant's namespace (`/` for `default`, `/<name>` otherwise).
pub fn mount(state: &AppState, tenant: &Arc<Tenant>) {
    let ns = tenant.namespace();
    let name = tenant.name();
    let st = state.clone();
    state.io.ns(
        ns,
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let st = st.clone();
            let name = name.clone();
            async move { on_connect(st, name, socket, auth.ok()).await }
        },
    );
}

/// Removes a deleted tenant's namespace; its sockets are disconnected.
pub fn unmount(state: &AppState, tenant: &str) {
    let ns = crate::tenant::namespace_of(tenant);
    state.io.delete_ns(ns);
    state.presence.forget_tenant(tenant);
}

fn ack_opt(wants: bool, ack: AckSender) -> Option<AckSender> {
    wants.then_some(ack)
}

async fn on_connect(state: AppState, tenant_name: String, socket: SocketRef, auth: Option<Value>) {
    let Some(tenant) = state.tenants.get(&tenant_name) else {
        let _ = socket.disconnect();
        return;
    };
    let cfg = tenant.config();
    if !state.presence.connect(&tenant_name, cfg.max_connections) {
        state.metrics.refuse(&tenant_name, "connections");
        let _ = socket.emit(
            "error",
            &wire::fail(format!(
                "too many connections: the tenant allows {}",
                cfg.max_connections
            )),
        );
        disconnect_soon(&state.io, &tenant.namespace(), socket.id);
        return;
    }
    state
        .metrics
        .connections
        .get_or_create(&crate::telemetry::Metrics::tenant(&tenant_name))
        .inc();
    let query = socket.req_parts().uri.query().unwrap_or("").to_string();
    let sess = Arc::new(Session {
        sid: socket.id,
        ns: tenant.namespace(),
        tenant_name,
        tenant,
        device: wire::query_param(&query, "deviceId").filter(|d| !d.is_empty()),
        query,
        state: Mutex::new(SessionState::default()),
    });

    let _ = socket.emit("_settings", &json!({ "device_ttl": cfg.device_ttl_secs }));

    macro_rules! on {
        ($event:literal, |$st:ident, $se:ident, $sock:ident, $data:ident, $ack:ident, $wants:ident| $body:expr) => {{
            let ($st, $se) = (state.clone(), sess.clone());
            socket.on(
                $event,
                move |$sock: SocketRef,
                      TryData(d): TryData<Value>,
                      $ack: AckSender,
                      WantsAck($wants): WantsAck| {
                    let ($st, $se) = ($st.clone(), $se.clone());
                    let $data = d.unwrap_or(Value::Null);
                    async move { $body }
                },
            );
        }};
    }
    on!("authenticate", |st, se, sock, data, ack, wants| {
        let payload = wire::first_object(&data)
            .map(|m| Value::Object(m.clone()))
            .unwrap_or(Value::Null);
        let req = room_sync::auth_request(&payload, &se.query);
        room_sync::authenticate(&st, &se, &sock, req, ack_opt(wants, ack)).await
    });
    on!("join", |st, se, sock, data, ack, wants| room_sync::join(
        &st,
        &se,
        &sock,
        data,
        ack_opt(wants, ack)
    )
    .await);
    on!("msg", |st, se, sock, data, ack, wants| room_sync::msg(
        &st, &se, &sock, data, ack, wants
    )
    .await);
    on!("sync", |st, se, sock, data, ack, wants| room_sync::sync(
        &st,
        &se,
        &sock,
        data,
        ack_opt(wants, ack)
    )
    .await);
    on!("leave", |_st, se, sock, _data, _ack, _wants| {
        room_sync::leave(&se, sock).await
    });
    {
        let (st, se) = (state.clone(), sess.clone());
        socket.on_disconnect(move |sock: SocketRef| {
            let (st, se) = (st.clone(), se.clone());
            async move { room_sync::disconnected(&st, &se, &sock).await }
        });
    }

    // Handshake `auth` {uid, token} (or `?uid=&token=`) is the same as the
    // `authenticate` event.
    let auth = auth.filter(|a| a.as_object().is_some_and(|m| !m.is_empty()));
    let query_has_creds = wire::query_param(&sess.query, "token").is_some()
        || wire::query_param(&sess.query, "uid").is_some();
    if auth.is_some() || query_has_creds {
        let req = room_sync::auth_request(&auth.unwrap_or(Value::Null), &sess.query);
        room_sync::authenticate(&state, &sess, &socket, req, None).await;
    }

    let timeout = Duration::from_millis(cfg.auth_timeout_ms);
    let io = state.io.clone();
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let pending = {
            let st = sess.state.lock();
            st.uid.is_none()
        };
        if pending && let Some(s) = io.of(&sess.ns).and_then(|n| n.get_socket(sess.sid)) {
            let _ = s.emit("authenticate", &wire::fail("authentication timeout"));
            disconnect_soon(&io, &sess.ns, sess.sid);
        }
    });
}

/// Background chores: forget expired devices, refresh the last-seen time of
/// connected ones, drop finished rate-limit windows.
pub fn spawn_housekeeping(state: &AppState) {
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
    });
}
