//! `svcnet policy matrix` and `svcnet policy explain` as a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs svcnet with `stdin` as the manifests (`-f -`).
fn svcnet(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_svcnet"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run svcnet");
    // svcnet may exit on a usage error before reading stdin: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Two namespaces of the e2e shape: x/a admits only x/b; y isolates its egress.
const MODEL: &str = r#"
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
metadata: {name: c, namespace: x, labels: {pod: c}}
spec: {containers: [{name: c, image: i, ports: [{name: serve-80-tcp, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: y, labels: {pod: a}}
spec: {containers: [{name: c, image: i, ports: [{name: serve-80-tcp, containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: s-x-a, namespace: x}
spec:
  selector: {pod: a}
  ports: [{name: http, port: 8000, targetPort: serve-80-tcp}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x-a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: serve-80-tcp}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: y-egress-to-x-b, namespace: y}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}, podSelector: {matchLabels: {pod: b}}}]
"#;

#[test]
fn matrix_text_is_the_e2e_truth_table() {
    let o = svcnet(&["policy", "matrix", "-f", "-"], MODEL);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
    // Port 81 is not declared: the named port does not resolve, x/a admits nobody.
    let o = svcnet(
        &["policy", "matrix", "-f", "-", "--port", "81", "-n", "x"],
        MODEL,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn matrix_json_md_html() {
    let o = svcnet(&["policy", "matrix", "-f", "-", "-A", "-o", "json"], MODEL);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["port"], 80);
    assert_eq!(v["protocol"], "TCP");
    assert_eq!(v["pods"], serde_json::json!(["x/a", "x/b", "x/c", "y/a"]));
    assert_eq!(
        v["allowed"],
        serde_json::json!([
            [true, true, true, true],
            [true, true, true, true],
            [false, true, true, true],
            [false, true, false, true]
        ])
    );
    insta::assert_snapshot!(stdout(&o));
    let o = svcnet(
        &[
            "policy",
            "matrix",
            "-f",
            "-",
            "-o",
            "json",
            "--protocol",
            "udp",
        ],
        MODEL,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["protocol"], "UDP");
    // UDP: x/a's only rule is a TCP named port.
    assert_eq!(v["allowed"][1][0], false);

    let o = svcnet(&["policy", "matrix", "-f", "-", "-o", "md"], MODEL);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("| from \\ to (80/TCP) | x/a | x/b | x/c | y/a |"));
    let o = svcnet(&["policy", "matrix", "-f", "-", "-o", "html"], MODEL);
    let html = stdout(&o);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("title=\"x/a\nIngress: isolated by x/x-a-from-b\""),
        "{html}"
    );
    assert!(
        html.contains("DENIED: isolated by y/y-egress-to-x-b"),
        "{html}"
    );
}

#[test]
fn explain_pods_services_and_addresses() {
    let o = svcnet(
        &[
            "policy", "explain", "--from", "x/b", "--to", "x/a", "--port", "80", "-f", "-",
        ],
        MODEL,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let allowed = stdout(&o);
    let o = svcnet(
        &[
            "policy", "explain", "--from", "x/c", "--to", "x/a", "--port", "80", "-f", "-",
        ],
        MODEL,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let denied = stdout(&o);
    // Through the Service: port 8000 is the Service port, judged on the target port 80.
    let o = svcnet(
        &[
            "policy", "explain", "--from", "y/a", "--to", "x/s-x-a", "--port", "8000", "-f", "-",
        ],
        MODEL,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let service = stdout(&o);
    // Pod IPs are the allocator's: keep them out of the snapshot.
    let ips = |s: &str| {
        s.lines()
            .map(|l| {
                l.split(' ')
                    .map(|w| if w.starts_with("(127.") { "(IP)" } else { w })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    insta::assert_snapshot!(format!(
        "{}\n\n{}\n\n{}",
        ips(&allowed),
        ips(&denied),
        ips(&service)
    ));
    assert!(
        denied.contains(
            "nearest miss: x/x-a-from-b ingress[0] from[0]: peer podSelector pod=b does not match labels pod=c of x/c (pod=b fails)"
        ),
        "{denied}"
    );

    // An external address: only ipBlock and peer-less rules match it.
    let o = svcnet(
        &[
            "policy",
            "explain",
            "--from",
            "203.0.113.5",
            "--to",
            "x/a",
            "--port",
            "80",
            "-f",
            "-",
        ],
        MODEL,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("egress:  not a pod"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("203.0.113.5 is not a pod address"),
        "{}",
        stdout(&o)
    );
    // The host is node traffic.
    let o = svcnet(
        &[
            "policy",
            "explain",
            "--from",
            "127.0.0.1",
            "--to",
            "x/a",
            "--port",
            "80",
            "-f",
            "-",
        ],
        MODEL,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("node or host traffic"),
        "{}",
        stdout(&o)
    );

    // JSON.
    let o = svcnet(
        &[
            "policy", "explain", "--from", "x/b", "--to", "x/a", "--port", "80", "-f", "-", "-o",
            "json",
        ],
        MODEL,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["verdict"]["allowed"], true);
    assert_eq!(
        v[0]["verdict"]["ingress"]["Allowed"]["policy"]["name"],
        "x-a-from-b"
    );
}

#[test]
fn errors_are_reported() {
    let o = svcnet(
        &["policy", "matrix", "-f", "-", "--protocol", "ICMP"],
        MODEL,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not TCP, UDP or SCTP"),
        "{}",
        stderr(&o)
    );
    let o = svcnet(
        &[
            "policy", "explain", "--from", "x/nope", "--to", "x/a", "--port", "80", "-f", "-",
        ],
        MODEL,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no pod or Service x/nope"),
        "{}",
        stderr(&o)
    );
    let o = svcnet(
        &[
            "policy", "explain", "--from", "x/b", "--to", "x/s-x-a", "--port", "80", "-f", "-",
        ],
        MODEL,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("Service x/s-x-a has no port 80/TCP (ports: 8000/TCP)"),
        "{}",
        stderr(&o)
    );
}

/// The seed's policies (examples/network-policies): the matrix shows the README's table.
#[test]
fn seed_matrix() {
    let o = svcnet(
        &[
            "policy",
            "matrix",
            "-f",
            "../../examples/network-policies",
            "--port",
            "5432",
            "-o",
            "json",
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let pods: Vec<&str> = v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let at = |from: &str, to: &str| {
        let i = pods.iter().position(|p| *p == from).unwrap();
        let j = pods.iter().position(|p| *p == to).unwrap();
        v["allowed"][i][j].as_bool().unwrap()
    };
    assert!(!at("production/frontend-pod", "production/database-pod"));
    assert!(at("production/random-pod", "production/database-pod"));
    assert!(at("production/api-pod", "production/database-pod"));
    assert!(!at("development/dev-pod", "production/database-pod"));
    assert!(at(
        "ingress-nginx/ingress-nginx-controller",
        "production/database-pod"
    ));
}
