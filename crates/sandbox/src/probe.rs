//! Readiness: kubelet's probe thresholds (pure), the pod's verdict over its containers and
//! listeners (pure), and the probe runner.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use svcnet_model::types::{ObjectKey, Probe};
use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

use crate::ReadinessChange;
use crate::client;
use crate::spec::{Check, ProbeSpec};

/// Consecutive results against thresholds, as kubelet's probe worker counts them: the
/// state changes only after `successThreshold` successes or `failureThreshold` failures
/// in a row. A container with a readiness probe starts not ready.
#[derive(Clone, Debug)]
pub struct ProbeTracker {
    success_threshold: u32,
    failure_threshold: u32,
    last: Option<bool>,
    run: u32,
    ready: bool,
}

impl ProbeTracker {
    /// A tracker with the probe's thresholds (at least 1 each), not ready.
    pub fn new(probe: &Probe) -> Self {
        ProbeTracker {
            success_threshold: probe.success_threshold.max(1),
            failure_threshold: probe.failure_threshold.max(1),
            last: None,
            run: 0,
            ready: false,
        }
    }

    /// Records one probe result; returns the new readiness when it changed.
    pub fn observe(&mut self, success: bool) -> Option<bool> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold || self.ready == success {
            return None;
        }
        self.ready = success;
        Some(success)
    }

    /// The current readiness.
    pub fn ready(&self) -> bool {
        self.ready
    }
}

/// What the pod's readiness is made of.
#[derive(Clone, Debug, Default)]
pub struct ReadyState {
    /// Listeners that could not be bound (`tcp 127.0.0.5:80` → error).
    pub listen_errors: BTreeMap<String, String>,
    /// Containers with a readiness probe: name, ready, last reason.
    pub containers: Vec<(String, bool, String)>,
}

impl ReadyState {
    /// The pod is ready when every listener is bound and every probed container is ready
    /// (containers without a probe are ready once running, as kubelet has it).
    pub fn verdict(&self) -> (bool, String) {
        if let Some((l, e)) = self.listen_errors.iter().next() {
            return (false, format!("cannot listen on {l}: {e}"));
        }
        if let Some((name, _, why)) = self.containers.iter().find(|(_, ready, _)| !ready) {
            return (false, format!("container {name}: {why}"));
        }
        if self.containers.is_empty() {
            (true, "agent listening; no readiness probe".to_string())
        } else {
            (true, "readiness probes succeeded".to_string())
        }
    }
}

/// A pod's readiness, published on change.
#[derive(Debug)]
pub(crate) struct Readiness {
    pod: ObjectKey,
    tx: UnboundedSender<ReadinessChange>,
    state: Mutex<(ReadyState, Option<bool>)>,
}

impl Readiness {
    /// Not ready while a probed container has not succeeded yet.
    pub(crate) fn new(
        pod: ObjectKey,
        probes: &[ProbeSpec],
        tx: UnboundedSender<ReadinessChange>,
    ) -> Self {
        let containers = probes
            .iter()
            .map(|p| {
                (
                    p.container.clone(),
                    false,
                    "readiness probe has not succeeded yet".to_string(),
                )
            })
            .collect();
        let state = ReadyState {
            listen_errors: BTreeMap::new(),
            containers,
        };
        Readiness {
            pod,
            tx,
            state: Mutex::new((state, None)),
        }
    }

    /// Changes the state, and reports the verdict when it differs from the last reported.
    pub(crate) fn update(&self, change: impl FnOnce(&mut ReadyState)) {
        // A poisoned lock means a panic elsewhere while updating; the state is plain data
        // and stays usable.
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, last) = &mut *guard;
        change(state);
        let (ready, reason) = state.verdict();
        if *last != Some(ready) {
            *last = Some(ready);
            // The receiver is gone only when the caller stopped listening; nothing to do.
            let _ = self.tx.send(ReadinessChange {
                pod: self.pod.clone(),
                ready,
                reason,
            });
        }
    }
}

/// Runs one check once, bounded by `timeout`.
pub(crate) async fn run_check(
    check: &Check,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        match check {
            Check::AlwaysSucceeds => Ok(()),
            Check::Fails { reason } => Err(reason.clone()),
            Check::Tcp { addr } => crate::net::connect_from(source, *addr)
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {addr}: {e}")),
            Check::Http {
                addr,
                host,
                path,
                headers,
            } => {
                let mut all = vec![
                    ("host".to_string(), host.clone()),
                    ("user-agent".to_string(), "kube-probe/1.34".to_string()),
                    ("accept".to_string(), "*/*".to_string()),
                ];
                // Written headers replace the defaults, as kubelet's do.
                all.retain(|(k, _)| !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)));
                all.extend(headers.iter().cloned());
                let (status, _) = client::get(source, *addr, path, &all, 10 * 1024).await?;
                if (200..400).contains(&status.as_u16()) {
                    Ok(())
                } else {
                    Err(format!(
                        "HTTP probe failed with statuscode: {}",
                        status.as_u16()
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {}s", timeout.as_secs_f64())),
    }
}

/// Runs container `index`'s probe forever at its period, reporting readiness changes.
pub(crate) async fn run_prober(
    spec: ProbeSpec,
    index: usize,
    source: Option<IpAddr>,
    readiness: Arc<Readiness>,
) {
    let p = &spec.probe;
    tokio::time::sleep(Duration::from_secs(u64::from(p.initial_delay_seconds))).await;
    let period = Duration::from_secs(u64::from(p.period_seconds.max(1)));
    let timeout = Duration::from_secs(u64::from(p.timeout_seconds.max(1)));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tracker = ProbeTracker::new(p);
    loop {
        ticks.tick().await;
        let result = run_check(&spec.check, source, timeout).await;
        debug!(container = %spec.container, ?result, "readiness probe");
        if let Some(ready) = tracker.observe(result.is_ok()) {
            let reason = match result {
                Ok(()) => "readiness probe succeeded".to_string(),
                Err(e) => format!("Readiness probe failed: {e}"),
            };
            readiness.update(|s| {
                if let Some(c) = s.containers.get_mut(index) {
                    c.1 = ready;
                    c.2 = reason;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svcnet_model::types::ProbeAction;

    fn probe(success: u32, failure: u32) -> Probe {
        Probe {
            action: ProbeAction::Exec { command: vec![] },
            initial_delay_seconds: 0,
            period_seconds: 1,
            timeout_seconds: 1,
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn starts_not_ready_and_needs_success_threshold() {
        let mut t = ProbeTracker::new(&probe(2, 3));
        assert!(!t.ready());
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(true), None);
    }

    #[test]
    fn failure_threshold_flips_back() {
        let mut t = ProbeTracker::new(&probe(1, 3));
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), Some(true));
    }

    #[test]
    fn initial_failures_change_nothing() {
        let mut t = ProbeTracker::new(&probe(1, 1));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(false), Some(false));
    }

    #[test]
    fn verdict_needs_listeners_and_containers() {
        let mut s = ReadyState::default();
        assert!(s.verdict().0);
        s.containers.push(("app".into(), false, "not yet".into()));
        assert_eq!(s.verdict(), (false, "container app: not yet".to_string()));
        s.containers[0].1 = true;
        assert!(s.verdict().0);
        s.listen_errors
            .insert("tcp 127.0.0.9:80".into(), "Address in use".into());
        let (ready, why) = s.verdict();
        assert!(!ready);
        assert!(why.contains("cannot listen on tcp 127.0.0.9:80"), "{why}");
    }

    #[test]
    fn readiness_reports_only_changes() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = Readiness::new(ObjectKey::new("n", "p"), &[], tx);
        r.update(|_| {});
        r.update(|_| {});
        let first = rx.try_recv().ok();
        assert!(first.is_some_and(|c| c.ready && c.pod.name == "p"));
        assert!(rx.try_recv().is_err());
        r.update(|s| {
            s.listen_errors.insert("x".into(), "y".into());
        });
        assert!(rx.try_recv().is_ok_and(|c| !c.ready));
    }
}
