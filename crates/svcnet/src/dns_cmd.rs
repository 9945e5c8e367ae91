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
