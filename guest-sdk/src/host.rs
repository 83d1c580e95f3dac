//! Safe wrappers for the host imports of `hookwire:policy/host`.
//!
//! Every call is scoped to the plugin's tenant by the host. In a wasm32 build
//! these call the host; in a native build (your plugin's `cargo test`) they
//! call the in-memory mock of [`crate::testing`], so hook logic can be tested
//! without a runtime.

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

/// This plugin's JSON config as the admin set it (`Value::Null` when none was
/// set or it is not valid JSON).
///
/// The host may change the config at any time (a hot swap), so read it in the
/// hook rather than caching it in a static.
pub fn config_value() -> Value {
    serde_json::from_str(&sys::config()).unwrap_or(Value::Null)
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
