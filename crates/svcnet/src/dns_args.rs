//! DNS flags shared by `svcnet up` and `svcnet dns`.

use anyhow::{Context, Result};
use svcnet_dns::{DnsConfig, PodsMode, Upstream};

/// How the cluster DNS answers.
#[derive(clap::Args, Debug, Clone)]
pub struct DnsArgs {
    /// TTL of cluster records (and the SOA minimum of negative answers).
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub dns_ttl: u32,
    /// Pod A records (`a-b-c-d.NS.pod.DOMAIN`): disabled, insecure (any IP in an existing
    /// namespace) or verified (only IPs of pods in that namespace).
    #[arg(long, default_value = "verified", value_name = "MODE")]
    pub dns_pods: String,
    /// Upstream servers for names outside the cluster (IP[:PORT], repeatable), or `none`
    /// to answer only for the cluster (REFUSED outside it). Default: the host's resolv.conf.
    #[arg(long, value_name = "ADDR|none", num_args = 1..)]
    pub dns_upstream: Vec<String>,
}

impl DnsArgs {
    /// The DNS configuration these flags describe.
    pub fn config(&self) -> Result<DnsConfig> {
        let pods: PodsMode = self
            .dns_pods
            .parse()
            .map_err(|e| anyhow::anyhow!("--dns-pods: {e}"))?;
        let upstream = if self.dns_upstream.is_empty() {
            Upstream::from_host().unwrap_or(Upstream::None)
        } else {
            Upstream::parse_list(&self.dns_upstream).context("--dns-upstream")?
        };
        Ok(DnsConfig {
            ttl: self.dns_ttl,
            pods,
            upstream,
            ..DnsConfig::default()
        })
    }
}
