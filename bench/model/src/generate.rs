//! Deterministic, realistic manifests: namespaces of Deployments (or StatefulSets) behind
//! Services that target named container ports, with some NodePort, LoadBalancer and headless
//! Services, a few NetworkPolicies and one Ingress per namespace.
//!
//! Objects are built as JSON values and written as YAML streams (serde-saphyr) or, for every
//! N-th namespace (`--json-every`, 10 by default), as JSON `kind: List` files, so that both
//! reading paths are measured.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// How much to generate.
#[derive(Clone, Debug)]
pub struct Size {
    /// Services in all (one workload behind each).
    pub services: usize,
    /// Namespaces the Services are spread over.
    pub namespaces: usize,
    /// Replicas of every workload.
    pub replicas: usize,
    /// Every N-th namespace writes its Services as JSON `kind: List` files (0: none).
    pub json_every: usize,
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// Files written.
    pub files: usize,
    /// Total bytes written.
    pub bytes: usize,
    /// Objects written, all kinds.
    pub objects: usize,
    /// Services written.
    pub services: usize,
    /// Pods the workloads ask for (replicas summed).
    pub pods: usize,
}

const TEAMS: &[&str] = &[
    "payments", "checkout", "search", "identity", "catalog", "media", "ads", "growth", "data",
    "platform",
];
const DOMAINS: &[&str] = &[
    "auth",
    "billing",
    "cart",
    "catalog",
    "inventory",
    "orders",
    "ledger",
    "search",
    "shipping",
    "users",
    "notify",
    "reviews",
    "pricing",
    "profile",
    "session",
    "gateway",
    "media",
    "report",
];
const ROLES: &[&str] = &["api", "worker", "web", "grpc", "cache", "frontend"];
const TIERS: &[&str] = &["frontend", "backend", "data"];

/// Services per YAML file and workloads per YAML file: a few hundred files in all.
const SERVICES_PER_FILE: usize = 100;
const WORKLOADS_PER_FILE: usize = 50;

/// The variety of one Service, chosen by its index in its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    /// A StatefulSet behind a headless Service.
    Stateful,
    /// A NodePort Service.
    NodePort,
    /// A LoadBalancer Service with two ports.
    LoadBalancer,
    /// A ClusterIP Service with `sessionAffinity: ClientIP`.
    Sticky,
    /// A plain ClusterIP Service with one to three ports.
    ClusterIp,
}

fn flavour(i: usize) -> Flavour {
    match i % 20 {
        0 => Flavour::Stateful,
        1 => Flavour::NodePort,
        2 => Flavour::LoadBalancer,
        3 => Flavour::Sticky,
        _ => Flavour::ClusterIp,
    }
}

/// A small deterministic generator (SplitMix64), so that every run writes the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        // n is small; the modulo bias does not matter for test data.
        (self.next() % n.max(1) as u64) as usize
    }
}

fn namespace_name(k: usize) -> String {
    format!("{}-{:02}", TEAMS[k % TEAMS.len()], k)
}

fn app_name(i: usize) -> String {
    format!(
        "{}-{}-{:03}",
        DOMAINS[i % DOMAINS.len()],
        ROLES[(i / DOMAINS.len()) % ROLES.len()],
        i
    )
}

/// Writes the manifests into `dir` (which must exist and be empty).
pub fn write(dir: &Path, size: &Size) -> Result<Written> {
    let mut rng = Rng(0x5ec_0e7);
    let mut w = Written::default();
    let namespaces = size.namespaces.max(1);
    let per_ns = size.services.div_ceil(namespaces);

    let mut cluster = Vec::new();
    cluster.push(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": "svcnet",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
        },
        "spec": {"controller": "svcnet.io/ingress-controller"},
    }));
    cluster.push(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "monitoring", "labels": {"name": "monitoring"}},
    }));
    write_yaml(dir, "cluster.yaml", &cluster, &mut w)?;

    let mut left = size.services;
    for k in 0..namespaces {
        let count = per_ns.min(left);
        left -= count;
        if count == 0 {
            break;
        }
        let ns = namespace_name(k);
        let ns_dir = dir.join(&ns);
        fs::create_dir_all(&ns_dir).with_context(|| format!("creating {}", ns_dir.display()))?;

        let head = vec![
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "labels": {
                        "name": ns,
                        "team": TEAMS[k % TEAMS.len()],
                        "environment": if k % 3 == 0 { "staging" } else { "production" },
                    },
                },
            }),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "app-settings", "namespace": ns},
                "data": {"LOG_LEVEL": "info", "FEATURE_FLAGS": "a,b,c", "REGION": "eu-west-1"},
            }),
        ];
        write_yaml(&ns_dir, "00-namespace.yaml", &head, &mut w)?;

        let services: Vec<Value> = (0..count).map(|i| service(&ns, i)).collect();
        w.services += services.len();
        for (j, chunk) in services.chunks(SERVICES_PER_FILE).enumerate() {
            if size.json_every > 0 && k % size.json_every == size.json_every - 1 {
                write_json_list(&ns_dir, &format!("services-{j}.json"), chunk, &mut w)?;
            } else {
                write_yaml(&ns_dir, &format!("services-{j}.yaml"), chunk, &mut w)?;
            }
        }

        let workloads: Vec<Value> = (0..count)
            .map(|i| workload(&ns, i, size.replicas, &mut rng))
            .collect();
        w.pods += count * size.replicas;
        for (j, chunk) in workloads.chunks(WORKLOADS_PER_FILE).enumerate() {
            write_yaml(&ns_dir, &format!("workloads-{j}.yaml"), chunk, &mut w)?;
        }

        write_yaml(&ns_dir, "policies.yaml", &policies(&ns), &mut w)?;
        let ingress = ingress(&ns, count);
        if !ingress.is_empty() {
            write_yaml(&ns_dir, "ingress.yaml", &ingress, &mut w)?;
        }
    }
    Ok(w)
}

fn service(ns: &str, i: usize) -> Value {
    let app = app_name(i);
    let f = flavour(i);
    let http = json!({"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"});
    let (kind, ports) = match f {
        Flavour::Stateful => (
            "ClusterIP",
            json!([{"name": "tcp-db", "port": 5432, "targetPort": "db"}]),
        ),
        Flavour::NodePort => ("NodePort", json!([http])),
        Flavour::LoadBalancer => (
            "LoadBalancer",
            json!([http, {"name": "https", "port": 443, "targetPort": "http", "protocol": "TCP"}]),
        ),
        Flavour::Sticky | Flavour::ClusterIp => {
            let mut ports = vec![http];
            if i.is_multiple_of(3) {
                ports.push(json!({"name": "metrics", "port": 9090, "targetPort": "metrics"}));
            }
            if i.is_multiple_of(4) {
                ports.push(json!({"name": "grpc", "port": 9000, "targetPort": "grpc",
                    "appProtocol": "kubernetes.io/h2c"}));
            }
            ("ClusterIP", Value::Array(ports))
        }
    };
    let mut spec = json!({
        "type": kind,
        "selector": {"app": app, "tier": TIERS[i % TIERS.len()]},
        "ports": ports,
    });
    match f {
        Flavour::Stateful => {
            spec["clusterIP"] = json!("None");
            spec["publishNotReadyAddresses"] = json!(true);
        }
        Flavour::NodePort if i % 40 == 1 => spec["externalTrafficPolicy"] = json!("Local"),
        Flavour::Sticky => {
            spec["sessionAffinity"] = json!("ClientIP");
            spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
        }
        _ => {}
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": app,
            "namespace": ns,
            "labels": {"app": app, "app.kubernetes.io/part-of": ns},
        },
        "spec": spec,
    })
}

fn workload(ns: &str, i: usize, replicas: usize, rng: &mut Rng) -> Value {
    let app = app_name(i);
    let f = flavour(i);
    let tier = TIERS[i % TIERS.len()];
    let labels = json!({"app": app, "tier": tier});
    let mut pod_labels = labels.clone();
    pod_labels["version"] = json!(format!("v{}", 1 + rng.below(3)));
    pod_labels["app.kubernetes.io/name"] = json!(app);

    let (image, ports) = if f == Flavour::Stateful {
        (
            "postgres:16".to_string(),
            json!([{"name": "db", "containerPort": 5432, "protocol": "TCP"}]),
        )
    } else {
        (
            format!(
                "registry.example.com/{ns}/{}:1.{}.{}",
                app,
                rng.below(20),
                rng.below(10)
            ),
            json!([
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "grpc", "containerPort": 9000, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
            ]),
        )
    };
    let probe_port = if f == Flavour::Stateful { "db" } else { "http" };
    let mut containers = vec![json!({
        "name": "app",
        "image": image,
        "ports": ports,
        "env": [
            {"name": "SERVICE_NAME", "value": app},
            {"name": "UPSTREAM", "value": format!("{}.{ns}.svc.cluster.local:80",
                app_name((i + 1 + rng.below(7)) % 200))},
            {"name": "GOMAXPROCS", "value": "2"},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "readinessProbe": {"tcpSocket": {"port": probe_port}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": probe_port}, "initialDelaySeconds": 10},
    })];
    if i.is_multiple_of(5) && f != Flavour::Stateful {
        containers.push(json!({
            "name": "proxy",
            "image": "envoyproxy/envoy:v1.31.0",
            "args": ["--config-path", "/etc/envoy/envoy.yaml"],
            "ports": [{"name": "admin", "containerPort": 15000}],
        }));
    }
    let template = json!({
        "metadata": {"labels": pod_labels, "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {"containers": containers},
    });
    if f == Flavour::Stateful {
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": app, "namespace": ns, "labels": labels},
            "spec": {
                "serviceName": app,
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": template,
            },
        })
    } else {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": app, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": template,
            },
        })
    }
}

fn policies(ns: &str) -> Vec<Value> {
    let policy = |name: &str, spec: Value| {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        })
    };
    vec![
        policy(
            "default-deny-ingress",
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        ),
        policy(
            "allow-same-namespace",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ),
        policy(
            "allow-monitoring",
            json!({
                "podSelector": {},
                "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                    "ports": [{"port": "metrics", "protocol": "TCP"}],
                }],
            }),
        ),
        policy(
            "backend-from-frontend",
            json!({
                "podSelector": {"matchLabels": {"tier": "backend"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{
                    "from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}],
                    "ports": [{"port": 8080}, {"port": "grpc"}],
                }],
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": {"tier": "data"}}}]},
                    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                ],
            }),
        ),
    ]
}

/// One Ingress per namespace, routing ten hosts to ClusterIP Services by port name.
fn ingress(ns: &str, count: usize) -> Vec<Value> {
    let rules: Vec<Value> = (0..count)
        .filter(|&i| matches!(flavour(i), Flavour::ClusterIp))
        .take(10)
        .map(|i| {
            let app = app_name(i);
            json!({
                "host": format!("{app}.{ns}.example.com"),
                "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": app, "port": {"name": "http"}}}},
                    {"path": "/healthz", "pathType": "Exact",
                     "backend": {"service": {"name": app, "port": {"number": 80}}}},
                ]},
            })
        })
        .collect();
    if rules.is_empty() {
        return Vec::new();
    }
    vec![json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "public", "namespace": ns},
        "spec": {"ingressClassName": "svcnet", "rules": rules},
    })]
}

fn write_yaml(dir: &Path, name: &str, objects: &[Value], w: &mut Written) -> Result<()> {
    let mut text = String::new();
    for (n, object) in objects.iter().enumerate() {
        if n > 0 {
            text.push_str("---\n");
        }
        let kind = object["kind"].as_str().unwrap_or("object");
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        writeln!(text, "# {kind} {name}, generated by svcnet-bench-model")?;
        serde_saphyr::to_fmt_writer(&mut text, object)
            .with_context(|| format!("writing {kind} {name} as YAML"))?;
    }
    w.objects += objects.len();
    finish(dir, name, text, w)
}

fn write_json_list(dir: &Path, name: &str, objects: &[Value], w: &mut Written) -> Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let mut text = serde_json::to_string_pretty(&list)?;
    text.push('\n');
    w.objects += objects.len();
    finish(dir, name, text, w)
}

fn finish(dir: &Path, name: &str, text: String, w: &mut Written) -> Result<()> {
    let path = dir.join(name);
    w.files += 1;
    w.bytes += text.len();
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
