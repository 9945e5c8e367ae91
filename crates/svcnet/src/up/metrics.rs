//! Runtime metrics of `svcnet up` (the data planes register their own).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Reloads and apply latency.
pub(crate) struct RuntimeMetrics {
    /// Accepted manifest reloads.
    pub reloads_ok: Counter,
    /// Refused manifest reloads (the last good state kept serving).
    pub reloads_failed: Counter,
    /// Time to hand a new state to every data plane.
    pub apply_seconds: Histogram,
}

impl RuntimeMetrics {
    /// Registers the metrics under `svcnet_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = RuntimeMetrics {
            reloads_ok: Counter::default(),
            reloads_failed: Counter::default(),
            apply_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        };
        let registry = registry.sub_registry_with_prefix("svcnet");
        registry.register(
            "reloads",
            "Manifest reloads that were applied",
            m.reloads_ok.clone(),
        );
        registry.register(
            "reload_errors",
            "Manifest reloads refused because of errors (the last good state kept serving)",
            m.reloads_failed.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "Time to apply a new state to the pod agents and the Service load balancer",
            m.apply_seconds.clone(),
        );
        m
    }
}
