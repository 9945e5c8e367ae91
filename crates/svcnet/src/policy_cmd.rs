//! `svcnet policy`: NetworkPolicy analysis (matrix, explain), answered by the same
//! `svcnet_policy::PolicyIndex` that `svcnet up` enforces with.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use svcnet_model::types::{ObjectKey, Protocol, Service};
use svcnet_model::{Cluster, Severity};
use svcnet_policy::{Endpoint, PolicyIndex, Verdict, render};

use crate::Sources;
use crate::plan_args::PlanArgs;

/// NetworkPolicy analysis commands.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Who can reach whom: the reachability matrix of every pair of pods on one port, in the
    /// Kubernetes e2e truth-table layout (rows: from, columns: to; `.` allowed, `X` blocked).
    Matrix(MatrixArgs),
    /// Why a connection is allowed or denied: the policies that isolate each end, the rule
    /// and peer that allowed it, or the nearest miss. Exit 0 when allowed (for a Service:
    /// toward at least one endpoint), 1 when denied.
    Explain(ExplainArgs),
}

/// Arguments of `svcnet policy matrix`.
#[derive(clap::Args, Debug)]
pub struct MatrixArgs {
    #[command(flatten)]
    sources: Sources,
    /// Destination port.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Protocol: TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_name = "PROTOCOL")]
    protocol: String,
    /// Only the pods of this namespace (default: every namespace).
    #[arg(
        short = 'n',
        long,
        value_name = "NS",
        conflicts_with = "all_namespaces"
    )]
    namespace: Option<String>,
    /// The pods of every namespace (the default).
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format: text, json, md or html.
    #[arg(short = 'o', long, default_value = "text", value_name = "FORMAT")]
    output: String,
    #[command(flatten)]
    plan: PlanArgs,
}

/// Arguments of `svcnet policy explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The source: a pod as NAMESPACE/NAME (or NAME in `default`), or an IP address.
    #[arg(long, value_name = "NS/POD|IP")]
    from: String,
    /// The destination: a pod or a Service as NAMESPACE/NAME, or an IP address (a Service
    /// IP is followed to the Service's endpoints, as kube-proxy's DNAT does).
    #[arg(long, value_name = "NS/POD|NS/SERVICE|IP")]
    to: String,
    /// Destination port (for a Service: the Service port; the endpoints are judged on the
    /// target port).
    #[arg(long)]
    port: u16,
    /// Protocol: TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_name = "PROTOCOL")]
    protocol: String,
    /// Output format: text or json.
    #[arg(short = 'o', long, default_value = "text", value_name = "FORMAT")]
    output: String,
    #[command(flatten)]
    sources: Sources,
    #[command(flatten)]
    plan: PlanArgs,
}

/// Runs a `svcnet policy` command.
pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Matrix(args) => matrix(args),
        PolicyCommand::Explain(args) => explain(args),
    }
}

fn protocol(s: &str) -> Result<Protocol> {
    Protocol::parse(&s.to_ascii_uppercase())
        .with_context(|| format!("--protocol: {s:?} is not TCP, UDP or SCTP"))
}

/// Loads the manifests, printing errors and warnings as `svcnet get` does.
fn load(sources: &Sources, plan: &PlanArgs) -> Result<Option<Cluster>> {
    let plan = plan.plan()?;
    let (cluster, diags) = Cluster::load(&sources.files, &plan, None);
    for d in diags.0.iter().filter(|d| d.severity != Severity::Notice) {
        if d.is_error() {
            eprintln!("{d}");
        } else {
            eprintln!("Warning: {d}");
        }
    }
    if cluster.is_none() {
        eprintln!(
            "error: {} error(s) in the manifests; nothing was loaded",
            diags.count(Severity::Error)
        );
    }
    Ok(cluster)
}

fn matrix(args: MatrixArgs) -> Result<ExitCode> {
    let protocol = protocol(&args.protocol)?;
    if !matches!(args.output.as_str(), "text" | "json" | "md" | "html") {
        bail!(
            "--output must be text, json, md or html, not {:?}",
            args.output
        );
    }
    let Some(cluster) = load(&args.sources, &args.plan)? else {
        return Ok(ExitCode::from(2));
    };
    let index = PolicyIndex::compile(&cluster);
    let pods: Vec<ObjectKey> = cluster
        .pods
        .keys()
        .filter(|k| {
            args.all_namespaces || args.namespace.as_ref().is_none_or(|ns| k.namespace == *ns)
        })
        .cloned()
        .collect();
    if pods.is_empty() {
        match &args.namespace {
            Some(ns) => eprintln!("No pods found in {ns} namespace."),
            None => eprintln!("No pods found."),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let m = index.matrix(&pods, args.port, protocol);
    match args.output.as_str() {
        "json" => println!("{}", render::json(&m)),
        "md" => print!("{}", render::markdown(&m)),
        "html" => print!("{}", render::html(&index, &m)),
        _ => {
            print!("{}", render::text(&m));
            println!();
            println!("{}", render::summary(&m));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn object_key(s: &str) -> ObjectKey {
    match s.split_once('/') {
        Some((ns, name)) => ObjectKey::new(ns, name),
        None => ObjectKey::new("default", s),
    }
}

/// One end as given on the command line.
enum Target<'a> {
    Endpoint(Endpoint),
    Service(&'a Service),
}

fn target<'a>(cluster: &'a Cluster, index: &PolicyIndex, s: &str) -> Result<Target<'a>> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        if let Some(svc) = cluster
            .services
            .values()
            .find(|svc| svc.cluster_ip_list().contains(&ip))
        {
            return Ok(Target::Service(svc));
        }
        return Ok(Target::Endpoint(index.endpoint_of(ip)));
    }
    let key = object_key(s);
    if let Some(e) = index.pod_endpoint(&key) {
        return Ok(Target::Endpoint(e));
    }
    if let Some(svc) = cluster.services.get(&key) {
        return Ok(Target::Service(svc));
    }
    bail!("no pod or Service {key} in the manifests (give NAMESPACE/NAME or an IP address)")
}

fn describe(cluster: &Cluster, index: &PolicyIndex, e: Endpoint) -> String {
    match e {
        Endpoint::Pod(id) => match index.pod_key(id) {
            Some(k) => {
                let ip = cluster
                    .pods
                    .get(k)
                    .and_then(|p| p.ips.first())
                    .map(|ip| format!(" ({ip})"))
                    .unwrap_or_else(|| " (no IP)".to_string());
                let host = if cluster.pods.get(k).is_some_and(|p| p.host_network) {
                    ", host network"
                } else {
                    ""
                };
                format!("pod {k}{ip}{host}")
            }
            None => "unknown pod".to_string(),
        },
        Endpoint::Node(ip) => format!("node/host {ip}"),
        Endpoint::External(ip) => format!("external {ip}"),
    }
}

fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let protocol = protocol(&args.protocol)?;
    if !matches!(args.output.as_str(), "text" | "json") {
        bail!("--output must be text or json, not {:?}", args.output);
    }
    let Some(cluster) = load(&args.sources, &args.plan)? else {
        return Ok(ExitCode::from(2));
    };
    let index = PolicyIndex::compile(&cluster);
    let from = match target(&cluster, &index, &args.from)? {
        Target::Endpoint(e) => e,
        Target::Service(svc) => bail!(
            "--from {}: a Service does not open connections; give one of its pods",
            svc.meta.key()
        ),
    };
    // (destination, port on it, heading)
    let mut checks: Vec<(Endpoint, u16)> = Vec::new();
    let mut heading = None;
    match target(&cluster, &index, &args.to)? {
        Target::Endpoint(e) => checks.push((e, args.port)),
        Target::Service(svc) => {
            let Some(sp) = svc
                .ports
                .iter()
                .find(|p| p.port == args.port && p.protocol == protocol)
            else {
                bail!(
                    "Service {} has no port {}/{protocol} (ports: {})",
                    svc.meta.key(),
                    args.port,
                    svc.ports
                        .iter()
                        .map(|p| format!("{}/{}", p.port, p.protocol))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            let name = sp.name.clone().unwrap_or_default();
            let key = ObjectKey::new(svc.meta.namespace.clone(), svc.meta.name.clone());
            for slice in cluster.slices_of(&key) {
                let Some(port) = slice
                    .ports
                    .iter()
                    .find(|p| p.name == name && p.protocol == protocol)
                    .and_then(|p| p.port)
                else {
                    continue;
                };
                for ep in slice.endpoints.iter().filter(|e| e.ready || e.serving) {
                    let target = match ep.target_ref.as_ref().and_then(|k| index.pod_endpoint(k)) {
                        Some(e) => Some(e),
                        None => ep
                            .addresses
                            .first()
                            .and_then(|a| a.parse::<IpAddr>().ok())
                            .map(|ip| index.endpoint_of(ip)),
                    };
                    if let Some(t) = target {
                        checks.push((t, port));
                    }
                }
            }
            heading = Some(format!(
                "Service {} port {}/{protocol} → {} endpoint{} (judged after DNAT, on the target port)",
                svc.meta.key(),
                args.port,
                checks.len(),
                if checks.len() == 1 { "" } else { "s" }
            ));
        }
    }
    let verdicts: Vec<(Endpoint, u16, Verdict)> = checks
        .into_iter()
        .map(|(to, port)| (to, port, index.verdict(from, to, port, protocol)))
        .collect();
    let any_allowed = verdicts.iter().any(|(_, _, v)| v.allowed);
    if args.output == "json" {
        let doc: Vec<serde_json::Value> = verdicts
            .iter()
            .map(|(to, port, v)| {
                serde_json::json!({
                    "from": describe(&cluster, &index, from),
                    "to": describe(&cluster, &index, *to),
                    "port": port,
                    "protocol": protocol.as_str(),
                    "verdict": v,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if let Some(h) = heading {
            println!("{h}");
            if verdicts.is_empty() {
                println!(
                    "  no ready endpoint: the connection is refused before any policy applies"
                );
            }
        }
        if index.is_empty() {
            println!("no NetworkPolicy in the manifests: every connection is allowed");
        }
        for (to, port, v) in &verdicts {
            println!(
                "{} → {} port {port}/{protocol}: {}",
                describe(&cluster, &index, from),
                describe(&cluster, &index, *to),
                if v.allowed { "ALLOWED" } else { "DENIED" }
            );
            println!("  egress:  {}", v.egress);
            println!("  ingress: {}", v.ingress);
        }
    }
    Ok(if any_allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
