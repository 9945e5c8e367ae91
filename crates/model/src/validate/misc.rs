//! Namespaces, Nodes, EndpointSlices, Endpoints, Secrets and ConfigMaps.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::{core::v1 as core, discovery::v1 as discovery};

use super::{Ctx, NodeInput};
use crate::names;
use crate::types::*;

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Validates a Namespace and sets `kubernetes.io/metadata.name`.
pub(super) fn namespace(cx: &mut Ctx<'_>, mut ns: core::Namespace) -> Option<Namespace> {
    let mut meta = cx.meta(&mut ns.metadata);
    if let Some(v) = meta.labels.get(NAMESPACE_NAME_LABEL)
        && *v != meta.name
    {
        cx.warn(
                "overridden-label",
                &format!("metadata.labels[{NAMESPACE_NAME_LABEL}]"),
                format!("the API server always sets this label to the namespace's name; {v:?} is replaced by {:?}", meta.name),
            );
    }
    Arc::make_mut(&mut meta.labels).insert(NAMESPACE_NAME_LABEL.to_string(), meta.name.clone());
    cx.ok().then(|| Namespace {
        meta,
        implicit: false,
        raw: Some(Arc::new(ns)),
    })
}

/// Validates a Node.
pub(super) fn node(cx: &mut Ctx<'_>, mut node: core::Node) -> Option<NodeInput> {
    let meta = cx.meta(&mut node.metadata);
    let spec = node.spec.clone().unwrap_or_default();
    let mut pod_cidrs = Vec::new();
    let mut cidrs: Vec<String> = spec.pod_cidrs.clone().unwrap_or_default();
    if let Some(c) = spec.pod_cidr.clone().filter(|c| !c.is_empty())
        && !cidrs.contains(&c)
    {
        cidrs.insert(0, c);
    }
    for (i, c) in cidrs.iter().enumerate() {
        if let Some(net) = cx.cidr(&format!("spec.podCIDRs[{i}]"), c) {
            pod_cidrs.push(net);
        }
    }
    let mut internal_ip = None;
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.clone())
        .unwrap_or_default();
    for (i, a) in addresses.iter().enumerate() {
        if a.type_ == "InternalIP" && internal_ip.is_none() {
            internal_ip = cx.ip(&format!("status.addresses[{i}].address"), &a.address);
        }
    }
    cx.ok().then(|| NodeInput {
        meta,
        internal_ip,
        pod_cidrs,
        schedulable: !spec.unschedulable.unwrap_or(false),
        raw: Arc::new(node),
    })
}

fn endpoint_port(
    cx: &mut Ctx<'_>,
    field: &str,
    name: Option<&str>,
    port: Option<i32>,
    protocol: Option<&str>,
    app_protocol: Option<&str>,
) -> Option<EndpointPort> {
    let name = name.unwrap_or("").to_string();
    if !name.is_empty()
        && let Err(e) = names::dns1123_label(&name)
    {
        cx.error(
            "invalid-name",
            &format!("{field}.name"),
            format!("Invalid value: {e}"),
        );
    }
    let port = match port {
        Some(p) => Some(cx.port(&format!("{field}.port"), p)?),
        None => None,
    };
    Some(EndpointPort {
        name,
        port,
        protocol: cx.protocol(&format!("{field}.protocol"), protocol),
        app_protocol: app_protocol.map(str::to_string),
    })
}

fn check_address(cx: &mut Ctx<'_>, field: &str, address_type: AddressType, a: &str) -> bool {
    match address_type {
        AddressType::Fqdn => match names::dns1123_subdomain(a) {
            Ok(()) => true,
            Err(e) => {
                cx.error("invalid-value", field, format!("Invalid value: {e}"));
                false
            }
        },
        AddressType::IPv4 | AddressType::IPv6 => match cx.ip(field, a) {
            Some(ip) if IpFamily::of(&ip) == IpFamily::V4 && address_type == AddressType::IPv4 => {
                true
            }
            Some(ip) if IpFamily::of(&ip) == IpFamily::V6 && address_type == AddressType::IPv6 => {
                true
            }
            Some(_) => {
                cx.error(
                    "invalid-value",
                    field,
                    format!(
                        "Invalid value: {a:?}: must be an {} address",
                        address_type.as_str()
                    ),
                );
                false
            }
            None => false,
        },
    }
}

/// Validates an EndpointSlice written in the manifests.
pub(super) fn endpoint_slice(
    cx: &mut Ctx<'_>,
    mut s: discovery::EndpointSlice,
) -> Option<EndpointSlice> {
    let meta = cx.meta(&mut s.metadata);
    let address_type = match s.address_type.as_str() {
        "IPv4" => AddressType::IPv4,
        "IPv6" => AddressType::IPv6,
        "FQDN" => AddressType::Fqdn,
        other => {
            cx.error(
                "invalid-value",
                "addressType",
                format!(
                    "Unsupported value: {other:?}: supported values: \"FQDN\", \"IPv4\", \"IPv6\""
                ),
            );
            AddressType::IPv4
        }
    };
    let mut ports = Vec::new();
    for (i, p) in s.ports.iter().flatten().enumerate() {
        if let Some(p) = endpoint_port(
            cx,
            &format!("ports[{i}]"),
            p.name.as_deref(),
            p.port,
            p.protocol.as_deref(),
            p.app_protocol.as_deref(),
        ) {
            ports.push(p);
        }
    }
    let mut endpoints = Vec::new();
    for (i, e) in s.endpoints.iter().flatten().enumerate() {
        let field = format!("endpoints[{i}]");
        if e.addresses.is_empty() {
            cx.error(
                "missing-field",
                &format!("{field}.addresses"),
                "Required value: must contain at least 1 address",
            );
        }
        for (j, a) in e.addresses.iter().enumerate() {
            check_address(cx, &format!("{field}.addresses[{j}]"), address_type, a);
        }
        if let Some(h) = &e.hostname
            && let Err(err) = names::dns1123_label(h)
        {
            cx.error(
                "invalid-name",
                &format!("{field}.hostname"),
                format!("Invalid value: {err}"),
            );
        }
        let c = e.conditions.clone().unwrap_or_default();
        let ready = c.ready.unwrap_or(true);
        endpoints.push(Endpoint {
            addresses: e.addresses.clone(),
            ready,
            serving: c.serving.unwrap_or(ready),
            terminating: c.terminating.unwrap_or(false),
            hostname: e.hostname.clone(),
            node_name: e.node_name.clone(),
            zone: e.zone.clone(),
            target_ref: e.target_ref.as_ref().and_then(|r| {
                Some(ObjectKey::new(
                    r.namespace
                        .clone()
                        .unwrap_or_else(|| meta.namespace.clone()),
                    r.name.clone()?,
                ))
            }),
        });
    }
    let service_name = meta
        .labels
        .get("kubernetes.io/service-name")
        .cloned()
        .unwrap_or_default();
    if service_name.is_empty() {
        cx.warn(
            "orphan-endpointslice",
            "metadata.labels",
            "no kubernetes.io/service-name label: this EndpointSlice belongs to no Service and is not used",
        );
    }
    cx.ok().then_some(EndpointSlice {
        meta,
        service_name,
        address_type,
        ports,
        endpoints,
        derived: false,
    })
}

/// Converts a legacy Endpoints object to EndpointSlices (one per address family and subset),
/// as the EndpointSlice mirroring controller does.
pub(super) fn endpoints(cx: &mut Ctx<'_>, mut ep: core::Endpoints) -> Option<Vec<EndpointSlice>> {
    let meta = cx.meta(&mut ep.metadata);
    let mut slices = Vec::new();
    for (i, subset) in ep.subsets.iter().flatten().enumerate() {
        let field = format!("subsets[{i}]");
        let mut ports = Vec::new();
        for (j, p) in subset.ports.iter().flatten().enumerate() {
            if let Some(p) = endpoint_port(
                cx,
                &format!("{field}.ports[{j}]"),
                p.name.as_deref(),
                Some(p.port),
                p.protocol.as_deref(),
                p.app_protocol.as_deref(),
            ) {
                ports.push(p);
            }
        }
        let mut by_family: BTreeMap<AddressType, Vec<Endpoint>> = BTreeMap::new();
        let lists = [
            ("addresses", subset.addresses.as_ref(), true),
            (
                "notReadyAddresses",
                subset.not_ready_addresses.as_ref(),
                false,
            ),
        ];
        for (list_name, list, ready) in lists {
            for (j, a) in list.into_iter().flatten().enumerate() {
                let af = format!("{field}.{list_name}[{j}].ip");
                let Some(ip) = cx.ip(&af, &a.ip) else {
                    continue;
                };
                let family = match ip {
                    IpAddr::V4(_) => AddressType::IPv4,
                    IpAddr::V6(_) => AddressType::IPv6,
                };
                by_family.entry(family).or_default().push(Endpoint {
                    addresses: vec![ip.to_string()],
                    ready,
                    serving: ready,
                    terminating: false,
                    hostname: a.hostname.clone(),
                    node_name: a.node_name.clone(),
                    zone: None,
                    target_ref: a.target_ref.as_ref().and_then(|r| {
                        Some(ObjectKey::new(
                            r.namespace
                                .clone()
                                .unwrap_or_else(|| meta.namespace.clone()),
                            r.name.clone()?,
                        ))
                    }),
                });
            }
        }
        for (family, endpoints) in by_family {
            let mut m = meta.clone();
            m.name = format!(
                "{}-{}{}",
                meta.name,
                family.as_str().to_ascii_lowercase(),
                if i == 0 {
                    String::new()
                } else {
                    format!("-{i}")
                }
            );
            m.labels = Arc::new(BTreeMap::from([
                ("kubernetes.io/service-name".to_string(), meta.name.clone()),
                (
                    "endpointslice.kubernetes.io/managed-by".to_string(),
                    "endpointslicemirroring-controller.k8s.io".to_string(),
                ),
            ]));
            slices.push(EndpointSlice {
                meta: m,
                service_name: meta.name.clone(),
                address_type: family,
                ports: ports.clone(),
                endpoints,
                derived: false,
            });
        }
    }
    cx.ok().then_some(slices)
}

/// Validates a Secret; `kubernetes.io/tls` Secrets need `tls.crt` and `tls.key`.
pub(super) fn secret(cx: &mut Ctx<'_>, mut s: core::Secret) -> Option<Secret> {
    let meta = cx.meta(&mut s.metadata);
    let type_ = s.type_.clone().unwrap_or_else(|| "Opaque".to_string());
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    for k in data.keys() {
        if !valid_config_key(k) {
            cx.error(
                "invalid-key",
                &format!("data[{k}]"),
                format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
            );
        }
    }
    if type_ == "kubernetes.io/tls" {
        for key in ["tls.crt", "tls.key"] {
            if !data.contains_key(key) {
                cx.error(
                    "missing-field",
                    &format!("data[{key}]"),
                    format!("Required value: a kubernetes.io/tls Secret needs {key}"),
                );
            }
        }
    }
    cx.ok().then(|| Secret {
        meta,
        type_,
        data,
        raw: Arc::new(s),
    })
}

fn valid_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Validates a ConfigMap.
pub(super) fn config_map(cx: &mut Ctx<'_>, mut c: core::ConfigMap) -> Option<ConfigMap> {
    let meta = cx.meta(&mut c.metadata);
    let data = c.data.clone().unwrap_or_default();
    for k in data.keys() {
        if !valid_config_key(k) {
            cx.error(
                "invalid-key",
                &format!("data[{k}]"),
                format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
            );
        }
    }
    cx.ok().then(|| ConfigMap {
        meta,
        binary_keys: c.binary_data.as_ref().map_or(0, BTreeMap::len),
        data,
        raw: Arc::new(c),
    })
}
