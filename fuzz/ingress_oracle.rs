//! The oracle of the `ingress_annotations` fuzz target, shared with the corpus replay test
//! (`crates/ingress/tests/annotations_fuzz_replay.rs` includes this file with `#[path]`),
//! so that libFuzzer on nightly and `cargo test` on stable check exactly the same things.
//!
//! Input: text, one annotation per line, `name=value` (a name without `/` gets the
//! `nginx.ingress.kubernetes.io/` prefix). The annotations are parsed by
//! `parse_annotations`, then put on an Ingress that shares host and path with a plain one,
//! compiled, and a few requests are routed.
//!
//! Invariants: nothing panics; parsing is deterministic; every issue names an annotation of
//! the input; every `*-snippet` annotation is an error; a policy without errors keeps its
//! promises (canary weight within its total, burst multiplier at least 1, redirect targets
//! and CORS values usable as header values, body size never `Some(0)`, timeouts at most a
//! day, aliases lower-case); the Ingress is served exactly when there is no error (and,
//! for a canary, when it attaches to the plain Ingress); routing never panics and always
//! answers with a known backend or a reply.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use svcnet_ingress::{
    ControllerConfig, Decision, RouteRequest, Scheme, Severity, compile, parse_annotations,
};
use svcnet_model::types::ObjectKey;
use svcnet_model::{AddressPlan, Cluster};

/// The annotation prefix.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

const CLUSTER: &str = "apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, namespace: default, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints: [{addresses: [127.5.0.1], conditions: {ready: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: fuzzed, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: fuzzed-1, namespace: default, labels: {kubernetes.io/service-name: fuzzed}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints: [{addresses: [127.5.0.2], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: plain, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  tls: [{hosts: [fuzz.test]}]
  rules:
  - host: fuzz.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fuzzed, namespace: default, creationTimestamp: '2025-01-01T00:00:00Z'}
spec:
  rules:
  - host: fuzz.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: fuzzed, port: {number: 80}}}}
      - {path: '/re(/|$)(.*)', pathType: ImplementationSpecific, backend: {service: {name: fuzzed, port: {number: 80}}}}
";

fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        let (c, d) = Cluster::from_yaml("fuzz-cluster.yaml", CLUSTER, &AddressPlan::default());
        c.unwrap_or_else(|| panic!("the oracle's cluster does not load: {d:?}"))
    })
}

/// The annotations of one input.
pub fn annotations(data: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(data);
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let name = if name.contains('/') {
            name.to_string()
        } else {
            format!("{PREFIX}{name}")
        };
        out.insert(name, value.to_string());
    }
    out
}

/// Checks one input; the error says which invariant broke.
pub fn check(data: &[u8]) -> Result<(), String> {
    let ann = annotations(data);
    let (policy, issues) = parse_annotations(&ann);
    let (again, issues_again) = parse_annotations(&ann);
    if again != policy || issues_again != issues {
        return Err("parse_annotations is not deterministic".into());
    }
    for (name, _, message) in &issues {
        if !ann.contains_key(name) {
            return Err(format!(
                "issue for {name:?}, which is not in the input: {message}"
            ));
        }
    }
    for name in ann.keys() {
        if let Some(short) = name.strip_prefix(PREFIX)
            && (short.ends_with("-snippet") || short.ends_with("-snippets"))
            && !issues
                .iter()
                .any(|(n, s, _)| n == name && *s == Severity::Error)
        {
            return Err(format!("snippet {name:?} was not refused"));
        }
    }
    let errors = issues.iter().any(|(_, s, _)| *s == Severity::Error);
    if !errors {
        promises(&policy)?;
    }

    // Compile it on an Ingress sharing host and path with a plain one, and route.
    let mut c = cluster().clone();
    let key = ObjectKey::new("default", "fuzzed");
    if let Some(i) = c.ingresses.get_mut(&key) {
        i.meta.annotations = ann.into();
    }
    let (table, _findings) = compile(&c, &ControllerConfig::default());
    let served = table.served().contains_key(&key);
    let want = !errors;
    if served != want {
        return Err(format!(
            "Ingress served: {served}, but the annotations had errors: {errors} ({issues:?})"
        ));
    }
    let mut headers = http::HeaderMap::new();
    headers.insert("x-canary", http::HeaderValue::from_static("always"));
    headers.insert(
        "cookie",
        http::HeaderValue::from_static("canary=always; a=b"),
    );
    for (scheme, path, query, client, draw) in [
        (Scheme::Http, "/", None, "127.0.0.1", 0),
        (Scheme::Https, "/re/x", Some("q=1"), "::ffff:10.0.0.1", 99),
        (Scheme::Https, "/a/../b", None, "192.0.2.1", 50),
    ] {
        let client: IpAddr = client.parse().map_err(|e| format!("{e}"))?;
        let req = RouteRequest {
            scheme,
            host: "FUZZ.test:8443",
            path,
            query,
            method: &http::Method::GET,
            headers: &headers,
            client_ip: client,
            weight_draw: draw,
        };
        match table.route(&req) {
            Decision::Proxy(u) => {
                let name = u.backend.service.name.as_str();
                if name != "app" && name != "fuzzed" {
                    return Err(format!("routed to unknown backend {name}"));
                }
                if !u.path_and_query.starts_with('/') {
                    return Err(format!("upstream path {:?}", u.path_and_query));
                }
            }
            Decision::Respond(r) => {
                if !(300..600).contains(&r.status) {
                    return Err(format!("reply status {}", r.status));
                }
            }
        }
    }
    Ok(())
}

fn header_ok(what: &str, v: &str) -> Result<(), String> {
    http::HeaderValue::from_str(v)
        .map(|_| ())
        .map_err(|_| format!("{what} {v:?} is not a valid header value"))
}

/// What a policy without errors promises to the server.
fn promises(p: &svcnet_ingress::Policy) -> Result<(), String> {
    if let Some(c) = &p.canary
        && (c.weight_total == 0 || c.weight > c.weight_total)
    {
        return Err(format!("canary weight {}/{}", c.weight, c.weight_total));
    }
    if p.limits.burst_multiplier == 0 {
        return Err("burst multiplier 0".into());
    }
    if p.limits.rps == Some(0) || p.limits.rpm == Some(0) || p.limits.connections == Some(0) {
        return Err(format!("a zero limit is kept: {:?}", p.limits));
    }
    if p.proxy_body_size == Some(0) {
        return Err("body size Some(0)".into());
    }
    let day = Duration::from_secs(24 * 3600);
    if p.connect_timeout > day || p.read_timeout > day || p.send_timeout > day {
        return Err("timeout over a day".into());
    }
    if let Some((url, code)) = &p.permanent_redirect {
        header_ok("permanent-redirect", url)?;
        if !(300..=308).contains(code) {
            return Err(format!("permanent-redirect-code {code}"));
        }
    }
    for (what, v) in [
        ("temporal-redirect", p.temporal_redirect.as_deref()),
        ("app-root", p.app_root.as_deref()),
        ("rewrite-target", p.rewrite_target.as_deref()),
        (
            "auth-signin",
            p.auth.as_ref().and_then(|a| a.signin.as_deref()),
        ),
    ] {
        if let Some(v) = v {
            header_ok(what, v)?;
        }
    }
    if let Some(c) = &p.cors {
        for o in &c.allow_origin {
            header_ok("cors-allow-origin", o)?;
        }
        header_ok("cors-allow-methods", &c.allow_methods)?;
        header_ok("cors-allow-headers", &c.allow_headers)?;
        if let Some(e) = &c.expose_headers {
            header_ok("cors-expose-headers", e)?;
        }
    }
    if let Some(a) = &p.affinity {
        header_ok("session-cookie-name", &a.name)?;
        if let Some(path) = &a.path {
            header_ok("session-cookie-path", path)?;
        }
    }
    for a in &p.server_alias {
        if a.chars().any(|c| c.is_ascii_uppercase()) || a.is_empty() {
            return Err(format!("server-alias {a:?}"));
        }
    }
    Ok(())
}
