//! The Kubernetes e2e NetworkPolicy suite (`shared/conformance/netpol.yaml`): every case's
//! steps applied to the x/y/z × a/b/c model, every probe's 9×9 matrix computed with
//! `PolicyIndex::matrix` and compared cell by cell (the ungraded diagonal aside).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::Value;
use svcnet_model::types::{Container, ContainerPort, ObjectKey, Protocol};
use svcnet_model::{AddressPlan, Cluster, Severity};
use svcnet_policy::PolicyIndex;

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

fn build(name: &str, text: &str) -> Cluster {
    let (c, d) = Cluster::from_yaml(name, text, &AddressPlan::default());
    let errors: Vec<String> =
        d.0.iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
    assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
    c.expect("cluster")
}

fn key(s: &str) -> ObjectKey {
    let (ns, name) = s.split_once('/').expect("ns/pod");
    ObjectKey::new(ns, name)
}

fn ipv4_of(c: &Cluster, pod: &str) -> IpAddr {
    let p = &c.pods[&key(pod)];
    *p.ips.iter().find(|ip| ip.is_ipv4()).expect("IPv4 pod IP")
}

/// Replaces `${IP:ns/pod}` and `${CIDR4:ns/pod}` with the addresses svcnet allocated.
fn substitute(c: &Cluster, text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let (kind, pod) = rest[start + 2..end].split_once(':').expect("KIND:ns/pod");
        let ip = ipv4_of(c, pod);
        match kind {
            "IP" => out.push_str(&ip.to_string()),
            "CIDR4" => {
                let IpAddr::V4(v4) = ip else { unreachable!() };
                let net = u32::from(v4) & 0xF000_0000;
                out.push_str(&format!("{}/4", std::net::Ipv4Addr::from(net)));
            }
            other => panic!("unknown substitution {other}"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn labels(v: &Value) -> svcnet_model::Labels {
    v.as_object()
        .expect("labels map")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
        .collect()
}

fn add_sctp_ports(c: &mut Cluster) {
    for p in c.pods.values_mut() {
        if !["x", "y", "z"].contains(&p.meta.namespace.as_str()) {
            continue;
        }
        for port in [80u16, 81] {
            std::sync::Arc::make_mut(&mut p.containers).push(Container {
                name: format!("cont-{port}-sctp"),
                image: "registry.k8s.io/e2e-test-images/agnhost:2.52".into(),
                ports: vec![ContainerPort {
                    name: Some(format!("serve-{port}-sctp")),
                    port,
                    protocol: Protocol::Sctp,
                    host_port: None,
                }],
                readiness_probe: None,
            });
        }
    }
}

fn apply(c: &mut Cluster, action: &Value) {
    let obj = action.as_object().expect("action map");
    if let Some(text) = obj.get("apply") {
        let text = substitute(c, text.as_str().expect("apply text"));
        let policies = build("apply", &text);
        assert!(
            !policies.network_policies.is_empty(),
            "apply has no policy: {text}"
        );
        for (k, np) in policies.network_policies {
            c.network_policies.insert(k, np);
        }
    } else if let Some(v) = obj.get("set_namespace_labels") {
        let name = v["name"]
            .as_str()
            .unwrap_or_else(|| panic!("namespace name in {v:?}"));
        let ns = c.namespaces.get_mut(name).expect("namespace");
        let mut l = labels(&v["labels"]);
        // The API server keeps this label whatever is written.
        l.insert("kubernetes.io/metadata.name".into(), name.into());
        ns.meta.labels = l.into();
    } else if let Some(v) = obj.get("set_pod_labels") {
        let k = ObjectKey::new(
            v["namespace"].as_str().expect("namespace"),
            v["name"].as_str().expect("name"),
        );
        c.pods.get_mut(&k).expect("pod").meta.labels = labels(&v["labels"]).into();
    } else if obj.contains_key("delete_all_policies") {
        c.network_policies
            .retain(|k, _| !["x", "y", "z"].contains(&k.namespace.as_str()));
    } else {
        panic!("unknown action {obj:?}");
    }
}

#[test]
fn netpol_corpus() {
    let text = std::fs::read_to_string(corpus_dir().join("netpol.yaml")).expect("read corpus");
    // YAML 1.2 booleans: the namespace `y` is a name, not `true`.
    let options = serde_saphyr::options! { strict_booleans: true };
    let corpus: Value =
        serde_saphyr::from_str_with_options(&text, options).expect("corpus is YAML");
    let base = build("netpol.yaml", corpus["cluster"].as_str().expect("cluster"));
    let order: Vec<String> = corpus["model"]["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .map(|p| p.as_str().expect("pod").to_string())
        .collect();
    let keys: Vec<ObjectKey> = order.iter().map(|p| key(p)).collect();
    let cases = corpus["cases"].as_array().expect("cases");
    let mut passed = 0;
    let mut probes = 0;
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("case name");
        let mut c = base.clone();
        let requires: Vec<&str> = case["requires"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if requires.contains(&"sctp") {
            add_sctp_ports(&mut c);
        }
        let mut ok = true;
        for (si, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
            for action in step["do"].as_array().expect("do") {
                apply(&mut c, action);
            }
            let index = PolicyIndex::compile(&c);
            for probe in step["probes"].as_array().expect("probes") {
                probes += 1;
                let port = probe["port"].as_u64().expect("port") as u16;
                let protocol =
                    Protocol::parse(probe["protocol"].as_str().expect("protocol")).expect("proto");
                let m = index.matrix(&keys, port, protocol);
                assert_eq!(m.pods, keys);
                let mut diffs = Vec::new();
                for (i, from) in order.iter().enumerate() {
                    let row: Vec<&str> = probe["expect"][from.as_str()]
                        .as_str()
                        .expect("expect row")
                        .split_whitespace()
                        .collect();
                    assert_eq!(row.len(), order.len(), "{name}: row {from}");
                    for (j, to) in order.iter().enumerate() {
                        if i == j {
                            continue; // self-traffic is not graded
                        }
                        let want = row[j] == ".";
                        if m.allowed(i, j) != want {
                            let v = index.verdict(
                                index.pod_endpoint(&keys[i]).unwrap(),
                                index.pod_endpoint(&keys[j]).unwrap(),
                                port,
                                protocol,
                            );
                            diffs.push(format!(
                                "{from} -> {to}: want {}, got {}\n{v}",
                                if want { "allowed" } else { "blocked" },
                                if want { "blocked" } else { "allowed" },
                            ));
                        }
                    }
                }
                if !diffs.is_empty() {
                    ok = false;
                    failures.push(format!(
                        "{name} step {si} {port}/{protocol}:\n{}",
                        diffs.join("\n")
                    ));
                }
            }
        }
        if ok {
            passed += 1;
        }
    }
    println!(
        "netpol conformance: {passed}/{} cases passed ({probes} probes)",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{passed}/{} cases passed; failures:\n{}",
        cases.len(),
        failures.join("\n\n")
    );
    assert_eq!(cases.len(), 48, "the corpus has 48 cases");
}
