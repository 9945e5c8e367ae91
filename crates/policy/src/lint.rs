//! Findings about NetworkPolicies that are valid but probably do not do what their author
//! meant, for `svcnet check`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;
use svcnet_model::Cluster;
use svcnet_model::selector::{LabelSelector, Labels, Requirement};
use svcnet_model::types::{NetworkPolicy, ObjectKey, PolicyPeer, PortRef, Protocol};

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
    /// A stable code: `policy-selects-no-pod`, `namespace-label-missing`,
    /// `namespace-selector-matches-nothing`, `notin-denies-nothing`, `egress-without-dns`,
    /// `named-port-undeclared`.
    pub code: &'static str,
    /// What is wrong and what to do, for a person.
    pub message: String,
}

/// Runs every NetworkPolicy lint over a cluster. Findings are in policy order, then field
/// order.
pub fn lints(cluster: &Cluster) -> Vec<PolicyLint> {
    let index = PolicyIndex::compile(cluster);
    let namespace_keys: BTreeSet<&str> = cluster
        .namespaces
        .values()
        .flat_map(|n| n.meta.labels.keys().map(String::as_str))
        .collect();
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
        // Pods the selector matches, with host-network ones, for the message.
        let matching_host_network: Vec<String> = cluster
            .pods_in(&np.meta.namespace)
            .filter(|p| p.host_network && np.pod_selector.matches(&p.meta.labels))
            .map(|p| p.meta.key())
            .collect();
        if selected.is_empty() {
            let message = if matching_host_network.is_empty() {
                format!(
                    "podSelector {} selects no pod in namespace {}; the policy has no effect (check the labels with `svcnet get pods -n {} --show-labels`)",
                    show(&np.pod_selector),
                    np.meta.namespace,
                    np.meta.namespace
                )
            } else {
                format!(
                    "podSelector {} selects only host-network pods ({}), and NetworkPolicy does not apply to host-network pods; the policy has no effect",
                    show(&np.pod_selector),
                    list(&matching_host_network)
                )
            };
            push(
                "spec.podSelector".to_string(),
                "policy-selects-no-pod",
                message,
            );
        }

        for (dir, rules) in [
            (Direction::Ingress, &np.ingress),
            (Direction::Egress, &np.egress),
        ] {
            for (ri, rule) in rules.iter().enumerate() {
                let rf = format!("spec.{}[{ri}]", dir.field());
                for (j, peer) in rule.peers.iter().enumerate() {
                    let PolicyPeer::Pods {
                        namespace_selector,
                        pod_selector,
                    } = peer
                    else {
                        continue;
                    };
                    let pf = format!("{rf}.{}[{j}]", dir.peers_field());
                    if rule.peers.len() > 1
                        && (namespace_selector.as_ref().is_some_and(negative)
                            || pod_selector.as_ref().is_some_and(negative))
                    {
                        push(
                            pf.clone(),
                            "notin-denies-nothing",
                            notin_message(cluster, np, namespace_selector, pod_selector),
                        );
                    }
                    let Some(ns_sel) = namespace_selector else {
                        continue;
                    };
                    let field = format!("{pf}.namespaceSelector");
                    let missing = ns_sel
                        .requirements
                        .iter()
                        .filter(|r| matches!(r, Requirement::In(..) | Requirement::Exists(_)))
                        .map(Requirement::key)
                        .find(|k| !namespace_keys.contains(k));
                    if let Some(k) = missing {
                        let hint = if k == "name" {
                            "; Kubernetes never sets `name` by itself, it sets kubernetes.io/metadata.name: <namespace> on every namespace: select on that label, or add the label to the namespaces"
                        } else {
                            "; add the label to the namespaces meant, or select on kubernetes.io/metadata.name"
                        };
                        push(
                            field,
                            "namespace-label-missing",
                            format!(
                                "no namespace has the label {k:?}, so namespaceSelector {ns_sel} selects no namespace and this peer admits nothing{hint}"
                            ),
                        );
                    } else if !cluster
                        .namespaces
                        .values()
                        .any(|n| ns_sel.matches(&n.meta.labels))
                    {
                        push(
                            field,
                            "namespace-selector-matches-nothing",
                            format!(
                                "namespaceSelector {ns_sel} matches no namespace, so this peer admits nothing (namespace labels: {})",
                                cluster
                                    .namespaces
                                    .values()
                                    .map(|n| format!(
                                        "{}: {}",
                                        n.meta.name,
                                        svcnet_model::selector::format_labels(&n.meta.labels)
                                    ))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            ),
                        );
                    }
                }
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

/// True for selectors meant as exclusions (`NotIn`, `DoesNotExist`).
fn negative(s: &LabelSelector) -> bool {
    s.requirements
        .iter()
        .any(|r| matches!(r, Requirement::NotIn(..) | Requirement::DoesNotExist(_)))
}

fn notin_message(
    cluster: &Cluster,
    np: &NetworkPolicy,
    namespace_selector: &Option<LabelSelector>,
    pod_selector: &Option<LabelSelector>,
) -> String {
    let namespaces: Vec<String> = match namespace_selector {
        None => vec![np.meta.namespace.clone()],
        Some(s) => cluster
            .namespaces
            .values()
            .filter(|n| s.matches(&n.meta.labels))
            .map(|n| n.meta.name.clone())
            .collect(),
    };
    let what = match (namespace_selector, pod_selector) {
        (Some(ns), Some(p)) => format!(
            "namespaceSelector {} with podSelector {}",
            show(ns),
            show(p)
        ),
        (Some(ns), None) => format!("namespaceSelector {}", show(ns)),
        (None, Some(p)) => format!("podSelector {}", show(p)),
        (None, None) => "this peer".to_string(),
    };
    let pods = match pod_selector {
        Some(p) if !p.is_empty() => format!("pods matching {}", show(p)),
        _ => "every pod".to_string(),
    };
    format!(
        "peers are OR-ed and NetworkPolicies cannot deny: {what} admits {pods} of {} (objects without the label included), so it denies nothing and widens the rule; to exclude, put the NotIn in the same peer as the allowed set (one peer = AND), or drop this peer",
        if namespaces.is_empty() {
            "no namespace".to_string()
        } else {
            format!(
                "namespace{} {}",
                if namespaces.len() == 1 { "" } else { "s" },
                list(&namespaces)
            )
        }
    )
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

fn show(s: &LabelSelector) -> String {
    if s.is_empty() {
        "{}".to_string()
    } else {
        s.to_string()
    }
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
            .map(|n| n.meta.labels.clone())
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
