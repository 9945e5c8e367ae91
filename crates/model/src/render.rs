//! The cluster as Kubernetes objects again, with every allocated value where kubectl shows
//! it: `spec.clusterIP`, `spec.ports[].nodePort`, `status.loadBalancer.ingress`,
//! `status.podIP`, and the derived Pods, ReplicaSets and EndpointSlices.

use std::collections::BTreeMap;

use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, discovery::v1 as discovery};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::kind::Kind;
use crate::types::*;

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn object_meta(m: &Meta) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(m.name.clone()),
        namespace: (!m.namespace.is_empty()).then(|| m.namespace.clone()),
        labels: (!m.labels.is_empty()).then(|| (*m.labels).clone()),
        annotations: (!m.annotations.is_empty()).then(|| (*m.annotations).clone()),
        creation_timestamp: m.creation_timestamp.map(meta::Time),
        ..Default::default()
    }
}

/// Writes an object's labels and annotations back into its raw metadata: validation moves
/// them out of the raw object into [`Meta`] (one copy of each map, not two).
fn restore_maps(om: &mut meta::ObjectMeta, m: &Meta) {
    om.labels = (!m.labels.is_empty()).then(|| (*m.labels).clone());
    om.annotations = (!m.annotations.is_empty()).then(|| (*m.annotations).clone());
}

fn port_ref(p: &PortRef) -> IntOrString {
    match p {
        PortRef::Number(n) => IntOrString::Int(i32::from(*n)),
        PortRef::Name(s) => IntOrString::String(s.clone()),
    }
}

/// A Pod with its node, addresses and conditions.
pub fn pod(p: &Pod) -> Value {
    let mut pod: core::Pod = (*p.raw).clone();
    // Derived pods share their template's raw pod: write this pod's own identity over it.
    pod.metadata.name = Some(p.meta.name.clone());
    pod.metadata.namespace = Some(p.meta.namespace.clone());
    restore_maps(&mut pod.metadata, &p.meta);
    if pod.metadata.uid.is_none() && p.owner.is_some() {
        pod.metadata.uid = Some(crate::derive::stable_uid(
            "Pod",
            &p.meta.namespace,
            &p.meta.name,
        ));
    }
    if pod.spec.is_none() {
        pod.spec = p.template.as_ref().and_then(|t| t.spec.clone());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    if !p.node_name.is_empty() {
        spec.node_name = Some(p.node_name.clone());
    }
    if let Some(h) = &p.hostname {
        spec.hostname = Some(h.clone());
    }
    if let Some(s) = &p.subdomain {
        spec.subdomain = Some(s.clone());
    }
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some(p.phase.as_str().to_string());
    status.pod_ip = p.ips.first().map(ToString::to_string);
    status.pod_ips = (!p.ips.is_empty()).then(|| {
        p.ips
            .iter()
            .map(|ip| core::PodIP { ip: ip.to_string() })
            .collect()
    });
    if let Some(h) = p.host_ip {
        status.host_ip = Some(h.to_string());
        status.host_ips = Some(vec![core::HostIP { ip: h.to_string() }]);
    }
    if status.conditions.is_none() {
        let v = |b: bool| if b { "True" } else { "False" }.to_string();
        let cond = |t: &str, s: bool| core::PodCondition {
            type_: t.to_string(),
            status: v(s),
            ..Default::default()
        };
        status.conditions = Some(vec![
            cond("PodScheduled", !p.node_name.is_empty()),
            cond("Initialized", true),
            cond("ContainersReady", p.ready),
            cond("Ready", p.ready),
        ]);
    }
    if status.container_statuses.is_none() {
        status.container_statuses = Some(
            p.containers
                .iter()
                .map(|c| core::ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    image_id: String::new(),
                    ready: p.ready,
                    restart_count: 0,
                    started: Some(p.phase == PodPhase::Running),
                    ..Default::default()
                })
                .collect(),
        );
    }
    to_value(&pod)
}

/// A Service with its allocated addresses and ports, and every default filled in.
pub fn service(s: &Service) -> Value {
    let mut svc: core::Service = (*s.raw).clone();
    restore_maps(&mut svc.metadata, &s.meta);
    svc.metadata.namespace = Some(s.meta.namespace.clone());
    let spec = svc.spec.get_or_insert_with(Default::default);
    spec.type_ = Some(s.type_.as_str().to_string());
    match &s.cluster_ips {
        ClusterIps::Headless => {
            spec.cluster_ip = Some("None".into());
            spec.cluster_ips = Some(vec!["None".into()]);
        }
        ClusterIps::Ips(ips) if !ips.is_empty() => {
            spec.cluster_ip = Some(ips[0].to_string());
            spec.cluster_ips = Some(ips.iter().map(ToString::to_string).collect());
        }
        ClusterIps::Ips(_) => {}
    }
    if s.type_ != ServiceType::ExternalName {
        spec.ip_families = Some(
            s.ip_families
                .iter()
                .map(|f| f.as_str().to_string())
                .collect(),
        );
        spec.ip_family_policy = Some(s.ip_family_policy.as_str().to_string());
        spec.internal_traffic_policy = Some(match s.internal_traffic_policy {
            TrafficPolicy::Cluster => "Cluster".into(),
            TrafficPolicy::Local => "Local".into(),
        });
        spec.session_affinity = Some(match s.session_affinity {
            SessionAffinity::None => "None".into(),
            SessionAffinity::ClientIp { .. } => "ClientIP".into(),
        });
        if let SessionAffinity::ClientIp { timeout_seconds } = s.session_affinity {
            spec.session_affinity_config = Some(core::SessionAffinityConfig {
                client_ip: Some(core::ClientIPConfig {
                    timeout_seconds: Some(i32::try_from(timeout_seconds).unwrap_or(10800)),
                }),
            });
        }
    }
    if matches!(s.type_, ServiceType::NodePort | ServiceType::LoadBalancer) {
        spec.external_traffic_policy = Some(match s.external_traffic_policy {
            TrafficPolicy::Cluster => "Cluster".into(),
            TrafficPolicy::Local => "Local".into(),
        });
    }
    spec.health_check_node_port = s.health_check_node_port.map(i32::from);
    if !s.ports.is_empty() {
        spec.ports = Some(
            s.ports
                .iter()
                .map(|p| core::ServicePort {
                    name: p.name.clone(),
                    protocol: Some(p.protocol.as_str().to_string()),
                    port: i32::from(p.port),
                    target_port: Some(port_ref(&p.target_port)),
                    node_port: p.node_port.map(i32::from),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect(),
        );
    }
    if s.type_ == ServiceType::LoadBalancer {
        svc.status = Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus {
                ingress: Some(
                    s.load_balancer_ips
                        .iter()
                        .map(|ip| core::LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            ip_mode: Some("VIP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        });
    }
    let mut v = to_value(&svc);
    set_type_meta(&mut v, Kind::Service);
    v
}

fn set_type_meta(v: &mut Value, kind: Kind) {
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), Value::from(kind.api_version()));
        o.insert("kind".into(), Value::from(kind.as_str()));
    }
}

/// An EndpointSlice.
pub fn endpoint_slice(s: &EndpointSlice) -> Value {
    let slice = discovery::EndpointSlice {
        metadata: object_meta(&s.meta),
        address_type: s.address_type.as_str().to_string(),
        endpoints: Some(
            s.endpoints
                .iter()
                .map(|e| discovery::Endpoint {
                    addresses: e.addresses.clone(),
                    conditions: Some(discovery::EndpointConditions {
                        ready: Some(e.ready),
                        serving: Some(e.serving),
                        terminating: Some(e.terminating),
                    }),
                    hostname: e.hostname.clone(),
                    node_name: e.node_name.clone(),
                    zone: e.zone.clone(),
                    target_ref: e.target_ref.as_ref().map(|t| core::ObjectReference {
                        kind: Some("Pod".into()),
                        namespace: Some(t.namespace.clone()),
                        name: Some(t.name.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(
            s.ports
                .iter()
                .map(|p| discovery::EndpointPort {
                    name: Some(p.name.clone()),
                    port: p.port.map(i32::from),
                    protocol: Some(p.protocol.as_str().to_string()),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect(),
        ),
    };
    to_value(&slice)
}

/// The legacy Endpoints view of a Service's slices (what `kubectl get ep` shows).
pub fn endpoints(svc: &Service, slices: &[&EndpointSlice]) -> Value {
    let mut subsets: BTreeMap<
        Vec<EndpointPort>,
        (Vec<core::EndpointAddress>, Vec<core::EndpointAddress>),
    > = BTreeMap::new();
    for s in slices {
        if s.address_type == AddressType::Fqdn {
            continue;
        }
        let entry = subsets.entry(s.ports.clone()).or_default();
        for e in &s.endpoints {
            for a in &e.addresses {
                let addr = core::EndpointAddress {
                    ip: a.clone(),
                    hostname: e.hostname.clone(),
                    node_name: e.node_name.clone(),
                    target_ref: e.target_ref.as_ref().map(|t| core::ObjectReference {
                        kind: Some("Pod".into()),
                        namespace: Some(t.namespace.clone()),
                        name: Some(t.name.clone()),
                        ..Default::default()
                    }),
                };
                if e.ready {
                    entry.0.push(addr);
                } else {
                    entry.1.push(addr);
                }
            }
        }
    }
    let ep = core::Endpoints {
        metadata: meta::ObjectMeta {
            name: Some(svc.meta.name.clone()),
            namespace: Some(svc.meta.namespace.clone()),
            labels: (!svc.meta.labels.is_empty()).then(|| (*svc.meta.labels).clone()),
            ..Default::default()
        },
        subsets: Some(
            subsets
                .into_iter()
                .filter(|(_, (r, n))| !(r.is_empty() && n.is_empty()))
                .map(|(ports, (ready, not_ready))| core::EndpointSubset {
                    addresses: (!ready.is_empty()).then_some(ready),
                    not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                    ports: Some(
                        ports
                            .iter()
                            .filter_map(|p| {
                                Some(core::EndpointPort {
                                    name: (!p.name.is_empty()).then(|| p.name.clone()),
                                    port: i32::from(p.port?),
                                    protocol: Some(p.protocol.as_str().to_string()),
                                    app_protocol: p.app_protocol.clone(),
                                })
                            })
                            .collect(),
                    ),
                })
                .collect(),
        ),
    };
    to_value(&ep)
}

/// A Namespace, with its `kubernetes.io/metadata.name` label and phase.
pub fn namespace(n: &Namespace) -> Value {
    let mut ns: core::Namespace = n.raw.as_deref().cloned().unwrap_or_default();
    restore_maps(&mut ns.metadata, &n.meta);
    ns.metadata.name = Some(n.meta.name.clone());
    ns.metadata.labels = Some((*n.meta.labels).clone());
    ns.status = Some(core::NamespaceStatus {
        phase: Some(
            if n.meta.terminating {
                "Terminating"
            } else {
                "Active"
            }
            .into(),
        ),
        ..Default::default()
    });
    to_value(&ns)
}

/// A Node, with its address and pod CIDRs.
pub fn node(n: &Node) -> Value {
    let mut node: core::Node = n.raw.as_deref().cloned().unwrap_or_default();
    restore_maps(&mut node.metadata, &n.meta);
    node.metadata.name = Some(n.meta.name.clone());
    node.metadata.labels = (!n.meta.labels.is_empty()).then(|| (*n.meta.labels).clone());
    let spec = node.spec.get_or_insert_with(Default::default);
    spec.pod_cidr = n.pod_cidrs.first().map(ToString::to_string);
    spec.pod_cidrs = Some(n.pod_cidrs.iter().map(ToString::to_string).collect());
    if !n.schedulable {
        spec.unschedulable = Some(true);
    }
    let status = node.status.get_or_insert_with(Default::default);
    if status.addresses.is_none() {
        status.addresses = Some(vec![
            core::NodeAddress {
                type_: "InternalIP".into(),
                address: n.internal_ip.to_string(),
            },
            core::NodeAddress {
                type_: "Hostname".into(),
                address: n.meta.name.clone(),
            },
        ]);
    }
    if status.conditions.is_none() {
        status.conditions = Some(vec![core::NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            ..Default::default()
        }]);
    }
    if status.node_info.is_none() {
        status.node_info = Some(core::NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            container_runtime_version: "svcnet://loopback".into(),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: format!("svcnet-{}", env!("CARGO_PKG_VERSION")),
            operating_system: std::env::consts::OS.into(),
            os_image: "svcnet loopback node".into(),
            ..Default::default()
        });
    }
    to_value(&node)
}

/// Ready and total pod counts of a workload.
pub fn workload_counts(c: &Cluster, w: &Workload) -> (usize, usize) {
    let pods: Vec<&Pod> = c
        .pods_in(&w.meta.namespace)
        .filter(|p| {
            p.owner.as_ref().is_some_and(|o| {
                (o.kind == w.kind.as_str() && o.name == w.meta.name)
                    || (w.kind == Kind::Deployment
                        && o.kind == "ReplicaSet"
                        && w.template_hash
                            .as_ref()
                            .is_some_and(|h| o.name == format!("{}-{h}", w.meta.name)))
            })
        })
        .collect();
    (pods.iter().filter(|p| p.ready).count(), pods.len())
}

/// A workload, with `status` replica counts.
pub fn workload(c: &Cluster, w: &Workload) -> Value {
    let (ready, total) = workload_counts(c, w);
    let ready = i32::try_from(ready).unwrap_or(i32::MAX);
    let total = i32::try_from(total).unwrap_or(i32::MAX);
    match &w.raw {
        WorkloadRaw::Deployment(d) => {
            let mut d: apps::Deployment = (**d).clone();
            restore_maps(&mut d.metadata, &w.meta);
            d.metadata.namespace = Some(w.meta.namespace.clone());
            d.spec.template = w.template_as_written();
            d.status = Some(apps::DeploymentStatus {
                replicas: Some(total),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                updated_replicas: Some(total),
                observed_generation: Some(1),
                ..Default::default()
            });
            to_value(&d)
        }
        WorkloadRaw::ReplicaSet(r) => {
            let mut r: apps::ReplicaSet = if w.template_hash.is_some() {
                crate::derive::derived_replica_set(w)
            } else {
                (**r).clone()
            };
            restore_maps(&mut r.metadata, &w.meta);
            r.metadata.namespace = Some(w.meta.namespace.clone());
            r.spec.template = Some(w.template_as_written());
            r.status = Some(apps::ReplicaSetStatus {
                replicas: total,
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                fully_labeled_replicas: Some(total),
                observed_generation: Some(1),
                ..Default::default()
            });
            let mut v = to_value(&r);
            set_type_meta(&mut v, Kind::ReplicaSet);
            v
        }
        WorkloadRaw::StatefulSet(s) => {
            let mut s: apps::StatefulSet = (**s).clone();
            restore_maps(&mut s.metadata, &w.meta);
            s.metadata.namespace = Some(w.meta.namespace.clone());
            s.spec.template = w.template_as_written();
            s.status = Some(apps::StatefulSetStatus {
                replicas: total,
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                current_replicas: Some(total),
                updated_replicas: Some(total),
                observed_generation: Some(1),
                ..Default::default()
            });
            to_value(&s)
        }
        WorkloadRaw::DaemonSet(d) => {
            let mut d: apps::DaemonSet = (**d).clone();
            restore_maps(&mut d.metadata, &w.meta);
            d.metadata.namespace = Some(w.meta.namespace.clone());
            d.spec.template = w.template_as_written();
            d.status = Some(apps::DaemonSetStatus {
                current_number_scheduled: total,
                desired_number_scheduled: total,
                number_ready: ready,
                number_available: Some(ready),
                updated_number_scheduled: Some(total),
                number_misscheduled: 0,
                observed_generation: Some(1),
                ..Default::default()
            });
            to_value(&d)
        }
    }
}

/// A NetworkPolicy with `policyTypes` and port protocols defaulted.
pub fn network_policy(p: &NetworkPolicy) -> Value {
    let mut np = (*p.raw).clone();
    restore_maps(&mut np.metadata, &p.meta);
    np.metadata.namespace = Some(p.meta.namespace.clone());
    let spec = np.spec.get_or_insert_with(Default::default);
    let mut types = Vec::new();
    if p.policy_types.ingress {
        types.push("Ingress".to_string());
    }
    if p.policy_types.egress {
        types.push("Egress".to_string());
    }
    spec.policy_types = Some(types);
    spec.pod_selector.get_or_insert_with(Default::default);
    let default_ports =
        |ports: &mut Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>| {
            for port in ports.iter_mut().flatten() {
                port.protocol.get_or_insert_with(|| "TCP".into());
            }
        };
    for r in spec.ingress.iter_mut().flatten() {
        default_ports(&mut r.ports);
    }
    for r in spec.egress.iter_mut().flatten() {
        default_ports(&mut r.ports);
    }
    to_value(&np)
}

/// An Ingress as written, with its namespace and `pathType` defaults filled in.
pub fn ingress(i: &Ingress) -> Value {
    let mut ing = (*i.raw).clone();
    restore_maps(&mut ing.metadata, &i.meta);
    ing.metadata.namespace = Some(i.meta.namespace.clone());
    let annotated = i
        .meta
        .annotations
        .contains_key("kubernetes.io/ingress.class");
    if let Some(spec) = ing.spec.as_mut()
        && spec.ingress_class_name.is_none()
        && !annotated
    {
        spec.ingress_class_name = i.class_name.clone();
    }
    to_value(&ing)
}

/// Any object of the cluster, by kind and key, as kubectl would print it.
pub fn object(c: &Cluster, kind: Kind, key: &ObjectKey) -> Option<Value> {
    Some(match kind {
        Kind::Namespace => namespace(c.namespaces.get(&key.name)?),
        Kind::Node => node(c.nodes.get(&key.name)?),
        Kind::Pod => pod(c.pods.get(key)?),
        Kind::Service => service(c.services.get(key)?),
        Kind::EndpointSlice => endpoint_slice(c.endpoint_slices.get(key)?),
        Kind::Endpoints => {
            let svc = c.services.get(key)?;
            let slices: Vec<&EndpointSlice> = c.slices_of(key).collect();
            endpoints(svc, &slices)
        }
        Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet => {
            workload(c, c.workloads.get(&(kind, key.clone()))?)
        }
        Kind::Ingress => ingress(c.ingresses.get(key)?),
        Kind::IngressClass => {
            let ic = c.ingress_classes.get(&key.name)?;
            let mut raw = (*ic.raw).clone();
            restore_maps(&mut raw.metadata, &ic.meta);
            to_value(&raw)
        }
        Kind::NetworkPolicy => network_policy(c.network_policies.get(key)?),
        Kind::Secret => {
            let s = c.secrets.get(key)?;
            let mut raw = (*s.raw).clone();
            restore_maps(&mut raw.metadata, &s.meta);
            raw.metadata.namespace = Some(s.meta.namespace.clone());
            raw.type_ = Some(s.type_.clone());
            to_value(&raw)
        }
        Kind::ConfigMap => {
            let m = c.config_maps.get(key)?;
            let mut raw = (*m.raw).clone();
            restore_maps(&mut raw.metadata, &m.meta);
            raw.metadata.namespace = Some(m.meta.namespace.clone());
            to_value(&raw)
        }
    })
}
