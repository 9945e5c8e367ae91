#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The request-head oracle: arbitrary bytes parsed as an HTTP/1.1 request head the way
//! hyper does (httparse), then through everything the server does with a head before
//! the upstream: [`RouteTable::route`] on both listeners, the `X-Forwarded-*` rewrite,
//! the upstream URI for every backend protocol, endpoint choice (affinity cookie,
//! `upstream-hash-by`, round-robin) and the CORS and auth-signin headers.
//!
//! Invariants: no panic; the fast HTTP/1.1 server path (`h1server::parse_request`) reads a
//! head it takes exactly as httparse and the `http` types do; a controller answer has a status in 300..=599 and a redirect has
//! a `Location` that parses as a URI; a proxy decision has an upstream path that parses,
//! starts with `/` and builds an upstream URI for every protocol; the rewritten headers
//! hold no hop-by-hop header, end `X-Forwarded-For` with the client and carry an
//! `X-Request-ID`; the fast HTTP/1.1 path's upstream head (`h1::forward_head`) has
//! the same fields as the header-map path's; an endpoint chosen exists.
//!
//! This file is both the oracle of `fuzz/fuzz_targets/ingress_head.rs` (included there
//! with `#[path]`) and, under `cargo test`, a replay of seed heads, of
//! `fuzz/corpus/ingress_head/` and of a bounded deterministic mutation run.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use svcnet_ingress::proxy::{self, Forwarded, PickRequest, Proto};
use svcnet_ingress::{ControllerConfig, Decision, RouteRequest, RouteTable, Scheme};
use svcnet_model::cluster::Cluster;
use svcnet_model::plan::AddressPlan;

const EXAMPLES: [&str; 6] = [
    include_str!("../../../examples/advanced-ingress/ingress.yaml"),
    include_str!("../../../examples/advanced-ingress/services.yaml"),
    include_str!("../../../examples/advanced-ingress/workloads.yaml"),
    include_str!("../../../examples/ecommerce-ingress/ingress.yaml"),
    include_str!("../../../examples/ecommerce-ingress/services.yaml"),
    include_str!("../../../examples/ecommerce-ingress/workloads.yaml"),
];

/// More annotations than the examples use: regex and rewrite, redirects, CORS, affinity,
/// hashing, aliases, wildcards, source ranges.
const EXTRA: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: fuzz-regex
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /$2
    nginx.ingress.kubernetes.io/enable-cors: "true"
    nginx.ingress.kubernetes.io/cors-allow-origin: "https://a.test, https://*.b.test"
    nginx.ingress.kubernetes.io/affinity: cookie
    nginx.ingress.kubernetes.io/server-alias: alias.fuzz.test
spec:
  rules:
  - host: re.fuzz.test
    http:
      paths:
      - path: /api(/|$)(.*)
        pathType: ImplementationSpecific
        backend:
          service:
            name: user-service
            port:
              number: 80
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: fuzz-wild
  annotations:
    nginx.ingress.kubernetes.io/upstream-hash-by: "$arg_user"
    nginx.ingress.kubernetes.io/app-root: /app
    nginx.ingress.kubernetes.io/denylist-source-range: 192.0.2.0/24
    nginx.ingress.kubernetes.io/backend-protocol: GRPC
spec:
  rules:
  - host: "*.fuzz.test"
    http:
      paths:
      - path: /x
        pathType: Exact
        backend:
          service:
            name: user-service
            port:
              number: 80
      - path: /
        pathType: Prefix
        backend:
          service:
            name: product-service
            port:
              number: 80
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: fuzz-redirect
  annotations:
    nginx.ingress.kubernetes.io/permanent-redirect: https://elsewhere.test/new
    nginx.ingress.kubernetes.io/upstream-hash-by: "$http_x_user"
spec:
  rules:
  - http:
      paths:
      - path: /moved
        pathType: Prefix
        backend:
          service:
            name: order-service
            port:
              number: 80
"#;

/// The table the oracle routes against.
pub fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut text = String::new();
        for e in EXAMPLES {
            text.push_str(e);
            text.push_str("\n---\n");
        }
        text.push_str(EXTRA);
        let (cluster, diags) = Cluster::from_yaml("fuzz-head.yaml", &text, &AddressPlan::default());
        let cluster = cluster.unwrap_or_else(|| panic!("oracle manifests: {diags:?}"));
        svcnet_ingress::compile(&cluster, &ControllerConfig::default()).0
    })
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Checks one input. `Ok` for heads hyper would refuse (nothing to check).
pub fn check(table: &RouteTable, data: &[u8]) -> Result<(), String> {
    let mut raw = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut raw);
    match parsed.parse(data) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Ok(()),
    }
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Ok(());
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return Ok(());
    };
    let Ok(uri) = target.parse::<http::Uri>() else {
        return Ok(());
    };
    let mut headers = HeaderMap::new();
    for h in parsed.headers.iter() {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Ok(());
        };
        headers.append(n, v);
    }
    // The fast HTTP/1.1 server path, when it takes the head, reads it as the above does.
    if let Some((fast, len, _)) = svcnet_ingress::h1server::parse_request(data) {
        let Ok(httparse::Status::Complete(want)) =
            httparse::Request::new(&mut [httparse::EMPTY_HEADER; 64]).parse(data)
        else {
            return Err("fast path took a head httparse finds incomplete".into());
        };
        if len != want
            || fast.method() != method
            || fast.uri() != &uri
            || fast.headers() != &headers
        {
            return Err(format!(
                "fast path read {} {} {:?} ({len} bytes), not {method} {uri} {headers:?} ({want} bytes)",
                fast.method(),
                fast.uri(),
                fast.headers()
            ));
        }
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string();
    // The server answers 400 to a Host that is not a valid authority before routing.
    if !host.is_empty() && host.parse::<http::uri::Authority>().is_err() {
        return Ok(());
    }
    let client_ip: IpAddr = if data.len().is_multiple_of(2) {
        "192.0.2.9".parse().unwrap()
    } else {
        "2001:db8::7".parse().unwrap()
    };
    let weight_draw = u32::try_from(data.len() % 100).unwrap_or(0);
    for scheme in [Scheme::Http, Scheme::Https] {
        let decision = table.route(&RouteRequest {
            scheme,
            host: &host,
            path: uri.path(),
            query: uri.query(),
            method: &method,
            headers: &headers,
            client_ip,
            weight_draw,
        });
        match decision {
            Decision::Respond(r) => {
                if !(300..=599).contains(&r.status) {
                    return Err(format!("controller answer with status {}", r.status));
                }
                if (300..400).contains(&r.status) {
                    let loc = r
                        .headers
                        .iter()
                        .find(|(n, _)| n == http::header::LOCATION)
                        .ok_or_else(|| format!("{} without Location", r.status))?;
                    let text = loc.1.to_str().map_err(|e| format!("Location: {e}"))?;
                    text.parse::<http::Uri>()
                        .map_err(|e| format!("Location {text:?} does not parse: {e}"))?;
                }
            }
            Decision::Proxy(up) => {
                let pq = &up.path_and_query;
                if !pq.starts_with('/') {
                    return Err(format!("upstream path {pq:?} does not start with /"));
                }
                pq.parse::<http::uri::PathAndQuery>()
                    .map_err(|e| format!("upstream path {pq:?} does not parse: {e}"))?;
                for proto in [Proto::H1, Proto::H1Tls, Proto::H2c, Proto::H2Tls] {
                    let authority = if host.is_empty() { "backend" } else { &host };
                    // An authority hyper accepted may still be refused by a Uri builder
                    // (an empty port, userinfo): the server then answers 500, no panic.
                    let built = proxy::upstream_uri(proto, authority, pq);
                    if built.is_none() && proto == Proto::H1 {
                        return Err(format!("no HTTP/1.1 upstream URI for {pq:?}"));
                    }
                }
                let mut fwd = headers.clone();
                let client_text = client_ip.to_string();
                let forwarded = Forwarded {
                    client_ip: &client_text,
                    scheme: scheme.as_str(),
                    host: &host,
                    port: 443,
                };
                let rid = proxy::forward_headers(&mut fwd, &forwarded);
                // The fast HTTP/1.1 path writes the same fields straight from the client's.
                let fields = proxy::ForwardedFields::new(&headers, &forwarded);
                let fast =
                    svcnet_ingress::h1::forward_head(&method, pq, &headers, &fields, &[], &host);
                let mut mapped = fwd.clone();
                if !mapped.contains_key(http::header::HOST)
                    && let Ok(v) = HeaderValue::from_str(&host)
                {
                    mapped.insert(http::header::HOST, v);
                }
                let mapped = svcnet_ingress::h1::request_head(&method, pq, &mapped);
                if head_fields(&fast) != head_fields(&mapped) {
                    return Err(format!(
                        "fast head {:?} differs from {:?}",
                        String::from_utf8_lossy(&fast),
                        String::from_utf8_lossy(&mapped)
                    ));
                }
                for h in HOP_BY_HOP {
                    if fwd.contains_key(h) {
                        return Err(format!("hop-by-hop header {h} forwarded"));
                    }
                }
                let xff = fwd
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !xff.ends_with(&client_ip.to_string()) {
                    return Err(format!(
                        "X-Forwarded-For {xff:?} does not end with the client"
                    ));
                }
                if fwd.get("x-request-id") != Some(&rid) {
                    return Err("X-Request-ID missing".into());
                }
                let rr = AtomicUsize::new(0);
                let pick = proxy::pick(
                    &up.backend.endpoints,
                    &up.backend.policy,
                    &PickRequest {
                        headers: &headers,
                        client_ip,
                        host: &host,
                        path: uri.path(),
                        query: uri.query(),
                        route_path: &up.route.path,
                        route_regex: up.route.regex,
                    },
                    &rr,
                    &[],
                );
                match pick {
                    Some(p) if p.index >= up.backend.endpoints.len() => {
                        return Err(format!(
                            "picked endpoint {} of {}",
                            p.index,
                            up.backend.endpoints.len()
                        ));
                    }
                    None if !up.backend.endpoints.is_empty() => {
                        return Err("no endpoint picked among ready ones".into());
                    }
                    _ => {}
                }
                if let Some(c) = &up.route.policy.cors {
                    let _ = svcnet_ingress::cors::preflight_headers(c, &headers);
                    let _ = svcnet_ingress::cors::response_headers(c, &headers);
                }
                if let Some(a) = &up.route.policy.auth
                    && let Some(signin) = &a.signin
                {
                    let loc = svcnet_ingress::auth::signin_location(
                        signin,
                        &format!("{}://{}{}", scheme.as_str(), host, target),
                    );
                    HeaderValue::from_str(&loc).map_err(|_| {
                        format!("auth-signin Location {loc:?} is not a header value")
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// A request head's line and fields, sorted, the random request id masked.
fn head_fields(head: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<String> = text
        .split("\r\n")
        .map(|l| match l.split_once(": ") {
            Some(("x-request-id", v)) if v.len() == 32 => "x-request-id: *".to_string(),
            _ => l.to_string(),
        })
        .collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod replay {
    use super::*;

    const SEEDS: &[&str] = &[
        "GET / HTTP/1.1\r\nHost: api.company.com\r\n\r\n",
        "GET /users/1?x=1 HTTP/1.1\r\nHost: API.ECOMMERCE.COM:8080\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        "POST /products HTTP/1.1\r\nHost: api.ecommerce.com\r\nContent-Length: 3\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\n\r\nabc",
        "GET /api/v1/../x%2F?q HTTP/1.1\r\nHost: re.fuzz.test\r\nOrigin: https://z.b.test\r\nCookie: INGRESSCOOKIE=00\r\n\r\n",
        "OPTIONS /api HTTP/1.1\r\nHost: alias.fuzz.test\r\nOrigin: https://a.test\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.fuzz.test\r\n\r\n",
        "GET /?user=42 HTTP/1.1\r\nHost: deep.a.fuzz.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: b.fuzz.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nTE: trailers\r\n\r\n",
        "GET /moved/a HTTP/1.1\r\nX-User: u\r\n\r\n",
        "GET http://app.company.com/p HTTP/1.1\r\nHost: other\r\n\r\n",
        "GET //// HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
        "GET /%00%ff HTTP/1.1\r\nHost: .\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: www.ecommerce.com\r\n\r\n",
    ];

    #[test]
    fn seeds_hold_the_invariants() {
        for s in SEEDS {
            check(table(), s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        }
    }

    #[test]
    fn corpus_replays() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ingress_head");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            check(table(), &data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }

    /// A bounded deterministic mutation run over the seeds (byte flips, inserts of
    /// interesting bytes, truncations), so that stable `cargo test` fuzzes a little too.
    #[test]
    fn mutations_hold_the_invariants() {
        let interesting: &[&[u8]] = &[
            b"/", b"%", b"..", b"?", b"#", b":", b"[", b"]", b"*", b"\x00", b"\xff", b" ", b"\r\n",
            b"Host: ", b"$1", b"(", b".", b"%2F",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let seed = SEEDS[round % SEEDS.len()].as_bytes();
            let mut data = seed.to_vec();
            for _ in 0..(1 + next() % 4) {
                let at = usize::try_from(next()).unwrap_or(0) % (data.len() + 1);
                match next() % 3 {
                    0 if at < data.len() => data[at] = u8::try_from(next() % 256).unwrap(),
                    1 => {
                        let ins =
                            interesting[usize::try_from(next()).unwrap_or(0) % interesting.len()];
                        data.splice(at..at, ins.iter().copied());
                    }
                    _ => data.truncate(at.max(data.len() / 2)),
                }
            }
            check(table(), &data)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(&data)));
        }
    }
}
