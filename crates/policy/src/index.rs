//! The compiled index and its allocation-free fast path.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use ipnet::IpNet;
use svcnet_model::Cluster;
use svcnet_model::selector::{LabelSelector, Labels};
use svcnet_model::types::{NetworkPolicy, ObjectKey, PolicyPeer, PolicyRule, PortRef, Protocol};

use crate::podset::PodSet;
use crate::verdict::Direction;

/// A pod of one [`PolicyIndex`]: its position in the index (pods in namespace/name order).
/// Get one with [`PolicyIndex::pod_id`]; it is meaningless for another index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodId(pub(crate) u32);

impl PodId {
    /// The position of the pod in the index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One end of a connection, as the index sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A pod (by identity). Host-network pods are treated as [`Endpoint::Node`] traffic.
    Pod(PodId),
    /// A node or host address: always allowed, both ways.
    Node(IpAddr),
    /// Any other address: matched only by `ipBlock` peers and rules without peers.
    External(IpAddr),
}

/// A compiled `ipBlock`.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) cidr: IpNet,
    pub(crate) except: Vec<IpNet>,
}

impl Block {
    #[inline]
    pub(crate) fn contains(&self, ip: &IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

/// What a compiled rule port matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortMatch {
    /// Every port of the protocol.
    Any,
    /// `port..=end_port`.
    Range(u16, u16),
    /// A container port name (interned), resolved on the destination pod.
    Named(u32),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct CompiledPort {
    pub(crate) protocol: Protocol,
    pub(crate) matches: PortMatch,
}

/// A declared container port of a pod, name interned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NamedPort {
    pub(crate) name: u32,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
}

/// One ingress or egress rule of one policy.
#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    /// Index into `policies`.
    pub(crate) policy: u32,
    pub(crate) direction: Direction,
    /// Position in the policy's `ingress` or `egress` list.
    pub(crate) index: u32,
    /// No peers: every peer, external addresses included.
    pub(crate) all_peers: bool,
    /// Pods matched by the rule's pod/namespace selector peers.
    pub(crate) pods: PodSet,
    /// The rule's ipBlocks.
    pub(crate) blocks: Vec<Block>,
    /// Pods whose primary IP an ipBlock of the rule matches (for identity-based answers).
    pub(crate) block_pods: PodSet,
    /// No ports: every port of every protocol.
    pub(crate) all_ports: bool,
    pub(crate) ports: Vec<CompiledPort>,
}

impl CompiledRule {
    /// True when the peer (a pod and/or an address) is one of the rule's peers.
    #[inline]
    pub(crate) fn peer_matches(&self, pod: Option<usize>, addr: Option<IpAddr>) -> bool {
        self.all_peers
            || pod.is_some_and(|p| self.pods.contains(p))
            || addr.is_some_and(|a| self.blocks.iter().any(|b| b.contains(&a)))
    }
}

/// A pod as the index keeps it.
#[derive(Clone, Debug)]
pub(crate) struct PodInfo {
    pub(crate) key: ObjectKey,
    pub(crate) ns: u32,
    pub(crate) labels: std::sync::Arc<Labels>,
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) host_network: bool,
    pub(crate) ports: Vec<NamedPort>,
    /// Policies isolating the pod for ingress / egress (indices into `policies`).
    pub(crate) ingress_policies: Vec<u32>,
    pub(crate) egress_policies: Vec<u32>,
    /// Rules that apply to the pod (indices into `rules`), in policy order.
    pub(crate) ingress_rules: Vec<u32>,
    pub(crate) egress_rules: Vec<u32>,
}

impl PodInfo {
    pub(crate) fn primary_ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }

    pub(crate) fn isolating(&self, d: Direction) -> &[u32] {
        match d {
            Direction::Ingress => &self.ingress_policies,
            Direction::Egress => &self.egress_policies,
        }
    }

    pub(crate) fn rules(&self, d: Direction) -> &[u32] {
        match d {
            Direction::Ingress => &self.ingress_rules,
            Direction::Egress => &self.egress_rules,
        }
    }

    /// True when the pod declares `name` on `port`/`protocol`.
    #[inline]
    pub(crate) fn resolves(&self, name: u32, port: u16, protocol: Protocol) -> bool {
        self.ports
            .iter()
            .any(|p| p.name == name && p.port == port && p.protocol == protocol)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct NamespaceInfo {
    pub(crate) name: String,
    pub(crate) labels: std::sync::Arc<Labels>,
    /// Its pods: a contiguous range of pod indices.
    pub(crate) pods: Range<usize>,
}

#[derive(Clone, Debug)]
pub(crate) struct PolicyInfo {
    pub(crate) key: ObjectKey,
    pub(crate) ingress: Vec<PolicyRule>,
    pub(crate) egress: Vec<PolicyRule>,
}

impl PolicyInfo {
    pub(crate) fn rules(&self, d: Direction) -> &[PolicyRule] {
        match d {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// NetworkPolicies compiled for fast answers. Immutable; share it in an `Arc` and swap a
/// new one in when the cluster changes.
#[derive(Clone, Debug)]
pub struct PolicyIndex {
    pub(crate) pods: Vec<PodInfo>,
    pub(crate) namespaces: Vec<NamespaceInfo>,
    pub(crate) policies: Vec<PolicyInfo>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) port_names: HashMap<String, u32>,
    pub(crate) pod_by_ip: HashMap<IpAddr, u32, BuildAddrHasher>,
    pub(crate) node_ips: HashSet<IpAddr>,
}

/// The cache key of a peer's pod set: (namespace selector, pod selector, policy namespace
/// when the namespace selector is absent).
type PeerKey<'a> = (
    Option<&'a LabelSelector>,
    Option<&'a LabelSelector>,
    Option<&'a str>,
);

impl PolicyIndex {
    /// Compiles every NetworkPolicy of the cluster.
    pub fn compile(cluster: &Cluster) -> PolicyIndex {
        let mut port_names: HashMap<String, u32> = HashMap::new();
        let intern = |names: &mut HashMap<String, u32>, s: &str| -> u32 {
            if let Some(id) = names.get(s) {
                return *id;
            }
            let id = names.len() as u32;
            names.insert(s.to_string(), id);
            id
        };

        // Namespaces: declared ones, plus any a pod names (the model declares them all).
        let mut namespaces: Vec<NamespaceInfo> = cluster
            .namespaces
            .values()
            .map(|n| NamespaceInfo {
                name: n.meta.name.clone(),
                labels: n.meta.labels.clone(),
                pods: 0..0,
            })
            .collect();
        let mut ns_by_name: HashMap<String, u32> = namespaces
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i as u32))
            .collect();

        let mut pods = Vec::with_capacity(cluster.pods.len());
        let mut pod_by_ip =
            HashMap::with_capacity_and_hasher(cluster.pods.len(), BuildAddrHasher::default());
        let mut node_ips: HashSet<IpAddr> = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
        .into_iter()
        .collect();
        node_ips.extend(cluster.nodes.values().map(|n| n.internal_ip));
        for (i, (key, p)) in cluster.pods.iter().enumerate() {
            let ns = match ns_by_name.get(&key.namespace) {
                Some(n) => *n,
                None => {
                    let n = namespaces.len() as u32;
                    let mut labels = Labels::new();
                    labels.insert(
                        "kubernetes.io/metadata.name".to_string(),
                        key.namespace.clone(),
                    );
                    namespaces.push(NamespaceInfo {
                        name: key.namespace.clone(),
                        labels: std::sync::Arc::new(labels),
                        pods: 0..0,
                    });
                    ns_by_name.insert(key.namespace.clone(), n);
                    n
                }
            };
            // Pods are in key order, so a namespace's pods are contiguous.
            let range = &mut namespaces[ns as usize].pods;
            if range.start == range.end {
                *range = i..i + 1;
            } else {
                range.end = i + 1;
            }
            node_ips.extend(p.host_ip);
            let ports = p
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .filter_map(|cp| {
                    Some(NamedPort {
                        name: intern(&mut port_names, cp.name.as_deref()?),
                        port: cp.port,
                        protocol: cp.protocol,
                    })
                })
                .collect();
            if !p.host_network {
                for ip in &p.ips {
                    pod_by_ip.insert(*ip, i as u32);
                }
            }
            pods.push(PodInfo {
                key: key.clone(),
                ns,
                labels: p.meta.labels.clone(),
                ips: p.ips.clone(),
                host_network: p.host_network,
                ports,
                ingress_policies: Vec::new(),
                egress_policies: Vec::new(),
                ingress_rules: Vec::new(),
                egress_rules: Vec::new(),
            });
        }
        // A pod's own IP is a pod address even if it collides with a host address.
        for p in &pods {
            if p.host_network {
                node_ips.extend(p.ips.iter().copied());
            }
        }
        for ip in pod_by_ip.keys() {
            node_ips.remove(ip);
        }

        let n = pods.len();
        let mut index = PolicyIndex {
            pods,
            namespaces,
            policies: Vec::with_capacity(cluster.network_policies.len()),
            rules: Vec::new(),
            port_names,
            pod_by_ip,
            node_ips,
        };
        let mut peer_cache: HashMap<PeerKey<'_>, PodSet> = HashMap::new();
        for np in cluster.network_policies.values() {
            index.add_policy(np, n, &mut peer_cache);
        }
        index
    }

    fn add_policy<'a>(
        &mut self,
        np: &'a NetworkPolicy,
        n: usize,
        peer_cache: &mut HashMap<PeerKey<'a>, PodSet>,
    ) {
        let pi = self.policies.len() as u32;
        let ns_range = self
            .namespaces
            .iter()
            .find(|ns| ns.name == np.meta.namespace)
            .map(|ns| ns.pods.clone())
            .unwrap_or(0..0);
        let selected: Vec<usize> = ns_range
            .filter(|&i| {
                let p = &self.pods[i];
                !p.host_network && np.pod_selector.matches(&p.labels)
            })
            .collect();
        let mut compiled: Vec<(Direction, u32)> = Vec::new();
        for (dir, on, rules) in [
            (Direction::Ingress, np.policy_types.ingress, &np.ingress),
            (Direction::Egress, np.policy_types.egress, &np.egress),
        ] {
            if !on {
                continue;
            }
            for (ri, rule) in rules.iter().enumerate() {
                let rule = self.compile_rule(np, pi, dir, ri as u32, rule, n, peer_cache);
                let id = self.rules.len() as u32;
                self.rules.push(rule);
                compiled.push((dir, id));
            }
        }
        for &i in &selected {
            let p = &mut self.pods[i];
            if np.policy_types.ingress {
                p.ingress_policies.push(pi);
            }
            if np.policy_types.egress {
                p.egress_policies.push(pi);
            }
            for &(dir, id) in &compiled {
                match dir {
                    Direction::Ingress => p.ingress_rules.push(id),
                    Direction::Egress => p.egress_rules.push(id),
                }
            }
        }
        self.policies.push(PolicyInfo {
            key: ObjectKey::new(np.meta.namespace.clone(), np.meta.name.clone()),
            ingress: np.ingress.clone(),
            egress: np.egress.clone(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn compile_rule<'a>(
        &mut self,
        np: &'a NetworkPolicy,
        policy: u32,
        direction: Direction,
        index: u32,
        rule: &'a PolicyRule,
        n: usize,
        peer_cache: &mut HashMap<PeerKey<'a>, PodSet>,
    ) -> CompiledRule {
        let mut pods = PodSet::empty(n);
        let mut blocks = Vec::new();
        for peer in &rule.peers {
            match peer {
                PolicyPeer::Pods {
                    namespace_selector,
                    pod_selector,
                } => {
                    let key: PeerKey<'a> = (
                        namespace_selector.as_ref(),
                        pod_selector.as_ref(),
                        namespace_selector
                            .is_none()
                            .then_some(np.meta.namespace.as_str()),
                    );
                    if let Some(set) = peer_cache.get(&key) {
                        pods.union_with(set);
                    } else {
                        let set = self.peer_pods(
                            namespace_selector.as_ref(),
                            pod_selector.as_ref(),
                            &np.meta.namespace,
                            n,
                        );
                        pods.union_with(&set);
                        peer_cache.insert(key, set);
                    }
                }
                PolicyPeer::IpBlock { cidr, except } => blocks.push(Block {
                    cidr: *cidr,
                    except: except.clone(),
                }),
            }
        }
        let mut block_pods = PodSet::empty(n);
        if !blocks.is_empty() {
            for (i, p) in self.pods.iter().enumerate() {
                if p.host_network {
                    continue;
                }
                if let Some(ip) = p.primary_ip()
                    && blocks.iter().any(|b| b.contains(&ip))
                {
                    block_pods.insert(i);
                }
            }
        }
        let ports = rule
            .ports
            .iter()
            .map(|p| CompiledPort {
                protocol: p.protocol,
                matches: match &p.port {
                    None => PortMatch::Any,
                    Some(PortRef::Number(lo)) => PortMatch::Range(*lo, p.end_port.unwrap_or(*lo)),
                    Some(PortRef::Name(name)) => {
                        let next = self.port_names.len() as u32;
                        PortMatch::Named(*self.port_names.entry(name.clone()).or_insert(next))
                    }
                },
            })
            .collect();
        CompiledRule {
            policy,
            direction,
            index,
            all_peers: rule.peers.is_empty(),
            pods,
            blocks,
            block_pods,
            all_ports: rule.ports.is_empty(),
            ports,
        }
    }

    /// The pods a pod/namespace selector peer of a policy in `policy_ns` selects.
    fn peer_pods(
        &self,
        namespace_selector: Option<&LabelSelector>,
        pod_selector: Option<&LabelSelector>,
        policy_ns: &str,
        n: usize,
    ) -> PodSet {
        let mut set = PodSet::empty(n);
        for ns in &self.namespaces {
            let ns_ok = match namespace_selector {
                None => ns.name == policy_ns,
                Some(s) => s.matches(&ns.labels),
            };
            if !ns_ok {
                continue;
            }
            for i in ns.pods.clone() {
                let p = &self.pods[i];
                if !p.host_network && pod_selector.is_none_or(|s| s.matches(&p.labels)) {
                    set.insert(i);
                }
            }
        }
        set
    }

    /// True when the cluster has no NetworkPolicy: everything is allowed.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Number of pods in the index.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Number of NetworkPolicies in the index.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// The pod with this namespace/name, if the cluster has it.
    pub fn pod_id(&self, key: &ObjectKey) -> Option<PodId> {
        self.pods
            .binary_search_by(|p| p.key.cmp(key))
            .ok()
            .map(|i| PodId(i as u32))
    }

    /// The pod as an [`Endpoint`] (`Endpoint::Pod`), if the cluster has it.
    pub fn pod_endpoint(&self, key: &ObjectKey) -> Option<Endpoint> {
        self.pod_id(key).map(Endpoint::Pod)
    }

    /// The namespace/name of a pod of this index.
    pub fn pod_key(&self, id: PodId) -> Option<&ObjectKey> {
        self.pods.get(id.index()).map(|p| &p.key)
    }

    /// Every pod of the index, in namespace/name order.
    pub fn pod_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.pods.iter().map(|p| &p.key)
    }

    /// The policies that isolate a pod in a direction (empty: not isolated).
    pub fn isolated_by(&self, id: PodId, direction: Direction) -> Vec<&ObjectKey> {
        self.pods
            .get(id.index())
            .map(|p| {
                p.isolating(direction)
                    .iter()
                    .map(|&pi| &self.policies[pi as usize].key)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Which endpoint an address is: a pod (by IP), a node/host, or external.
    /// An IPv4-mapped IPv6 address is taken as the IPv4 address.
    pub fn endpoint_of(&self, ip: IpAddr) -> Endpoint {
        let ip = canonical(ip);
        match self.classify(ip) {
            Class::Pod(i) => Endpoint::Pod(PodId(i as u32)),
            Class::Node => Endpoint::Node(ip),
            Class::External => Endpoint::External(ip),
        }
    }

    #[inline]
    fn classify(&self, ip: IpAddr) -> Class {
        let ip = canonical(ip);
        if let Some(i) = self.pod_by_ip.get(&ip) {
            return Class::Pod(*i as usize);
        }
        if self.node_ips.contains(&ip) {
            Class::Node
        } else {
            Class::External
        }
    }

    /// Enforcement fast path: may a connection from `src` to `dst` on `port`/`protocol`
    /// happen? Egress of `src` (if it is a pod) and ingress of `dst` (if it is a pod). Node
    /// and host addresses are always allowed, both ways; a pod may reach itself; other
    /// addresses are external and matched only by `ipBlock` (see the crate documentation).
    /// Does not allocate.
    pub fn allows(&self, src: IpAddr, dst: IpAddr, port: u16, protocol: Protocol) -> bool {
        self.allows_in(src, dst, port, protocol, true, true)
    }

    /// [`PolicyIndex::allows`] for the source's side only: its egress. What a pod checks
    /// before it connects; the destination judges its own ingress when the connection
    /// arrives.
    pub fn allows_egress(&self, src: IpAddr, dst: IpAddr, port: u16, protocol: Protocol) -> bool {
        self.allows_in(src, dst, port, protocol, true, false)
    }

    /// [`PolicyIndex::allows`] for the destination's side only: its ingress. What a pod
    /// checks for a connection it receives.
    pub fn allows_ingress(&self, src: IpAddr, dst: IpAddr, port: u16, protocol: Protocol) -> bool {
        self.allows_in(src, dst, port, protocol, false, true)
    }

    #[inline]
    fn allows_in(
        &self,
        src: IpAddr,
        dst: IpAddr,
        port: u16,
        protocol: Protocol,
        egress: bool,
        ingress: bool,
    ) -> bool {
        if self.policies.is_empty() {
            return true;
        }
        let s = self.classify(src);
        let d = self.classify(dst);
        let (spod, dpod) = match (s, d) {
            (Class::Node, _) | (_, Class::Node) => return true,
            (Class::Pod(a), Class::Pod(b)) if a == b => return true,
            (s, d) => (s.pod(), d.pod()),
        };
        if egress
            && let Some(a) = spod
            && !self.direction_allows(
                Direction::Egress,
                a,
                dpod,
                Some(canonical(dst)),
                port,
                protocol,
            )
        {
            return false;
        }
        if ingress
            && let Some(b) = dpod
            && !self.direction_allows(
                Direction::Ingress,
                b,
                spod,
                Some(canonical(src)),
                port,
                protocol,
            )
        {
            return false;
        }
        true
    }

    /// True when `subject` (the source for egress, the destination for ingress) may talk
    /// with `other` (a pod and/or an address) in `direction`.
    #[inline]
    pub(crate) fn direction_allows(
        &self,
        direction: Direction,
        subject: usize,
        other_pod: Option<usize>,
        other_addr: Option<IpAddr>,
        port: u16,
        protocol: Protocol,
    ) -> bool {
        let p = &self.pods[subject];
        if p.isolating(direction).is_empty() {
            return true;
        }
        let dst_pod = match direction {
            Direction::Ingress => Some(subject),
            Direction::Egress => other_pod,
        };
        // The peer test is a bit test or two: do it before the port test.
        p.rules(direction).iter().any(|&r| {
            let rule = &self.rules[r as usize];
            rule.peer_matches(other_pod, other_addr)
                && self.port_index(rule, dst_pod, port, protocol).is_some()
        })
    }

    /// Which port entry of a rule admits `port`/`protocol` toward `dst_pod`: `Some(None)`
    /// when the rule has no ports (all), `Some(Some(i))` for entry `i`, `None` when none does.
    #[inline]
    pub(crate) fn port_index(
        &self,
        rule: &CompiledRule,
        dst_pod: Option<usize>,
        port: u16,
        protocol: Protocol,
    ) -> Option<Option<usize>> {
        if rule.all_ports {
            return Some(None);
        }
        rule.ports
            .iter()
            .position(|p| {
                p.protocol == protocol
                    && match p.matches {
                        PortMatch::Any => true,
                        PortMatch::Range(lo, hi) => lo <= port && port <= hi,
                        PortMatch::Named(name) => {
                            dst_pod.is_some_and(|d| self.pods[d].resolves(name, port, protocol))
                        }
                    }
            })
            .map(Some)
    }
}

/// A fast hasher for addresses on the decision path (rustc's FxHash, whose `finish`
/// rotates the high bits down for hashbrown). SipHash's flooding resistance buys nothing
/// here: the keys are the cluster's own pod IPs, not attacker input.
pub(crate) type BuildAddrHasher = rustc_hash::FxBuildHasher;

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4 peers)
/// is the IPv4 address.
#[inline]
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Pod(usize),
    Node,
    External,
}

impl Class {
    fn pod(self) -> Option<usize> {
        match self {
            Class::Pod(i) => Some(i),
            _ => None,
        }
    }
}
