//! Logs (`tracing`) and Prometheus metrics (`prometheus-client`).
//!
//! Metrics are per server instance (not a global recorder) so tests can run
//! several servers in one process.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use hookwire_runtime::metrics::{Labels, PluginMetrics, latency_histogram};

use crate::config::LogFormat;

pub struct Metrics {
    registry: Registry,
    pub connections: Family<Labels, Gauge>,
    pub rooms: Gauge,
    pub messages_in: Family<Labels, Counter>,
    pub messages_out: Family<Labels, Counter>,
    pub pushes: Family<Labels, Counter>,
    /// Push acks (live deliveries and `_batch`es) recorded in the store.
    pub push_acks: Family<Labels, Counter>,
    pub refused: Family<Labels, Counter>,
    pub store_latency: Family<Labels, Histogram>,
    pub store_errors: Family<Labels, Counter>,
    /// The plugin runtime's families (it counts into these clones).
    pub plugins: PluginMetrics,
    pub dependency_up: Family<Labels, Gauge>,
    /// Cross-node publishes lost while Redis was away (a gauge mirroring
    /// the hub's counter, set at scrape time).
    pub cluster_publish_dropped: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookwire");
        let connections = Family::<Labels, Gauge>::default();
        let rooms = Gauge::default();
        let messages_in = Family::<Labels, Counter>::default();
        let messages_out = Family::<Labels, Counter>::default();
        let pushes = Family::<Labels, Counter>::default();
        let push_acks = Family::<Labels, Counter>::default();
        let refused = Family::<Labels, Counter>::default();
        let store_latency = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let store_errors = Family::<Labels, Counter>::default();
        let plugins = PluginMetrics::default();
        let dependency_up = Family::<Labels, Gauge>::default();
        let cluster_publish_dropped = Gauge::default();
        registry.register(
            "cluster_publish_dropped",
            "Cross-node messages lost because Redis was unreachable (total since start)",
            cluster_publish_dropped.clone(),
        );
        registry.register(
            "connections",
            "Connected sockets per tenant",
            connections.clone(),
        );
        registry.register(
            "rooms",
            "Rooms with at least one socket on this node",
            rooms.clone(),
        );
        registry.register(
            "messages_in",
            "Room messages received, per tenant",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Messages delivered to sockets (per recipient), per tenant",
            messages_out.clone(),
        );
        registry.register(
            "pushes",
            "Business-server pushes accepted, per tenant",
            pushes.clone(),
        );
        registry.register(
            "push_acks",
            "Push acks recorded (one per acked delivery or _batch), per tenant",
            push_acks.clone(),
        );
        registry.register(
            "refused",
            "Requests refused, per tenant and reason",
            refused.clone(),
        );
        registry.register(
            "store_latency_seconds",
            "Store operation latency, per operation",
            store_latency.clone(),
        );
        registry.register(
            "store_errors",
            "Store operation failures, per operation",
            store_errors.clone(),
        );
        plugins.register(&mut registry);
        registry.register(
            "dependency_up",
            "1 when a dependency (store, redis) answers",
            dependency_up.clone(),
        );
        registry.register_collector(Box::new(TransportCounters));
        Metrics {
            registry,
            connections,
            rooms,
            messages_in,
            messages_out,
            pushes,
            push_acks,
            refused,
            store_latency,
            store_errors,
            plugins,
            cluster_publish_dropped,
            dependency_up,
        }
    }
}

/// The store's operations into `store_latency_seconds{op}` and
/// `store_errors{op}`: each op's series is found once, then reused without
/// hashing labels.
pub struct StoreTimings {
    latency: Family<Labels, Histogram>,
    errors: Family<Labels, Counter>,
    by_op: parking_lot::RwLock<std::collections::HashMap<&'static str, (Histogram, Counter)>>,
}

impl StoreTimings {
    pub fn new(m: &Metrics) -> StoreTimings {
        StoreTimings {
            latency: m.store_latency.clone(),
            errors: m.store_errors.clone(),
            by_op: Default::default(),
        }
    }
}

impl hookwire_store::timed::StoreObserver for StoreTimings {
    fn observe(&self, op: &'static str, seconds: f64, ok: bool) {
        let found = self.by_op.read().get(op).cloned();
        let (latency, errors) = found.unwrap_or_else(|| {
            let labels = vec![("op", op.to_string())];
            let pair = (
                self.latency.get_or_create(&labels).clone(),
                self.errors.get_or_create(&labels).clone(),
            );
            self.by_op.write().insert(op, pair.clone());
            pair
        });
        latency.observe(seconds);
        if !ok {
            errors.inc();
        }
    }
}

/// The engine's process-wide transport counters, read at scrape time.
#[derive(Debug)]
struct TransportCounters;

impl prometheus_client::collector::Collector for TransportCounters {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let s = engineioxide::stats::snapshot();
        for (name, help, value) in [
            (
                "transport_frames_direct",
                "WebSocket frames written straight from the emitting task",
                s.frames_direct,
            ),
            (
                "transport_frames_queued",
                "Frames that waited in a socket's outbound queue",
                s.frames_queued,
            ),
            (
                "transport_frames_handed_off",
                "Frames left to the socket's own task to spread a large broadcast over the workers",
                s.frames_handed_off,
            ),
            (
                "transport_ws_writes",
                "write/writev calls on WebSocket connections",
                s.ws_write_calls,
            ),
            (
                "transport_slow_consumers",
                "Sessions closed because their outbound queue passed its bound",
                s.slow_consumers,
            ),
            (
                "transport_ws_protocol_errors",
                "WebSocket connections closed for a protocol violation",
                s.ws_protocol_errors,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn tenant(t: &str) -> Labels {
        vec![("tenant", t.to_string())]
    }

    pub fn refuse(&self, tenant: &str, reason: &'static str) {
        self.refused
            .get_or_create(&vec![
                ("tenant", tenant.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    /// Times a store operation and counts its failures.
    pub async fn timed<T, E>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let start = std::time::Instant::now();
        let r = fut.await;
        let labels = vec![("op", op.to_string())];
        self.store_latency
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        if r.is_err() {
            self.store_errors.get_or_create(&labels).inc();
        }
        r
    }
}

/// Installs the global `tracing` subscriber (`RUST_LOG` filters, default
/// `info`). Safe to call more than once.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
