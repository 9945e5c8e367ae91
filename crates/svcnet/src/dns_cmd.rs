//! `svcnet dns zone`: the cluster's records as zone files.

use std::process::ExitCode;

use anyhow::Result;
use svcnet_dns::{DnsZone, ZoneId};
use svcnet_model::{Cluster, Severity};

use crate::Sources;
use crate::dns_args::DnsArgs;
use crate::plan_args::PlanArgs;

/// `svcnet dns ...`.
#[derive(clap::Subcommand, Debug)]
pub enum DnsCommand {
    /// Print the cluster's DNS records as zone files (the cluster domain, in-addr.arpa,
    /// ip6.arpa), as the DNS server of `svcnet up` would answer them.
    Zone {
        #[command(flatten)]
        sources: Sources,
        /// Only one zone: cluster, in-addr.arpa or ip6.arpa.
        #[arg(long, value_name = "ZONE")]
        zone: Option<String>,
        #[command(flatten)]
        dns: DnsArgs,
        #[command(flatten)]
        plan: PlanArgs,
    },
}

/// Runs `svcnet dns`.
pub fn run(cmd: DnsCommand) -> Result<ExitCode> {
    match cmd {
        DnsCommand::Zone {
            sources,
            zone,
            dns,
            plan,
        } => {
            let zone_id = match zone.as_deref() {
                None => None,
                Some("cluster") => Some(ZoneId::Cluster),
                Some("in-addr.arpa") | Some("in-addr") => Some(ZoneId::InAddrArpa),
                Some("ip6.arpa") | Some("ip6") => Some(ZoneId::Ip6Arpa),
                Some(other) => {
                    anyhow::bail!("--zone must be cluster, in-addr.arpa or ip6.arpa, not {other:?}")
                }
            };
            let plan = plan.plan()?;
            let mut config = dns.config()?;
            // A zone file never depends on upstreams.
            config.upstream = svcnet_dns::Upstream::None;
            let (cluster, diags) = Cluster::load(&sources.files, &plan, None);
            for d in diags.0.iter().filter(|d| d.severity == Severity::Error) {
                eprintln!("{d}");
            }
            let Some(cluster) = cluster else {
                return Ok(ExitCode::from(2));
            };
            print!("{}", DnsZone::build(&cluster, &config).zone_file(zone_id));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Arguments of `svcnet resolv-conf`.
#[derive(clap::Args, Debug)]
pub struct ResolvConfArgs {
    /// The pod, as NAMESPACE/NAME (or NAME in `default`).
    #[arg(value_name = "POD")]
    pod: String,
    #[command(flatten)]
    sources: Sources,
    /// The node's resolv.conf (kubelet's --resolv-conf): used by dnsPolicy Default and for
    /// the host's search domains.
    #[arg(long, default_value = "/etc/resolv.conf", value_name = "PATH")]
    node_resolv_conf: std::path::PathBuf,
    #[command(flatten)]
    plan: PlanArgs,
}

/// Arguments of `svcnet resolve`.
#[derive(clap::Args, Debug)]
pub struct ResolveArgs {
    /// The name, as a program in the pod would look it up (`user-api`, `api.example.com`).
    #[arg(value_name = "NAME")]
    name: String,
    /// The pod whose resolver to follow, as NAMESPACE/NAME.
    #[arg(long, value_name = "POD")]
    from: String,
    /// Query type.
    #[arg(long = "type", default_value = "A", value_name = "TYPE")]
    qtype: String,
    #[command(flatten)]
    sources: Sources,
    /// The node's resolv.conf (for dnsPolicy Default and the host's search domains).
    #[arg(long, default_value = "/etc/resolv.conf", value_name = "PATH")]
    node_resolv_conf: std::path::PathBuf,
    #[command(flatten)]
    dns: DnsArgs,
    #[command(flatten)]
    plan: PlanArgs,
}

fn load(sources: &Sources, plan: &PlanArgs) -> Result<Option<Cluster>> {
    let plan = plan.plan()?;
    let (cluster, diags) = Cluster::load(&sources.files, &plan, None);
    for d in diags.0.iter().filter(|d| d.severity == Severity::Error) {
        eprintln!("{d}");
    }
    Ok(cluster)
}

fn pod_key(s: &str) -> svcnet_model::types::ObjectKey {
    match s.split_once('/') {
        Some((ns, name)) => svcnet_model::types::ObjectKey::new(ns, name),
        None => svcnet_model::types::ObjectKey::new("default", s),
    }
}

fn pod_conf(
    cluster: &Cluster,
    pod: &str,
    node_resolv_conf: &std::path::Path,
) -> Result<svcnet_dns::resolv::ResolvConf> {
    use svcnet_dns::resolv::{ResolvConf, pod_resolv_conf};
    let key = pod_key(pod);
    let Some(p) = cluster.pods.get(&key) else {
        anyhow::bail!("pod {key} not found (svcnet get pods -A lists them)");
    };
    let node = std::fs::read_to_string(node_resolv_conf)
        .map(|t| ResolvConf::parse(&t))
        .unwrap_or_default();
    let dns = cluster
        .services
        .get(&svcnet_model::types::ObjectKey::new(
            "kube-system",
            "kube-dns",
        ))
        .map(|s| s.cluster_ip_list().to_vec())
        .unwrap_or_default();
    Ok(pod_resolv_conf(
        p,
        &dns,
        &cluster.plan.cluster_domain,
        &node,
    ))
}

/// Runs `svcnet resolv-conf`.
pub fn resolv_conf(args: ResolvConfArgs) -> Result<ExitCode> {
    let Some(cluster) = load(&args.sources, &args.plan)? else {
        return Ok(ExitCode::from(2));
    };
    print!("{}", pod_conf(&cluster, &args.pod, &args.node_resolv_conf)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs `svcnet resolve`: the pod's search-list expansion, each query and its answer.
pub fn resolve(args: ResolveArgs) -> Result<ExitCode> {
    let Some(cluster) = load(&args.sources, &args.plan)? else {
        return Ok(ExitCode::from(2));
    };
    let conf = pod_conf(&cluster, &args.from, &args.node_resolv_conf)?;
    let mut config = args.dns.config()?;
    config.upstream = svcnet_dns::Upstream::None;
    let zone = DnsZone::build(&cluster, &config);
    let tries = svcnet_dns::resolv::search_expansion(&args.name, &conf);
    println!(
        "{} resolves {:?} with ndots:{} and search [{}]: up to {} queries",
        args.from,
        args.name,
        conf.ndots(),
        conf.searches.join(" "),
        tries.len()
    );
    let domain = format!("{}.", cluster.plan.cluster_domain);
    let mut found = false;
    for (i, name) in tries.iter().enumerate() {
        let in_zone = name.ends_with(&format!(".{domain}")) || *name == domain;
        if !in_zone {
            println!(
                "{:>2}. {name} {}: outside {domain}: forwarded to the upstream servers (not queried by this command)",
                i + 1,
                args.qtype
            );
            continue;
        }
        let Some(l) = svcnet_dns::resolv::lookup(&zone, name, &args.qtype) else {
            anyhow::bail!("cannot build a query for {name} {}", args.qtype);
        };
        println!("{:>2}. {name} {} -> {}", i + 1, args.qtype, l.rcode);
        for a in &l.answers {
            println!("      {a}");
        }
        if l.rcode == "NOERROR" && !l.answers.is_empty() {
            println!("answer: {}", l.answers.join("; "));
            found = true;
            break;
        }
    }
    if !found {
        println!("no answer from the cluster zone");
    }
    Ok(if found {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
