//! `authenticate`, from the event or the handshake: the rate limit, the
//! tenant's hook, the built-in token check, then kick-out of the uid's
//! older sockets on every node and the user's pending pushes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::Services;
use super::answer::{hook_failed, refused, reply};
use super::refusal::Refusal;
use super::session::{Session, disconnect_soon};
use super::wire::{self, id_string, ok};
use super::{device_room, push};
use crate::cluster::adapter::{Ack, Socket};
use crate::policy::{AuthRequest, AuthVerdict, Hook};

fn string_field(m: &Map<String, Value>, k: &str) -> Option<String> {
    match m.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Builds the hook input from an `authenticate` payload or handshake data.
pub fn auth_request(payload: &Value, query: &str) -> AuthRequest {
    let obj = payload.as_object();
    let uid = obj
        .and_then(|m| id_string(m.get("uid")))
        .or_else(|| wire::query_param(query, "uid").filter(|s| !s.is_empty()));
    let token = obj
        .and_then(|m| string_field(m, "token"))
        .or_else(|| wire::query_param(query, "token"));
    AuthRequest {
        uid,
        token,
        payload: payload.clone(),
        query: query.to_string(),
    }
}

/// `authenticate`, from the event or from the handshake.
pub async fn authenticate(
    state: &Services,
    sess: &Arc<Session>,
    socket: &Socket,
    req: AuthRequest,
    ack: Option<Ack>,
) {
    let cfg = sess.tenant.config();
    {
        let mut st = sess.state.lock();
        if let Some(uid) = &st.uid {
            let same = req.uid.as_deref().is_none_or(|u| u == &**uid);
            drop(st);
            let v = if same {
                ok("auth success")
            } else {
                refused(state, sess, Refusal::OtherUid)
            };
            return reply(socket, ack, "authenticate", &v);
        }
        if st.expired {
            drop(st);
            let v = refused(state, sess, Refusal::AuthTimeout);
            return reply(socket, ack, "authenticate", &v);
        }
        if st.authenticating {
            drop(st);
            let v = refused(state, sess, Refusal::AuthInProgress);
            return reply(socket, ack, "authenticate", &v);
        }
        st.authenticating = true;
    }
    let (uid, rooms, claims) = match decide_auth(state, sess, &client_address(socket), &req).await {
        Ok((uid, rooms, claims)) => (Arc::<str>::from(uid), rooms, claims),
        Err(refusal) => {
            sess.state.lock().authenticating = false;
            let v = refused(state, sess, refusal);
            reply(socket, ack, "authenticate", &v);
            disconnect_soon(&state.io, &sess.ns, sess.sid);
            return;
        }
    };

    // Kick older sockets of this uid first, on every node, so the newcomer
    // is the only one.
    let (older_here, older_anywhere) = state
        .presence
        .user_online(&sess.tenant_name, &uid, sess.clone())
        .await;
    let kicked_any = cfg.kickout && older_anywhere > 0;
    if kicked_any {
        for o in &older_here {
            o.state.lock().kicked = true;
        }
        kick_older(state, sess, &uid).await;
    }
    {
        let mut st = sess.state.lock();
        st.uid = Some(uid.clone());
        st.claims = (!claims.is_null()).then(|| Box::new(claims));
        st.kicker = kicked_any;
        st.authenticating = false;
    }
    // Authenticated: the auth deadline can no longer fire.
    sess.cancel_deadline();
    socket.join(super::uid_room(&uid));
    socket.join(format!("{}{}", cfg.user_room_prefix, uid));
    socket.join(device_room(&uid, sess.device_key()));
    if !rooms.is_empty() {
        socket.join(rooms);
    }
    reply(socket, ack, "authenticate", &ok("auth success"));
    tracing::debug!(tenant = %sess.tenant_name, %uid, sid = %sess.sid, "authenticated");

    if cfg.join_timeout_ms > 0 {
        let (io, timer_sess) = (state.io.clone(), sess.clone());
        let timeout = Duration::from_millis(cfg.join_timeout_ms);
        let deadline = tokio::spawn(async move {
            let sess = timer_sess;
            tokio::time::sleep(timeout).await;
            // A join waiting for its hook is let finish.
            let expired = {
                let mut st = sess.state.lock();
                st.expired = st.rooms.is_empty() && !st.joining;
                st.expired
            };
            if expired && let Some(s) = io.of(&sess.ns).and_then(|n| n.get_socket(sess.sid)) {
                let _ = s.emit("join", &Value::from(Refusal::JoinTimeout));
                disconnect_soon(&io, &sess.ns, sess.sid);
            }
        });
        sess.set_deadline(deadline);
    }
    push::on_authenticated(state, sess, &uid).await;
}

/// Disconnects the other sockets of `uid`, wherever they are: they join
/// the kick room of this socket (which marks them as kicked), get
/// `kickout`, and are disconnected a little later so the event reaches
/// them on every transport.
async fn kick_older(state: &Services, sess: &Session, uid: &str) {
    let Some(ns) = state.io.of(&sess.ns) else {
        return;
    };
    let room = super::kick_room(sess.sid);
    if let Err(e) = ns
        .clone()
        .within(super::uid_room(uid))
        .except(sess.sid)
        .join(room.clone())
        .await
    {
        tracing::warn!(tenant = %sess.tenant_name, %uid, error = ?e, "kickout may not reach other nodes");
    }
    super::rooms::kickout(ns, room, uid, "logged in elsewhere").await;
}

/// The peer address of the socket's connection, as text ("" when unknown).
fn client_address(socket: &Socket) -> String {
    socket
        .req_parts()
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

/// Rate limit, the tenant's `authenticate` hook, then the built-in token
/// check: the allowed (uid, extra rooms, claims), or the reason to refuse.
/// `client` is the connection's address.
pub async fn decide_auth(
    state: &Services,
    sess: &Session,
    client: &str,
    req: &AuthRequest,
) -> Result<(String, Vec<String>, Value), Refusal> {
    let cfg = sess.tenant.config();
    // Attempts count per uid and client address: a client guessing tokens
    // is refused after the limit, while the uid's owner on another address
    // can still log in (a count per uid alone would let anyone lock any
    // user out). Behind a proxy every client has the proxy's address, and
    // the count is per uid again.
    let limiter_key = match &req.uid {
        Some(uid) => format!("{uid}\u{1}{client}"),
        None => format!("\u{1}sid:{}", sess.sid),
    };
    if !state
        .auth_limiter
        .allow(
            &sess.tenant_name,
            &limiter_key,
            cfg.auth_attempts_per_minute,
        )
        .await
    {
        return Err(Refusal::AuthRateLimited);
    }
    let verdict = match sess
        .tenant
        .policy()
        .authenticate(&sess.hook_context(), req)
        .await
    {
        Ok(v) => v,
        Err(e) if hook_failed(&state.metrics, sess, Hook::Authenticate, &e) => AuthVerdict::Defer,
        Err(e) => return Err(Refusal::AuthUnavailable(e.to_string())),
    };
    let allowed = match verdict {
        AuthVerdict::Allow { uid, rooms, claims } => (uid, rooms, claims),
        AuthVerdict::Deny { reason } => {
            return Err(Refusal::Plugin {
                hook: Hook::Authenticate,
                reason,
            });
        }
        AuthVerdict::Defer => (
            builtin_token_check(state, sess, req).await?,
            Vec::new(),
            Value::Null,
        ),
    };
    if allowed.0.is_empty() {
        return Err(Refusal::UidRequired);
    }
    Ok(allowed)
}

/// The built-in token check (or any uid when `force_user_auth` is off).
async fn builtin_token_check(
    state: &Services,
    sess: &Session,
    req: &AuthRequest,
) -> Result<String, Refusal> {
    let uid = req.uid.clone().ok_or(Refusal::UidRequired)?;
    if !sess.tenant.config().force_user_auth {
        return Ok(uid);
    }
    let token = req
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(Refusal::TokenRequired)?;
    let user = state
        .metrics
        .timed("get_user", state.store.get_user(&sess.tenant_name, &uid))
        .await
        .map_err(|e| Refusal::AuthUnavailable(e.to_string()))?;
    match user {
        Some(u) if crate::auth::ct_eq(&u.token_hash, &crate::auth::sha256_hex(token)) => Ok(uid),
        // One text for both, so a client cannot probe which uids exist.
        Some(_) | None => Err(Refusal::InvalidToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HookError;
    use crate::policy::{HookContext, Policy};
    use crate::protocol::testing::{builtin_session, services, session};
    use crate::store::UserRecord;
    use crate::tenant::TenantConfig;
    use async_trait::async_trait;
    use serde_json::json;

    fn login(uid: &str, token: &str) -> AuthRequest {
        auth_request(&json!({"uid": uid, "token": token}), "")
    }

    async fn with_user(state: &Services, uid: &str, token: &str) {
        let user = UserRecord {
            uid: uid.into(),
            token_hash: crate::auth::sha256_hex(token),
            created_ms: 0,
        };
        state.store.put_user("t1", &user).await.unwrap();
    }

    #[tokio::test]
    async fn the_built_in_check_takes_the_user_s_token_only() {
        let tmp = services();
        let state = &tmp.services;
        with_user(state, "u7", "good").await;
        let sess = builtin_session(TenantConfig::default());
        let ok = decide_auth(state, &sess, "10.0.0.1", &login("u7", "good")).await;
        assert_eq!(ok.unwrap().0, "u7");
        for (req, want) in [
            (login("u7", "bad"), Refusal::InvalidToken),
            (login("nobody", "good"), Refusal::InvalidToken),
            (login("u7", ""), Refusal::TokenRequired),
            (
                auth_request(&json!({"token": "good"}), ""),
                Refusal::UidRequired,
            ),
        ] {
            let r = decide_auth(state, &sess, "10.0.0.1", &req).await;
            assert_eq!(r.unwrap_err(), want, "{req:?}");
        }
    }

    #[tokio::test]
    async fn credentials_come_from_the_payload_or_the_handshake_query() {
        let req = auth_request(&json!({}), "uid=u3&token=t%20k");
        assert_eq!(req.uid.as_deref(), Some("u3"));
        assert_eq!(req.token.as_deref(), Some("t k"));
        let req = auth_request(&json!({"uid": 42, "token": "p"}), "uid=u3&token=q");
        assert_eq!(
            (req.uid.as_deref(), req.token.as_deref()),
            (Some("42"), Some("p"))
        );
    }

    #[tokio::test]
    async fn guesses_are_limited_per_uid_and_address() {
        let tmp = services();
        let state = &tmp.services;
        with_user(state, "u7", "good").await;
        let cfg = TenantConfig {
            auth_attempts_per_minute: 3,
            ..TenantConfig::default()
        };
        let sess = builtin_session(cfg);
        for _ in 0..3 {
            let r = decide_auth(state, &sess, "10.0.0.66", &login("u7", "guess")).await;
            assert_eq!(r.unwrap_err(), Refusal::InvalidToken);
        }
        let r = decide_auth(state, &sess, "10.0.0.66", &login("u7", "good")).await;
        assert_eq!(
            r.unwrap_err(),
            Refusal::AuthRateLimited,
            "the guesser is held"
        );
        let r = decide_auth(state, &sess, "10.0.0.1", &login("u7", "good")).await;
        assert_eq!(r.unwrap().0, "u7", "the owner elsewhere still logs in");
    }

    struct Decides;

    #[async_trait]
    impl Policy for Decides {
        async fn authenticate(
            &self,
            _: &HookContext,
            req: &AuthRequest,
        ) -> Result<AuthVerdict, HookError> {
            Ok(match req.token.as_deref() {
                Some("plugin-ok") => AuthVerdict::Allow {
                    uid: "from-plugin".into(),
                    rooms: vec!["extra".into()],
                    claims: json!({"role": "mod"}),
                },
                Some("plugin-no") => AuthVerdict::Deny {
                    reason: "banned".into(),
                },
                _ => AuthVerdict::Defer,
            })
        }
    }

    #[tokio::test]
    async fn the_tenant_s_hook_decides_first_and_defers_to_the_built_in_check() {
        let tmp = services();
        let state = &tmp.services;
        with_user(state, "u7", "good").await;
        let sess = session(Box::new(Decides), TenantConfig::default());
        let (uid, rooms, claims) = decide_auth(state, &sess, "", &login("x", "plugin-ok"))
            .await
            .unwrap();
        assert_eq!(
            (uid.as_str(), rooms, claims),
            (
                "from-plugin",
                vec!["extra".to_string()],
                json!({"role": "mod"})
            )
        );
        let r = decide_auth(state, &sess, "", &login("x", "plugin-no")).await;
        assert_eq!(
            r.unwrap_err(),
            Refusal::Plugin {
                hook: Hook::Authenticate,
                reason: "banned".into()
            }
        );
        let r = decide_auth(state, &sess, "", &login("u7", "good")).await;
        assert_eq!(r.unwrap().0, "u7", "deferred to the token check");
    }
}
