//! Pods, pod templates and the workloads that own them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
use serde_json::Value;

use super::Ctx;
use crate::kind::Kind;
use crate::names;
use crate::selector::LabelSelector;
use crate::types::*;

/// Validates a pod spec found at `prefix` (`spec` or `spec.template.spec`).
fn pod_spec(cx: &mut Ctx<'_>, prefix: &str, spec: &core::PodSpec) -> PodSpecInfo {
    if spec.containers.is_empty() {
        cx.error(
            "missing-field",
            &format!("{prefix}.containers"),
            "Required value: a pod needs at least one container",
        );
    }
    let mut containers = Vec::new();
    let mut container_names: HashMap<&str, usize> = HashMap::new();
    let mut port_names: HashMap<String, String> = HashMap::new();
    // Sidecars (init containers with restartPolicy Always) serve ports like containers.
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
        .map(|(i, c)| (format!("{prefix}.initContainers[{i}]"), c));
    let mains = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{prefix}.containers[{i}]"), c));
    for (field, c) in mains.chain(sidecars) {
        if let Err(e) = names::dns1123_label(&c.name) {
            cx.error(
                "invalid-name",
                &format!("{field}.name"),
                format!("Invalid value: {e}"),
            );
        }
        if container_names.insert(&c.name, 0).is_some() {
            cx.error(
                "duplicate-container",
                &format!("{field}.name"),
                format!("Duplicate value: {:?}", c.name),
            );
        }
        let mut ports = Vec::new();
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let pf = format!("{field}.ports[{j}]");
            let protocol = cx.protocol(&format!("{pf}.protocol"), p.protocol.as_deref());
            let Some(port) = cx.port(&format!("{pf}.containerPort"), p.container_port) else {
                continue;
            };
            let name = p.name.clone().filter(|n| !n.is_empty());
            if let Some(n) = &name {
                if let Err(e) = names::iana_svc_name(n) {
                    cx.error(
                        "invalid-name",
                        &format!("{pf}.name"),
                        format!("Invalid value: {e}"),
                    );
                }
                if let Some(other) = port_names.insert(n.clone(), c.name.clone()) {
                    if other == c.name {
                        cx.error(
                            "duplicate-port-name",
                            &format!("{pf}.name"),
                            format!("Duplicate value: {n:?}"),
                        );
                    } else {
                        cx.warn(
                            "duplicate-port-name",
                            &format!("{pf}.name"),
                            format!("port name {n:?} is also used by container {other:?}; a named targetPort resolves to the first one"),
                        );
                    }
                }
            }
            let host_port = match p.host_port {
                None | Some(0) => None,
                Some(h) => cx.port(&format!("{pf}.hostPort"), h),
            };
            ports.push(ContainerPort {
                name,
                port,
                protocol,
                host_port,
            });
        }
        let readiness_probe = c
            .readiness_probe
            .as_ref()
            .and_then(|p| probe(cx, &format!("{field}.readinessProbe"), p));
        let image = c.image.clone().unwrap_or_default();
        if image.is_empty() {
            cx.warn(
                "missing-image",
                &format!("{field}.image"),
                "the API server requires an image; svcnet runs no images, so it only warns",
            );
        }
        containers.push(Container {
            name: c.name.clone(),
            image,
            ports,
            readiness_probe,
        });
    }
    for (field, v) in [
        ("hostname", spec.hostname.as_deref()),
        ("subdomain", spec.subdomain.as_deref()),
    ] {
        if let Some(v) = v
            && let Err(e) = names::dns1123_label(v)
        {
            cx.error(
                "invalid-name",
                &format!("{prefix}.{field}"),
                format!("Invalid value: {e}"),
            );
        }
    }
    let host_network = spec.host_network.unwrap_or(false);
    let dns_policy = match spec.dns_policy.as_deref() {
        None | Some("ClusterFirst") => DnsPolicy::ClusterFirst,
        Some("ClusterFirstWithHostNet") => DnsPolicy::ClusterFirstWithHostNet,
        Some("Default") => DnsPolicy::Default,
        Some("None") => DnsPolicy::None,
        Some(other) => {
            cx.error(
                "invalid-value",
                &format!("{prefix}.dnsPolicy"),
                format!("Unsupported value: {other:?}: supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""),
            );
            DnsPolicy::ClusterFirst
        }
    };
    let dns_config = spec.dns_config.as_ref().map(|c| {
        let field = format!("{prefix}.dnsConfig");
        let mut out = PodDnsConfig::default();
        for (i, s) in c.nameservers.iter().flatten().enumerate() {
            if let Some(ip) = cx.ip(&format!("{field}.nameservers[{i}]"), s) {
                out.nameservers.push(ip);
            }
        }
        if out.nameservers.len() > 3 {
            cx.error(
                "invalid-value",
                &format!("{field}.nameservers"),
                format!("Invalid value: must not have more than 3 nameservers (has {})", out.nameservers.len()),
            );
        }
        for (i, s) in c.searches.iter().flatten().enumerate() {
            let clean = s.strip_suffix('.').unwrap_or(s);
            if let Err(e) = names::dns1123_subdomain(clean) {
                cx.error("invalid-value", &format!("{field}.searches[{i}]"), format!("Invalid value: {e}"));
            }
            out.searches.push(s.clone());
        }
        if out.searches.len() > 32 {
            cx.error(
                "invalid-value",
                &format!("{field}.searches"),
                "Invalid value: must not have more than 32 search paths",
            );
        }
        let total: usize = out.searches.iter().map(|s| s.len() + 1).sum();
        if total > 2048 {
            cx.error(
                "invalid-value",
                &format!("{field}.searches"),
                "Invalid value: must not have more than 2048 characters (including spaces) in the search list",
            );
        }
        for (i, o) in c.options.iter().flatten().enumerate() {
            match o.name.as_deref() {
                None | Some("") => cx.error(
                    "missing-field",
                    &format!("{field}.options[{i}].name"),
                    "Required value: must not be empty",
                ),
                Some(name) => {
                    if name == "ndots" {
                        match o.value.as_deref().map(str::parse::<i64>) {
                            Some(Ok(n)) if n >= 0 => {}
                            _ => cx.error(
                                "invalid-value",
                                &format!("{field}.options[{i}].value"),
                                "Invalid value: ndots must be a non-negative integer",
                            ),
                        }
                    }
                    out.options.push((name.to_string(), o.value.clone()));
                }
            }
        }
        out
    });
    if dns_policy == DnsPolicy::None {
        let empty = dns_config.as_ref().is_none_or(|c| c.nameservers.is_empty());
        if dns_config.is_none() {
            cx.error(
                "missing-field",
                &format!("{prefix}.dnsConfig"),
                "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
            );
        } else if empty {
            cx.error(
                "missing-field",
                &format!("{prefix}.dnsConfig.nameservers"),
                "Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
            );
        }
    }
    PodSpecInfo {
        containers: Arc::new(containers),
        host_network,
        hostname: spec.hostname.clone().filter(|s| !s.is_empty()),
        subdomain: spec.subdomain.clone().filter(|s| !s.is_empty()),
        dns_policy,
        dns_config,
        node_name: spec.node_name.clone().filter(|s| !s.is_empty()),
    }
}

fn probe(cx: &mut Ctx<'_>, field: &str, p: &core::Probe) -> Option<Probe> {
    let mut actions = Vec::new();
    if let Some(h) = &p.http_get {
        let port = cx.port_ref(&format!("{field}.httpGet.port"), &h.port);
        let https = match h.scheme.as_deref() {
            None | Some("HTTP") => false,
            Some("HTTPS") => true,
            Some(other) => {
                cx.error(
                    "invalid-value",
                    &format!("{field}.httpGet.scheme"),
                    format!("Unsupported value: {other:?}: supported values: \"HTTP\", \"HTTPS\""),
                );
                false
            }
        };
        if let Some(port) = port {
            actions.push(ProbeAction::HttpGet {
                path: h
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
                port,
                https,
                headers: h
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|hh| (hh.name.clone(), hh.value.clone()))
                    .collect(),
            });
        }
    }
    if let Some(t) = &p.tcp_socket
        && let Some(port) = cx.port_ref(&format!("{field}.tcpSocket.port"), &t.port)
    {
        actions.push(ProbeAction::TcpSocket { port });
    }
    if let Some(g) = &p.grpc
        && let Some(port) = cx.port(&format!("{field}.grpc.port"), g.port)
    {
        actions.push(ProbeAction::Grpc {
            port,
            service: g.service.clone(),
        });
    }
    if let Some(e) = &p.exec {
        actions.push(ProbeAction::Exec {
            command: e.command.clone().unwrap_or_default(),
        });
    }
    if actions.len() > 1 {
        cx.error(
            "invalid-value",
            field,
            "Forbidden: may not specify more than 1 handler type",
        );
    }
    let Some(action) = actions.into_iter().next() else {
        cx.error(
            "missing-field",
            field,
            "Required value: must specify a handler type (httpGet, tcpSocket, grpc or exec)",
        );
        return None;
    };
    let mut num = |name: &str, v: Option<i32>, default: u32, min: u32| -> u32 {
        match v {
            None => default,
            Some(n) => match u32::try_from(n) {
                Ok(n) if n >= min => n,
                _ => {
                    cx.error(
                        "invalid-value",
                        &format!("{field}.{name}"),
                        format!("Invalid value: {n}: must be greater than or equal to {min}"),
                    );
                    default
                }
            },
        }
    };
    Some(Probe {
        initial_delay_seconds: num("initialDelaySeconds", p.initial_delay_seconds, 0, 0),
        period_seconds: num("periodSeconds", p.period_seconds, 10, 1),
        timeout_seconds: num("timeoutSeconds", p.timeout_seconds, 1, 1),
        success_threshold: num("successThreshold", p.success_threshold, 1, 1),
        failure_threshold: num("failureThreshold", p.failure_threshold, 3, 1),
        action,
    })
}

/// Validates a Pod written directly.
pub(super) fn pod(cx: &mut Ctx<'_>, mut pod: core::Pod) -> Option<Pod> {
    let meta = cx.meta(&mut pod.metadata);
    let spec = pod.spec.clone().unwrap_or_default();
    if pod.spec.is_none() {
        cx.error(
            "missing-field",
            "spec",
            "Required value: a Pod needs a spec",
        );
    }
    let parts = pod_spec(cx, "spec", &spec);
    let status = pod.status.clone().unwrap_or_default();
    let mut ips: Vec<IpAddr> = Vec::new();
    for (i, p) in status.pod_ips.iter().flatten().enumerate() {
        if let Some(ip) = cx.ip(&format!("status.podIPs[{i}].ip"), &p.ip) {
            ips.push(ip);
        }
    }
    if let Some(ip) = status.pod_ip.as_deref().filter(|s| !s.is_empty())
        && let Some(ip) = cx.ip("status.podIP", ip)
    {
        if ips.first().is_some_and(|first| *first != ip) {
            cx.error(
                "invalid-value",
                "status.podIPs[0].ip",
                format!("Invalid value: must match status.podIP ({ip})"),
            );
        }
        if !ips.contains(&ip) {
            ips.insert(0, ip);
        }
    }
    let host_ip = match status.host_ip.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => cx.ip("status.hostIP", s),
        None => None,
    };
    let phase = match status.phase.as_deref() {
        None | Some("Running") => PodPhase::Running,
        Some("Pending") => PodPhase::Pending,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Unknown") => PodPhase::Unknown,
        Some(other) => {
            cx.error(
                "invalid-value",
                "status.phase",
                format!("Unsupported value: {other:?}: supported values: \"Pending\", \"Running\", \"Succeeded\", \"Failed\", \"Unknown\""),
            );
            PodPhase::Unknown
        }
    };
    // A pod written without status is taken as running and ready, as a fresh cluster would
    // make it once its containers start. A written status is kept.
    let ready = match status.conditions.as_ref() {
        Some(conds) => conds
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        None => phase == PodPhase::Running,
    };
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
        });
    cx.ok().then(|| Pod {
        meta,
        node_name: parts.node_name.clone().unwrap_or_default(),
        ips,
        host_ip,
        host_network: parts.host_network,
        hostname: parts.hostname,
        subdomain: parts.subdomain,
        containers: parts.containers,
        phase,
        ready,
        dns_policy: parts.dns_policy,
        dns_config: parts.dns_config,
        template: None,
        owner,
        raw: Arc::new(pod),
    })
}

/// apps/v1 requires `spec.selector`; older APIs defaulted it to the template's labels.
/// svcnet does the same with a warning, so the seed's examples load as written.
/// Returns false when the object cannot be decoded (the error is reported).
pub(super) fn fix_missing_selector(cx: &mut Ctx<'_>) -> bool {
    let has_selector = cx.value_at("/spec/selector").is_some_and(|v| !v.is_null());
    if has_selector {
        return true;
    }
    let Some(labels) = cx
        .value_at("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned()
    else {
        // Decoding reports the missing selector; a template without labels cannot supply one.
        if cx.value_at("/spec").is_some_and(Value::is_object) {
            cx.error(
                "missing-field",
                "spec.selector",
                "Required value: apps/v1 requires a selector, and the pod template has no labels to default it from",
            );
            return false;
        }
        return true;
    };
    cx.warn(
        "defaulted-selector",
        "spec.selector",
        "apps/v1 requires spec.selector (the API server rejects this object); svcnet defaults it to the template's labels, as extensions/v1beta1 did",
    );
    if let Some(spec) = cx.value.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(
            "selector".into(),
            serde_json::json!({ "matchLabels": labels }),
        );
    }
    true
}

/// Shared checks of workloads: selector valid, non-empty, matching the template.
fn workload_selector(
    cx: &mut Ctx<'_>,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    template: &core::PodTemplateSpec,
) -> LabelSelector {
    let Some(sel) = cx.selector("spec.selector", selector) else {
        return LabelSelector::default();
    };
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if sel.is_empty() {
        cx.error(
            "invalid-selector",
            "spec.selector",
            "Invalid value: empty selector is invalid for a workload",
        );
    } else if !sel.matches(&labels) {
        cx.error(
            "selector-template-mismatch",
            "spec.template.metadata.labels",
            format!(
                "Invalid value: {}: `selector` does not match template `labels` ({})",
                crate::selector::format_labels(&labels),
                sel
            ),
        );
    }
    if template.spec.is_none() {
        cx.error("missing-field", "spec.template.spec", "Required value");
    }
    sel
}

fn replicas(cx: &mut Ctx<'_>, replicas: Option<i32>) -> u32 {
    match replicas {
        None => 1,
        Some(n) => u32::try_from(n).unwrap_or_else(|_| {
            cx.error(
                "invalid-value",
                "spec.replicas",
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            );
            0
        }),
    }
}

fn template_check(cx: &mut Ctx<'_>, template: &core::PodTemplateSpec) -> PodSpecInfo {
    match &template.spec {
        Some(spec) => pod_spec(cx, "spec.template.spec", spec),
        None => pod_spec(cx, "spec.template.spec", &core::PodSpec::default()),
    }
}

/// Validates a Deployment.
pub(super) fn deployment(cx: &mut Ctx<'_>, mut d: apps::Deployment) -> Option<Workload> {
    let meta = cx.meta(&mut d.metadata);
    let spec = &d.spec;
    let selector = workload_selector(cx, &spec.selector, &spec.template);
    let replicas = replicas(cx, spec.replicas);
    let pod_spec = template_check(cx, &spec.template);
    cx.ok().then(|| Workload {
        kind: Kind::Deployment,
        meta,
        replicas,
        selector,
        service_name: None,
        template: Arc::new(std::mem::take(&mut d.spec.template)),
        pod_spec,
        template_hash: None,
        raw: WorkloadRaw::Deployment(Arc::new(d)),
    })
}

/// Validates a ReplicaSet.
pub(super) fn replica_set(cx: &mut Ctx<'_>, mut r: apps::ReplicaSet) -> Option<Workload> {
    let meta = cx.meta(&mut r.metadata);
    let template = r.spec.template.take().unwrap_or_default();
    let spec = &r.spec;
    let selector = workload_selector(cx, &spec.selector, &template);
    let replicas = replicas(cx, spec.replicas);
    let pod_spec = template_check(cx, &template);
    cx.ok().then(|| Workload {
        kind: Kind::ReplicaSet,
        meta,
        replicas,
        selector,
        service_name: None,
        template: Arc::new(template),
        pod_spec,
        template_hash: None,
        raw: WorkloadRaw::ReplicaSet(Arc::new(r)),
    })
}

/// Validates a StatefulSet.
pub(super) fn stateful_set(cx: &mut Ctx<'_>, mut s: apps::StatefulSet) -> Option<Workload> {
    let meta = cx.meta(&mut s.metadata);
    let spec = &s.spec;
    let selector = workload_selector(cx, &spec.selector, &spec.template);
    let replicas = replicas(cx, spec.replicas);
    let pod_spec = template_check(cx, &spec.template);
    let service_name = spec.service_name.clone().filter(|s| !s.is_empty());
    if let Some(n) = &service_name
        && let Err(e) = names::dns1123_label(n)
    {
        cx.error(
            "invalid-name",
            "spec.serviceName",
            format!("Invalid value: {e}"),
        );
    }
    if let Err(e) = names::dns1123_label(&meta.name) {
        cx.error(
            "invalid-name",
            "metadata.name",
            format!("Invalid value: StatefulSet pods are named NAME-ORDINAL and that must be a DNS label: {e}"),
        );
    }
    cx.ok().then(|| Workload {
        kind: Kind::StatefulSet,
        meta,
        replicas,
        selector,
        service_name,
        template: Arc::new(std::mem::take(&mut s.spec.template)),
        pod_spec,
        template_hash: None,
        raw: WorkloadRaw::StatefulSet(Arc::new(s)),
    })
}

/// Validates a DaemonSet.
pub(super) fn daemon_set(cx: &mut Ctx<'_>, mut d: apps::DaemonSet) -> Option<Workload> {
    let meta = cx.meta(&mut d.metadata);
    let spec = &d.spec;
    let selector = workload_selector(cx, &spec.selector, &spec.template);
    let pod_spec = template_check(cx, &spec.template);
    cx.ok().then(|| Workload {
        kind: Kind::DaemonSet,
        meta,
        replicas: 0,
        selector,
        service_name: None,
        template: Arc::new(std::mem::take(&mut d.spec.template)),
        pod_spec,
        template_hash: None,
        raw: WorkloadRaw::DaemonSet(Arc::new(d)),
    })
}
