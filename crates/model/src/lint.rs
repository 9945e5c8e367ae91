//! `svcnet check`: findings about a valid cluster that probably does not do what its
//! author meant. The API server accepts all of these; traffic then fails at run time.

use std::collections::BTreeSet;

use crate::cluster::Cluster;
use crate::diag::{Diagnostic, Diagnostics};
use crate::kind::Kind;
use crate::selector::{LabelSelector, Requirement, format_labels};
use crate::types::*;

/// Runs every lint over a cluster.
pub fn lint(c: &Cluster) -> Diagnostics {
    let mut d = Diagnostics::default();
    services(c, &mut d);
    ingresses(c, &mut d);
    policies(c, &mut d);
    slices(c, &mut d);
    stateful_sets(c, &mut d);
    d.sort();
    d
}

fn services(c: &Cluster, d: &mut Diagnostics) {
    let index = crate::cluster::PodIndex::new(c);
    for svc in c.services.values() {
        let Some(selector) = &svc.selector else {
            continue;
        };
        if svc.type_ == ServiceType::ExternalName {
            continue;
        }
        let sel = LabelSelector::from_map(selector);
        let pods: Vec<&Pod> = index.selected(&svc.meta.namespace, selector).collect();
        let obj = svc.meta.object_ref(Kind::Service);
        if pods.is_empty() {
            let hint = closest_miss(c.pods_in(&svc.meta.namespace), &sel)
                .map(|(pod, req)| format!(" (closest: pod {pod} fails {req})"))
                .unwrap_or_default();
            d.push(
                Diagnostic::warning(
                    "selector-matches-no-pod",
                    svc.meta.source_of("spec.selector"),
                    format!(
                        "selector {sel} matches no pod in namespace {}; the Service has no endpoints{hint}",
                        svc.meta.namespace
                    ),
                )
                .on(obj)
                .field("spec.selector"),
            );
            continue;
        }
        for (i, port) in svc.ports.iter().enumerate() {
            let field = format!("spec.ports[{i}].targetPort");
            let resolved: Vec<&&Pod> = pods
                .iter()
                .filter(|p| match &port.target_port {
                    PortRef::Name(_) => p.resolve_port(&port.target_port, port.protocol).is_some(),
                    PortRef::Number(n) => p.declares_port(*n, port.protocol),
                })
                .collect();
            if resolved.len() == pods.len() {
                continue;
            }
            let missing: Vec<String> = pods
                .iter()
                .filter(|p| !resolved.iter().any(|r| r.meta.name == p.meta.name))
                .take(3)
                .map(|p| p.meta.name.clone())
                .collect();
            let more = pods.len() - resolved.len();
            let who = if more > missing.len() {
                format!("{} and {} more", missing.join(", "), more - missing.len())
            } else {
                missing.join(", ")
            };
            let diag = match (&port.target_port, resolved.is_empty()) {
                (PortRef::Name(name), true) => Diagnostic::error(
                    "target-port-undeclared",
                    svc.meta.source_of(&field),
                    format!(
                        "no selected pod declares a {} container port named {name:?}; the port has no endpoints",
                        port.protocol
                    ),
                ),
                (PortRef::Name(name), false) => Diagnostic::warning(
                    "target-port-undeclared",
                    svc.meta.source_of(&field),
                    format!(
                        "{who} declare(s) no {} container port named {name:?}; those pods get no traffic on this port",
                        port.protocol
                    ),
                ),
                (PortRef::Number(n), _) => Diagnostic::warning(
                    "target-port-undeclared",
                    svc.meta.source_of(&field),
                    format!(
                        "{who} declare(s) no containerPort {n}/{}; Kubernetes forwards anyway, but svcnet's pod agents listen only on declared ports",
                        port.protocol
                    ),
                ),
            };
            d.push(diag.on(svc.meta.object_ref(Kind::Service)).field(field));
        }
    }
}

/// The pod that misses the selector by the fewest requirements, and the first it fails.
fn closest_miss<'a>(
    pods: impl Iterator<Item = &'a Pod>,
    sel: &LabelSelector,
) -> Option<(String, String)> {
    pods.filter_map(|p| {
        let failed = sel
            .requirements
            .iter()
            .filter(|r| !r.matches(&p.meta.labels))
            .count();
        let first = sel.first_mismatch(&p.meta.labels)?;
        (failed < sel.requirements.len()).then(|| {
            (
                failed,
                p.meta.name.clone(),
                format!("{first} (labels {})", format_labels(&p.meta.labels)),
            )
        })
    })
    .min()
    .map(|(_, pod, req)| (pod, req))
}

fn ingresses(c: &Cluster, d: &mut Diagnostics) {
    for ing in c.ingresses.values() {
        let mut backends: Vec<(String, &IngressBackend)> = Vec::new();
        if let Some(b) = &ing.default_backend {
            backends.push(("spec.defaultBackend".into(), b));
        }
        for (i, r) in ing.rules.iter().enumerate() {
            for (j, p) in r.paths.iter().enumerate() {
                backends.push((
                    format!("spec.rules[{i}].http.paths[{j}].backend"),
                    &p.backend,
                ));
            }
        }
        for (field, b) in backends {
            let IngressBackend::Service { name, port } = b else {
                continue;
            };
            let key = ObjectKey::new(ing.meta.namespace.clone(), name.clone());
            let message = match c.services.get(&key) {
                None => Some(format!(
                    "Service {key} does not exist; requests routed here get 503"
                )),
                Some(svc) if svc.type_ == ServiceType::ExternalName => None,
                Some(svc) => {
                    let found = match port {
                        BackendPort::Number(n) => svc.ports.iter().any(|p| p.port == *n),
                        BackendPort::Name(n) => svc
                            .ports
                            .iter()
                            .any(|p| p.name.as_deref() == Some(n.as_str())),
                    };
                    (!found).then(|| {
                        let have: Vec<String> = svc
                            .ports
                            .iter()
                            .map(|p| match &p.name {
                                Some(n) => format!("{} ({n})", p.port),
                                None => p.port.to_string(),
                            })
                            .collect();
                        format!(
                            "Service {key} has no port {port} (it has {}); requests routed here get 503",
                            if have.is_empty() { "none".to_string() } else { have.join(", ") }
                        )
                    })
                }
            };
            if let Some(message) = message {
                d.push(
                    Diagnostic::error(
                        "ingress-backend-missing",
                        ing.meta.source_of(&format!("{field}.service")),
                        message,
                    )
                    .on(ing.meta.object_ref(Kind::Ingress))
                    .field(format!("{field}.service")),
                );
            }
        }
        for (i, t) in ing.tls.iter().enumerate() {
            let Some(secret) = &t.secret_name else {
                continue;
            };
            let issuer = ing
                .meta
                .annotations
                .contains_key("cert-manager.io/cluster-issuer")
                || ing.meta.annotations.contains_key("cert-manager.io/issuer");
            let key = ObjectKey::new(ing.meta.namespace.clone(), secret.clone());
            if !issuer && !c.secrets.contains_key(&key) {
                let field = format!("spec.tls[{i}].secretName");
                d.push(
                    Diagnostic::warning(
                        "tls-secret-missing",
                        ing.meta.source_of(&field),
                        format!("Secret {key} does not exist; svcnet serves a certificate from its local CA instead"),
                    )
                    .on(ing.meta.object_ref(Kind::Ingress))
                    .field(field),
                );
            }
        }
    }
}

fn policies(c: &Cluster, d: &mut Diagnostics) {
    let namespace_keys: BTreeSet<&str> = c
        .namespaces
        .values()
        .flat_map(|n| n.meta.labels.keys().map(String::as_str))
        .collect();
    for np in c.network_policies.values() {
        let obj = || np.meta.object_ref(Kind::NetworkPolicy);
        if !c
            .pods_in(&np.meta.namespace)
            .any(|p| np.pod_selector.matches(&p.meta.labels))
        {
            d.push(
                Diagnostic::warning(
                    "policy-selects-no-pod",
                    np.meta.source_of("spec.podSelector"),
                    format!(
                        "podSelector {} selects no pod in namespace {}; the policy has no effect",
                        np.pod_selector, np.meta.namespace
                    ),
                )
                .on(obj())
                .field("spec.podSelector"),
            );
        }
        let rules = np
            .ingress
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("spec.ingress[{i}]"), "from", r))
            .chain(
                np.egress
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("spec.egress[{i}]"), "to", r)),
            );
        for (rf, peers_name, rule) in rules {
            for (j, peer) in rule.peers.iter().enumerate() {
                let PolicyPeer::Pods {
                    namespace_selector,
                    pod_selector,
                } = peer
                else {
                    continue;
                };
                let negative = |s: &LabelSelector| {
                    s.requirements
                        .iter()
                        .any(|r| matches!(r, Requirement::NotIn(..) | Requirement::DoesNotExist(_)))
                };
                let is_negative = namespace_selector.as_ref().is_some_and(negative)
                    || pod_selector.as_ref().is_some_and(negative);
                if is_negative && rule.peers.len() > 1 {
                    let pods = match pod_selector {
                        Some(s) if !s.is_empty() => format!("pods matching {s}"),
                        _ => "every pod".to_string(),
                    };
                    let namespaces = match namespace_selector {
                        None => format!("namespace {}", np.meta.namespace),
                        Some(s) if s.is_empty() => "every namespace".to_string(),
                        Some(s) => format!("every namespace matching {s}"),
                    };
                    d.push(
                        Diagnostic::warning(
                            "notin-denies-nothing",
                            np.meta.source_of(&format!("{rf}.{peers_name}[{j}]")),
                            format!(
                                "peers are OR-ed: this peer admits {pods} in {namespaces} (objects without the label included), so it widens the rule and denies nothing; NetworkPolicies cannot deny: to exclude something, put the condition in the same peer as the allowed set"
                            ),
                        )
                        .on(obj())
                        .field(format!("{rf}.{peers_name}[{j}]")),
                    );
                }
                let Some(ns_sel) = namespace_selector else {
                    continue;
                };
                let field = format!("{rf}.{peers_name}[{j}].namespaceSelector");
                let missing: Vec<&str> = ns_sel
                    .requirements
                    .iter()
                    .filter(|r| matches!(r, Requirement::In(..) | Requirement::Exists(_)))
                    .map(Requirement::key)
                    .filter(|k| !namespace_keys.contains(k))
                    .collect();
                if let Some(key) = missing.first() {
                    let hint = if *key == "name" {
                        " (Kubernetes never sets `name` by itself; it sets kubernetes.io/metadata.name: <namespace>)"
                    } else {
                        ""
                    };
                    d.push(
                        Diagnostic::warning(
                            "namespace-label-missing",
                            np.meta.source_of(&field),
                            format!("no namespace has the label {key:?}, so {ns_sel} selects no namespace{hint}"),
                        )
                        .on(obj())
                        .field(field.clone()),
                    );
                } else if !c
                    .namespaces
                    .values()
                    .any(|n| ns_sel.matches(&n.meta.labels))
                {
                    d.push(
                        Diagnostic::warning(
                            "namespace-selector-matches-nothing",
                            np.meta.source_of(&field),
                            format!("{ns_sel} matches no namespace"),
                        )
                        .on(obj())
                        .field(field.clone()),
                    );
                }
            }
        }
    }
}

fn slices(c: &Cluster, d: &mut Diagnostics) {
    for s in c.endpoint_slices.values() {
        if s.derived || s.service_name.is_empty() {
            continue;
        }
        let key = ObjectKey::new(s.meta.namespace.clone(), s.service_name.clone());
        if !c.services.contains_key(&key) {
            d.push(
                Diagnostic::warning(
                    "orphan-endpointslice",
                    s.meta.source_of("metadata.labels"),
                    format!("Service {key} does not exist; this EndpointSlice is not used"),
                )
                .on(s.meta.object_ref(Kind::EndpointSlice))
                .field("metadata.labels[kubernetes.io/service-name]"),
            );
        }
    }
}

fn stateful_sets(c: &Cluster, d: &mut Diagnostics) {
    for ((kind, key), w) in &c.workloads {
        if *kind != Kind::StatefulSet {
            continue;
        }
        let Some(name) = &w.service_name else {
            continue;
        };
        let svc_key = ObjectKey::new(key.namespace.clone(), name.clone());
        let message = match c.services.get(&svc_key) {
            None => format!("Service {svc_key} does not exist; the pods get no per-pod DNS names"),
            Some(s) if !s.is_headless() => format!(
                "Service {svc_key} is not headless (clusterIP: None); the pods get no per-pod DNS names"
            ),
            Some(_) => continue,
        };
        d.push(
            Diagnostic::warning(
                "statefulset-service",
                w.meta.source_of("spec.serviceName"),
                message,
            )
            .on(w.meta.object_ref(Kind::StatefulSet))
            .field("spec.serviceName"),
        );
    }
}
