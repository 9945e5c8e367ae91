//! svcnet's standalone runtime: pod agents on loopback addresses, and readiness probes.
//!
//! In loopback mode a pod is an agent: [`Agents::apply`] gives every pod whose IP is a
//! loopback address (127.0.0.0/8, ::1) a set of sockets on that IP, one per declared
//! containerPort and protocol. A TCP port answers HTTP/1.1 and h2c (the pod-info JSON,
//! and agnhost-like endpoints under `/_agent/`: hostname, clientip, healthz, echo, dial),
//! the line `hostname`, or echoes; a UDP port answers the datagram `hostname` or echoes.
//! The annotation `svcnet.dev/backend-PORT: 127.0.0.1:PORT` hands a port to a real local
//! process instead. Readiness probes run as kubelet runs them and their results are sent
//! to the caller as [`ReadinessChange`]s.
//!
//! It does not decide NetworkPolicy: it asks the hooks in [`SandboxConfig`]. It does not
//! change the cluster: readiness goes back to the caller, who rebuilds EndpointSlices.
//! Kernel mode (network namespaces) is not here yet.
//!
//! Parsing and deciding are pure ([`sniff`], [`spec`], [`probe::ProbeTracker`],
//! [`dial::parse_dial_query`], [`privileged_ports_check`]); the tokio shell is
//! [`Agents`].

mod agent;
mod client;
pub mod dial;
mod http;
mod net;
mod privileged;
pub mod probe;
pub mod sniff;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use svcnet_model::Cluster;
use svcnet_model::types::{ObjectKey, Protocol};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

pub use http::POD_HEADER;
pub use privileged::{effective_capabilities, privileged_ports_blocked, privileged_ports_check};
pub use spec::BACKEND_ANNOTATION_PREFIX;

use agent::Agent;

/// A pod's readiness as its agent sees it (probes, or listening when it has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadinessChange {
    /// The pod.
    pub pod: ObjectKey,
    /// Ready or not.
    pub ready: bool,
    /// Why, in kubelet's words where it has some (`Readiness probe failed: ...`).
    pub reason: String,
}

/// Decides whether a connection or datagram from `src` may reach `pod` at `dst` (the pod's
/// own address and port it arrived on).
pub type AdmitFn = dyn Fn(SocketAddr, SocketAddr, &ObjectKey, Protocol) -> bool + Send + Sync;

/// Decides whether `pod` may dial `dst` from its address `src` (for `/_agent/dial`).
pub type DialAdmitFn = dyn Fn(&ObjectKey, IpAddr, SocketAddr, Protocol) -> bool + Send + Sync;

/// Hooks for NetworkPolicy; `None` allows everything.
#[derive(Clone, Default)]
pub struct SandboxConfig {
    /// Ingress: `false` closes a connection at once or drops a datagram.
    pub admit: Option<Arc<AdmitFn>>,
    /// Egress of `/_agent/dial`: `false` makes the try fail with "denied by NetworkPolicy".
    pub dial_admit: Option<Arc<DialAdmitFn>>,
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("admit", &self.admit.as_ref().map(|_| "Fn"))
            .field("dial_admit", &self.dial_admit.as_ref().map(|_| "Fn"))
            .finish()
    }
}

/// What [`Agents::apply`] did. Lists are sorted by pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Pods whose agent started, including restarted ones (also in `restarted`).
    pub started: Vec<ObjectKey>,
    /// Pods whose agent stopped and did not start again (the pod is gone or gets no
    /// agent any more).
    pub stopped: Vec<ObjectKey>,
    /// Pods whose agent was replaced because its IP, ports, probes or annotations changed.
    pub restarted: Vec<ObjectKey>,
    /// Pods that get no agent, and why (not loopback, not running, no IP).
    pub skipped: Vec<(ObjectKey, String)>,
    /// What went wrong: sockets that could not be bound (with their address; retried at
    /// the next apply and reported again only when the error changes), annotations
    /// rejected, ports that cannot be served. Reported when the agent starts.
    pub errors: Vec<(ObjectKey, String)>,
    /// What an agent does differently from a kubelet (exec and grpc probes taken as
    /// succeeding, HTTPS probes checked as TCP). Reported when the agent starts.
    pub warnings: Vec<(ObjectKey, String)>,
}

/// The pod agents of a cluster. Cheap to clone; clones share the agents.
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

struct Inner {
    config: SandboxConfig,
    readiness: UnboundedSender<ReadinessChange>,
    /// Serializes `apply` and `shutdown`.
    apply_lock: tokio::sync::Mutex<()>,
    /// Running agents. A plain mutex: it is never held across an await.
    agents: Mutex<BTreeMap<ObjectKey, Agent>>,
}

impl Inner {
    fn agents(&self) -> std::sync::MutexGuard<'_, BTreeMap<ObjectKey, Agent>> {
        // Poisoned only by a panic while holding it; the map itself stays consistent
        // (every mutation is a single insert or remove).
        self.agents.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Agents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pods: Vec<String> = self
            .inner
            .agents()
            .keys()
            .map(ToString::to_string)
            .collect();
        f.debug_struct("Agents").field("pods", &pods).finish()
    }
}

impl Agents {
    /// No agents yet; readiness changes go to `readiness`.
    pub fn new(config: SandboxConfig, readiness: UnboundedSender<ReadinessChange>) -> Agents {
        Agents {
            inner: Arc::new(Inner {
                config,
                readiness,
                apply_lock: tokio::sync::Mutex::new(()),
                agents: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Brings the agents in line with the cluster: starts agents for new pods, stops those
    /// of removed pods, restarts those whose spec changed, and keeps unchanged ones
    /// running on the same sockets (open connections survive). Sockets that failed to
    /// bind before are tried again.
    ///
    /// Every started agent reports its readiness once at start (not ready while a probe
    /// has not succeeded; ready at once without probes) and on every change after.
    pub async fn apply(&self, cluster: &Cluster) -> ApplyReport {
        let _serial = self.inner.apply_lock.lock().await;
        let mut report = ApplyReport::default();
        let mut desired = BTreeMap::new();
        for (key, pod) in &cluster.pods {
            match spec::derive(pod) {
                Ok(s) => {
                    desired.insert(key.clone(), s);
                }
                Err(why) => report.skipped.push((key.clone(), why)),
            }
        }

        let stopping: Vec<(ObjectKey, Agent)> = {
            let mut agents = self.inner.agents();
            let keys: Vec<ObjectKey> = agents
                .iter()
                .filter(|(k, a)| desired.get(*k) != Some(&a.ctx.spec))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| agents.remove(&k).map(|a| (k, a)))
                .collect()
        };
        for (key, agent) in stopping {
            // Wait for the sockets to close before a restarted agent binds them again.
            agent.stop().await;
            if desired.contains_key(&key) {
                report.restarted.push(key);
            } else {
                report.stopped.push(key);
            }
        }

        let mut agents = self.inner.agents();
        for (key, spec) in desired {
            if let Some(agent) = agents.get_mut(&key) {
                for e in agent.retry() {
                    report.errors.push((key.clone(), e));
                }
                continue;
            }
            for n in &spec.notes {
                warn!(pod = %key, "{n}");
                report.warnings.push((key.clone(), n.clone()));
            }
            let (agent, errors) = Agent::start(
                spec,
                self.inner.config.clone(),
                self.inner.readiness.clone(),
            );
            for e in errors {
                report.errors.push((key.clone(), e));
            }
            agents.insert(key.clone(), agent);
            report.started.push(key);
        }
        report
    }

    /// Makes `/_agent/healthz` of the pod answer 503 (`false`) or 200 (`true`), so an
    /// httpGet probe on it fails or succeeds. Returns false when the pod has no agent.
    pub fn set_healthy(&self, pod: &ObjectKey, healthy: bool) -> bool {
        match self.inner.agents().get(pod) {
            Some(a) => {
                a.set_healthy(healthy);
                true
            }
            None => false,
        }
    }

    /// Runs a `/_agent/dial` request from inside a pod (its address, its egress check),
    /// as `svcnet probe` does through the admin API. `Err` when the pod has no agent or
    /// the target cannot be resolved.
    pub async fn dial(
        &self,
        pod: &ObjectKey,
        req: &dial::DialRequest,
    ) -> Result<dial::DialResult, String> {
        let ctx = self
            .inner
            .agents()
            .get(pod)
            .map(|a| a.ctx.clone())
            .ok_or_else(|| format!("pod {pod} has no agent (not running on loopback?)"))?;
        let dst = dial::resolve(req, &ctx.spec.ips).await?;
        Ok(dial::dial(&ctx.spec.key, &ctx.spec.ips, &ctx.config, req, dst).await)
    }

    /// The pods that have an agent.
    pub fn pods(&self) -> Vec<ObjectKey> {
        self.inner.agents().keys().cloned().collect()
    }

    /// Stops every agent: closes their sockets and connections.
    pub async fn shutdown(&self) {
        let _serial = self.inner.apply_lock.lock().await;
        let all = std::mem::take(&mut *self.inner.agents());
        for agent in all.into_values() {
            agent.stop().await;
        }
    }
}

/// The lowest port a pod agent of this cluster will listen on, to check
/// [`privileged_ports_blocked`] before binding anything.
pub fn lowest_port(cluster: &Cluster) -> Option<u16> {
    cluster
        .pods
        .values()
        .filter_map(|p| spec::derive(p).ok())
        .flat_map(|s| s.ports.into_iter().map(|p| p.port))
        .min()
}
