//! Derivations, as Kubernetes' controllers would make them: namespaces, nodes, pods from
//! workloads, addresses, and EndpointSlices. Pure and deterministic: the same objects give
//! the same cluster whatever the order they were read in.

mod alloc;
mod endpoints;
mod workloads;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use crate::cluster::Cluster;
use crate::diag::{Diagnostic, Diagnostics, Source};
use crate::kind::Kind;
use crate::plan::AddressPlan;
use crate::types::*;
use crate::validate::Objects;

pub use alloc::{fnv1a, natural_cmp};
pub(crate) use endpoints::derive_all as derive_all_slices;
pub use endpoints::derive_for as derive_slices;
pub(crate) use workloads::derived_replica_set;
pub use workloads::stable_uid;

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Builds the cluster from validated objects.
pub(crate) fn derive(
    objects: Objects,
    plan: &AddressPlan,
    previous: Option<&Cluster>,
    diags: &mut Diagnostics,
) -> Cluster {
    let Objects {
        namespaces,
        nodes,
        pods,
        workloads,
        services,
        endpoint_slices,
        ingresses,
        ingress_classes,
        network_policies,
        secrets,
        config_maps,
        others,
    } = objects;
    let mut c = Cluster {
        plan: plan.clone(),
        ..Cluster::default()
    };

    // Objects without dependencies are keyed first.
    for i in ingress_classes {
        c.ingress_classes.insert(i.meta.name.clone(), i);
    }
    // The DefaultIngressClass admission plugin: an Ingress created without a class gets
    // the default class (the newest, when several are marked default).
    let default_class = c
        .ingress_classes
        .values()
        .filter(|ic| ic.is_default)
        .max_by(|a, b| {
            (a.meta.creation_timestamp, std::cmp::Reverse(&a.meta.name))
                .cmp(&(b.meta.creation_timestamp, std::cmp::Reverse(&b.meta.name)))
        })
        .map(|ic| ic.meta.name.clone());
    for mut i in ingresses {
        if i.class_name.is_none() {
            i.class_name = default_class.clone();
        }
        c.ingresses.insert(key(&i.meta), i);
    }
    for p in network_policies {
        c.network_policies.insert(key(&p.meta), p);
    }
    for s in secrets {
        c.secrets.insert(key(&s.meta), s);
    }
    for m in config_maps {
        c.config_maps.insert(key(&m.meta), m);
    }
    c.others = others;

    // Workloads make pods (written pods first, so derived names can be checked).
    let mut all_pods: BTreeMap<ObjectKey, Pod> = BTreeMap::new();
    for p in pods {
        all_pods.insert(key(&p.meta), p);
    }
    let referenced: Vec<(String, Source)> = workloads
        .iter()
        .filter_map(|w| Some((w.pod_spec.node_name.clone()?, w.meta.source.clone())))
        .collect();
    let nodes = alloc::nodes(nodes, &all_pods, plan, &referenced, diags);
    let (workload_map, derived_pods) =
        workloads::derive_workloads(workloads, &all_pods, &nodes, diags);
    // Derived pods join the written ones in key order, built in bulk: inserting 50,000
    // large values one at a time into a B-tree costs more than sorting their keys. A pod
    // whose name is taken (by a written pod, or by a derived pod before it in derivation
    // order) is reported and left out, as one insert after the other would.
    let keys: Vec<ObjectKey> = derived_pods.iter().map(|p| key(&p.meta)).collect();
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let mut slots: Vec<Option<Pod>> = derived_pods.into_iter().map(Some).collect();
    let mut fresh: Vec<(ObjectKey, Pod)> = Vec::with_capacity(keys.len());
    for i in order {
        let Some(p) = slots.get_mut(i).and_then(Option::take) else {
            continue;
        };
        let k = &keys[i];
        let existing = all_pods
            .get(k)
            .or_else(|| fresh.last().filter(|(fk, _)| fk == k).map(|(_, e)| e));
        if let Some(existing) = existing {
            diags.push(
                Diagnostic::error(
                    "name-collision",
                    existing.meta.source.clone(),
                    format!(
                        "Pod {k} is also the name of a pod its {} creates (from {})",
                        p.owner.as_ref().map_or("controller", |o| o.kind.as_str()),
                        p.meta.source
                    ),
                )
                .on(existing.meta.object_ref(Kind::Pod))
                .field("metadata.name"),
            );
            continue;
        }
        fresh.push((k.clone(), p));
    }
    // The emptied slots and the keys go before the tree is built: at 50,000 pods each is
    // tens of MB, and this is the peak of a load.
    drop(slots);
    drop(keys);
    let mut derived: BTreeMap<ObjectKey, Pod> = fresh.into_iter().collect();
    all_pods.append(&mut derived);
    c.workloads = workload_map;
    c.nodes = nodes;

    // Addresses.
    alloc::place_pods(&mut all_pods, &c.nodes, plan, previous, diags);
    c.pods = all_pods;
    let mut services: Vec<Service> = services;
    add_builtin_services(&mut services, plan);
    c.services = alloc::services(services, &c.nodes, plan, previous, diags);

    // EndpointSlices.
    c.endpoint_slices = endpoints::endpoint_slices(&c, endpoint_slices, diags);

    // Namespaces last: every object above may have created one.
    c.namespaces = namespaces_for(&c, namespaces, diags);
    c
}

/// `f` over every item, in order, on every core when there are at least `min` items per
/// core (threads cost more than small work), else on this thread. The result is the same
/// either way.
pub(crate) fn par_map<T, R, F>(items: &[T], min: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || items.len() < min.saturating_mul(2) {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn key(m: &Meta) -> ObjectKey {
    ObjectKey::new(m.namespace.clone(), m.name.clone())
}

/// Metadata for objects svcnet creates itself.
pub(crate) fn builtin_meta(namespace: &str, name: &str) -> Meta {
    Meta {
        name: name.to_string(),
        namespace: namespace.to_string(),
        labels: Arc::default(),
        annotations: Arc::default(),
        creation_timestamp: None,
        terminating: false,
        source: Source::builtin(),
        locator: None,
    }
}

/// `default/kubernetes` and `kube-system/kube-dns`, as a real cluster has them, unless the
/// manifests define them.
fn add_builtin_services(services: &mut Vec<Service>, plan: &AddressPlan) {
    let has = |services: &Vec<Service>, ns: &str, name: &str| {
        services
            .iter()
            .any(|s| s.meta.namespace == ns && s.meta.name == name)
    };
    let builtin = |ns: &str,
                   name: &str,
                   ip: Option<std::net::IpAddr>,
                   ports: Vec<ServicePort>,
                   labels: &[(&str, &str)]| {
        let mut meta = builtin_meta(ns, name);
        meta.labels = Arc::new(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let raw = core::Service {
            metadata: meta::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: Some((*meta.labels).clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Service {
            meta,
            type_: ServiceType::ClusterIP,
            selector: None,
            cluster_ips: ClusterIps::Ips(ip.into_iter().collect()),
            ip_families: Vec::new(),
            ip_family_policy: IpFamilyPolicy::SingleStack,
            ports,
            external_name: None,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_source_ranges: Vec::new(),
            session_affinity: SessionAffinity::None,
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            health_check_node_port: None,
            publish_not_ready_addresses: false,
            raw: Arc::new(raw),
        }
    };
    let port = |name: &str, port: u16, protocol: Protocol, target: u16| ServicePort {
        name: Some(name.to_string()),
        protocol,
        port,
        target_port: PortRef::Number(target),
        node_port: None,
        app_protocol: None,
    };
    if !has(services, "default", "kubernetes") {
        services.push(builtin(
            "default",
            "kubernetes",
            plan.kubernetes_service_ip(),
            vec![port("https", 443, Protocol::Tcp, 6443)],
            &[("component", "apiserver"), ("provider", "kubernetes")],
        ));
    }
    if !has(services, "kube-system", "kube-dns") {
        services.push(builtin(
            "kube-system",
            "kube-dns",
            plan.dns_service_ip(),
            vec![
                port("dns", 53, Protocol::Udp, 53),
                port("dns-tcp", 53, Protocol::Tcp, 53),
                port("metrics", 9153, Protocol::Tcp, 9153),
            ],
            &[
                ("k8s-app", "kube-dns"),
                ("kubernetes.io/name", "CoreDNS"),
                ("kubernetes.io/cluster-service", "true"),
            ],
        ));
    }
}

/// Declared namespaces, the system namespaces, and every namespace an object uses.
fn namespaces_for(
    c: &Cluster,
    declared: Vec<Namespace>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Namespace> {
    let mut out: BTreeMap<String, Namespace> = declared
        .into_iter()
        .map(|n| (n.meta.name.clone(), n))
        .collect();
    let implicit = |name: &str| {
        let mut meta = builtin_meta("", name);
        Arc::make_mut(&mut meta.labels).insert(
            crate::validate::NAMESPACE_NAME_LABEL.to_string(),
            name.to_string(),
        );
        Namespace {
            meta,
            implicit: true,
            raw: None,
        }
    };
    for ns in SYSTEM_NAMESPACES {
        out.entry(ns.to_string()).or_insert_with(|| implicit(ns));
    }
    // The first object (by source) in each undeclared namespace gets the notice.
    let mut used: BTreeMap<&str, (&Source, Kind, &str)> = BTreeMap::new();
    let metas = c
        .pods
        .values()
        .map(|p| (&p.meta, Kind::Pod))
        .chain(c.services.values().map(|s| (&s.meta, Kind::Service)))
        .chain(c.workloads.iter().map(|((k, _), w)| (&w.meta, *k)))
        .chain(
            c.endpoint_slices
                .values()
                .map(|s| (&s.meta, Kind::EndpointSlice)),
        )
        .chain(c.ingresses.values().map(|s| (&s.meta, Kind::Ingress)))
        .chain(
            c.network_policies
                .values()
                .map(|s| (&s.meta, Kind::NetworkPolicy)),
        )
        .chain(c.secrets.values().map(|s| (&s.meta, Kind::Secret)))
        .chain(c.config_maps.values().map(|s| (&s.meta, Kind::ConfigMap)));
    for (m, kind) in metas {
        if m.namespace.is_empty() || out.contains_key(&m.namespace) {
            continue;
        }
        let entry = used
            .entry(m.namespace.as_str())
            .or_insert((&m.source, kind, m.name.as_str()));
        if m.source < *entry.0 {
            *entry = (&m.source, kind, m.name.as_str());
        }
    }
    let mut names: BTreeSet<String> = BTreeSet::new();
    for (ns, (source, kind, name)) in used {
        diags.push(
            Diagnostic::notice(
                "implicit-namespace",
                source.clone(),
                format!("namespace {ns:?} is not declared; svcnet creates it"),
            )
            .on(crate::diag::ObjectRef::new(kind, ns, name))
            .field("metadata.namespace"),
        );
        names.insert(ns.to_string());
    }
    for ns in names {
        let n = implicit(&ns);
        out.insert(ns, n);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn par_map_keeps_order_on_any_number_of_threads() {
        let items: Vec<u32> = (0..10_001).collect();
        let want: Vec<String> = items.iter().map(|i| format!("{i}")).collect();
        for min in [1, 64, 1_000_000] {
            assert_eq!(super::par_map(&items, min, |i| format!("{i}")), want);
        }
        assert!(super::par_map(&[] as &[u32], 1, |i| *i).is_empty());
    }
}
