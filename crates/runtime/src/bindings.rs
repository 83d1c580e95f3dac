//! Host bindings of the `hookwire:policy` world, generated from `wit/` (the
//! single source of truth; the guest SDK is generated from the same files).
//! The generated code stays private; only what the runtime needs is
//! re-exported, under names that do not clash with [`hookwire_core::policy`].
//!
//! Hook inputs are generated borrowing (`Context<'a>` holds `&'a str`s): a
//! call lowers them straight from the caller's strings, without cloning
//! them into owned records first. Outputs and import arguments stay owned.

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "policy",
        // Every import may await the store or the network, and may trap
        // (a kv failure aborts the call instead of lying to the plugin).
        imports: { default: async | trappable },
        exports: { default: async },
        // `json` is both an input and an output, so it gets two names
        // (`JsonParam<'a>` = `&'a str`, `JsonResult` = `String`).
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

pub use generated::hookwire::policy::host::{
    Host as HostImports, HttpRequest, HttpResponse, Level, add_to_linker as add_host_to_linker,
};
pub use generated::hookwire::policy::types::{
    AuthRequest, AuthVerdict, Context, Hooks, JoinRequest, JoinVerdict, MsgEvent, MsgVerdict,
    PluginInfo, PushRequest, PushRoute, StorageMode,
};
pub use generated::{Policy as Guest, PolicyPre as GuestPre};
