//! The reachability matrix: every ordered pair of a set of pods on one port.

use svcnet_model::types::{ObjectKey, Protocol};

use crate::index::{PolicyIndex, PortMatch};
use crate::podset::PodSet;
use crate::verdict::Direction;

/// Who can reach whom on one port: rows are sources, columns destinations, in the order of
/// [`Matrix::pods`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    /// The destination port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// The pods, as rows (sources) and columns (destinations).
    pub pods: Vec<ObjectKey>,
    /// Row-major bits: `n` rows of `words` u64 each.
    bits: Vec<u64>,
    words: usize,
}

impl Matrix {
    /// Number of pods (rows and columns).
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// True when the matrix has no pod.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// May pod `from` (a row) reach pod `to` (a column)? False for positions out of range.
    pub fn allowed(&self, from: usize, to: usize) -> bool {
        if from >= self.len() || to >= self.len() {
            return false;
        }
        self.bits[from * self.words + to / 64] & (1 << (to % 64)) != 0
    }

    /// The matrix as rows of booleans (rows = sources).
    pub fn rows(&self) -> Vec<Vec<bool>> {
        (0..self.len())
            .map(|i| (0..self.len()).map(|j| self.allowed(i, j)).collect())
            .collect()
    }

    /// Number of allowed cells.
    pub fn allowed_count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// Per rule, for one port and protocol: which destination pods the rule's ports admit.
enum RulePorts {
    All,
    None,
    Some(PodSet),
}

impl PolicyIndex {
    /// The reachability matrix of `pods` (rows = sources, columns = destinations) on
    /// `port`/`protocol`. Pods the index does not have are left out. Equal, cell by cell, to
    /// [`PolicyIndex::verdict`] on [`crate::Endpoint::Pod`]s; the diagonal is allowed (a pod
    /// may reach itself), and so are rows and columns of host-network pods (node traffic).
    pub fn matrix(&self, pods: &[ObjectKey], port: u16, protocol: Protocol) -> Matrix {
        let ids: Vec<usize> = pods
            .iter()
            .filter_map(|k| self.pod_id(k))
            .map(|id| id.index())
            .collect();
        let n = self.pods.len();
        let m = ids.len();
        let words = m.div_ceil(64);
        let keys: Vec<ObjectKey> = ids.iter().map(|&i| self.pods[i].key.clone()).collect();
        let mut bits = vec![0u64; m * words];
        if self.policies.is_empty() {
            for i in 0..m {
                for j in 0..m {
                    bits[i * words + j / 64] |= 1 << (j % 64);
                }
            }
            return Matrix {
                port,
                protocol,
                pods: keys,
                bits,
                words,
            };
        }

        // Which destinations each rule's ports admit on this port.
        let rule_ports: Vec<RulePorts> = self
            .rules
            .iter()
            .map(|r| {
                if r.all_ports {
                    return RulePorts::All;
                }
                let mut numeric = false;
                let mut named: Vec<u32> = Vec::new();
                for p in r.ports.iter().filter(|p| p.protocol == protocol) {
                    match p.matches {
                        PortMatch::Any => numeric = true,
                        PortMatch::Range(lo, hi) => numeric |= lo <= port && port <= hi,
                        PortMatch::Named(name) => named.push(name),
                    }
                }
                if numeric {
                    RulePorts::All
                } else if named.is_empty() {
                    RulePorts::None
                } else {
                    let mut set = PodSet::empty(n);
                    for (i, pod) in self.pods.iter().enumerate() {
                        if named.iter().any(|&nm| pod.resolves(nm, port, protocol)) {
                            set.insert(i);
                        }
                    }
                    RulePorts::Some(set)
                }
            })
            .collect();
        let full = PodSet::full(n);

        // Allowed peers per row pod (egress: destinations) and per column pod (ingress:
        // sources); None = not isolated.
        let allowed_peers = |i: usize, dir: Direction| -> Option<PodSet> {
            let p = &self.pods[i];
            if p.isolating(dir).is_empty() {
                return None;
            }
            let mut set = PodSet::empty(n);
            for &r in p.rules(dir) {
                let rule = &self.rules[r as usize];
                let ports = &rule_ports[r as usize];
                // Ingress: the destination is `i` itself.
                let port_mask = match (ports, dir) {
                    (RulePorts::None, _) => continue,
                    (RulePorts::Some(s), Direction::Ingress) if !s.contains(i) => continue,
                    (RulePorts::Some(s), Direction::Egress) => Some(s),
                    _ => None,
                };
                let peers = if rule.all_peers { &full } else { &rule.pods };
                match port_mask {
                    None => {
                        set.union_with(peers);
                        if !rule.all_peers {
                            set.union_with(&rule.block_pods);
                        }
                    }
                    Some(mask) => {
                        set.union_with_and(peers, mask);
                        if !rule.all_peers {
                            set.union_with_and(&rule.block_pods, mask);
                        }
                    }
                }
            }
            Some(set)
        };
        let egress: Vec<Option<PodSet>> = ids
            .iter()
            .map(|&i| allowed_peers(i, Direction::Egress))
            .collect();
        let ingress: Vec<Option<PodSet>> = ids
            .iter()
            .map(|&j| allowed_peers(j, Direction::Ingress))
            .collect();
        for (a, &i) in ids.iter().enumerate() {
            let row = &mut bits[a * words..(a + 1) * words];
            for (b, &j) in ids.iter().enumerate() {
                let ok = i == j
                    || self.pods[i].host_network
                    || self.pods[j].host_network
                    || (egress[a].as_ref().is_none_or(|s| s.contains(j))
                        && ingress[b].as_ref().is_none_or(|s| s.contains(i)));
                if ok {
                    row[b / 64] |= 1 << (b % 64);
                }
            }
        }
        Matrix {
            port,
            protocol,
            pods: keys,
            bits,
            words,
        }
    }
}
