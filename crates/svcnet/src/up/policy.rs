//! NetworkPolicy enforcement in loopback mode: one compiled [`PolicyIndex`] per served
//! state, published atomically, asked by every path svcnet controls:
//!
//! - pod agents, for every connection and datagram they receive (ingress of the pod);
//! - the Service load balancer, per candidate endpoint after the Service's DNAT (egress
//!   of the client pod toward the endpoint pod and port, and ingress of the endpoint);
//! - `/_agent/dial` (and `svcnet probe`), before connecting to a pod or an outside
//!   address (egress). A dial to a Service address is left to the load balancer, which
//!   judges it on the endpoint it picks, as the kernel does after DNAT.
//!
//! Node and host addresses (127.0.0.1, ::1, the nodes' addresses) are node traffic:
//! allowed by default, as kubelet probes and host access are in Kubernetes.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use svcnet_model::Cluster;
use svcnet_model::types::{ObjectKey, Protocol};
use svcnet_policy::PolicyIndex;
use svcnet_proxy::Admit;
use svcnet_sandbox::SandboxConfig;
use tracing::debug;

/// What one served state enforces.
struct Enforcement {
    index: PolicyIndex,
    /// Service addresses (cluster IPs, external and load-balancer IPs): a dial to one of
    /// them is judged by the load balancer after it picks an endpoint.
    frontends: HashSet<IpAddr>,
}

impl Enforcement {
    fn build(cluster: &Cluster) -> Enforcement {
        let frontends = cluster
            .services
            .values()
            .flat_map(|s| {
                s.cluster_ip_list()
                    .iter()
                    .chain(&s.external_ips)
                    .chain(&s.load_balancer_ips)
                    .copied()
            })
            .collect();
        Enforcement {
            index: PolicyIndex::compile(cluster),
            frontends,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeniedLabels {
    /// Which enforcement point: `agent` (a pod's ingress) or `dial` (a pod's egress).
    path: String,
    /// `TCP`, `UDP` or `SCTP`.
    protocol: String,
}

/// The enforcement point of `svcnet up`. Cheap to share.
pub(crate) struct PolicyGate {
    current: ArcSwap<Enforcement>,
    denied: Family<DeniedLabels, Counter>,
}

impl PolicyGate {
    /// A gate for the first state; registers `svcnet_policy_denied_total`.
    pub(crate) fn new(
        cluster: &Cluster,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Arc<PolicyGate> {
        let denied = Family::<DeniedLabels, Counter>::default();
        registry.register(
            "svcnet_policy_denied",
            "Connections and datagrams denied by NetworkPolicy, by enforcement point and protocol",
            denied.clone(),
        );
        Arc::new(PolicyGate {
            current: ArcSwap::from_pointee(Enforcement::build(cluster)),
            denied,
        })
    }

    /// Compiles and publishes the policies of a new served state: new connections follow
    /// them at once.
    pub(crate) fn publish(&self, cluster: &Cluster) {
        self.current.store(Arc::new(Enforcement::build(cluster)));
    }

    fn deny(&self, path: &str, protocol: Protocol, src: IpAddr, dst: SocketAddr) {
        self.denied
            .get_or_create(&DeniedLabels {
                path: path.to_string(),
                protocol: protocol.as_str().to_string(),
            })
            .inc();
        debug!(%src, %dst, protocol = protocol.as_str(), path, "denied by NetworkPolicy");
    }

    /// Ingress of a pod agent: `src` connects to the pod at `dst`.
    fn admit_agent(&self, src: SocketAddr, dst: SocketAddr, protocol: Protocol) -> bool {
        let e = self.current.load();
        let ok = e
            .index
            .allows_ingress(src.ip(), dst.ip(), dst.port(), protocol);
        if !ok {
            self.deny("agent", protocol, src.ip(), dst);
        }
        ok
    }

    /// Egress of `/_agent/dial` from a pod's address `src` to `dst`.
    fn admit_dial(&self, src: IpAddr, dst: SocketAddr, protocol: Protocol) -> bool {
        let e = self.current.load();
        if e.frontends.contains(&dst.ip()) {
            return true;
        }
        let ok = e.index.allows_egress(src, dst.ip(), dst.port(), protocol);
        if !ok {
            self.deny("dial", protocol, src, dst);
        }
        ok
    }

    /// A Service endpoint candidate for a client. The load balancer counts and logs the
    /// connections it refuses because every candidate was denied
    /// (`connections_refused` and `udp_packets_dropped` with `reason="network_policy"`).
    fn admit_endpoint(&self, client: IpAddr, endpoint: SocketAddr, protocol: Protocol) -> bool {
        let e = self.current.load();
        e.index.is_empty()
            || e.index
                .allows(client, endpoint.ip(), endpoint.port(), protocol)
    }

    /// The hooks of the pod agents.
    pub(crate) fn sandbox_config(self: &Arc<Self>) -> SandboxConfig {
        let agent = self.clone();
        let dial = self.clone();
        SandboxConfig {
            admit: Some(Arc::new(move |src, dst, _pod: &ObjectKey, protocol| {
                agent.admit_agent(src, dst, protocol)
            })),
            dial_admit: Some(Arc::new(move |_pod: &ObjectKey, src, dst, protocol| {
                dial.admit_dial(src, dst, protocol)
            })),
        }
    }

    /// The hook of the Service load balancer.
    pub(crate) fn proxy_admit(self: &Arc<Self>) -> Admit {
        let gate = self.clone();
        Arc::new(move |client, backend, protocol, port| {
            gate.admit_endpoint(client, SocketAddr::new(backend.addr.ip(), port), protocol)
        })
    }
}
