//! Address and port allocation: nodes, pod IPs, Service IPs, NodePorts, LoadBalancer IPs.
//!
//! Every dynamic allocation starts at a slot chosen by a hash of the object's name and
//! probes upward, so results do not depend on the order objects were read in, and adding
//! one object moves no other unless two names hash to the same slot. Within one run the
//! previous cluster's allocations are kept first, so a reload never renumbers what exists.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::builtin_meta;
use crate::cluster::Cluster;
use crate::diag::{Diagnostic, Diagnostics, Source};
use crate::kind::Kind;
use crate::plan::{AddressPlan, family, net_size};
use crate::types::*;
use crate::validate::NodeInput;

/// 64-bit FNV-1a: small, fast, and stable across runs and platforms.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A range of addresses inside one network, with the offsets in use.
struct Pool {
    net: IpNet,
    lo: u128,
    hi: u128,
    used: HashSet<u128>,
}

impl Pool {
    /// Usable offsets `lo..=hi` of `net`.
    fn new(net: IpNet, lo: u128, hi: u128) -> Self {
        Pool {
            net,
            lo,
            hi,
            used: HashSet::new(),
        }
    }

    /// A pool of a network's host addresses (no network or broadcast address for IPv4),
    /// capped at 2^32 addresses for huge IPv6 ranges.
    fn hosts(net: IpNet) -> Self {
        let size = net_size(&net).min(1 << 32);
        let hi = match net {
            IpNet::V4(_) => size.saturating_sub(2),
            IpNet::V6(_) => size.saturating_sub(1),
        };
        Pool::new(net, 1, hi.max(1))
    }

    fn offset_of(&self, ip: &IpAddr) -> Option<u128> {
        if !self.net.contains(ip) {
            return None;
        }
        Some(match (ip, self.net) {
            (IpAddr::V4(a), IpNet::V4(n)) => u128::from(u32::from(*a) - u32::from(n.network())),
            (IpAddr::V6(a), IpNet::V6(n)) => u128::from(*a) - u128::from(n.network()),
            _ => return None,
        })
    }

    /// Marks an address in use (if it lies in the pool's network).
    fn take(&mut self, ip: &IpAddr) {
        if let Some(o) = self.offset_of(ip) {
            self.used.insert(o);
        }
    }

    fn is_free(&self, ip: &IpAddr) -> bool {
        self.offset_of(ip)
            .is_some_and(|o| o >= self.lo && o <= self.hi && !self.used.contains(&o))
    }

    /// Allocates the first free address at or after the slot `seed` picks in `lo..=hi`,
    /// preferring offsets from `from` on (the dynamic band) and falling back to the rest.
    fn alloc(&mut self, seed: u64, from: u128) -> Option<IpAddr> {
        let bands = [
            (from.max(self.lo), self.hi),
            (self.lo, from.saturating_sub(1)),
        ];
        for (lo, hi) in bands {
            if lo > hi {
                continue;
            }
            let span = hi - lo + 1;
            let start = u128::from(seed) % span;
            // Probing is bounded by the band's size; bands are at most 2^32 addresses.
            for i in 0..span {
                let o = lo + (start + i) % span;
                if self.used.insert(o) {
                    return AddressPlan::nth(&self.net, o);
                }
            }
        }
        None
    }
}

/// Orders names so that `node-2` comes before `node-10` (the order nodes are numbered in).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let split = |s: &str| {
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, tail) = s.split_at(s.len() - digits);
        (head.to_string(), tail.parse::<u64>().ok())
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// Nodes: declared ones, or `plan.nodes` default nodes, plus any node a pod names; each
/// with an address and pod subnets.
pub(super) fn nodes(
    inputs: Vec<NodeInput>,
    pods: &BTreeMap<ObjectKey, Pod>,
    plan: &AddressPlan,
    referenced: &[(String, Source)],
    diags: &mut Diagnostics,
) -> BTreeMap<String, Node> {
    let mut list: Vec<NodeInput> = inputs;
    if list.is_empty() {
        for i in 1..=plan.nodes {
            list.push(default_node(&format!("node-{i}")));
        }
    }
    let mut wanted: BTreeMap<&str, &Source> = BTreeMap::new();
    for p in pods.values() {
        if !p.node_name.is_empty() {
            wanted.entry(p.node_name.as_str()).or_insert(&p.meta.source);
        }
    }
    for (n, s) in referenced {
        wanted.entry(n.as_str()).or_insert(s);
    }
    for (name, source) in wanted {
        if !list.iter().any(|n| n.meta.name == name) {
            diags.push(Diagnostic::notice(
                "implicit-node",
                source.clone(),
                format!("node {name:?} is named by a pod but not declared; svcnet creates it"),
            ));
            list.push(default_node(name));
        }
    }
    list.sort_by(|a, b| natural_cmp(&a.meta.name, &b.meta.name));

    let mut out = BTreeMap::new();
    let mut node_pool = Pool::hosts(plan.node_cidr);
    for n in &list {
        if let Some(ip) = &n.internal_ip {
            node_pool.take(ip);
        }
    }
    let mut seen_ips: HashMap<IpAddr, String> = HashMap::new();
    for (i, n) in list.into_iter().enumerate() {
        let index = i as u128;
        let internal_ip = match n.internal_ip {
            Some(ip) => ip,
            None => {
                let wanted = AddressPlan::nth(&plan.node_cidr, index + 1);
                match wanted.filter(|ip| node_pool.is_free(ip)) {
                    Some(ip) => {
                        node_pool.take(&ip);
                        ip
                    }
                    None => match node_pool.alloc(index as u64, 1) {
                        Some(ip) => ip,
                        None => {
                            diags.push(
                                Diagnostic::error(
                                    "address-exhausted",
                                    n.meta.source.clone(),
                                    format!(
                                        "no free node address in {} for node {}",
                                        plan.node_cidr, n.meta.name
                                    ),
                                )
                                .on(n.meta.object_ref(Kind::Node)),
                            );
                            continue;
                        }
                    },
                }
            }
        };
        if let Some(other) = seen_ips.insert(internal_ip, n.meta.name.clone()) {
            diags.push(
                Diagnostic::error(
                    "address-conflict",
                    n.meta.source_of("status.addresses"),
                    format!("Invalid value: {internal_ip}: already the address of node {other}"),
                )
                .on(n.meta.object_ref(Kind::Node))
                .field("status.addresses"),
            );
        }
        let mut pod_cidrs = n.pod_cidrs.clone();
        if pod_cidrs.is_empty() {
            for cidr in &plan.pod_cidrs {
                let mask = plan.node_mask(family(cidr));
                let bits = u32::from(cidr.max_prefix_len() - mask);
                let count_bits = u32::from(mask - cidr.prefix_len());
                if count_bits < 64 && index >= (1u128 << count_bits) {
                    diags.push(
                        Diagnostic::error(
                            "address-exhausted",
                            n.meta.source.clone(),
                            format!(
                                "pod CIDR {cidr} has room for {} nodes of /{mask}; node {} is one too many (use a larger --pod-cidr)",
                                1u128 << count_bits,
                                n.meta.name
                            ),
                        )
                        .on(n.meta.object_ref(Kind::Node)),
                    );
                    continue;
                }
                let Some(base) = index
                    .checked_shl(bits)
                    .and_then(|o| AddressPlan::nth(cidr, o))
                else {
                    continue;
                };
                if let Ok(sub) = IpNet::new(base, mask) {
                    pod_cidrs.push(sub);
                }
            }
        }
        for c in &pod_cidrs {
            if !plan.pod_cidrs.iter().any(|p| p.contains(c)) {
                diags.push(
                    Diagnostic::warning(
                        "outside-range",
                        n.meta.source_of("spec.podCIDRs"),
                        format!("pod CIDR {c} is outside the cluster's pod CIDR; kept as given"),
                    )
                    .on(n.meta.object_ref(Kind::Node))
                    .field("spec.podCIDRs"),
                );
            }
        }
        let raw = n.raw_node();
        out.insert(
            n.meta.name.clone(),
            Node {
                meta: n.meta,
                internal_ip,
                pod_cidrs,
                schedulable: n.schedulable,
                raw,
            },
        );
    }
    out
}

impl NodeInput {
    fn raw_node(&self) -> Option<Arc<k8s_openapi::api::core::v1::Node>> {
        (self.meta.source != Source::builtin()).then(|| self.raw.clone())
    }
}

fn default_node(name: &str) -> NodeInput {
    let mut meta = builtin_meta("", name);
    meta.labels = Arc::new(BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        ),
    ]));
    NodeInput {
        meta,
        internal_ip: None,
        pod_cidrs: Vec::new(),
        schedulable: true,
        raw: Arc::new(Default::default()),
    }
}

/// Places pods without a node and gives every pod its addresses.
pub(super) fn place_pods(
    pods: &mut BTreeMap<ObjectKey, Pod>,
    nodes: &BTreeMap<String, Node>,
    plan: &AddressPlan,
    previous: Option<&Cluster>,
    diags: &mut Diagnostics,
) {
    let mut schedulable: Vec<&str> = nodes
        .values()
        .filter(|n| n.schedulable)
        .map(|n| n.meta.name.as_str())
        .collect();
    schedulable.sort_by(|a, b| natural_cmp(a, b));
    // Pools per node and family.
    // node -> family -> pool (looked up by the pod's node name without copying it).
    let mut pools: HashMap<String, HashMap<IpFamily, Pool>> = HashMap::new();
    for n in nodes.values() {
        for c in &n.pod_cidrs {
            pools
                .entry(n.meta.name.clone())
                .or_default()
                .insert(family(c), Pool::hosts(*c));
        }
    }
    let mut owners: HashMap<IpAddr, ObjectKey> = HashMap::new();

    // Nodes first.
    for (k, p) in pods.iter_mut() {
        if p.node_name.is_empty() {
            let prev = previous
                .and_then(|c| c.pods.get(k))
                .map(|pp| pp.node_name.clone())
                .filter(|n| nodes.contains_key(n));
            p.node_name = match prev {
                Some(n) => n,
                None if schedulable.is_empty() => String::new(),
                None => {
                    let h = fnv1a(k.to_string().as_bytes());
                    schedulable[(h % schedulable.len() as u64) as usize].to_string()
                }
            };
        }
        p.host_ip = nodes.get(&p.node_name).map(|n| n.internal_ip);
    }

    // Written addresses claim first, in key order.
    for (k, p) in pods.iter() {
        if p.host_network {
            continue;
        }
        for (i, ip) in p.ips.iter().enumerate() {
            if let Some(other) = owners.insert(*ip, k.clone()) {
                diags.push(
                    Diagnostic::error(
                        "address-conflict",
                        p.meta.source_of("status.podIP"),
                        format!("Invalid value: {ip}: already the IP of pod {other}"),
                    )
                    .on(p.meta.object_ref(Kind::Pod))
                    .field(if i == 0 {
                        "status.podIP".to_string()
                    } else {
                        format!("status.podIPs[{i}]")
                    }),
                );
            }
            if !plan.pod_cidrs.iter().any(|c| c.contains(ip)) {
                diags.push(
                    Diagnostic::warning(
                        "outside-range",
                        p.meta.source_of("status.podIP"),
                        format!(
                            "pod IP {ip} is outside the pod CIDR ({}); kept as given",
                            plan.pod_cidrs
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                    )
                    .on(p.meta.object_ref(Kind::Pod))
                    .field("status.podIP"),
                );
            }
            for pool in pools.values_mut().flat_map(HashMap::values_mut) {
                pool.take(ip);
            }
        }
    }
    // Then the previous run's addresses, then fresh ones.
    // `pending[i]`: the i-th pod in key order gets fresh addresses.
    let mut pending: Vec<bool> = Vec::with_capacity(pods.len());
    for (k, p) in pods.iter_mut() {
        pending.push(false);
        if p.host_network {
            p.ips = p.host_ip.into_iter().collect();
            continue;
        }
        if !p.ips.is_empty() || p.node_name.is_empty() {
            continue;
        }
        if matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed) {
            continue;
        }
        let prev_ips: Vec<IpAddr> = previous
            .and_then(|c| c.pods.get(k))
            .filter(|pp| pp.node_name == p.node_name && !pp.host_network)
            .map(|pp| pp.ips.clone())
            .unwrap_or_default();
        let mut kept = Vec::new();
        for ip in prev_ips {
            if let Some(pool) = pools
                .get_mut(p.node_name.as_str())
                .and_then(|m| m.get_mut(&IpFamily::of(&ip)))
                && pool.is_free(&ip)
            {
                pool.take(&ip);
                kept.push(ip);
            }
        }
        p.ips = kept;
        if let Some(last) = pending.last_mut() {
            *last = true;
        }
    }
    let families: Vec<IpFamily> = plan.pod_cidrs.iter().map(family).collect();
    let mut seed_text = String::new();
    for ((k, p), _) in pods.iter_mut().zip(pending).filter(|(_, fresh)| *fresh) {
        seed_text.clear();
        let _ = write!(seed_text, "{k}");
        let seed = fnv1a(seed_text.as_bytes());
        for f in &families {
            if p.ip_of(*f).is_some() {
                continue;
            }
            let Some(pool) = pools
                .get_mut(p.node_name.as_str())
                .and_then(|m| m.get_mut(f))
            else {
                continue;
            };
            match pool.alloc(seed, pool.lo) {
                Some(ip) => p.ips.push(ip),
                None => diags.push(
                    Diagnostic::error(
                        "address-exhausted",
                        p.meta.source.clone(),
                        format!(
                            "node {} has no free pod address in {} ({} pods fit on a node); add nodes with --nodes or a larger node subnet",
                            p.node_name,
                            pool.net,
                            pool.hi - pool.lo + 1
                        ),
                    )
                    .on(p.meta.object_ref(Kind::Pod)),
                ),
            }
        }
        // Primary family first, as podIPs are ordered.
        p.ips
            .sort_by_key(|ip| families.iter().position(|f| *f == IpFamily::of(ip)));
    }
}

/// Allocates cluster IPs, NodePorts, health-check ports and LoadBalancer IPs.
pub(super) fn services(
    mut services: Vec<Service>,
    _nodes: &BTreeMap<String, Node>,
    plan: &AddressPlan,
    previous: Option<&Cluster>,
    diags: &mut Diagnostics,
) -> BTreeMap<ObjectKey, Service> {
    // Built-in services claim first, then everything in key order.
    services.sort_by(|a, b| {
        let builtin = |s: &Service| s.meta.source != Source::builtin();
        (builtin(a), &a.meta.namespace, &a.meta.name).cmp(&(
            builtin(b),
            &b.meta.namespace,
            &b.meta.name,
        ))
    });
    let key = |s: &Service| ObjectKey::new(s.meta.namespace.clone(), s.meta.name.clone());
    let prev = |s: &Service| previous.and_then(|c| c.services.get(&key(s)));

    // Families.
    for s in services.iter_mut() {
        if s.type_ == ServiceType::ExternalName {
            s.ip_families.clear();
            continue;
        }
        if s.ip_families.is_empty() {
            s.ip_families.push(plan.primary_family());
        }
        if s.ip_families.len() == 1 && s.ip_family_policy != IpFamilyPolicy::SingleStack {
            let other = match s.ip_families[0] {
                IpFamily::V4 => IpFamily::V6,
                IpFamily::V6 => IpFamily::V4,
            };
            let explicit_single = matches!(&s.cluster_ips, ClusterIps::Ips(ips) if ips.len() == 1);
            if plan.service_cidr(other).is_some() && !explicit_single {
                s.ip_families.push(other);
            } else if s.ip_family_policy == IpFamilyPolicy::RequireDualStack && !explicit_single {
                diags.push(
                    Diagnostic::error(
                        "dual-stack-unavailable",
                        s.meta.source_of("spec.ipFamilyPolicy"),
                        format!(
                            "Invalid value: \"RequireDualStack\": this cluster has no {} Service CIDR (pass two, e.g. --service-cidr 127.96.0.0/12,fd00:96::/112)",
                            other.as_str()
                        ),
                    )
                    .on(s.meta.object_ref(Kind::Service))
                    .field("spec.ipFamilyPolicy"),
                );
            }
        }
    }

    // Cluster IPs.
    let mut pools: HashMap<IpFamily, Pool> = plan
        .service_cidrs
        .iter()
        .map(|c| (family(c), Pool::hosts(*c)))
        .collect();
    let mut owners: HashMap<IpAddr, ObjectKey> = HashMap::new();
    for s in services.iter() {
        let ClusterIps::Ips(ips) = &s.cluster_ips else {
            continue;
        };
        for (i, ip) in ips.iter().enumerate() {
            let field = format!("spec.clusterIPs[{i}]");
            if let Some(other) = owners.insert(*ip, key(s)) {
                diags.push(
                    Diagnostic::error(
                        "address-conflict",
                        s.meta.source_of("spec.clusterIP"),
                        format!("Invalid value: {ip}: provided IP is already allocated (to Service {other})"),
                    )
                    .on(s.meta.object_ref(Kind::Service))
                    .field(field),
                );
                continue;
            }
            match pools.get_mut(&IpFamily::of(ip)) {
                Some(pool) if pool.net.contains(ip) => pool.take(ip),
                _ => diags.push(
                    Diagnostic::warning(
                        "outside-range",
                        s.meta.source_of("spec.clusterIP"),
                        format!(
                            "cluster IP {ip} is outside the Service CIDR ({}); kept as given",
                            plan.service_cidrs
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                    )
                    .on(s.meta.object_ref(Kind::Service))
                    .field("spec.clusterIP"),
                ),
            }
        }
    }
    // Previous allocations, then fresh ones from the upper (dynamic) band, as the API
    // server does: the lower band stays free for addresses people pick by hand.
    let mut pending = Vec::new();
    for (idx, s) in services.iter_mut().enumerate() {
        let ClusterIps::Ips(ips) = &mut s.cluster_ips else {
            continue;
        };
        if s.type_ == ServiceType::ExternalName || ips.len() >= s.ip_families.len() {
            continue;
        }
        if let Some(p) = previous.and_then(|c| {
            c.services.get(&ObjectKey::new(
                s.meta.namespace.clone(),
                s.meta.name.clone(),
            ))
        }) {
            for ip in p.cluster_ip_list() {
                let f = IpFamily::of(ip);
                if s.ip_families.contains(&f)
                    && !ips.iter().any(|x| IpFamily::of(x) == f)
                    && let Some(pool) = pools.get_mut(&f)
                    && pool.is_free(ip)
                {
                    pool.take(ip);
                    ips.push(*ip);
                }
            }
        }
        pending.push(idx);
    }
    for idx in pending {
        let s = &mut services[idx];
        let seed = fnv1a(format!("{}/{}", s.meta.namespace, s.meta.name).as_bytes());
        let families = s.ip_families.clone();
        let ClusterIps::Ips(ips) = &mut s.cluster_ips else {
            continue;
        };
        for f in families {
            if ips.iter().any(|ip| IpFamily::of(ip) == f) {
                continue;
            }
            let Some(pool) = pools.get_mut(&f) else {
                diags.push(
                    Diagnostic::error(
                        "family-unavailable",
                        s.meta.source_of("spec.ipFamilies"),
                        format!("Invalid value: {}: this cluster has no {} Service CIDR (add one with --service-cidr)", f.as_str(), f.as_str()),
                    )
                    .on(s.meta.object_ref(Kind::Service))
                    .field("spec.ipFamilies"),
                );
                continue;
            };
            let size = pool.hi - pool.lo + 1;
            let static_band = (size / 16).clamp(16, 256);
            match pool.alloc(seed, pool.lo + static_band) {
                Some(ip) => ips.push(ip),
                None => diags.push(
                    Diagnostic::error(
                        "address-exhausted",
                        s.meta.source.clone(),
                        format!("the Service CIDR {} is full", pool.net),
                    )
                    .on(s.meta.object_ref(Kind::Service)),
                ),
            }
        }
        let order = s.ip_families.clone();
        ips.sort_by_key(|ip| order.iter().position(|f| *f == IpFamily::of(ip)));
    }

    node_ports(&mut services, plan, previous, diags);
    load_balancers(&mut services, plan, &prev, diags);

    services.into_iter().map(|s| (key(&s), s)).collect()
}

fn node_ports(
    services: &mut [Service],
    plan: &AddressPlan,
    previous: Option<&Cluster>,
    diags: &mut Diagnostics,
) {
    let range = plan.node_port_range.clone();
    let mut owners: HashMap<u16, ObjectKey> = HashMap::new();
    let wants_node_ports = |s: &Service| match s.type_ {
        ServiceType::NodePort => true,
        ServiceType::LoadBalancer => s
            .raw
            .spec
            .as_ref()
            .and_then(|sp| sp.allocate_load_balancer_node_ports)
            .unwrap_or(true),
        _ => false,
    };
    // Explicit ports first.
    for s in services.iter() {
        let k = ObjectKey::new(s.meta.namespace.clone(), s.meta.name.clone());
        let explicit = s
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.node_port
                    .map(|n| (format!("spec.ports[{i}].nodePort"), n))
            })
            .chain(
                s.health_check_node_port
                    .map(|n| ("spec.healthCheckNodePort".to_string(), n)),
            );
        let mut mine: BTreeSet<u16> = BTreeSet::new();
        for (field, n) in explicit {
            if !range.contains(&n) {
                diags.push(
                    Diagnostic::error(
                        "port-out-of-range",
                        s.meta.source_of(&field),
                        format!(
                            "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}",
                            range.start(),
                            range.end()
                        ),
                    )
                    .on(s.meta.object_ref(Kind::Service))
                    .field(field),
                );
                continue;
            }
            if !mine.insert(n) {
                continue; // The same nodePort for TCP and UDP of one port is allowed.
            }
            if let Some(other) = owners.insert(n, k.clone()) {
                diags.push(
                    Diagnostic::error(
                        "port-conflict",
                        s.meta.source_of(&field),
                        format!("Invalid value: {n}: provided port is already allocated (to Service {other})"),
                    )
                    .on(s.meta.object_ref(Kind::Service))
                    .field(field),
                );
            }
        }
    }
    let span = u64::from(range.end() - range.start()) + 1;
    let alloc = |owners: &mut HashMap<u16, ObjectKey>, seed: u64, k: &ObjectKey| -> Option<u16> {
        for i in 0..span {
            let n = range.start() + ((seed.wrapping_add(i)) % span) as u16;
            if let std::collections::hash_map::Entry::Vacant(e) = owners.entry(n) {
                e.insert(k.clone());
                return Some(n);
            }
        }
        None
    };
    for s in services.iter_mut() {
        if !wants_node_ports(s) {
            continue;
        }
        let k = ObjectKey::new(s.meta.namespace.clone(), s.meta.name.clone());
        let prev = previous.and_then(|c| c.services.get(&k));
        for i in 0..s.ports.len() {
            if s.ports[i].node_port.is_some() {
                continue;
            }
            // A port number served over two protocols shares one NodePort.
            let same_number = s
                .ports
                .iter()
                .find(|o| o.port == s.ports[i].port && o.node_port.is_some())
                .and_then(|o| o.node_port);
            let from_prev = prev
                .and_then(|pv| {
                    pv.ports.iter().find(|o| {
                        o.name == s.ports[i].name
                            && o.port == s.ports[i].port
                            && o.protocol == s.ports[i].protocol
                    })
                })
                .and_then(|o| o.node_port)
                .filter(|n| range.contains(n) && owners.get(n).is_none_or(|o| *o == k));
            let n = same_number.or(from_prev).or_else(|| {
                let p = &s.ports[i];
                let seed = fnv1a(
                    format!(
                        "{k}/{}/{}/{}",
                        p.name.as_deref().unwrap_or(""),
                        p.port,
                        p.protocol
                    )
                    .as_bytes(),
                );
                alloc(&mut owners, seed, &k)
            });
            match n {
                Some(n) => {
                    owners.insert(n, k.clone());
                    s.ports[i].node_port = Some(n);
                }
                None => diags.push(
                    Diagnostic::error(
                        "port-exhausted",
                        s.meta.source.clone(),
                        "no free NodePort left in the node port range",
                    )
                    .on(s.meta.object_ref(Kind::Service)),
                ),
            }
        }
        if s.type_ == ServiceType::LoadBalancer
            && s.external_traffic_policy == TrafficPolicy::Local
            && s.health_check_node_port.is_none()
        {
            let from_prev = prev
                .and_then(|pv| pv.health_check_node_port)
                .filter(|n| owners.get(n).is_none_or(|o| *o == k));
            s.health_check_node_port = from_prev
                .or_else(|| alloc(&mut owners, fnv1a(format!("{k}/health").as_bytes()), &k));
        }
    }
}

fn load_balancers<'a>(
    services: &mut [Service],
    plan: &AddressPlan,
    prev: &dyn Fn(&Service) -> Option<&'a Service>,
    diags: &mut Diagnostics,
) {
    let mut pool = Pool::hosts(plan.load_balancer_pool);
    // Written addresses: shared IPs are fine as long as port/protocol pairs differ.
    let mut claims: HashMap<(IpAddr, u16, Protocol), ObjectKey> = HashMap::new();
    for s in services.iter() {
        let k = ObjectKey::new(s.meta.namespace.clone(), s.meta.name.clone());
        let lists = [
            ("status.loadBalancer.ingress", &s.load_balancer_ips),
            ("spec.externalIPs", &s.external_ips),
        ];
        for (field, ips) in lists {
            for ip in ips.iter() {
                if field.starts_with("status") {
                    if plan.load_balancer_pool.contains(ip) {
                        pool.take(ip);
                    } else {
                        diags.push(
                            Diagnostic::warning(
                                "outside-range",
                                s.meta.source_of(field),
                                format!(
                                    "load-balancer IP {ip} is outside the pool {}; kept as given",
                                    plan.load_balancer_pool
                                ),
                            )
                            .on(s.meta.object_ref(Kind::Service))
                            .field(field),
                        );
                    }
                }
                for p in &s.ports {
                    if let Some(other) = claims.insert((*ip, p.port, p.protocol), k.clone())
                        && other != k
                    {
                        diags.push(
                                Diagnostic::error(
                                    "address-conflict",
                                    s.meta.source_of(field),
                                    format!("Invalid value: {ip}:{}/{} is already served by Service {other}", p.port, p.protocol),
                                )
                                .on(s.meta.object_ref(Kind::Service))
                                .field(field),
                            );
                    }
                }
            }
        }
    }
    for s in services.iter_mut() {
        if s.type_ != ServiceType::LoadBalancer || !s.load_balancer_ips.is_empty() {
            continue;
        }
        let kept = prev(s)
            .and_then(|p| p.load_balancer_ips.first().copied())
            .filter(|ip| pool.is_free(ip));
        let ip = match kept {
            Some(ip) => {
                pool.take(&ip);
                Some(ip)
            }
            None => pool.alloc(
                fnv1a(format!("{}/{}", s.meta.namespace, s.meta.name).as_bytes()),
                pool.lo,
            ),
        };
        match ip {
            Some(ip) => s.load_balancer_ips.push(ip),
            None => diags.push(
                Diagnostic::error(
                    "address-exhausted",
                    s.meta.source.clone(),
                    format!("the load-balancer pool {} is full", plan.load_balancer_pool),
                )
                .on(s.meta.object_ref(Kind::Service)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["node-10", "node-2", "node-1", "alpha"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["alpha", "node-1", "node-2", "node-10"]);
    }

    #[test]
    fn pool_allocates_each_address_once() {
        let mut p = Pool::hosts("10.0.0.0/29".parse().unwrap());
        let mut got = HashSet::new();
        for seed in 0..6 {
            assert!(got.insert(p.alloc(seed * 7, 1).unwrap()));
        }
        assert_eq!(p.alloc(1, 1), None, "a /29 has 6 host addresses");
        assert!(!got.contains(&"10.0.0.0".parse::<IpAddr>().unwrap()));
        assert!(!got.contains(&"10.0.0.7".parse::<IpAddr>().unwrap()));
    }
}
