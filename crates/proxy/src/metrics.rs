//! Prometheus metrics of the Service load balancer, all prefixed `svcnet_proxy_`.
//!
//! Per Service port (labels `namespace`, `service`, `port`, `protocol`; `port` is the
//! Service port number):
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `connections_accepted_total` | counter | TCP connections forwarded, UDP flows opened |
//! | `connections_refused_total{reason}` | counter | closed at once: `no_endpoints`, `connect_failed` |
//! | `bytes_total{direction}` | counter | payload bytes, `in` = client to endpoint, `out` = back |
//! | `active_connections` | gauge | TCP connections being forwarded |
//! | `udp_flows_active` | gauge | UDP flows (client address to endpoint) alive |
//! | `udp_packets_dropped_total{reason}` | counter | `no_endpoints`, `socket_error` |
//! | `endpoints_ready` | gauge | ready endpoints (loopback ones) of the Service port |
//! | `connect_failures_total` | counter | connects to an endpoint refused or timed out |
//! | `connect_retries_total` | counter | connects retried on another endpoint |
//! | `source_bind_fallbacks_total` | counter | client address could not be bound; connected unbound |
//!
//! And `listeners` (gauge, labels `protocol`): sockets bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::table::ServicePortKey;

/// Labels of a Service port.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Service port number.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
}

impl PortLabels {
    /// The labels of a Service port.
    pub fn of(key: &ServicePortKey) -> PortLabels {
        PortLabels {
            namespace: key.service.namespace.clone(),
            service: key.service.name.clone(),
            port: key.port,
            protocol: key.protocol.as_str().to_string(),
        }
    }
}

/// A Service port's labels plus `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Service port number.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// Why.
    pub reason: &'static str,
}

impl ReasonLabels {
    fn of(l: &PortLabels, reason: &'static str) -> Self {
        ReasonLabels {
            namespace: l.namespace.clone(),
            service: l.service.clone(),
            port: l.port,
            protocol: l.protocol.clone(),
            reason,
        }
    }
}

/// A Service port's labels plus `direction`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Service port number.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// `in` (client to endpoint) or `out` (endpoint to client).
    pub direction: &'static str,
}

impl DirectionLabels {
    fn of(l: &PortLabels, direction: &'static str) -> Self {
        DirectionLabels {
            namespace: l.namespace.clone(),
            service: l.service.clone(),
            port: l.port,
            protocol: l.protocol.clone(),
            direction,
        }
    }
}

/// Labels of the listener gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    /// `TCP` or `UDP`.
    pub protocol: String,
}

/// Every metric family of the proxy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metrics {
    accepted: Family<PortLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    bytes: Family<DirectionLabels, Counter>,
    active: Family<PortLabels, Gauge>,
    udp_flows: Family<PortLabels, Gauge>,
    udp_dropped: Family<ReasonLabels, Counter>,
    pub(crate) endpoints_ready: Family<PortLabels, Gauge>,
    connect_failures: Family<PortLabels, Counter>,
    connect_retries: Family<PortLabels, Counter>,
    bind_fallbacks: Family<PortLabels, Counter>,
    pub(crate) listeners: Family<ProtocolLabels, Gauge>,
}

impl Metrics {
    /// Creates the families and registers them under `svcnet_proxy_`.
    pub(crate) fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("svcnet_proxy");
        r.register(
            "connections_accepted",
            "TCP connections forwarded to an endpoint, and UDP flows opened",
            m.accepted.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at once: no endpoint, every endpoint denied by NetworkPolicy, or every connect failed",
            m.refused.clone(),
        );
        r.register(
            "bytes",
            "Payload bytes forwarded; direction in = client to endpoint, out = endpoint to client",
            m.bytes.clone(),
        );
        r.register(
            "active_connections",
            "TCP connections being forwarded",
            m.active.clone(),
        );
        r.register("udp_flows_active", "UDP flows alive", m.udp_flows.clone());
        r.register(
            "udp_packets_dropped",
            "UDP datagrams dropped",
            m.udp_dropped.clone(),
        );
        r.register(
            "endpoints_ready",
            "Ready endpoints of a Service port",
            m.endpoints_ready.clone(),
        );
        r.register(
            "connect_failures",
            "Connects to an endpoint that were refused or timed out",
            m.connect_failures.clone(),
        );
        r.register(
            "connect_retries",
            "Connects retried on another endpoint",
            m.connect_retries.clone(),
        );
        r.register(
            "source_bind_fallbacks",
            "Outgoing sockets that could not bind the client's address and connected unbound",
            m.bind_fallbacks.clone(),
        );
        r.register("listeners", "Listening sockets", m.listeners.clone());
        m
    }

    /// The metrics of one Service port, looked up once per connection or flow.
    pub(crate) fn port(&self, key: &ServicePortKey) -> PortMetrics {
        let l = PortLabels::of(key);
        PortMetrics {
            accepted: self.accepted.get_or_create_owned(&l),
            refused_no_endpoints: self
                .refused
                .get_or_create_owned(&ReasonLabels::of(&l, "no_endpoints")),
            refused_policy: self
                .refused
                .get_or_create_owned(&ReasonLabels::of(&l, "network_policy")),
            refused_connect_failed: self
                .refused
                .get_or_create_owned(&ReasonLabels::of(&l, "connect_failed")),
            bytes_in: self
                .bytes
                .get_or_create_owned(&DirectionLabels::of(&l, "in")),
            bytes_out: self
                .bytes
                .get_or_create_owned(&DirectionLabels::of(&l, "out")),
            active: self.active.get_or_create_owned(&l),
            udp_flows: self.udp_flows.get_or_create_owned(&l),
            udp_dropped_no_endpoints: self
                .udp_dropped
                .get_or_create_owned(&ReasonLabels::of(&l, "no_endpoints")),
            udp_dropped_policy: self
                .udp_dropped
                .get_or_create_owned(&ReasonLabels::of(&l, "network_policy")),
            udp_dropped_socket_error: self
                .udp_dropped
                .get_or_create_owned(&ReasonLabels::of(&l, "socket_error")),
            connect_failures: self.connect_failures.get_or_create_owned(&l),
            connect_retries: self.connect_retries.get_or_create_owned(&l),
            bind_fallbacks: self.bind_fallbacks.get_or_create_owned(&l),
        }
    }
}

/// Handles on the metrics of one Service port (cheap clones of shared atomics).
#[derive(Clone, Debug)]
pub(crate) struct PortMetrics {
    pub(crate) accepted: Counter,
    pub(crate) refused_no_endpoints: Counter,
    pub(crate) refused_policy: Counter,
    pub(crate) refused_connect_failed: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) active: Gauge,
    pub(crate) udp_flows: Gauge,
    pub(crate) udp_dropped_no_endpoints: Counter,
    pub(crate) udp_dropped_policy: Counter,
    pub(crate) udp_dropped_socket_error: Counter,
    pub(crate) connect_failures: Counter,
    pub(crate) connect_retries: Counter,
    pub(crate) bind_fallbacks: Counter,
}

/// Decrements a gauge when dropped (on every exit path, including task abort).
#[derive(Debug)]
pub(crate) struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub(crate) fn inc(g: &Gauge) -> GaugeGuard {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
