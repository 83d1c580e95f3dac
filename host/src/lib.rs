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
//! Map of this crate, leaves first; a module uses only those above it:
//! - [`config`]: node configuration (flags, `HOOKWIRE_*`, TOML).
//! - [`telemetry`]: logs and Prometheus metrics (the runtime's families
//!   registered beside the server's).
//! - [`cluster`]: Redis pub/sub between nodes: the socket.io adapter, the
//!   `notification` channel, plugin chain and tenant announcements. What
//!   the bus hears goes out through [`cluster::BusEvents`].
//! - [`protocol`]: the session protocol on socket.io (authenticate, join,
//!   msg, sync, presence, reliable push), its typed refusals and the
//!   per-socket worker. It receives [`protocol::Services`] and nothing
//!   wider; it uses `cluster`'s transport types (the adapter, the presence
//!   mirror).
//! - [`http`]: account, admin, push, tenants, plugins and operations
//!   endpoints. It receives [`http::ApiState`] and asks the tenant
//!   lifecycle through [`http::TenantLifecycle`].
//! - [`tls`]: HTTPS and WSS on the node's listener (`tls_cert` / `tls_key`).
//! - [`cli`]: the `hookwire plugin` commands (a client of the admin API).
//! - [`app`]: the composition root ([`app::server`]) that builds every
//!   context and serves a node, and the tenant lifecycle
//!   ([`app::lifecycle`]) written once for the tenants API, announcements,
//!   reconcile and startup. It implements [`cluster::BusEvents`] and
//!   [`http::TenantLifecycle`]; nothing imports it.
//!
//! `tests/tests/layers.rs` fails when a module names one it must not.
//!
//! [`run`] serves one node on a bound listener until `shutdown` resolves.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod http;
pub mod protocol;
pub mod telemetry;
pub mod tls;

// The layers below the server, under the names the server's modules use.
pub use hookwire_core::{auth, clock, error, policy, tenant};
pub use hookwire_runtime as runtime;
pub use hookwire_store as store;

pub use app::server::{self, run};
pub use config::Config;
