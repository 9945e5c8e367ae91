//! The shared Ingress conformance corpus (`shared/conformance/ingress.yaml`) at route
//! level: the corpus cluster compiled with `compile`, every case answered by
//! `RouteTable::route`, and everything a route decision determines checked: status (a
//! proxied request counts as the backend's 200, or 503 with no ready endpoint), backend
//! Service, backend Pod set, upstream path, redirect Location. What only a running server
//! can show (certificates, response headers set by middlewares, bodies) is listed as
//! server-level and left to the end-to-end tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde_json::Value;
use svcnet_ingress::{ControllerConfig, Decision, RouteRequest, RouteTable, Scheme, compile};
use svcnet_model::types::ObjectKey;
use svcnet_model::{AddressPlan, Cluster, Severity};

/// `$SVCNET_CONFORMANCE`, else `../shared/conformance` beside the repository.
fn corpus_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SVCNET_CONFORMANCE") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    assert!(
        dir.is_dir(),
        "conformance corpora not found at {} (set SVCNET_CONFORMANCE)",
        dir.display()
    );
    dir
}

fn corpus() -> Value {
    let text = std::fs::read_to_string(corpus_dir().join("ingress.yaml")).expect("read corpus");
    serde_saphyr::from_str(&text).expect("corpus is YAML")
}

fn table(v: &Value) -> RouteTable {
    // Loopback mode, as the corpus README says.
    let text = v["cluster"]
        .as_str()
        .expect("cluster text")
        .replace("10.244.", "127.244.");
    let (c, d) = Cluster::from_yaml("ingress.yaml", &text, &AddressPlan::default());
    let errors: Vec<String> =
        d.0.iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let (t, findings) = compile(&c.expect("cluster"), &ControllerConfig::default());
    for f in &findings {
        eprintln!(
            "finding: {:?} {} {}: {}",
            f.severity, f.ingress, f.field, f.message
        );
    }
    t
}

/// What route() said, in the corpus's terms.
struct Outcome {
    status: u16,
    service: Option<ObjectKey>,
    pods: BTreeSet<ObjectKey>,
    upstream: Option<String>,
    location: Option<String>,
}

fn outcome(t: &RouteTable, case: &Value, draw: u32) -> Outcome {
    let scheme = match case["scheme"].as_str() {
        Some("https") => Scheme::Https,
        _ => Scheme::Http,
    };
    let full = case["path"].as_str().unwrap_or("/");
    let (path, query) = match full.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (full, None),
    };
    let method = case["method"]
        .as_str()
        .map(|m| http::Method::from_bytes(m.as_bytes()).unwrap())
        .unwrap_or(http::Method::GET);
    let mut headers = http::HeaderMap::new();
    if let Some(h) = case["headers"].as_object() {
        for (k, v) in h {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
            );
        }
    }
    let req = RouteRequest {
        scheme,
        host: case["host"].as_str().unwrap_or(""),
        path,
        query,
        method: &method,
        headers: &headers,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        weight_draw: draw,
    };
    match t.route(&req) {
        Decision::Respond(r) => Outcome {
            status: r.status,
            service: None,
            pods: BTreeSet::new(),
            upstream: None,
            location: r
                .headers
                .iter()
                .find(|(n, _)| n == http::header::LOCATION)
                .map(|(_, v)| v.to_str().unwrap().to_string()),
        },
        Decision::Proxy(u) => Outcome {
            status: if u.backend.endpoints.is_empty() {
                503
            } else {
                200
            },
            service: Some(u.backend.service.clone()),
            pods: u
                .backend
                .endpoints
                .iter()
                .filter_map(|e| e.pod.clone())
                .collect(),
            upstream: Some(u.path_and_query),
            location: None,
        },
    }
}

/// Checks one case; `Err` with what differs. Expectations only a server can check are
/// returned in the `Ok` list.
fn check(t: &RouteTable, case: &Value) -> Result<Vec<String>, String> {
    let expect = &case["expect"];
    let repeat = case["repeat"].as_u64().unwrap_or(1).max(1);
    let mut server_level = Vec::new();
    let mut all_pods = BTreeSet::new();
    for i in 0..repeat {
        let draw = u32::try_from((i * 37) % 100).unwrap();
        let o = outcome(t, case, draw);
        if let Some(s) = expect["status"].as_u64()
            && u64::from(o.status) != s
        {
            return Err(format!("status {} (want {s})", o.status));
        }
        if let Some(svc) = expect["backend_service"].as_object() {
            let want = ObjectKey::new(
                svc["namespace"].as_str().unwrap(),
                svc["name"].as_str().unwrap(),
            );
            if o.service.as_ref() != Some(&want) {
                return Err(format!("backend {:?} (want {want})", o.service));
            }
        }
        if let Some(pod) = expect["backend_pod"].as_str() {
            let ns = expect["backend_service"]["namespace"]
                .as_str()
                .unwrap_or("default");
            let want = ObjectKey::new(ns, pod);
            // The server picks among these endpoints: every one must be the pod.
            if o.pods.is_empty() || o.pods.iter().any(|p| *p != want) {
                return Err(format!("endpoints {:?} (want only {want})", o.pods));
            }
        }
        if let Some(up) = expect["upstream_path"].as_str()
            && o.upstream.as_deref() != Some(up)
        {
            return Err(format!("upstream path {:?} (want {up:?})", o.upstream));
        }
        if let Some(loc) = expect["location"].as_str()
            && o.location.as_deref() != Some(loc)
        {
            return Err(format!("location {:?} (want {loc:?})", o.location));
        }
        all_pods.extend(o.pods);
    }
    if let Some(min) = expect["distinct_pods_min"].as_u64() {
        // The server spreads requests over these endpoints; at route level the set must
        // be large enough.
        if (all_pods.len() as u64) < min {
            return Err(format!(
                "{} ready endpoints (want at least {min})",
                all_pods.len()
            ));
        }
        server_level.push("distinct_pods_min: spread over the endpoints".to_string());
    }
    for k in ["headers", "headers_match", "headers_absent"] {
        if !expect[k].is_null() {
            server_level.push(format!("expect.{k}"));
        }
    }
    if case["scheme"].as_str() == Some("https") {
        server_level.push("TLS handshake and certificate (SNI)".to_string());
    }
    if !case["body_bytes"].is_null() {
        server_level.push("request body size".to_string());
    }
    Ok(server_level)
}

#[test]
fn ingress_corpus_at_route_level() {
    let v = corpus();
    let t = table(&v);
    let cases = v["cases"].as_array().expect("cases");
    let mut failed = Vec::new();
    let mut server_level = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap_or("?");
        match check(&t, case) {
            Ok(rest) => {
                if !rest.is_empty() {
                    server_level.push(format!("{id}: {}", rest.join(", ")));
                }
            }
            Err(e) => failed.push(format!("{id}: {e}")),
        }
    }
    let passed = cases.len() - failed.len();
    println!(
        "ingress conformance at route level: {passed}/{} passed",
        cases.len()
    );
    for s in &server_level {
        println!("  also needs the server: {s}");
    }
    assert!(
        failed.is_empty(),
        "{passed}/{} passed; failed:\n{}",
        cases.len(),
        failed.join("\n")
    );
}

/// The compiled corpus table, as text: a change in compile shows up as a snapshot diff.
#[test]
fn ingress_corpus_table_snapshot() {
    let t = table(&corpus());
    insta::assert_snapshot!("ingress_corpus_table", t.describe());
}
