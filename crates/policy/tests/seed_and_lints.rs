//! The seed's NetworkPolicy example (examples/network-policies): what the matrix shows for
//! it, the lints `svcnet check` gets from this crate, and the matrix renderings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use svcnet_model::types::{ObjectKey, Protocol};
use svcnet_model::{AddressPlan, Cluster, Severity};
use svcnet_policy::{PolicyIndex, lints, render};

fn seed() -> Cluster {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/network-policies");
    let (c, d) = Cluster::load(&[dir], &AddressPlan::default(), None);
    let errors: Vec<String> =
        d.0.iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    c.expect("cluster")
}

fn yaml(text: &str) -> Cluster {
    let (c, d) = Cluster::from_yaml("t.yaml", text, &AddressPlan::default());
    c.unwrap_or_else(|| panic!("{d:?}"))
}

fn allowed(idx: &PolicyIndex, from: &str, to: &str, port: u16, proto: Protocol) -> bool {
    let k = |s: &str| {
        let (ns, n) = s.split_once('/').unwrap();
        idx.pod_endpoint(&ObjectKey::new(ns, n))
            .unwrap_or_else(|| panic!("{s}"))
    };
    idx.verdict(k(from), k(to), port, proto).allowed
}

/// The README's table, row by row.
#[test]
fn seed_policies_do_what_the_readme_table_says() {
    let c = seed();
    let idx = PolicyIndex::compile(&c);
    let tcp = Protocol::Tcp;
    let p = |s: &str| format!("production/{s}");
    assert!(!allowed(
        &idx,
        &p("frontend-pod"),
        &p("database-pod"),
        5432,
        tcp
    ));
    assert!(allowed(
        &idx,
        &p("frontend-pod"),
        &p("payment-pod"),
        8080,
        tcp
    ));
    assert!(!allowed(
        &idx,
        &p("frontend-pod"),
        &p("admin-pod"),
        8080,
        tcp
    ));
    assert!(allowed(
        &idx,
        &p("random-pod"),
        &p("database-pod"),
        5432,
        tcp
    ));
    assert!(allowed(&idx, &p("api-pod"), &p("database-pod"), 5432, tcp));
    assert!(!allowed(&idx, &p("api-pod"), &p("payment-pod"), 8080, tcp));
    assert!(!allowed(&idx, &p("database-pod"), &p("api-pod"), 8080, tcp));
    assert!(!allowed(
        &idx,
        "development/dev-pod",
        &p("database-pod"),
        5432,
        tcp
    ));
    assert!(!allowed(
        &idx,
        "staging/staging-pod",
        &p("database-pod"),
        5432,
        tcp
    ));
    let nginx = "ingress-nginx/ingress-nginx-controller";
    assert!(allowed(&idx, nginx, &p("api-pod"), 8080, tcp));
    assert!(allowed(&idx, nginx, &p("database-pod"), 5432, tcp));
    assert!(!allowed(&idx, nginx, &p("frontend-pod"), 8080, tcp));
    assert!(!allowed(
        &idx,
        "development/dev-pod",
        &p("random-pod"),
        8080,
        tcp
    ));
}

#[test]
fn seed_lints() {
    let c = seed();
    let text: Vec<String> = lints(&c)
        .iter()
        .map(|l| format!("{} {} [{}]: {}", l.policy, l.field, l.code, l.message))
        .collect();
    insta::assert_snapshot!(text.join("\n"));
}

#[test]
fn lints_for_dns_and_named_ports() {
    let c = yaml(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 80}, {name: stats, containerPort: 9, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: dns-ok, namespace: shop, labels: {app: resolver}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: resolver}}}]
    ports: [{port: https}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: resolver-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: resolver}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
    ports: [{port: 53, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: b}}}]
    ports: [{port: http}, {port: stats}, {port: grpc}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: nobody, namespace: shop}
spec:
  podSelector: {matchLabels: {app: gone}}
"#,
    );
    let found: Vec<(String, String, &str)> = lints(&c)
        .into_iter()
        .map(|l| (l.policy.to_string(), l.field, l.code))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "shop/web-egress".into(),
                "spec.egress[0].ports[0].port".into(),
                "named-port-undeclared"
            ),
            (
                "shop/web-egress".into(),
                "spec.policyTypes".into(),
                "egress-without-dns"
            ),
            (
                "shop/web-ingress".into(),
                "spec.ingress[0].ports[1].port".into(),
                "named-port-undeclared"
            ),
            (
                "shop/web-ingress".into(),
                "spec.ingress[0].ports[2].port".into(),
                "named-port-undeclared"
            ),
        ]
    );
    let all = lints(&c);
    let stats = all
        .iter()
        .find(|l| l.field == "spec.ingress[0].ports[1].port")
        .unwrap();
    assert!(
        stats
            .message
            .contains("shop/web declares `stats` with another protocol"),
        "{}",
        stats.message
    );
}

const SMALL: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Namespace
metadata: {name: y}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {containers: [{name: c, image: i, ports: [{name: serve-80-tcp, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {containers: [{name: c, image: i, ports: [{name: serve-80-tcp, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: y, labels: {pod: a}}
spec: {containers: [{name: c, image: i, ports: [{name: serve-80-tcp, containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x-a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: y-deny-egress, namespace: y}
spec:
  podSelector: {}
  policyTypes: [Egress]
"#;

#[test]
fn matrix_renderings() {
    let c = yaml(SMALL);
    let idx = PolicyIndex::compile(&c);
    let keys: Vec<ObjectKey> = c.pods.keys().cloned().collect();
    let m = idx.matrix(&keys, 80, Protocol::Tcp);
    insta::assert_snapshot!("text", render::text(&m));
    insta::assert_snapshot!("summary", render::summary(&m));
    insta::assert_snapshot!("json", render::json(&m));
    insta::assert_snapshot!("markdown", render::markdown(&m));
    let html = render::html(&idx, &m);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Ingress: isolated by x/x-a-from-b"), "{html}");
    assert!(
        html.contains("Egress: isolated by y/y-deny-egress"),
        "{html}"
    );
    assert!(
        html.contains("allowed by x/x-a-from-b ingress[0] from[0]"),
        "{html}"
    );
    assert_eq!(html.matches("<td class=\"blocked\"").count(), 2, "{html}");
    assert!(!html.contains("<script"), "self-contained, no script");
}
