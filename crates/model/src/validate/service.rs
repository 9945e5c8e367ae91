//! Services: ports, types, addresses, traffic policies.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Ctx;
use crate::names;
use crate::types::*;

/// Validates and defaults a Service. Addresses given in the manifest are kept; the rest is
/// allocated later.
pub(super) fn service(cx: &mut Ctx<'_>, mut svc: core::Service) -> Option<Service> {
    let meta = cx.meta(&mut svc.metadata);
    let spec = svc.spec.clone().unwrap_or_default();
    let type_ = match spec.type_.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIP,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            cx.error(
                "invalid-value",
                "spec.type",
                format!("Unsupported value: {other:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
            );
            ServiceType::ClusterIP
        }
    };
    let external = matches!(type_, ServiceType::NodePort | ServiceType::LoadBalancer);

    // Cluster IPs: "" = allocate, "None" = headless.
    let mut cluster_ips = ClusterIps::Ips(Vec::new());
    let mut requested: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    if let Some(ip) = spec.cluster_ip.as_deref().filter(|s| !s.is_empty()) {
        match requested.first() {
            None => requested.push(ip.to_string()),
            Some(first) if first != ip => cx.error(
                "invalid-value",
                "spec.clusterIPs[0]",
                format!("Invalid value: {first:?}: must match `clusterIP` when present ({ip:?})"),
            ),
            Some(_) => {}
        }
    }
    if requested.iter().any(|s| s == "None") {
        if requested.len() > 1 {
            cx.error(
                "invalid-value",
                "spec.clusterIPs",
                "Invalid value: must not have more than one value when the first is 'None'",
            );
        }
        if external {
            cx.error(
                "invalid-value",
                "spec.clusterIP",
                format!(
                    "Invalid value: \"None\": may not be set to 'None' for {} services",
                    type_.as_str()
                ),
            );
        }
        cluster_ips = ClusterIps::Headless;
    } else if type_ == ServiceType::ExternalName {
        if !requested.is_empty() {
            cx.error(
                "invalid-value",
                "spec.clusterIP",
                "Invalid value: must be empty for ExternalName services",
            );
        }
    } else {
        let mut ips = Vec::new();
        for (i, s) in requested.iter().enumerate() {
            if let Some(ip) = cx.ip(&format!("spec.clusterIPs[{i}]"), s) {
                ips.push(ip);
            }
        }
        if ips.len() > 2 {
            cx.error(
                "invalid-value",
                "spec.clusterIPs",
                "Invalid value: may have at most 2 addresses, one per IP family",
            );
        }
        if ips.len() == 2 && IpFamily::of(&ips[0]) == IpFamily::of(&ips[1]) {
            cx.error(
                "invalid-value",
                "spec.clusterIPs[1]",
                "Invalid value: the two cluster IPs must be of different IP families",
            );
        }
        cluster_ips = ClusterIps::Ips(ips);
    }

    // IP families and policy.
    let mut ip_families = Vec::new();
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        match f.as_str() {
            "IPv4" => ip_families.push(IpFamily::V4),
            "IPv6" => ip_families.push(IpFamily::V6),
            other => cx.error(
                "invalid-value",
                &format!("spec.ipFamilies[{i}]"),
                format!("Unsupported value: {other:?}: supported values: \"IPv4\", \"IPv6\""),
            ),
        }
    }
    if ip_families.len() == 2 && ip_families[0] == ip_families[1] {
        cx.error(
            "invalid-value",
            "spec.ipFamilies[1]",
            "Duplicate value: the IP families must differ",
        );
    }
    if ip_families.len() > 2 {
        cx.error(
            "invalid-value",
            "spec.ipFamilies",
            "Invalid value: may have at most 2 IP families",
        );
    }
    if let ClusterIps::Ips(ips) = &cluster_ips {
        for (i, ip) in ips.iter().enumerate() {
            match ip_families.get(i) {
                Some(f) if *f != IpFamily::of(ip) => cx.error(
                    "invalid-value",
                    &format!("spec.clusterIPs[{i}]"),
                    format!(
                        "Invalid value: {ip}: expected an {} address (ipFamilies[{i}])",
                        f.as_str()
                    ),
                ),
                Some(_) => {}
                None => ip_families.push(IpFamily::of(ip)),
            }
        }
    }
    let ip_family_policy = match spec.ip_family_policy.as_deref() {
        None => {
            if ip_families.len() == 2 {
                IpFamilyPolicy::RequireDualStack
            } else {
                IpFamilyPolicy::SingleStack
            }
        }
        Some("SingleStack") => IpFamilyPolicy::SingleStack,
        Some("PreferDualStack") => IpFamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => IpFamilyPolicy::RequireDualStack,
        Some(other) => {
            cx.error(
                "invalid-value",
                "spec.ipFamilyPolicy",
                format!("Unsupported value: {other:?}: supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""),
            );
            IpFamilyPolicy::SingleStack
        }
    };
    if ip_family_policy == IpFamilyPolicy::SingleStack && ip_families.len() > 1 {
        cx.error(
            "invalid-value",
            "spec.ipFamilies",
            "Invalid value: must have at most one IP family when `ipFamilyPolicy` is 'SingleStack'",
        );
    }

    // Ports.
    let ports_in = spec.ports.clone().unwrap_or_default();
    if ports_in.is_empty()
        && type_ != ServiceType::ExternalName
        && !matches!(cluster_ips, ClusterIps::Headless)
    {
        cx.error("missing-field", "spec.ports", "Required value: a Service needs at least one port (only headless and ExternalName services may have none)");
    }
    let mut ports = Vec::new();
    let mut names_seen: HashMap<String, usize> = HashMap::new();
    let mut port_proto = BTreeSet::new();
    for (i, p) in ports_in.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let name = p.name.clone().filter(|n| !n.is_empty());
        match &name {
            Some(n) => {
                if let Err(e) = names::dns1123_label(n) {
                    cx.error(
                        "invalid-name",
                        &format!("{field}.name"),
                        format!("Invalid value: {e}"),
                    );
                }
                if let Some(first) = names_seen.insert(n.clone(), i) {
                    cx.error(
                        "duplicate-port-name",
                        &format!("{field}.name"),
                        format!(
                            "Duplicate value: {n:?} is already the name of spec.ports[{first}]"
                        ),
                    );
                }
            }
            None if ports_in.len() > 1 => cx.error(
                "missing-port-name",
                &format!("{field}.name"),
                "Required value: every port of a multi-port Service must have a name",
            ),
            None => {}
        }
        let protocol = cx.protocol(&format!("{field}.protocol"), p.protocol.as_deref());
        let Some(port) = cx.port(&format!("{field}.port"), p.port) else {
            continue;
        };
        if !port_proto.insert((port, protocol)) {
            cx.error(
                "duplicate-port",
                &format!("{field}.port"),
                format!("Duplicate value: port {port}/{protocol} is listed twice"),
            );
        }
        let target_port = match &p.target_port {
            None => PortRef::Number(port),
            Some(IntOrString::Int(0)) => PortRef::Number(port),
            Some(IntOrString::String(s)) if s.is_empty() => PortRef::Number(port),
            Some(t) => cx
                .port_ref(&format!("{field}.targetPort"), t)
                .unwrap_or(PortRef::Number(port)),
        };
        let node_port = match p.node_port {
            None | Some(0) => None,
            Some(n) if !external => {
                cx.error(
                    "invalid-value",
                    &format!("{field}.nodePort"),
                    format!(
                        "Forbidden: {n}: may not be used when `type` is '{}'",
                        type_.as_str()
                    ),
                );
                None
            }
            Some(n) => cx.port(&format!("{field}.nodePort"), n),
        };
        ports.push(ServicePort {
            name,
            protocol,
            port,
            target_port,
            node_port,
            app_protocol: p.app_protocol.clone(),
        });
    }

    // Selector: an empty selector selects nothing, exactly like a missing one.
    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    if let Some(sel) = &selector {
        for (k, v) in sel {
            if let Err(e) = names::qualified_name(k) {
                cx.error(
                    "invalid-selector",
                    &format!("spec.selector[{k}]"),
                    format!("Invalid value: label key {e}"),
                );
            }
            if let Err(e) = names::label_value(v) {
                cx.error(
                    "invalid-selector",
                    &format!("spec.selector[{k}]"),
                    format!("Invalid value: label value {e}"),
                );
            }
        }
    }
    if type_ == ServiceType::ExternalName && selector.is_some() {
        cx.warn(
            "ignored-field",
            "spec.selector",
            "an ExternalName Service has no endpoints; the selector is ignored",
        );
    }

    // ExternalName.
    let external_name = if type_ == ServiceType::ExternalName {
        match spec.external_name.as_deref() {
            None | Some("") => {
                cx.error("missing-field", "spec.externalName", "Required value");
                None
            }
            Some(n) => {
                let clean = n.strip_suffix('.').unwrap_or(n);
                if let Err(e) = names::dns1123_subdomain(clean) {
                    cx.error(
                        "invalid-value",
                        "spec.externalName",
                        format!("Invalid value: {e}"),
                    );
                }
                Some(clean.to_string())
            }
        }
    } else {
        None
    };

    let mut external_ips = Vec::new();
    for (i, s) in spec.external_ips.iter().flatten().enumerate() {
        if let Some(ip) = cx.ip(&format!("spec.externalIPs[{i}]"), s) {
            external_ips.push(ip);
        }
    }

    // LoadBalancer addresses: status as exported from a cluster, or the requested IP.
    let mut load_balancer_ips: Vec<IpAddr> = Vec::new();
    if type_ == ServiceType::LoadBalancer {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default();
        for (i, ing) in ingress.iter().enumerate() {
            if let Some(ip) = ing.ip.as_deref()
                && let Some(ip) = cx.ip(&format!("status.loadBalancer.ingress[{i}].ip"), ip)
            {
                load_balancer_ips.push(ip);
            }
        }
        if let Some(ip) = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty())
            && let Some(ip) = cx.ip("spec.loadBalancerIP", ip)
            && !load_balancer_ips.contains(&ip)
        {
            load_balancer_ips.insert(0, ip);
        }
    }
    let mut load_balancer_source_ranges = Vec::new();
    for (i, s) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        if let Some(net) = cx.cidr(&format!("spec.loadBalancerSourceRanges[{i}]"), s) {
            load_balancer_source_ranges.push(net);
        }
    }

    let session_affinity = match spec.session_affinity.as_deref() {
        None | Some("None") => SessionAffinity::None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800);
            let timeout_seconds = match u32::try_from(timeout) {
                Ok(t) if (1..=86400).contains(&t) => t,
                _ => {
                    cx.error(
                        "invalid-value",
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        format!(
                            "Invalid value: {timeout}: must be greater than 0 and less than 86400"
                        ),
                    );
                    10800
                }
            };
            SessionAffinity::ClientIp { timeout_seconds }
        }
        Some(other) => {
            cx.error(
                "invalid-value",
                "spec.sessionAffinity",
                format!("Unsupported value: {other:?}: supported values: \"ClientIP\", \"None\""),
            );
            SessionAffinity::None
        }
    };

    let traffic_policy = |cx: &mut Ctx<'_>, field: &str, v: Option<&str>| match v {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => {
            cx.error(
                "invalid-value",
                field,
                format!("Unsupported value: {other:?}: supported values: \"Cluster\", \"Local\""),
            );
            TrafficPolicy::Cluster
        }
    };
    if !external && spec.external_traffic_policy.is_some() {
        cx.error(
            "invalid-value",
            "spec.externalTrafficPolicy",
            "Invalid value: may only be set for externally-accessible services (NodePort, LoadBalancer)",
        );
    }
    let external_traffic_policy = traffic_policy(
        cx,
        "spec.externalTrafficPolicy",
        spec.external_traffic_policy.as_deref(),
    );
    let internal_traffic_policy = traffic_policy(
        cx,
        "spec.internalTrafficPolicy",
        spec.internal_traffic_policy.as_deref(),
    );
    let health_check_node_port = match spec.health_check_node_port {
        None | Some(0) => None,
        Some(n) => {
            if !(type_ == ServiceType::LoadBalancer
                && external_traffic_policy == TrafficPolicy::Local)
            {
                cx.error(
                    "invalid-value",
                    "spec.healthCheckNodePort",
                    "Forbidden: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                );
            }
            cx.port("spec.healthCheckNodePort", n)
        }
    };

    cx.ok().then(|| Service {
        meta,
        type_,
        selector,
        cluster_ips,
        ip_families,
        ip_family_policy,
        ports,
        external_name,
        external_ips,
        load_balancer_ips,
        load_balancer_source_ranges,
        session_affinity,
        external_traffic_policy,
        internal_traffic_policy,
        health_check_node_port,
        publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
        raw: Arc::new(svc),
    })
}
