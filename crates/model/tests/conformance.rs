//! The clusters of the shared conformance corpora load cleanly, with the corpora's own
//! addresses kept as written. (The DNS, Ingress and NetworkPolicy cases themselves are run
//! by the crates that serve them.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
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

fn corpus(name: &str) -> Value {
    let text = std::fs::read_to_string(corpus_dir().join(name)).expect("read corpus");
    serde_saphyr::from_str(&text).expect("corpus is YAML")
}

fn load(name: &str, cluster: &str) -> Cluster {
    let (c, d) = Cluster::from_yaml(name, cluster, &AddressPlan::default());
    let errors: Vec<String> =
        d.0.iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
    assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
    c.expect("cluster")
}

#[test]
fn dns_corpus_cluster_loads_with_its_addresses() {
    let v = corpus("dns.yaml");
    let c = load("dns.yaml", v["cluster"].as_str().expect("cluster text"));
    let svc1 = &c.services[&ObjectKey::new("testns", "svc1")];
    assert_eq!(svc1.cluster_ip_list()[0].to_string(), "10.96.0.11");
    let dual = &c.services[&ObjectKey::new("testns", "dual")];
    assert_eq!(dual.cluster_ip_list().len(), 2);
    // The written `kubernetes` service replaces the built-in one.
    let k = &c.services[&ObjectKey::new("default", "kubernetes")];
    assert_eq!(k.cluster_ip_list()[0].to_string(), "10.96.0.1");
    // Written slices of selector-less services are kept as given.
    let web: Vec<_> = c.slices_of(&ObjectKey::new("testns", "web")).collect();
    assert_eq!(web.len(), 2);
}

#[test]
fn ingress_corpus_cluster_loads_on_loopback() {
    let v = corpus("ingress.yaml");
    let text = v["cluster"]
        .as_str()
        .expect("cluster text")
        .replace("10.244.", "127.244.");
    let c = load("ingress.yaml", &text);
    assert!(!c.ingresses.is_empty());
    assert!(!c.ingress_classes.is_empty());
}

#[test]
fn netpol_corpus_cluster_loads_and_gets_addresses() {
    let v = corpus("netpol.yaml");
    let c = load("netpol.yaml", v["cluster"].as_str().expect("cluster text"));
    for ns in ["x", "y", "z"] {
        for pod in ["a", "b", "c"] {
            let p = &c.pods[&ObjectKey::new(ns, pod)];
            assert_eq!(p.ips.len(), 1, "{ns}/{pod}");
            assert!(p.ips[0].is_loopback());
        }
        let svc = &c.services[&ObjectKey::new(ns, format!("s-{ns}-a"))];
        assert_eq!(
            c.slices_of(&ObjectKey::new(ns, svc.meta.name.clone()))
                .count(),
            1
        );
    }
}
