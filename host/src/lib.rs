//! hookwire: a realtime room-sync and push server speaking socket.io, with
//! tenant policies as sandboxed WebAssembly components.
//!
//! Map of the crate:
//! - [`config`]: node configuration (flags, `HOOKWIRE_*`, TOML).
//! - [`tenant`]: tenants (one namespace each), their config and policy.
//! - [`policy`]: the hook trait of the event pipeline; its defaults are the
//!   built-in behaviour.
//! - [`runtime`]: the wasmtime component host that implements [`policy::Policy`]
//!   with a tenant's plugin chain.
//! - [`store`]: the durable state trait and its backends.
//! - [`protocol`]: socket.io handlers (room sync, reliable push) and presence.
//! - [`http`]: account, admin, push and operations endpoints.
//! - [`cluster`]: Redis pub/sub: the `notification` channel, plugin chain announcements.
//! - [`telemetry`]: logs and Prometheus metrics.
//! - [`tls`]: HTTPS and WSS on the node's listener (`tls_cert` / `tls_key`).
//!
//! [`run`] serves one node on a bound listener until `shutdown` resolves.

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod policy;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tenant;
pub mod tls;

pub use config::Config;
pub use server::{AppState, run};
