//! The access log: one `tracing` event per request at `info` on target `svcnet::access`.
//!
//! Fields: `ingress`, `host`, `path`, `method`, `client`, `service`, `pod`, `upstream`,
//! `status`, `duration_ms`, `upstream_ms` (`-1` when no upstream was contacted),
//! `reason` (why the controller answered itself, empty otherwise).

use std::net::{IpAddr, SocketAddr};

/// The access log target.
pub const TARGET: &str = "svcnet::access";

/// One request's log entry.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    /// `namespace/name` of the Ingress, empty when no route matched.
    pub ingress: &'a str,
    /// The request's host.
    pub host: &'a str,
    /// The request's path.
    pub path: &'a str,
    /// The method.
    pub method: &'a str,
    /// The client address.
    pub client: Option<IpAddr>,
    /// `namespace/name` of the Service.
    pub service: String,
    /// `namespace/name` of the pod that answered.
    pub pod: String,
    /// The endpoint address.
    pub upstream: Option<SocketAddr>,
    /// The status sent.
    pub status: u16,
    /// Total time to the response head, ms.
    pub duration_ms: f64,
    /// Time spent waiting for the upstream, ms.
    pub upstream_ms: Option<f64>,
    /// Why the controller answered itself.
    pub reason: &'a str,
}

/// Milliseconds rounded to the microsecond (no `0.051397000000000005` in the log).
fn micros(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Writes the entry (a no-op when the target is not enabled).
pub fn log(e: &Entry<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let client = e.client.map(|c| c.to_string()).unwrap_or_default();
    let upstream = e.upstream.map(|u| u.to_string()).unwrap_or_default();
    tracing::info!(
        target: TARGET,
        ingress = %e.ingress,
        host = %e.host,
        path = %e.path,
        method = %e.method,
        client = %client,
        service = %e.service,
        pod = %e.pod,
        upstream = %upstream,
        status = e.status,
        duration_ms = micros(e.duration_ms),
        upstream_ms = e.upstream_ms.map_or(-1.0, micros),
        reason = %e.reason,
        "request"
    );
}
