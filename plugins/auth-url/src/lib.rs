//! `auth-url`: asks the tenant's web app who the user is and which rooms
//! they belong to.
//!
//! Config: `{"url": "http://127.0.0.1:8080/rooms", "scheme": "Bearer"}`
//! (`scheme` defaults to `Bearer`; `user_room_prefix`, default `user_`, is
//! explained below). The URL's host must be on the plugin's allowlist.
//!
//! The token is the `token` of the auth payload, else the `token` handshake
//! query parameter (`io("/site?token=12345")`). The plugin sends
//! `GET <url>` with `Authorization: <scheme> <token>` and expects:
//!
//! - 2xx with `{"uid": ..., "rooms": [...]}` → allow as `uid`, joining
//!   `rooms`. A bare array of rooms is accepted too: the uid is then
//!   taken from the room that starts with `user_room_prefix`
//!   (e.g. `user_42` → `42`). An answer that names no user is a deny: the
//!   uid the client claims is never trusted on its own.
//! - 401 or 403 → deny, "token refused".
//! - anything else, or no answer → deny with the status or transport error.
//!
//! No token → deny "missing token": a tenant that installed this plugin
//! authenticates by token.

use hookwire_guest::http::{Request, Response};
use hookwire_guest::serde_json::Value;
use hookwire_guest::{Allow, AuthRequest, AuthVerdict, Context, Error, Plugin, id_string, log};
use serde::Deserialize;

/// The plugin config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The endpoint answering with the user's uid and rooms.
    pub url: String,
    /// The `Authorization` scheme.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// How a user room is named, for bare-array answers.
    #[serde(default = "default_prefix")]
    pub user_room_prefix: String,
}

fn default_scheme() -> String {
    "Bearer".into()
}

fn default_prefix() -> String {
    "user_".into()
}

/// The token the client presented, from the payload or the query.
pub fn token(req: &AuthRequest) -> Option<String> {
    req.token
        .clone()
        .or_else(|| req.payload.get("token").and_then(id_string))
        .or_else(|| req.query_param("token"))
        .filter(|t| !t.is_empty())
}

/// The request sent to the endpoint.
pub fn request(cfg: &Config, token: &str) -> Request {
    Request::get(&cfg.url)
        .header("Authorization", format!("{} {}", cfg.scheme, token))
        .header("Accept", "application/json")
}

/// The verdict for the endpoint's answer.
pub fn verdict(cfg: &Config, resp: &Response) -> AuthVerdict {
    match resp.status {
        200..=299 => {}
        401 | 403 => return AuthVerdict::deny(format!("token refused ({})", resp.status)),
        s => return AuthVerdict::deny(format!("auth endpoint answered {s}")),
    }
    let body: Value = match resp.json() {
        Ok(v) => v,
        Err(_) => return AuthVerdict::deny("auth endpoint answered with invalid JSON"),
    };
    let (uid, rooms) = match &body {
        Value::Object(o) => (
            o.get("uid").and_then(id_string),
            o.get("rooms").unwrap_or(&Value::Null),
        ),
        Value::Array(_) => (None, &body),
        _ => {
            return AuthVerdict::deny(
                "auth endpoint answered neither {uid, rooms} nor a list of rooms",
            );
        }
    };
    let rooms: Vec<String> = match rooms {
        Value::Array(items) => items.iter().filter_map(id_string).collect(),
        Value::Null => Vec::new(),
        _ => return AuthVerdict::deny("auth endpoint answered `rooms` that is not a list"),
    };
    let from_user_room = || {
        rooms
            .iter()
            .find_map(|r| r.strip_prefix(cfg.user_room_prefix.as_str()))
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    };
    match uid.or_else(from_user_room) {
        Some(uid) => Allow::new(uid).rooms(rooms).into(),
        None => AuthVerdict::deny("auth endpoint did not say who the user is"),
    }
}

/// The plugin.
pub struct AuthUrl;

#[hookwire_guest::plugin]
impl Plugin for AuthUrl {
    fn authenticate(_ctx: &Context, req: AuthRequest) -> AuthVerdict {
        let cfg = match hookwire_guest::config_cached::<Config>() {
            Ok(c) => c,
            Err(e) => {
                log::error(format!("auth-url: {e}"));
                return AuthVerdict::deny("auth-url is misconfigured");
            }
        };
        let Some(token) = token(&req) else {
            return AuthVerdict::deny("missing token");
        };
        match request(&cfg, &token).send() {
            Ok(resp) => verdict(&cfg, &resp),
            Err(e) => {
                log::warn(format!("auth-url: {e}"));
                let detail = match e {
                    Error::Http(detail) => detail,
                    other => other.to_string(),
                };
                AuthVerdict::deny(format!("auth endpoint unreachable: {detail}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hookwire_guest::serde_json::json;
    use hookwire_guest::{Hooks, describe, testing};

    use super::*;

    fn cfg() -> Config {
        hookwire_guest::serde_json::from_value(json!({"url": "http://127.0.0.1:9/rooms"})).unwrap()
    }

    #[test]
    fn token_from_payload_or_query() {
        let r = AuthRequest {
            token: Some("t1".into()),
            query: "token=t2".into(),
            ..Default::default()
        };
        assert_eq!(token(&r).as_deref(), Some("t1"));
        let r = AuthRequest {
            payload: json!({"token": 123}),
            ..Default::default()
        };
        assert_eq!(token(&r).as_deref(), Some("123"));
        let r = AuthRequest {
            query: "EIO=4&token=12345&deviceId=090909".into(),
            ..Default::default()
        };
        assert_eq!(token(&r).as_deref(), Some("12345"));
        let r = AuthRequest {
            query: "token=".into(),
            ..Default::default()
        };
        assert_eq!(token(&r), None);
    }

    #[test]
    fn request_carries_scheme_and_token() {
        let mut c = cfg();
        c.scheme = "Token".into();
        let r = request(&c, "abc");
        assert_eq!(r.method, "GET");
        assert_eq!(r.url, "http://127.0.0.1:9/rooms");
        assert!(
            r.headers
                .contains(&("Authorization".into(), "Token abc".into()))
        );
    }

    #[test]
    fn ok_answers() {
        let c = cfg();
        let resp = Response::new(200, r#"{"uid": 42, "rooms": ["user_42", "staff", 7]}"#);
        assert_eq!(
            verdict(&c, &resp),
            Allow::new("42").rooms(["user_42", "staff", "7"]).into()
        );
        // A bare list of rooms: the user room names the user.
        let resp = Response::new(200, r#"["staff", "user_1"]"#);
        assert_eq!(
            verdict(&c, &resp),
            Allow::new("1").rooms(["staff", "user_1"]).into()
        );
        // Nobody named: never fall back to the uid the client claims.
        let resp = Response::new(200, r#"{"rooms": ["staff"]}"#);
        assert_eq!(
            verdict(&c, &resp),
            AuthVerdict::deny("auth endpoint did not say who the user is")
        );
    }

    #[test]
    fn refusals() {
        let c = cfg();
        assert_eq!(
            verdict(&c, &Response::new(401, "")),
            AuthVerdict::deny("token refused (401)")
        );
        assert_eq!(
            verdict(&c, &Response::new(403, "")),
            AuthVerdict::deny("token refused (403)")
        );
        assert_eq!(
            verdict(&c, &Response::new(500, "")),
            AuthVerdict::deny("auth endpoint answered 500")
        );
        assert_eq!(
            verdict(&c, &Response::new(200, "<html>")),
            AuthVerdict::deny("auth endpoint answered with invalid JSON")
        );
        assert!(matches!(
            verdict(&c, &Response::new(200, r#"{"uid":1,"rooms":"x"}"#)),
            AuthVerdict::Deny(_)
        ));
    }

    #[test]
    fn hook_end_to_end_with_mock_http() {
        testing::set_config(json!({"url": "http://127.0.0.1:9/rooms", "scheme": "Bearer"}));
        testing::set_http(|req| {
            let auth = req
                .headers
                .iter()
                .find(|(k, _)| k == "Authorization")
                .map(|(_, v)| v.as_str());
            Ok(match auth {
                Some("Bearer good") => Response::new(200, r#"{"uid": "u1", "rooms": ["room_a"]}"#),
                _ => Response::new(401, "no"),
            })
        });
        let ctx = Context::default();
        let req = |q: &str| AuthRequest {
            query: q.into(),
            ..Default::default()
        };
        assert_eq!(
            AuthUrl::authenticate(&ctx, req("token=good")),
            Allow::new("u1").rooms(["room_a"]).into()
        );
        assert_eq!(
            AuthUrl::authenticate(&ctx, req("token=bad")),
            AuthVerdict::deny("token refused (401)")
        );
        assert_eq!(
            AuthUrl::authenticate(&ctx, req("")),
            AuthVerdict::deny("missing token")
        );
        assert_eq!(testing::http_requests().len(), 2);

        testing::set_http(|_| Err("connection refused".into()));
        assert!(matches!(
            AuthUrl::authenticate(&ctx, req("token=good")),
            AuthVerdict::Deny(r) if r == "auth endpoint unreachable: connection refused"
        ));

        testing::set_config(json!({"scheme": "Bearer"}));
        assert_eq!(
            AuthUrl::authenticate(&ctx, req("token=good")),
            AuthVerdict::deny("auth-url is misconfigured")
        );
        assert_eq!(describe::<AuthUrl>().hooks, Hooks::AUTHENTICATE);
    }
}
