//! Verdicts with reasons: which policy, rule and peer allowed a connection, or why none did.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use svcnet_model::selector::format_labels;
use svcnet_model::types::{ObjectKey, PolicyPeer, PolicyPort, PortRef, Protocol};

use crate::index::{Endpoint, PolicyIndex};

/// A direction of traffic, as `policyTypes` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Direction {
    /// Traffic into the pod.
    Ingress,
    /// Traffic out of the pod.
    Egress,
}

impl Direction {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }

    /// The field of the policy spec (`ingress`, `egress`).
    pub fn field(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The peers field of a rule (`from`, `to`).
    pub fn peers_field(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

/// What allowed a connection in one direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allow {
    /// The policy.
    pub policy: ObjectKey,
    /// The rule's position in the policy's `ingress` or `egress` list.
    pub rule: usize,
    /// The peer's position in the rule's `from`/`to`; `None` when the rule has no peers.
    pub peer: Option<usize>,
    /// The port's position in the rule's `ports`; `None` when the rule has no ports.
    pub port: Option<usize>,
    /// The rule, peer and port in words.
    pub reason: String,
}

/// Why a direction was denied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deny {
    /// The policies that isolate the pod in this direction.
    pub isolated_by: Vec<ObjectKey>,
    /// The rule that came closest to allowing the connection, and what it missed.
    pub nearest_miss: String,
}

/// The answer for one direction (egress of the source, ingress of the destination).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DirectionVerdict {
    /// This side is not a pod (an external address): no NetworkPolicy applies to it.
    NotAPod,
    /// One end is a node or host address (or a host-network pod): always allowed.
    NodeTraffic,
    /// A pod talking to itself: always allowed.
    SelfTraffic,
    /// No policy selects the pod for this direction.
    NotIsolated,
    /// Allowed by a rule.
    Allowed(Allow),
    /// The pod is isolated and no rule allows the connection.
    Denied(Deny),
}

impl DirectionVerdict {
    /// True unless denied.
    pub fn allows(&self) -> bool {
        !matches!(self, DirectionVerdict::Denied(_))
    }
}

impl fmt::Display for DirectionVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectionVerdict::NotAPod => f.write_str("not a pod: no NetworkPolicy applies"),
            DirectionVerdict::NodeTraffic => f.write_str(
                "node or host traffic: always allowed (as Kubernetes treats traffic from a pod's node)",
            ),
            DirectionVerdict::SelfTraffic => f.write_str("a pod to itself: always allowed"),
            DirectionVerdict::NotIsolated => {
                f.write_str("not isolated (no NetworkPolicy selects the pod for this direction)")
            }
            DirectionVerdict::Allowed(a) => write!(f, "allowed by {}", a.reason),
            DirectionVerdict::Denied(d) => write!(
                f,
                "DENIED: isolated by {}; nearest miss: {}",
                d.isolated_by
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                d.nearest_miss
            ),
        }
    }
}

/// May a connection happen, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Both directions allow it.
    pub allowed: bool,
    /// Egress of the source.
    pub egress: DirectionVerdict,
    /// Ingress of the destination.
    pub ingress: DirectionVerdict,
}

/// One end, resolved: a pod (index) and/or an address, or node traffic.
#[derive(Clone, Copy)]
enum Side {
    Pod(usize, Option<IpAddr>),
    Node,
    External(IpAddr),
}

impl Side {
    fn pod(self) -> Option<usize> {
        match self {
            Side::Pod(i, _) => Some(i),
            _ => None,
        }
    }
    fn addr(self) -> Option<IpAddr> {
        match self {
            Side::Pod(_, a) => a,
            Side::External(a) => Some(a),
            Side::Node => None,
        }
    }
}

/// A candidate for the nearest miss.
struct Miss {
    score: u8,
    text: String,
}

impl PolicyIndex {
    fn side(&self, e: Endpoint) -> Side {
        match e {
            Endpoint::Pod(id) => match self.pods.get(id.index()) {
                Some(p) if !p.host_network => Side::Pod(id.index(), p.primary_ip()),
                // A host-network pod is its node; an id of another index is not a pod here.
                _ => Side::Node,
            },
            Endpoint::Node(_) => Side::Node,
            Endpoint::External(ip) => Side::External(ip),
        }
    }

    /// May a connection from `src` to `dst` on `port`/`protocol` happen, and why. Gives the
    /// same answer as [`PolicyIndex::allows`] for the endpoints of two addresses; a pod given
    /// by identity is addressed by its primary IP for `ipBlock`.
    pub fn verdict(&self, src: Endpoint, dst: Endpoint, port: u16, protocol: Protocol) -> Verdict {
        let s = self.side(src);
        let d = self.side(dst);
        let (egress, ingress) = match (s, d) {
            (Side::Node, _) | (_, Side::Node) => {
                (DirectionVerdict::NodeTraffic, DirectionVerdict::NodeTraffic)
            }
            (Side::Pod(a, _), Side::Pod(b, _)) if a == b => {
                (DirectionVerdict::SelfTraffic, DirectionVerdict::SelfTraffic)
            }
            _ => (
                match s.pod() {
                    Some(a) => self.explain_direction(Direction::Egress, a, d, port, protocol),
                    None => DirectionVerdict::NotAPod,
                },
                match d.pod() {
                    Some(b) => self.explain_direction(Direction::Ingress, b, s, port, protocol),
                    None => DirectionVerdict::NotAPod,
                },
            ),
        };
        Verdict {
            allowed: egress.allows() && ingress.allows(),
            egress,
            ingress,
        }
    }

    fn explain_direction(
        &self,
        dir: Direction,
        subject: usize,
        other: Side,
        port: u16,
        protocol: Protocol,
    ) -> DirectionVerdict {
        let p = &self.pods[subject];
        if p.isolating(dir).is_empty() {
            return DirectionVerdict::NotIsolated;
        }
        let dst_pod = match dir {
            Direction::Ingress => Some(subject),
            Direction::Egress => other.pod(),
        };
        let mut best: Option<Miss> = None;
        let mut consider = |m: Miss| {
            if best.as_ref().is_none_or(|b| m.score > b.score) {
                best = Some(m);
            }
        };
        for &r in p.rules(dir) {
            let rule = &self.rules[r as usize];
            let policy = &self.policies[rule.policy as usize];
            let source = &policy.rules(dir)[rule.index as usize];
            let port_hit = self.port_index(rule, dst_pod, port, protocol);
            let at = format!("{} {}[{}]", policy.key, dir.field(), rule.index);
            let port_text = |i: Option<usize>| match i {
                None => "any port".to_string(),
                Some(i) => format!("port {}", describe_port(&source.ports[i])),
            };
            if rule.all_peers {
                match port_hit {
                    Some(pi) => {
                        return DirectionVerdict::Allowed(Allow {
                            policy: policy.key.clone(),
                            rule: rule.index as usize,
                            peer: None,
                            port: pi,
                            reason: format!(
                                "{at} (no `{}`: every peer), {}",
                                dir.peers_field(),
                                port_text(pi)
                            ),
                        });
                    }
                    None => consider(Miss {
                        score: 13,
                        text: format!(
                            "{at} admits every peer, but {}",
                            self.port_miss(&source.ports, dst_pod, port, protocol)
                        ),
                    }),
                }
                continue;
            }
            for (j, peer) in source.peers.iter().enumerate() {
                let (score, text) = self.peer_match(peer, &policy.key.namespace, other);
                let at_peer = format!("{at} {}[{j}]", dir.peers_field());
                match (score, port_hit) {
                    (4, Some(pi)) => {
                        return DirectionVerdict::Allowed(Allow {
                            policy: policy.key.clone(),
                            rule: rule.index as usize,
                            peer: Some(j),
                            port: pi,
                            reason: format!("{at_peer} ({text}), {}", port_text(pi)),
                        });
                    }
                    (4, None) => consider(Miss {
                        score: 13,
                        text: format!(
                            "{at_peer} matches ({text}), but {}",
                            self.port_miss(&source.ports, dst_pod, port, protocol)
                        ),
                    }),
                    (s, Some(_)) => consider(Miss {
                        score: 10 + s,
                        text: format!("{at_peer}: {text}"),
                    }),
                    (s, None) => consider(Miss {
                        score: s,
                        text: format!(
                            "{at_peer}: {text}; and {}",
                            self.port_miss(&source.ports, dst_pod, port, protocol)
                        ),
                    }),
                }
            }
        }
        let isolated_by: Vec<ObjectKey> = p
            .isolating(dir)
            .iter()
            .map(|&pi| self.policies[pi as usize].key.clone())
            .collect();
        let nearest_miss = match best {
            Some(m) => m.text,
            None => format!(
                "no {} rule: {} allow{} no {} traffic",
                dir.field(),
                isolated_by
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if isolated_by.len() == 1 { "s" } else { "" },
                dir.field(),
            ),
        };
        DirectionVerdict::Denied(Deny {
            isolated_by,
            nearest_miss,
        })
    }

    /// How well a peer matches the other end, with the reason in words: 4 = match; 3 = the
    /// namespace matched but not the pod selector, or the address is in an `except`; 2 = the
    /// pod selector matched but not the namespace; 1 = no.
    fn peer_match(&self, peer: &PolicyPeer, policy_ns: &str, other: Side) -> (u8, String) {
        match peer {
            PolicyPeer::IpBlock { cidr, except } => {
                let block = match except.is_empty() {
                    true => format!("ipBlock {cidr}"),
                    false => format!(
                        "ipBlock {cidr} except {}",
                        except
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                };
                let Some(addr) = other.addr() else {
                    return (1, format!("{block}: the peer has no address"));
                };
                if let Some(e) = except.iter().find(|e| e.contains(&addr)) {
                    (3, format!("{block}: {addr} is excluded by except {e}"))
                } else if cidr.contains(&addr) {
                    (4, format!("{block} contains {addr}"))
                } else {
                    (1, format!("{block} does not contain {addr}"))
                }
            }
            PolicyPeer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                let Some(i) = other.pod() else {
                    let addr = other
                        .addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "the peer".to_string());
                    return (
                        1,
                        format!("the peer selects pods; {addr} is not a pod address"),
                    );
                };
                let p = &self.pods[i];
                let ns = &self.namespaces[p.ns as usize];
                let pod_ok = pod_selector.as_ref().is_none_or(|s| s.matches(&p.labels));
                let ns_miss = if pod_ok { 2 } else { 1 };
                let pods_text = match pod_selector {
                    None => "every pod".to_string(),
                    Some(s) if s.is_empty() => "podSelector {}".to_string(),
                    Some(s) => format!("podSelector {s}"),
                };
                match namespace_selector {
                    None if ns.name != policy_ns => {
                        return (
                            ns_miss,
                            format!(
                                "peer {pods_text} selects pods of namespace {policy_ns} only (no namespaceSelector); {} is in namespace {}",
                                p.key, ns.name
                            ),
                        );
                    }
                    Some(sel) => {
                        if let Some(req) = sel.first_mismatch(&ns.labels) {
                            return (
                                ns_miss,
                                format!(
                                    "peer namespaceSelector {} does not match namespace {} ({req} fails on labels {})",
                                    if sel.is_empty() {
                                        "{}".to_string()
                                    } else {
                                        sel.to_string()
                                    },
                                    ns.name,
                                    format_labels(&ns.labels)
                                ),
                            );
                        }
                    }
                    None => {}
                }
                let ns_text = match namespace_selector {
                    None => format!("namespace {policy_ns}"),
                    Some(s) if s.is_empty() => "namespaceSelector {}".to_string(),
                    Some(s) => format!("namespaceSelector {s}"),
                };
                match pod_selector
                    .as_ref()
                    .and_then(|s| s.first_mismatch(&p.labels))
                {
                    Some(req) => (
                        3,
                        format!(
                            "peer {pods_text} does not match labels {} of {} ({req} fails)",
                            format_labels(&p.labels),
                            p.key
                        ),
                    ),
                    None => (4, format!("{pods_text} in {ns_text} matches {}", p.key)),
                }
            }
        }
    }

    /// Why no port entry admits `port`/`protocol`.
    fn port_miss(
        &self,
        ports: &[PolicyPort],
        dst_pod: Option<usize>,
        port: u16,
        protocol: Protocol,
    ) -> String {
        let list: Vec<String> = ports
            .iter()
            .map(|p| match (&p.port, dst_pod) {
                (Some(PortRef::Name(name)), Some(d)) => {
                    let pod = &self.pods[d];
                    let resolved = self
                        .port_names
                        .get(name)
                        .and_then(|id| {
                            pod.ports
                                .iter()
                                .find(|np| np.name == *id && np.protocol == p.protocol)
                        })
                        .map(|np| format!("{} on {}", np.port, pod.key))
                        .unwrap_or_else(|| format!("not declared by {}", pod.key));
                    format!("{} ({resolved})", describe_port(p))
                }
                (Some(PortRef::Name(_)), None) => {
                    format!("{} (a name resolves only on a pod)", describe_port(p))
                }
                _ => describe_port(p),
            })
            .collect();
        format!(
            "port {port}/{protocol} is not among the rule's ports [{}]",
            list.join(", ")
        )
    }
}

/// A rule port as written: `80/TCP`, `8000-8100/TCP`, `http/TCP`, `any/UDP`.
fn describe_port(p: &PolicyPort) -> String {
    match (&p.port, p.end_port) {
        (None, _) => format!("any/{}", p.protocol),
        (Some(PortRef::Number(lo)), Some(hi)) => format!("{lo}-{hi}/{}", p.protocol),
        (Some(port), _) => format!("{port}/{}", p.protocol),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", if self.allowed { "ALLOWED" } else { "DENIED" })?;
        writeln!(f, "  egress:  {}", self.egress)?;
        write!(f, "  ingress: {}", self.ingress)
    }
}
