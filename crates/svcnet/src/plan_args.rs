//! Address-plan flags shared by every command that derives a cluster.

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use svcnet_model::AddressPlan;

/// Where addresses come from. Defaults keep everything on loopback.
#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    /// Number of nodes when the manifests declare no Node objects.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub nodes: u32,
    /// Service CIDR(s), one per IP family, comma-separated (`127.96.0.0/12,fd00:96::/112`).
    #[arg(long, default_value = "127.96.0.0/12", value_name = "CIDR[,CIDR]")]
    pub service_cidr: String,
    /// Pod CIDR(s), one per IP family; each node gets a /24 (IPv4) or /64 (IPv6) of it.
    #[arg(long, default_value = "127.244.0.0/16", value_name = "CIDR[,CIDR]")]
    pub pod_cidr: String,
    /// Node addresses: node N gets host N of this network.
    #[arg(long, default_value = "127.0.1.0/24", value_name = "CIDR")]
    pub node_cidr: IpNet,
    /// Pool of LoadBalancer ingress IPs.
    #[arg(long, default_value = "127.240.0.0/16", value_name = "CIDR")]
    pub load_balancer_pool: IpNet,
    /// NodePort range.
    #[arg(long, default_value = "30000-32767", value_name = "FROM-TO")]
    pub node_port_range: String,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
}

fn cidrs(flag: &str, s: &str) -> Result<Vec<IpNet>> {
    s.split(',')
        .map(|c| {
            c.trim()
                .parse::<IpNet>()
                .with_context(|| format!("--{flag}: {c:?} is not a CIDR"))
        })
        .collect()
}

impl PlanArgs {
    /// The address plan these flags describe.
    pub fn plan(&self) -> Result<AddressPlan> {
        let (from, to) = self
            .node_port_range
            .split_once('-')
            .context("--node-port-range: expected FROM-TO, like 30000-32767")?;
        let from: u16 = from
            .trim()
            .parse()
            .context("--node-port-range: bad start")?;
        let to: u16 = to.trim().parse().context("--node-port-range: bad end")?;
        if from > to {
            bail!("--node-port-range: {from} is above {to}");
        }
        let plan = AddressPlan {
            service_cidrs: cidrs("service-cidr", &self.service_cidr)?,
            pod_cidrs: cidrs("pod-cidr", &self.pod_cidr)?,
            node_cidr: self.node_cidr,
            load_balancer_pool: self.load_balancer_pool,
            node_port_range: from..=to,
            nodes: self.nodes,
            cluster_domain: self.cluster_domain.trim_end_matches('.').to_string(),
            ..AddressPlan::default()
        };
        plan.check()?;
        Ok(plan)
    }
}
