//! Compiles the cluster's Ingresses into a [`RouteTable`].
//!
//! Which Ingresses are served (class selection), their annotations, host and path merging
//! across Ingresses and namespaces, conflicts (oldest wins), canaries, default backends,
//! TLS hosts and backends resolved to ready endpoints. Everything that is not served as
//! written is reported as a [`Finding`].

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use regex::{Regex, RegexBuilder};
use svcnet_model::Cluster;
use svcnet_model::Source;
use svcnet_model::types::{
    AddressType, BackendPort, EndpointPort, EndpointSlice, Ingress, IngressBackend, ObjectKey,
    PathType, PortRef, Protocol, Service, ServicePort, ServiceType,
};

use crate::annotations::parse_annotations;
use crate::hosts::{cert_covers, wildcard_parent};
use crate::paths::prefix_key;
use crate::route::{HostTable, RegexPath, RouteTable};
use crate::table::{
    Backend, CONTROLLER_NAME, Canary, CertSource, ControllerConfig, ExternalTarget, Finding,
    Policy, Route, Severity, TableStats, TlsHost, UpstreamEndpoint,
};

/// Largest compiled size of one regex path (bounds memory for hostile patterns).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The legacy class annotation.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Compiles every Ingress this controller serves into an immutable route table, with a
/// finding for everything not served as written (ignored classes, invalid annotations,
/// conflicts lost, missing backends or Secrets). Pure and deterministic.
pub fn compile(cluster: &Cluster, cfg: &ControllerConfig) -> (RouteTable, Vec<Finding>) {
    let mut b = Builder {
        cluster,
        table: RouteTable::default(),
        findings: Vec::new(),
        slices: HashMap::new(),
        backends: HashMap::new(),
        slots: HashMap::new(),
    };
    b.table.svc_suffix = format!(".svc.{}", cluster.plan.cluster_domain);
    b.table.service_ips = cluster
        .services
        .values()
        .filter_map(|s| {
            let ip = *s.cluster_ip_list().first()?;
            Some((format!("{}.{}", s.meta.name, s.meta.namespace), ip))
        })
        .collect();
    for s in cluster.endpoint_slices.values() {
        b.slices
            .entry((s.meta.namespace.as_str(), s.service_name.as_str()))
            .or_default()
            .push(s);
    }

    let mut selected = b.select(cfg);
    selected.sort_by(|a, c| age_key(a.0).cmp(&age_key(c.0)));
    let prepared: Vec<Prepared<'_>> = selected
        .into_iter()
        .filter_map(|(ing, class)| b.prepare(ing, class))
        .collect();

    // Catch-alls (no rules, only a defaultBackend) first: they own the default server's
    // default backend before host-less rules' Ingresses are considered.
    for p in prepared.iter().filter(|p| p.policy.canary.is_none()) {
        if p.ing.rules.is_empty() {
            b.catch_all(p);
        }
    }
    for p in prepared.iter().filter(|p| p.policy.canary.is_none()) {
        if !p.ing.rules.is_empty() {
            b.primary(p);
        }
    }
    for p in prepared.iter().filter(|p| p.policy.canary.is_some()) {
        b.canary(p);
    }
    b.aliases(&prepared);
    b.tls(&prepared);

    for h in &mut b.table.hosts {
        h.regexes.sort_by_key(|x| std::cmp::Reverse(x.len));
    }
    b.table
        .default_server
        .regexes
        .sort_by_key(|x| std::cmp::Reverse(x.len));
    b.table.stats = TableStats {
        ingresses: b.table.served.len(),
        routes: b.table.routes.len(),
        hosts: b
            .table
            .hosts
            .iter()
            .filter(|h| !h.name.starts_with("*."))
            .count(),
        wildcard_hosts: b.table.wildcard.len(),
    };
    let mut findings = b.findings;
    findings.sort_by(|x, y| {
        (&x.ingress, std::cmp::Reverse(x.severity), &x.field).cmp(&(
            &y.ingress,
            std::cmp::Reverse(y.severity),
            &y.field,
        ))
    });
    (b.table, findings)
}

/// Oldest first: creationTimestamp ascending, Ingresses without one after every timestamped
/// one in file order; ties by namespace/name ascending.
fn age_key(i: &Ingress) -> (bool, Option<jiff::Timestamp>, Option<&Source>, &str, &str) {
    let ts = i.meta.creation_timestamp;
    (
        ts.is_none(),
        ts,
        if ts.is_none() {
            Some(&i.meta.source)
        } else {
            None
        },
        &i.meta.namespace,
        &i.meta.name,
    )
}

fn key_of(i: &Ingress) -> ObjectKey {
    ObjectKey::new(i.meta.namespace.clone(), i.meta.name.clone())
}

/// One served Ingress with its parsed annotations and compiled regex paths.
struct Prepared<'c> {
    ing: &'c Ingress,
    key: ObjectKey,
    class: String,
    policy: Arc<Policy>,
    /// Per rule, per path: the regex when the path is matched as one.
    regexes: Vec<Vec<Option<Regex>>>,
}

/// A backend resolved once per Service and port.
#[derive(Clone)]
struct Resolved {
    service_port: Option<u16>,
    port_name: String,
    endpoints: Vec<UpstreamEndpoint>,
    external: Option<ExternalTarget>,
    unusable: Option<String>,
}

/// Identifies one path of one host across Ingresses: host, path, pathType.
type Slot = (Option<String>, String, PathType);

struct Builder<'c> {
    cluster: &'c Cluster,
    table: RouteTable,
    findings: Vec<Finding>,
    slices: HashMap<(&'c str, &'c str), Vec<&'c EndpointSlice>>,
    backends: HashMap<(String, String, String), Resolved>,
    /// Primary routes by slot, with the Ingress that owns each.
    slots: HashMap<Slot, usize>,
}

impl<'c> Builder<'c> {
    fn finding(&mut self, ingress: &ObjectKey, severity: Severity, field: &str, message: String) {
        self.findings.push(Finding {
            ingress: ingress.clone(),
            severity,
            field: field.to_string(),
            message,
        });
    }

    /// Class selection: IngressClasses of [`CONTROLLER_NAME`] plus `extra_classes`; no class
    /// at all when the manifests define no IngressClass. (The model already gave
    /// class-less Ingresses the default class, as the DefaultIngressClass admission
    /// plugin does.)
    fn select(&mut self, cfg: &ControllerConfig) -> Vec<(&'c Ingress, String)> {
        let cluster = self.cluster;
        let ours: BTreeSet<&str> = cluster
            .ingress_classes
            .values()
            .filter(|c| c.controller == CONTROLLER_NAME)
            .map(|c| c.meta.name.as_str())
            .chain(cfg.extra_classes.iter().map(String::as_str))
            .collect();
        let mut out = Vec::new();
        for ing in cluster.ingresses.values() {
            let key = key_of(ing);
            let spec_class = ing
                .raw
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_deref());
            let field = if spec_class.is_some() {
                "spec.ingressClassName".to_string()
            } else if ing.meta.annotations.contains_key(CLASS_ANNOTATION) {
                format!("metadata.annotations[{CLASS_ANNOTATION}]")
            } else {
                "spec.ingressClassName".to_string()
            };
            match &ing.class_name {
                Some(c) if ours.contains(c.as_str()) => out.push((ing, c.clone())),
                Some(c) => {
                    let how = if spec_class.is_none()
                        && !ing.meta.annotations.contains_key(CLASS_ANNOTATION)
                    {
                        " (the default IngressClass)"
                    } else {
                        ""
                    };
                    let why = match cluster.ingress_classes.get(c) {
                        Some(ic) => format!(
                            "ignored: class {c:?}{how} belongs to controller {:?}, not {CONTROLLER_NAME}",
                            ic.controller
                        ),
                        None => format!(
                            "ignored: IngressClass {c:?} does not exist and is not served with --ingress-class"
                        ),
                    };
                    self.finding(&key, Severity::Notice, &field, why);
                }
                None if cluster.ingress_classes.is_empty() => out.push((ing, String::new())),
                None => self.finding(
                    &key,
                    Severity::Notice,
                    &field,
                    "ignored: no class, and no IngressClass is marked ingressclass.kubernetes.io/is-default-class".to_string(),
                ),
            }
        }
        out
    }

    /// Parses annotations and regex paths; `None` (with an error) when the Ingress cannot
    /// be served.
    fn prepare(&mut self, ing: &'c Ingress, class: String) -> Option<Prepared<'c>> {
        let key = key_of(ing);
        let (policy, issues) = parse_annotations(&ing.meta.annotations);
        let mut broken = false;
        for (name, severity, message) in issues {
            broken |= severity == Severity::Error;
            self.finding(
                &key,
                severity,
                &format!("metadata.annotations[{name}]"),
                message,
            );
        }
        let regex_mode = policy.use_regex || policy.rewrite_target.is_some();
        let mut regexes = Vec::with_capacity(ing.rules.len());
        for (i, rule) in ing.rules.iter().enumerate() {
            let mut per_path = Vec::with_capacity(rule.paths.len());
            for (j, p) in rule.paths.iter().enumerate() {
                if regex_mode && p.path_type == PathType::ImplementationSpecific {
                    match RegexBuilder::new(&format!("^(?:{})", p.path))
                        .case_insensitive(true)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                    {
                        Ok(r) => per_path.push(Some(r)),
                        Err(e) => {
                            broken = true;
                            self.finding(
                                &key,
                                Severity::Error,
                                &format!("spec.rules[{i}].http.paths[{j}].path"),
                                format!("{:?} is not a valid regex: {e}", p.path),
                            );
                            per_path.push(None);
                        }
                    }
                } else {
                    per_path.push(None);
                }
            }
            regexes.push(per_path);
        }
        if broken {
            self.finding(
                &key,
                Severity::Error,
                "metadata",
                "not served: fix the errors above; every other Ingress keeps serving".into(),
            );
            return None;
        }
        Some(Prepared {
            ing,
            key,
            class,
            policy: Arc::new(policy),
            regexes,
        })
    }

    /// The host table for a host as written (`None`: the default server).
    fn host(&mut self, host: Option<&str>) -> Option<usize> {
        let h = host?;
        let t = &mut self.table;
        let map = match h.strip_prefix("*.") {
            Some(parent) => (&mut t.wildcard, parent),
            None => (&mut t.precise, h),
        };
        if let Some(&i) = map.0.get(map.1) {
            return Some(i);
        }
        let i = t.hosts.len();
        map.0.insert(map.1.to_string(), i);
        t.hosts.push(HostTable {
            name: h.to_string(),
            ..HostTable::default()
        });
        Some(i)
    }

    fn host_table(&mut self, idx: Option<usize>) -> &mut HostTable {
        match idx.and_then(|i| self.table.hosts.get_mut(i)) {
            Some(h) => h,
            None => &mut self.table.default_server,
        }
    }

    /// Adds a route: `path` is (path, pathType, matched as regex), `None` for a default
    /// backend.
    fn add_route(
        &mut self,
        p: &Prepared<'_>,
        host: Option<&str>,
        path: Option<(&str, PathType, bool)>,
        backend: &IngressBackend,
        field: &str,
    ) -> usize {
        let backend = self.backend(p, backend, field);
        let id = self.table.routes.len();
        self.table.routes.push(Route {
            id,
            ingress: p.key.clone(),
            host: host.map(str::to_string),
            path: path.map_or("/", |x| x.0).to_string(),
            path_type: path.map(|x| x.1),
            regex: path.is_some_and(|x| x.2),
            policy: p.policy.clone(),
            backend,
            canaries: Vec::new(),
        });
        id
    }

    fn catch_all(&mut self, p: &Prepared<'_>) {
        let Some(db) = &p.ing.default_backend else {
            return;
        };
        if let Some(existing) = self.table.default_server.default_backend {
            let owner = self.table.routes[existing].ingress.clone();
            self.finding(
                &p.key,
                Severity::Notice,
                "spec.defaultBackend",
                format!(
                    "conflict lost: the catch-all default backend of older Ingress {owner} is used"
                ),
            );
            return;
        }
        let id = self.add_route(p, None, None, db, "spec.defaultBackend");
        self.table.default_server.default_backend = Some(id);
        self.table.served.insert(p.key.clone(), p.class.clone());
    }

    fn primary(&mut self, p: &Prepared<'_>) {
        self.table.served.insert(p.key.clone(), p.class.clone());
        let mut hosts_seen: Vec<Option<usize>> = Vec::new();
        for (i, rule) in p.ing.rules.iter().enumerate() {
            let hidx = self.host(rule.host.as_deref());
            if !hosts_seen.contains(&hidx) {
                hosts_seen.push(hidx);
            }
            for (j, path) in rule.paths.iter().enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                let slot: Slot = (rule.host.clone(), path.path.clone(), path.path_type);
                if let Some(&existing) = self.slots.get(&slot) {
                    let owner = self.table.routes[existing].ingress.clone();
                    let host = rule.host.as_deref().unwrap_or("*");
                    self.finding(
                        &p.key,
                        Severity::Notice,
                        &field,
                        format!(
                            "conflict lost: host {host} path {} ({}) is also defined by Ingress {owner}, which is older (or first by namespace/name) and wins",
                            path.path,
                            path.path_type.as_str()
                        ),
                    );
                    continue;
                }
                let regex = p.regexes.get(i).and_then(|r| r.get(j)).cloned().flatten();
                let id = self.add_route(
                    p,
                    rule.host.as_deref(),
                    Some((&path.path, path.path_type, regex.is_some())),
                    &path.backend,
                    &format!("{field}.backend"),
                );
                self.slots.insert(slot, id);
                let len = path.path.chars().count();
                let mut shadowed: Option<usize> = None;
                let table = self.host_table(hidx);
                match (path.path_type, regex) {
                    (_, Some(regex)) => table.regexes.push(RegexPath {
                        regex,
                        len,
                        route: id,
                    }),
                    (PathType::Exact, None) => {
                        table.exact.insert(path.path.clone(), id);
                    }
                    (_, None) => {
                        let k = prefix_key(&path.path).to_string();
                        match table.prefix.get(&k) {
                            Some(&(old, old_len)) if old_len >= len => shadowed = Some(old),
                            _ => {
                                table.prefix.insert(k, (id, len));
                            }
                        }
                    }
                }
                if let Some(old) = shadowed {
                    let owner = self.table.routes[old].ingress.clone();
                    let other = self.table.routes[old].path.clone();
                    self.finding(
                        &p.key,
                        Severity::Notice,
                        &field,
                        format!(
                            "never matched: path {} of Ingress {owner} covers the same elements and wins",
                            other
                        ),
                    );
                }
            }
        }
        if let Some(db) = &p.ing.default_backend {
            for hidx in hosts_seen {
                if let Some(existing) = self.host_table(hidx).default_backend {
                    let owner = self.table.routes[existing].ingress.clone();
                    let host = hidx
                        .and_then(|i| self.table.hosts.get(i))
                        .map_or("(host-less rules)".to_string(), |h| h.name.clone());
                    self.finding(
                        &p.key,
                        Severity::Notice,
                        "spec.defaultBackend",
                        format!(
                            "not used for host {host}: the defaultBackend of Ingress {owner} (older, or the catch-all) answers there"
                        ),
                    );
                    continue;
                }
                let host = hidx
                    .and_then(|i| self.table.hosts.get(i))
                    .map(|h| h.name.clone());
                let id = self.add_route(p, host.as_deref(), None, db, "spec.defaultBackend");
                self.host_table(hidx).default_backend = Some(id);
            }
        }
    }

    fn canary(&mut self, p: &Prepared<'_>) {
        let Some(rule) = p.policy.canary.clone() else {
            return;
        };
        let mut attached = false;
        for (i, r) in p.ing.rules.iter().enumerate() {
            for (j, path) in r.paths.iter().enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                let slot: Slot = (r.host.clone(), path.path.clone(), path.path_type);
                let Some(&primary) = self.slots.get(&slot) else {
                    self.finding(
                        &p.key,
                        Severity::Warning,
                        &field,
                        format!(
                            "canary not served: no primary Ingress has host {} path {} ({}); a canary never creates a host or a path",
                            r.host.as_deref().unwrap_or("*"),
                            path.path,
                            path.path_type.as_str()
                        ),
                    );
                    continue;
                };
                let backend = self.backend(p, &path.backend, &format!("{field}.backend"));
                if let Some(route) = self.table.routes.get_mut(primary) {
                    route.canaries.push(Canary {
                        ingress: p.key.clone(),
                        rule: rule.clone(),
                        backend,
                    });
                    attached = true;
                }
            }
        }
        if p.ing.default_backend.is_some() {
            self.finding(
                &p.key,
                Severity::Warning,
                "spec.defaultBackend",
                "ignored: a canary Ingress's defaultBackend is not used".into(),
            );
        }
        if attached {
            self.table.served.insert(p.key.clone(), p.class.clone());
        }
    }

    fn aliases(&mut self, prepared: &[Prepared<'_>]) {
        for p in prepared.iter().filter(|p| p.policy.canary.is_none()) {
            if p.policy.server_alias.is_empty() || !self.table.served.contains_key(&p.key) {
                continue;
            }
            let field = "metadata.annotations[nginx.ingress.kubernetes.io/server-alias]";
            let Some(target) = p
                .ing
                .rules
                .iter()
                .filter_map(|r| r.host.as_deref())
                .find(|h| !h.starts_with("*."))
            else {
                self.finding(
                    &p.key,
                    Severity::Warning,
                    field,
                    "ignored: server-alias needs a rule with a precise host".into(),
                );
                continue;
            };
            let Some(&idx) = self.table.precise.get(target) else {
                continue;
            };
            for alias in &p.policy.server_alias {
                match self.table.precise.get(alias) {
                    None => {
                        self.table.precise.insert(alias.clone(), idx);
                    }
                    Some(&other) if other == idx => {}
                    Some(&other) => {
                        let whose = self
                            .table
                            .hosts
                            .get(other)
                            .map(|h| h.name.clone())
                            .unwrap_or_default();
                        self.finding(
                            &p.key,
                            Severity::Warning,
                            field,
                            format!("alias {alias} ignored: it is already the host (or an older alias) {whose}"),
                        );
                    }
                }
            }
        }
    }

    fn tls(&mut self, prepared: &[Prepared<'_>]) {
        let mut by_host: HashMap<String, usize> = HashMap::new();
        for p in prepared.iter().filter(|p| p.policy.canary.is_none()) {
            if !self.table.served.contains_key(&p.key) {
                continue;
            }
            for (i, t) in p.ing.tls.iter().enumerate() {
                let hosts: Vec<String> = if t.hosts.is_empty() {
                    p.ing.rules.iter().filter_map(|r| r.host.clone()).collect()
                } else {
                    t.hosts.clone()
                };
                let source = self.cert_source(p, i, t.secret_name.as_deref());
                for host in hosts {
                    let entry = TlsHost {
                        host: host.clone(),
                        source: source.clone(),
                        ingress: p.key.clone(),
                    };
                    match by_host.get(&host) {
                        None => {
                            by_host.insert(host, self.table.tls_hosts.len());
                            self.table.tls_hosts.push(entry);
                        }
                        Some(&k) => {
                            // An older Ingress wins, unless it has no Secret and this one does.
                            if let Some(old) = self.table.tls_hosts.get_mut(k)
                                && matches!(old.source, CertSource::LocalCa { .. })
                                && matches!(entry.source, CertSource::Secret { .. })
                            {
                                *old = entry;
                            }
                        }
                    }
                }
            }
        }
        // Mark the hosts a certificate covers (ssl-redirect applies to them).
        let mut by_parent: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, h) in self.table.hosts.iter().enumerate() {
            if let Some(parent) = (!h.name.starts_with("*."))
                .then(|| wildcard_parent(&h.name))
                .flatten()
            {
                by_parent.entry(parent).or_default().push(i);
            }
        }
        let mut covered: Vec<usize> = Vec::new();
        for t in &self.table.tls_hosts {
            let direct = match t.host.strip_prefix("*.") {
                Some(parent) => self.table.wildcard.get(parent),
                None => self.table.precise.get(&t.host),
            };
            covered.extend(direct.copied());
            if let Some(parent) = t.host.strip_prefix("*.") {
                for &i in by_parent.get(parent).map(Vec::as_slice).unwrap_or(&[]) {
                    if self
                        .table
                        .hosts
                        .get(i)
                        .is_some_and(|h| cert_covers(&t.host, &h.name))
                    {
                        covered.push(i);
                    }
                }
            }
        }
        for i in covered {
            if let Some(h) = self.table.hosts.get_mut(i) {
                h.tls = true;
            }
        }
    }

    fn cert_source(&mut self, p: &Prepared<'_>, i: usize, secret: Option<&str>) -> CertSource {
        let issuer = ["cert-manager.io/cluster-issuer", "cert-manager.io/issuer"]
            .iter()
            .find_map(|a| p.ing.meta.annotations.get(*a).map(|v| format!("{a}: {v}")));
        let field = format!("spec.tls[{i}].secretName");
        let Some(name) = secret else {
            return CertSource::LocalCa {
                why: issuer.unwrap_or_else(|| "no secretName".to_string()),
            };
        };
        let skey = ObjectKey::new(p.ing.meta.namespace.clone(), name);
        let problem = match self.cluster.secrets.get(&skey) {
            None => format!("Secret {skey} does not exist"),
            Some(s) => {
                let crt = s.data.get("tls.crt");
                let key = s.data.get("tls.key");
                match (crt, key) {
                    _ if s.type_ != "kubernetes.io/tls" => {
                        format!(
                            "Secret {skey} has type {:?}, not kubernetes.io/tls",
                            s.type_
                        )
                    }
                    (Some(crt), Some(key))
                        if contains(crt, b"-----BEGIN CERTIFICATE-----")
                            && contains(key, b"PRIVATE KEY-----") =>
                    {
                        return CertSource::Secret {
                            secret: skey,
                            cert_pem: crt.clone(),
                            key_pem: key.clone(),
                        };
                    }
                    _ => format!("Secret {skey} has no PEM tls.crt and tls.key"),
                }
            }
        };
        match issuer {
            Some(issuer) => {
                self.finding(
                    &p.key,
                    Severity::Notice,
                    &field,
                    format!("{problem}: svcnet's local CA issues the certificate ({issuer})"),
                );
                CertSource::LocalCa {
                    why: format!("{issuer} ({problem})"),
                }
            }
            None => {
                self.finding(
                    &p.key,
                    Severity::Warning,
                    &field,
                    format!("{problem}: svcnet's local CA issues a certificate instead"),
                );
                CertSource::LocalCa { why: problem }
            }
        }
    }

    /// Resolves a backend: the Service port (by number or name), then the ready endpoints
    /// of the Service's EndpointSlices for that port.
    fn backend(&mut self, p: &Prepared<'_>, b: &IngressBackend, field: &str) -> Backend {
        let ns = p.ing.meta.namespace.as_str();
        let (name, port) = match b {
            IngressBackend::Service { name, port } => (name.as_str(), port),
            IngressBackend::Resource { kind, name, .. } => {
                let why = format!(
                    "resource backend {kind} {name} is not supported: only Service backends"
                );
                self.finding(&p.key, Severity::Warning, field, why.clone());
                return Backend {
                    service: ObjectKey::new(ns, name.clone()),
                    service_port: None,
                    port_name: String::new(),
                    endpoints: Vec::new(),
                    external: None,
                    policy: p.policy.clone(),
                    unusable: Some(why),
                };
            }
        };
        let cache_key = (ns.to_string(), name.to_string(), port.to_string());
        let r = match self.backends.get(&cache_key) {
            Some(r) => r.clone(),
            None => {
                let r = self.resolve(ns, name, port);
                self.backends.insert(cache_key, r.clone());
                r
            }
        };
        if let Some(why) = &r.unusable {
            self.finding(
                &p.key,
                Severity::Warning,
                field,
                format!("{why}: requests get 503"),
            );
        }
        Backend {
            service: ObjectKey::new(ns, name),
            service_port: r.service_port,
            port_name: r.port_name,
            endpoints: r.endpoints,
            external: r.external,
            policy: p.policy.clone(),
            unusable: r.unusable,
        }
    }

    fn resolve(&self, ns: &str, name: &str, port: &BackendPort) -> Resolved {
        let unusable = |why: String| Resolved {
            service_port: None,
            port_name: String::new(),
            endpoints: Vec::new(),
            external: None,
            unusable: Some(why),
        };
        let Some(svc) = self.cluster.services.get(&ObjectKey::new(ns, name)) else {
            return unusable(format!("Service {ns}/{name} does not exist"));
        };
        let sp = svc.ports.iter().find(|sp| {
            sp.protocol == Protocol::Tcp
                && match port {
                    BackendPort::Number(n) => sp.port == *n,
                    BackendPort::Name(n) => sp.name.as_deref() == Some(n.as_str()),
                }
        });
        let Some(sp) = sp else {
            return unusable(format!("Service {ns}/{name} has no TCP port {port}"));
        };
        if svc.type_ == ServiceType::ExternalName {
            return self.resolve_external_name(ns, name, svc, sp);
        }
        let port_name = sp.name.clone().unwrap_or_default();
        let endpoints = self.port_endpoints(ns, name, &port_name);
        Resolved {
            service_port: Some(sp.port),
            port_name,
            endpoints,
            external: None,
            unusable: None,
        }
    }

    /// The ready endpoints of a Service port (by its name, `""` when unnamed): each
    /// slice's TCP port of that name.
    fn port_endpoints(&self, ns: &str, name: &str, port_name: &str) -> Vec<UpstreamEndpoint> {
        self.ready_endpoints(ns, name, |ports| {
            ports
                .iter()
                .find(|ep| ep.name == port_name && ep.protocol == Protocol::Tcp)
                .and_then(|ep| ep.port)
        })
    }

    /// The ready endpoints of a Service's EndpointSlices, at the port `port_of` picks from
    /// each slice's ports (slices without it are skipped), sorted and without duplicates.
    fn ready_endpoints(
        &self,
        ns: &str,
        name: &str,
        port_of: impl Fn(&[EndpointPort]) -> Option<u16>,
    ) -> Vec<UpstreamEndpoint> {
        let mut endpoints: Vec<UpstreamEndpoint> = Vec::new();
        for slice in self
            .slices
            .get(&(ns, name))
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if slice.address_type == AddressType::Fqdn {
                continue;
            }
            let Some(target) = port_of(&slice.ports) else {
                continue;
            };
            for e in slice.endpoints.iter().filter(|e| e.ready) {
                let Some(ip) = e.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                    continue;
                };
                endpoints.push(UpstreamEndpoint {
                    addr: SocketAddr::new(ip, target),
                    pod: e.target_ref.clone(),
                });
            }
        }
        endpoints.sort_by_key(|e| e.addr);
        endpoints.dedup_by(|a, b| a.addr == b.addr);
        endpoints
    }

    /// An ExternalName Service as a backend, as ingress-nginx takes one: requests go to
    /// `spec.externalName` at the port's `targetPort`. What that name resolves to is known
    /// here without a DNS query when it is an IP address or a Service of the cluster
    /// (`NAME.NAMESPACE.svc[.DOMAIN]`, what cluster DNS would answer: the Service's ready
    /// endpoints, or a headless Service's pods at that port). `localhost` and loopback
    /// addresses are refused, as ingress-nginx refuses them (they reach the controller
    /// itself); other names would need DNS at request time, which svcnet does not do yet.
    fn resolve_external_name(
        &self,
        ns: &str,
        name: &str,
        svc: &Service,
        sp: &ServicePort,
    ) -> Resolved {
        let unusable = |why: String| Resolved {
            service_port: None,
            port_name: String::new(),
            endpoints: Vec::new(),
            external: None,
            unusable: Some(format!("ExternalName Service {ns}/{name}: {why}")),
        };
        let target = match &sp.target_port {
            PortRef::Number(n) => *n,
            PortRef::Name(n) => {
                return unusable(format!(
                    "port {} has the named targetPort {n:?}, which only a pod can resolve",
                    sp.port
                ));
            }
        };
        let Some(external) = svc.external_name.as_deref().filter(|n| !n.is_empty()) else {
            return unusable("spec.externalName is empty".into());
        };
        let host = external.trim_end_matches('.').to_ascii_lowercase();
        let resolved =
            |endpoints: Vec<UpstreamEndpoint>, external: Option<ExternalTarget>| Resolved {
                service_port: Some(sp.port),
                port_name: sp.name.clone().unwrap_or_default(),
                endpoints,
                external,
                unusable: None,
            };
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            if ip.is_loopback() || ip.is_unspecified() {
                return unusable(format!(
                    "{external} is a loopback address, refused as ingress-nginx refuses it"
                ));
            }
            return resolved(
                vec![UpstreamEndpoint {
                    addr: SocketAddr::new(ip, target),
                    pod: None,
                }],
                None,
            );
        }
        if host == "localhost" || host.ends_with(".localhost") {
            return unusable(format!(
                "{external} is loopback, refused as ingress-nginx refuses it"
            ));
        }
        let domain = &self.cluster.plan.cluster_domain;
        let in_cluster = host
            .strip_suffix(&format!(".svc.{domain}"))
            .or_else(|| host.strip_suffix(".svc"));
        let Some(svc_ns) = in_cluster else {
            // Outside the cluster: looked up when requests come.
            return resolved(Vec::new(), Some(ExternalTarget { host, port: target }));
        };
        let Some((other, other_ns)) = svc_ns.split_once('.').filter(|(_, n)| !n.contains('.'))
        else {
            return unusable(format!(
                "{external} is not a Service name (NAME.NAMESPACE.svc)"
            ));
        };
        let Some(target_svc) = self.cluster.services.get(&ObjectKey::new(other_ns, other)) else {
            return unusable(format!(
                "{external} names Service {other_ns}/{other}, which does not exist"
            ));
        };
        if target_svc.type_ == ServiceType::ExternalName {
            return unusable(format!(
                "{external} names another ExternalName Service ({other_ns}/{other}): chains are not followed"
            ));
        }
        if target_svc.is_headless() {
            // Cluster DNS answers with the pods' addresses: the connection goes to them
            // at the port asked for.
            let pods = self.ready_endpoints(other_ns, other, |ports| {
                (!ports.is_empty()).then_some(target)
            });
            return resolved(pods, None);
        }
        let Some(tp) = target_svc
            .ports
            .iter()
            .find(|p| p.port == target && p.protocol == Protocol::Tcp)
        else {
            return unusable(format!(
                "{external} names Service {other_ns}/{other}, which has no TCP port {target}"
            ));
        };
        let endpoints = self.port_endpoints(other_ns, other, tp.name.as_deref().unwrap_or(""));
        resolved(endpoints, None)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
