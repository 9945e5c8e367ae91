//! `svcnet check` findings: each lint fires where it should, and only there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use svcnet_model::{AddressPlan, Cluster, lint};

fn findings(text: &str) -> String {
    let (c, d) = Cluster::from_yaml("c.yaml", text, &AddressPlan::default());
    let c = c.unwrap_or_else(|| panic!("did not load:\n{d}"));
    lint::lint(&c).to_string()
}

#[test]
fn service_lints() {
    insta::assert_snapshot!(findings(
        r#"apiVersion: v1
kind: Pod
metadata: {name: api-1, labels: {app: api, tier: backend}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-2, labels: {app: api, tier: backend}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: typo}
spec:
  selector: {app: api, tier: frontend}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports:
  - {name: web, port: 80, targetPort: http}
  - {name: admin, port: 9000, targetPort: admin}
  - {name: num, port: 81, targetPort: 9999}
"#
    ));
}

#[test]
fn ingress_and_statefulset_lints() {
    insta::assert_snapshot!(findings(
        r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site}
spec:
  tls: [{hosts: [a.example.com], secretName: missing-tls}]
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /x, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}
      - {path: /y, pathType: Prefix, backend: {service: {name: web, port: {name: grpc}}}}
      - {path: /z, pathType: Prefix, backend: {service: {name: ghost, port: {number: 80}}}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: web
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: x}]}
"#
    ));
}

#[test]
fn network_policy_lints() {
    insta::assert_snapshot!(findings(
        r#"apiVersion: v1
kind: Namespace
metadata: {name: production, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: production, labels: {tier: database}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: nobody, namespace: production}
spec:
  podSelector: {matchLabels: {tier: cache}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: seed, namespace: production}
spec:
  podSelector: {matchLabels: {tier: database}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {name: production}}
    - namespaceSelector:
        matchExpressions: [{key: name, operator: NotIn, values: [development, staging]}]
    - namespaceSelector: {matchLabels: {env: staging}}
    - podSelector:
        matchExpressions: [{key: role, operator: DoesNotExist}]
"#
    ));
}

#[test]
fn clean_manifests_have_no_findings() {
    assert_eq!(
        findings(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}}]
"#
        ),
        ""
    );
}
