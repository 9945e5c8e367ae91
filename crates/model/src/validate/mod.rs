//! Validation and defaulting: Kubernetes objects in, svcnet's types out.
//!
//! Each object is decoded into its k8s-openapi type, defaulted as the API server would
//! default it, and checked with the API server's own rules. Every problem becomes a
//! [`Diagnostic`] naming file, line, object and field; validation never stops at the first
//! problem, so one run shows them all.

mod ingress;
mod misc;
mod pod;
mod policy;
mod service;

pub use misc::NAMESPACE_NAME_LABEL;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diag::{Diagnostic, Diagnostics, ObjectRef, Severity, Source};
use crate::kind::Kind;
use crate::load::RawObject;
use crate::names;
use crate::types::*;

/// A node as declared, before addresses are allocated.
#[derive(Clone, Debug)]
pub struct NodeInput {
    /// Metadata.
    pub meta: Meta,
    /// InternalIP from `status.addresses`, when given.
    pub internal_ip: Option<IpAddr>,
    /// `spec.podCIDRs`, when given.
    pub pod_cidrs: Vec<ipnet::IpNet>,
    /// False when cordoned.
    pub schedulable: bool,
    /// The manifest.
    pub raw: std::sync::Arc<k8s_openapi::api::core::v1::Node>,
}

/// Every object of a manifest set, validated, before derivation. Pods and Services may
/// still lack addresses here; [`crate::derive`] allocates them.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// Declared namespaces.
    pub namespaces: Vec<Namespace>,
    /// Declared nodes.
    pub nodes: Vec<NodeInput>,
    /// Pods written directly.
    pub pods: Vec<Pod>,
    /// Deployments, ReplicaSets, StatefulSets, DaemonSets.
    pub workloads: Vec<Workload>,
    /// Services (addresses as written; allocation comes later).
    pub services: Vec<Service>,
    /// EndpointSlices written directly, and Endpoints converted to slices.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Ingresses.
    pub ingresses: Vec<Ingress>,
    /// IngressClasses.
    pub ingress_classes: Vec<IngressClass>,
    /// NetworkPolicies.
    pub network_policies: Vec<NetworkPolicy>,
    /// Secrets.
    pub secrets: Vec<Secret>,
    /// ConfigMaps.
    pub config_maps: Vec<ConfigMap>,
    /// Objects of kinds svcnet does not use.
    pub others: Vec<OtherObject>,
}

/// Validates every raw object. Problems go to `diags`; objects with errors are left out
/// (the caller refuses the whole set when `diags` has errors).
pub fn validate(raws: Vec<RawObject>, diags: &mut Diagnostics) -> Objects {
    let mut out = Objects::default();
    // The first definition of each object and a digest of its content: two manifests of
    // one object are compared by digest, so no object is kept twice in memory.
    let mut seen: HashMap<(String, String, String), (Source, u64)> = HashMap::new();
    for mut raw in raws {
        let (Some(kind_str), Some(api_version)) = (
            raw.kind().map(str::to_string),
            raw.api_version().map(str::to_string),
        ) else {
            let missing = if raw.kind().is_none() {
                "kind"
            } else {
                "apiVersion"
            };
            let field = missing.to_string();
            diags.push(
                Diagnostic::error(
                    "missing-field",
                    raw.source.clone(),
                    format!("Required value: every manifest needs `apiVersion` and `kind` ({missing} is missing or not a string)"),
                )
                .on(raw.object_ref())
                .field(field),
            );
            continue;
        };
        let Some(kind) = Kind::from_kind(&kind_str) else {
            let obj = OtherObject {
                api_version,
                kind: kind_str.clone(),
                namespace: raw.namespace().to_string(),
                name: raw.name().to_string(),
                source: raw.source.clone(),
                raw: std::sync::Arc::new(std::mem::take(&mut raw.value)),
            };
            diags.push(
                Diagnostic::notice(
                    "unused-kind",
                    obj.source.clone(),
                    format!("{} is not used by svcnet; kept as written", obj.kind),
                )
                .on(ObjectRef {
                    kind: obj.kind.clone(),
                    namespace: obj.namespace.clone(),
                    name: obj.name.clone(),
                }),
            );
            out.others.push(obj);
            continue;
        };
        if api_version != kind.api_version() {
            diags.push(
                Diagnostic::error(
                    "unsupported-api-version",
                    raw.source_of("apiVersion"),
                    format!(
                        "{api_version} is not served for {kind}; use apiVersion: {}",
                        kind.api_version()
                    ),
                )
                .on(raw.object_ref())
                .field("apiVersion"),
            );
            continue;
        }
        // Duplicate objects: the first one wins, the others are errors.
        let ns = if kind.namespaced() {
            match raw.namespace() {
                "" => "default".to_string(),
                ns => ns.to_string(),
            }
        } else {
            String::new()
        };
        let key = (kind_str.clone(), ns, raw.name().to_string());
        let (_, key_ns, key_name) = key.clone();
        if !key.2.is_empty() {
            if let Some((first, digest)) = seen.get(&key) {
                // The same object written twice (two scenarios sharing a namespace, say)
                // is one object, as `kubectl apply` would leave it; two different objects
                // under one name are an error.
                if *digest == object_digest(&raw.value) {
                    diags.push(
                        Diagnostic::notice(
                            "repeated-object",
                            raw.source.clone(),
                            format!("the same object is already defined at {first}; kept once"),
                        )
                        .on(ObjectRef::new(kind, &key.1, &key.2)),
                    );
                } else {
                    diags.push(
                        Diagnostic::error(
                            "duplicate-object",
                            raw.source.clone(),
                            format!("Duplicate value: already defined, differently, at {first}"),
                        )
                        .on(ObjectRef::new(kind, &key.1, &key.2))
                        .field("metadata.name"),
                    );
                }
                continue;
            }
            seen.insert(key, (raw.source.clone(), object_digest(&raw.value)));
        }
        let obj = ObjectRef::new(kind, &key_ns, &key_name);
        let value = std::mem::take(&mut raw.value);
        let mut cx = Ctx::new(&raw, kind, obj, value, diags);
        match kind {
            Kind::Namespace => {
                if let Some(o) = cx.decode().and_then(|o| misc::namespace(&mut cx, o)) {
                    out.namespaces.push(o)
                }
            }
            Kind::Node => {
                if let Some(o) = cx.decode().and_then(|o| misc::node(&mut cx, o)) {
                    out.nodes.push(o)
                }
            }
            Kind::Pod => {
                if let Some(o) = cx.decode().and_then(|o| pod::pod(&mut cx, o)) {
                    out.pods.push(o)
                }
            }
            Kind::Deployment => {
                if let Some(o) = pod::fix_missing_selector(&mut cx)
                    .then(|| cx.decode())
                    .flatten()
                    .and_then(|o| pod::deployment(&mut cx, o))
                {
                    out.workloads.push(o)
                }
            }
            Kind::ReplicaSet => {
                if let Some(o) = pod::fix_missing_selector(&mut cx)
                    .then(|| cx.decode())
                    .flatten()
                    .and_then(|o| pod::replica_set(&mut cx, o))
                {
                    out.workloads.push(o)
                }
            }
            Kind::StatefulSet => {
                if let Some(o) = pod::fix_missing_selector(&mut cx)
                    .then(|| cx.decode())
                    .flatten()
                    .and_then(|o| pod::stateful_set(&mut cx, o))
                {
                    out.workloads.push(o)
                }
            }
            Kind::DaemonSet => {
                if let Some(o) = pod::fix_missing_selector(&mut cx)
                    .then(|| cx.decode())
                    .flatten()
                    .and_then(|o| pod::daemon_set(&mut cx, o))
                {
                    out.workloads.push(o)
                }
            }
            Kind::Service => {
                if let Some(o) = cx.decode().and_then(|o| service::service(&mut cx, o)) {
                    out.services.push(o)
                }
            }
            Kind::EndpointSlice => {
                if let Some(o) = cx.decode().and_then(|o| misc::endpoint_slice(&mut cx, o)) {
                    out.endpoint_slices.push(o)
                }
            }
            Kind::Endpoints => {
                if let Some(o) = cx.decode().and_then(|o| misc::endpoints(&mut cx, o)) {
                    out.endpoint_slices.extend(o)
                }
            }
            Kind::Ingress => {
                ingress::fix_missing_path_type(&mut cx);
                if let Some(o) = cx.decode().and_then(|o| ingress::ingress(&mut cx, o)) {
                    out.ingresses.push(o)
                }
            }
            Kind::IngressClass => {
                if let Some(o) = cx.decode().and_then(|o| ingress::ingress_class(&mut cx, o)) {
                    out.ingress_classes.push(o)
                }
            }
            Kind::NetworkPolicy => {
                if let Some(o) = cx.decode().and_then(|o| policy::network_policy(&mut cx, o)) {
                    out.network_policies.push(o)
                }
            }
            Kind::Secret => {
                if let Some(o) = cx.decode().and_then(|o| misc::secret(&mut cx, o)) {
                    out.secrets.push(o)
                }
            }
            Kind::ConfigMap => {
                if let Some(o) = cx.decode().and_then(|o| misc::config_map(&mut cx, o)) {
                    out.config_maps.push(o)
                }
            }
        }
    }
    out
}

/// Validation context for one object: reports problems with file, line, object and field.
pub(crate) struct Ctx<'a> {
    pub(crate) raw: &'a RawObject,
    pub(crate) kind: Kind,
    pub(crate) obj: ObjectRef,
    pub(crate) value: Value,
    diags: &'a mut Diagnostics,
    errors: usize,
}

impl<'a> Ctx<'a> {
    fn new(
        raw: &'a RawObject,
        kind: Kind,
        obj: ObjectRef,
        value: Value,
        diags: &'a mut Diagnostics,
    ) -> Self {
        Ctx {
            raw,
            kind,
            obj,
            value,
            diags,
            errors: 0,
        }
    }

    /// Decodes the (possibly fixed-up) value into its k8s-openapi type.
    fn decode<T: DeserializeOwned>(&mut self) -> Option<T> {
        let value = std::mem::take(&mut self.value);
        let mut unknown: Vec<String> = Vec::new();
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(field_path(&path));
        let ignored = serde_ignored::Deserializer::new(value, &mut on_unknown);
        let result = serde_path_to_error::deserialize::<_, T>(ignored);
        for field in unknown {
            let name = crate::load::parse_field_path(&field)
                .pop()
                .map(|s| match s {
                    crate::load::PathSegment::Key(k) => k,
                    crate::load::PathSegment::Index(i) => i.to_string(),
                })
                .unwrap_or_default();
            // kubectl's default --validate=strict rejects unknown fields; svcnet warns, so
            // that manifests written for a newer API still load.
            self.warn(
                "unknown-field",
                &field,
                format!("unknown field {name:?} is ignored (a typo? kubectl --validate=strict would reject it)"),
            );
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let field = e.path().to_string();
                let field = if field == "." { String::new() } else { field };
                let message = decode_message(&e.into_inner().to_string());
                self.error("malformed-field", &field, message);
                None
            }
        }
    }

    /// Reports an error at a field.
    pub(crate) fn error(&mut self, code: &'static str, field: &str, message: impl Into<String>) {
        self.errors += 1;
        self.push(Severity::Error, code, field, message.into());
    }

    /// Reports a warning at a field.
    pub(crate) fn warn(&mut self, code: &'static str, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, code, field, message.into());
    }

    fn push(&mut self, severity: Severity, code: &'static str, field: &str, message: String) {
        let source = if field.is_empty() {
            self.raw.source.clone()
        } else {
            self.raw.source_of(field)
        };
        self.diags.push(Diagnostic {
            severity,
            code,
            source,
            object: Some(self.obj.clone()),
            field: (!field.is_empty()).then(|| field.to_string()),
            message,
        });
    }

    /// True when no error was reported for this object.
    pub(crate) fn ok(&self) -> bool {
        self.errors == 0
    }

    /// Validates metadata and converts it.
    pub(crate) fn meta(&mut self, m: &meta::ObjectMeta) -> Meta {
        let name = m.name.clone().unwrap_or_default();
        if name.is_empty() {
            if m.generate_name.is_some() {
                self.error(
                    "missing-name",
                    "metadata.name",
                    "Required value: generateName is not supported in manifests svcnet reads; give the object a name",
                );
            } else {
                self.error(
                    "missing-name",
                    "metadata.name",
                    "Required value: name or generateName is required",
                );
            }
        } else {
            let check = match self.kind {
                Kind::Namespace => names::dns1123_label(&name),
                Kind::Service => names::dns1035_label(&name),
                _ => names::dns1123_subdomain(&name),
            };
            if let Err(e) = check {
                self.error(
                    "invalid-name",
                    "metadata.name",
                    format!("Invalid value: {e}"),
                );
            }
        }
        let namespace = if self.kind.namespaced() {
            let ns = m.namespace.clone().unwrap_or_else(|| "default".to_string());
            if let Err(e) = names::dns1123_label(&ns) {
                self.error(
                    "invalid-name",
                    "metadata.namespace",
                    format!("Invalid value: {e}"),
                );
            }
            ns
        } else {
            if m.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) {
                self.warn(
                    "ignored-field",
                    "metadata.namespace",
                    format!(
                        "{} objects are cluster-scoped; the namespace is ignored",
                        self.kind
                    ),
                );
            }
            String::new()
        };
        let labels = m.labels.clone().unwrap_or_default();
        for (k, v) in &labels {
            if let Err(e) = names::qualified_name(k) {
                self.error(
                    "invalid-label",
                    &format!("metadata.labels[{k}]"),
                    format!("Invalid value: label key {e}"),
                );
            }
            if let Err(e) = names::label_value(v) {
                self.error(
                    "invalid-label",
                    &format!("metadata.labels[{k}]"),
                    format!("Invalid value: label value {e}"),
                );
            }
        }
        let annotations = m.annotations.clone().unwrap_or_default();
        for k in annotations.keys() {
            if let Err(e) = names::qualified_name(k) {
                self.error(
                    "invalid-annotation",
                    &format!("metadata.annotations[{k}]"),
                    format!("Invalid value: annotation key {e}"),
                );
            }
        }
        Meta {
            name,
            namespace,
            labels,
            annotations,
            creation_timestamp: m.creation_timestamp.as_ref().map(|t| t.0),
            terminating: m.deletion_timestamp.is_some(),
            source: self.raw.source.clone(),
            locator: Some(self.raw.locator.clone()),
        }
    }

    /// Validates a label selector at `field`.
    pub(crate) fn selector(
        &mut self,
        field: &str,
        sel: &meta::LabelSelector,
    ) -> Option<crate::selector::LabelSelector> {
        match crate::selector::LabelSelector::from_k8s(sel) {
            Ok(s) => Some(s),
            Err(errors) => {
                for (f, msg) in errors {
                    self.error("invalid-selector", &format!("{field}.{f}"), msg);
                }
                None
            }
        }
    }

    /// Validates a port number (1-65535).
    pub(crate) fn port(&mut self, field: &str, port: i32) -> Option<u16> {
        match u16::try_from(port) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.error(
                    "invalid-port",
                    field,
                    format!("Invalid value: {port}: must be between 1 and 65535, inclusive"),
                );
                None
            }
        }
    }

    /// Validates a protocol, defaulting to TCP.
    pub(crate) fn protocol(&mut self, field: &str, protocol: Option<&str>) -> Protocol {
        match protocol {
            None => Protocol::Tcp,
            Some(p) => Protocol::parse(p).unwrap_or_else(|| {
                self.error(
                    "invalid-protocol",
                    field,
                    format!(
                        "Unsupported value: {p:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""
                    ),
                );
                Protocol::Tcp
            }),
        }
    }

    /// Validates a port given by number or name.
    pub(crate) fn port_ref(
        &mut self,
        field: &str,
        port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    ) -> Option<PortRef> {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        match port {
            IntOrString::Int(n) => self.port(field, *n).map(PortRef::Number),
            IntOrString::String(s) => {
                if s.parse::<i64>().is_ok() {
                    self.error(
                        "invalid-port",
                        field,
                        format!("Invalid value: {s:?}: a quoted number is read as a port name; write it without quotes"),
                    );
                    return None;
                }
                match names::iana_svc_name(s) {
                    Ok(()) => Some(PortRef::Name(s.clone())),
                    Err(e) => {
                        self.error("invalid-port", field, format!("Invalid value: {e}"));
                        None
                    }
                }
            }
        }
    }

    /// Parses an IP address.
    pub(crate) fn ip(&mut self, field: &str, s: &str) -> Option<IpAddr> {
        match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(
                    "invalid-ip",
                    field,
                    format!("Invalid value: {s:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
                );
                None
            }
        }
    }

    /// Parses a CIDR, warning (and masking) when host bits are set.
    pub(crate) fn cidr(&mut self, field: &str, s: &str) -> Option<ipnet::IpNet> {
        match s.parse::<ipnet::IpNet>() {
            Ok(net) => {
                if net.trunc() != net {
                    self.warn(
                        "cidr-host-bits",
                        field,
                        format!("{s} has host bits set; it is read as {}", net.trunc()),
                    );
                }
                Some(net.trunc())
            }
            Err(_) => {
                self.error(
                    "invalid-cidr",
                    field,
                    format!("Invalid value: {s:?}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
                );
                None
            }
        }
    }

    /// Reads a JSON value of the raw (pre-decode) object.
    pub(crate) fn value_at(&self, pointer: &str) -> Option<&Value> {
        self.value.pointer(pointer)
    }
}

/// A 64-bit digest of an object's content. Two manifests of one object are the same when
/// their digests match; an explicit `namespace: default` is no difference.
fn object_digest(v: &Value) -> u64 {
    fn mix(h: &mut u64, bytes: &[u8]) {
        for b in bytes {
            *h ^= u64::from(*b);
            *h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn walk(v: &Value, in_metadata: bool, h: &mut u64) {
        match v {
            Value::Null => mix(h, b"n"),
            Value::Bool(b) => mix(h, if *b { b"t" } else { b"f" }),
            Value::Number(n) => {
                mix(h, b"#");
                mix(h, n.to_string().as_bytes());
            }
            Value::String(s) => {
                mix(h, b"\"");
                mix(h, s.as_bytes());
                mix(h, b"\"");
            }
            Value::Array(a) => {
                mix(h, b"[");
                for x in a {
                    walk(x, false, h);
                    mix(h, b",");
                }
                mix(h, b"]");
            }
            Value::Object(m) => {
                mix(h, b"{");
                // serde_json's map is ordered by key, so the digest is too.
                for (k, x) in m {
                    if in_metadata && k == "namespace" && x.as_str() == Some("default") {
                        continue;
                    }
                    mix(h, k.as_bytes());
                    mix(h, b":");
                    walk(x, k == "metadata", h);
                    mix(h, b",");
                }
                mix(h, b"}");
            }
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    walk(v, false, &mut h);
    h
}

/// A serde_ignored path as svcnet writes field paths: `spec.ports[0].tragetPort`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let p = field_path(parent);
            if key.contains('.') || key.contains('/') {
                format!("{p}[{key}]")
            } else if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// serde's message, made readable: "missing field `selector`" → "Required value: ...".
fn decode_message(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("Required value: field {rest} is missing");
    }
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        return format!("Invalid value: {msg}");
    }
    msg.to_string()
}

/// Parses a Kubernetes boolean-ish annotation value.
pub(crate) fn annotation_true(annotations: &BTreeMap<String, String>, key: &str) -> bool {
    annotations.get(key).is_some_and(|v| v == "true")
}
