//! hookwire: a realtime room-sync and push server speaking socket.io, with
//! tenant policies as sandboxed WebAssembly components.
//!
//! Map of the crate, leaves first (a module uses only those above it, with
//! two exceptions the architecture notes below name):
//! - [`clock`]: wall-clock milliseconds, the one time every layer stores.
//! - [`error`]: the typed errors shared across layers (store, hook).
//! - [`auth`]: key and token hashing, constant-time comparison.
//! - [`config`]: node configuration (flags, `HOOKWIRE_*`, TOML).
//! - [`policy`]: the hooks ([`policy::Hook`], named once) and the
//!   [`policy::Policy`] trait of the event pipeline; its defaults are the
//!   built-in behaviour.
//! - [`tenant`]: tenants (one namespace each), their config and policy.
//! - [`store`]: the durable state traits and their backends (embedded,
//!   Redis, MongoDB), one conformance suite for all.
//! - [`runtime`]: the wasmtime component host that implements
//!   [`policy::Policy`] with a tenant's plugin chain; limits and the
//!   plugin registry.
//! - [`telemetry`]: logs and Prometheus metrics.
//! - [`protocol`]: the session protocol on socket.io (authenticate, join,
//!   msg, sync, presence, reliable push), its typed refusals
//!   ([`protocol::refusal::Refusal`]) and the per-socket worker.
//! - [`cluster`]: Redis pub/sub between nodes: the socket.io adapter, the
//!   `notification` channel, plugin chain and tenant announcements.
//! - [`lifecycle`]: a tenant brought in or taken out on this node, written
//!   once for the tenants API, announcements, reconcile and startup.
//! - [`http`]: account, admin, push and operations endpoints.
//! - [`tls`]: HTTPS and WSS on the node's listener (`tls_cert` / `tls_key`).
//! - [`cli`]: the `hookwire plugin` commands (a client of the admin API).
//! - [`server`]: the composition root: builds [`AppState`] and serves a node.
//!
//! Known inversions still to remove: [`server::AppState`] is the context
//! most of `protocol`, `http` and `cluster` receive, so they import the
//! composition root; and `cluster` and `protocol` call into each other.
//!
//! [`run`] serves one node on a bound listener until `shutdown` resolves.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod lifecycle;
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
