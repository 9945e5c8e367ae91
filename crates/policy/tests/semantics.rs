//! NetworkPolicy semantics, case by case: AND/OR of peers, empty vs missing peers, named
//! ports, endPort, ipBlock with except, policyTypes defaulting, node and external traffic,
//! and the reasons verdicts give.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use svcnet_model::types::{ObjectKey, Protocol};
use svcnet_model::{AddressPlan, Cluster, Severity};
use svcnet_policy::{DirectionVerdict, Endpoint, PolicyIndex};

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {env: dev}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web, tier: frontend}}
spec:
  containers:
  - name: web
    image: nginx
    ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: prod, labels: {app: api, tier: api}}
spec:
  containers:
  - name: api
    image: api
    ports: [{name: http, containerPort: 8000}, {name: dns, containerPort: 53, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: prod, labels: {app: db, tier: database}}
spec:
  containers:
  - name: db
    image: postgres
    ports: [{name: pg, containerPort: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: dev, labels: {app: client, tier: api}}
spec:
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: prod, labels: {app: agent}}
spec:
  hostNetwork: true
  containers: [{name: a, image: agent, ports: [{containerPort: 9100}]}]
"#;

fn cluster(policies: &str) -> Cluster {
    let text = format!("{BASE}\n---\n{policies}");
    let (c, d) = Cluster::from_yaml("test.yaml", &text, &AddressPlan::default());
    let errors: Vec<String> =
        d.0.iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    c.expect("cluster")
}

fn ip(c: &Cluster, pod: &str) -> IpAddr {
    let (ns, name) = pod.split_once('/').unwrap();
    c.pods[&ObjectKey::new(ns, name)].ips[0]
}

/// Checks `allows` (by IP), `verdict` (by identity) and the matrix agree, and returns the answer.
fn can(c: &Cluster, idx: &PolicyIndex, from: &str, to: &str, port: u16, proto: Protocol) -> bool {
    let by_ip = idx.allows(ip(c, from), ip(c, to), port, proto);
    let key = |s: &str| {
        let (ns, n) = s.split_once('/').unwrap();
        ObjectKey::new(ns, n)
    };
    let v = idx.verdict(
        idx.pod_endpoint(&key(from)).unwrap(),
        idx.pod_endpoint(&key(to)).unwrap(),
        port,
        proto,
    );
    assert_eq!(by_ip, v.allowed, "{from} -> {to}: allows vs verdict\n{v}");
    let m = idx.matrix(&[key(from), key(to)], port, proto);
    let cell = if from == to {
        m.allowed(0, 0)
    } else {
        m.allowed(0, 1)
    };
    assert_eq!(by_ip, cell, "{from} -> {to}: allows vs matrix");
    by_ip
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;

#[test]
fn no_policy_allows_everything() {
    let c = cluster("");
    let idx = PolicyIndex::compile(&c);
    assert!(idx.is_empty());
    assert!(can(&c, &idx, "dev/client", "prod/db", 5432, TCP));
    assert!(idx.allows(
        "203.0.113.9".parse().unwrap(),
        ip(&c, "prod/db"),
        1,
        Protocol::Sctp
    ));
}

#[test]
fn one_peer_with_both_selectors_is_and_two_peers_are_or() {
    let and = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: prod}}
      podSelector: {matchLabels: {tier: api}}
"#,
    );
    let idx = PolicyIndex::compile(&and);
    assert!(can(&and, &idx, "prod/api", "prod/db", 5432, TCP));
    assert!(!can(&and, &idx, "prod/web", "prod/db", 5432, TCP));
    assert!(!can(&and, &idx, "dev/client", "prod/db", 5432, TCP)); // tier=api, but dev

    let or = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: prod}}
    - podSelector: {matchLabels: {tier: api}}
"#,
    );
    let idx = PolicyIndex::compile(&or);
    assert!(can(&or, &idx, "prod/api", "prod/db", 5432, TCP));
    assert!(can(&or, &idx, "prod/web", "prod/db", 5432, TCP)); // namespace peer alone
    // A podSelector without namespaceSelector selects the policy's namespace only.
    assert!(!can(&or, &idx, "dev/client", "prod/db", 5432, TCP));
}

#[test]
fn empty_peers_admit_all_and_an_empty_rule_list_admits_nothing() {
    let c = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: open-db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: []
    ports: [{port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: closed-web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: []
"#,
    );
    let idx = PolicyIndex::compile(&c);
    assert!(can(&c, &idx, "dev/client", "prod/db", 5432, TCP));
    assert!(!can(&c, &idx, "dev/client", "prod/db", 5433, TCP));
    assert!(idx.allows("203.0.113.9".parse().unwrap(), ip(&c, "prod/db"), 5432, TCP));
    assert!(!can(&c, &idx, "prod/api", "prod/web", 8080, TCP));
    let v = idx.verdict(
        idx.pod_endpoint(&ObjectKey::new("prod", "api")).unwrap(),
        idx.pod_endpoint(&ObjectKey::new("prod", "web")).unwrap(),
        8080,
        TCP,
    );
    let DirectionVerdict::Denied(d) = &v.ingress else {
        panic!("{v}")
    };
    assert_eq!(d.isolated_by, vec![ObjectKey::new("prod", "closed-web")]);
    assert!(
        d.nearest_miss.contains("no ingress rule"),
        "{}",
        d.nearest_miss
    );
    // A pod always reaches itself.
    assert!(can(&c, &idx, "prod/web", "prod/web", 8080, TCP));
}

#[test]
fn named_ports_resolve_per_destination_pod() {
    let c = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: http-only, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - ports: [{port: http}]
  egress:
  - ports: [{port: http}, {port: dns, protocol: UDP}]
"#,
    );
    let idx = PolicyIndex::compile(&c);
    // `http` is 8080 on web and 8000 on api.
    assert!(can(&c, &idx, "prod/api", "prod/web", 8080, TCP));
    assert!(!can(&c, &idx, "prod/api", "prod/web", 8000, TCP));
    assert!(can(&c, &idx, "prod/web", "prod/api", 8000, TCP));
    assert!(!can(&c, &idx, "prod/web", "prod/api", 8080, TCP));
    // db declares no `http`: nothing reaches it.
    assert!(!can(&c, &idx, "prod/web", "prod/db", 5432, TCP));
    // The name resolves with the rule port's protocol.
    assert!(!can(&c, &idx, "prod/web", "prod/api", 8000, UDP));
    // Toward an address that is not a pod, a name matches nothing.
    assert!(!idx.allows(
        ip(&c, "prod/web"),
        "203.0.113.9".parse().unwrap(),
        8080,
        TCP
    ));
    let v = idx.verdict(
        idx.pod_endpoint(&ObjectKey::new("prod", "web")).unwrap(),
        idx.pod_endpoint(&ObjectKey::new("prod", "db")).unwrap(),
        5432,
        TCP,
    );
    let text = v.to_string();
    assert!(
        text.contains("http/TCP (not declared by prod/db)"),
        "{text}"
    );
}

#[test]
fn end_port_ranges_and_protocols() {
    let c = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: range, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports:
    - {port: 5000, endPort: 5500}
    - {protocol: UDP}
    - {protocol: SCTP, port: 9}
"#,
    );
    let idx = PolicyIndex::compile(&c);
    for (port, proto, want) in [
        (4999, TCP, false),
        (5000, TCP, true),
        (5432, TCP, true),
        (5500, TCP, true),
        (5501, TCP, false),
        (1, UDP, true),
        (65535, UDP, true),
        (9, Protocol::Sctp, true),
        (9, TCP, false),
        (10, Protocol::Sctp, false),
    ] {
        assert_eq!(
            can(&c, &idx, "prod/web", "prod/db", port, proto),
            want,
            "{port}/{proto}"
        );
    }
}

#[test]
fn ip_block_with_except_applies_to_pod_ips_and_external_addresses() {
    let c = cluster("");
    let api = ip(&c, "prod/api");
    let policy = format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: egress, namespace: prod}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  egress:
  - to:
    - ipBlock: {{cidr: 127.0.0.0/8, except: ["{api}/32"]}}
    - ipBlock: {{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}
"#
    );
    let c = cluster(&policy);
    let idx = PolicyIndex::compile(&c);
    // policyTypes defaulted: Ingress plus Egress (egress rules exist). Ingress has no rule.
    assert!(!can(&c, &idx, "prod/db", "prod/web", 8080, TCP));
    assert!(can(&c, &idx, "prod/web", "prod/db", 5432, TCP));
    assert!(!can(&c, &idx, "prod/web", "prod/api", 8000, TCP));
    let web = ip(&c, "prod/web");
    assert!(idx.allows(web, "192.0.2.1".parse().unwrap(), 443, TCP));
    assert!(!idx.allows(web, "192.0.2.200".parse().unwrap(), 443, TCP));
    assert!(!idx.allows(web, "198.51.100.1".parse().unwrap(), 443, TCP));
    let v = idx.verdict(
        Endpoint::Pod(idx.pod_id(&ObjectKey::new("prod", "web")).unwrap()),
        idx.endpoint_of("192.0.2.200".parse().unwrap()),
        443,
        TCP,
    );
    let DirectionVerdict::Denied(d) = &v.egress else {
        panic!("{v}")
    };
    assert!(
        d.nearest_miss.contains("excluded by except 192.0.2.128/25"),
        "{}",
        d.nearest_miss
    );
    // An IPv4-mapped IPv6 address is the IPv4 address.
    assert!(idx.allows(web, "::ffff:192.0.2.1".parse().unwrap(), 443, TCP));
}

#[test]
fn policy_types_decide_what_is_isolated() {
    let c = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-only, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  ingress: []
  egress: []
"#,
    );
    let idx = PolicyIndex::compile(&c);
    assert!(can(&c, &idx, "prod/db", "prod/web", 8080, TCP)); // ingress not isolated
    assert!(!can(&c, &idx, "prod/web", "prod/db", 5432, TCP));
    let web = idx.pod_id(&ObjectKey::new("prod", "web")).unwrap();
    assert!(
        idx.isolated_by(web, svcnet_policy::Direction::Ingress)
            .is_empty()
    );
    assert_eq!(
        idx.isolated_by(web, svcnet_policy::Direction::Egress),
        vec![&ObjectKey::new("prod", "egress-only")]
    );
}

#[test]
fn node_host_and_host_network_traffic_is_always_allowed() {
    let c = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"#,
    );
    let idx = PolicyIndex::compile(&c);
    let db = ip(&c, "prod/db");
    let node = c.nodes.values().next().unwrap().internal_ip;
    for host in ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap(), node] {
        assert!(matches!(idx.endpoint_of(host), Endpoint::Node(_)), "{host}");
        assert!(idx.allows(host, db, 5432, TCP));
        assert!(idx.allows(db, host, 5432, TCP));
    }
    // The host-network pod is its node.
    let agent = ip(&c, "prod/agent");
    assert_eq!(agent, node);
    assert!(can(&c, &idx, "prod/agent", "prod/db", 5432, TCP));
    assert!(can(&c, &idx, "prod/db", "prod/agent", 9100, TCP));
    // Everything else is denied both ways.
    assert!(!can(&c, &idx, "prod/web", "prod/db", 5432, TCP));
    assert!(!idx.allows("203.0.113.9".parse().unwrap(), db, 5432, TCP));
    assert!(!idx.allows(db, "203.0.113.9".parse().unwrap(), 5432, TCP));
    assert!(matches!(
        idx.endpoint_of("203.0.113.9".parse().unwrap()),
        Endpoint::External(_)
    ));
    // Unselected namespaces are open.
    assert!(can(&c, &idx, "dev/client", "dev/client", 1, TCP));
}

#[test]
fn verdicts_name_the_rule_and_peer_and_the_nearest_miss() {
    let c = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/8}
    - podSelector: {matchLabels: {tier: api}}
    ports: [{port: 5432}]
"#,
    );
    let idx = PolicyIndex::compile(&c);
    let pod = |s: &str| {
        let (ns, n) = s.split_once('/').unwrap();
        idx.pod_endpoint(&ObjectKey::new(ns, n)).unwrap()
    };
    let v = idx.verdict(pod("prod/api"), pod("prod/db"), 5432, TCP);
    assert!(v.allowed);
    assert_eq!(v.egress, DirectionVerdict::NotIsolated);
    let DirectionVerdict::Allowed(a) = &v.ingress else {
        panic!("{v}")
    };
    assert_eq!(
        (a.policy.to_string(), a.rule, a.peer, a.port),
        ("prod/db".to_string(), 0, Some(1), Some(0))
    );
    assert!(
        a.reason.contains("prod/db ingress[0] from[1]"),
        "{}",
        a.reason
    );

    let v = idx.verdict(pod("prod/web"), pod("prod/db"), 5432, TCP);
    let DirectionVerdict::Denied(d) = &v.ingress else {
        panic!("{v}")
    };
    assert_eq!(
        d.nearest_miss,
        "prod/db ingress[0] from[1]: peer podSelector tier=api does not match labels app=web,tier=frontend of prod/web (tier=api fails)"
    );
    let v = idx.verdict(pod("prod/api"), pod("prod/db"), 5433, TCP);
    let DirectionVerdict::Denied(d) = &v.ingress else {
        panic!("{v}")
    };
    assert!(
        d.nearest_miss
            .contains("but port 5433/TCP is not among the rule's ports [5432/TCP]"),
        "{}",
        d.nearest_miss
    );
    let v = idx.verdict(pod("dev/client"), pod("prod/db"), 5432, TCP);
    let DirectionVerdict::Denied(d) = &v.ingress else {
        panic!("{v}")
    };
    assert!(
        d.nearest_miss
            .contains("selects pods of namespace prod only (no namespaceSelector); dev/client is in namespace dev"),
        "{}",
        d.nearest_miss
    );
}

#[test]
fn namespaces_carry_the_metadata_name_label() {
    let c = cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-dev, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dev}}
"#,
    );
    let idx = PolicyIndex::compile(&c);
    assert!(can(&c, &idx, "dev/client", "prod/db", 5432, TCP));
    assert!(!can(&c, &idx, "prod/api", "prod/db", 5432, TCP));
}
