//! The zone: every record svcnet serves for a cluster, compiled once from a [`Cluster`]
//! into a hash map keyed by lower-case wire-format names. Pure; rebuilt on every change,
//! never patched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use svcnet_model::Cluster;
use svcnet_model::types::{
    AddressType, ClusterIps, EndpointPort, PodPhase, Protocol, Service, ServiceType,
};

use crate::config::{DnsConfig, PodsMode};
use crate::name::{self, NameKey, Wire};

/// `dns-version.<zone>` answers the schema version of the Kubernetes DNS specification.
pub(crate) const SCHEMA_VERSION: &str = "1.1.0";
/// TTL of the `dns-version` TXT record, as the specification's example and CoreDNS.
pub(crate) const VERSION_TTL: u32 = 28800;
/// Longest CNAME chain followed inside the zone (ExternalName to ExternalName...).
pub(crate) const MAX_CHAIN: usize = 8;

/// Which of the zones svcnet is authoritative for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ZoneId {
    /// The cluster domain (`cluster.local.`).
    Cluster,
    /// `in-addr.arpa.`: IPv4 reverse names.
    InAddrArpa,
    /// `ip6.arpa.`: IPv6 reverse names.
    Ip6Arpa,
}

impl ZoneId {
    /// Every zone, in the order `svcnet dns zone` prints them.
    pub const ALL: [ZoneId; 3] = [ZoneId::Cluster, ZoneId::InAddrArpa, ZoneId::Ip6Arpa];

    fn index(self) -> usize {
        match self {
            ZoneId::Cluster => 0,
            ZoneId::InAddrArpa => 1,
            ZoneId::Ip6Arpa => 2,
        }
    }
}

/// An SRV record's data; the target is a lower-case wire-format name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SrvData {
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) port: u16,
    pub(crate) target: Wire,
}

/// The records at one name. An empty node is an empty non-terminal: the name exists
/// (NODATA for every type), it only has names below it.
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct Node {
    pub(crate) a: Vec<Ipv4Addr>,
    pub(crate) aaaa: Vec<Ipv6Addr>,
    pub(crate) srv: Vec<SrvData>,
    pub(crate) ptr: Vec<Wire>,
    pub(crate) cname: Option<Wire>,
    /// Character-strings of the TXT record, in wire format.
    pub(crate) txt: Option<Vec<u8>>,
    pub(crate) ns: Vec<Wire>,
    /// The zone whose apex this is (it has the SOA).
    pub(crate) soa: Option<ZoneId>,
}

impl Node {
    fn normalize(&mut self) {
        self.a.sort_unstable();
        self.a.dedup();
        self.aaaa.sort_unstable();
        self.aaaa.dedup();
        self.ptr.sort_unstable();
        self.ptr.dedup();
        self.ns.sort_unstable();
        self.ns.dedup();
        // Priority and weight are not prescribed by the specification: all targets are
        // equal (priority 0) and share 100 in weight, as CoreDNS does.
        let mut seen = HashSet::new();
        self.srv.retain(|s| seen.insert((s.port, s.target.clone())));
        self.srv
            .sort_unstable_by(|x, y| (&x.target, x.port).cmp(&(&y.target, y.port)));
        let weight = u16::try_from(100 / self.srv.len().max(1))
            .unwrap_or(1)
            .max(1);
        for s in &mut self.srv {
            s.priority = 0;
            s.weight = weight;
        }
    }
}

/// The zone view of a cluster: the records of the cluster domain, and of the reverse
/// zones for cluster and endpoint IPs. Immutable once built; answer queries with
/// [`DnsZone::answer`].
#[derive(Clone, Debug)]
pub struct DnsZone {
    pub(crate) ttl: u32,
    pub(crate) pods: PodsMode,
    pub(crate) forward: bool,
    pub(crate) max_udp_payload: u16,
    /// Apex of each zone in wire format, and its label count.
    pub(crate) apex: [(Wire, usize); 3],
    /// `ns.dns.<zone>`: the name server named in the SOA and NS records.
    pub(crate) ns_name: Wire,
    /// `hostmaster.<zone>`: the SOA RNAME.
    pub(crate) hostmaster: Wire,
    pub(crate) serial: u32,
    pub(crate) nodes: HashMap<Wire, Node>,
    /// Namespace names (lower case), for `pods insecure` names built on the fly.
    pub(crate) namespaces: HashSet<Vec<u8>>,
}

/// Record builder used by [`DnsZone::build`].
struct Builder {
    cluster: Vec<u8>,
    nodes: HashMap<Wire, Node>,
}

impl Builder {
    fn node(&mut self, wire: Vec<u8>) -> &mut Node {
        self.nodes.entry(wire.into_boxed_slice()).or_default()
    }

    /// `<labels...>.<zone>` in wire format; `None` when a label is not a valid DNS label
    /// (the model validates names, so only an absurd cluster domain gets here).
    fn name(&self, labels: &[&str]) -> Option<Vec<u8>> {
        name::prepend(labels, &self.cluster)
    }
}

/// One published endpoint address of a Service, with the name DNS gives it.
struct PublishedEndpoint<'c> {
    label: String,
    ip: IpAddr,
    ports: &'c [EndpointPort],
}

impl DnsZone {
    /// Compiles the zone of `cluster` (its domain is `cluster.plan.cluster_domain`).
    pub fn build(cluster: &Cluster, config: &DnsConfig) -> DnsZone {
        let domain = &cluster.plan.cluster_domain;
        let cluster_wire = name::wire_from_text(domain)
            .filter(|w| w.len() > 1)
            .unwrap_or_else(|| b"\x07cluster\x05local\x00".to_vec());
        let mut b = Builder {
            cluster: cluster_wire.clone(),
            nodes: HashMap::new(),
        };
        let forward = !config.upstream.is_none();

        // Apex, name server, schema version.
        let ns_name = b
            .name(&["ns", "dns"])
            .unwrap_or_else(|| cluster_wire.clone());
        let hostmaster = b
            .name(&["hostmaster"])
            .unwrap_or_else(|| cluster_wire.clone());
        {
            let apex = b.node(cluster_wire.clone());
            apex.soa = Some(ZoneId::Cluster);
            apex.ns.push(ns_name.clone().into_boxed_slice());
        }
        if let Some(dns) = cluster.services.get(&svcnet_model::types::ObjectKey::new(
            "kube-system",
            "kube-dns",
        )) {
            let ips = dns.cluster_ip_list().to_vec();
            let node = b.node(ns_name.clone());
            for ip in ips {
                push_ip(node, ip);
            }
        } else {
            b.node(ns_name.clone());
        }
        if let Some(w) = b.name(&["dns-version"]) {
            let mut txt = vec![SCHEMA_VERSION.len() as u8];
            txt.extend_from_slice(SCHEMA_VERSION.as_bytes());
            b.node(w).txt = Some(txt);
        }
        for apex in [
            b"\x07in-addr\x04arpa\x00".as_slice(),
            b"\x03ip6\x04arpa\x00",
        ] {
            // Without an upstream svcnet answers for the whole reverse trees.
            if !forward {
                let node = b.node(apex.to_vec());
                node.soa = Some(if apex.starts_with(b"\x07in-addr") {
                    ZoneId::InAddrArpa
                } else {
                    ZoneId::Ip6Arpa
                });
                node.ns.push(ns_name.clone().into_boxed_slice());
            }
        }

        // Namespaces: `<ns>.svc.<zone>` and `<ns>.pod.<zone>` exist (NODATA) for every
        // namespace, even one without Services or pods.
        let mut namespaces = HashSet::new();
        for ns in cluster.namespaces.keys() {
            namespaces.insert(ns.to_ascii_lowercase().into_bytes());
            if let Some(w) = b.name(&[ns, "svc"]) {
                b.node(w);
            }
            if config.pods != PodsMode::Disabled
                && let Some(w) = b.name(&[ns, "pod"])
            {
                b.node(w);
            }
        }
        if let Some(w) = b.name(&["svc"]) {
            b.node(w);
        }

        for svc in cluster.services.values() {
            add_service(&mut b, cluster, svc);
        }

        if config.pods == PodsMode::Verified {
            for pod in cluster.pods.values() {
                if matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed) {
                    continue;
                }
                for ip in &pod.ips {
                    let label = name::dashed_ip(*ip);
                    if let Some(w) = b.name(&[&label, &pod.meta.namespace, "pod"]) {
                        push_ip(b.node(w), *ip);
                    }
                }
            }
        }

        // Empty non-terminals: every ancestor of a name, up to its zone's apex.
        let apexes: [(Wire, usize); 3] = [
            (
                cluster_wire.clone().into_boxed_slice(),
                name::label_count(&cluster_wire),
            ),
            (b"\x07in-addr\x04arpa\x00".to_vec().into_boxed_slice(), 2),
            (b"\x03ip6\x04arpa\x00".to_vec().into_boxed_slice(), 2),
        ];
        let keys: Vec<Wire> = b.nodes.keys().cloned().collect();
        for key in keys {
            let Some(apex) = apexes.iter().find(|(a, _)| key.ends_with(a)) else {
                continue;
            };
            let mut cur: &[u8] = &key;
            while cur.len() > apex.0.len() {
                let Some(p) = name::parent(cur) else { break };
                if p.len() < apex.0.len() {
                    break;
                }
                b.nodes.entry(p.to_vec().into_boxed_slice()).or_default();
                cur = p;
            }
        }
        for node in b.nodes.values_mut() {
            node.normalize();
        }

        // The serial changes whenever the records do, and is the same for the same
        // records: a hash of the sorted zone (the zone is never transferred, so it need
        // not increase).
        let mut sorted: Vec<(&Wire, &Node)> = b.nodes.iter().collect();
        sorted.sort_unstable_by(|x, y| x.0.cmp(y.0));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        sorted.hash(&mut h);
        config.ttl.hash(&mut h);
        let serial = (h.finish() as u32).max(1);

        DnsZone {
            ttl: config.ttl,
            pods: config.pods,
            forward,
            max_udp_payload: config.max_udp_payload.max(512),
            apex: apexes,
            ns_name: ns_name.into_boxed_slice(),
            hostmaster: hostmaster.into_boxed_slice(),
            serial,
            nodes: b.nodes,
            namespaces,
        }
    }

    /// The TTL of the zone's records (and its SOA minimum).
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The SOA serial: a hash of the records, so equal zones have equal serials.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Number of names in the zone (empty non-terminals included).
    pub fn name_count(&self) -> usize {
        self.nodes.len()
    }

    /// True when names outside the owned zones are forwarded upstream.
    pub fn forwards(&self) -> bool {
        self.forward
    }

    /// The zone a name falls in, if svcnet owns it.
    pub(crate) fn zone_of(&self, key: &NameKey) -> Option<ZoneId> {
        ZoneId::ALL.into_iter().find(|z| {
            let (apex, labels) = &self.apex[z.index()];
            key.is_at_or_below(apex, *labels)
        })
    }

    /// Apex of a zone in wire format.
    pub(crate) fn apex_of(&self, zone: ZoneId) -> &[u8] {
        &self.apex[zone.index()].0
    }

    /// Looks a folded name up, building `pods insecure` names on the fly.
    pub(crate) fn lookup(&self, key: &NameKey) -> Lookup<'_> {
        if let Some(node) = self.nodes.get(key.wire()) {
            return Lookup::Node(node);
        }
        if self.pods == PodsMode::Insecure {
            let (_, cluster_labels) = &self.apex[0];
            if key.label_count() == cluster_labels + 3
                && key.label(2) == b"pod"
                && key.is_at_or_below(&self.apex[0].0, *cluster_labels)
                && self.namespaces.contains(key.label(1))
                && let Some(ip) = name::parse_dashed_ip(key.label(0))
            {
                return Lookup::Pod(ip);
            }
        }
        Lookup::Nothing
    }

    /// Every record as (owner, type, ttl, rdata text), owners in canonical DNS order.
    pub(crate) fn records(&self, zone: ZoneId) -> Vec<(String, &'static str, u32, String)> {
        let (apex, labels) = &self.apex[zone.index()];
        let mut names: Vec<&Wire> = self
            .nodes
            .keys()
            .filter(|k| NameKey::from_wire(k).is_some_and(|key| key.is_at_or_below(apex, *labels)))
            .collect();
        names.sort_unstable_by(|x, y| canonical_cmp(x, y));
        let mut out = Vec::new();
        let t = self.ttl;
        for w in names {
            let Some(node) = self.nodes.get(w) else {
                continue;
            };
            let owner = name::wire_to_text(w);
            if let Some(z) = node.soa {
                out.push((owner.clone(), "SOA", t, self.soa_text(z)));
            }
            for ns in &node.ns {
                out.push((owner.clone(), "NS", t, name::wire_to_text(ns)));
            }
            if let Some(c) = &node.cname {
                out.push((owner.clone(), "CNAME", t, name::wire_to_text(c)));
            }
            for a in &node.a {
                out.push((owner.clone(), "A", t, a.to_string()));
            }
            for a in &node.aaaa {
                out.push((owner.clone(), "AAAA", t, a.to_string()));
            }
            for s in &node.srv {
                out.push((
                    owner.clone(),
                    "SRV",
                    t,
                    format!(
                        "{} {} {} {}",
                        s.priority,
                        s.weight,
                        s.port,
                        name::wire_to_text(&s.target)
                    ),
                ));
            }
            for p in &node.ptr {
                out.push((owner.clone(), "PTR", t, name::wire_to_text(p)));
            }
            if let Some(txt) = &node.txt {
                out.push((owner.clone(), "TXT", VERSION_TTL, txt_text(txt)));
            }
        }
        out
    }

    /// SOA rdata in presentation format.
    fn soa_text(&self, _zone: ZoneId) -> String {
        format!(
            "{} {} {} {} {} {} {}",
            name::wire_to_text(&self.ns_name),
            name::wire_to_text(&self.hostmaster),
            self.serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            self.ttl
        )
    }

    /// The zone in the master file format of RFC 1035 (what `svcnet dns zone` prints and
    /// what an authoritative server such as knot can load). `zone` = `None` prints every
    /// zone svcnet owns, one after the other, each with a `$ORIGIN` line.
    pub fn zone_file(&self, zone: Option<ZoneId>) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for z in ZoneId::ALL {
            if zone.is_some_and(|want| want != z) {
                continue;
            }
            let apex = name::wire_to_text(self.apex_of(z));
            let records = self.records(z);
            if records.is_empty() {
                let _ = writeln!(
                    out,
                    "; {apex} is forwarded upstream except for the PTR records below"
                );
            }
            let _ = writeln!(out, "$ORIGIN {apex}");
            if z == ZoneId::Cluster && self.pods == PodsMode::Insecure {
                let _ = writeln!(
                    out,
                    "; pods insecure: <a-b-c-d>.<namespace>.pod.{apex} answers for any address, not listed"
                );
            }
            for (owner, ty, ttl, rdata) in records {
                let _ = writeln!(out, "{owner}\t{ttl}\tIN\t{ty}\t{rdata}");
            }
        }
        out
    }
}

/// SOA timers. Nothing transfers the zone, so they are informational; CoreDNS's values.
pub(crate) const SOA_REFRESH: u32 = 7200;
pub(crate) const SOA_RETRY: u32 = 1800;
pub(crate) const SOA_EXPIRE: u32 = 86400;

/// What a name resolves to.
pub(crate) enum Lookup<'z> {
    /// A name of the zone (possibly an empty non-terminal).
    Node(&'z Node),
    /// `<a-b-c-d>.<ns>.pod.<zone>` under `pods insecure`.
    Pod(IpAddr),
    /// No such name.
    Nothing,
}

fn push_ip(node: &mut Node, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => node.a.push(v4),
        IpAddr::V6(v6) => node.aaaa.push(v6),
    }
}

fn proto_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "_tcp",
        Protocol::Udp => "_udp",
        Protocol::Sctp => "_sctp",
    }
}

/// The records of one Service.
fn add_service(b: &mut Builder, cluster: &Cluster, svc: &Service) {
    let ns = &svc.meta.namespace;
    let svc_name = &svc.meta.name;
    let Some(svc_wire) = b.name(&[svc_name, ns, "svc"]) else {
        return;
    };

    if svc.type_ == ServiceType::ExternalName {
        if let Some(target) = svc.external_name.as_deref().and_then(name::wire_from_text) {
            b.node(svc_wire).cname = Some(target.into_boxed_slice());
        }
        return;
    }

    // Published endpoints: ready ones, or all with publishNotReadyAddresses (a written
    // slice may not say so in its conditions).
    let key = svcnet_model::types::ObjectKey::new(ns.clone(), svc_name.clone());
    let mut endpoints: Vec<PublishedEndpoint<'_>> = Vec::new();
    for slice in cluster.slices_of(&key) {
        if slice.address_type == AddressType::Fqdn {
            continue;
        }
        for ep in &slice.endpoints {
            if !(ep.ready || svc.publish_not_ready_addresses) {
                continue;
            }
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                let label = ep.hostname.clone().unwrap_or_else(|| name::dashed_ip(ip));
                endpoints.push(PublishedEndpoint {
                    label,
                    ip,
                    ports: &slice.ports,
                });
            }
        }
    }

    // Endpoint names, `<hostname>.<svc>.<ns>.svc.<zone>` (or the dashed IP), for
    // headless and ClusterIP Services alike (CoreDNS answers both), and their PTRs.
    let mut endpoint_names: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for ep in &endpoints {
        let Some(w) = name::prepend(&[&ep.label], &svc_wire) else {
            continue;
        };
        push_ip(b.node(w.clone()), ep.ip);
        b.node(name::reverse_wire(ep.ip))
            .ptr
            .push(w.clone().into_boxed_slice());
        endpoint_names.insert(&ep.label, w);
    }

    match &svc.cluster_ips {
        ClusterIps::Ips(ips) => {
            for ip in ips {
                push_ip(b.node(svc_wire.clone()), *ip);
                b.node(name::reverse_wire(*ip))
                    .ptr
                    .push(svc_wire.clone().into_boxed_slice());
            }
            let target: Wire = svc_wire.clone().into_boxed_slice();
            for port in &svc.ports {
                let srv = SrvData {
                    priority: 0,
                    weight: 0,
                    port: port.port,
                    target: target.clone(),
                };
                if let Some(pname) = &port.name
                    && let Some(w) = name::prepend(
                        &[&format!("_{pname}"), proto_label(port.protocol)],
                        &svc_wire,
                    )
                {
                    b.node(w).srv.push(srv.clone());
                }
                // Service-level SRV (CoreDNS extension): every port.
                b.node(svc_wire.clone()).srv.push(srv);
            }
        }
        ClusterIps::Headless => {
            // No published endpoint: the Service name does not exist (NXDOMAIN).
            for ep in &endpoints {
                push_ip(b.node(svc_wire.clone()), ep.ip);
                let Some(target) = endpoint_names.get(ep.label.as_str()) else {
                    continue;
                };
                for port in ep.ports {
                    let Some(number) = port.port else { continue };
                    let srv = SrvData {
                        priority: 0,
                        weight: 0,
                        port: number,
                        target: target.clone().into_boxed_slice(),
                    };
                    if !port.name.is_empty()
                        && let Some(w) = name::prepend(
                            &[&format!("_{}", port.name), proto_label(port.protocol)],
                            &svc_wire,
                        )
                    {
                        b.node(w).srv.push(srv.clone());
                    }
                    b.node(svc_wire.clone()).srv.push(srv);
                }
            }
        }
    }
}

/// Canonical DNS name order (RFC 4034 6.1): compare label by label from the root.
fn canonical_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let labels = |w: &[u8]| {
        let mut v: Vec<Vec<u8>> = Vec::new();
        let mut rest = w;
        while let Some((&n, tail)) = rest.split_first() {
            if n == 0 {
                break;
            }
            let n = usize::from(n).min(tail.len());
            v.push(tail[..n].to_vec());
            rest = &tail[n..];
        }
        v.reverse();
        v
    };
    labels(a).cmp(&labels(b))
}

/// TXT character-strings in presentation format.
fn txt_text(rdata: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = rdata;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        if !out.is_empty() {
            out.push(' ');
        }
        out.push('"');
        for &c in &tail[..n] {
            match c {
                b'"' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(c));
                }
                0x20..=0x7e => out.push(char::from(c)),
                _ => out.push_str(&format!("\\{c:03}")),
            }
        }
        out.push('"');
        rest = &tail[n..];
    }
    out
}
