#![doc = include_str!("../README.md")]
//!
//! # Crate layout
//!
//! - [`Plugin`] and [`macro@plugin`] (this file): the trait a plugin
//!   implements and the attribute that exports it.
//! - `types.rs`: hook inputs and verdicts ([`MsgEvent`], [`MsgVerdict`], ...).
//! - `host.rs`: the host imports: [`config`], [`kv`], [`http`], [`log`],
//!   [`now_ms`], [`random_bytes`].
//! - [`testing`] (native builds only): the in-memory host behind those
//!   wrappers when a plugin's unit tests run natively.
//! - `export.rs` and `__bindings` (hidden): the wit-bindgen glue, generated
//!   from `wit/policy.wit`, the one source of truth shared with the host.

#![warn(missing_docs)]

// Lets `#[plugin]`'s `::hookwire_guest::...` paths resolve inside this crate
// too (its own tests use the attribute).
extern crate self as hookwire_guest;

mod export;
mod host;
mod types;

// Documented on every target; compiled into wasm32 builds only for docs.
#[cfg(any(doc, not(target_arch = "wasm32")))]
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub mod testing;

pub use host::{
    config, config_cached, config_state, config_value, http, kv, log, now_ms, random_bytes,
};
pub use types::{
    Allow, AuthRequest, AuthVerdict, Context, JoinRequest, JoinVerdict, MsgEvent, MsgVerdict,
    PluginInfo, PushRequest, PushRoute, RawMsgEvent, Redirect, StorageMode, id_string,
};

/// Exports a [`Plugin`] implementation as the component's `hookwire:policy`
/// world.
///
/// Put it on the `impl Plugin for T` block, once per plugin crate. It keeps
/// the block as written and generates:
///
/// - `describe`, reporting the crate's package name and version and exactly
///   the hooks the block defines (the host never calls the others), so the
///   hook list can never disagree with the code;
/// - the component exports (in wasm32 builds only, so a plugin's native unit
///   tests link without them).
///
/// Optional arguments override the reported name and version:
/// `#[hookwire_guest::plugin(name = "censor", version = "2.0.0")]`.
///
/// Forgetting the attribute is a compile error (the trait bound
/// `T: __private::Describe` is not satisfied, with a note naming the
/// attribute).
pub use hookwire_guest_macro::plugin;

/// The flags of `describe`: which hooks a plugin implements.
pub use crate::__bindings::hookwire::policy::types::Hooks;

/// `serde_json`, re-exported so a plugin needs no dependency of its own for
/// `json!` and [`Value`](serde_json::Value).
pub use serde_json;

/// `serde`, re-exported for typed configs without a dependency of your own:
/// derive with `#[derive(hookwire_guest::serde::Deserialize)]` and
/// `#[serde(crate = "hookwire_guest::serde")]`.
pub use serde;

/// `wit-bindgen`, re-exported for plugins that need raw bindings of another
/// world (normally unnecessary: [`macro@plugin`] does the exporting).
pub use wit_bindgen;

/// An error of a host wrapper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The plugin's config does not match the type asked for.
    Config(String),
    /// No HTTP response: host not on the allowlist, transport error or timeout.
    Http(String),
    /// A value (kv entry, response body) is not the JSON expected.
    Json(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(e) => write!(f, "invalid plugin config: {e}"),
            Error::Http(e) => write!(f, "http request failed: {e}"),
            Error::Json(e) => write!(f, "invalid JSON: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A hookwire policy plugin: one method per hook, each with a default body
/// that is the server's built-in behaviour, so a plugin defines only the hooks
/// it cares about.
///
/// Hooks are associated functions (no `self`): the host may run each call on
/// a fresh instance, so state that must outlive a call belongs in [`kv`].
/// A panic traps the instance; the host then fails the hook closed (or open,
/// if the tenant chose so), so prefer returning a `Deny`/`Drop` with a reason.
///
/// Implement it inside a [`macro@plugin`] attribute; see the crate example.
pub trait Plugin: export::Describe {
    /// The socket handshake `auth` object or an `authenticate` event.
    /// Default: [`AuthVerdict::Defer`] (the next plugin, then the built-in
    /// token check, decides).
    fn authenticate(ctx: &Context, req: AuthRequest) -> AuthVerdict {
        let _ = (ctx, req);
        AuthVerdict::Defer
    }

    /// A socket asks to `join` a room. Default: [`JoinVerdict::Allow`].
    fn on_join(ctx: &Context, req: JoinRequest) -> JoinVerdict {
        let _ = (ctx, req);
        JoinVerdict::Allow
    }

    /// A socket sent a `msg`. Default: [`MsgVerdict::Pass`].
    fn on_msg(ctx: &Context, ev: MsgEvent) -> MsgVerdict {
        let _ = (ctx, ev);
        MsgVerdict::Pass
    }

    /// A socket sent a `msg`, as it arrives: the message still JSON text.
    /// Default: parses it and calls [`Plugin::on_msg`].
    ///
    /// Define it (instead of, or besides, `on_msg`) to skip the parse when
    /// the message does not matter, e.g. a rate limit, or when a look at the
    /// text settles it ([`RawMsgEvent::might_contain`]); call
    /// `Self::on_msg(ctx, ev.parse())` for the rest. Parsing is most of the
    /// cost of a simple hook. Either method makes the plugin an `on-msg`
    /// plugin.
    fn on_raw_msg(ctx: &Context, ev: RawMsgEvent) -> MsgVerdict {
        Self::on_msg(ctx, ev.parse())
    }

    /// How a `msg` is stored. `proposed` is what the client asked for (or the
    /// previous plugin decided). Default: `proposed`.
    fn storage_mode(ctx: &Context, ev: MsgEvent, proposed: StorageMode) -> StorageMode {
        let _ = (ctx, ev);
        proposed
    }

    /// Which rooms a push or relayed message reaches. Default: the rooms it
    /// was addressed to.
    fn route_push(ctx: &Context, req: PushRequest) -> PushRoute {
        let _ = ctx;
        PushRoute::Deliver(req.rooms)
    }
}

/// What the plugin `T`'s `describe` export reports (for tests).
///
/// ```
/// use hookwire_guest::{Hooks, Plugin, describe};
///
/// struct Quiet;
/// #[hookwire_guest::plugin(name = "quiet")]
/// impl Plugin for Quiet {
///     fn on_join(_: &hookwire_guest::Context, _: hookwire_guest::JoinRequest) -> hookwire_guest::JoinVerdict {
///         hookwire_guest::JoinVerdict::Deny("read only".into())
///     }
/// }
///
/// assert_eq!(describe::<Quiet>().name, "quiet");
/// assert_eq!(describe::<Quiet>().hooks, Hooks::ON_JOIN);
/// ```
pub fn describe<T: Plugin>() -> PluginInfo {
    let info = <T as export::Describe>::INFO;
    PluginInfo {
        name: info.name.into(),
        version: info.version.into(),
        hooks: info.hooks,
    }
}

/// What [`macro@plugin`] expands to uses these; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{Adapter, Describe, StaticInfo};
}

/// The wit-bindgen bindings of `wit/policy.wit`. Generated here once; the
/// export macro is `pub` so that [`macro@plugin`] can invoke it from the
/// plugin crate, where the exported symbols must be defined.
#[doc(hidden)]
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "hookwire:policy/policy@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_policy",
        default_bindings_module: "::hookwire_guest::__bindings",
    });
}
