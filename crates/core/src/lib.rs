//! hookwire-core: the leaf layer every other crate of hookwire builds on.
//! It depends on no other hookwire crate; the store backends
//! (`hookwire-store`), the plugin runtime (`hookwire-runtime`) and the server
//! (`hookwire`) depend on it, so a layer reaching back up is a compile error.
//!
//! Map of the crate, leaves first (a module uses only those above it):
//! - [`clock`]: wall-clock milliseconds, the one time every layer stores.
//! - [`error`]: the typed errors shared across layers (store, hook).
//! - [`auth`]: key and token hashing, constant-time comparison.
//! - [`policy`]: the hooks ([`policy::Hook`], named once in its table) and
//!   the [`policy::Policy`] trait of the event pipeline; its defaults are the
//!   built-in behaviour.
//! - [`store`]: the [`store::Store`] trait (tenants, room logs, push queues,
//!   plugin records, plugin kv) and the records it keeps.
//! - [`tenant`]: tenants (one namespace each), their config and the policy
//!   their plugin chain installs. `store` and `tenant` name each other's
//!   types (a tenant record holds a config; a tenant loads from a store),
//!   which is why they share this crate.

pub mod auth;
pub mod clock;
pub mod error;
pub mod policy;
pub mod store;
pub mod tenant;
