//! Findings about NetworkPolicies that are valid but probably do not do what their author
//! meant, for `svcnet check`: the ones that need the compiled index (who a rule's egress
//! reaches, which pods a policy selects). Selector-only findings (a policy selecting no
//! pod, namespace selectors matching nothing, the `NotIn` that denies nothing) are the
//! model's lints (`svcnet_model::lint`); `svcnet check` prints both.

use std::net::IpAddr;

use serde::Serialize;
use svcnet_model::Cluster;
use svcnet_model::selector::Labels;
use svcnet_model::types::{ObjectKey, PolicyPeer, PortRef, Protocol};

use crate::index::{PodInfo, PolicyIndex};
use crate::podset::PodSet;
use crate::verdict::Direction;

/// One finding about a NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyLint {
    /// The policy.
    pub policy: ObjectKey,
    /// The field it is about (`spec.ingress[0].from[1].namespaceSelector`); find its line
    /// with the policy's `meta.source_of(field)`.
    pub field: String,
    /// A stable code: `egress-without-dns`, `named-port-undeclared`.
    pub code: &'static str,
    /// What is wrong and what to do, for a person.
    pub message: String,
}

/// Runs every NetworkPolicy lint over a cluster. Findings are in policy order, then field
/// order.
pub fn lints(cluster: &Cluster) -> Vec<PolicyLint> {
    let index = PolicyIndex::compile(cluster);
    let dns = DnsTarget::of(cluster, &index);
    let mut out = Vec::new();
    for (pi, np) in cluster.network_policies.values().enumerate() {
        let key = ObjectKey::new(np.meta.namespace.clone(), np.meta.name.clone());
        let mut push = |field: String, code: &'static str, message: String| {
            out.push(PolicyLint {
                policy: key.clone(),
                field,
                code,
                message,
            })
        };
        let selected: Vec<&PodInfo> = index
            .pods
            .iter()
            .filter(|p| {
                p.ingress_policies.contains(&(pi as u32))
                    || p.egress_policies.contains(&(pi as u32))
            })
            .collect();

        for (dir, rules) in [
            (Direction::Ingress, &np.ingress),
            (Direction::Egress, &np.egress),
        ] {
            for (ri, rule) in rules.iter().enumerate() {
                let rf = format!("spec.{}[{ri}]", dir.field());
                // Named ports: ingress names resolve on the selected pods, egress names on
                // the destination pods.
                for (k, port) in rule.ports.iter().enumerate() {
                    let Some(PortRef::Name(name)) = &port.port else {
                        continue;
                    };
                    let candidates: Vec<&PodInfo> = match dir {
                        Direction::Ingress => {
                            if !np.policy_types.ingress {
                                continue;
                            }
                            selected.clone()
                        }
                        Direction::Egress => {
                            if !np.policy_types.egress {
                                continue;
                            }
                            let Some(set) = egress_destinations(&index, pi, ri) else {
                                continue;
                            };
                            set.iter().map(|i| &index.pods[i]).collect()
                        }
                    };
                    if candidates.is_empty() {
                        continue;
                    }
                    if candidates
                        .iter()
                        .any(|p| declares(cluster, &p.key, name, Some(port.protocol)))
                    {
                        continue;
                    }
                    let other_protocol: Vec<String> = candidates
                        .iter()
                        .filter(|p| declares(cluster, &p.key, name, None))
                        .map(|p| p.key.to_string())
                        .collect();
                    let whose = match dir {
                        Direction::Ingress => "the pods this policy selects",
                        Direction::Egress => "the destination pods of this rule",
                    };
                    let hint = if other_protocol.is_empty() {
                        format!("declare `{name}` in a container's ports, or use the port number")
                    } else {
                        format!(
                            "{} declare{} `{name}` with another protocol; set the rule port's protocol to match",
                            list(&other_protocol),
                            if other_protocol.len() == 1 { "s" } else { "" }
                        )
                    };
                    push(
                        format!("{rf}.ports[{k}].port"),
                        "named-port-undeclared",
                        format!(
                            "named port {name:?} ({}) is declared by none of {whose} ({}), so this port entry matches nothing; {hint}",
                            port.protocol,
                            list(
                                &candidates
                                    .iter()
                                    .map(|p| p.key.to_string())
                                    .collect::<Vec<_>>()
                            )
                        ),
                    );
                }
            }
        }

        // Egress isolation without DNS.
        if np.policy_types.egress {
            let blind: Vec<String> = selected
                .iter()
                .filter(|p| !dns.reachable_from(&index, p))
                .map(|p| p.key.to_string())
                .collect();
            if !blind.is_empty() {
                push(
                    "spec.policyTypes".to_string(),
                    "egress-without-dns",
                    format!(
                        "isolates {} for egress, and no egress rule of the policies selecting {} allows DNS ({}): {} cannot resolve names. Add an egress rule such as `- to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}, podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}}}]` with `ports: [{{protocol: UDP, port: 53}}, {{protocol: TCP, port: 53}}]`",
                        list(&blind),
                        if blind.len() == 1 { "it" } else { "them" },
                        dns.describe(),
                        if blind.len() == 1 { "it" } else { "they" },
                    ),
                );
            }
        }
    }
    out
}

/// The pods an egress rule of policy `pi` (rule `ri`) may reach, by its peers.
fn egress_destinations(index: &PolicyIndex, pi: usize, ri: usize) -> Option<PodSet> {
    let rule = index.rules.iter().find(|r| {
        r.policy as usize == pi && r.direction == Direction::Egress && r.index as usize == ri
    })?;
    let n = index.pods.len();
    if rule.all_peers {
        let mut s = PodSet::empty(n);
        for (i, p) in index.pods.iter().enumerate() {
            if !p.host_network {
                s.insert(i);
            }
        }
        return Some(s);
    }
    let mut s = rule.pods.clone();
    s.union_with(&rule.block_pods);
    Some(s)
}

fn declares(cluster: &Cluster, pod: &ObjectKey, name: &str, protocol: Option<Protocol>) -> bool {
    cluster.pods.get(pod).is_some_and(|p| {
        p.containers.iter().flat_map(|c| &c.ports).any(|cp| {
            cp.name.as_deref() == Some(name) && protocol.is_none_or(|pr| pr == cp.protocol)
        })
    })
}

/// At most eight items, then a count.
fn list(items: &[String]) -> String {
    if items.len() <= 8 {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..8].join(", "), items.len() - 8)
    }
}

/// Where the cluster's DNS is: the kube-dns pods, or (when the manifests have none, as in
/// loopback mode) the pods a real cluster would run: `k8s-app: kube-dns` in kube-system,
/// behind the kube-dns Service IP.
struct DnsTarget {
    pods: Vec<usize>,
    namespace_labels: Labels,
    pod_labels: Labels,
    service_ip: Option<IpAddr>,
}

impl DnsTarget {
    fn of(cluster: &Cluster, index: &PolicyIndex) -> DnsTarget {
        let pod_labels: Labels = [("k8s-app".to_string(), "kube-dns".to_string())].into();
        let pods = index
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                !p.host_network
                    && p.key.namespace == "kube-system"
                    && p.labels.get("k8s-app").map(String::as_str) == Some("kube-dns")
            })
            .map(|(i, _)| i)
            .collect();
        let namespace_labels = cluster
            .namespaces
            .get("kube-system")
            .map(|n| (*n.meta.labels).clone())
            .unwrap_or_else(|| {
                [(
                    "kubernetes.io/metadata.name".to_string(),
                    "kube-system".to_string(),
                )]
                .into()
            });
        let service_ip = cluster
            .services
            .get(&ObjectKey::new("kube-system", "kube-dns"))
            .and_then(|s| s.cluster_ip_list().first().copied());
        DnsTarget {
            pods,
            namespace_labels,
            pod_labels,
            service_ip,
        }
    }

    fn describe(&self) -> String {
        let ip = self
            .service_ip
            .map(|ip| format!(", Service IP {ip}"))
            .unwrap_or_default();
        format!("UDP port 53 to the kube-dns pods in kube-system{ip}")
    }

    /// True when the pod's egress allows UDP 53 to the cluster DNS.
    fn reachable_from(&self, index: &PolicyIndex, pod: &PodInfo) -> bool {
        let Some(i) = index.pod_id(&pod.key).map(|id| id.index()) else {
            return true;
        };
        if pod.egress_policies.is_empty() {
            return true;
        }
        if !self.pods.is_empty() {
            return self.pods.iter().any(|&d| {
                index.direction_allows(
                    Direction::Egress,
                    i,
                    Some(d),
                    index.pods[d].primary_ip(),
                    53,
                    Protocol::Udp,
                )
            });
        }
        // No DNS pod in the manifests: judge the rules against the pods a cluster would run.
        pod.egress_rules.iter().any(|&r| {
            let rule = &index.rules[r as usize];
            let ports_ok = index.port_index(rule, None, 53, Protocol::Udp).is_some();
            let source = &index.policies[rule.policy as usize].egress[rule.index as usize];
            let peer_ok = rule.all_peers
                || source.peers.iter().any(|peer| match peer {
                    PolicyPeer::IpBlock { cidr, except } => self.service_ip.is_some_and(|ip| {
                        cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
                    }),
                    PolicyPeer::Pods {
                        namespace_selector,
                        pod_selector,
                    } => {
                        let ns_ok = match namespace_selector {
                            None => {
                                index.policies[rule.policy as usize].key.namespace == "kube-system"
                            }
                            Some(s) => s.matches(&self.namespace_labels),
                        };
                        ns_ok
                            && pod_selector
                                .as_ref()
                                .is_none_or(|s| s.matches(&self.pod_labels))
                    }
                });
            ports_ok && peer_ok
        })
    }
}
