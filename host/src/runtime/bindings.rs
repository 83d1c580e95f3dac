//! Host bindings of the `hookwire:policy` world, generated from `wit/` (the
//! single source of truth; the guest SDK is generated from the same files).
//! The generated code stays private; only what the runtime needs is
//! re-exported, under names that do not clash with [`crate::policy`].

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
        // Every import may await the store or the network, and may trap
        // (a kv failure aborts the call instead of lying to the plugin).
        imports: { default: async | trappable },
        exports: { default: async },
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
