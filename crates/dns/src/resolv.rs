//! The `/etc/resolv.conf` kubelet writes for a pod: `dnsPolicy` and `dnsConfig`.
//!
//! Pure: the node's own resolv.conf is an input, so the result is testable and matches
//! what kubelet (pkg/kubelet/network/dns) would write on that node.

use std::fmt;
use std::net::IpAddr;

use svcnet_model::types::{DnsPolicy, Pod};

/// kubelet keeps at most three nameservers (the glibc limit).
pub const MAX_NAMESERVERS: usize = 3;
/// kubelet keeps at most 32 search domains.
pub const MAX_SEARCHES: usize = 32;

/// A resolv.conf: nameservers, search domains, options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `search` line.
    pub searches: Vec<String>,
    /// The `options` line: `ndots:5`, `edns0`.
    pub options: Vec<(String, Option<String>)>,
}

impl ResolvConf {
    /// Parses a resolv.conf text (the node's).
    pub fn parse(text: &str) -> ResolvConf {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    out.searches = words.map(str::to_string).collect();
                }
                Some("options") => {
                    for w in words {
                        let (k, v) = match w.split_once(':') {
                            Some((k, v)) => (k.to_string(), Some(v.to_string())),
                            None => (w.to_string(), None),
                        };
                        set_option(&mut out.options, k, v);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The `ndots` option, default 1 (the resolver's).
    pub fn ndots(&self) -> u32 {
        self.options
            .iter()
            .find(|(k, _)| k == "ndots")
            .and_then(|(_, v)| v.as_deref()?.parse().ok())
            .unwrap_or(1)
    }
}

fn set_option(options: &mut Vec<(String, Option<String>)>, k: String, v: Option<String>) {
    match options.iter_mut().find(|(name, _)| *name == k) {
        Some(slot) => slot.1 = v,
        None => options.push((k, v)),
    }
}

impl fmt::Display for ResolvConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.searches.is_empty() {
            writeln!(f, "search {}", self.searches.join(" "))?;
        }
        for n in &self.nameservers {
            writeln!(f, "nameserver {n}")?;
        }
        if !self.options.is_empty() {
            let opts: Vec<String> = self
                .options
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}:{v}"),
                    None => k.clone(),
                })
                .collect();
            writeln!(f, "options {}", opts.join(" "))?;
        }
        Ok(())
    }
}

/// What kubelet writes for `pod`: `cluster_dns` is the kube-dns Service IP, `domain` the
/// cluster domain, `node` the node's own resolv.conf.
pub fn pod_resolv_conf(
    pod: &Pod,
    cluster_dns: &[IpAddr],
    domain: &str,
    node: &ResolvConf,
) -> ResolvConf {
    // ClusterFirst on a hostNetwork pod falls back to Default, as kubelet does.
    let policy = match (pod.dns_policy, pod.host_network) {
        (DnsPolicy::ClusterFirst, true) => DnsPolicy::Default,
        (p, _) => p,
    };
    let mut out = match policy {
        DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet => ResolvConf {
            nameservers: cluster_dns.iter().map(ToString::to_string).collect(),
            searches: [
                format!("{}.svc.{domain}", pod.meta.namespace),
                format!("svc.{domain}"),
                domain.to_string(),
            ]
            .into_iter()
            .chain(node.searches.iter().cloned())
            .collect(),
            options: vec![("ndots".to_string(), Some("5".to_string()))],
        },
        DnsPolicy::Default => node.clone(),
        DnsPolicy::None => ResolvConf::default(),
    };
    if let Some(cfg) = &pod.dns_config {
        for n in &cfg.nameservers {
            let n = n.to_string();
            if !out.nameservers.contains(&n) {
                out.nameservers.push(n);
            }
        }
        for s in &cfg.searches {
            if !out.searches.contains(s) {
                out.searches.push(s.clone());
            }
        }
        for (k, v) in &cfg.options {
            set_option(&mut out.options, k.clone(), v.clone());
        }
    }
    out.nameservers.truncate(MAX_NAMESERVERS);
    out.searches.truncate(MAX_SEARCHES);
    out
}

/// The names a pod's resolver tries for `name`, in order (glibc's rule): a name with at
/// least `ndots` dots (or a trailing dot) is tried as is first; then each search domain
/// appended; then, if not tried yet, the name as is.
pub fn search_expansion(name: &str, conf: &ResolvConf) -> Vec<String> {
    if let Some(abs) = name.strip_suffix('.') {
        return vec![format!("{abs}.")];
    }
    let dots = name.matches('.').count() as u32;
    let mut out = Vec::new();
    let as_is = format!("{name}.");
    if dots >= conf.ndots() {
        out.push(as_is.clone());
    }
    for s in &conf.searches {
        out.push(format!("{name}.{}.", s.trim_end_matches('.')));
    }
    if !out.contains(&as_is) {
        out.push(as_is);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use svcnet_model::types::ObjectKey;
    use svcnet_model::{AddressPlan, Cluster};

    fn pod(yaml: &str, ns: &str, name: &str) -> Pod {
        let (c, d) = Cluster::from_yaml("t.yaml", yaml, &AddressPlan::default());
        let c = c.unwrap_or_else(|| panic!("{d}"));
        c.pods[&ObjectKey::new(ns, name)].clone()
    }

    const NODE: &str = "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n";

    #[test]
    fn cluster_first() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: frontend}\nspec: {containers: [{name: c, image: x}]}\n",
            "frontend",
            "web",
        );
        let conf = pod_resolv_conf(
            &p,
            &["10.96.0.10".parse().unwrap()],
            "cluster.local",
            &ResolvConf::parse(NODE),
        );
        assert_eq!(
            conf.to_string(),
            "search frontend.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        // The seed's example: `user-api` from namespace frontend.
        assert_eq!(
            search_expansion("user-api", &conf)[..3],
            [
                "user-api.frontend.svc.cluster.local.",
                "user-api.svc.cluster.local.",
                "user-api.cluster.local."
            ]
        );
        // api.example.com has 2 dots < ndots 5: four search domains first, then as is.
        let tries = search_expansion("api.example.com", &conf);
        assert_eq!(tries.len(), 5);
        assert_eq!(tries.last().unwrap(), "api.example.com.");
    }

    #[test]
    fn none_and_default_and_dns_config() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: custom-dns-pod}\nspec:\n  dnsPolicy: \"None\"\n  dnsConfig:\n    nameservers: [8.8.8.8, 1.1.1.1]\n    searches: [company.internal]\n    options: [{name: ndots, value: \"2\"}]\n  containers: [{name: app, image: nginx}]\n",
            "default",
            "custom-dns-pod",
        );
        let conf = pod_resolv_conf(&p, &[], "cluster.local", &ResolvConf::parse(NODE));
        assert_eq!(
            conf.to_string(),
            "search company.internal\nnameserver 8.8.8.8\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
        let d = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: d}\nspec:\n  dnsPolicy: Default\n  containers: [{name: app, image: nginx}]\n",
            "default",
            "d",
        );
        let conf = pod_resolv_conf(
            &d,
            &["10.96.0.10".parse().unwrap()],
            "cluster.local",
            &ResolvConf::parse(NODE),
        );
        assert_eq!(conf, ResolvConf::parse(NODE));
    }
}

/// The outcome of one query against the zone, for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// The response code (`NOERROR`, `NXDOMAIN`, `REFUSED`...).
    pub rcode: String,
    /// Answer records in presentation format.
    pub answers: Vec<String>,
}

/// Asks the zone for `name`/`qtype` as a pod's resolver would (one query, no upstream).
pub fn lookup(zone: &crate::DnsZone, name: &str, qtype: &str) -> Option<Lookup> {
    use domain::base::iana::{Class, Rtype};
    use domain::base::name::ParsedName;
    use domain::base::{Message, MessageBuilder, Name};
    use domain::rdata::AllRecordData;
    use std::str::FromStr;

    let qname = Name::<Vec<u8>>::from_str(name).ok()?;
    let rtype = Rtype::from_str(&qtype.to_ascii_uppercase()).ok()?;
    let mut b = MessageBuilder::new_vec();
    b.header_mut().set_id(1);
    b.header_mut().set_rd(true);
    let mut q = b.question();
    q.push((qname, rtype, Class::IN)).ok()?;
    let query = q.finish();
    let (response, _) = zone.answer(&query, crate::Transport::Tcp);
    let msg = Message::from_octets(response.as_slice()).ok()?;
    let mut answers = Vec::new();
    for rec in msg.answer().ok()? {
        let rec = rec.ok()?;
        if let Ok(Some(r)) = rec.to_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>() {
            answers.push(format!(
                "{}\t{}\t{}\t{}",
                r.owner(),
                r.ttl().as_secs(),
                r.rtype(),
                r.data()
            ));
        }
    }
    Some(Lookup {
        rcode: msg.header().rcode().to_string(),
        answers,
    })
}
