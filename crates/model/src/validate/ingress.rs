//! Ingresses and IngressClasses.

use std::sync::Arc;

use k8s_openapi::api::networking::v1 as net;
use serde_json::Value;

use super::{Ctx, annotation_true};
use crate::names;
use crate::types::*;

/// networking.k8s.io/v1 requires `pathType`; v1beta1 defaulted it to ImplementationSpecific.
/// svcnet does the same, with a warning, so the seed's examples load as written.
pub(super) fn fix_missing_path_type(cx: &mut Ctx<'_>) {
    let mut missing = Vec::new();
    if let Some(rules) = cx
        .value
        .pointer_mut("/spec/rules")
        .and_then(Value::as_array_mut)
    {
        for (i, rule) in rules.iter_mut().enumerate() {
            let Some(paths) = rule
                .pointer_mut("/http/paths")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for (j, path) in paths.iter_mut().enumerate() {
                if let Some(obj) = path.as_object_mut()
                    && obj.get("pathType").is_none_or(Value::is_null)
                {
                    obj.insert("pathType".into(), Value::from("ImplementationSpecific"));
                    missing.push(format!("spec.rules[{i}].http.paths[{j}]"));
                }
            }
        }
    }
    for field in missing {
        cx.warn(
            "defaulted-path-type",
            &field,
            "pathType is required by networking.k8s.io/v1 (the API server rejects this object); svcnet defaults it to ImplementationSpecific, as v1beta1 did, which svcnet matches as Prefix",
        );
    }
}

fn backend(cx: &mut Ctx<'_>, field: &str, b: &net::IngressBackend) -> Option<IngressBackend> {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => {
            cx.error(
                "invalid-backend",
                field,
                "Invalid value: cannot set both `service` and `resource` backends",
            );
            None
        }
        (None, None) => {
            cx.error(
                "invalid-backend",
                field,
                "Invalid value: one backend (`service` or `resource`) must be specified",
            );
            None
        }
        (Some(s), None) => {
            if let Err(e) = names::dns1035_label(&s.name) {
                cx.error(
                    "invalid-name",
                    &format!("{field}.service.name"),
                    format!("Invalid value: {e}"),
                );
            }
            let port = match s.port.as_ref().map(|p| (p.number, p.name.as_deref())) {
                Some((Some(_), Some(_))) => {
                    cx.error(
                        "invalid-backend",
                        &format!("{field}.service.port"),
                        "Invalid value: cannot set both port name & port number",
                    );
                    return None;
                }
                Some((Some(n), None)) => {
                    BackendPort::Number(cx.port(&format!("{field}.service.port.number"), n)?)
                }
                Some((None, Some(name))) => {
                    if let Err(e) = names::dns1123_label(name) {
                        cx.error(
                            "invalid-name",
                            &format!("{field}.service.port.name"),
                            format!("Invalid value: {e}"),
                        );
                    }
                    BackendPort::Name(name.to_string())
                }
                _ => {
                    cx.error(
                        "invalid-backend",
                        &format!("{field}.service.port"),
                        "Required value: port name or number is required",
                    );
                    return None;
                }
            };
            Some(IngressBackend::Service {
                name: s.name.clone(),
                port,
            })
        }
        (None, Some(r)) => Some(IngressBackend::Resource {
            api_group: r.api_group.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
        }),
    }
}

fn host(cx: &mut Ctx<'_>, field: &str, h: &str) -> String {
    if h.parse::<std::net::IpAddr>().is_ok() {
        cx.error(
            "invalid-host",
            field,
            format!("Invalid value: {h:?}: must be a DNS name, not an IP address"),
        );
    } else if let Err(e) = names::host_name(h, true) {
        cx.error("invalid-host", field, format!("Invalid value: {e}"));
    }
    h.to_ascii_lowercase()
}

/// Path rules of the API server for Exact and Prefix paths.
fn check_path(cx: &mut Ctx<'_>, field: &str, path: &str, path_type: PathType) {
    match path_type {
        PathType::Exact | PathType::Prefix => {
            if !path.starts_with('/') {
                cx.error(
                    "invalid-path",
                    field,
                    format!("Invalid value: {path:?}: must be an absolute path"),
                );
                return;
            }
            for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                if path.contains(bad) {
                    cx.error(
                        "invalid-path",
                        field,
                        format!("Invalid value: {path:?}: must not contain '{bad}'"),
                    );
                }
            }
            for bad in ["/..", "/."] {
                if path.ends_with(bad) {
                    cx.error(
                        "invalid-path",
                        field,
                        format!("Invalid value: {path:?}: cannot end with '{bad}'"),
                    );
                }
            }
        }
        PathType::ImplementationSpecific => {
            if !path.is_empty() && !path.starts_with('/') {
                cx.error(
                    "invalid-path",
                    field,
                    format!("Invalid value: {path:?}: must be an absolute path"),
                );
            }
        }
    }
}

/// Validates an Ingress.
pub(super) fn ingress(cx: &mut Ctx<'_>, mut ing: net::Ingress) -> Option<Ingress> {
    let meta = cx.meta(&mut ing.metadata);
    let spec = ing.spec.clone().unwrap_or_default();
    let annotation_class = meta.annotations.get("kubernetes.io/ingress.class").cloned();
    let class_name = match (spec.ingress_class_name.clone(), annotation_class) {
        (Some(c), Some(a)) if c != a => {
            cx.error(
                "invalid-value",
                "spec.ingressClassName",
                format!("Invalid value: {c:?}: can not be set when the class field is also set ({a:?} in annotation kubernetes.io/ingress.class)"),
            );
            Some(c)
        }
        (Some(c), _) => Some(c),
        (None, a) => a,
    };
    let default_backend = spec
        .default_backend
        .as_ref()
        .and_then(|b| backend(cx, "spec.defaultBackend", b));
    let mut rules = Vec::new();
    for (i, r) in spec.rules.iter().flatten().enumerate() {
        let field = format!("spec.rules[{i}]");
        let host = r
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(|h| host(cx, &format!("{field}.host"), h));
        let mut paths = Vec::new();
        if let Some(http) = &r.http {
            if http.paths.is_empty() {
                cx.error(
                    "missing-field",
                    &format!("{field}.http.paths"),
                    "Required value: at least one path is required",
                );
            }
            for (j, p) in http.paths.iter().enumerate() {
                let pf = format!("{field}.http.paths[{j}]");
                let path_type = match p.path_type.as_str() {
                    "Exact" => PathType::Exact,
                    "Prefix" => PathType::Prefix,
                    "ImplementationSpecific" => PathType::ImplementationSpecific,
                    other => {
                        cx.error(
                            "invalid-value",
                            &format!("{pf}.pathType"),
                            format!("Unsupported value: {other:?}: supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""),
                        );
                        continue;
                    }
                };
                let path = p.path.clone().unwrap_or_default();
                check_path(cx, &format!("{pf}.path"), &path, path_type);
                let path = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                if let Some(backend) = backend(cx, &format!("{pf}.backend"), &p.backend) {
                    paths.push(IngressPath {
                        path,
                        path_type,
                        backend,
                    });
                }
            }
        }
        rules.push(IngressRule { host, paths });
    }
    if rules.is_empty() && default_backend.is_none() {
        cx.error(
            "missing-field",
            "spec",
            "Invalid value: either `defaultBackend` or `rules` must be specified",
        );
    }
    let mut tls = Vec::new();
    for (i, t) in spec.tls.iter().flatten().enumerate() {
        let hosts = t
            .hosts
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, h)| host(cx, &format!("spec.tls[{i}].hosts[{j}]"), h))
            .collect();
        let secret_name = t.secret_name.clone().filter(|s| !s.is_empty());
        if let Some(s) = &secret_name
            && let Err(e) = names::dns1123_subdomain(s)
        {
            cx.error(
                "invalid-name",
                &format!("spec.tls[{i}].secretName"),
                format!("Invalid value: {e}"),
            );
        }
        tls.push(IngressTls { hosts, secret_name });
    }
    cx.ok().then(|| Ingress {
        meta,
        class_name,
        default_backend,
        tls,
        rules,
        raw: Arc::new(ing),
    })
}

/// Validates an IngressClass.
pub(super) fn ingress_class(cx: &mut Ctx<'_>, mut c: net::IngressClass) -> Option<IngressClass> {
    let meta = cx.meta(&mut c.metadata);
    let controller = c
        .spec
        .as_ref()
        .and_then(|s| s.controller.clone())
        .unwrap_or_default();
    if controller.is_empty() {
        cx.error("missing-field", "spec.controller", "Required value");
    } else if controller.len() > 250 || !controller.contains('/') {
        cx.error(
            "invalid-value",
            "spec.controller",
            format!("Invalid value: {controller:?}: must be a domain-prefixed path (such as \"acme.io/foo\") of at most 250 characters"),
        );
    }
    let is_default = annotation_true(
        &meta.annotations,
        "ingressclass.kubernetes.io/is-default-class",
    );
    cx.ok().then(|| IngressClass {
        meta,
        controller,
        is_default,
        raw: Arc::new(c),
    })
}
