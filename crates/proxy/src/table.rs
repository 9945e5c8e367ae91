//! The service table: every address the Service load balancer listens on, with the
//! endpoints behind it. Pure and immutable; built from a [`Cluster`] in one pass, then
//! published to the forwarder through an `ArcSwap`.
//!
//! One [`Frontend`] per (listen address, port, protocol), as kube-proxy installs one rule
//! per ClusterIP, NodePort (on every node address), load-balancer ingress IP and external
//! IP. Headless and ExternalName Services have no frontend. Anything whose address is not
//! a loopback address (127.0.0.0/8, ::1) is left out and listed in
//! [`ServiceTable::skipped`]: svcnet never binds or connects anything else.
//!
//! Which node "received" traffic, for `externalTrafficPolicy: Local`:
//! - a NodePort listener on node N's InternalIP is node N;
//! - the NodePort listener on 127.0.0.1 (or ::1), load-balancer IPs and external IPs all
//!   count as the first node in natural name order (`node-1` before `node-2` before
//!   `node-10`): in loopback mode there is one host, and the load balancer in front of it
//!   has to pick some node. svcnet picks the first one, always the same.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use svcnet_model::Cluster;
use svcnet_model::Kind;
use svcnet_model::types::{
    AddressType, IpFamily, ObjectKey, Protocol, Service, ServicePort, ServiceType, SessionAffinity,
    TrafficPolicy,
};

/// The Service load balancer's view of a cluster: frontends and their endpoints.
#[derive(Clone, Debug, Default)]
pub struct ServiceTable {
    /// Sorted by (listen, protocol); unique.
    frontends: Vec<Frontend>,
    index: HashMap<(SocketAddr, Protocol), usize>,
    skipped: Vec<Skipped>,
    /// Pod IPs and node InternalIPs to their node.
    client_nodes: HashMap<IpAddr, String>,
    ports: Vec<ServicePortSummary>,
}

/// An address the Service load balancer listens on, and where its traffic goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    /// The listen address (ClusterIP, node address, load-balancer IP or external IP) and port.
    pub listen: SocketAddr,
    /// TCP or UDP (SCTP gets no userspace frontend).
    pub protocol: Protocol,
    /// What kind of Service address this is.
    pub kind: FrontendKind,
    /// The Service.
    pub service: ObjectKey,
    /// The Service port's name (`""` when unnamed).
    pub port_name: String,
    /// The Service port (`spec.ports[].port`), for every kind of frontend.
    pub port: u16,
    /// The endpoints of this Service port in the listen address's IP family, loopback only,
    /// sorted by address, with their EndpointSlice conditions.
    pub endpoints: Vec<Backend>,
    /// `sessionAffinity: ClientIP` with its timeout.
    pub affinity: Option<Duration>,
    /// `externalTrafficPolicy: Local` on a NodePort, LoadBalancer or external-IP frontend:
    /// the node that receives the traffic, whose endpoints alone may serve it.
    pub traffic_local: Option<String>,
    /// `internalTrafficPolicy: Local` on a ClusterIP frontend: only endpoints on the client's
    /// node may serve it.
    pub internal_local: bool,
    /// `loadBalancerSourceRanges` (LoadBalancer frontends only; empty = every client).
    pub source_ranges: Vec<IpNet>,
}

impl Frontend {
    /// The Service port this frontend serves; affinity and metrics are kept per Service port.
    pub fn service_port(&self) -> ServicePortKey {
        ServicePortKey {
            service: self.service.clone(),
            port: self.port,
            protocol: self.protocol,
        }
    }
}

/// The kind of Service address a frontend listens on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrontendKind {
    /// A ClusterIP.
    ClusterIp,
    /// A NodePort on a node's address; the 127.0.0.1 (::1) listener belongs to the first node.
    NodePort {
        /// The node that receives the traffic.
        node: String,
    },
    /// A load-balancer ingress IP (`status.loadBalancer.ingress`).
    LoadBalancer,
    /// An address of `spec.externalIPs`.
    ExternalIp,
}

impl FrontendKind {
    /// A short name for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort { .. } => "NodePort",
            FrontendKind::LoadBalancer => "LoadBalancer",
            FrontendKind::ExternalIp => "ExternalIP",
        }
    }
}

/// One endpoint of a Service port: a pod address and its resolved target port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Pod IP and target port.
    pub addr: SocketAddr,
    /// The pod behind it (`targetRef`).
    pub pod: Option<ObjectKey>,
    /// The node it runs on (`nodeName`).
    pub node: Option<String>,
    /// `conditions.ready`.
    pub ready: bool,
    /// `conditions.serving`.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
}

/// A Service port: the key of session affinity and of per-service metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortKey {
    /// The Service.
    pub service: ObjectKey,
    /// `spec.ports[].port`.
    pub port: u16,
    /// `spec.ports[].protocol`.
    pub protocol: Protocol,
}

/// Endpoint counts of one Service port (every family, loopback endpoints only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortSummary {
    /// The Service port.
    pub key: ServicePortKey,
    /// Endpoints with `ready`.
    pub ready: usize,
    /// Endpoints with `serving` and `terminating` (the fallback set).
    pub serving_terminating: usize,
    /// Every endpoint.
    pub total: usize,
}

/// Something the table left out: an address outside loopback, a protocol the userspace
/// proxy cannot carry, a listen address two Services want.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    /// The kind of the object (`Service`, `EndpointSlice`, `Node`).
    pub kind: Kind,
    /// Namespace and name (the namespace is empty for nodes).
    pub object: ObjectKey,
    /// The address in question.
    pub address: String,
    /// Why.
    pub reason: SkipReason,
}

/// Why an address was left out of the table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    /// Not in 127.0.0.0/8 or ::1: svcnet binds and connects loopback addresses only.
    NotLoopback,
    /// An endpoint address that is not an IP (an `FQDN` EndpointSlice), which kube-proxy
    /// ignores as well.
    NotAnIp,
    /// SCTP: the userspace proxy carries TCP and UDP only.
    UnsupportedProtocol(Protocol),
    /// Another Service already listens on this address, port and protocol.
    ListenerTaken(ObjectKey),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotLoopback => f.write_str(
                "not a loopback address: svcnet binds and connects 127.0.0.0/8 and ::1 only",
            ),
            SkipReason::NotAnIp => f.write_str("not an IP address"),
            SkipReason::UnsupportedProtocol(p) => {
                write!(
                    f,
                    "{p} is not carried by the userspace proxy (TCP and UDP only)"
                )
            }
            SkipReason::ListenerTaken(other) => {
                write!(
                    f,
                    "Service {other} already listens on this address and port"
                )
            }
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.object.namespace.is_empty() {
            self.object.name.clone()
        } else {
            self.object.to_string()
        };
        write!(f, "{} {name}: {}: {}", self.kind, self.address, self.reason)
    }
}

impl ServiceTable {
    /// Compiles the table from a cluster. Never fails: what cannot be served is listed in
    /// [`ServiceTable::skipped`].
    pub fn build(cluster: &Cluster) -> ServiceTable {
        let mut skipped: BTreeSet<Skipped> = BTreeSet::new();

        let mut nodes: Vec<(&str, IpAddr)> = cluster
            .nodes
            .values()
            .map(|n| (n.meta.name.as_str(), n.internal_ip))
            .collect();
        nodes.sort_by(|a, b| svcnet_model::derive::natural_cmp(a.0, b.0));
        let first_node = nodes.first().map(|(n, _)| n.to_string());

        // Pods first: a hostNetwork pod shares its node's address, and it is on that node.
        let mut client_nodes: HashMap<IpAddr, String> = HashMap::new();
        for pod in cluster.pods.values() {
            if pod.node_name.is_empty() {
                continue;
            }
            for ip in &pod.ips {
                client_nodes
                    .entry(*ip)
                    .or_insert_with(|| pod.node_name.clone());
            }
        }
        for (name, ip) in &nodes {
            client_nodes.entry(*ip).or_insert_with(|| name.to_string());
        }

        let mut frontends: BTreeMap<(SocketAddr, Protocol), Frontend> = BTreeMap::new();
        let mut ports = Vec::new();
        for svc in cluster.services.values() {
            if svc.type_ == ServiceType::ExternalName || svc.is_headless() {
                continue;
            }
            let key = ObjectKey::new(svc.meta.namespace.clone(), svc.meta.name.clone());
            let families: Vec<IpFamily> = {
                let mut f: Vec<IpFamily> = svc.cluster_ip_list().iter().map(IpFamily::of).collect();
                if f.is_empty() {
                    f.clone_from(&svc.ip_families);
                }
                if f.is_empty() {
                    f.push(IpFamily::V4);
                }
                f
            };
            for sp in &svc.ports {
                if sp.protocol == Protocol::Sctp {
                    for ip in svc.cluster_ip_list() {
                        skipped.insert(Skipped {
                            kind: Kind::Service,
                            object: key.clone(),
                            address: SocketAddr::new(*ip, sp.port).to_string(),
                            reason: SkipReason::UnsupportedProtocol(sp.protocol),
                        });
                    }
                    continue;
                }
                let backends = backends_of(cluster, svc, sp, &mut skipped);
                ports.push(ServicePortSummary {
                    key: ServicePortKey {
                        service: key.clone(),
                        port: sp.port,
                        protocol: sp.protocol,
                    },
                    ready: backends.iter().filter(|b| b.ready).count(),
                    serving_terminating: backends
                        .iter()
                        .filter(|b| b.serving && b.terminating)
                        .count(),
                    total: backends.len(),
                });
                let mut add = |listen_ip: IpAddr,
                               listen_port: u16,
                               kind: FrontendKind,
                               skip_kind: Kind,
                               skip_object: &ObjectKey| {
                    if !listen_ip.is_loopback() {
                        skipped.insert(Skipped {
                            kind: skip_kind,
                            object: skip_object.clone(),
                            address: listen_ip.to_string(),
                            reason: SkipReason::NotLoopback,
                        });
                        return;
                    }
                    let listen = SocketAddr::new(listen_ip, listen_port);
                    let family = IpFamily::of(&listen_ip);
                    let external = !matches!(kind, FrontendKind::ClusterIp);
                    let traffic_local = match (&kind, svc.external_traffic_policy) {
                        (FrontendKind::ClusterIp, _) | (_, TrafficPolicy::Cluster) => None,
                        (FrontendKind::NodePort { node }, TrafficPolicy::Local) => {
                            Some(node.clone())
                        }
                        (_, TrafficPolicy::Local) => first_node.clone(),
                    };
                    let fe = Frontend {
                        listen,
                        protocol: sp.protocol,
                        service: key.clone(),
                        port_name: sp.name.clone().unwrap_or_default(),
                        port: sp.port,
                        endpoints: backends
                            .iter()
                            .filter(|b| IpFamily::of(&b.addr.ip()) == family)
                            .cloned()
                            .collect(),
                        affinity: match svc.session_affinity {
                            SessionAffinity::None => None,
                            SessionAffinity::ClientIp { timeout_seconds } => {
                                Some(Duration::from_secs(u64::from(timeout_seconds)))
                            }
                        },
                        traffic_local,
                        internal_local: !external
                            && svc.internal_traffic_policy == TrafficPolicy::Local,
                        source_ranges: if kind == FrontendKind::LoadBalancer {
                            svc.load_balancer_source_ranges.clone()
                        } else {
                            Vec::new()
                        },
                        kind,
                    };
                    match frontends.get(&(listen, sp.protocol)) {
                        Some(other) => {
                            skipped.insert(Skipped {
                                kind: Kind::Service,
                                object: key.clone(),
                                address: listen.to_string(),
                                reason: SkipReason::ListenerTaken(other.service.clone()),
                            });
                        }
                        None => {
                            frontends.insert((listen, sp.protocol), fe);
                        }
                    }
                };

                for ip in svc.cluster_ip_list() {
                    add(*ip, sp.port, FrontendKind::ClusterIp, Kind::Service, &key);
                }
                if let Some(node_port) = sp.node_port {
                    for (node, ip) in &nodes {
                        if families.contains(&IpFamily::of(ip)) {
                            let kind = FrontendKind::NodePort {
                                node: node.to_string(),
                            };
                            add(*ip, node_port, kind, Kind::Node, &ObjectKey::new("", *node));
                        }
                    }
                    if let Some(first) = &first_node {
                        for family in &families {
                            let lo = match family {
                                IpFamily::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
                                IpFamily::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
                            };
                            // A node whose InternalIP is 127.0.0.1 already has this listener.
                            if nodes.iter().any(|(_, ip)| *ip == lo) {
                                continue;
                            }
                            let kind = FrontendKind::NodePort {
                                node: first.clone(),
                            };
                            add(lo, node_port, kind, Kind::Service, &key);
                        }
                    }
                }
                for ip in &svc.load_balancer_ips {
                    add(
                        *ip,
                        sp.port,
                        FrontendKind::LoadBalancer,
                        Kind::Service,
                        &key,
                    );
                }
                for ip in &svc.external_ips {
                    add(*ip, sp.port, FrontendKind::ExternalIp, Kind::Service, &key);
                }
            }
        }

        let frontends: Vec<Frontend> = frontends.into_values().collect();
        let index = frontends
            .iter()
            .enumerate()
            .map(|(i, f)| ((f.listen, f.protocol), i))
            .collect();
        ServiceTable {
            frontends,
            index,
            skipped: skipped.into_iter().collect(),
            client_nodes,
            ports,
        }
    }

    /// Every frontend, ordered by listen address and protocol.
    pub fn frontends(&self) -> impl Iterator<Item = &Frontend> {
        self.frontends.iter()
    }

    /// The frontend listening on an address, port and protocol.
    pub fn frontend(&self, listen: SocketAddr, protocol: Protocol) -> Option<&Frontend> {
        self.index
            .get(&(listen, protocol))
            .and_then(|i| self.frontends.get(*i))
    }

    /// What was left out, once per object, address and reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The node a client address belongs to: the node of the pod with that IP, else the node
    /// with that InternalIP, else `None` ("the host", outside every node).
    pub fn client_node(&self, client: IpAddr) -> Option<&str> {
        self.client_nodes.get(&client).map(String::as_str)
    }

    /// Endpoint counts of every Service port that has frontends or could have them.
    pub fn service_ports(&self) -> &[ServicePortSummary] {
        &self.ports
    }

    /// Keeps only the frontends `keep` accepts: for addresses another data plane serves
    /// itself (a DNS server bound on the kube-dns ClusterIP, for instance).
    pub fn retain(&mut self, mut keep: impl FnMut(&Frontend) -> bool) {
        self.frontends.retain(|f| keep(f));
        self.index = self
            .frontends
            .iter()
            .enumerate()
            .map(|(i, f)| ((f.listen, f.protocol), i))
            .collect();
    }

    /// Number of frontends.
    pub fn len(&self) -> usize {
        self.frontends.len()
    }

    /// True when nothing is served.
    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty()
    }
}

/// The endpoints of one Service port, in every family, loopback only, sorted, deduplicated.
/// As kube-proxy does, only an endpoint's first address is used.
fn backends_of(
    cluster: &Cluster,
    svc: &Service,
    sp: &ServicePort,
    skipped: &mut BTreeSet<Skipped>,
) -> Vec<Backend> {
    let key = ObjectKey::new(svc.meta.namespace.clone(), svc.meta.name.clone());
    let port_name = sp.name.as_deref().unwrap_or("");
    let mut out: BTreeMap<SocketAddr, Backend> = BTreeMap::new();
    for slice in cluster.slices_of(&key) {
        let slice_key = ObjectKey::new(slice.meta.namespace.clone(), slice.meta.name.clone());
        let Some(port) = slice
            .ports
            .iter()
            .find(|p| p.name == port_name && p.protocol == sp.protocol)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(address) = ep.addresses.first() else {
                continue;
            };
            let ip = match (slice.address_type, address.parse::<IpAddr>()) {
                (AddressType::IPv4 | AddressType::IPv6, Ok(ip)) => ip,
                _ => {
                    skipped.insert(Skipped {
                        kind: Kind::EndpointSlice,
                        object: slice_key.clone(),
                        address: address.clone(),
                        reason: SkipReason::NotAnIp,
                    });
                    continue;
                }
            };
            if !ip.is_loopback() {
                skipped.insert(Skipped {
                    kind: Kind::EndpointSlice,
                    object: slice_key.clone(),
                    address: ip.to_string(),
                    reason: SkipReason::NotLoopback,
                });
                continue;
            }
            let addr = SocketAddr::new(ip, port);
            out.entry(addr).or_insert_with(|| Backend {
                addr,
                pod: ep.target_ref.clone(),
                node: ep.node_name.clone(),
                ready: ep.ready,
                serving: ep.serving,
                terminating: ep.terminating,
            });
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use svcnet_model::AddressPlan;

    pub(crate) fn cluster(text: &str, nodes: u32) -> Cluster {
        let plan = AddressPlan {
            nodes,
            ..AddressPlan::default()
        };
        let (c, d) = Cluster::from_yaml("t.yaml", text, &plan);
        match c {
            Some(c) => c,
            None => panic!("did not load:\n{d}"),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const SHOP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        ports:
        - {name: http, containerPort: 8080}
        - {name: dns, containerPort: 5353, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  clusterIP: 127.96.50.1
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: dns, port: 53, targetPort: dns, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  type: ExternalName
  externalName: example.com
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 127.96.50.2
  externalTrafficPolicy: Local
  externalIPs: [127.50.0.1, 192.0.2.7]
  loadBalancerSourceRanges: [127.0.0.0/16]
  selector: {app: web}
  ports:
  - {name: http, port: 8000, targetPort: http, nodePort: 30081}
---
apiVersion: v1
kind: Service
metadata: {name: outside, namespace: shop}
spec:
  clusterIP: 10.96.45.123
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: shop}
spec:
  clusterIP: 127.96.50.3
  ports: [{port: 81}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-1
  namespace: shop
  labels: {kubernetes.io/service-name: manual}
addressType: IPv4
ports: [{name: "", port: 9000, protocol: TCP}]
endpoints:
- addresses: [10.1.2.3]
- addresses: [127.244.9.9]
  conditions: {ready: false, serving: true, terminating: true}
  nodeName: node-2
"#;

    #[test]
    fn frontends_for_every_service_address() {
        let c = cluster(SHOP, 3);
        let t = ServiceTable::build(&c);
        let dns_np = c.services[&ObjectKey::new("shop", "web")].ports[1]
            .node_port
            .unwrap();
        let got: Vec<String> = t
            .frontends()
            .filter(|f| f.service.namespace == "shop")
            .map(|f| {
                format!(
                    "{} {} {} {}",
                    f.protocol,
                    f.listen,
                    f.kind.as_str(),
                    f.service
                )
            })
            .collect();
        let lb_ip = c.services[&ObjectKey::new("shop", "lb")].load_balancer_ips[0];
        assert!(lb_ip.is_loopback());
        let mut want = vec![
            "TCP 127.96.50.1:80 ClusterIP shop/web".to_string(),
            "UDP 127.96.50.1:53 ClusterIP shop/web".to_string(),
            "TCP 127.0.1.1:30080 NodePort shop/web".to_string(),
            "TCP 127.0.1.2:30080 NodePort shop/web".to_string(),
            "TCP 127.0.1.3:30080 NodePort shop/web".to_string(),
            "TCP 127.0.0.1:30080 NodePort shop/web".to_string(),
            format!("UDP 127.0.1.1:{dns_np} NodePort shop/web"),
            format!("UDP 127.0.1.2:{dns_np} NodePort shop/web"),
            format!("UDP 127.0.1.3:{dns_np} NodePort shop/web"),
            format!("UDP 127.0.0.1:{dns_np} NodePort shop/web"),
            "TCP 127.96.50.2:8000 ClusterIP shop/lb".to_string(),
            "TCP 127.0.1.1:30081 NodePort shop/lb".to_string(),
            "TCP 127.0.1.2:30081 NodePort shop/lb".to_string(),
            "TCP 127.0.1.3:30081 NodePort shop/lb".to_string(),
            "TCP 127.0.0.1:30081 NodePort shop/lb".to_string(),
            format!("TCP {lb_ip}:8000 LoadBalancer shop/lb"),
            "TCP 127.50.0.1:8000 ExternalIP shop/lb".to_string(),
            "TCP 127.96.50.3:81 ClusterIP shop/manual".to_string(),
        ];
        let mut got_sorted = got.clone();
        got_sorted.sort();
        want.sort();
        assert_eq!(got_sorted, want);
        // Frontends come out ordered by listen address, then protocol; lookups find them.
        let keys: Vec<(SocketAddr, Protocol)> =
            t.frontends().map(|f| (f.listen, f.protocol)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for (listen, protocol) in keys {
            assert_eq!(t.frontend(listen, protocol).unwrap().listen, listen);
        }
        // The built-in Services are served too.
        assert!(t.frontend(sa("127.96.0.10:53"), Protocol::Udp).is_some());
    }

    #[test]
    fn retain_drops_frontends_and_keeps_lookups_right() {
        let c = cluster(SHOP, 1);
        let mut t = ServiceTable::build(&c);
        let before = t.len();
        t.retain(|f| f.service.namespace != "kube-system");
        assert!(t.len() < before);
        assert!(t.frontend(sa("127.96.0.10:53"), Protocol::Udp).is_none());
        for f in t.frontends() {
            assert_eq!(t.frontend(f.listen, f.protocol), Some(f));
        }
    }

    #[test]
    fn endpoints_resolve_target_ports_per_protocol() {
        let c = cluster(SHOP, 3);
        let t = ServiceTable::build(&c);
        let http = t.frontend(sa("127.96.50.1:80"), Protocol::Tcp).unwrap();
        assert_eq!(http.endpoints.len(), 3);
        assert!(
            http.endpoints
                .iter()
                .all(|b| b.addr.port() == 8080 && b.ready)
        );
        assert!(
            http.endpoints
                .iter()
                .all(|b| b.pod.is_some() && b.node.is_some())
        );
        let dns = t.frontend(sa("127.96.50.1:53"), Protocol::Udp).unwrap();
        assert!(dns.endpoints.iter().all(|b| b.addr.port() == 5353));
        assert_eq!(http.port_name, "http");
        assert_eq!(http.port, 80);
        // Every pod IP maps to its node.
        for pod in c.pods.values() {
            assert_eq!(t.client_node(pod.ips[0]), Some(pod.node_name.as_str()));
        }
        assert_eq!(t.client_node("127.0.1.2".parse().unwrap()), Some("node-2"));
        assert_eq!(t.client_node("127.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn node_ports_listen_on_every_node_and_on_localhost() {
        let c = cluster(SHOP, 3);
        let t = ServiceTable::build(&c);
        let node_of = |a: &str| match &t.frontend(sa(a), Protocol::Tcp).unwrap().kind {
            FrontendKind::NodePort { node } => node.clone(),
            k => panic!("{k:?}"),
        };
        assert_eq!(node_of("127.0.1.1:30080"), "node-1");
        assert_eq!(node_of("127.0.1.2:30080"), "node-2");
        assert_eq!(node_of("127.0.1.3:30080"), "node-3");
        assert_eq!(node_of("127.0.0.1:30080"), "node-1");
        // Cluster policy: no local restriction.
        assert_eq!(
            t.frontend(sa("127.0.1.2:30080"), Protocol::Tcp)
                .unwrap()
                .traffic_local,
            None
        );
    }

    #[test]
    fn external_traffic_policy_local_names_the_receiving_node() {
        let c = cluster(SHOP, 3);
        let t = ServiceTable::build(&c);
        let lb_ip = c.services[&ObjectKey::new("shop", "lb")].load_balancer_ips[0];
        let local = |a: SocketAddr| t.frontend(a, Protocol::Tcp).unwrap().traffic_local.clone();
        assert_eq!(local(sa("127.0.1.3:30081")).as_deref(), Some("node-3"));
        assert_eq!(local(sa("127.0.0.1:30081")).as_deref(), Some("node-1"));
        assert_eq!(
            local(SocketAddr::new(lb_ip, 8000)).as_deref(),
            Some("node-1")
        );
        assert_eq!(local(sa("127.50.0.1:8000")).as_deref(), Some("node-1"));
        // ClusterIP traffic is governed by internalTrafficPolicy, not this.
        assert_eq!(local(sa("127.96.50.2:8000")), None);
        // Source ranges apply to the load-balancer address only.
        let lb = t
            .frontend(SocketAddr::new(lb_ip, 8000), Protocol::Tcp)
            .unwrap();
        assert_eq!(lb.source_ranges.len(), 1);
        let ext = t.frontend(sa("127.50.0.1:8000"), Protocol::Tcp).unwrap();
        assert!(ext.source_ranges.is_empty());
    }

    #[test]
    fn non_loopback_addresses_are_skipped_and_reported_once() {
        let c = cluster(SHOP, 3);
        let t = ServiceTable::build(&c);
        let skipped: Vec<String> = t.skipped().iter().map(ToString::to_string).collect();
        assert_eq!(
            skipped,
            vec![
                "Service shop/lb: 192.0.2.7: not a loopback address: svcnet binds and connects 127.0.0.0/8 and ::1 only",
                "Service shop/outside: 10.96.45.123: not a loopback address: svcnet binds and connects 127.0.0.0/8 and ::1 only",
                "EndpointSlice shop/manual-1: 10.1.2.3: not a loopback address: svcnet binds and connects 127.0.0.0/8 and ::1 only",
            ]
        );
        assert!(t.frontends().all(|f| f.service.name != "outside"));
        let manual = t.frontend(sa("127.96.50.3:81"), Protocol::Tcp).unwrap();
        assert_eq!(manual.endpoints.len(), 1);
        let b = &manual.endpoints[0];
        assert_eq!(b.addr, sa("127.244.9.9:9000"));
        assert!(!b.ready && b.serving && b.terminating);
        assert_eq!(b.node.as_deref(), Some("node-2"));
    }

    #[test]
    fn headless_and_external_name_get_no_listener() {
        let c = cluster(SHOP, 1);
        let t = ServiceTable::build(&c);
        assert!(
            t.frontends()
                .all(|f| f.service.name != "db" && f.service.name != "ext")
        );
        assert!(
            t.skipped()
                .iter()
                .all(|s| s.object.name != "db" && s.object.name != "ext")
        );
    }

    #[test]
    fn summaries_count_ready_endpoints() {
        let c = cluster(SHOP, 1);
        let t = ServiceTable::build(&c);
        let manual = t
            .service_ports()
            .iter()
            .find(|p| p.key.service.name == "manual")
            .unwrap();
        assert_eq!(
            (manual.ready, manual.serving_terminating, manual.total),
            (0, 1, 1)
        );
        let web = t
            .service_ports()
            .iter()
            .find(|p| p.key.service.name == "web" && p.key.protocol == Protocol::Tcp)
            .unwrap();
        assert_eq!(web.ready, 3);
    }

    #[test]
    fn session_affinity_and_internal_policy_are_carried() {
        let c = cluster(
            r#"
apiVersion: v1
kind: Service
metadata: {name: s, namespace: a}
spec:
  clusterIP: 127.96.51.1
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  internalTrafficPolicy: Local
  ports: [{port: 80}]
"#,
            1,
        );
        let t = ServiceTable::build(&c);
        let fe = t.frontend(sa("127.96.51.1:80"), Protocol::Tcp).unwrap();
        assert_eq!(fe.affinity, Some(Duration::from_secs(60)));
        assert!(fe.internal_local);
        assert!(fe.endpoints.is_empty());
    }
}
