//! The runtime's own metric families. The node's registry registers them
//! under its prefix (`hookwire_plugin_*`); a clone shares the same families,
//! so the runtime and the registry count into one place.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// The buckets of every latency histogram of a node: 10 µs .. ~5 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.5, 15))
}

#[derive(Clone)]
pub struct PluginMetrics {
    /// `plugin_calls{tenant, plugin, hook}`.
    pub calls: Family<Labels, Counter>,
    /// `plugin_faults{tenant, plugin, kind}`.
    pub faults: Family<Labels, Counter>,
    /// `plugin_call_seconds{hook}`.
    pub call_seconds: Family<Labels, Histogram>,
}

impl Default for PluginMetrics {
    fn default() -> Self {
        PluginMetrics {
            calls: Family::default(),
            faults: Family::default(),
            call_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        }
    }
}

impl PluginMetrics {
    /// Registers the families in the node's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plugin_calls",
            "Plugin hook calls, per tenant, plugin and hook",
            self.calls.clone(),
        );
        registry.register(
            "plugin_faults",
            "Plugin hook faults, per tenant, plugin and kind",
            self.faults.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Plugin hook call time, per hook",
            self.call_seconds.clone(),
        );
    }
}
