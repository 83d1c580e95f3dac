//! Plugin runtime (wasmtime component model). Stub until issue 3 lands.

use serde::{Deserialize, Serialize};

/// Engine-wide plugin limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EngineLimits {}

use std::sync::Arc;

use crate::store::Store;
use crate::telemetry::Metrics;
use crate::tenant::Tenant;

/// Loads tenants' plugin chains and installs them as their policy.
pub struct PluginRuntime {}

impl PluginRuntime {
    pub fn new(_limits: &EngineLimits, _store: Arc<dyn Store>, _metrics: Arc<Metrics>) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(PluginRuntime {}))
    }
    /// Reads the tenant's chain from the store and swaps its policy.
    pub async fn activate(&self, _tenant: &Arc<Tenant>) -> anyhow::Result<()> {
        Ok(())
    }
}
