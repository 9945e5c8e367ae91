//! Benchmark of svcnet's Ingress route table: compiles N generated Ingresses (precise and
//! wildcard hosts shared by several Ingresses, Exact, Prefix and ImplementationSpecific
//! paths, regex paths with rewrites, canaries) and measures `compile` and
//! `RouteTable::route` at 100 and at N Ingresses (10,000 by default).
//!
//! The targets: 10,000 Ingresses compiled in under 1 s, and route lookup time
//! independent of the number of Ingresses. Cluster loading (YAML, validation, derivation)
//! is measured separately and is not part of the compile figure.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use svcnet_ingress::{ControllerConfig, Decision, RouteRequest, RouteTable, Scheme, compile};
use svcnet_model::{AddressPlan, Cluster, Severity};

const NAMESPACES: usize = 20;
const SERVICES_PER_NAMESPACE: usize = 50;

struct Args {
    ingresses: usize,
    small: usize,
    runs: usize,
    results: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        ingresses: 10_000,
        small: 100,
        runs: 5,
        results: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--ingresses" => a.ingresses = value()?.parse()?,
            "--small" => a.small = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--results" => a.results = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "svcnet-bench-ingress-compile [--ingresses 10000] [--small 100] [--runs 5] [--results FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// The host of Ingress `i`: every fifth Ingress shares the host of the one before it
/// (paths merged), one in ten is a wildcard.
fn host(i: usize) -> String {
    let owner = if i % 5 == 4 { i - 1 } else { i };
    if owner % 10 == 7 {
        format!("*.w{owner}.example.com")
    } else {
        format!("app{owner}.team{}.example.com", owner % 50)
    }
}

/// Manifests: Services with EndpointSlices (3 ready endpoints each) and `n` Ingresses.
fn manifests(n: usize) -> String {
    let mut y = String::with_capacity(n * 900);
    y.push_str(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: svcnet}\nspec: {controller: svcnet.io/ingress-controller}\n---\n",
    );
    for ns in 0..NAMESPACES {
        for s in 0..SERVICES_PER_NAMESPACE {
            let _ = write!(
                y,
                "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: ns-{ns}}}\nspec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n---\n\
                 apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{s}-a, namespace: ns-{ns}, labels: {{kubernetes.io/service-name: svc-{s}}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n"
            );
            for e in 0..3 {
                let _ = writeln!(
                    y,
                    "- {{addresses: [10.{ns}.{s}.{}], conditions: {{ready: true}}, targetRef: {{kind: Pod, namespace: ns-{ns}, name: svc-{s}-{e}}}}}",
                    e + 1
                );
            }
            y.push_str("---\n");
        }
    }
    for i in 0..n {
        let ns = i % NAMESPACES;
        let svc = i % SERVICES_PER_NAMESPACE;
        let canary = i % 20 == 19;
        let regex = i % 20 == 3;
        let mut ann = String::new();
        if canary {
            ann.push_str(
                ", annotations: {nginx.ingress.kubernetes.io/canary: 'true', nginx.ingress.kubernetes.io/canary-weight: '20', nginx.ingress.kubernetes.io/canary-by-header: X-Canary}",
            );
        } else if regex {
            ann.push_str(
                ", annotations: {nginx.ingress.kubernetes.io/use-regex: 'true', nginx.ingress.kubernetes.io/rewrite-target: '/$2'}",
            );
        }
        let h = host(i);
        // A canary repeats its primary's (the previous Ingress's) first path.
        let (ns, first) = if canary {
            ((i - 1) % NAMESPACES, format!("/api/v{}", (i - 1) % 3 + 1))
        } else {
            (ns, format!("/api/v{}", i % 3 + 1))
        };
        let _ = write!(
            y,
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing-{i}, namespace: ns-{ns}{ann}}}\nspec:\n  ingressClassName: svcnet\n  rules:\n  - host: '{h}'\n    http:\n      paths:\n      \
             - {{path: {first}, pathType: Prefix, backend: {{service: {{name: svc-{svc}, port: {{number: 80}}}}}}}}\n"
        );
        if !canary {
            let _ = write!(
                y,
                "      - {{path: /health-{i}, pathType: Exact, backend: {{service: {{name: svc-{svc}, port: {{name: http}}}}}}}}\n      \
                 - {{path: /static/{i}/assets, pathType: ImplementationSpecific, backend: {{service: {{name: svc-{svc}, port: {{number: 80}}}}}}}}\n"
            );
            if regex {
                let _ = writeln!(
                    y,
                    "      - {{path: '/items-{i}(/|$)(.*)', pathType: ImplementationSpecific, backend: {{service: {{name: svc-{svc}, port: {{number: 80}}}}}}}}"
                );
            }
        }
        y.push_str("---\n");
    }
    y
}

fn load(n: usize) -> Result<(Cluster, Duration)> {
    let text = manifests(n);
    let start = Instant::now();
    let (c, d) = Cluster::from_yaml("bench.yaml", &text, &AddressPlan::default());
    let took = start.elapsed();
    let errors: Vec<String> =
        d.0.iter()
            .filter(|d| d.severity == Severity::Error)
            .take(5)
            .map(ToString::to_string)
            .collect();
    match c {
        Some(c) => Ok((c, took)),
        None => bail!("generated manifests do not load:\n{}", errors.join("\n")),
    }
}

/// Lookup kinds: (label, host, path, header X-Canary).
fn probes(n: usize) -> Vec<(&'static str, String, String, bool)> {
    // An Ingress near the end of the table, of each kind.
    let pick = |pred: &dyn Fn(usize) -> bool| (0..n).rev().find(|&i| pred(i)).unwrap_or(0);
    let precise = pick(&|i| i % 5 == 0 && i % 10 != 7 && i % 20 != 3);
    let wildcard = pick(&|i| i % 10 == 7 && i % 20 != 3 && i % 5 != 4);
    let regex = pick(&|i| i % 20 == 3);
    let canary = pick(&|i| i % 20 == 19);
    let concrete = |h: String| h.replace("*.", "x.");
    vec![
        ("Exact", host(precise), format!("/health-{precise}"), false),
        (
            "Prefix, 4 elements",
            host(precise),
            format!("/api/v{}/users/42", precise % 3 + 1),
            false,
        ),
        (
            "ImplementationSpecific as Prefix",
            host(precise),
            format!("/static/{precise}/assets/app.js"),
            false,
        ),
        (
            "wildcard host",
            concrete(host(wildcard)),
            format!("/api/v{}/x", wildcard % 3 + 1),
            false,
        ),
        (
            "regex + rewrite",
            host(regex),
            format!("/items-{regex}/a/b"),
            false,
        ),
        (
            "canary by header",
            host(canary),
            format!("/api/v{}", (canary - 1) % 3 + 1),
            true,
        ),
        (
            "unknown host (404)",
            "nowhere.example.net".to_string(),
            "/".to_string(),
            false,
        ),
    ]
}

/// ns per lookup: p50, p90 and p99 over batches of 1,000 lookups.
fn lookup(t: &RouteTable, host: &str, path: &str, canary: bool) -> (f64, f64, f64, String) {
    let mut headers = http::HeaderMap::new();
    if canary {
        headers.insert("x-canary", http::HeaderValue::from_static("always"));
    }
    let method = http::Method::GET;
    let req = RouteRequest {
        scheme: Scheme::Https,
        host,
        path,
        query: None,
        method: &method,
        headers: &headers,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        weight_draw: 50,
    };
    let outcome = match t.route(&req) {
        Decision::Proxy(u) => format!(
            "{}{}",
            u.backend.service,
            if u.canary { " (canary)" } else { "" }
        ),
        Decision::Respond(r) => r.status.to_string(),
    };
    const BATCH: u32 = 1_000;
    let mut per: Vec<f64> = Vec::with_capacity(400);
    for _ in 0..400 {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(t.route(black_box(&req)));
        }
        per.push(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    per.sort_by(f64::total_cmp);
    (
        per[per.len() / 2],
        per[per.len() * 9 / 10],
        per[per.len() * 99 / 100],
        outcome,
    )
}

fn main() -> Result<()> {
    let a = args()?;
    let mut out = String::new();
    let _ = writeln!(out, "# Ingress route table: compile and lookup\n");
    let _ = writeln!(
        out,
        "Generated by `bash bench/ingress-compile/run.sh` (release build, in-process, one thread).\n\
         Machine: shared, 2 cores (other jobs running), so figures are indicative; lookups are\n\
         timed in batches of 1,000 and reported as ns per lookup (p50 / p90 / p99 of 400 batches;\n\
         a p99 batch is one the scheduler interrupted, not a slow lookup).\n"
    );
    let mut tables = Vec::new();
    for n in [a.small, a.ingresses] {
        let (cluster, load_time) = load(n)?;
        let mut times = Vec::new();
        let mut table = None;
        let mut findings = 0;
        for _ in 0..a.runs.max(1) {
            let start = Instant::now();
            let (t, f) = compile(&cluster, &ControllerConfig::default());
            times.push(start.elapsed());
            findings = f.len();
            table = Some(t);
        }
        times.sort();
        let t = table.context("no run")?;
        let s = t.stats();
        let _ = writeln!(
            out,
            "## {n} Ingresses\n\n- cluster load (YAML, validate, derive; not part of compile): {:.0} ms\n\
             - compile: median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs (target: < 1000 ms at 10,000)\n\
             - table: {} Ingresses served, {} routes, {} precise hosts, {} wildcard hosts, {} findings\n",
            load_time.as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            times.len(),
            s.ingresses,
            s.routes,
            s.hosts,
            s.wildcard_hosts,
            findings
        );
        println!("{n} ingresses: compile median {:?}", times[times.len() / 2]);
        tables.push((n, t));
    }
    let _ = writeln!(
        out,
        "## Lookup: ns per `route()` call\n\n| request | {} Ingresses p50 / p90 / p99 | {} Ingresses p50 / p90 / p99 | ratio of p50 | answer |\n|---|---|---|---|---|",
        a.small, a.ingresses
    );
    let (small_n, small) = &tables[0];
    let (big_n, big) = &tables[1];
    let small_probes = probes(*small_n);
    let big_probes = probes(*big_n);
    for (sp, bp) in small_probes.iter().zip(&big_probes) {
        let (s50, s90, s99, _) = lookup(small, &sp.1, &sp.2, sp.3);
        let (b50, b90, b99, answer) = lookup(big, &bp.1, &bp.2, bp.3);
        let _ = writeln!(
            out,
            "| {} | {s50:.0} / {s90:.0} / {s99:.0} | {b50:.0} / {b90:.0} / {b99:.0} | {:.2} | {answer} |",
            sp.0,
            b50 / s50
        );
        println!("{}: {s50:.0} ns vs {b50:.0} ns", sp.0);
    }
    let _ = writeln!(
        out,
        "\nRatios near 1.0 mean lookup time does not depend on the number of Ingresses: hosts and\n\
         Exact paths are hash lookups, Prefix paths one hash lookup per path element, regex paths\n\
         only those of the request's host. Each lookup also allocates the upstream\n\
         path-and-query string (the one allocation `route()` makes for a proxied request)."
    );
    match &a.results {
        Some(p) => std::fs::write(p, &out).with_context(|| format!("writing {p}"))?,
        None => print!("{out}"),
    }
    Ok(())
}
