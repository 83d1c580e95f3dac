//! The `hookwire plugin` commands: clients of a running node's admin API
//! ([`plugin`]) and the offline toolbox ([`toolbox`], [`scaffold`]).

pub mod plugin;
pub mod scaffold;
pub mod toolbox;
