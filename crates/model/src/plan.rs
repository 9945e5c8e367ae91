//! The address plan: where Service IPs, pod IPs, node addresses, load-balancer IPs and
//! NodePorts come from. The defaults put everything on loopback, so the standalone runtime
//! needs no root.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;

use crate::types::IpFamily;

/// Address ranges and sizes. Every field can be set from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPlan {
    /// Service CIDRs, at most one per family; the first is the primary family.
    pub service_cidrs: Vec<IpNet>,
    /// Pod CIDRs, at most one per family; each node gets one subnet of each.
    pub pod_cidrs: Vec<IpNet>,
    /// Prefix length of a node's IPv4 pod subnet (default /24).
    pub node_mask_v4: u8,
    /// Prefix length of a node's IPv6 pod subnet (default /64).
    pub node_mask_v6: u8,
    /// Node addresses: node N (1-based, by name) gets host N of this network.
    pub node_cidr: IpNet,
    /// Pool of LoadBalancer ingress IPs.
    pub load_balancer_pool: IpNet,
    /// NodePort range.
    pub node_port_range: RangeInclusive<u16>,
    /// Number of default nodes when the manifests declare no Node.
    pub nodes: u32,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
}

impl Default for AddressPlan {
    fn default() -> Self {
        AddressPlan {
            service_cidrs: vec![net("127.96.0.0/12")],
            pod_cidrs: vec![net("127.244.0.0/16")],
            node_mask_v4: 24,
            node_mask_v6: 64,
            node_cidr: net("127.0.1.0/24"),
            load_balancer_pool: net("127.240.0.0/16"),
            node_port_range: 30000..=32767,
            nodes: 1,
            cluster_domain: "cluster.local".to_string(),
        }
    }
}

fn net(s: &str) -> IpNet {
    // The literals above are valid CIDRs; a failure here is a typo caught by every test.
    #[allow(clippy::expect_used)]
    s.parse().expect("built-in CIDR literal")
}

/// A problem with the plan itself (bad flags).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Two CIDRs of one family.
    #[error("{what}: at most one CIDR per IP family ({a} and {b} are both {family})")]
    SameFamily {
        /// Which flag.
        what: &'static str,
        /// First CIDR.
        a: IpNet,
        /// Second CIDR.
        b: IpNet,
        /// Their family.
        family: &'static str,
    },
    /// A range too small or otherwise unusable.
    #[error("{0}")]
    Invalid(String),
}

impl AddressPlan {
    /// Checks the plan for contradictions.
    pub fn check(&self) -> Result<(), PlanError> {
        for (what, list) in [
            ("--service-cidr", &self.service_cidrs),
            ("--pod-cidr", &self.pod_cidrs),
        ] {
            if list.is_empty() || list.len() > 2 {
                return Err(PlanError::Invalid(format!(
                    "{what}: give one CIDR, or two (one IPv4, one IPv6)"
                )));
            }
            if list.len() == 2 && family(&list[0]) == family(&list[1]) {
                return Err(PlanError::SameFamily {
                    what,
                    a: list[0],
                    b: list[1],
                    family: family(&list[0]).as_str(),
                });
            }
        }
        for c in &self.service_cidrs {
            if c.max_prefix_len() - c.prefix_len() < 4 {
                return Err(PlanError::Invalid(format!(
                    "--service-cidr {c}: too small (need at least 16 addresses)"
                )));
            }
        }
        for c in &self.pod_cidrs {
            let mask = self.node_mask(family(c));
            if mask < c.prefix_len() || mask > c.max_prefix_len() - 2 {
                return Err(PlanError::Invalid(format!(
                    "--pod-cidr {c}: node subnets of /{mask} must lie inside it"
                )));
            }
        }
        if self.node_port_range.is_empty() || *self.node_port_range.start() == 0 {
            return Err(PlanError::Invalid(
                "--node-port-range: must be a non-empty range of ports like 30000-32767".into(),
            ));
        }
        if self.nodes == 0 {
            return Err(PlanError::Invalid("--nodes: at least 1".into()));
        }
        let node_room = net_size(&self.node_cidr).saturating_sub(2);
        if u128::from(self.nodes) > node_room {
            return Err(PlanError::Invalid(format!(
                "--nodes {}: the node CIDR {} has room for {node_room} nodes",
                self.nodes, self.node_cidr
            )));
        }
        Ok(())
    }

    /// The node subnet prefix length for a family.
    pub fn node_mask(&self, f: IpFamily) -> u8 {
        match f {
            IpFamily::V4 => self.node_mask_v4,
            IpFamily::V6 => self.node_mask_v6,
        }
    }

    /// The Service CIDR of a family, if the cluster has that family.
    pub fn service_cidr(&self, f: IpFamily) -> Option<IpNet> {
        self.service_cidrs.iter().copied().find(|c| family(c) == f)
    }

    /// The pod CIDR of a family, if the cluster has that family.
    pub fn pod_cidr(&self, f: IpFamily) -> Option<IpNet> {
        self.pod_cidrs.iter().copied().find(|c| family(c) == f)
    }

    /// The primary IP family of Services.
    pub fn primary_family(&self) -> IpFamily {
        self.service_cidrs
            .first()
            .map(family)
            .unwrap_or(IpFamily::V4)
    }

    /// The address that `offset` denotes inside `net` (offset 0 = network address).
    pub fn nth(net: &IpNet, offset: u128) -> Option<IpAddr> {
        let size = net_size(net);
        if offset >= size {
            return None;
        }
        Some(match net {
            IpNet::V4(n) => {
                let base = u32::from(n.network()) as u128;
                IpAddr::V4(std::net::Ipv4Addr::from(u32::try_from(base + offset).ok()?))
            }
            IpNet::V6(n) => {
                let base = u128::from(n.network());
                IpAddr::V6(std::net::Ipv6Addr::from(base.checked_add(offset)?))
            }
        })
    }

    /// The `kubernetes.default` Service IP: the first host of the primary Service CIDR.
    pub fn kubernetes_service_ip(&self) -> Option<IpAddr> {
        Self::nth(self.service_cidrs.first()?, 1)
    }

    /// The `kube-system/kube-dns` Service IP: the tenth host of the primary Service CIDR.
    pub fn dns_service_ip(&self) -> Option<IpAddr> {
        Self::nth(self.service_cidrs.first()?, 10)
    }
}

/// Number of addresses in a network (saturating at u128::MAX for ::/0).
pub fn net_size(net: &IpNet) -> u128 {
    let bits = u32::from(net.max_prefix_len() - net.prefix_len());
    if bits >= 128 {
        u128::MAX
    } else {
        1u128 << bits
    }
}

/// The family of a network.
pub fn family(net: &IpNet) -> IpFamily {
    match net {
        IpNet::V4(_) => IpFamily::V4,
        IpNet::V6(_) => IpFamily::V6,
    }
}

impl fmt::Display for AddressPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[IpNet]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(
            f,
            "services {} · pods {} (/{} per node) · nodes {} · load balancers {} · node ports {}-{}",
            list(&self.service_cidrs),
            list(&self.pod_cidrs),
            self.node_mask_v4,
            self.node_cidr,
            self.load_balancer_pool,
            self.node_port_range.start(),
            self.node_port_range.end()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_consistent() {
        let p = AddressPlan::default();
        p.check().unwrap();
        assert_eq!(
            p.kubernetes_service_ip(),
            Some("127.96.0.1".parse().unwrap())
        );
        assert_eq!(p.dns_service_ip(), Some("127.96.0.10".parse().unwrap()));
        for c in p.service_cidrs.iter().chain(&p.pod_cidrs) {
            assert!(c.network().is_loopback());
        }
    }

    #[test]
    fn bad_plans_are_refused() {
        let p = AddressPlan {
            service_cidrs: vec![net("10.0.0.0/16"), net("10.1.0.0/16")],
            ..AddressPlan::default()
        };
        assert!(matches!(p.check(), Err(PlanError::SameFamily { .. })));
        let p = AddressPlan {
            pod_cidrs: vec![net("127.244.0.0/25")],
            ..AddressPlan::default()
        };
        assert!(p.check().is_err());
    }
}
