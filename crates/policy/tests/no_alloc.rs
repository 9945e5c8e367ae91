//! `PolicyIndex::allows` is on every connection's path: it must not allocate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use svcnet_model::types::Protocol;
use svcnet_model::{AddressPlan, Cluster};
use svcnet_policy::PolicyIndex;

#[test]
fn allows_does_not_allocate() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: y, labels: {app: b}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
    ports: [{port: http}, {port: 1000, endPort: 2000}]
  egress:
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
"#;
    let (c, d) = Cluster::from_yaml("t.yaml", text, &AddressPlan::default());
    let c = c.unwrap_or_else(|| panic!("{d:?}"));
    let idx = PolicyIndex::compile(&c);
    let a = c.pods.values().next().unwrap().ips[0];
    let b = c.pods.values().nth(1).unwrap().ips[0];
    let ext = "10.2.3.4".parse().unwrap();
    let mut allowed = 0;
    let info = allocation_counter::measure(|| {
        for (s, d, p) in [
            (b, a, 80),
            (b, a, 81),
            (ext, a, 1500),
            (a, ext, 1),
            (a, b, 80),
            (a, a, 9),
        ] {
            for proto in [Protocol::Tcp, Protocol::Udp] {
                allowed += usize::from(idx.allows(s, d, p, proto));
            }
        }
    });
    assert_eq!(info.count_total, 0, "allows() allocated");
    // b->a 80/TCP, 10.2.3.4->a 1500/TCP, a->ext both, a->b both, a->a both.
    assert_eq!(allowed, 8);
}
