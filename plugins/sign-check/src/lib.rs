//! `sign-check`: egg-socket.io's handshake signature as an `authenticate`
//! hook.
//!
//! The client sends `app`, `timestamp` (unix ms), `sign` and `uid` (or
//! `userId`), where `sign = md5(app + key + timestamp + uid)` in lower-case
//! hex and `key` is the app's secret from the plugin config:
//!
//! ```json
//! {"apps": {"signatureApp": "KEY"}, "window_ms": 300000}
//! ```
//!
//! The uid is part of the signed text, so a signature made for one user
//! cannot log in another; and each signature is accepted once: it is
//! remembered in the plugin's kv for twice the window, and a second use is
//! refused (`signature already used`). egg-socket.io signed without the uid
//! (`md5(app + key + timestamp)`); `"bind_uid": false` accepts that form, for
//! clients that cannot change, at the cost of the binding.
//!
//! (An app may also be given egg-socket.io's way, `{"signatureApp": {"key":
//! "KEY"}}` inside `apps`.) The fields are read from the auth payload, then
//! from its `meta` object (egg-socket.io's `parseMsg` envelope), then from the
//! handshake query. No `sign` anywhere → `Defer` (not a signed client: the
//! next plugin or the built-in token check decides).

use std::collections::HashMap;

use hookwire_guest::serde_json::Value;
use hookwire_guest::{Allow, AuthRequest, AuthVerdict, Context, Plugin, id_string, log};
use md5::{Digest, Md5};
use serde::Deserialize;

/// The plugin config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// App name → secret key.
    pub apps: HashMap<String, AppKey>,
    /// How far `timestamp` may be from the server clock, either way (ms).
    pub window_ms: u64,
    /// The uid is part of the signed text (default). `false`: egg-socket.io's
    /// `md5(app + key + timestamp)`, which any user's signature passes for
    /// any uid.
    pub bind_uid: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            apps: HashMap::new(),
            window_ms: 300_000,
            bind_uid: true,
        }
    }
}

/// An app's secret: `"KEY"` or egg-socket.io's `{"key": "KEY"}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum AppKey {
    /// `"KEY"`
    Plain(String),
    /// `{"key": "KEY"}`
    Egg {
        /// The secret.
        key: String,
    },
}

impl AppKey {
    fn key(&self) -> &str {
        match self {
            AppKey::Plain(k) | AppKey::Egg { key: k } => k,
        }
    }
}

/// The signed fields a client sent, in their string forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    /// `app`
    pub app: Option<String>,
    /// `timestamp`, exactly as sent (it is part of the signed text).
    pub timestamp: Option<String>,
    /// `sign`
    pub sign: String,
    /// `uid`, or `userId` as egg-socket.io calls it.
    pub uid: Option<String>,
}

/// Finds the signed fields: in the payload, in its `meta` object, or in the
/// handshake query, whichever carries `sign` first. `None` when none does.
pub fn signed_fields(req: &AuthRequest) -> Option<Signed> {
    let from_json = |obj: &Value| {
        let sign = obj.get("sign").and_then(id_string)?;
        let field = |k: &str| obj.get(k).and_then(id_string);
        Some(Signed {
            app: field("app"),
            timestamp: field("timestamp"),
            sign,
            uid: field("uid").or_else(|| field("userId")),
        })
    };
    let from_query = || {
        let sign = req.query_param("sign").filter(|s| !s.is_empty())?;
        let field = |k: &str| req.query_param(k).filter(|s| !s.is_empty());
        Some(Signed {
            app: field("app"),
            timestamp: field("timestamp"),
            sign,
            uid: field("uid").or_else(|| field("userId")),
        })
    };
    let mut found = from_json(&req.payload)
        .or_else(|| req.payload.get("meta").and_then(from_json))
        .or_else(from_query)?;
    // The uid of the `authenticate` event / handshake `auth` object counts
    // too: egg-socket.io clients put it beside the signature, ours may not.
    if found.uid.is_none() {
        found.uid = req.uid.clone().filter(|u| !u.is_empty());
    }
    Some(found)
}

/// `md5(app + key + timestamp)` in lower-case hex, as egg-socket.io signs.
pub fn sign(app: &str, key: &str, timestamp: &str) -> String {
    sign_for(app, key, timestamp, "")
}

/// `md5(app + key + timestamp + uid)` in lower-case hex: the signed text
/// names the user it logs in.
pub fn sign_for(app: &str, key: &str, timestamp: &str, uid: &str) -> String {
    let mut h = Md5::new();
    h.update(app.as_bytes());
    h.update(key.as_bytes());
    h.update(timestamp.as_bytes());
    h.update(uid.as_bytes());
    hex::encode(h.finalize())
}

/// Compares in time independent of where the first difference is, so the
/// answer time does not leak how much of a guessed sign was right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The verdict for `s` under `cfg` at `now_ms`. The signature is checked
/// before the clock, so a forger learns only "bad sign".
pub fn verify(cfg: &Config, s: &Signed, now_ms: u64) -> AuthVerdict {
    let Some(app) = s.app.as_deref() else {
        return AuthVerdict::deny("signed auth without app");
    };
    let Some(key) = cfg.apps.get(app) else {
        return AuthVerdict::deny(format!("unknown app: {app}"));
    };
    let Some(ts_text) = s.timestamp.as_deref() else {
        return AuthVerdict::deny("signed auth without timestamp");
    };
    let Ok(ts) = ts_text.parse::<u64>() else {
        return AuthVerdict::deny("timestamp is not unix milliseconds");
    };
    let Some(uid) = s.uid.as_deref() else {
        return AuthVerdict::deny("signed auth without uid or userId");
    };
    let bound = if cfg.bind_uid { uid } else { "" };
    if !same(
        &sign_for(app, key.key(), ts_text, bound),
        &s.sign.to_ascii_lowercase(),
    ) {
        return AuthVerdict::deny("bad sign");
    }
    if now_ms.abs_diff(ts) > cfg.window_ms {
        return AuthVerdict::deny(format!(
            "stale timestamp: more than {} ms from server time",
            cfg.window_ms
        ));
    }
    Allow::new(uid).claim("app", app).into()
}

/// The kv key that remembers a used signature.
fn seen_key(s: &Signed) -> String {
    format!("seen:{}", s.sign.to_ascii_lowercase())
}

/// `verify`, then refuses a signature that was accepted before. A used
/// signature is kept for twice the window: after that its timestamp is stale
/// anyway.
pub fn verify_once(cfg: &Config, s: &Signed, now_ms: u64) -> AuthVerdict {
    let verdict = verify(cfg, s, now_ms);
    if !matches!(verdict, AuthVerdict::Allow(_)) {
        return verdict;
    }
    let ttl = std::time::Duration::from_millis(cfg.window_ms.saturating_mul(2).max(1000));
    // incr answers the count after this use: 1 for the first use only, and
    // no other authenticate can slip in between a read and a write.
    if hookwire_guest::kv::incr(&seen_key(s), 1, Some(ttl)) > 1 {
        return AuthVerdict::deny("signature already used");
    }
    verdict
}

/// The plugin.
pub struct SignCheck;

#[hookwire_guest::plugin]
impl Plugin for SignCheck {
    fn authenticate(_ctx: &Context, req: AuthRequest) -> AuthVerdict {
        let Some(signed) = signed_fields(&req) else {
            return AuthVerdict::Defer;
        };
        // Parsed once per instance, not per handshake.
        let cfg = match hookwire_guest::config_cached::<Config>() {
            Ok(c) => c,
            Err(e) => {
                log::error(format!("sign-check: {e}"));
                // Fail closed: a broken config must not let anyone in.
                return AuthVerdict::deny("sign-check is misconfigured");
            }
        };
        verify_once(&cfg, &signed, hookwire_guest::now_ms())
    }
}

#[cfg(test)]
mod tests {
    use hookwire_guest::serde_json::json;
    use hookwire_guest::{Hooks, describe, testing};

    use super::*;

    const NOW: u64 = 1_543_469_988_762;

    fn cfg() -> Config {
        hookwire_guest::serde_json::from_value(
            json!({"apps": {"signatureApp": "s3cret", "eggApp": {"key": "k2"}}, "window_ms": 300000}),
        )
        .unwrap()
    }

    fn req(payload: Value) -> AuthRequest {
        AuthRequest {
            payload,
            ..Default::default()
        }
    }

    fn signed(ts: u64) -> Value {
        json!({
            "app": "signatureApp",
            "timestamp": ts,
            "sign": sign_for("signatureApp", "s3cret", &ts.to_string(), "c43d5800"),
            "userId": "c43d5800",
        })
    }

    #[test]
    fn md5_matches_egg_socket_io() {
        // md5("signatureApp" + "s3cret" + "1543469988762"), computed with Python hashlib.
        assert_eq!(
            sign("signatureApp", "s3cret", "1543469988762"),
            "1fa9880381ca8f97c5b668c2ec0a1222"
        );
        assert_eq!(sign("", "", ""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(sign("a", "b", "c"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn valid_sign_allows_with_uid() {
        let s = signed_fields(&req(signed(NOW))).unwrap();
        assert_eq!(
            verify(&cfg(), &s, NOW + 1000),
            Allow::new("c43d5800").claim("app", "signatureApp").into()
        );
    }

    #[test]
    fn uid_may_be_a_number_and_sign_upper_case() {
        let mut p = signed(NOW);
        p["uid"] = json!(1000);
        p["sign"] =
            json!(sign_for("signatureApp", "s3cret", &NOW.to_string(), "1000").to_uppercase());
        let s = signed_fields(&req(p)).unwrap();
        assert!(matches!(verify(&cfg(), &s, NOW), AuthVerdict::Allow(a) if a.uid == "1000"));
    }

    #[test]
    fn egg_style_key_and_string_timestamp() {
        let p = json!({"app": "eggApp", "timestamp": NOW.to_string(), "sign": sign_for("eggApp", "k2", &NOW.to_string(), "u"), "uid": "u"});
        let s = signed_fields(&req(p)).unwrap();
        assert!(matches!(verify(&cfg(), &s, NOW), AuthVerdict::Allow(_)));
    }

    #[test]
    fn denies_with_clear_reasons() {
        let c = cfg();
        let mut p = signed(NOW);
        p["app"] = json!("otherApp");
        assert_eq!(
            verify(&c, &signed_fields(&req(p)).unwrap(), NOW),
            AuthVerdict::deny("unknown app: otherApp")
        );

        let mut p = signed(NOW);
        p["sign"] = json!("0".repeat(32));
        assert_eq!(
            verify(&c, &signed_fields(&req(p)).unwrap(), NOW),
            AuthVerdict::deny("bad sign")
        );

        // The signed text covers the timestamp: changing it breaks the sign.
        let mut p = signed(NOW);
        p["timestamp"] = json!(NOW + 1);
        assert_eq!(
            verify(&c, &signed_fields(&req(p)).unwrap(), NOW),
            AuthVerdict::deny("bad sign")
        );

        let s = signed_fields(&req(signed(NOW))).unwrap();
        assert!(
            matches!(verify(&c, &s, NOW + 300_001), AuthVerdict::Deny(r) if r.starts_with("stale timestamp"))
        );
        assert!(
            matches!(verify(&c, &s, NOW - 300_001), AuthVerdict::Deny(r) if r.starts_with("stale timestamp"))
        );
        assert!(matches!(
            verify(&c, &s, NOW + 300_000),
            AuthVerdict::Allow(_)
        ));

        let mut p = signed(NOW);
        p.as_object_mut().unwrap().remove("userId");
        assert_eq!(
            verify(&c, &signed_fields(&req(p)).unwrap(), NOW),
            AuthVerdict::deny("signed auth without uid or userId")
        );

        let mut p = signed(NOW);
        p["timestamp"] = json!("yesterday");
        assert_eq!(
            verify(&c, &signed_fields(&req(p)).unwrap(), NOW),
            AuthVerdict::deny("timestamp is not unix milliseconds")
        );
    }

    #[test]
    fn the_uid_is_signed_unless_bind_uid_is_off() {
        // a signature made for c43d5800 does not log in mallory
        let mut p = signed(NOW);
        p["userId"] = json!("mallory");
        assert_eq!(
            verify(&cfg(), &signed_fields(&req(p)).unwrap(), NOW),
            AuthVerdict::deny("bad sign")
        );
        // egg-socket.io's unbound form: refused by default, accepted with bind_uid off
        let egg = json!({"app": "signatureApp", "timestamp": NOW, "sign": sign("signatureApp", "s3cret", &NOW.to_string()), "uid": "any"});
        let s = signed_fields(&req(egg)).unwrap();
        assert_eq!(verify(&cfg(), &s, NOW), AuthVerdict::deny("bad sign"));
        let mut legacy = cfg();
        legacy.bind_uid = false;
        assert!(matches!(verify(&legacy, &s, NOW), AuthVerdict::Allow(a) if a.uid == "any"));
    }

    #[test]
    fn a_signature_is_accepted_once() {
        testing::set_config(json!({"apps": {"signatureApp": "s3cret"}}));
        testing::set_now_ms(NOW);
        let first = SignCheck::authenticate(&Context::default(), req(signed(NOW)));
        assert!(matches!(first, AuthVerdict::Allow(_)), "{first:?}");
        assert_eq!(
            SignCheck::authenticate(&Context::default(), req(signed(NOW))),
            AuthVerdict::deny("signature already used")
        );
        // a fresh signature (new timestamp) is fine
        assert!(matches!(
            SignCheck::authenticate(&Context::default(), req(signed(NOW + 1))),
            AuthVerdict::Allow(_)
        ));
        // a refused attempt does not use up a signature
        let mut bad = signed(NOW + 2);
        bad["sign"] = json!("0".repeat(32));
        assert_eq!(
            SignCheck::authenticate(&Context::default(), req(bad)),
            AuthVerdict::deny("bad sign")
        );
    }

    #[test]
    fn fields_from_meta_and_query() {
        let p = json!({"meta": signed(NOW), "data": {"action": "requestId"}});
        assert_eq!(
            signed_fields(&req(p)).unwrap().uid.as_deref(),
            Some("c43d5800")
        );

        let sig = sign_for("signatureApp", "s3cret", &NOW.to_string(), "42");
        let r = AuthRequest {
            query: format!(
                "app=signatureApp&timestamp={NOW}&sign={sig}&uid=42&EIO=4&transport=websocket"
            ),
            payload: json!({}),
            ..Default::default()
        };
        let s = signed_fields(&r).unwrap();
        assert!(matches!(verify(&cfg(), &s, NOW), AuthVerdict::Allow(a) if a.uid == "42"));
    }

    #[test]
    fn no_sign_defers() {
        assert_eq!(signed_fields(&req(json!({"uid": 1, "token": "t"}))), None);
        assert_eq!(
            SignCheck::authenticate(&Context::default(), req(json!({"uid": 1, "token": "t"}))),
            AuthVerdict::Defer
        );
    }

    #[test]
    fn hook_reads_config_and_clock() {
        testing::set_config(json!({"apps": {"signatureApp": "s3cret"}}));
        testing::set_now_ms(NOW + 5_000);
        assert!(matches!(
            SignCheck::authenticate(&Context::default(), req(signed(NOW))),
            AuthVerdict::Allow(_)
        ));
        testing::set_config(json!({"apps": {"signatureApp": "s3cret"}, "window_ms": 1000}));
        assert!(matches!(
            SignCheck::authenticate(&Context::default(), req(signed(NOW))),
            AuthVerdict::Deny(_)
        ));
        testing::set_config(json!({"apps": ["not", "a", "map"]}));
        assert_eq!(
            SignCheck::authenticate(&Context::default(), req(signed(NOW))),
            AuthVerdict::deny("sign-check is misconfigured")
        );
        assert_eq!(describe::<SignCheck>().hooks, Hooks::AUTHENTICATE);
        assert_eq!(describe::<SignCheck>().name, "sign-check");
    }
}
