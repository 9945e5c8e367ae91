//! `Cluster::load` validates each file's objects on the thread that parsed it
//! (`validate::read_paths`). These tests hold it to the plain sequence it replaces: read
//! every text one after the other (`load::read_text`), then `Cluster::build`: the same
//! diagnostics, in the same order, and the same cluster, on the examples, on the fuzz
//! corpus, and on a set large enough to be read on several threads, with errors, repeated
//! objects and conflicting duplicates spread over its files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use svcnet_model::types::ObjectKey;
use svcnet_model::{AddressPlan, Cluster, Diagnostics, Kind, lint, load, render};

/// The reference: every file read in order by one thread, then validated and derived.
fn sequential(files: &[PathBuf], plan: &AddressPlan) -> (Option<Cluster>, Diagnostics) {
    let mut m = load::Manifests::default();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let json = f.extension().is_some_and(|e| e == "json");
        load::read_text(&mut m, &f.display().to_string(), text, Some(json));
    }
    let mut diags = m.diagnostics;
    let (cluster, more) = Cluster::build(m.objects, plan, None);
    diags.extend(more);
    diags.sort();
    if diags.has_errors() {
        (None, diags)
    } else {
        (cluster, diags)
    }
}

/// Everything a user can see of a cluster: every object rendered, and the lint findings.
fn picture(c: &Cluster) -> String {
    let mut out = String::new();
    let mut put = |kind: Kind, key: &ObjectKey| {
        let v = render::object(c, kind, key);
        writeln!(out, "{kind} {key}: {}", serde_json::to_string(&v).unwrap()).unwrap();
    };
    for k in c.pods.keys() {
        put(Kind::Pod, k);
    }
    for k in c.services.keys() {
        put(Kind::Service, k);
    }
    for k in c.endpoint_slices.keys() {
        put(Kind::EndpointSlice, k);
    }
    for (kind, k) in c.workloads.keys() {
        put(*kind, k);
    }
    for k in c.ingresses.keys() {
        put(Kind::Ingress, k);
    }
    for k in c.network_policies.keys() {
        put(Kind::NetworkPolicy, k);
    }
    for n in c.namespaces.keys() {
        put(Kind::Namespace, &ObjectKey::new("", n.as_str()));
    }
    for n in c.nodes.keys() {
        put(Kind::Node, &ObjectKey::new("", n.as_str()));
    }
    writeln!(out, "{:?}", c.counts()).unwrap();
    writeln!(out, "others: {}", c.others.len()).unwrap();
    for d in lint::lint(c).0 {
        writeln!(out, "lint: {d}").unwrap();
    }
    out
}

fn same(files: &[PathBuf], plan: &AddressPlan) {
    let (want_cluster, want_diags) = sequential(files, plan);
    let (got_cluster, got_diags) = Cluster::load(files, plan, None);
    assert_eq!(
        got_diags.0, want_diags.0,
        "diagnostics differ for {files:?}"
    );
    match (want_cluster, got_cluster) {
        (None, None) => {}
        (Some(want), Some(got)) => {
            assert_eq!(picture(&got), picture(&want), "{files:?}");
            slices_as_by_scan(&got);
        }
        (want, got) => panic!(
            "{files:?}: cluster {} sequentially, {} by Cluster::load",
            want.is_some(),
            got.is_some()
        ),
    }
}

/// The derived slices (found through the pod index) are those of the plain scan of every
/// pod of the Service's namespace (`derive::derive_slices`).
fn slices_as_by_scan(c: &Cluster) {
    use svcnet_model::types::ServiceType;
    for (k, svc) in &c.services {
        let Some(sel) = &svc.selector else { continue };
        if svc.type_ == ServiceType::ExternalName {
            continue;
        }
        let mut want: Vec<String> = svc_model_slices(svc_model_scan(c, svc, sel));
        let mut got: Vec<String> =
            svc_model_slices(c.slices_of(k).filter(|s| s.derived).cloned().collect());
        want.sort();
        got.sort();
        assert_eq!(got, want, "slices of {k}");
    }
}

fn svc_model_scan(
    c: &Cluster,
    svc: &svcnet_model::types::Service,
    sel: &svcnet_model::Labels,
) -> Vec<svcnet_model::types::EndpointSlice> {
    svcnet_model::derive::derive_slices(c, svc, sel)
}

fn svc_model_slices(slices: Vec<svcnet_model::types::EndpointSlice>) -> Vec<String> {
    slices
        .iter()
        .map(|s| serde_json::to_string(&render::endpoint_slice(s)).unwrap())
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            out.extend(files_under(&e));
        } else if e
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        {
            out.push(e);
        }
    }
    out
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn examples_load_as_in_sequence() {
    let examples = files_under(&repo().join("examples"));
    assert!(examples.len() > 10);
    let plan = AddressPlan::default();
    same(&examples, &plan);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        same(&files_under(&d), &plan);
    }
}

#[test]
fn fuzz_corpus_loads_as_in_sequence() {
    let dir = repo().join("fuzz/corpus/load");
    let known = std::fs::read_to_string(repo().join("fuzz/known-crashes.txt")).unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            // Files that are not UTF-8 never reach the parser (a read error).
            p.is_file()
                && std::fs::read_to_string(p).is_ok()
                && !known
                    .lines()
                    .any(|l| l.split('#').next().unwrap().trim() == name)
        })
        .collect();
    files.sort();
    let plan = AddressPlan::default();
    // Each file alone, then all of them together (duplicates across files).
    for f in &files {
        same(std::slice::from_ref(f), &plan);
    }
    same(&files, &plan);
}

/// One namespace's worth of manifests: Services, Deployments, a StatefulSet, with named
/// ports and a sidecar, about 30 KB.
fn namespace_text(ns: usize) -> String {
    let mut t = String::new();
    writeln!(
        t,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{ns}"
    )
    .unwrap();
    // A selector that matches no pod, and one that selects on a label many pods share.
    writeln!(
        t,
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: none, namespace: ns-{ns}}}\nspec:\n  selector: {{app: app-1, tier: db}}\n  ports: [{{port: 80}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: ns-{ns}}}\nspec:\n  selector: {{tier: web}}\n  ports: [{{port: 80, targetPort: http}}]"
    )
    .unwrap();
    for i in 0..20 {
        write!(
            t,
            "---
apiVersion: v1
kind: Service
metadata:
  name: svc-{i}
  namespace: ns-{ns}
  labels: {{app: app-{i}, tier: web}}
spec:
  selector: {{app: app-{i}}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
  - {{name: metrics, port: 9090, targetPort: metrics}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: ns-{ns}
  annotations: {{note: \"{pad}\"}}
spec:
  replicas: {r}
  selector:
    matchLabels: {{app: app-{i}}}
  template:
    metadata:
      labels: {{app: app-{i}, tier: web}}
    spec:
      containers:
      - name: main
        image: registry.example/app-{i}:1.0
        ports:
        - {{name: http, containerPort: {port}}}
        - {{name: metrics, containerPort: 9090}}
      - name: sidecar
        image: registry.example/proxy:2
",
            r = 1 + i % 4,
            port = 8000 + i,
            pad = "x".repeat(900),
        )
        .unwrap();
    }
    t
}

#[test]
fn a_large_set_read_on_every_core_loads_as_in_sequence() {
    let dir = std::env::temp_dir().join(format!("svcnet-load-paths-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for ns in 0..60 {
        let f = dir.join(format!("ns-{ns:02}.yaml"));
        std::fs::write(&f, namespace_text(ns)).unwrap();
        files.push(f);
    }
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        total > 1 << 20,
        "{total} bytes: too small to be read in parallel"
    );
    let plan = AddressPlan::default();
    same(&files, &plan);
    // The same object written again in a later file is kept once (a notice).
    let repeated = dir.join("zz-repeated.yaml");
    std::fs::write(&repeated, namespace_text(7)).unwrap();
    let mut with_repeat = files.clone();
    with_repeat.push(repeated.clone());
    same(&with_repeat, &plan);
    // A different object under a taken name, an unknown field, a bad port and a kind
    // svcnet does not use, spread over files read by different threads.
    let bad = dir.join("00-bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: svc-3, namespace: ns-40}\nspec:\n  selector: {app: other}\n  ports: [{port: 70000, tragetPort: 1}]\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c, namespace: ns-1}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-9, namespace: ns-50}\nspec:\n  selector: {app: other}\n  ports: [{port: 81}]\n",
    )
    .unwrap();
    let mut with_bad = vec![bad.clone()];
    with_bad.extend(files.iter().cloned());
    with_bad.push(repeated);
    same(&with_bad, &plan);
    let (cluster, diags) = Cluster::load(&with_bad, &plan, None);
    assert!(cluster.is_none());
    let text: Vec<String> = diags.0.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|d| d.contains("Duplicate value")),
        "{text:#?}"
    );
    assert!(text.iter().any(|d| d.contains("kept once")), "{text:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
