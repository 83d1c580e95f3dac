//! Safe wrappers for the host imports of `hookwire:policy/host`.
//!
//! Every call is scoped to the plugin's tenant by the host. In a wasm32 build
//! these call the host; in a native build (your plugin's `cargo test`) they
//! call the in-memory mock of [`crate::testing`], so hook logic can be tested
//! without a runtime.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// The raw import functions: the generated bindings in a component, the
/// thread-local mock in a native build. Nothing else in the crate calls
/// either directly.
#[cfg(target_arch = "wasm32")]
pub(crate) mod sys {
    pub(crate) use crate::__bindings::hookwire::policy::host::{
        HttpRequest, Level, config, http_fetch, kv_get, kv_incr, kv_set, log, now_ms, random_bytes,
    };
}
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::testing::sys;

/// The config text. A config change is a new plugin version, which the host
/// runs in new instances, so an instance asks the host once.
#[cfg(target_arch = "wasm32")]
fn config_text() -> Rc<str> {
    thread_local! {
        static TEXT: std::cell::OnceCell<Rc<str>> = const { std::cell::OnceCell::new() };
    }
    TEXT.with(|t| t.get_or_init(|| sys::config().into()).clone())
}

/// The config text of the mock host, which a test may change at any time.
#[cfg(not(target_arch = "wasm32"))]
fn config_text() -> Rc<str> {
    sys::config().into()
}

/// This plugin's JSON config as the admin set it (`Value::Null` when none was
/// set or it is not valid JSON).
///
/// An instance's config never changes (a config change is a new plugin
/// version, run in new instances); [`config_state`] keeps what you derive
/// from it for the instance's life.
pub fn config_value() -> Value {
    serde_json::from_str(&config_text()).unwrap_or(Value::Null)
}

/// `build(config_text)`, computed once per instance and shared by every
/// later call: a parsed config, a compiled pattern, a lookup table. One value
/// per type `T`; it is rebuilt only if the config text changes, which
/// happens in native tests ([`testing::set_config`](crate::testing::set_config)),
/// never within a component instance.
///
/// ```
/// use hookwire_guest::{config_state, testing};
/// use hookwire_guest::serde_json::{Value, json};
///
/// struct Words(Vec<String>);
/// fn words() -> std::rc::Rc<Words> {
///     config_state(|text| {
///         let v: Value = hookwire_guest::serde_json::from_str(text).unwrap_or(Value::Null);
///         let list = v["words"].as_array().into_iter().flatten();
///         Words(list.filter_map(|w| w.as_str().map(str::to_lowercase)).collect())
///     })
/// }
///
/// testing::set_config(json!({"words": ["Darn"]}));
/// assert_eq!(words().0, ["darn"]);
/// assert!(std::rc::Rc::ptr_eq(&words(), &words())); // built once
/// ```
pub fn config_state<T: 'static>(build: impl FnOnce(&str) -> T) -> Rc<T> {
    type Slot = (TypeId, Rc<str>, Rc<dyn Any>);
    thread_local! {
        static STATES: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
    }
    let text = config_text();
    let id = TypeId::of::<T>();
    let hit = STATES.with_borrow(|states| {
        states
            .iter()
            .find(|(t, key, _)| *t == id && (Rc::ptr_eq(key, &text) || **key == *text))
            .map(|(_, _, v)| v.clone())
    });
    if let Some(v) = hit.and_then(|v| v.downcast::<T>().ok()) {
        return v;
    }
    // Built outside the borrow: `build` may use `config_state` itself.
    let v = Rc::new(build(&text));
    STATES.with_borrow_mut(|states| {
        states.retain(|(t, _, _)| *t != id);
        states.push((id, text, v.clone()));
    });
    v
}

/// This plugin's JSON config deserialized into `T`.
///
/// A missing config (`null`) deserializes like an empty object `{}`, so a
/// config struct with `#[serde(default)]` works with no config at all.
///
/// ```no_run
/// #[derive(serde::Deserialize, Default)]
/// #[serde(default)]
/// struct Config { words: Vec<String> }
///
/// let cfg: Config = hookwire_guest::config().unwrap_or_default();
/// ```
pub fn config<T: DeserializeOwned>() -> Result<T, Error> {
    let v = match config_value() {
        Value::Null => Value::Object(Default::default()),
        v => v,
    };
    serde_json::from_value(v).map_err(|e| Error::Config(e.to_string()))
}

/// [`config::<T>()`](config), deserialized once per instance and shared by
/// later calls (see [`config_state`]).
///
/// ```
/// #[derive(serde::Deserialize, Default)]
/// #[serde(default)]
/// struct Config { words: Vec<String> }
///
/// let cfg = hookwire_guest::config_cached::<Config>().unwrap_or_default();
/// assert!(cfg.words.is_empty());
/// ```
pub fn config_cached<T: DeserializeOwned + 'static>() -> Result<Rc<T>, Error> {
    config_state(|_| config::<T>().map(Rc::new))
        .as_ref()
        .clone()
}

/// Wall-clock time, unix milliseconds, as the host sees it.
pub fn now_ms() -> u64 {
    sys::now_ms()
}

/// `len` bytes from the host's cryptographically secure random source.
pub fn random_bytes(len: u32) -> Vec<u8> {
    sys::random_bytes(len)
}

/// Structured logs through the host, tagged with tenant and plugin.
pub mod log {
    use super::sys;

    /// Log severity.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Level {
        /// Very verbose.
        Trace,
        /// Debugging detail.
        Debug,
        /// Normal operation.
        Info,
        /// Something unexpected that the plugin handled.
        Warn,
        /// Something failed.
        Error,
    }

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: impl AsRef<str>) {
        let l = match level {
            Level::Trace => sys::Level::Trace,
            Level::Debug => sys::Level::Debug,
            Level::Info => sys::Level::Info,
            Level::Warn => sys::Level::Warn,
            Level::Error => sys::Level::Error,
        };
        sys::log(l, message.as_ref());
    }

    /// Logs at [`Level::Trace`].
    pub fn trace(message: impl AsRef<str>) {
        log(Level::Trace, message)
    }
    /// Logs at [`Level::Debug`].
    pub fn debug(message: impl AsRef<str>) {
        log(Level::Debug, message)
    }
    /// Logs at [`Level::Info`].
    pub fn info(message: impl AsRef<str>) {
        log(Level::Info, message)
    }
    /// Logs at [`Level::Warn`].
    pub fn warn(message: impl AsRef<str>) {
        log(Level::Warn, message)
    }
    /// Logs at [`Level::Error`].
    pub fn error(message: impl AsRef<str>) {
        log(Level::Error, message)
    }
}

/// The tenant's key-value store (backed by the server's active store, so it
/// is shared by every node of a cluster and survives instance restarts).
///
/// Keys are private to the tenant, and the current host also prefixes them
/// with the plugin's name; a short prefix of your own (e.g. `"bucket:"`)
/// keeps a plugin's key kinds apart.
pub mod kv {
    use std::time::Duration;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::sys;
    use crate::Error;

    /// TTL in the host's unit: milliseconds, 0 = no expiry.
    fn ttl_ms(ttl: Option<Duration>) -> u64 {
        // A sub-millisecond TTL must still expire, not become "forever".
        ttl.map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        })
    }

    /// The value stored under `key`, if any.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        sys::kv_get(key)
    }

    /// Stores `value` under `key`; with `ttl`, it expires after that long.
    pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) {
        sys::kv_set(key, value, ttl_ms(ttl))
    }

    /// Atomically adds `delta` to the integer under `key` (missing = 0) and
    /// returns the new value. `ttl` applies only when the key is created, so
    /// a fixed window is `incr(key, 1, Some(window))`.
    pub fn incr(key: &str, delta: i64, ttl: Option<Duration>) -> i64 {
        sys::kv_incr(key, delta, ttl_ms(ttl))
    }

    /// The value under `key` deserialized from JSON; `Ok(None)` when absent.
    pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
        get(key)
            .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| Error::Json(e.to_string())))
            .transpose()
    }

    /// Stores `value` under `key` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Json(e.to_string()))?;
        set(key, &bytes, ttl);
        Ok(())
    }
}

/// Outbound HTTP, only to hosts on the tenant's allowlist for this plugin,
/// with a host-side timeout.
pub mod http {
    use serde::de::DeserializeOwned;

    use super::sys;
    use crate::Error;

    /// An outbound request. Build with [`Request::get`] / [`Request::post`]
    /// and the chained setters.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        /// `GET`, `POST`, ...
        pub method: String,
        /// An absolute `http://` or `https://` URL.
        pub url: String,
        /// Header names and values, in order.
        pub headers: Vec<(String, String)>,
        /// The request body, if any.
        pub body: Option<Vec<u8>>,
    }

    impl Request {
        /// A request with `method` to `url`, no headers, no body.
        pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
            Request {
                method: method.into(),
                url: url.into(),
                headers: Vec::new(),
                body: None,
            }
        }
        /// A `GET` of `url`.
        pub fn get(url: impl Into<String>) -> Self {
            Request::new("GET", url)
        }
        /// A `POST` to `url`.
        pub fn post(url: impl Into<String>) -> Self {
            Request::new("POST", url)
        }
        /// Adds a header.
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }
        /// Sets the body.
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = Some(body.into());
            self
        }
        /// Sets a JSON body and `Content-Type: application/json`.
        pub fn json(self, body: &serde_json::Value) -> Self {
            self.header("Content-Type", "application/json")
                .body(body.to_string())
        }
        /// Sends the request: see [`fetch`].
        pub fn send(self) -> Result<Response, Error> {
            fetch(self)
        }
    }

    /// A response of any status (a 4xx or 5xx is a response, not an error).
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Response {
        /// The HTTP status code.
        pub status: u16,
        /// Header names (as the host reports them) and values.
        pub headers: Vec<(String, String)>,
        /// The body.
        pub body: Vec<u8>,
    }

    impl Response {
        /// A response with `status` and `body`, no headers (handy in tests).
        pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
            Response {
                status,
                headers: Vec::new(),
                body: body.into(),
            }
        }
        /// Whether the status is 2xx.
        pub fn is_success(&self) -> bool {
            (200..300).contains(&self.status)
        }
        /// The first header named `name`, compared case-insensitively.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        /// The body deserialized from JSON.
        pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
            serde_json::from_slice(&self.body).map_err(|e| Error::Json(e.to_string()))
        }
    }

    /// Sends `req` through the host. `Err(Error::Http)` means no response
    /// arrived: the host is not on the allowlist, the connection failed, or
    /// the host's timeout expired.
    pub fn fetch(req: Request) -> Result<Response, Error> {
        let raw = sys::HttpRequest {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        sys::http_fetch(&raw)
            .map(|r| Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(Error::Http)
    }
}
