//! Route-level tests of `compile` + `RouteTable::route`: the kubernetes.io Prefix/Exact
//! table row by row, the hostname wildcard table, conflicts, canaries, redirects, source
//! ranges, rewrites, backends and endpoints, class selection, TLS hosts and annotation
//! errors. Each test builds its own small cluster from YAML.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use svcnet_ingress::{
    CertSource, ControllerConfig, Decision, ExternalTarget, Finding, RouteRequest, RouteTable,
    Scheme, Severity, compile, parse_annotations,
};
use svcnet_model::types::ObjectKey;
use svcnet_model::{AddressPlan, Cluster};

/// A selector-less Service `name` (port 80 "http" -> 8080) with one EndpointSlice of
/// `ready` endpoints (and one not-ready endpoint when `with_unready`).
fn service(ns: &str, name: &str, ips: &[&str], unready: &[&str]) -> String {
    let mut eps = String::new();
    for (i, ip) in ips.iter().enumerate() {
        eps.push_str(&format!(
            "  - {{addresses: [{ip}], conditions: {{ready: true}}, targetRef: {{kind: Pod, namespace: {ns}, name: {name}-{i}}}}}\n"
        ));
    }
    for (i, ip) in unready.iter().enumerate() {
        eps.push_str(&format!(
            "  - {{addresses: [{ip}], conditions: {{ready: false}}, targetRef: {{kind: Pod, namespace: {ns}, name: {name}-u{i}}}}}\n"
        ));
    }
    let endpoints = if eps.is_empty() {
        "endpoints: []\n".to_string()
    } else {
        format!("endpoints:\n{eps}")
    };
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080}}, {{name: admin, port: 9090}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-x1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
{endpoints}---
"
    )
}

/// One ready endpoint per Service, addresses 127.1.0.N.
fn services(names: &[&str]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ip = format!("127.1.{}.{}", i / 200, i % 200 + 1);
            service("default", n, &[&ip], &[])
        })
        .collect()
}

fn build(yaml: &str, cfg: &ControllerConfig) -> (RouteTable, Vec<Finding>) {
    let (c, d) = Cluster::from_yaml("test.yaml", yaml, &AddressPlan::default());
    let c = c.unwrap_or_else(|| panic!("cluster does not load:\n{d:?}"));
    compile(&c, cfg)
}

fn table(yaml: &str) -> RouteTable {
    build(yaml, &ControllerConfig::default()).0
}

/// A request, with defaults: GET over http from 127.0.0.1, draw 0.
struct Req<'a> {
    scheme: Scheme,
    host: &'a str,
    path: &'a str,
    headers: http::HeaderMap,
    client: IpAddr,
    draw: u32,
}

fn req<'a>(host: &'a str, path: &'a str) -> Req<'a> {
    Req {
        scheme: Scheme::Http,
        host,
        path,
        headers: http::HeaderMap::new(),
        client: "127.0.0.1".parse().unwrap(),
        draw: 0,
    }
}

impl Req<'_> {
    fn https(mut self) -> Self {
        self.scheme = Scheme::Https;
        self
    }
    fn header(mut self, k: &'static str, v: &str) -> Self {
        self.headers.append(k, v.parse().unwrap());
        self
    }
    fn from(mut self, ip: &str) -> Self {
        self.client = ip.parse().unwrap();
        self
    }
    fn draw(mut self, d: u32) -> Self {
        self.draw = d;
        self
    }
}

/// `svc path?query` for a proxied request (`svc!` when no endpoint is ready),
/// `STATUS [location]` for a reply.
fn ask(t: &RouteTable, r: Req<'_>) -> String {
    let (path, query) = match r.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (r.path, None),
    };
    let rr = RouteRequest {
        scheme: r.scheme,
        host: r.host,
        path,
        query,
        method: &http::Method::GET,
        headers: &r.headers,
        client_ip: r.client,
        weight_draw: r.draw,
    };
    match t.route(&rr) {
        Decision::Proxy(u) => {
            let bang = if u.backend.endpoints.is_empty() {
                "!"
            } else {
                ""
            };
            format!("{}{bang} {}", u.backend.service.name, u.path_and_query)
        }
        Decision::Respond(reply) => {
            let loc = reply
                .headers
                .iter()
                .find(|(n, _)| n == http::header::LOCATION)
                .map(|(_, v)| format!(" {}", v.to_str().unwrap()))
                .unwrap_or_default();
            format!("{}{loc}", reply.status)
        }
    }
}

fn svc(t: &RouteTable, host: &str, path: &str) -> String {
    let a = ask(t, req(host, path));
    a.split(' ').next().unwrap().to_string()
}

fn ingress(name: &str, annotations: &[(&str, &str)], spec: &str) -> String {
    let ann = if annotations.is_empty() {
        String::new()
    } else {
        let pairs: Vec<String> = annotations
            .iter()
            .map(|(k, v)| {
                let k = if k.contains('/') {
                    k.to_string()
                } else {
                    format!("nginx.ingress.kubernetes.io/{k}")
                };
                format!("{k}: {v:?}")
            })
            .collect();
        format!(", annotations: {{{}}}", pairs.join(", "))
    };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default{ann}}}
spec:
{spec}
---
"
    )
}

/// `  rules: - host: HOST / paths` for (path, type, service) triples.
fn rule(host: &str, paths: &[(&str, &str, &str)]) -> String {
    let mut s = if host.is_empty() {
        "  - http:\n      paths:\n".to_string()
    } else {
        format!("  - host: '{host}'\n    http:\n      paths:\n")
    };
    for (p, ty, svc) in paths {
        s.push_str(&format!(
            "      - {{path: '{p}', pathType: {ty}, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
        ));
    }
    s
}

fn rules(rs: &[String]) -> String {
    format!("  rules:\n{}", rs.concat())
}

// ------------------------------------------------------------------------------------
// The kubernetes.io Ingress page, "Examples" table, row by row.

/// (row, paths of the Ingress as (path, pathType), request path, expected service or status).
type Row = (
    u32,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[test]
fn kubernetes_io_path_table_row_by_row() {
    let rows: &[Row] = &[
        (1, &[("/", "Prefix")], "/", "s0"),
        (1, &[("/", "Prefix")], "/any/path", "s0"),
        (2, &[("/foo", "Exact")], "/foo", "s0"),
        (3, &[("/foo", "Exact")], "/bar", "404"),
        (4, &[("/foo", "Exact")], "/foo/", "404"),
        (5, &[("/foo/", "Exact")], "/foo", "404"),
        (6, &[("/foo", "Prefix")], "/foo", "s0"),
        (6, &[("/foo", "Prefix")], "/foo/", "s0"),
        (7, &[("/foo/", "Prefix")], "/foo", "s0"),
        (7, &[("/foo/", "Prefix")], "/foo/", "s0"),
        (8, &[("/aaa/bb", "Prefix")], "/aaa/bbb", "404"),
        (9, &[("/aaa/bbb", "Prefix")], "/aaa/bbb", "s0"),
        (10, &[("/aaa/bbb/", "Prefix")], "/aaa/bbb", "s0"),
        (11, &[("/aaa/bbb", "Prefix")], "/aaa/bbb/", "s0"),
        (12, &[("/aaa/bbb", "Prefix")], "/aaa/bbb/ccc", "s0"),
        (13, &[("/aaa/bbb", "Prefix")], "/aaa/bbbxyz", "404"),
        (14, &[("/", "Prefix"), ("/aaa", "Prefix")], "/aaa/ccc", "s1"),
        (
            15,
            &[("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")],
            "/aaa/bbb",
            "s2",
        ),
        (
            16,
            &[("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")],
            "/ccc",
            "s0",
        ),
        (17, &[("/aaa", "Prefix")], "/ccc", "404"),
        (18, &[("/foo", "Prefix"), ("/foo", "Exact")], "/foo", "s1"),
        (19, &[("/foo", "Prefix"), ("/foo/", "Prefix")], "/foo", "s1"),
    ];
    for (row, paths, request, want) in rows {
        let names = ["s0", "s1", "s2"];
        let triples: Vec<(&str, &str, &str)> = paths
            .iter()
            .enumerate()
            .map(|(i, (p, ty))| (*p, *ty, names[i]))
            .collect();
        let yaml = services(&names) + &ingress("t", &[], &rules(&[rule("t.test", &triples)]));
        let t = table(&yaml);
        assert_eq!(
            svc(&t, "t.test", request),
            *want,
            "row {row}: paths {paths:?}, request {request}"
        );
    }
}

#[test]
fn query_is_not_part_of_the_path() {
    let yaml = services(&["e"])
        + &ingress(
            "t",
            &[],
            &rules(&[rule("t.test", &[("/foo", "Exact", "e")])]),
        );
    let t = table(&yaml);
    assert_eq!(ask(&t, req("t.test", "/foo?x=/bar")), "e /foo?x=/bar");
}

#[test]
fn paths_are_matched_as_nginx_normalises_them() {
    let yaml = services(&["pub", "adm"])
        + &ingress(
            "t",
            &[],
            &rules(&[rule(
                "t.test",
                &[("/public", "Prefix", "pub"), ("/admin", "Exact", "adm")],
            )]),
        );
    let t = table(&yaml);
    assert_eq!(svc(&t, "t.test", "/public/../admin"), "adm");
    assert_eq!(svc(&t, "t.test", "/public//x"), "pub");
    assert_eq!(svc(&t, "t.test", "/%61dmin"), "adm");
    assert_eq!(svc(&t, "t.test", "/../admin"), "400");
    // The original path is what goes upstream (nginx proxy_pass without a URI).
    assert_eq!(ask(&t, req("t.test", "/public//x")), "pub /public//x");
}

// ------------------------------------------------------------------------------------
// Hosts

#[test]
fn hostname_wildcards_cover_exactly_one_label() {
    let yaml = services(&["wild", "exact", "fallback"])
        + &ingress(
            "h",
            &[],
            &rules(&[
                rule("*.foo.com", &[("/", "Prefix", "wild")]),
                rule("bar.foo.com", &[("/exact", "Prefix", "exact")]),
            ]),
        )
        + &ingress(
            "catch-all",
            &[],
            "  defaultBackend: {service: {name: fallback, port: {number: 80}}}",
        );
    let t = table(&yaml);
    // The kubernetes.io "Hostname wildcards" table.
    assert_eq!(svc(&t, "baz.foo.com", "/"), "wild");
    assert_eq!(svc(&t, "baz.bar.foo.com", "/"), "fallback");
    assert_eq!(svc(&t, "foo.com", "/"), "fallback");
    // A precise host wins over the wildcard, for all its paths: no fall back to the
    // wildcard's paths.
    assert_eq!(svc(&t, "bar.foo.com", "/exact"), "exact");
    assert_eq!(svc(&t, "bar.foo.com", "/other"), "404");
    // Case and port are ignored.
    assert_eq!(svc(&t, "BAZ.Foo.COM:8080", "/"), "wild");
    assert_eq!(svc(&t, "baz.foo.com.", "/"), "wild");
}

#[test]
fn default_server_is_hostless_rules_then_catch_all() {
    let yaml = services(&["hostless", "fallback", "named", "named-default"])
        + &ingress(
            "catch-all",
            &[],
            "  defaultBackend: {service: {name: fallback, port: {number: 80}}}",
        )
        + &ingress(
            "hostless",
            &[],
            &rules(&[rule("", &[("/h", "Prefix", "hostless")])]),
        )
        + &ingress(
            "named",
            &[],
            &format!(
                "  defaultBackend: {{service: {{name: named-default, port: {{number: 80}}}}}}\n{}",
                rules(&[rule("named.test", &[("/n", "Prefix", "named")])])
            ),
        );
    let t = table(&yaml);
    assert_eq!(svc(&t, "other.test", "/h/x"), "hostless");
    assert_eq!(svc(&t, "other.test", "/x"), "fallback");
    assert_eq!(svc(&t, "", "/x"), "fallback");
    // A named host never consults host-less rules; its own defaultBackend answers.
    assert_eq!(svc(&t, "named.test", "/h"), "named-default");
    assert_eq!(svc(&t, "named.test", "/n"), "named");
}

#[test]
fn empty_table_answers_404() {
    let t = RouteTable::empty();
    assert_eq!(svc(&t, "x", "/"), "404");
    assert_eq!(t.stats().routes, 0);
}

#[test]
fn paths_merge_across_namespaces() {
    let mut yaml = services(&["web"]) + &service("tenant", "cart", &["127.2.0.1"], &[]);
    yaml += &ingress(
        "web",
        &[],
        &rules(&[rule("shop.test", &[("/", "Prefix", "web")])]),
    );
    yaml += &ingress(
        "cart",
        &[],
        &rules(&[rule("shop.test", &[("/cart", "Prefix", "cart")])]),
    )
    .replace("namespace: default", "namespace: tenant");
    let t = table(&yaml);
    assert_eq!(svc(&t, "shop.test", "/cart/1"), "cart");
    assert_eq!(svc(&t, "shop.test", "/CART"), "web");
    assert_eq!(t.stats().hosts, 1);
    assert_eq!(t.stats().ingresses, 2);
}

// ------------------------------------------------------------------------------------
// Conflicts

#[test]
fn conflicts_go_to_the_oldest_then_namespace_name() {
    let with_ts = |name: &str, ns: &str, ts: Option<&str>, svc: &str| {
        let ing = ingress(
            name,
            &[],
            &rules(&[rule("c.test", &[("/app", "Prefix", svc)])]),
        )
        .replace("namespace: default", &format!("namespace: {ns}"));
        match ts {
            Some(ts) => ing.replace(
                &format!("name: {name},"),
                &format!("name: {name}, creationTimestamp: '{ts}',"),
            ),
            None => ing,
        }
    };
    let base = services(&["a", "b", "c"]) + &service("zz", "a", &["127.3.0.1"], &[]);
    // Oldest wins, whatever the file order.
    let yaml = base.clone()
        + &with_ts("new", "default", Some("2025-01-01T00:00:00Z"), "b")
        + &with_ts("old", "zz", Some("2024-01-01T00:00:00Z"), "a");
    let (t, findings) = build(&yaml, &ControllerConfig::default());
    assert_eq!(svc(&t, "c.test", "/app"), "a");
    let lost: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.message.starts_with("conflict lost"))
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].ingress, ObjectKey::new("default", "new"));
    assert_eq!(lost[0].severity, Severity::Notice);
    assert_eq!(lost[0].field, "spec.rules[0].http.paths[0]");

    // Equal timestamps: namespace/name ascending.
    let yaml = base.clone()
        + &with_ts("b-ing", "default", Some("2025-01-01T00:00:00Z"), "b")
        + &with_ts("a-ing", "default", Some("2025-01-01T00:00:00Z"), "a");
    assert_eq!(svc(&table(&yaml), "c.test", "/app"), "a");

    // No timestamp: newer than any timestamped one, then file order.
    let yaml = base.clone()
        + &with_ts("first", "default", None, "c")
        + &with_ts("stamped", "default", Some("2025-01-01T00:00:00Z"), "b");
    assert_eq!(svc(&table(&yaml), "c.test", "/app"), "b");
    let yaml = base
        + &with_ts("z-first", "default", None, "c")
        + &with_ts("a-second", "default", None, "b");
    assert_eq!(svc(&table(&yaml), "c.test", "/app"), "c");
}

#[test]
fn different_path_types_are_not_a_conflict() {
    let yaml = services(&["p", "e"])
        + &ingress(
            "one",
            &[],
            &rules(&[rule("c.test", &[("/shared", "Prefix", "p")])]),
        )
        + &ingress(
            "two",
            &[],
            &rules(&[rule("c.test", &[("/shared", "Exact", "e")])]),
        );
    let (t, findings) = build(&yaml, &ControllerConfig::default());
    assert_eq!(svc(&t, "c.test", "/shared"), "e");
    assert_eq!(svc(&t, "c.test", "/shared/x"), "p");
    assert!(findings.iter().all(|f| !f.message.contains("conflict")));
}

// ------------------------------------------------------------------------------------
// Canaries

fn canary_cluster(canary_annotations: &[(&str, &str)]) -> RouteTable {
    let mut ann = vec![("canary", "true")];
    ann.extend_from_slice(canary_annotations);
    let yaml = services(&["v1", "v2"])
        + &ingress(
            "main",
            &[],
            &rules(&[rule("c.test", &[("/", "Prefix", "v1")])]),
        )
        + &ingress(
            "main-canary",
            &ann,
            &rules(&[rule("c.test", &[("/", "Prefix", "v2")])]),
        );
    table(&yaml)
}

#[test]
fn canary_weight_splits_by_the_draw() {
    let t = canary_cluster(&[("canary-weight", "10")]);
    let hits = (0..100)
        .filter(|d| ask(&t, req("c.test", "/").draw(*d)).starts_with("v2"))
        .count();
    assert_eq!(hits, 10);
    let t = canary_cluster(&[("canary-weight", "0")]);
    assert!((0..100).all(|d| ask(&t, req("c.test", "/").draw(d)).starts_with("v1 ")));
    let t = canary_cluster(&[("canary-weight", "100")]);
    assert!((0..100).all(|d| ask(&t, req("c.test", "/").draw(d)).starts_with("v2 ")));
    let t = canary_cluster(&[("canary-weight", "1"), ("canary-weight-total", "4")]);
    let hits = (0..100)
        .filter(|d| ask(&t, req("c.test", "/").draw(*d)).starts_with("v2"))
        .count();
    assert_eq!(hits, 25);
}

#[test]
fn canary_header_then_cookie_then_weight() {
    let t = canary_cluster(&[
        ("canary-by-header", "X-Canary"),
        ("canary-by-cookie", "canary"),
        ("canary-weight", "100"),
    ]);
    let r = || req("c.test", "/");
    assert_eq!(svc(&t, "c.test", "/"), "v2");
    assert_eq!(ask(&t, r().header("x-canary", "never")), "v1 /");
    assert_eq!(ask(&t, r().header("x-canary", "always")), "v2 /");
    // Header "never" beats cookie "always".
    assert_eq!(
        ask(
            &t,
            r().header("x-canary", "never")
                .header("cookie", "canary=always")
        ),
        "v1 /"
    );
    assert_eq!(ask(&t, r().header("cookie", "a=b; canary=never")), "v1 /");
    // Another header value falls through to the cookie, then the weight.
    assert_eq!(
        ask(
            &t,
            r().header("x-canary", "maybe")
                .header("cookie", "canary=never")
        ),
        "v1 /"
    );
    assert_eq!(ask(&t, r().header("x-canary", "maybe")), "v2 /");
}

#[test]
fn canary_by_header_value() {
    let t = canary_cluster(&[
        ("canary-by-header", "X-Region"),
        ("canary-by-header-value", "eu"),
    ]);
    assert_eq!(ask(&t, req("c.test", "/").header("x-region", "eu")), "v2 /");
    assert_eq!(ask(&t, req("c.test", "/").header("x-region", "us")), "v1 /");
    assert_eq!(
        ask(&t, req("c.test", "/").header("x-region", "always")),
        "v1 /"
    );
    assert_eq!(ask(&t, req("c.test", "/")), "v1 /");
}

#[test]
fn canary_never_creates_a_host() {
    let yaml = services(&["v2"])
        + &ingress(
            "only-canary",
            &[("canary", "true"), ("canary-weight", "100")],
            &rules(&[rule("new.test", &[("/", "Prefix", "v2")])]),
        );
    let (t, findings) = build(&yaml, &ControllerConfig::default());
    assert_eq!(svc(&t, "new.test", "/"), "404");
    assert!(t.served().is_empty());
    assert!(
        findings.iter().any(|f| f.severity == Severity::Warning
            && f.message.contains("a canary never creates a host"))
    );
}

// ------------------------------------------------------------------------------------
// Redirects and source ranges

fn tls_secret(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
  tls.key: |
    -----BEGIN PRIVATE KEY-----
    MIIB
    -----END PRIVATE KEY-----
---
"
    )
}

#[test]
fn ssl_redirect_for_hosts_with_tls() {
    let tls = |host: &str| format!("  tls: [{{hosts: ['{host}'], secretName: s-tls}}]\n");
    let yaml = services(&["app", "extra", "plain", "force"])
        + &tls_secret("s-tls")
        + &ingress(
            "secure",
            &[],
            &(tls("secure.test") + &rules(&[rule("secure.test", &[("/", "Prefix", "app")])])),
        )
        + &ingress(
            "extra",
            &[],
            &rules(&[rule("secure.test", &[("/extra", "Prefix", "extra")])]),
        )
        + &ingress(
            "plain",
            &[("ssl-redirect", "false")],
            &(tls("plain.test") + &rules(&[rule("plain.test", &[("/", "Prefix", "plain")])])),
        )
        + &ingress(
            "force",
            &[("force-ssl-redirect", "true")],
            &rules(&[rule("force.test", &[("/", "Prefix", "force")])]),
        );
    let t = table(&yaml);
    assert_eq!(
        ask(&t, req("secure.test:8080", "/a/b?x=1")),
        "308 https://secure.test/a/b?x=1"
    );
    // TLS is per host: another Ingress's path on the host is redirected too.
    assert_eq!(
        ask(&t, req("secure.test", "/extra/")),
        "308 https://secure.test/extra"
    );
    assert_eq!(
        ask(&t, req("secure.test", "/extra").https()),
        "extra /extra"
    );
    assert_eq!(ask(&t, req("plain.test", "/x")), "plain /x");
    assert_eq!(ask(&t, req("force.test", "/")), "308 https://force.test/");
    assert_eq!(ask(&t, req("force.test", "/").https()), "force /");
    // A raw UTF-8 path (hyper takes one) goes into Location percent-encoded, a valid URI.
    assert_eq!(
        ask(&t, req("force.test", "/caf\u{e9} x")),
        "308 https://force.test/caf%C3%A9%20x"
    );
}

#[test]
fn app_root_and_redirect_annotations() {
    let yaml = services(&["app"])
        + &ingress(
            "root",
            &[("app-root", "/app1")],
            &rules(&[rule("root.test", &[("/", "Prefix", "app")])]),
        )
        + &ingress(
            "moved",
            &[("permanent-redirect", "https://new.test/landing")],
            &rules(&[rule("old.test", &[("/", "Prefix", "app")])]),
        )
        + &ingress(
            "moved308",
            &[
                ("permanent-redirect", "https://new.test/"),
                ("permanent-redirect-code", "308"),
            ],
            &rules(&[rule("old308.test", &[("/", "Prefix", "app")])]),
        )
        + &ingress(
            "temp",
            &[("temporal-redirect", "https://maintenance.test/")],
            &rules(&[rule("temp.test", &[("/", "Prefix", "app")])]),
        );
    let t = table(&yaml);
    assert_eq!(ask(&t, req("root.test", "/")), "302 http://root.test/app1");
    assert_eq!(ask(&t, req("root.test", "/other")), "app /other");
    assert_eq!(
        ask(&t, req("old.test", "/x?y")),
        "301 https://new.test/landing"
    );
    assert_eq!(ask(&t, req("old308.test", "/")), "308 https://new.test/");
    assert_eq!(
        ask(&t, req("temp.test", "/a")),
        "302 https://maintenance.test/"
    );
}

#[test]
fn source_ranges_answer_403() {
    let yaml = services(&["app"])
        + &ingress(
            "allow",
            &[("whitelist-source-range", "127.0.0.0/8,::1/128")],
            &rules(&[rule("allow.test", &[("/", "Prefix", "app")])]),
        )
        + &ingress(
            "deny",
            &[("allowlist-source-range", "192.0.2.0/24")],
            &rules(&[rule("deny.test", &[("/", "Prefix", "app")])]),
        )
        + &ingress(
            "denylist",
            &[("denylist-source-range", "127.0.0.2")],
            &rules(&[rule("denylist.test", &[("/", "Prefix", "app")])]),
        );
    let t = table(&yaml);
    assert_eq!(svc(&t, "allow.test", "/"), "app");
    assert_eq!(ask(&t, req("allow.test", "/").from("::1")), "app /");
    assert_eq!(ask(&t, req("allow.test", "/").from("192.0.2.1")), "403");
    assert_eq!(svc(&t, "deny.test", "/"), "403");
    assert_eq!(ask(&t, req("deny.test", "/").from("192.0.2.9")), "app /");
    assert_eq!(
        ask(&t, req("deny.test", "/").from("::ffff:192.0.2.9")),
        "app /"
    );
    assert_eq!(ask(&t, req("denylist.test", "/").from("127.0.0.2")), "403");
    assert_eq!(
        ask(&t, req("denylist.test", "/").from("127.0.0.3")),
        "app /"
    );
}

// ------------------------------------------------------------------------------------
// Regex paths and rewrites

#[test]
fn rewrite_target_with_capture_groups() {
    let yaml = services(&["rw", "health"])
        + &ingress(
            "rewrite",
            &[("use-regex", "true"), ("rewrite-target", "/$2")],
            &rules(&[rule(
                "rw.test",
                &[("/something(/|$)(.*)", "ImplementationSpecific", "rw")],
            )]),
        )
        + &ingress(
            "health",
            &[],
            &rules(&[rule("rw.test", &[("/HEALTH", "Exact", "health")])]),
        );
    let t = table(&yaml);
    assert_eq!(ask(&t, req("rw.test", "/something/new")), "rw /new");
    assert_eq!(ask(&t, req("rw.test", "/something")), "rw /");
    assert_eq!(ask(&t, req("rw.test", "/SOMETHING/a/b?q=1")), "rw /a/b?q=1");
    // Regex mode stays with its own Ingress.
    assert_eq!(ask(&t, req("rw.test", "/HEALTH")), "health /HEALTH");
    assert_eq!(svc(&t, "rw.test", "/healthz"), "404");
    assert_eq!(t.routes().iter().filter(|r| r.regex).count(), 1);
}

#[test]
fn seed_rewrite_target_slash_on_prefix_paths() {
    let yaml = services(&["users"])
        + &ingress(
            "seed",
            &[("rewrite-target", "/")],
            &rules(&[rule("api.test", &[("/users", "Prefix", "users")])]),
        );
    let t = table(&yaml);
    // nginx's `rewrite` replaces the whole URI; the query is kept.
    assert_eq!(ask(&t, req("api.test", "/users/42?a=b")), "users /?a=b");
    assert_eq!(svc(&t, "api.test", "/usersx"), "404");
}

#[test]
fn implementation_specific_without_regex_is_prefix() {
    let yaml = services(&["docs"])
        + &ingress(
            "is",
            &[],
            &rules(&[rule(
                "is.test",
                &[("/docs", "ImplementationSpecific", "docs")],
            )]),
        );
    let t = table(&yaml);
    assert_eq!(svc(&t, "is.test", "/docs/x"), "docs");
    assert_eq!(svc(&t, "is.test", "/docsx"), "404");
    assert_eq!(svc(&t, "is.test", "/DOCS"), "404");
}

#[test]
fn longest_regex_against_prefix() {
    let yaml = services(&["re", "pre"])
        + &ingress(
            "re",
            &[("use-regex", "true")],
            &rules(&[rule(
                "r.test",
                &[("/api/v[0-9]+", "ImplementationSpecific", "re")],
            )]),
        )
        + &ingress(
            "pre",
            &[],
            &rules(&[rule("r.test", &[("/api", "Prefix", "pre")])]),
        );
    let t = table(&yaml);
    assert_eq!(svc(&t, "r.test", "/api/v2/x"), "re");
    assert_eq!(svc(&t, "r.test", "/api/other"), "pre");
}

#[test]
fn invalid_regex_rejects_only_its_ingress() {
    let yaml = services(&["a", "b"])
        + &ingress(
            "bad",
            &[("use-regex", "true")],
            &rules(&[rule(
                "bad.test",
                &[("/(unclosed", "ImplementationSpecific", "a")],
            )]),
        )
        + &ingress(
            "good",
            &[],
            &rules(&[rule("good.test", &[("/", "Prefix", "b")])]),
        );
    let (t, findings) = build(&yaml, &ControllerConfig::default());
    assert_eq!(svc(&t, "good.test", "/"), "b");
    assert_eq!(svc(&t, "bad.test", "/(unclosed"), "404");
    let f = findings
        .iter()
        .find(|f| f.ingress.name == "bad" && f.field == "spec.rules[0].http.paths[0].path")
        .unwrap();
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("not a valid regex"), "{}", f.message);
}

// ------------------------------------------------------------------------------------
// Backends

#[test]
fn backends_resolve_to_ready_endpoints() {
    let yaml = service(
        "default",
        "lb",
        &["127.4.0.1", "127.4.0.2", "127.4.0.3"],
        &["127.4.0.9"],
    ) + &service("default", "empty", &[], &["127.4.1.1"])
        + &ingress(
            "lb",
            &[],
            &format!(
                "{}{}",
                rules(&[
                    rule(
                        "lb.test",
                        &[("/", "Prefix", "lb"), ("/empty", "Prefix", "empty")]
                    ),
                    rule("lb.test", &[("/missing", "Prefix", "nosuch")]),
                ]),
                "  - host: lb.test\n    http:\n      paths:\n      - {path: /named, pathType: Prefix, backend: {service: {name: lb, port: {name: http}}}}\n      - {path: /noport, pathType: Prefix, backend: {service: {name: lb, port: {number: 81}}}}\n"
            ),
        );
    let (t, findings) = build(&yaml, &ControllerConfig::default());
    let route = t
        .routes()
        .iter()
        .find(|r| r.path == "/" && r.host.as_deref() == Some("lb.test"))
        .unwrap();
    let addrs: Vec<String> = route
        .backend
        .endpoints
        .iter()
        .map(|e| e.addr.to_string())
        .collect();
    assert_eq!(
        addrs,
        ["127.4.0.1:8080", "127.4.0.2:8080", "127.4.0.3:8080"]
    );
    assert_eq!(route.backend.service_port, Some(80));
    assert_eq!(route.backend.port_name, "http");
    assert_eq!(
        route.backend.endpoints[0].pod,
        Some(ObjectKey::new("default", "lb-0"))
    );
    assert_eq!(ask(&t, req("lb.test", "/named")), "lb /named");
    // No ready endpoint: the server answers 503.
    assert_eq!(ask(&t, req("lb.test", "/empty")), "empty! /empty");
    assert_eq!(svc(&t, "lb.test", "/missing"), "503");
    assert_eq!(svc(&t, "lb.test", "/noport"), "503");
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("Service default/nosuch does not exist"))
    );
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("has no TCP port 81"))
    );
}

// ------------------------------------------------------------------------------------
// Class selection

fn class(name: &str, controller: &str, default: bool) -> String {
    let ann = if default {
        ", annotations: {ingressclass.kubernetes.io/is-default-class: 'true'}"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: {name}{ann}}}
spec: {{controller: {controller}}}
---
"
    )
}

fn classed(name: &str, class: Option<&str>, legacy: Option<&str>) -> String {
    let spec = format!(
        "{}{}",
        class
            .map(|c| format!("  ingressClassName: {c}\n"))
            .unwrap_or_default(),
        rules(&[rule(&format!("{name}.test"), &[("/", "Prefix", "app")])])
    );
    let ann: Vec<(&str, &str)> = legacy
        .map(|l| vec![("kubernetes.io/ingress.class", l)])
        .unwrap_or_default();
    ingress(name, &ann, &spec)
}

#[test]
fn class_selection() {
    let base = services(&["app"])
        + &class("svcnet", "svcnet.io/ingress-controller", false)
        + &class("nginx", "k8s.io/ingress-nginx", true)
        + &classed("mine", Some("svcnet"), None)
        + &classed("legacy", None, Some("svcnet"))
        + &classed("theirs", Some("nginx"), None)
        + &classed("unclassed", None, None)
        + &classed("ghost", Some("ghost"), None);
    let (t, findings) = build(&base, &ControllerConfig::default());
    let served: Vec<&str> = t.served().keys().map(|k| k.name.as_str()).collect();
    assert_eq!(served, ["legacy", "mine"]);
    assert_eq!(t.served()[&ObjectKey::new("default", "mine")], "svcnet");
    for ignored in ["theirs", "unclassed", "ghost"] {
        let f = findings
            .iter()
            .find(|f| f.ingress.name == ignored)
            .unwrap_or_else(|| panic!("no finding for {ignored}"));
        assert_eq!(f.severity, Severity::Notice);
        assert!(f.message.starts_with("ignored"), "{}", f.message);
    }
    // --ingress-class nginx takes over an ingress-nginx cluster (the default class too).
    let cfg = ControllerConfig {
        extra_classes: vec!["nginx".into()],
    };
    let (t, _) = build(&base, &cfg);
    let served: Vec<&str> = t.served().keys().map(|k| k.name.as_str()).collect();
    assert_eq!(served, ["legacy", "mine", "theirs", "unclassed"]);

    // No IngressClass at all: class-less Ingresses are served (the seed's examples).
    let yaml = services(&["app"]) + &classed("seed", None, None);
    let t = table(&yaml);
    assert_eq!(svc(&t, "seed.test", "/"), "app");
    // svcnet's class is the default: class-less Ingresses get it.
    let yaml = services(&["app"])
        + &class("svcnet", "svcnet.io/ingress-controller", true)
        + &classed("unclassed", None, None);
    assert_eq!(svc(&table(&yaml), "unclassed.test", "/"), "app");
}

// ------------------------------------------------------------------------------------
// TLS hosts

#[test]
fn tls_hosts_and_certificate_sources() {
    let yaml = services(&["app"])
        + &tls_secret("good-tls")
        + "apiVersion: v1\nkind: Secret\nmetadata: {name: opaque, namespace: default}\nstringData: {a: b}\n---\n"
        + &ingress(
            "t",
            &[],
            &format!(
                "  tls:\n  - {{hosts: [good.test, '*.wild.test'], secretName: good-tls}}\n  - {{hosts: [missing.test], secretName: nope}}\n  - {{hosts: [opaque.test], secretName: opaque}}\n  - {{hosts: [none.test]}}\n{}",
                rules(&[
                    rule("good.test", &[("/", "Prefix", "app")]),
                    rule("a.wild.test", &[("/", "Prefix", "app")]),
                ])
            ),
        )
        + &ingress(
            "cm",
            &[("cert-manager.io/cluster-issuer", "letsencrypt")],
            &format!(
                "  tls: [{{hosts: [cm.test], secretName: cm-tls}}]\n{}",
                rules(&[rule("cm.test", &[("/", "Prefix", "app")])])
            ),
        );
    let (t, findings) = build(&yaml, &ControllerConfig::default());
    let source = |h: &str| {
        t.tls_hosts()
            .iter()
            .find(|t| t.host == h)
            .unwrap_or_else(|| panic!("no TLS host {h}"))
            .source
            .clone()
    };
    assert!(matches!(source("good.test"), CertSource::Secret { .. }));
    assert!(matches!(source("*.wild.test"), CertSource::Secret { .. }));
    let why = |h: &str| match source(h) {
        CertSource::LocalCa { why } => why,
        other => panic!("{h}: {other:?}"),
    };
    assert!(why("missing.test").contains("does not exist"));
    assert!(why("opaque.test").contains("not kubernetes.io/tls"));
    assert_eq!(why("none.test"), "no secretName");
    assert!(why("cm.test").starts_with("cert-manager.io/cluster-issuer: letsencrypt"));
    assert!(
        findings
            .iter()
            .any(|f| f.field == "spec.tls[1].secretName" && f.severity == Severity::Warning)
    );
    // The wildcard certificate covers a.wild.test: it is redirected.
    assert_eq!(ask(&t, req("a.wild.test", "/")), "308 https://a.wild.test/");
}

// ------------------------------------------------------------------------------------
// server-alias

#[test]
fn server_alias_is_an_extra_precise_name() {
    let yaml = services(&["app", "other"])
        + &ingress(
            "alias",
            &[("server-alias", "www.alias.test, Alias2.test")],
            &rules(&[rule("alias.test", &[("/", "Prefix", "app")])]),
        )
        + &ingress(
            "more",
            &[],
            &rules(&[rule("alias.test", &[("/more", "Prefix", "other")])]),
        );
    let t = table(&yaml);
    assert_eq!(svc(&t, "www.alias.test", "/x"), "app");
    assert_eq!(svc(&t, "alias2.test", "/more"), "other");
}

// ------------------------------------------------------------------------------------
// Annotations

#[test]
fn annotation_errors_invalidate_only_their_ingress() {
    let yaml = services(&["a", "b"])
        + &ingress(
            "snippet",
            &[("configuration-snippet", "more_set_headers x;")],
            &rules(&[rule("s.test", &[("/", "Prefix", "a")])]),
        )
        + &ingress(
            "badsize",
            &[("proxy-body-size", "lots")],
            &rules(&[rule("z.test", &[("/", "Prefix", "a")])]),
        )
        + &ingress(
            "good",
            &[],
            &rules(&[rule("g.test", &[("/", "Prefix", "b")])]),
        );
    let (t, findings) = build(&yaml, &ControllerConfig::default());
    assert_eq!(svc(&t, "g.test", "/"), "b");
    assert_eq!(svc(&t, "s.test", "/"), "404");
    assert_eq!(svc(&t, "z.test", "/"), "404");
    let snippet = findings
        .iter()
        .find(|f| f.ingress.name == "snippet" && f.field.contains("configuration-snippet"))
        .unwrap();
    assert_eq!(snippet.severity, Severity::Error);
    assert_eq!(
        snippet.message,
        "snippets are refused: svcnet never splices user text into configuration"
    );
    assert!(findings.iter().any(|f| f.ingress.name == "badsize"
        && f.field == "metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]"
        && f.severity == Severity::Error));
    assert_eq!(t.served().len(), 1);
}

fn annotations(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
        .collect()
}

#[test]
fn annotation_values_parse_like_ingress_nginx() {
    let (p, issues) = parse_annotations(&annotations(&[
        ("proxy-body-size", "8m"),
        ("proxy-connect-timeout", "10"),
        ("proxy-read-timeout", "120"),
        ("limit-rps", "5"),
        ("limit-connections", "2"),
        ("limit-whitelist", "10.0.0.0/8, 192.168.1.1"),
        ("backend-protocol", "GRPC"),
        ("affinity", "cookie"),
        ("session-cookie-name", "route"),
        ("upstream-hash-by", "$http_x_user"),
        ("enable-cors", "true"),
        ("cors-allow-origin", "https://app.test"),
        ("auth-url", "http://auth.default.svc/verify"),
        ("auth-signin", "https://login.test/start"),
        ("auth-response-headers", "X-User, X-Email"),
        ("canary", "true"),
        ("canary-weight", "30"),
        ("canary-by-header", "X-Canary"),
    ]));
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(p.proxy_body_size, Some(8 * 1024 * 1024));
    assert_eq!(p.connect_timeout.as_secs(), 10);
    assert_eq!(p.read_timeout.as_secs(), 120);
    assert_eq!(p.limits.rps, Some(5));
    assert_eq!(p.limits.connections, Some(2));
    assert_eq!(p.limits.burst_multiplier, 5);
    assert_eq!(p.limits.whitelist.len(), 2);
    assert_eq!(p.backend_protocol, svcnet_ingress::BackendProtocol::Grpc);
    assert_eq!(p.affinity.as_ref().unwrap().name, "route");
    assert_eq!(
        p.upstream_hash_by,
        Some(svcnet_ingress::HashBy::Header(
            http::HeaderName::from_static("x-user")
        ))
    );
    let cors = p.cors.unwrap();
    assert_eq!(cors.allow_origin, ["https://app.test"]);
    assert!(cors.allow_credentials);
    let auth = p.auth.unwrap();
    assert_eq!(auth.url.host(), Some("auth.default.svc"));
    assert_eq!(auth.response_headers.len(), 2);
    let canary = p.canary.unwrap();
    assert_eq!((canary.weight, canary.weight_total), (30, 100));
    assert_eq!(canary.header.as_deref(), Some("x-canary"));
}

#[test]
fn annotation_errors_and_warnings() {
    let err = |pairs: &[(&str, &str)]| {
        let (_, issues) = parse_annotations(&annotations(pairs));
        issues
            .iter()
            .filter(|i| i.1 == Severity::Error)
            .map(|i| i.0.clone())
            .collect::<Vec<_>>()
    };
    let p = "nginx.ingress.kubernetes.io/";
    assert_eq!(
        err(&[("canary", "true"), ("canary-weight", "101")]),
        [format!("{p}canary-weight")]
    );
    assert_eq!(err(&[("limit-rps", "-1")]), [format!("{p}limit-rps")]);
    assert_eq!(
        err(&[("ssl-redirect", "yes")]),
        [format!("{p}ssl-redirect")]
    );
    assert_eq!(
        err(&[("whitelist-source-range", "10.0.0.0/33")]),
        [format!("{p}whitelist-source-range")]
    );
    assert_eq!(err(&[("affinity", "ip")]), [format!("{p}affinity")]);
    assert_eq!(
        err(&[("upstream-hash-by", "$request_uri$host")]),
        [format!("{p}upstream-hash-by")]
    );
    assert_eq!(err(&[("auth-url", "ftp://x")]), [format!("{p}auth-url")]);
    assert_eq!(
        err(&[("permanent-redirect", "https://x\n/y")]),
        [format!("{p}permanent-redirect")]
    );
    assert_eq!(
        err(&[("server-snippet", "x")]),
        [format!("{p}server-snippet")]
    );
    assert_eq!(
        err(&[("stream-snippet", "x")]),
        [format!("{p}stream-snippet")]
    );
    assert_eq!(
        err(&[("rewrite-target", "https://elsewhere.test/$1")]),
        [format!("{p}rewrite-target")]
    );

    // The seed's `rate-limit` / `rate-limit-rps` are read as limit-rps, with a warning.
    let (p2, issues) = parse_annotations(&annotations(&[("rate-limit", "100")]));
    assert_eq!(p2.limits.rps, Some(100));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].1, Severity::Warning);
    assert!(
        issues[0]
            .2
            .contains("nginx.ingress.kubernetes.io/limit-rps")
    );
    let (p3, _) = parse_annotations(&annotations(&[("rate-limit-rps", "10")]));
    assert_eq!(p3.limits.rps, Some(10));
    // Unknown annotations are reported, not fatal.
    let (_, issues) = parse_annotations(&annotations(&[("proxy-buffering", "on")]));
    assert_eq!(issues[0].1, Severity::Warning);
}

// ------------------------------------------------------------------------------------
// The seed's examples (examples/ in the repository)

fn example(dir: &str) -> (RouteTable, Vec<Finding>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(dir);
    let (c, d) = Cluster::load(&[path], &AddressPlan::default(), None);
    let c = c.unwrap_or_else(|| panic!("{dir} does not load:\n{d:?}"));
    compile(&c, &ControllerConfig::default())
}

#[test]
fn seed_ecommerce_ingress() {
    let (t, findings) = example("ecommerce-ingress");
    assert_eq!(
        ask(&t, req("api.ecommerce.com", "/users")),
        "308 https://api.ecommerce.com/users"
    );
    // rewrite-target: / sends every matched path to `/` (nginx `rewrite` semantics).
    assert_eq!(
        ask(&t, req("api.ecommerce.com", "/users/7").https()),
        "user-service /"
    );
    assert_eq!(
        ask(&t, req("api.ecommerce.com", "/products").https()),
        "product-service /"
    );
    assert_eq!(
        ask(&t, req("api.ecommerce.com", "/orders/1?x=1").https()),
        "order-service /?x=1"
    );
    assert_eq!(
        ask(&t, req("www.ecommerce.com", "/cart").https()),
        "frontend-service /"
    );
    assert_eq!(ask(&t, req("api.ecommerce.com", "/").https()), "404");
    // The seed's rate-limit is read as limit-rps, with a warning naming the real annotation.
    let route = &t.routes()[0];
    assert_eq!(route.policy.limits.rps, Some(100));
    assert!(findings.iter().any(|f| f.severity == Severity::Warning
        && f.field.ends_with("rate-limit]")
        && f.message.contains("limit-rps")));
    // No Secret: the local CA issues the certificate, as cert-manager would.
    for h in ["api.ecommerce.com", "www.ecommerce.com"] {
        let tls = t.tls_hosts().iter().find(|t| t.host == h).unwrap();
        assert!(
            matches!(&tls.source, CertSource::LocalCa { why } if why.starts_with("cert-manager.io/cluster-issuer: letsencrypt-prod")),
            "{tls:?}"
        );
    }
}

#[test]
fn seed_advanced_ingress() {
    let (t, _) = example("advanced-ingress");
    let canary = (0..100)
        .filter(|d| ask(&t, req("api.company.com", "/").draw(*d)).starts_with("api-service-v2 "))
        .count();
    assert_eq!(canary, 10);
    let app = t
        .routes()
        .iter()
        .find(|r| r.host.as_deref() == Some("app.company.com"))
        .unwrap();
    let auth = app.policy.auth.as_ref().unwrap();
    assert_eq!(auth.url.to_string(), "https://auth.company.com/oauth2/auth");
    assert_eq!(
        auth.signin.as_deref(),
        Some("https://auth.company.com/oauth2/start")
    );
    assert_eq!(app.policy.limits.rps, Some(10));
}

#[test]
fn auth_hosts_resolve_to_services_and_served_hosts_without_dns() {
    let yaml = services(&["web"])
        + &ingress(
            "web",
            &[],
            &rules(&[rule("app.example.com", &[("/", "Prefix", "web")])]),
        );
    let t = table(&yaml);
    let (c, _) = Cluster::from_yaml("test.yaml", &yaml, &AddressPlan::default());
    let ip = c.unwrap().services[&svcnet_model::types::ObjectKey::new("default", "web")]
        .cluster_ip_list()[0];
    for name in [
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local",
        "WEB.default.svc.cluster.local.",
    ] {
        assert_eq!(t.service_ip(name), Some(ip), "{name}");
    }
    assert_eq!(t.service_ip("web.other.svc.cluster.local"), None);
    assert_eq!(t.service_ip("web"), None);
    assert!(t.serves_host("app.example.com"));
    assert!(t.serves_host("APP.example.com:8443"));
    assert!(!t.serves_host("other.example.com"));
}

// ------------------------------------------------------------------------------------
// ExternalName backends

/// An ExternalName Service `name` in `default` for `external`, port 80 to `target`.
fn external_name(name: &str, external: &str, target: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{type: ExternalName, externalName: '{external}', ports: [{{name: http, port: 80, targetPort: {target}}}]}}
---
"
    )
}

/// ExternalName backends go where cluster DNS would send a client of the name: a
/// Service's ready endpoints, a headless Service's pods at the port asked for, or an IP
/// address; a name outside the cluster is left to be looked up when requests come.
/// Loopback and unresolvable ports answer 503 with a finding that says why.
#[test]
fn external_name_backends_resolve_cluster_names_and_addresses() {
    let headless = "apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-x1, namespace: shop, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
  - {addresses: [127.4.3.1], conditions: {ready: true}}
---
";
    let cases: [(&str, &str, &str); 10] = [
        ("ext-web", "web.shop.svc.cluster.local", "80"),
        ("ext-short", "web.shop.svc", "80"),
        ("ext-ip", "192.0.2.10", "8443"),
        ("ext-db", "db.shop.svc.cluster.local", "5432"),
        ("ext-lo", "127.0.0.1", "80"),
        ("ext-localhost", "localhost", "80"),
        ("ext-out", "api.example.com", "80"),
        ("ext-missing", "nosuch.shop.svc.cluster.local", "80"),
        ("ext-noport", "web.shop.svc.cluster.local", "81"),
        ("ext-named", "web.shop.svc.cluster.local", "http"),
    ];
    let mut yaml = service("shop", "web", &["127.4.2.1", "127.4.2.2"], &[]) + headless;
    let mut paths = Vec::new();
    for (name, external, target) in cases {
        yaml += &external_name(name, external, target);
        paths.push((format!("/{name}"), "Prefix", name));
    }
    let paths: Vec<(&str, &str, &str)> =
        paths.iter().map(|(p, t, n)| (p.as_str(), *t, *n)).collect();
    yaml += &ingress("ext", &[], &rules(&[rule("ext.test", &paths)]));
    let (t, findings) = build(&yaml, &ControllerConfig::default());
    let endpoints = |name: &str| -> Vec<String> {
        let r = t
            .routes()
            .iter()
            .find(|r| r.path == format!("/{name}"))
            .unwrap_or_else(|| panic!("no route for {name}"));
        r.backend
            .endpoints
            .iter()
            .map(|e| e.addr.to_string())
            .collect()
    };
    assert_eq!(endpoints("ext-web"), ["127.4.2.1:8080", "127.4.2.2:8080"]);
    assert_eq!(endpoints("ext-short"), ["127.4.2.1:8080", "127.4.2.2:8080"]);
    assert_eq!(endpoints("ext-ip"), ["192.0.2.10:8443"]);
    assert_eq!(endpoints("ext-db"), ["127.4.3.1:5432"]);
    assert_eq!(ask(&t, req("ext.test", "/ext-web/a")), "ext-web /ext-web/a");
    let out = t.routes().iter().find(|r| r.path == "/ext-out").unwrap();
    assert_eq!(
        out.backend.external,
        Some(ExternalTarget {
            host: "api.example.com".into(),
            port: 80
        })
    );
    assert!(out.backend.endpoints.is_empty() && out.backend.unusable.is_none());
    assert!(
        t.routes()
            .iter()
            .all(|r| r.path == "/ext-out" || r.backend.external.is_none())
    );
    for (name, why) in [
        ("ext-lo", "127.0.0.1 is a loopback address"),
        ("ext-localhost", "localhost is loopback"),
        (
            "ext-missing",
            "names Service shop/nosuch, which does not exist",
        ),
        (
            "ext-noport",
            "names Service shop/web, which has no TCP port 81",
        ),
        ("ext-named", "has the named targetPort \"http\""),
    ] {
        assert_eq!(svc(&t, "ext.test", &format!("/{name}")), "503", "{name}");
        let want = format!("ExternalName Service default/{name}: ");
        assert!(
            findings
                .iter()
                .any(|f| f.message.contains(&want) && f.message.contains(why)),
            "no finding for {name} saying {why:?}: {findings:#?}"
        );
    }
}
