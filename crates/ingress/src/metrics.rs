//! Prometheus metrics of the Ingress server, all prefixed `svcnet_ingress_`.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `requests_total` | counter | `ingress`, `host`, `path`, `status` | requests answered (`ingress` empty when no route matched) |
//! | `request_duration_seconds` | histogram | `ingress` | from the request head to the response head |
//! | `upstream_duration_seconds` | histogram | `ingress` | from sending upstream to the upstream response head |
//! | `upstream_errors_total` | counter | `kind` | `connect_refused`, `connect_timeout`, `connect_error`, `tls`, `send_timeout`, `read_timeout`, `protocol`, `auth` |
//! | `active_connections` | gauge | `listener` | client connections open (`http`, `https`) |
//! | `connections_refused_total` | counter | `listener` | connections closed at once: the connection cap was reached |
//! | `limited_total` | counter | `ingress`, `reason` | requests refused by `limit-*` (503) |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name` of the Ingress, empty when none matched.
    pub ingress: String,
    /// The route's host as written (empty for host-less rules), or the request's host
    /// when no route matched.
    pub host: String,
    /// The route's path as written (empty when no route matched).
    pub path: String,
    /// The status code.
    pub status: u16,
}

/// Labels with the Ingress only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    /// `namespace/name`.
    pub ingress: String,
}

/// Labels of `upstream_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind of error.
    pub kind: &'static str,
}

/// Labels of the connection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `http` or `https`.
    pub listener: &'static str,
}

/// Labels of `limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `namespace/name`.
    pub ingress: String,
    /// Which limit.
    pub reason: &'static str,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms .. ~65 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 18,
    ))
}

/// The families, cheap to clone (shared counters).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `request_duration_seconds`.
    pub duration: Family<IngressLabels, Histogram>,
    /// `upstream_duration_seconds`.
    pub upstream_duration: Family<IngressLabels, Histogram>,
    /// `upstream_errors_total`.
    pub upstream_errors: Family<KindLabels, Counter>,
    /// `active_connections`.
    pub active_connections: Family<ListenerLabels, Gauge>,
    /// `connections_refused_total`.
    pub connections_refused: Family<ListenerLabels, Counter>,
    /// `limited_total`.
    pub limited: Family<LimitLabels, Counter>,
}

impl Metrics {
    /// Creates the families and registers them under `svcnet_ingress_`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            upstream_duration: Family::new_with_constructor(duration_histogram),
            upstream_errors: Family::default(),
            active_connections: Family::default(),
            connections_refused: Family::default(),
            limited: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("svcnet_ingress");
        r.register(
            "requests",
            "Requests answered, by Ingress, host, path and status",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from the request head to the response head",
            m.duration.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to its response head",
            m.upstream_duration.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream failures, by kind",
            m.upstream_errors.clone(),
        );
        r.register(
            "active_connections",
            "Client connections open",
            m.active_connections.clone(),
        );
        r.register(
            "connections_refused",
            "Client connections closed at once because the connection cap was reached",
            m.connections_refused.clone(),
        );
        r.register(
            "limited",
            "Requests refused by limit-rps, limit-rpm or limit-connections",
            m.limited.clone(),
        );
        m
    }

    /// Counts one upstream error.
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }
}
