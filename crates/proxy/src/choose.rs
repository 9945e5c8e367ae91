//! Endpoint choice: which endpoints may serve a client (readiness fallback, traffic
//! policies, source ranges), and which one does (session affinity, random choice, retries).
//! Pure: time and randomness are passed in.
//!
//! The order of the filters follows kube-proxy's `CategorizeEndpoints`: first the traffic
//! policy narrows the endpoints to a node, then readiness is applied to what is left
//! (ready endpoints, else those that are serving and terminating). A caller-supplied admission
//! check (NetworkPolicy, later) runs last, on the candidates: see [`candidates_admitted`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::table::{Backend, Frontend, FrontendKind, ServicePortKey};

/// The endpoints that may serve `client` on this frontend, before admission.
///
/// `client_node` is the node the client is on (its pod's node, or the node whose InternalIP
/// it is; see [`crate::ServiceTable::client_node`]); `None` is the host, outside every node.
///
/// - `loadBalancerSourceRanges` (LoadBalancer frontends): a client outside them gets nothing.
/// - `internalTrafficPolicy: Local` (ClusterIP frontends): only endpoints on the client's
///   node; the host counts as every node.
/// - `externalTrafficPolicy: Local` (other frontends): only endpoints on the node that
///   received the traffic. Traffic from a pod or a node is short-circuited to every
///   endpoint, as kube-proxy does for pod-originated and node-local traffic (its `KUBE-EXT`
///   chains); only clients outside the cluster (the host) see the Local policy.
/// - Readiness: ready endpoints; when none is ready, those that are `serving` and
///   `terminating` (kube-proxy's fallback, so connections drain gracefully); else none.
pub fn candidates<'a>(
    fe: &'a Frontend,
    client: IpAddr,
    client_node: Option<&str>,
) -> Vec<&'a Backend> {
    if !fe.source_ranges.is_empty() && !fe.source_ranges.iter().any(|r| r.contains(&client)) {
        return Vec::new();
    }
    let local: Option<&str> = match fe.kind {
        FrontendKind::ClusterIp if fe.internal_local => client_node,
        FrontendKind::ClusterIp => None,
        _ => match (&fe.traffic_local, client_node) {
            (Some(node), None) => Some(node.as_str()),
            _ => None,
        },
    };
    let on_node = |b: &&Backend| local.is_none_or(|n| b.node.as_deref() == Some(n));
    let ready: Vec<&Backend> = fe
        .endpoints
        .iter()
        .filter(on_node)
        .filter(|b| b.ready)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    fe.endpoints
        .iter()
        .filter(on_node)
        .filter(|b| b.serving && b.terminating)
        .collect()
}

/// [`candidates`], then a caller-supplied admission check on each (a NetworkPolicy verdict,
/// for instance). An endpoint the check refuses is never chosen.
pub fn candidates_admitted<'a>(
    fe: &'a Frontend,
    client: IpAddr,
    client_node: Option<&str>,
    admit: impl Fn(&Backend) -> bool,
) -> Vec<&'a Backend> {
    let mut c = candidates(fe, client, client_node);
    c.retain(|b| admit(b));
    c
}

/// Chooses an endpoint among the candidates, skipping those already tried: the sticky one
/// (session affinity) when it is still a candidate and untried, else one at random, as
/// kube-proxy's iptables and nftables modes do.
pub fn choose<'a, R: Rng + ?Sized>(
    candidates: &[&'a Backend],
    sticky: Option<SocketAddr>,
    tried: &[SocketAddr],
    rng: &mut R,
) -> Option<&'a Backend> {
    let open = |b: &&&'a Backend| !tried.contains(&b.addr);
    if let Some(s) = sticky
        && let Some(b) = candidates.iter().filter(open).find(|b| b.addr == s)
    {
        return Some(b);
    }
    let n = candidates.iter().filter(open).count();
    if n == 0 {
        return None;
    }
    let i = rng.random_range(0..n);
    candidates.iter().filter(open).nth(i).copied()
}

/// Session affinity state: per Service port and client IP, the endpoint it sticks to and
/// when it last used it. An entry lives `timeout` after its last use
/// (`sessionAffinityConfig.clientIP.timeoutSeconds`), as with kube-proxy's `recent` match:
/// each new connection (UDP: each new flow) refreshes it.
#[derive(Debug, Default)]
pub struct Affinity {
    entries: HashMap<ServicePortKey, HashMap<IpAddr, Sticky>>,
    last_sweep: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct Sticky {
    backend: SocketAddr,
    last_used: Instant,
    timeout: Duration,
}

impl Sticky {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_used) < self.timeout
    }
}

/// How often [`Affinity::record`] drops expired entries.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Affinity {
    /// The endpoint `client` sticks to on this Service port, unless expired.
    pub fn lookup(
        &self,
        port: &ServicePortKey,
        client: IpAddr,
        now: Instant,
    ) -> Option<SocketAddr> {
        self.entries
            .get(port)?
            .get(&client)
            .filter(|s| s.live(now))
            .map(|s| s.backend)
    }

    /// Records (or refreshes) that `client` uses `backend` on this Service port. Drops
    /// expired entries now and then, so the state stays bounded by the live clients.
    pub fn record(
        &mut self,
        port: &ServicePortKey,
        client: IpAddr,
        backend: SocketAddr,
        timeout: Duration,
        now: Instant,
    ) {
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY)
        {
            self.expire(now);
            self.last_sweep = Some(now);
        }
        let sticky = Sticky {
            backend,
            last_used: now,
            timeout,
        };
        match self.entries.get_mut(port) {
            Some(m) => {
                m.insert(client, sticky);
            }
            None => {
                self.entries
                    .insert(port.clone(), HashMap::from([(client, sticky)]));
            }
        }
    }

    /// Drops expired entries; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        self.entries.retain(|_, m| {
            let before = m.len();
            m.retain(|_, s| s.live(now));
            dropped += before - m.len();
            !m.is_empty()
        });
        dropped
    }

    /// Number of entries (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries.values().map(HashMap::len).sum()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use svcnet_model::types::{ObjectKey, Protocol};

    fn backend(addr: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Backend {
        Backend {
            addr: addr.parse().unwrap(),
            pod: None,
            node: Some(node.to_string()),
            ready,
            serving,
            terminating,
        }
    }

    fn frontend(kind: FrontendKind, endpoints: Vec<Backend>) -> Frontend {
        Frontend {
            listen: "127.96.0.50:80".parse().unwrap(),
            protocol: Protocol::Tcp,
            kind,
            service: ObjectKey::new("a", "s"),
            port_name: String::new(),
            port: 80,
            endpoints,
            affinity: None,
            traffic_local: None,
            internal_local: false,
            source_ranges: Vec::new(),
        }
    }

    fn addrs(c: &[&Backend]) -> Vec<String> {
        c.iter().map(|b| b.addr.to_string()).collect()
    }

    const HOST: &str = "127.0.0.1";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ready_endpoints_first() {
        let fe = frontend(
            FrontendKind::ClusterIp,
            vec![
                backend("127.244.0.1:80", "node-1", true, true, false),
                backend("127.244.0.2:80", "node-1", false, true, true),
                backend("127.244.0.3:80", "node-1", false, false, false),
            ],
        );
        assert_eq!(addrs(&candidates(&fe, ip(HOST), None)), ["127.244.0.1:80"]);
    }

    #[test]
    fn serving_terminating_when_none_is_ready() {
        let fe = frontend(
            FrontendKind::ClusterIp,
            vec![
                backend("127.244.0.2:80", "node-1", false, true, true),
                backend("127.244.0.3:80", "node-1", false, false, true),
                backend("127.244.0.4:80", "node-1", false, false, false),
                // Serving but not terminating: a not-ready pod, not a fallback.
                backend("127.244.0.5:80", "node-1", false, true, false),
            ],
        );
        assert_eq!(addrs(&candidates(&fe, ip(HOST), None)), ["127.244.0.2:80"]);
    }

    #[test]
    fn nothing_when_nothing_serves() {
        let fe = frontend(
            FrontendKind::ClusterIp,
            vec![backend("127.244.0.3:80", "node-1", false, false, true)],
        );
        assert!(candidates(&fe, ip(HOST), None).is_empty());
        let empty = frontend(FrontendKind::ClusterIp, Vec::new());
        assert!(candidates(&empty, ip(HOST), None).is_empty());
    }

    fn two_nodes() -> Vec<Backend> {
        vec![
            backend("127.244.0.1:80", "node-1", true, true, false),
            backend("127.244.1.1:80", "node-2", true, true, false),
            backend("127.244.1.2:80", "node-2", false, true, true),
        ]
    }

    #[test]
    fn internal_traffic_policy_local_keeps_the_clients_node() {
        let mut fe = frontend(FrontendKind::ClusterIp, two_nodes());
        fe.internal_local = true;
        let c = candidates(&fe, ip("127.244.1.9"), Some("node-2"));
        assert_eq!(addrs(&c), ["127.244.1.1:80"]);
        let c = candidates(&fe, ip("127.244.0.9"), Some("node-1"));
        assert_eq!(addrs(&c), ["127.244.0.1:80"]);
        // No endpoint on the client's node: nothing (no fallback to other nodes).
        assert!(candidates(&fe, ip("127.244.2.9"), Some("node-3")).is_empty());
        // The host counts as every node.
        assert_eq!(candidates(&fe, ip(HOST), None).len(), 2);
        // Cluster policy ignores the client's node.
        fe.internal_local = false;
        assert_eq!(candidates(&fe, ip("127.244.2.9"), Some("node-3")).len(), 2);
    }

    #[test]
    fn readiness_fallback_applies_within_the_local_node() {
        let mut fe = frontend(
            FrontendKind::ClusterIp,
            vec![
                backend("127.244.0.1:80", "node-1", true, true, false),
                backend("127.244.1.2:80", "node-2", false, true, true),
            ],
        );
        fe.internal_local = true;
        let c = candidates(&fe, ip("127.244.1.9"), Some("node-2"));
        assert_eq!(addrs(&c), ["127.244.1.2:80"]);
    }

    #[test]
    fn external_traffic_policy_local_keeps_the_receiving_node() {
        let mut fe = frontend(
            FrontendKind::NodePort {
                node: "node-2".into(),
            },
            two_nodes(),
        );
        fe.traffic_local = Some("node-2".into());
        // From outside the cluster (the host): only node-2's endpoints.
        assert_eq!(addrs(&candidates(&fe, ip(HOST), None)), ["127.244.1.1:80"]);
        // From a pod or a node: short-circuited to every endpoint, as kube-proxy does.
        assert_eq!(candidates(&fe, ip("127.244.0.9"), Some("node-1")).len(), 2);
        // No local endpoint: nothing.
        fe.traffic_local = Some("node-3".into());
        assert!(candidates(&fe, ip(HOST), None).is_empty());
        // internalTrafficPolicy does not apply to NodePorts.
        fe.traffic_local = None;
        fe.internal_local = true;
        assert_eq!(candidates(&fe, ip("127.244.0.9"), Some("node-1")).len(), 2);
    }

    #[test]
    fn load_balancer_source_ranges() {
        let mut fe = frontend(FrontendKind::LoadBalancer, two_nodes());
        fe.source_ranges = vec!["127.1.0.0/16".parse().unwrap()];
        assert_eq!(candidates(&fe, ip("127.1.2.3"), None).len(), 2);
        assert!(candidates(&fe, ip("127.2.0.1"), None).is_empty());
    }

    #[test]
    fn admission_filters_candidates() {
        let fe = frontend(FrontendKind::ClusterIp, two_nodes());
        let c = candidates_admitted(&fe, ip(HOST), None, |b| b.node.as_deref() == Some("node-2"));
        assert_eq!(addrs(&c), ["127.244.1.1:80"]);
    }

    #[test]
    fn choose_spreads_and_skips_tried() {
        let fe = frontend(
            FrontendKind::ClusterIp,
            (1..=3)
                .map(|i| backend(&format!("127.244.0.{i}:80"), "node-1", true, true, false))
                .collect(),
        );
        let c = candidates(&fe, ip(HOST), None);
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..300 {
            let b = choose(&c, None, &[], &mut rng).unwrap();
            *seen.entry(b.addr).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3);
        assert!(seen.values().all(|n| *n > 50), "{seen:?}");

        let tried = [c[0].addr, c[2].addr];
        for _ in 0..20 {
            assert_eq!(choose(&c, None, &tried, &mut rng).unwrap().addr, c[1].addr);
        }
        let all: Vec<SocketAddr> = c.iter().map(|b| b.addr).collect();
        assert!(choose(&c, None, &all, &mut rng).is_none());
        assert!(choose(&[], None, &[], &mut rng).is_none());
    }

    #[test]
    fn choose_honours_a_sticky_candidate_unless_tried_or_gone() {
        let fe = frontend(FrontendKind::ClusterIp, two_nodes());
        let c = candidates(&fe, ip(HOST), None);
        let mut rng = StdRng::seed_from_u64(1);
        let sticky = c[1].addr;
        for _ in 0..20 {
            assert_eq!(
                choose(&c, Some(sticky), &[], &mut rng).unwrap().addr,
                sticky
            );
        }
        assert_eq!(
            choose(&c, Some(sticky), &[sticky], &mut rng).unwrap().addr,
            c[0].addr
        );
        // A sticky endpoint that is no longer a candidate (not ready) is ignored.
        let gone: SocketAddr = "127.244.1.2:80".parse().unwrap();
        assert_ne!(choose(&c, Some(gone), &[], &mut rng).unwrap().addr, gone);
    }

    fn port() -> ServicePortKey {
        ServicePortKey {
            service: ObjectKey::new("a", "s"),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn affinity_sticks_refreshes_and_expires() {
        let mut a = Affinity::default();
        let t0 = Instant::now();
        let client = ip("127.1.1.1");
        let b1: SocketAddr = "127.244.0.1:80".parse().unwrap();
        let timeout = Duration::from_secs(10);
        assert_eq!(a.lookup(&port(), client, t0), None);
        a.record(&port(), client, b1, timeout, t0);
        assert_eq!(
            a.lookup(&port(), client, t0 + Duration::from_secs(9)),
            Some(b1)
        );
        // Another client, another Service port: not sticky.
        assert_eq!(a.lookup(&port(), ip("127.1.1.2"), t0), None);
        let other = ServicePortKey { port: 81, ..port() };
        assert_eq!(a.lookup(&other, client, t0), None);
        // Use refreshes it.
        a.record(&port(), client, b1, timeout, t0 + Duration::from_secs(9));
        assert_eq!(
            a.lookup(&port(), client, t0 + Duration::from_secs(18)),
            Some(b1)
        );
        // Idle for the timeout: expired.
        assert_eq!(
            a.lookup(&port(), client, t0 + Duration::from_secs(19)),
            None
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a.expire(t0 + Duration::from_secs(19)), 1);
        assert!(a.is_empty());
    }

    #[test]
    fn affinity_sweeps_expired_entries_while_recording() {
        let mut a = Affinity::default();
        let t0 = Instant::now();
        let b: SocketAddr = "127.244.0.1:80".parse().unwrap();
        for i in 0..100u8 {
            a.record(
                &port(),
                ip(&format!("127.1.0.{i}")),
                b,
                Duration::from_secs(1),
                t0,
            );
        }
        assert_eq!(a.len(), 100);
        a.record(
            &port(),
            ip("127.2.0.1"),
            b,
            Duration::from_secs(1),
            t0 + Duration::from_secs(61),
        );
        assert_eq!(a.len(), 1);
    }
}
