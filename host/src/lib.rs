//! hookwire: a realtime room-sync and push server speaking socket.io, with
//! tenant policies as sandboxed WebAssembly components.
//!
//! The workspace's layers, each a crate, so a dependency that points the
//! wrong way does not compile:
//! ```text
//! hookwire-core      clock, keys, typed errors, hooks and policy types,
//!                    tenants, the Store trait            (depends on no layer)
//! hookwire-store     embedded / Redis / MongoDB backends, the Redis key scheme
//! hookwire-runtime   wasmtime components: limits, instance pools, host
//!                    imports, chain semantics, plugin registry
//! engineioxide       hookwire's Engine.IO engine (crates/engine), under socketioxide
//! hookwire           this crate: the server
//! ```
//! `core ← {store, runtime} ← hookwire`. The layers are re-exported here
//! under the names the server's modules use: [`clock`], [`error`],
//! [`auth`], [`policy`], [`tenant`] (from core), [`store`] and [`runtime`].
//!
//! Map of this crate, leaves first (a module uses only those above it, with
//! the exceptions the architecture notes below name):
//! - [`config`]: node configuration (flags, `HOOKWIRE_*`, TOML).
//! - [`telemetry`]: logs and Prometheus metrics (the runtime's families
//!   registered beside the server's).
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
//! - [`app`]: the application context ([`AppState`]) the protocol, HTTP
//!   API and lifecycle are handed, and how it answers the cluster bus.
//! - [`server`]: the composition root: builds [`AppState`] and serves a node;
//!   nothing imports it.
//!
//! `protocol` uses `cluster`'s transport types (the socket.io adapter, the
//! Redis hub, the presence mirror); `cluster` never calls `protocol`: what
//! the bus hears reaches the application through [`cluster::BusEvents`],
//! which the composition root implements.
//!
//! Still to narrow: [`AppState`] is one wide context (store, tenants,
//! runtime, metrics, presence, bus) that `protocol`, `http` and `lifecycle`
//! all receive and that `app` assembles from them, so those modules and
//! `app` name each other; a context per concern would make the protocol
//! testable without the rest.
//!
//! [`run`] serves one node on a bound listener until `shutdown` resolves.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod http;
pub mod lifecycle;
pub mod protocol;
pub mod server;
pub mod telemetry;
pub mod tls;

// The layers below the server, under the names the server's modules use.
pub use hookwire_core::{auth, clock, error, policy, tenant};
pub use hookwire_runtime as runtime;
pub use hookwire_store as store;

pub use app::AppState;
pub use config::Config;
pub use server::run;
