//! NetworkPolicies: peers, ports, and `policyTypes` defaulting.

use std::sync::Arc;

use k8s_openapi::api::networking::v1 as net;

use super::Ctx;
use crate::types::*;

fn peer(cx: &mut Ctx<'_>, field: &str, p: &net::NetworkPolicyPeer) -> Option<PolicyPeer> {
    let n = [
        p.pod_selector.is_some(),
        p.namespace_selector.is_some(),
        p.ip_block.is_some(),
    ];
    if n == [false, false, false] {
        cx.error(
            "empty-peer",
            field,
            "Required value: must specify a peer (an empty peer `{}` is invalid; to allow every pod of every namespace write `namespaceSelector: {}`)",
        );
        return None;
    }
    if let Some(block) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            cx.error(
                "invalid-peer",
                field,
                "Forbidden: may not specify more than 1 peer type: ipBlock cannot be combined with podSelector or namespaceSelector",
            );
            return None;
        }
        let cidr = cx.cidr(&format!("{field}.ipBlock.cidr"), &block.cidr)?;
        let mut except = Vec::new();
        for (i, e) in block.except.iter().flatten().enumerate() {
            let ef = format!("{field}.ipBlock.except[{i}]");
            let Some(net) = cx.cidr(&ef, e) else { continue };
            if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
                cx.error(
                    "invalid-cidr",
                    &ef,
                    format!("Invalid value: {e:?}: must be a strict subset of `cidr` ({cidr})"),
                );
                continue;
            }
            except.push(net);
        }
        return Some(PolicyPeer::IpBlock { cidr, except });
    }
    let namespace_selector = match &p.namespace_selector {
        Some(s) => Some(cx.selector(&format!("{field}.namespaceSelector"), s)?),
        None => None,
    };
    let pod_selector = match &p.pod_selector {
        Some(s) => Some(cx.selector(&format!("{field}.podSelector"), s)?),
        None => None,
    };
    Some(PolicyPeer::Pods {
        namespace_selector,
        pod_selector,
    })
}

fn ports(cx: &mut Ctx<'_>, field: &str, ports: &[net::NetworkPolicyPort]) -> Vec<PolicyPort> {
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let pf = format!("{field}[{i}]");
        let protocol = cx.protocol(&format!("{pf}.protocol"), p.protocol.as_deref());
        let port = match &p.port {
            Some(port) => cx.port_ref(&format!("{pf}.port"), port),
            None => None,
        };
        let end_port = match p.end_port {
            None => None,
            Some(end) => match &port {
                Some(PortRef::Number(start)) => match u16::try_from(end) {
                    Ok(e) if e >= *start => Some(e),
                    _ => {
                        cx.error(
                            "invalid-port",
                            &format!("{pf}.endPort"),
                            format!("Invalid value: {end}: must be greater than or equal to `port` ({start}) and at most 65535"),
                        );
                        None
                    }
                },
                Some(PortRef::Name(_)) => {
                    cx.error(
                        "invalid-port",
                        &format!("{pf}.endPort"),
                        "Forbidden: may not be specified when `port` is non-numeric",
                    );
                    None
                }
                None => {
                    cx.error(
                        "invalid-port",
                        &format!("{pf}.endPort"),
                        "Required value: may not be specified when `port` is not specified",
                    );
                    None
                }
            },
        };
        out.push(PolicyPort {
            protocol,
            port,
            end_port,
        });
    }
    out
}

fn rule(
    cx: &mut Ctx<'_>,
    field: &str,
    peers_field: &str,
    peers_in: Option<&Vec<net::NetworkPolicyPeer>>,
    ports_in: Option<&Vec<net::NetworkPolicyPort>>,
) -> PolicyRule {
    let peers = peers_in
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, p)| peer(cx, &format!("{field}.{peers_field}[{i}]"), p))
        .collect();
    let ports = ports(
        cx,
        &format!("{field}.ports"),
        ports_in.map(Vec::as_slice).unwrap_or(&[]),
    );
    PolicyRule { peers, ports }
}

/// Validates a NetworkPolicy and defaults `policyTypes` as the API server does: Ingress,
/// plus Egress when the policy has egress rules.
pub(super) fn network_policy(
    cx: &mut Ctx<'_>,
    mut np: net::NetworkPolicy,
) -> Option<NetworkPolicy> {
    let meta = cx.meta(&mut np.metadata);
    let spec = np.spec.clone().unwrap_or_default();
    let pod_selector = match &spec.pod_selector {
        Some(s) => cx.selector("spec.podSelector", s).unwrap_or_default(),
        None => Default::default(),
    };
    let ingress: Vec<PolicyRule> = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            rule(
                cx,
                &format!("spec.ingress[{i}]"),
                "from",
                r.from.as_ref(),
                r.ports.as_ref(),
            )
        })
        .collect();
    let egress: Vec<PolicyRule> = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            rule(
                cx,
                &format!("spec.egress[{i}]"),
                "to",
                r.to.as_ref(),
                r.ports.as_ref(),
            )
        })
        .collect();
    let policy_types = match &spec.policy_types {
        None => PolicyTypes {
            ingress: true,
            egress: !egress.is_empty(),
        },
        Some(types) => {
            let mut t = PolicyTypes {
                ingress: false,
                egress: false,
            };
            for (i, s) in types.iter().enumerate() {
                let f = format!("spec.policyTypes[{i}]");
                let slot = match s.as_str() {
                    "Ingress" => &mut t.ingress,
                    "Egress" => &mut t.egress,
                    other => {
                        cx.error(
                            "invalid-value",
                            &f,
                            format!("Unsupported value: {other:?}: supported values: \"Egress\", \"Ingress\""),
                        );
                        continue;
                    }
                };
                if *slot {
                    cx.error("invalid-value", &f, format!("Duplicate value: {s:?}"));
                }
                *slot = true;
            }
            if types.is_empty() {
                // An empty list is defaulted like a missing one.
                t = PolicyTypes {
                    ingress: true,
                    egress: !egress.is_empty(),
                };
            }
            if !t.egress && !egress.is_empty() {
                cx.warn(
                    "ignored-rules",
                    "spec.egress",
                    "policyTypes does not include Egress, so these egress rules have no effect",
                );
            }
            if !t.ingress && !ingress.is_empty() {
                cx.warn(
                    "ignored-rules",
                    "spec.ingress",
                    "policyTypes does not include Ingress, so these ingress rules have no effect",
                );
            }
            t
        }
    };
    cx.ok().then(|| NetworkPolicy {
        meta,
        pod_selector,
        policy_types,
        ingress,
        egress,
        raw: Arc::new(np),
    })
}
