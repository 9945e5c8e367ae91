//! svcnet's own validated types. Everything above `model` works on these: every `Option`
//! here means "absent in Kubernetes too", never "not validated yet".

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, networking::v1 as net};
use serde::Serialize;

use crate::diag::{ObjectRef, Source};
use crate::kind::Kind;
use crate::selector::{LabelSelector, Labels};

/// Metadata common to every object.
#[derive(Clone, Debug)]
pub struct Meta {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, defaulted to `default`; empty for cluster-scoped kinds.
    pub namespace: String,
    /// `metadata.labels`. Shared: the replicas of one controller hold one map
    /// (`Arc::make_mut` to change one object's labels).
    pub labels: Arc<Labels>,
    /// `metadata.annotations`, shared like `labels`.
    pub annotations: Arc<BTreeMap<String, String>>,
    /// `metadata.creationTimestamp`, when the manifest has one.
    pub creation_timestamp: Option<jiff::Timestamp>,
    /// `metadata.deletionTimestamp` is set: the object is terminating.
    pub terminating: bool,
    /// Where the object was written (for derived objects: their owner's manifest).
    pub source: Source,
    /// Finds the lines of the object's fields, when it was read from text.
    pub locator: Option<Arc<crate::load::Locator>>,
}

impl Meta {
    /// The source of one of the object's fields (its line when known).
    pub fn source_of(&self, field: &str) -> Source {
        match &self.locator {
            Some(l) => l.source_of(field),
            None => self.source.clone(),
        }
    }

    /// `namespace/name`, or `name` for cluster-scoped objects.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// A reference for diagnostics.
    pub fn object_ref(&self, kind: Kind) -> ObjectRef {
        ObjectRef::new(kind, &self.namespace, &self.name)
    }
}

/// Namespace and name: the key of a namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// L4 protocol of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Protocol {
    /// TCP (the default).
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// Parses `TCP`, `UDP`, `SCTP` (case-sensitive, as the API server does).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port given by number or by name (`targetPort`, probe ports, policy ports, backends).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum PortRef {
    /// A number, 1-65535.
    Number(u16),
    /// A container port name (IANA service name syntax).
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => f.write_str(s),
        }
    }
}

/// IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum IpFamily {
    /// IPv4.
    #[serde(rename = "IPv4")]
    V4,
    /// IPv6.
    #[serde(rename = "IPv6")]
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> IpFamily {
        if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Namespaces and nodes

/// A namespace. Every namespace carries `kubernetes.io/metadata.name`.
#[derive(Clone, Debug)]
pub struct Namespace {
    /// Metadata (`meta.namespace` is empty).
    pub meta: Meta,
    /// True when no manifest declared it and svcnet created it.
    pub implicit: bool,
    /// The object as written, when one was.
    pub raw: Option<Arc<core::Namespace>>,
}

/// A node: a `Node` object, or one of `--nodes N` default nodes.
#[derive(Clone, Debug)]
pub struct Node {
    /// Metadata.
    pub meta: Meta,
    /// InternalIP (in loopback mode 127.0.1.N).
    pub internal_ip: IpAddr,
    /// The node's pod range(s).
    pub pod_cidrs: Vec<IpNet>,
    /// False when `spec.unschedulable` is set.
    pub schedulable: bool,
    /// The object as written, when one was.
    pub raw: Option<Arc<core::Node>>,
}

// ---------------------------------------------------------------------------------------
// Pods

/// A container's declared port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerPort {
    /// Port name (IANA service name), if any.
    pub name: Option<String>,
    /// The port.
    pub port: u16,
    /// Protocol, default TCP.
    pub protocol: Protocol,
    /// `hostPort`, if any.
    pub host_port: Option<u16>,
}

/// How a probe checks a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ProbeAction {
    /// `httpGet`.
    HttpGet {
        /// Request path, default `/`.
        path: String,
        /// Port by number or container port name.
        port: PortRef,
        /// `HTTP` or `HTTPS`.
        https: bool,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// `tcpSocket`.
    TcpSocket {
        /// Port by number or container port name.
        port: PortRef,
    },
    /// `grpc` health check.
    Grpc {
        /// Port number.
        port: u16,
        /// Service name for the health request.
        service: Option<String>,
    },
    /// `exec`: a command inside the container; not runnable in loopback mode.
    Exec {
        /// The command.
        command: Vec<String>,
    },
}

/// A readiness probe with its timings, defaulted as kubelet does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// What to check.
    pub action: ProbeAction,
    /// `initialDelaySeconds`, default 0.
    pub initial_delay_seconds: u32,
    /// `periodSeconds`, default 10.
    pub period_seconds: u32,
    /// `timeoutSeconds`, default 1.
    pub timeout_seconds: u32,
    /// `successThreshold`, default 1.
    pub success_threshold: u32,
    /// `failureThreshold`, default 3.
    pub failure_threshold: u32,
}

/// A container, as far as networking cares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Image (informational).
    pub image: String,
    /// Declared ports.
    pub ports: Vec<ContainerPort>,
    /// Readiness probe.
    pub readiness_probe: Option<Probe>,
}

/// `spec.dnsPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DnsPolicy {
    /// The default: cluster DNS first, then the node's.
    ClusterFirst,
    /// Cluster DNS even for hostNetwork pods.
    ClusterFirstWithHostNet,
    /// The node's resolv.conf.
    Default,
    /// Only `dnsConfig`.
    None,
}

/// `spec.dnsConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PodDnsConfig {
    /// Extra nameservers.
    pub nameservers: Vec<IpAddr>,
    /// Extra search domains.
    pub searches: Vec<String>,
    /// Resolver options (`ndots` = `Some("2")`, `edns0` = `None`).
    pub options: Vec<(String, Option<String>)>,
}

/// Pod lifecycle phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PodPhase {
    /// Not started yet.
    Pending,
    /// Running.
    Running,
    /// All containers exited 0.
    Succeeded,
    /// Some container failed.
    Failed,
    /// State unknown.
    Unknown,
}

impl PodPhase {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        }
    }
}

/// The controller that owns a pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Owner kind (`ReplicaSet`, `StatefulSet`, `DaemonSet`).
    pub kind: String,
    /// Owner name.
    pub name: String,
}

/// A pod, placed and addressed.
#[derive(Clone, Debug)]
pub struct Pod {
    /// Metadata.
    pub meta: Meta,
    /// The node it runs on.
    pub node_name: String,
    /// Pod IPs (one per family); empty only for pods that cannot get one.
    pub ips: Vec<IpAddr>,
    /// The node's address.
    pub host_ip: Option<IpAddr>,
    /// `spec.hostNetwork`: the pod uses its node's address.
    pub host_network: bool,
    /// `spec.hostname`.
    pub hostname: Option<String>,
    /// `spec.subdomain`.
    pub subdomain: Option<String>,
    /// Containers (shared by the replicas of one controller).
    pub containers: Arc<Vec<Container>>,
    /// Phase.
    pub phase: PodPhase,
    /// The Ready condition.
    pub ready: bool,
    /// `spec.dnsPolicy`, defaulted.
    pub dns_policy: DnsPolicy,
    /// `spec.dnsConfig`.
    pub dns_config: Option<PodDnsConfig>,
    /// The owning controller, if any.
    pub owner: Option<Owner>,
    /// The pod as written. For a pod svcnet derives: the metadata its controller stamps on
    /// every replica, shared by all of them, without a spec (that is `template`).
    pub raw: Arc<core::Pod>,
    /// For a pod svcnet derives: the template its controller stamped it from, shared with
    /// the controller (one copy of a PodSpec per workload, not per pod). `None` for pods
    /// written in manifests.
    pub template: Option<Arc<core::PodTemplateSpec>>,
}

impl Pod {
    /// Finds a container port by name (any protocol) across all containers.
    pub fn port_by_name(&self, name: &str) -> Option<&ContainerPort> {
        self.containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name.as_deref() == Some(name))
    }

    /// Resolves a port reference against this pod's containers, as kubelet and the
    /// EndpointSlice controller do: numbers are themselves, names are looked up with
    /// the given protocol.
    pub fn resolve_port(&self, port: &PortRef, protocol: Protocol) -> Option<u16> {
        match port {
            PortRef::Number(n) => Some(*n),
            PortRef::Name(name) => self
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol == protocol)
                .map(|p| p.port),
        }
    }

    /// True when the pod declares `port`/`protocol` in some container.
    pub fn declares_port(&self, port: u16, protocol: Protocol) -> bool {
        self.containers
            .iter()
            .flat_map(|c| &c.ports)
            .any(|p| p.port == port && p.protocol == protocol)
    }

    /// The pod's IP of a family.
    pub fn ip_of(&self, family: IpFamily) -> Option<IpAddr> {
        self.ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }
}

// ---------------------------------------------------------------------------------------
// Workloads

/// What a pod spec says about networking, validated: the part of a pod a controller copies
/// from its template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSpecInfo {
    /// Containers (and sidecar init containers), shared with the pods stamped from it.
    pub containers: Arc<Vec<Container>>,
    /// `hostNetwork`.
    pub host_network: bool,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `subdomain`.
    pub subdomain: Option<String>,
    /// `dnsPolicy`, defaulted.
    pub dns_policy: DnsPolicy,
    /// `dnsConfig`.
    pub dns_config: Option<PodDnsConfig>,
    /// `nodeName`, when set.
    pub node_name: Option<String>,
}

/// A Deployment, ReplicaSet, StatefulSet or DaemonSet.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Which controller.
    pub kind: Kind,
    /// Metadata.
    pub meta: Meta,
    /// Replicas (DaemonSets: number of nodes it runs on).
    pub replicas: u32,
    /// The pod selector.
    pub selector: LabelSelector,
    /// StatefulSet `serviceName`.
    pub service_name: Option<String>,
    /// The pod template as written: the one copy, moved out of `raw` (whose template is
    /// left empty; `render::workload` puts it back). A ReplicaSet derived from a Deployment
    /// shares the Deployment's template; its `pod-template-hash` label is `template_hash`
    /// ([`Workload::template_labels`] adds it).
    pub template: Arc<core::PodTemplateSpec>,
    /// The template's spec, validated.
    pub pod_spec: PodSpecInfo,
    /// Deployment: the pod-template-hash of its current ReplicaSet. A ReplicaSet svcnet
    /// derives: its own hash, which its template's labels carry.
    pub template_hash: Option<String>,
    /// The object as written, without its pod template (see `template`).
    pub raw: WorkloadRaw,
}

impl Workload {
    /// The labels of the template's pods: the template's labels, plus `pod-template-hash`
    /// for a ReplicaSet svcnet derives from a Deployment (as the Deployment controller
    /// writes it into the ReplicaSet's template).
    pub fn template_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if self.kind == Kind::ReplicaSet
            && let Some(h) = &self.template_hash
        {
            labels.insert("pod-template-hash".into(), h.clone());
        }
        labels
    }

    /// The template as the workload's object carries it (with [`Workload::template_labels`]).
    pub fn template_as_written(&self) -> core::PodTemplateSpec {
        let mut t = (*self.template).clone();
        if self.kind == Kind::ReplicaSet && self.template_hash.is_some() {
            t.metadata.get_or_insert_with(Default::default).labels = Some(self.template_labels());
        }
        t
    }
}

/// The manifest of a workload, kept for output.
#[derive(Clone, Debug)]
pub enum WorkloadRaw {
    /// A Deployment.
    Deployment(Arc<apps::Deployment>),
    /// A ReplicaSet (written, or derived from a Deployment).
    ReplicaSet(Arc<apps::ReplicaSet>),
    /// A StatefulSet.
    StatefulSet(Arc<apps::StatefulSet>),
    /// A DaemonSet.
    DaemonSet(Arc<apps::DaemonSet>),
}

// ---------------------------------------------------------------------------------------
// Services

/// `spec.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ServiceType {
    /// Cluster-internal virtual IP.
    ClusterIP,
    /// ClusterIP plus a port on every node.
    NodePort,
    /// NodePort plus an external load-balancer address.
    LoadBalancer,
    /// A DNS alias (CNAME), no proxying.
    ExternalName,
}

impl ServiceType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster.
    Cluster,
    /// Only endpoints on the node that received the traffic.
    Local,
}

/// `sessionAffinity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SessionAffinity {
    /// Every connection chooses anew.
    None,
    /// A client IP sticks to one endpoint for `timeout_seconds` of idleness.
    ClientIp {
        /// Stickiness timeout, default 10800 (3 hours).
        timeout_seconds: u32,
    },
}

/// One Service port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    /// Port name (required and unique when the Service has several ports).
    pub name: Option<String>,
    /// Protocol, default TCP.
    pub protocol: Protocol,
    /// The Service port.
    pub port: u16,
    /// The pod port, by number or container port name; default = `port`.
    pub target_port: PortRef,
    /// The allocated NodePort (NodePort and LoadBalancer services).
    pub node_port: Option<u16>,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// How the Service is addressed inside the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ClusterIps {
    /// `clusterIP: None`: DNS returns the endpoints themselves.
    Headless,
    /// Virtual IPs, primary family first (empty only for ExternalName).
    Ips(Vec<IpAddr>),
}

/// `ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IpFamilyPolicy {
    /// One family.
    SingleStack,
    /// Two families when the cluster has both.
    PreferDualStack,
    /// Two families or fail.
    RequireDualStack,
}

impl IpFamilyPolicy {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamilyPolicy::SingleStack => "SingleStack",
            IpFamilyPolicy::PreferDualStack => "PreferDualStack",
            IpFamilyPolicy::RequireDualStack => "RequireDualStack",
        }
    }
}

/// A Service with its allocated addresses and ports.
#[derive(Clone, Debug)]
pub struct Service {
    /// Metadata.
    pub meta: Meta,
    /// `spec.type`, default ClusterIP.
    pub type_: ServiceType,
    /// The pod selector; `None` when endpoints are managed by hand (EndpointSlices or
    /// Endpoints in the manifests).
    pub selector: Option<Labels>,
    /// Cluster IPs (allocated) or headless.
    pub cluster_ips: ClusterIps,
    /// IP families, in the order of `cluster_ips`.
    pub ip_families: Vec<IpFamily>,
    /// `ipFamilyPolicy`, defaulted.
    pub ip_family_policy: IpFamilyPolicy,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// `externalName` (ExternalName services), lower-cased, no trailing dot.
    pub external_name: Option<String>,
    /// `externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// Load-balancer addresses (allocated, or `status.loadBalancer` as written).
    pub load_balancer_ips: Vec<IpAddr>,
    /// `loadBalancerSourceRanges`.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// `sessionAffinity`.
    pub session_affinity: SessionAffinity,
    /// `externalTrafficPolicy` (NodePort and LoadBalancer), default Cluster.
    pub external_traffic_policy: TrafficPolicy,
    /// `internalTrafficPolicy`, default Cluster.
    pub internal_traffic_policy: TrafficPolicy,
    /// `healthCheckNodePort` (LoadBalancer with externalTrafficPolicy Local).
    pub health_check_node_port: Option<u16>,
    /// `publishNotReadyAddresses`.
    pub publish_not_ready_addresses: bool,
    /// The object as written (allocations are not written back into it).
    pub raw: Arc<core::Service>,
}

impl Service {
    /// True for `clusterIP: None`.
    pub fn is_headless(&self) -> bool {
        self.cluster_ips == ClusterIps::Headless
    }

    /// The cluster IPs, empty for headless and ExternalName services.
    pub fn cluster_ip_list(&self) -> &[IpAddr] {
        match &self.cluster_ips {
            ClusterIps::Headless => &[],
            ClusterIps::Ips(ips) => ips,
        }
    }

    /// Finds a port by name (`""` matches an unnamed port).
    pub fn port_by_name(&self, name: &str) -> Option<&ServicePort> {
        self.ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == name)
    }
}

// ---------------------------------------------------------------------------------------
// EndpointSlices

/// `addressType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AddressType {
    /// IPv4 addresses.
    IPv4,
    /// IPv6 addresses.
    IPv6,
    /// Domain names (deprecated in Kubernetes; kept as given).
    #[serde(rename = "FQDN")]
    Fqdn,
}

impl AddressType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
            AddressType::Fqdn => "FQDN",
        }
    }
}

/// A port of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EndpointPort {
    /// The Service port's name (`""` when unnamed).
    pub name: String,
    /// The resolved pod port.
    pub port: Option<u16>,
    /// Protocol.
    pub protocol: Protocol,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// One endpoint with its conditions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Addresses (one for pod endpoints).
    pub addresses: Vec<String>,
    /// `conditions.ready` (absent = true).
    pub ready: bool,
    /// `conditions.serving` (absent = `ready`).
    pub serving: bool,
    /// `conditions.terminating` (absent = false).
    pub terminating: bool,
    /// `hostname`, for DNS.
    pub hostname: Option<String>,
    /// `nodeName`.
    pub node_name: Option<String>,
    /// `zone`.
    pub zone: Option<String>,
    /// The pod behind it.
    pub target_ref: Option<ObjectKey>,
}

/// An EndpointSlice: derived for Services with a selector, as given otherwise.
#[derive(Clone, Debug)]
pub struct EndpointSlice {
    /// Metadata.
    pub meta: Meta,
    /// The Service it belongs to (`kubernetes.io/service-name`).
    pub service_name: String,
    /// Address type.
    pub address_type: AddressType,
    /// Ports (resolved per pod: slices group endpoints with the same resolved ports).
    pub ports: Vec<EndpointPort>,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// True when svcnet derived it from pods (managed by the EndpointSlice controller).
    pub derived: bool,
}

/// `endpointslice.kubernetes.io/managed-by` of slices the EndpointSlice controller owns.
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";

// ---------------------------------------------------------------------------------------
// Ingress

/// A Service backend port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum BackendPort {
    /// `port.number`.
    Number(u16),
    /// `port.name`: a Service port name.
    Name(String),
}

impl fmt::Display for BackendPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendPort::Number(n) => write!(f, "{n}"),
            BackendPort::Name(s) => f.write_str(s),
        }
    }
}

/// An Ingress backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum IngressBackend {
    /// A Service in the Ingress's namespace.
    Service {
        /// Service name.
        name: String,
        /// Service port.
        port: BackendPort,
    },
    /// A typed object reference (`backend.resource`).
    Resource {
        /// API group.
        api_group: Option<String>,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
}

/// `pathType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PathType {
    /// Byte-exact match.
    Exact,
    /// Element-wise prefix match on `/`.
    Prefix,
    /// Up to the controller: svcnet treats it as Prefix, or as a regex when the Ingress
    /// asks for one.
    ImplementationSpecific,
}

impl PathType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// One `http.paths` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngressPath {
    /// The path (starts with `/`; default `/`).
    pub path: String,
    /// The path type.
    pub path_type: PathType,
    /// Where matching requests go.
    pub backend: IngressBackend,
}

/// One rule: a host (or any host) and its paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngressRule {
    /// Lower-cased host; `*.` prefix for wildcards; `None` matches every host.
    pub host: Option<String>,
    /// Paths.
    pub paths: Vec<IngressPath>,
}

/// One `spec.tls` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngressTls {
    /// Hosts the certificate is for (lower-cased).
    pub hosts: Vec<String>,
    /// The `kubernetes.io/tls` Secret, if named.
    pub secret_name: Option<String>,
}

/// An Ingress.
#[derive(Clone, Debug)]
pub struct Ingress {
    /// Metadata.
    pub meta: Meta,
    /// `spec.ingressClassName`, else the `kubernetes.io/ingress.class` annotation.
    pub class_name: Option<String>,
    /// `spec.defaultBackend`.
    pub default_backend: Option<IngressBackend>,
    /// `spec.tls`.
    pub tls: Vec<IngressTls>,
    /// `spec.rules`.
    pub rules: Vec<IngressRule>,
    /// The object as written.
    pub raw: Arc<net::Ingress>,
}

/// An IngressClass.
#[derive(Clone, Debug)]
pub struct IngressClass {
    /// Metadata.
    pub meta: Meta,
    /// `spec.controller`.
    pub controller: String,
    /// `ingressclass.kubernetes.io/is-default-class: "true"`.
    pub is_default: bool,
    /// The object as written.
    pub raw: Arc<net::IngressClass>,
}

// ---------------------------------------------------------------------------------------
// NetworkPolicy

/// Which directions a policy isolates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyTypes {
    /// `Ingress` in policyTypes.
    pub ingress: bool,
    /// `Egress` in policyTypes.
    pub egress: bool,
}

/// A peer of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum PolicyPeer {
    /// Pods: `podSelector` and/or `namespaceSelector` (both in one peer = AND).
    Pods {
        /// `namespaceSelector`; `None` = the policy's own namespace.
        namespace_selector: Option<LabelSelector>,
        /// `podSelector`; `None` = every pod of the selected namespaces.
        pod_selector: Option<LabelSelector>,
    },
    /// `ipBlock`.
    IpBlock {
        /// The block.
        cidr: IpNet,
        /// Excluded sub-blocks.
        except: Vec<IpNet>,
    },
}

/// A port of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyPort {
    /// Protocol, default TCP.
    pub protocol: Protocol,
    /// Port by number or name; `None` = every port of the protocol.
    pub port: Option<PortRef>,
    /// `endPort`: the range `port..=end_port` (numeric `port` only).
    pub end_port: Option<u16>,
}

/// An ingress or egress rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyRule {
    /// Peers (`from` or `to`); empty = every peer.
    pub peers: Vec<PolicyPeer>,
    /// Ports; empty = every port.
    pub ports: Vec<PolicyPort>,
}

/// A NetworkPolicy.
#[derive(Clone, Debug)]
pub struct NetworkPolicy {
    /// Metadata.
    pub meta: Meta,
    /// The pods it applies to, in its namespace.
    pub pod_selector: LabelSelector,
    /// Directions it isolates, defaulted as the API server does.
    pub policy_types: PolicyTypes,
    /// Ingress rules (allow-list).
    pub ingress: Vec<PolicyRule>,
    /// Egress rules (allow-list).
    pub egress: Vec<PolicyRule>,
    /// The object as written.
    pub raw: Arc<net::NetworkPolicy>,
}

// ---------------------------------------------------------------------------------------
// Secrets and ConfigMaps

/// A Secret.
#[derive(Clone, Debug)]
pub struct Secret {
    /// Metadata.
    pub meta: Meta,
    /// `type`, default `Opaque`.
    pub type_: String,
    /// `data` (decoded) merged with `stringData`.
    pub data: BTreeMap<String, Vec<u8>>,
    /// The object as written.
    pub raw: Arc<core::Secret>,
}

/// A ConfigMap.
#[derive(Clone, Debug)]
pub struct ConfigMap {
    /// Metadata.
    pub meta: Meta,
    /// `data`.
    pub data: BTreeMap<String, String>,
    /// Number of `binaryData` keys.
    pub binary_keys: usize,
    /// The object as written.
    pub raw: Arc<core::ConfigMap>,
}

/// An object of a kind svcnet does not use (a cert-manager Certificate, a CRD...).
#[derive(Clone, Debug)]
pub struct OtherObject {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace (as written; may be empty).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Where it was written.
    pub source: Source,
    /// The object as written.
    pub raw: Arc<serde_json::Value>,
}
