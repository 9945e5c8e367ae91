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

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

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
    let mut merger = Merger::default();
    for raw in raws {
        merger.push(check(raw));
    }
    merger.finish(diags)
}

/// One raw object, checked and converted on its own: everything validation does except
/// the one check across objects (duplicates), which [`Merger`] does in load order.
/// Checking consumes the raw value, so a load can check each file's objects as soon as it
/// is parsed (on any thread) and never hold every parsed document at once.
#[derive(Debug)]
pub struct Checked {
    /// The object's identity and a digest of its content, when it takes part in the
    /// duplicate check (a known kind with a name).
    dup: Option<DupKey>,
    /// Problems found in this object alone.
    diags: Diagnostics,
    /// The converted object, when it had no error.
    item: Option<Item>,
}

#[derive(Debug)]
struct DupKey {
    kind: Kind,
    key: (String, String, String),
    source: Source,
    digest: u64,
}

#[derive(Debug)]
enum Item {
    Namespace(Namespace),
    Node(NodeInput),
    Pod(Pod),
    Workload(Workload),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Vec<EndpointSlice>),
    Ingress(Ingress),
    IngressClass(IngressClass),
    NetworkPolicy(NetworkPolicy),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Other(OtherObject),
}

/// Joins [`Checked`] objects in load order: the first definition of each object wins, the
/// later ones are reported (as repeated or duplicate) instead of their own problems, exactly
/// as one pass over the objects in that order would.
#[derive(Debug, Default)]
pub struct Merger {
    out: Objects,
    diags: Diagnostics,
    /// The first definition of each object and a digest of its content: two manifests of
    /// one object are compared by digest, so no object is kept twice in memory.
    seen: crate::cluster::FastMap<(String, String, String), (Source, u64)>,
}

impl Merger {
    /// Adds the next object, in load order.
    pub fn push(&mut self, c: Checked) {
        if let Some(dup) = c.dup {
            if let Some((first, digest)) = self.seen.get(&dup.key) {
                let (_, ns, name) = &dup.key;
                // The same object written twice (two scenarios sharing a namespace, say)
                // is one object, as `kubectl apply` would leave it; two different objects
                // under one name are an error.
                if *digest == dup.digest {
                    self.diags.push(
                        Diagnostic::notice(
                            "repeated-object",
                            dup.source,
                            format!("the same object is already defined at {first}; kept once"),
                        )
                        .on(ObjectRef::new(dup.kind, ns, name)),
                    );
                } else {
                    self.diags.push(
                        Diagnostic::error(
                            "duplicate-object",
                            dup.source,
                            format!("Duplicate value: already defined, differently, at {first}"),
                        )
                        .on(ObjectRef::new(dup.kind, ns, name))
                        .field("metadata.name"),
                    );
                }
                return;
            }
            self.seen.insert(dup.key, (dup.source, dup.digest));
        }
        self.diags.extend(c.diags);
        let out = &mut self.out;
        match c.item {
            None => {}
            Some(Item::Namespace(o)) => out.namespaces.push(o),
            Some(Item::Node(o)) => out.nodes.push(o),
            Some(Item::Pod(o)) => out.pods.push(o),
            Some(Item::Workload(o)) => out.workloads.push(o),
            Some(Item::Service(o)) => out.services.push(o),
            Some(Item::EndpointSlice(o)) => out.endpoint_slices.push(o),
            Some(Item::Endpoints(o)) => out.endpoint_slices.extend(o),
            Some(Item::Ingress(o)) => out.ingresses.push(o),
            Some(Item::IngressClass(o)) => out.ingress_classes.push(o),
            Some(Item::NetworkPolicy(o)) => out.network_policies.push(o),
            Some(Item::Secret(o)) => out.secrets.push(o),
            Some(Item::ConfigMap(o)) => out.config_maps.push(o),
            Some(Item::Other(o)) => out.others.push(o),
        }
    }

    /// The objects joined so far; their problems go to `diags`.
    pub fn finish(self, diags: &mut Diagnostics) -> Objects {
        diags.extend(self.diags);
        self.out
    }
}

/// Manifests read and validated by [`read_paths`].
#[derive(Debug, Default)]
pub struct Loaded {
    /// The validated objects (those without errors).
    pub objects: Objects,
    /// Problems reading and parsing the files.
    pub read_diagnostics: Diagnostics,
    /// Problems validating the objects.
    pub diagnostics: Diagnostics,
    /// The files read (for watching).
    pub files: Vec<std::path::PathBuf>,
    /// How many objects were read (List items counted one by one), before validation.
    pub raw_objects: usize,
}

/// Reads every path as [`crate::load::read_paths`] does and validates every object as
/// [`validate`] does, with the same outcome, but checks each file's objects on the thread
/// that parsed it, as soon as it is parsed: parsed documents never pile up in memory, and
/// the decoding into Kubernetes types runs on every core.
pub fn read_paths(paths: &[std::path::PathBuf]) -> Loaded {
    let mut read = crate::load::Manifests::default();
    let parts = crate::load::read_paths_with(paths, &mut read, |part| {
        let checked: Vec<Checked> = part.objects.into_iter().map(check).collect();
        (part.diagnostics, checked)
    });
    let mut read_diagnostics = read.diagnostics;
    let mut merger = Merger::default();
    let mut raw_objects = 0;
    for (diags, checked) in parts {
        raw_objects += checked.len();
        read_diagnostics.extend(diags);
        for c in checked {
            merger.push(c);
        }
    }
    let mut diagnostics = Diagnostics::default();
    let objects = merger.finish(&mut diagnostics);
    Loaded {
        objects,
        read_diagnostics,
        diagnostics,
        files: read.files,
        raw_objects,
    }
}

/// Checks and converts one object on its own (see [`Checked`]).
pub fn check(mut raw: RawObject) -> Checked {
    let mut diags = Diagnostics::default();
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
        return Checked {
            dup: None,
            diags,
            item: None,
        };
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
        return Checked {
            dup: None,
            diags,
            item: Some(Item::Other(obj)),
        };
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
        return Checked {
            dup: None,
            diags,
            item: None,
        };
    }
    // Duplicate objects: the first one wins, the others are errors (see `Merger`).
    let ns = if kind.namespaced() {
        match raw.namespace() {
            "" => "default".to_string(),
            ns => ns.to_string(),
        }
    } else {
        String::new()
    };
    let key = (kind_str, ns, raw.name().to_string());
    let obj = ObjectRef::new(kind, &key.1, &key.2);
    let dup = (!key.2.is_empty()).then(|| DupKey {
        kind,
        digest: object_digest(&raw.value),
        key,
        source: raw.source.clone(),
    });
    let value = std::mem::take(&mut raw.value);
    let mut cx = Ctx::new(&raw, kind, obj, value, &mut diags);
    let item = match kind {
        Kind::Namespace => cx
            .decode()
            .and_then(|o| misc::namespace(&mut cx, o))
            .map(Item::Namespace),
        Kind::Node => cx
            .decode()
            .and_then(|o| misc::node(&mut cx, o))
            .map(Item::Node),
        Kind::Pod => cx
            .decode()
            .and_then(|o| pod::pod(&mut cx, o))
            .map(Item::Pod),
        Kind::Deployment => pod::fix_missing_selector(&mut cx)
            .then(|| cx.decode())
            .flatten()
            .and_then(|o| pod::deployment(&mut cx, o))
            .map(Item::Workload),
        Kind::ReplicaSet => pod::fix_missing_selector(&mut cx)
            .then(|| cx.decode())
            .flatten()
            .and_then(|o| pod::replica_set(&mut cx, o))
            .map(Item::Workload),
        Kind::StatefulSet => pod::fix_missing_selector(&mut cx)
            .then(|| cx.decode())
            .flatten()
            .and_then(|o| pod::stateful_set(&mut cx, o))
            .map(Item::Workload),
        Kind::DaemonSet => pod::fix_missing_selector(&mut cx)
            .then(|| cx.decode())
            .flatten()
            .and_then(|o| pod::daemon_set(&mut cx, o))
            .map(Item::Workload),
        Kind::Service => cx
            .decode()
            .and_then(|o| service::service(&mut cx, o))
            .map(Item::Service),
        Kind::EndpointSlice => cx
            .decode()
            .and_then(|o| misc::endpoint_slice(&mut cx, o))
            .map(Item::EndpointSlice),
        Kind::Endpoints => cx
            .decode()
            .and_then(|o| misc::endpoints(&mut cx, o))
            .map(Item::Endpoints),
        Kind::Ingress => {
            ingress::fix_missing_path_type(&mut cx);
            cx.decode()
                .and_then(|o| ingress::ingress(&mut cx, o))
                .map(Item::Ingress)
        }
        Kind::IngressClass => cx
            .decode()
            .and_then(|o| ingress::ingress_class(&mut cx, o))
            .map(Item::IngressClass),
        Kind::NetworkPolicy => cx
            .decode()
            .and_then(|o| policy::network_policy(&mut cx, o))
            .map(Item::NetworkPolicy),
        Kind::Secret => cx
            .decode()
            .and_then(|o| misc::secret(&mut cx, o))
            .map(Item::Secret),
        Kind::ConfigMap => cx
            .decode()
            .and_then(|o| misc::config_map(&mut cx, o))
            .map(Item::ConfigMap),
    };
    Checked { dup, diags, item }
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
    pub(crate) fn meta(&mut self, m: &mut meta::ObjectMeta) -> Meta {
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
        let labels = m.labels.take().unwrap_or_default();
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
        let annotations = m.annotations.take().unwrap_or_default();
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
            labels: Arc::new(labels),
            annotations: Arc::new(annotations),
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
                // Tagged by representation, as its text would be (1 and 1.0 differ),
                // without formatting it.
                if let Some(i) = n.as_u64() {
                    mix(h, b"#u");
                    mix(h, &i.to_le_bytes());
                } else if let Some(i) = n.as_i64() {
                    mix(h, b"#i");
                    mix(h, &i.to_le_bytes());
                } else {
                    mix(h, b"#f");
                    mix(h, &n.as_f64().unwrap_or(f64::NAN).to_bits().to_le_bytes());
                }
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
