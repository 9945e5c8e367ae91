//! Benchmark of svcnet's NetworkPolicy engine: 2,000 pods in 50 namespaces with 1,000
//! policies (a generated, realistic mix), measuring `PolicyIndex::compile`, the latency of
//! one enforcement decision (`PolicyIndex::allows` on two addresses) and of one explained
//! verdict, and the full 2,000 × 2,000 reachability matrix.
//!
//! It measures and compares with the targets (compile < 200 ms, a decision < 1 µs,
//! the matrix < 2 s). No other NetworkPolicy engine runs offline on manifests here, so there
//! is no peer ratio: the ratios reported are to those targets.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use svcnet_model::types::{ObjectKey, Protocol};
use svcnet_model::{AddressPlan, Cluster, Severity};
use svcnet_policy::PolicyIndex;

/// NetworkPolicy engine benchmark.
#[derive(Parser, Debug)]
#[command(name = "svcnet-bench-policy")]
struct Cli {
    /// Pods to generate.
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// Namespaces to spread them over.
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    /// NetworkPolicies to generate.
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Timed compile and matrix runs (after one warm-up).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Decisions to time.
    #[arg(long, default_value_t = 1_000_000)]
    queries: usize,
    /// Where to write the results in Markdown (nothing is written when absent).
    #[arg(long)]
    results: Option<PathBuf>,
}

/// A small deterministic PRNG (xorshift64*), so every run measures the same cluster.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const APPS: [&str; 8] = [
    "web", "api", "db", "cache", "worker", "auth", "search", "queue",
];
const TEAMS: [&str; 10] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

fn tier(app: &str) -> &'static str {
    match app {
        "web" => "frontend",
        "db" | "cache" | "search" | "queue" => "data",
        _ => "backend",
    }
}

fn ns_name(i: usize) -> String {
    format!("ns-{i:02}")
}

/// The manifests: namespaces, pods and policies as JSON documents.
fn generate(cli: &Cli) -> Vec<Value> {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let mut docs = Vec::new();
    for n in 0..cli.namespaces {
        docs.push(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": ns_name(n),
            "labels": {"team": TEAMS[n % TEAMS.len()], "env": ENVS[n % ENVS.len()]}}}),
        );
    }
    for i in 0..cli.pods {
        let ns = ns_name(i % cli.namespaces);
        let app = APPS[(i / cli.namespaces) % APPS.len()];
        let mut ports = vec![
            json!({"name": "http", "containerPort": 8080 + (i % 3) as u16}),
            json!({"name": "metrics", "containerPort": 9090}),
        ];
        match app {
            "db" => ports.push(json!({"name": "pg", "containerPort": 5432})),
            "cache" => ports.push(json!({"name": "redis", "containerPort": 6379})),
            "api" | "auth" => ports.push(json!({"name": "grpc", "containerPort": 50051})),
            _ => {}
        }
        if i % 17 == 0 {
            ports.push(json!({"name": "dns", "containerPort": 53, "protocol": "UDP"}));
        }
        docs.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": format!("{app}-{i:04}"), "namespace": ns,
                "labels": {"app": app, "tier": tier(app), "version": format!("v{}", i % 3)}},
            "spec": {"containers": [{"name": "main", "image": "img", "ports": ports}]}}));
    }
    for p in 0..cli.policies {
        let n = rng.below(cli.namespaces);
        let ns = ns_name(n);
        let app = *rng.pick(&APPS);
        let other = *rng.pick(&APPS);
        let team = *rng.pick(&TEAMS);
        let sel = json!({"matchLabels": {"app": app}});
        let spec = match p % 10 {
            // Default deny in the namespace (one in ten).
            0 => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            // Same-namespace allow on a named port.
            1 | 2 => json!({"podSelector": sel, "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app": other}}}],
                "ports": [{"port": "http"}, {"port": "metrics"}]}]}),
            // Another team's namespaces, AND a pod selector.
            3 => json!({"podSelector": sel, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"team": team}},
                          "podSelector": {"matchLabels": {"tier": "frontend"}}}],
                "ports": [{"port": 8080, "endPort": 8082}]}]}),
            // Two OR-ed peers, one with NotIn.
            4 => json!({"podSelector": {"matchLabels": {"tier": tier(app)}}, "ingress": [{
                "from": [{"namespaceSelector": {"matchExpressions": [
                            {"key": "env", "operator": "NotIn", "values": ["dev"]}]}},
                         {"podSelector": {"matchLabels": {"app": other}}}]}]}),
            // Egress: database and DNS.
            5 => json!({"podSelector": sel, "policyTypes": ["Egress"], "egress": [
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                 "ports": [{"port": 5432}]},
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                 "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}),
            // Egress to the outside, minus the metadata service and one pod range.
            6 => json!({"podSelector": sel, "policyTypes": ["Egress"], "egress": [
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                     "except": ["169.254.169.254/32", "10.0.0.0/8"]}}],
                 "ports": [{"port": 443}]},
                {"to": [{"ipBlock": {"cidr": "127.244.0.0/16",
                                     "except": [format!("127.244.{}.0/24", rng.below(8))]}}]}]}),
            // Monitoring from every namespace with the env label, by name.
            7 => json!({"podSelector": {}, "ingress": [{
                "from": [{"namespaceSelector": {"matchExpressions": [
                            {"key": "env", "operator": "Exists"}]},
                          "podSelector": {"matchLabels": {"app": "worker"}}}],
                "ports": [{"port": "metrics"}]}]}),
            // gRPC between tiers, across all namespaces.
            8 => json!({"podSelector": sel, "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"namespaceSelector": {},
                                       "podSelector": {"matchLabels": {"tier": "backend"}}}],
                             "ports": [{"port": "grpc"}, {"port": 8080, "endPort": 8090}]}],
                "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {
                                "matchExpressions": [{"key": "app", "operator": "In",
                                                      "values": [other, "cache"]}]}}]},
                           {"ports": [{"port": 53, "protocol": "UDP"}]}]}),
            // A version-pinned allow with a UDP range.
            _ => json!({"podSelector": {"matchLabels": {"app": app, "version": "v1"}},
                "ingress": [{"from": [{"podSelector": {}}],
                             "ports": [{"protocol": "UDP", "port": 5000, "endPort": 5100}]}]}),
        };
        docs.push(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("np-{p:04}"), "namespace": ns}, "spec": spec}),
        );
    }
    docs
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.runs == 0 || cli.queries == 0 {
        bail!("--runs and --queries must be at least 1");
    }
    let docs = generate(&cli);
    let text = docs
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()?
        .join("\n---\n");
    let plan = AddressPlan {
        // 254 pod IPs per node.
        nodes: (cli.pods / 200 + 1) as u32,
        ..AddressPlan::default()
    };
    let t = Instant::now();
    let (cluster, diags) = Cluster::from_yaml("generated.yaml", &text, &plan);
    let load_time = t.elapsed();
    let errors: Vec<String> = diags
        .0
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .take(5)
        .map(ToString::to_string)
        .collect();
    let cluster = cluster.with_context(|| format!("generated manifests: {errors:?}"))?;
    let pods_with_ip = cluster.pods.values().filter(|p| !p.ips.is_empty()).count();
    eprintln!(
        "generated {} namespaces, {} pods ({} with IPs), {} policies; model load {:.0} ms",
        cluster.namespaces.len(),
        cluster.pods.len(),
        pods_with_ip,
        cluster.network_policies.len(),
        ms(load_time)
    );

    // Compile.
    let _ = black_box(PolicyIndex::compile(&cluster));
    let compiles: Vec<Duration> = (0..cli.runs)
        .map(|_| {
            let t = Instant::now();
            let idx = PolicyIndex::compile(black_box(&cluster));
            let d = t.elapsed();
            black_box(idx);
            d
        })
        .collect();
    let compile_min = *compiles.iter().min().unwrap_or(&Duration::ZERO);
    let compile = median(compiles);
    let index = PolicyIndex::compile(&cluster);

    // Decisions on random pairs of addresses: mostly pod to pod, some external.
    let ips: Vec<IpAddr> = cluster
        .pods
        .values()
        .filter_map(|p| p.ips.first().copied())
        .collect();
    let external: [IpAddr; 3] = [
        "203.0.113.7".parse()?,
        "169.254.169.254".parse()?,
        "10.1.2.3".parse()?,
    ];
    let ports: [(u16, Protocol); 8] = [
        (8080, Protocol::Tcp),
        (8081, Protocol::Tcp),
        (9090, Protocol::Tcp),
        (5432, Protocol::Tcp),
        (50051, Protocol::Tcp),
        (443, Protocol::Tcp),
        (53, Protocol::Udp),
        (5050, Protocol::Udp),
    ];
    let mut rng = Rng(42);
    let queries: Vec<(IpAddr, IpAddr, u16, Protocol)> = (0..cli.queries)
        .map(|_| {
            let src = *rng.pick(&ips);
            let dst = if rng.below(20) == 0 {
                *rng.pick(&external)
            } else {
                *rng.pick(&ips)
            };
            let (port, proto) = *rng.pick(&ports);
            (src, dst, port, proto)
        })
        .collect();
    // Throughput: the whole batch in one timed loop.
    let t = Instant::now();
    let mut allowed = 0usize;
    for &(s, d, p, pr) in &queries {
        allowed += usize::from(index.allows(black_box(s), black_box(d), p, pr));
    }
    let batch = t.elapsed();
    let mean_ns = batch.as_nanos() as f64 / queries.len() as f64;
    // Latency distribution: each decision timed alone (includes ~20-40 ns of clock reads).
    let mut each: Vec<u64> = Vec::with_capacity(queries.len());
    for &(s, d, p, pr) in &queries {
        let t = Instant::now();
        black_box(index.allows(black_box(s), black_box(d), p, pr));
        each.push(t.elapsed().as_nanos() as u64);
    }
    // The clock's own cost, measured the same way around nothing.
    let mut clock: Vec<u64> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            black_box(());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    clock.sort_unstable();
    each.sort_unstable();
    let pct = |v: &[u64], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let (p50, p99, max) = (
        pct(&each, 0.50),
        pct(&each, 0.99),
        *each.last().unwrap_or(&0),
    );
    let clock_p50 = pct(&clock, 0.5);

    // Explained verdicts (allocate: strings for reasons), on a sample.
    let sample = &queries[..queries.len().min(100_000)];
    let t = Instant::now();
    for &(s, d, p, pr) in sample {
        black_box(index.verdict(index.endpoint_of(s), index.endpoint_of(d), p, pr));
    }
    let verdict_ns = t.elapsed().as_nanos() as f64 / sample.len() as f64;

    // The full matrix.
    let keys: Vec<ObjectKey> = cluster.pods.keys().cloned().collect();
    let _ = black_box(index.matrix(&keys, 8080, Protocol::Tcp));
    let mut matrix_runs = Vec::new();
    let mut cells_allowed = 0;
    for _ in 0..cli.runs {
        let t = Instant::now();
        let m = index.matrix(black_box(&keys), 8080, Protocol::Tcp);
        matrix_runs.push(t.elapsed());
        cells_allowed = m.allowed_count();
    }
    let matrix_time = median(matrix_runs);
    // The matrix and the fast path agree (a sample of cells).
    let m = index.matrix(&keys, 8080, Protocol::Tcp);
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let (i, j) = (rng.below(keys.len()), rng.below(keys.len()));
        let (Some(a), Some(b)) = (
            cluster.pods[&keys[i]].ips.first(),
            cluster.pods[&keys[j]].ips.first(),
        ) else {
            continue;
        };
        if m.allowed(i, j) != index.allows(*a, *b, 8080, Protocol::Tcp) {
            bail!("matrix and allows() disagree on {} -> {}", keys[i], keys[j]);
        }
    }
    let isolated_in = index
        .pod_keys()
        .filter_map(|k| index.pod_id(k))
        .filter(|id| {
            !index
                .isolated_by(*id, svcnet_policy::Direction::Ingress)
                .is_empty()
        })
        .count();
    let isolated_out = index
        .pod_keys()
        .filter_map(|k| index.pod_id(k))
        .filter(|id| {
            !index
                .isolated_by(*id, svcnet_policy::Direction::Egress)
                .is_empty()
        })
        .count();

    let cells = keys.len() * keys.len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| measure | result | target | ratio to target |\n|---|---:|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| compile {} policies over {} pods (median of {}; min {:.1} ms) | {:.1} ms | 200 ms | {:.2} |",
        cluster.network_policies.len(),
        cluster.pods.len(),
        cli.runs,
        ms(compile_min),
        ms(compile),
        ms(compile) / 200.0
    );
    let _ = writeln!(
        out,
        "| `allows()` decision, mean over {} random pairs (one loop) | {:.0} ns | 1000 ns | {:.3} |",
        queries.len(),
        mean_ns,
        mean_ns / 1000.0
    );
    let _ = writeln!(
        out,
        "| `allows()` decision, each timed alone: p50 / p99 / max (clock read alone: p50 {clock_p50} ns) | {p50} / {p99} / {max} ns | 1000 ns | {:.3} (p99) |",
        p99 as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "| `verdict()` with reasons, mean over {} pairs | {:.0} ns | | |",
        sample.len(),
        verdict_ns
    );
    let _ = writeln!(
        out,
        "| full matrix {}×{} = {} cells, 8080/TCP (median of {}) | {:.1} ms | 2000 ms | {:.3} |",
        keys.len(),
        keys.len(),
        cells,
        cli.runs,
        ms(matrix_time),
        ms(matrix_time) / 2000.0
    );
    let _ = writeln!(
        out,
        "\nMix: {} of {} pods isolated for ingress, {} for egress; {:.1}% of the decisions allowed; {:.1}% of the matrix cells allowed.",
        isolated_in,
        keys.len(),
        isolated_out,
        100.0 * allowed as f64 / queries.len() as f64,
        100.0 * cells_allowed as f64 / cells as f64
    );
    println!("{out}");
    if let Some(path) = cli.results {
        std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
