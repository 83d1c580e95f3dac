//! An in-memory host for native unit tests (not part of wasm32 builds).
//!
//! In a native build (`cargo test --target x86_64-unknown-linux-gnu`) the
//! host wrappers ([`config`](crate::config), [`kv`](crate::kv),
//! [`now_ms`](crate::now_ms), [`http`](crate::http), [`log`](crate::log), ...)
//! talk to this mock instead of a runtime, so a plugin's hooks can be called
//! directly from its tests:
//!
//! ```
//! use hookwire_guest::{testing, kv};
//! use serde_json::json;
//!
//! testing::set_config(json!({"burst": 2}));
//! testing::set_now_ms(1_000);
//! assert_eq!(kv::incr("n", 1, None), 1);
//! testing::advance_ms(500);
//! assert_eq!(hookwire_guest::now_ms(), 1_500);
//! ```
//!
//! State is per thread: every `#[test]` runs on its own thread, so tests do
//! not see each other's config, keys or clock. [`reset`] starts over within
//! one test.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;

use crate::http::{Request, Response};
use crate::log::Level;

/// The default mock clock: 2023-11-14T22:13:20Z, fixed so tests are
/// deterministic.
pub const DEFAULT_NOW_MS: u64 = 1_700_000_000_000;

type HttpHandler = Rc<dyn Fn(&Request) -> Result<Response, String>>;

struct Mock {
    config: String,
    now_ms: u64,
    /// value and expiry (unix ms; 0 = none)
    kv: HashMap<String, (Vec<u8>, u64)>,
    logs: Vec<(Level, String)>,
    http: Option<HttpHandler>,
    requests: Vec<Request>,
    random_counter: u8,
}

impl Default for Mock {
    fn default() -> Self {
        Mock {
            config: "null".into(),
            now_ms: DEFAULT_NOW_MS,
            kv: HashMap::new(),
            logs: Vec::new(),
            http: None,
            requests: Vec::new(),
            random_counter: 0,
        }
    }
}

impl Mock {
    fn live(&mut self, key: &str) -> Option<&mut (Vec<u8>, u64)> {
        let now = self.now_ms;
        if self
            .kv
            .get(key)
            .is_some_and(|(_, exp)| *exp != 0 && *exp <= now)
        {
            self.kv.remove(key);
        }
        self.kv.get_mut(key)
    }
}

thread_local! {
    static MOCK: RefCell<Mock> = RefCell::new(Mock::default());
}

fn with<R>(f: impl FnOnce(&mut Mock) -> R) -> R {
    MOCK.with(|m| f(&mut m.borrow_mut()))
}

/// Forgets config, keys, logs, requests and the HTTP handler; the clock goes
/// back to [`DEFAULT_NOW_MS`].
pub fn reset() {
    with(|m| *m = Mock::default());
}

/// Sets the config that [`config`](crate::config) and
/// [`config_value`](crate::config_value) return.
pub fn set_config(config: Value) {
    with(|m| m.config = config.to_string());
}

/// Sets the raw config text (to test a plugin's handling of invalid JSON).
pub fn set_config_text(text: impl Into<String>) {
    with(|m| m.config = text.into());
}

/// Sets the mock clock (unix milliseconds).
pub fn set_now_ms(now_ms: u64) {
    with(|m| m.now_ms = now_ms);
}

/// Moves the mock clock forward; keys whose TTL has passed expire.
pub fn advance_ms(ms: u64) {
    with(|m| m.now_ms += ms);
}

/// Answers every [`http::fetch`](crate::http::fetch) with `handler`. Without a
/// handler, fetches fail like an unreachable host.
pub fn set_http(handler: impl Fn(&Request) -> Result<Response, String> + 'static) {
    with(|m| m.http = Some(Rc::new(handler)));
}

/// The requests sent through [`http::fetch`](crate::http::fetch) so far.
pub fn http_requests() -> Vec<Request> {
    with(|m| m.requests.clone())
}

/// The messages logged so far.
pub fn logs() -> Vec<(Level, String)> {
    with(|m| m.logs.clone())
}

/// The native stand-ins for the import functions, with the generated
/// signatures so `host.rs` is the same code on both targets.
pub(crate) mod sys {
    use super::{Request, Response, with};
    pub(crate) use crate::__bindings::hookwire::policy::host::{HttpRequest, HttpResponse, Level};

    pub(crate) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => crate::log::Level::Trace,
            Level::Debug => crate::log::Level::Debug,
            Level::Info => crate::log::Level::Info,
            Level::Warn => crate::log::Level::Warn,
            Level::Error => crate::log::Level::Error,
        };
        with(|m| m.logs.push((level, message.to_owned())));
    }

    pub(crate) fn config() -> String {
        with(|m| m.config.clone())
    }

    pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
        with(|m| m.live(key).map(|(v, _)| v.clone()))
    }

    pub(crate) fn kv_set(key: &str, value: &[u8], ttl_ms: u64) {
        with(|m| {
            let exp = if ttl_ms == 0 { 0 } else { m.now_ms + ttl_ms };
            m.kv.insert(key.to_owned(), (value.to_vec(), exp));
        })
    }

    pub(crate) fn kv_incr(key: &str, delta: i64, ttl_ms: u64) -> i64 {
        with(|m| {
            let now = m.now_ms;
            let (bytes, _) = match m.live(key) {
                Some(entry) => entry,
                None => {
                    let exp = if ttl_ms == 0 { 0 } else { now + ttl_ms };
                    m.kv.entry(key.to_owned()).or_insert((b"0".to_vec(), exp))
                }
            };
            // Stored as decimal text, like the host's stores do.
            let n = std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
                .saturating_add(delta);
            *bytes = n.to_string().into_bytes();
            n
        })
    }

    pub(crate) fn now_ms() -> u64 {
        with(|m| m.now_ms)
    }

    pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
        // Deterministic on purpose: tests must not depend on luck.
        with(|m| {
            (0..len)
                .map(|_| {
                    m.random_counter = m.random_counter.wrapping_add(1);
                    m.random_counter
                })
                .collect()
        })
    }

    pub(crate) fn http_fetch(req: &HttpRequest) -> Result<HttpResponse, String> {
        let req = Request {
            method: req.method.clone(),
            url: req.url.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
        };
        let handler = with(|m| {
            m.requests.push(req.clone());
            m.http.clone()
        });
        // Called outside the borrow so a handler may use the mock itself.
        let resp: Response = match handler {
            Some(h) => h(&req)?,
            None => {
                return Err(format!(
                    "no HTTP handler set in the mock host for {}",
                    req.url
                ));
            }
        };
        Ok(HttpResponse {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::{http, kv};

    #[test]
    fn kv_ttl_follows_the_mock_clock() {
        kv::set("a", b"1", Some(Duration::from_millis(100)));
        kv::set("forever", b"x", None);
        assert_eq!(kv::incr("n", 5, Some(Duration::from_millis(50))), 5);
        assert_eq!(kv::incr("n", -2, Some(Duration::from_secs(100))), 3);
        advance_ms(60);
        // The TTL applies when the key is created, not on later increments.
        assert_eq!(kv::get("n"), None);
        assert_eq!(kv::get("a").as_deref(), Some(&b"1"[..]));
        advance_ms(40);
        assert_eq!(kv::get("a"), None);
        assert_eq!(kv::get("forever").as_deref(), Some(&b"x"[..]));
        kv::set_json("j", &json!({"k": [1]}), None).unwrap();
        assert_eq!(
            kv::get_json::<serde_json::Value>("j").unwrap(),
            Some(json!({"k": [1]}))
        );
        assert!(kv::get_json::<u32>("forever").is_err());
    }

    #[test]
    fn config_and_http_and_logs() {
        assert_eq!(crate::config_value(), Value::Null);
        #[derive(serde::Deserialize, Debug, PartialEq, Default)]
        #[serde(default)]
        struct C {
            n: u32,
        }
        assert_eq!(crate::config::<C>().unwrap(), C { n: 0 });
        set_config(json!({"n": 3}));
        assert_eq!(crate::config::<C>().unwrap(), C { n: 3 });
        set_config_text("{oops");
        assert_eq!(crate::config_value(), Value::Null);

        assert!(matches!(
            http::Request::get("http://x/").send(),
            Err(crate::Error::Http(_))
        ));
        set_http(|r| Ok(http::Response::new(201, r.url.clone())));
        let resp = http::Request::post("http://x/y")
            .json(&json!({"a": 1}))
            .send()
            .unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (201, &b"http://x/y"[..])
        );
        let sent = http_requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].body.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert!(
            sent[1]
                .headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );

        crate::log::warn("careful");
        assert_eq!(logs(), [(Level::Warn, "careful".to_string())]);
        reset();
        assert!(logs().is_empty());
        assert_eq!(crate::now_ms(), DEFAULT_NOW_MS);
    }
}
