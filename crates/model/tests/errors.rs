//! The exact text of errors for malformed manifests: `FILE:LINE: Kind ns/name: field: message`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use svcnet_model::load::{Manifests, read_text};
use svcnet_model::{AddressPlan, Cluster};

/// Loads one file's text and returns every diagnostic, one per line.
fn diagnostics(name: &str, text: &str) -> String {
    let mut m = Manifests::default();
    read_text(&mut m, name, text.to_string(), None);
    let mut diags = m.diagnostics;
    let (cluster, more) = Cluster::build(m.objects, &AddressPlan::default(), None);
    if more.has_errors() {
        assert!(
            cluster.is_none(),
            "a build with errors must not produce a cluster"
        );
    }
    diags.extend(more);
    diags.sort();
    diags.to_string()
}

#[test]
fn yaml_syntax() {
    insta::assert_snapshot!(diagnostics(
        "syntax.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ok\nspec:\n  ports:\n  - port: 80\n   name: bad-indent\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine\n"
    ));
}

#[test]
fn documents_that_are_not_objects() {
    insta::assert_snapshot!(diagnostics(
        "shapes.yaml",
        "just a string\n---\n- a\n- list\n---\nkind: Service\nmetadata: {name: no-api-version}\n---\napiVersion: v1\nmetadata: {name: no-kind}\n---\n# only a comment\n---\napiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old-api}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: in-list}\n- 42\n- apiVersion: v1\n  kind: Service\n  metadata: {name: Bad_Name}\n  spec: {ports: [{port: 80}]}\n"
    ));
}

#[test]
fn services() {
    insta::assert_snapshot!(diagnostics(
        "services.yaml",
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: ClusterIP
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: "8080"
    nodePort: 30080
  - name: http
    port: 70000
    protocol: tcp
  - port: 443
---
apiVersion: v1
kind: Service
metadata: {name: typed, namespace: shop}
spec:
  ports:
  - port: eighty
---
apiVersion: v1
kind: Service
metadata: {name: headless-np, namespace: shop}
spec:
  type: NodePort
  clusterIP: None
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  type: ExternalName
  sessionAffinity: Sometimes
---
apiVersion: v1
kind: Service
metadata: {name: noports, namespace: shop}
spec:
  selector: {app: web}
"#
    ));
}

#[test]
fn selectors_and_workloads() {
    insta::assert_snapshot!(diagnostics(
        "workloads.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector:
    matchLabels: {app: web}
    matchExpressions:
    - {key: tier, operator: Equals, values: [a]}
    - {key: env, operator: In}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - {containerPort: 8080, name: http}
        - {containerPort: 8081, name: http}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mismatch}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: no-selector-no-labels}
spec:
  template:
    spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: custom-dns}
spec:
  dnsPolicy: "None"
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Pod
metadata: {name: custom-dns}
spec:
  containers: [{name: other, image: x}]
"#
    ));
}

#[test]
fn ingresses_and_policies() {
    insta::assert_snapshot!(diagnostics(
        "net.yaml",
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  rules:
  - host: 10.0.0.1
    http:
      paths:
      - path: users
        pathType: Prefix
        backend: {service: {name: users, port: {number: 80}}}
      - path: /a//b
        pathType: Exact
        backend: {service: {name: users, port: {number: 80, name: http}}}
      - path: /x
        pathType: Regex
        backend: {service: {name: users, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: production}
spec:
  podSelector: {matchLabels: {tier: database}}
  ingress:
  - from:
    - {}
    - ipBlock: {cidr: 10.0.0.0/16, except: [192.168.0.0/24]}
    - ipBlock: {cidr: 10.0.0.0/8}
      podSelector: {}
    ports:
    - {port: http, endPort: 90}
    - {port: 100, endPort: 90}
  policyTypes: [Ingress, Ingress]
"#
    ));
}

#[test]
fn json_errors_have_lines() {
    insta::assert_snapshot!(diagnostics(
        "bad.json",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Service\",\n  \"metadata\": {\"name\": \"j\"},\n  \"spec\": {\"ports\": [{\"port\": 0}]}\n}\n{\"apiVersion\": \"v1\", \"kind\": \n"
    ));
}

#[test]
fn seed_shapes_load_with_warnings() {
    // The seed's web-app Deployment has no selector and its canary Ingress no pathType:
    // both are accepted with a warning that says what the API server would do.
    insta::assert_snapshot!(diagnostics(
        "seed.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-app
spec:
  template:
    metadata:
      labels: {app: web-app}
    spec:
      containers:
      - name: app
        image: myapp:v1.0
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: canary-ingress
spec:
  rules:
  - host: api.company.com
    http:
      paths:
      - path: /
        backend:
          service:
            name: api-service-v2
            port:
              number: 80
"#
    ));
}

#[test]
fn unknown_fields_warn() {
    insta::assert_snapshot!(diagnostics(
        "typos.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: t\n  lables: {app: x}\nspec:\n  selector: {app: x}\n  ports:\n  - port: 80\n    tragetPort: 8080\n"
    ));
}
