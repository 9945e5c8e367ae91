//! Derivation: workloads to pods, allocation, EndpointSlices.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use svcnet_model::types::*;
use svcnet_model::{AddressPlan, Cluster, Kind};

fn build(text: &str) -> Cluster {
    build_with(text, &AddressPlan::default())
}

fn build_with(text: &str, plan: &AddressPlan) -> Cluster {
    let (c, d) = Cluster::from_yaml("test.yaml", text, plan);
    match c {
        Some(c) => c,
        None => panic!("did not load:\n{d}"),
    }
}

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(ns, name)
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
"#;

#[test]
fn deployment_makes_replicaset_and_named_pods() {
    let c = build(WEB);
    let rs: Vec<&Workload> = c
        .workloads
        .iter()
        .filter(|((k, _), _)| *k == Kind::ReplicaSet)
        .map(|(_, w)| w)
        .collect();
    assert_eq!(rs.len(), 1);
    let hash = rs[0].template_hash.clone().unwrap();
    assert_eq!(rs[0].meta.name, format!("web-{hash}"));
    let pods: Vec<&Pod> = c.pods_in("shop").collect();
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert!(
            p.meta.name.starts_with(&format!("web-{hash}-")),
            "{}",
            p.meta.name
        );
        assert_eq!(p.meta.name.len(), format!("web-{hash}-").len() + 5);
        assert_eq!(p.meta.labels.get("pod-template-hash"), Some(&hash));
        assert_eq!(p.ips.len(), 1);
        assert!(p.ips[0].to_string().starts_with("127.244.0."));
        assert_eq!(p.node_name, "node-1");
        assert!(p.ready);
    }
}

#[test]
fn same_manifests_same_cluster_in_any_order() {
    let docs: Vec<&str> = WEB.split("\n---\n").collect();
    let reversed = docs
        .iter()
        .rev()
        .copied()
        .collect::<Vec<_>>()
        .join("\n---\n");
    let a = build(WEB);
    let b = build(&reversed);
    let summary = |c: &Cluster| {
        let pods: Vec<(String, Vec<IpAddr>, String)> = c
            .pods
            .values()
            .map(|p| (p.meta.name.clone(), p.ips.clone(), p.node_name.clone()))
            .collect();
        let svcs: Vec<(String, Vec<IpAddr>)> = c
            .services
            .values()
            .map(|s| (s.meta.key(), s.cluster_ip_list().to_vec()))
            .collect();
        let slices: Vec<String> = c.endpoint_slices.keys().map(|k| k.to_string()).collect();
        (pods, svcs, slices)
    };
    assert_eq!(summary(&a), summary(&b));
    // And twice in a row.
    assert_eq!(summary(&a), summary(&build(WEB)));
}

fn services_yaml(names: &[&str], kind: &str) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {n}}}\nspec:\n  type: {kind}\n  selector: {{app: {n}}}\n  ports: [{{port: 80}}]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn adding_a_service_does_not_renumber_the_others() {
    let names: Vec<String> = (0..200).map(|i| format!("svc-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for kind in ["ClusterIP", "NodePort", "LoadBalancer"] {
        let before = build(&services_yaml(&refs, kind));
        let mut more = refs.clone();
        more.insert(57, "a-new-one");
        more.push("zz-another");
        // Without the previous cluster (a fresh start) and with it (a live reload).
        let fresh = build(&services_yaml(&more, kind));
        let (reloaded, d) = {
            let mut m = svcnet_model::load::Manifests::default();
            svcnet_model::load::read_text(
                &mut m,
                "t.yaml",
                services_yaml(&more, kind),
                Some(false),
            );
            Cluster::build(m.objects, &AddressPlan::default(), Some(&before))
        };
        let reloaded = reloaded.unwrap_or_else(|| panic!("{d}"));
        for (k, s) in &before.services {
            for after in [&fresh, &reloaded] {
                let a = &after.services[k];
                assert_eq!(s.cluster_ips, a.cluster_ips, "{kind} {k}");
                assert_eq!(s.ports, a.ports, "{kind} {k} node ports");
                assert_eq!(s.load_balancer_ips, a.load_balancer_ips, "{kind} {k}");
            }
        }
    }
}

#[test]
fn allocations_land_in_their_ranges_and_are_unique() {
    let names: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let c = build(&services_yaml(&refs, "LoadBalancer"));
    let plan = AddressPlan::default();
    let mut ips = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    let mut lbs = std::collections::HashSet::new();
    for s in c
        .services
        .values()
        .filter(|s| s.meta.namespace == "default" && s.meta.name != "kubernetes")
    {
        let ip = s.cluster_ip_list()[0];
        assert!(plan.service_cidrs[0].contains(&ip));
        // Dynamic allocations avoid the low band kept for hand-picked addresses.
        assert!(ip > "127.96.1.0".parse::<IpAddr>().unwrap(), "{ip}");
        assert!(ips.insert(ip));
        let np = s.ports[0].node_port.unwrap();
        assert!(plan.node_port_range.contains(&np));
        assert!(ports.insert(np));
        assert!(plan.load_balancer_pool.contains(&s.load_balancer_ips[0]));
        assert!(lbs.insert(s.load_balancer_ips[0]));
    }
    assert_eq!(ips.len(), 300);
    let k = &c.services[&key("default", "kubernetes")];
    assert_eq!(
        k.cluster_ip_list(),
        ["127.96.0.1".parse::<IpAddr>().unwrap()]
    );
    let dns = &c.services[&key("kube-system", "kube-dns")];
    assert_eq!(
        dns.cluster_ip_list(),
        ["127.96.0.10".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn explicit_addresses_are_honoured_and_conflicts_rejected() {
    let ok = build(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIP: 127.96.5.5\n  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: exported, namespace: production}\nspec:\n  clusterIP: 10.96.45.123\n  ports: [{port: 5432}]\n",
    );
    assert_eq!(
        ok.services[&key("default", "a")].cluster_ip_list(),
        ["127.96.5.5".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        ok.services[&key("default", "a")].ports[0].node_port,
        Some(30080)
    );
    assert_eq!(
        ok.services[&key("production", "exported")].cluster_ip_list(),
        ["10.96.45.123".parse::<IpAddr>().unwrap()]
    );
    let (c, d) = Cluster::from_yaml(
        "t.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIP: 127.96.5.5\n  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec:\n  clusterIP: 127.96.5.5\n  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 80}]\n",
        &AddressPlan::default(),
    );
    assert!(c.is_none());
    let text = d.to_string();
    assert!(text.contains("t.yaml:13: Service default/b: spec.clusterIPs[0]: Invalid value: 127.96.5.5: provided IP is already allocated (to Service default/a)"), "{text}");
    assert!(text.contains("t.yaml:15: Service default/b: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated (to Service default/a)"), "{text}");
    assert!(text.contains("t.yaml:22: Service default/c: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"), "{text}");
}

#[test]
fn named_target_ports_resolve_per_pod() {
    let c = build(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: old, labels: {app: api}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: new, labels: {app: api}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 9090}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: none, labels: {app: api}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{name: web, port: 80, targetPort: http}]
"#,
    );
    let slices: Vec<&EndpointSlice> = c.slices_of(&key("default", "api")).collect();
    let mut by_port: Vec<(Option<u16>, Vec<String>)> = slices
        .iter()
        .map(|s| {
            (
                s.ports.first().and_then(|p| p.port),
                s.endpoints
                    .iter()
                    .map(|e| e.target_ref.as_ref().unwrap().name.clone())
                    .collect(),
            )
        })
        .collect();
    by_port.sort();
    assert_eq!(
        by_port,
        vec![
            (None, vec!["none".to_string()]),
            (Some(8080), vec!["old".to_string()]),
            (Some(9090), vec!["new".to_string()]),
        ]
    );
    for s in &slices {
        assert_eq!(
            s.meta.labels.get("kubernetes.io/service-name").unwrap(),
            "api"
        );
        assert!(s.derived);
    }
}

#[test]
fn readiness_terminating_and_publish_not_ready() {
    let text = |publish: bool| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: ready, labels: {{app: db}}}}
spec: {{containers: [{{name: c, image: x}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: unready, labels: {{app: db}}}}
spec: {{containers: [{{name: c, image: x}}]}}
status:
  phase: Running
  conditions: [{{type: Ready, status: "False"}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: leaving, labels: {{app: db}}, deletionTimestamp: "2026-01-01T00:00:00Z"}}
spec: {{containers: [{{name: c, image: x}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: done, labels: {{app: db}}}}
spec: {{containers: [{{name: c, image: x}}]}}
status: {{phase: Succeeded, podIP: 127.244.0.200}}
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  selector: {{app: db}}
  publishNotReadyAddresses: {publish}
  ports: [{{port: 5432}}]
"#
        )
    };
    let c = build(&text(false));
    let eps: Vec<(String, bool, bool, bool)> = c
        .slices_of(&key("default", "db"))
        .flat_map(|s| s.endpoints.clone())
        .map(|e| {
            (
                e.target_ref.unwrap().name,
                e.ready,
                e.serving,
                e.terminating,
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        eps,
        vec![
            ("leaving".into(), false, true, true),
            ("ready".into(), true, true, false),
            ("unready".into(), false, false, false),
        ]
    );
    let c = build(&text(true));
    assert!(
        c.slices_of(&key("default", "db"))
            .flat_map(|s| s.endpoints.clone())
            .all(|e| e.ready && e.serving)
    );
}

#[test]
fn statefulset_pods_get_hostnames_for_their_headless_service() {
    let c = build(
        r#"
apiVersion: v1
kind: Service
metadata: {name: database-headless}
spec:
  clusterIP: None
  selector: {app: database}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: database}
spec:
  serviceName: database-headless
  replicas: 3
  selector: {matchLabels: {app: database}}
  template:
    metadata: {labels: {app: database}}
    spec: {containers: [{name: pg, image: postgres, ports: [{containerPort: 5432}]}]}
"#,
    );
    let names: Vec<&str> = c.pods_in("default").map(|p| p.meta.name.as_str()).collect();
    assert_eq!(names, ["database-0", "database-1", "database-2"]);
    let p = &c.pods[&key("default", "database-1")];
    assert_eq!(p.hostname.as_deref(), Some("database-1"));
    assert_eq!(p.subdomain.as_deref(), Some("database-headless"));
    let mut hosts: Vec<String> = c
        .slices_of(&key("default", "database-headless"))
        .flat_map(|s| s.endpoints.iter().filter_map(|e| e.hostname.clone()))
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["database-0", "database-1", "database-2"]);
    let svc = &c.services[&key("default", "database-headless")];
    assert!(svc.is_headless());
}

#[test]
fn daemonset_runs_on_every_node_and_pods_spread() {
    let plan = AddressPlan {
        nodes: 3,
        ..AddressPlan::default()
    };
    let c = build_with(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-local-dns, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: node-local-dns}}
  template:
    metadata: {labels: {k8s-app: node-local-dns}}
    spec: {containers: [{name: node-cache, image: k8s-dns-node-cache}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"#,
        &plan,
    );
    let mut ds_nodes: Vec<&str> = c
        .pods_in("kube-system")
        .map(|p| p.node_name.as_str())
        .collect();
    ds_nodes.sort();
    assert_eq!(ds_nodes, ["node-1", "node-2", "node-3"]);
    let mut web_nodes: Vec<&str> = c.pods_in("default").map(|p| p.node_name.as_str()).collect();
    web_nodes.sort();
    assert_eq!(
        web_nodes,
        ["node-1", "node-2", "node-3"],
        "3 replicas on 3 nodes spread"
    );
    for n in c.nodes.values() {
        assert_eq!(n.pod_cidrs.len(), 1);
        for p in c.pods.values().filter(|p| p.node_name == n.meta.name) {
            assert!(n.pod_cidrs[0].contains(&p.ips[0]));
            assert_eq!(p.host_ip, Some(n.internal_ip));
        }
    }
    assert_eq!(c.nodes["node-2"].internal_ip.to_string(), "127.0.1.2");
}

#[test]
fn namespaces_are_created_and_labelled() {
    let c = build("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: team-a}\n");
    let ns = &c.namespaces["team-a"];
    assert!(ns.implicit);
    assert_eq!(ns.meta.labels["kubernetes.io/metadata.name"], "team-a");
    for sys in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(c.namespaces.contains_key(sys));
    }
    let c = build("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {env: prod}}\n");
    assert_eq!(
        c.namespaces["prod"].meta.labels["kubernetes.io/metadata.name"],
        "prod"
    );
    assert_eq!(c.namespaces["prod"].meta.labels["env"], "prod");
}

#[test]
fn endpoints_for_selectorless_services_become_slices() {
    let c = build(
        r#"
apiVersion: v1
kind: Service
metadata: {name: legacy-db}
spec: {ports: [{port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: legacy-db}
subsets:
- addresses: [{ip: 127.0.0.1}]
  notReadyAddresses: [{ip: 127.0.0.2}]
  ports: [{port: 5432}]
"#,
    );
    let eps: Vec<(String, bool)> = c
        .slices_of(&key("default", "legacy-db"))
        .flat_map(|s| {
            s.endpoints
                .iter()
                .map(|e| (e.addresses[0].clone(), e.ready))
        })
        .collect();
    assert_eq!(
        eps,
        vec![("127.0.0.1".into(), true), ("127.0.0.2".into(), false)]
    );
}

#[test]
fn slices_hold_at_most_100_endpoints() {
    let c = build_with(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: big}
spec:
  replicas: 250
  selector: {matchLabels: {app: big}}
  template:
    metadata: {labels: {app: big}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: big}
spec: {selector: {app: big}, ports: [{port: 80}]}
"#,
        &AddressPlan {
            nodes: 2,
            ..AddressPlan::default()
        },
    );
    let mut sizes: Vec<usize> = c
        .slices_of(&key("default", "big"))
        .map(|s| s.endpoints.len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
}

#[test]
fn dual_stack_services_need_two_families() {
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: d}\nspec:\n  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n";
    let (c, d) = Cluster::from_yaml("t.yaml", svc, &AddressPlan::default());
    assert!(c.is_none());
    assert!(d.to_string().contains("RequireDualStack"), "{d}");
    let plan = AddressPlan {
        service_cidrs: vec![
            "127.96.0.0/12".parse().unwrap(),
            "fd00:96::/112".parse().unwrap(),
        ],
        pod_cidrs: vec![
            "127.244.0.0/16".parse().unwrap(),
            "fd00:244::/56".parse().unwrap(),
        ],
        ..AddressPlan::default()
    };
    let c = build_with(svc, &plan);
    let ips = c.services[&key("default", "d")].cluster_ip_list().to_vec();
    assert_eq!(ips.len(), 2);
    assert!(ips[0].is_ipv4() && ips[1].is_ipv6());
    // PreferDualStack on a single-stack cluster quietly stays single.
    let prefer = svc.replace("RequireDualStack", "PreferDualStack");
    let c = build(&prefer);
    assert_eq!(c.services[&key("default", "d")].cluster_ip_list().len(), 1);
}

mod order {
    use super::*;
    use proptest::prelude::*;

    fn doc(i: usize, kind: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: ns{}}}\nspec:\n  type: {kind}\n  selector: {{app: a{i}}}\n  ports: [{{name: p, port: 80}}, {{name: q, port: 53, protocol: UDP}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: ns{}, labels: {{app: a{i}}}}}\nspec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 80}}]}}]}}\n",
            i % 3,
            i % 3
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Any permutation of the same documents gives the same allocations.
        #[test]
        fn allocation_ignores_document_order(
            n in 1usize..40,
            seed in any::<u64>(),
            kind in prop_oneof![Just("ClusterIP"), Just("NodePort"), Just("LoadBalancer")],
        ) {
            let docs: Vec<String> = (0..n).map(|i| doc(i, kind)).collect();
            let mut shuffled = docs.clone();
            // A deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let a = build(&docs.join("---\n"));
            let b = build(&shuffled.join("---\n"));
            for (k, s) in &a.services {
                let t = &b.services[k];
                prop_assert_eq!(&s.cluster_ips, &t.cluster_ips);
                prop_assert_eq!(&s.ports, &t.ports);
                prop_assert_eq!(&s.load_balancer_ips, &t.load_balancer_ips);
            }
            for (k, p) in &a.pods {
                prop_assert_eq!(&p.ips, &b.pods[k].ips);
                prop_assert_eq!(&p.node_name, &b.pods[k].node_name);
            }
            let sa: Vec<_> = a.endpoint_slices.keys().collect();
            let sb: Vec<_> = b.endpoint_slices.keys().collect();
            prop_assert_eq!(sa, sb);
        }
    }
}

#[test]
fn absurd_replica_counts_are_errors_not_allocations() {
    let (c, d) = Cluster::from_yaml(
        "huge.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  replicas: 2147483647\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: x}]}\n",
        &AddressPlan::default(),
    );
    assert!(c.is_none());
    assert!(
        d.to_string().contains("huge.yaml:5: Deployment default/w: spec.replicas: Invalid value: 2147483647: more pods than the cluster's 1 node(s) have addresses left for (254 of 254)"),
        "{d}"
    );
}

#[test]
fn many_workloads_together_cannot_exceed_the_address_space() {
    let docs: Vec<String> = (0..4)
        .map(|i| {
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: w{i}}}\nspec:\n  replicas: 100\n  selector: {{matchLabels: {{a: b{i}}}}}\n  template:\n    metadata: {{labels: {{a: b{i}}}}}\n    spec: {{containers: [{{name: c, image: x}}]}}\n")
        })
        .collect();
    let (c, d) = Cluster::from_yaml("many.yaml", &docs.join("---\n"), &AddressPlan::default());
    assert!(c.is_none());
    let text = d.to_string();
    // 254 addresses: w0 and w1 fit (200), w2 and w3 do not.
    assert!(text.contains("Deployment default/w2: spec.replicas: Invalid value: 100: more pods than the cluster's 1 node(s) have addresses left for (54 of 254)"), "{text}");
    assert!(!text.contains("default/w1:"), "{text}");
}

#[test]
fn a_written_pod_under_a_derived_pods_name_is_an_error_at_the_written_pod() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: data}
spec:
  containers: [{name: db, image: postgres}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: data}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres}]
"#;
    let (c, d) = Cluster::from_yaml("test.yaml", text, &AddressPlan::default());
    assert!(c.is_none());
    let errors: Vec<String> = d.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("test.yaml:2: Pod data/db-1: metadata.name: ")
            && errors[0].contains(
                "Pod data/db-1 is also the name of a pod its StatefulSet creates (from test.yaml:8)"
            ),
        "{errors:#?}"
    );
}
