//! Typed errors. `anyhow` is for `main.rs`, tests and glue only.

use thiserror::Error;

/// A storage backend failed. Callers map it to the API's status 3
/// ("server error") and HTTP 503; nothing is acknowledged that was not stored.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage backend error: {0}")]
    Backend(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("storage is shutting down")]
    Closed,
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn backend(e: impl std::fmt::Display) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// A plugin hook failed. Trap, timeout and out-of-memory are distinct so
/// metrics and logs can tell them apart.
#[derive(Debug, Error, Clone)]
pub enum HookError {
    #[error("plugin {plugin} trapped: {detail}")]
    Trap { plugin: String, detail: String },
    #[error("plugin {plugin} exceeded its time budget")]
    Timeout { plugin: String },
    #[error("plugin {plugin} exceeded its memory budget")]
    OutOfMemory { plugin: String },
    #[error("plugin {plugin} exhausted its fuel")]
    OutOfFuel { plugin: String },
    #[error("plugin {plugin} returned an invalid result: {detail}")]
    BadOutput { plugin: String, detail: String },
    #[error("plugin {plugin} could not be instantiated: {detail}")]
    Instantiate { plugin: String, detail: String },
}

impl HookError {
    /// Label for the `hookwire_plugin_faults_total{kind=...}` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            HookError::Trap { .. } => "trap",
            HookError::Timeout { .. } => "timeout",
            HookError::OutOfMemory { .. } => "out_of_memory",
            HookError::OutOfFuel { .. } => "out_of_fuel",
            HookError::BadOutput { .. } => "bad_output",
            HookError::Instantiate { .. } => "instantiate",
        }
    }
}
