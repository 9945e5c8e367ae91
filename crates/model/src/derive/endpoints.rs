//! EndpointSlices, as the EndpointSlice controller builds them from pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::builtin_meta;
use super::workloads::stable_suffix;
use crate::cluster::{Cluster, PodIndex};
use crate::diag::{Diagnostic, Diagnostics};
use crate::kind::Kind;
use crate::selector::LabelSelector;
use crate::types::*;

/// At most this many endpoints per slice (the controller's default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Derived slices for every Service with a selector, plus the slices written in the
/// manifests. Written slices that claim to be managed by the EndpointSlice controller, for
/// a Service with a selector, are replaced by derived ones (they come from an export).
pub(super) fn endpoint_slices(
    c: &Cluster,
    written: Vec<EndpointSlice>,
    diags: &mut Diagnostics,
) -> BTreeMap<ObjectKey, EndpointSlice> {
    let mut out = BTreeMap::new();
    for s in written {
        let k = ObjectKey::new(s.meta.namespace.clone(), s.meta.name.clone());
        let svc = c.services.get(&ObjectKey::new(
            s.meta.namespace.clone(),
            s.service_name.clone(),
        ));
        let managed = s
            .meta
            .labels
            .get("endpointslice.kubernetes.io/managed-by")
            .is_some_and(|m| m == ENDPOINTSLICE_CONTROLLER);
        if managed && svc.is_some_and(|svc| svc.selector.is_some()) {
            continue;
        }
        if s.meta
            .labels
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("endpointslicemirroring-controller.k8s.io")
            && svc.is_some_and(|svc| svc.selector.is_some())
        {
            diags.push(
                Diagnostic::notice(
                    "ignored-endpoints",
                    s.meta.source.clone(),
                    "this Service has a selector, so its endpoints come from the pods it selects; the Endpoints object is ignored",
                )
                .on(s.meta.object_ref(Kind::Endpoints)),
            );
            continue;
        }
        out.insert(k, s);
    }
    for (svc, slices) in derive_all(c) {
        for slice in slices {
            let k = ObjectKey::new(slice.meta.namespace.clone(), slice.meta.name.clone());
            if let Some(existing) = out.get(&k) {
                diags.push(
                    Diagnostic::error(
                        "name-collision",
                        existing.meta.source.clone(),
                        format!(
                            "EndpointSlice {k} is also the name of a slice derived for Service {}",
                            svc.meta.key()
                        ),
                    )
                    .on(existing.meta.object_ref(Kind::EndpointSlice)),
                );
                continue;
            }
            out.insert(k, slice);
        }
    }
    out
}

/// The derived slices of every Service with a selector (ExternalName Services have none),
/// in Service order. Services are independent of each other, so they are shared out over
/// every core when there are many.
pub(crate) fn derive_all(c: &Cluster) -> Vec<(&Service, Vec<EndpointSlice>)> {
    let index = PodIndex::new(c);
    let services: Vec<(&Service, &crate::selector::Labels)> = c
        .services
        .values()
        .filter(|svc| svc.type_ != ServiceType::ExternalName)
        .filter_map(|svc| Some((svc, svc.selector.as_ref()?)))
        .collect();
    let one = |&(svc, selector): &(&'_ Service, &crate::selector::Labels)| {
        let pods = index.selected(&svc.meta.namespace, selector);
        derive_from(c, svc, pods)
    };
    let slices: Vec<Vec<EndpointSlice>> = super::par_map(&services, 256, one);
    services.into_iter().map(|(s, _)| s).zip(slices).collect()
}

/// The slices of one Service: endpoints grouped by address family and by their resolved
/// ports (a named targetPort may be a different number on different pods), 100 per slice.
pub fn derive_for(
    c: &Cluster,
    svc: &Service,
    selector: &crate::selector::Labels,
) -> Vec<EndpointSlice> {
    let sel = LabelSelector::from_map(selector);
    derive_from(
        c,
        svc,
        c.pods_in(&svc.meta.namespace)
            .filter(|pod| sel.matches(&pod.meta.labels)),
    )
}

/// The slices of one Service over the pods its selector selects (in pod order).
fn derive_from<'a>(
    c: &Cluster,
    svc: &Service,
    selected: impl Iterator<Item = &'a Pod>,
) -> Vec<EndpointSlice> {
    let families: Vec<IpFamily> = if svc.ip_families.is_empty() {
        vec![c.plan.primary_family()]
    } else {
        svc.ip_families.clone()
    };
    // (family, ports) -> endpoints
    let mut groups: BTreeMap<(AddressType, Vec<EndpointPort>), Vec<Endpoint>> = BTreeMap::new();
    for pod in selected {
        if matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed) {
            continue;
        }
        let mut ports: Vec<EndpointPort> = svc
            .ports
            .iter()
            .filter_map(|p| {
                Some(EndpointPort {
                    name: p.name.clone().unwrap_or_default(),
                    port: Some(pod.resolve_port(&p.target_port, p.protocol)?),
                    protocol: p.protocol,
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        ports.sort();
        let ready_pod = pod.ready && pod.phase == PodPhase::Running;
        let (ready, serving) = if svc.publish_not_ready_addresses {
            (true, true)
        } else {
            (ready_pod && !pod.meta.terminating, ready_pod)
        };
        let hostname = match (&pod.hostname, &pod.subdomain) {
            (Some(h), Some(sd)) if *sd == svc.meta.name => Some(h.clone()),
            _ => None,
        };
        let zone = c
            .nodes
            .get(&pod.node_name)
            .and_then(|n| n.meta.labels.get("topology.kubernetes.io/zone").cloned());
        for f in &families {
            let Some(ip) = pod.ip_of(*f) else { continue };
            let at = match f {
                IpFamily::V4 => AddressType::IPv4,
                IpFamily::V6 => AddressType::IPv6,
            };
            groups
                .entry((at, ports.clone()))
                .or_default()
                .push(Endpoint {
                    addresses: vec![ip.to_string()],
                    ready,
                    serving,
                    terminating: pod.meta.terminating,
                    hostname: hostname.clone(),
                    node_name: (!pod.node_name.is_empty()).then(|| pod.node_name.clone()),
                    zone: zone.clone(),
                    target_ref: Some(ObjectKey::new(
                        pod.meta.namespace.clone(),
                        pod.meta.name.clone(),
                    )),
                });
        }
    }
    // A Service whose selector matches nothing still gets one empty slice per family.
    if groups.is_empty() {
        for f in &families {
            let at = match f {
                IpFamily::V4 => AddressType::IPv4,
                IpFamily::V6 => AddressType::IPv6,
            };
            groups.insert((at, Vec::new()), Vec::new());
        }
    }
    let mut out = Vec::new();
    for ((address_type, ports), endpoints) in groups {
        let chunks: Vec<Vec<Endpoint>> = if endpoints.is_empty() {
            vec![Vec::new()]
        } else {
            endpoints
                .chunks(MAX_ENDPOINTS_PER_SLICE)
                .map(<[Endpoint]>::to_vec)
                .collect()
        };
        let port_key: Vec<String> = ports
            .iter()
            .map(|p| format!("{}:{}/{}", p.name, p.port.unwrap_or(0), p.protocol))
            .collect();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let seed = format!(
                "{}/{}/{}/{}/{i}",
                svc.meta.namespace,
                svc.meta.name,
                address_type.as_str(),
                port_key.join(",")
            );
            let mut meta = builtin_meta(
                &svc.meta.namespace,
                &format!("{}-{}", svc.meta.name, stable_suffix(&seed)),
            );
            meta.source = svc.meta.source.clone();
            meta.locator = svc.meta.locator.clone();
            let mut labels = (*svc.meta.labels).clone();
            labels.insert("kubernetes.io/service-name".into(), svc.meta.name.clone());
            labels.insert(
                "endpointslice.kubernetes.io/managed-by".into(),
                ENDPOINTSLICE_CONTROLLER.into(),
            );
            if svc.is_headless() {
                labels.insert("service.kubernetes.io/headless".into(), String::new());
            }
            meta.labels = Arc::new(labels);
            out.push(EndpointSlice {
                meta,
                service_name: svc.meta.name.clone(),
                address_type,
                ports: ports.clone(),
                endpoints: chunk,
                derived: true,
            });
        }
    }
    out
}
