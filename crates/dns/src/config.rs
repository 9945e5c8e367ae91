//! What the zone and the server are built with (`svcnet up --dns-*` flags).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Pod A/AAAA records `<a-b-c-d>.<ns>.pod.<zone>` (`--dns-pods`), as CoreDNS's `pods`
/// option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PodsMode {
    /// No pod records: every name under `pod.<zone>` is NXDOMAIN.
    Disabled,
    /// Any IP written as a name in an existing namespace answers with itself
    /// (kube-dns compatible, no lookup).
    Insecure,
    /// Only the IPs of pods that exist in that namespace.
    #[default]
    Verified,
}

impl PodsMode {
    /// The flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PodsMode::Disabled => "disabled",
            PodsMode::Insecure => "insecure",
            PodsMode::Verified => "verified",
        }
    }
}

impl fmt::Display for PodsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PodsMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disabled" => Ok(PodsMode::Disabled),
            "insecure" => Ok(PodsMode::Insecure),
            "verified" => Ok(PodsMode::Verified),
            other => Err(ConfigError::PodsMode(other.to_string())),
        }
    }
}

/// Where names outside the owned zones go (`--dns-upstream`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// Hermetic: svcnet is authoritative for the whole `in-addr.arpa` and `ip6.arpa`
    /// trees and answers REFUSED for every other name outside the cluster zone.
    None,
    /// Forward to these servers (tried in order).
    Servers(Vec<SocketAddr>),
}

impl Upstream {
    /// True for [`Upstream::None`] (or an empty server list).
    pub fn is_none(&self) -> bool {
        match self {
            Upstream::None => true,
            Upstream::Servers(s) => s.is_empty(),
        }
    }

    /// The host's resolvers: the `nameserver` lines of `resolv_conf` (the text of
    /// `/etc/resolv.conf`), port 53. Loopback resolvers are kept; the caller removes
    /// svcnet's own address if it could loop.
    pub fn from_resolv_conf(resolv_conf: &str) -> Upstream {
        let servers: Vec<SocketAddr> = resolv_conf
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some("nameserver")).then(|| words.next())?
            })
            .filter_map(|ip| {
                // A scoped IPv6 address (`fe80::1%eth0`) cannot be a SocketAddr.
                ip.parse::<std::net::IpAddr>().ok()
            })
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if servers.is_empty() {
            Upstream::None
        } else {
            Upstream::Servers(servers)
        }
    }

    /// The host's resolvers, from `/etc/resolv.conf` (the `--dns-upstream` default).
    pub fn from_host() -> std::io::Result<Upstream> {
        Ok(Upstream::from_resolv_conf(&std::fs::read_to_string(
            "/etc/resolv.conf",
        )?))
    }

    /// Parses `--dns-upstream` values: `none`, or addresses (`1.2.3.4`, `1.2.3.4:5353`,
    /// `[::1]:53`).
    pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Upstream, ConfigError> {
        if values.len() == 1 && values[0].as_ref() == "none" {
            return Ok(Upstream::None);
        }
        let mut out = Vec::new();
        for v in values {
            let v = v.as_ref();
            if let Ok(sa) = v.parse::<SocketAddr>() {
                out.push(sa);
            } else if let Ok(ip) = v.parse::<std::net::IpAddr>() {
                out.push(SocketAddr::new(ip, 53));
            } else {
                return Err(ConfigError::Upstream(v.to_string()));
            }
        }
        Ok(Upstream::Servers(out))
    }
}

/// Settings of a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// TTL of every record the zone serves (`--dns-ttl`, default 5), also the SOA
    /// minimum, so negative answers are cached no longer than positive ones.
    pub ttl: u32,
    /// Pod records (`--dns-pods`, default verified).
    pub pods: PodsMode,
    /// Whether names outside the owned zones are forwarded. The zone only needs to know
    /// whether there is an upstream; the server holds the addresses.
    pub upstream: Upstream,
    /// The largest UDP response svcnet sends, whatever the client's EDNS buffer size
    /// (default 1232, the DNS flag day 2020 value that avoids IP fragmentation).
    pub max_udp_payload: u16,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            ttl: 5,
            pods: PodsMode::Verified,
            upstream: Upstream::None,
            max_udp_payload: 1232,
        }
    }
}

/// A bad DNS setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--dns-pods` value.
    #[error("invalid --dns-pods value {0:?}: expected disabled, insecure or verified")]
    PodsMode(String),
    /// `--dns-upstream` value.
    #[error("invalid --dns-upstream value {0:?}: expected none or IP[:PORT]")]
    Upstream(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let u = Upstream::from_resolv_conf(
            "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1\noptions ndots:5\n",
        );
        assert_eq!(
            u,
            Upstream::Servers(vec![
                "10.0.0.2:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ])
        );
        assert_eq!(Upstream::from_resolv_conf(""), Upstream::None);
    }

    #[test]
    fn upstream_flags() {
        assert_eq!(Upstream::parse_list(&["none"]).unwrap(), Upstream::None);
        assert_eq!(
            Upstream::parse_list(&["127.0.0.1:5353", "::1"]).unwrap(),
            Upstream::Servers(vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ])
        );
        assert!(Upstream::parse_list(&["dns.google"]).is_err());
        assert_eq!("insecure".parse::<PodsMode>().unwrap(), PodsMode::Insecure);
    }
}
