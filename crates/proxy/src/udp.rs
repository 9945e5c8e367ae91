//! UDP: one flow per client address. A flow has its own socket, bound to the client's IP and
//! connected to the chosen endpoint; the endpoint's replies go back to the client from the
//! Service address (the listener's socket). A flow ends after
//! [`crate::ProxyConfig::udp_idle_timeout`] without traffic either way, when its endpoint
//! refuses (ICMP port unreachable), or when a new table no longer has its endpoint serving
//! (kube-proxy flushes UDP conntrack entries of stale endpoints for the same reason).
//!
//! The flow map belongs to the listener's receive loop alone: no lock per datagram.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use svcnet_model::types::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::Inner;
use crate::choose::choose;
use crate::metrics::{GaugeGuard, PortMetrics};
use crate::sock;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// How often finished flows are swept and a new table is checked without traffic.
const SWEEP: Duration = Duration::from_secs(1);

struct Flow {
    upstream: Arc<UdpSocket>,
    backend: SocketAddr,
    /// Milliseconds since `clock` of the last datagram either way.
    last: Arc<AtomicU64>,
    task: AbortHandle,
    metrics: PortMetrics,
}

/// A monotonic millisecond clock shared by a listener and its flows (tokio's clock, so it
/// follows paused time in tests).
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ms(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

impl Flow {
    /// Sends a client datagram to the endpoint. `Err`: the flow is dead (the endpoint
    /// refused an earlier datagram) and must be replaced.
    fn send(&self, clock: Clock, data: &[u8]) -> io::Result<()> {
        self.last.store(clock.now_ms(), Ordering::Relaxed);
        // Straight to the socket: tokio's `try_send` reports WouldBlock until the reactor has
        // seen the new socket become writable, which would drop a flow's first datagram.
        match socket2::SockRef::from(&*self.upstream).send(data) {
            Ok(n) => {
                self.metrics.bytes_in.inc_by(n as u64);
                Ok(())
            }
            // A full socket buffer drops the datagram, as a network would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.metrics.udp_dropped_socket_error.inc();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Receives client datagrams until stopped (or until the proxy is dropped). Its flows end
/// with it, and the listener socket closes once they have.
pub(crate) async fn recv_loop(
    inner: Weak<Inner>,
    socket: UdpSocket,
    listen: SocketAddr,
    mut stop: oneshot::Receiver<()>,
) {
    let socket = Arc::new(socket);
    let clock = Clock(Instant::now());
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen_generation = u64::MAX;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = sweep.tick() => {
                while tasks.try_join_next().is_some() {}
                flows.retain(|_, f| !f.task.is_finished());
                let Some(inner) = inner.upgrade() else { break };
                revalidate(&inner, listen, &mut flows, &mut seen_generation);
            }
            received = socket.recv_from(&mut buf) => {
                let (n, client) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(%listen, error = %e, "UDP receive failed");
                        continue;
                    }
                };
                let Some(inner) = inner.upgrade() else { break };
                revalidate(&inner, listen, &mut flows, &mut seen_generation);
                let data = &buf[..n];
                if let Some(flow) = flows.get(&client) {
                    if !flow.task.is_finished() {
                        match flow.send(clock, data) {
                            Ok(()) => continue,
                            Err(e) => {
                                tracing::debug!(%client, backend = %flow.backend, error = %e, "UDP flow ended; choosing again");
                                flow.task.abort();
                            }
                        }
                    }
                    flows.remove(&client);
                }
                if let Some(flow) = open_flow(&inner, &socket, listen, client, clock, &mut tasks) {
                    match flow.send(clock, data) {
                        Ok(()) => {
                            flows.insert(client, flow);
                        }
                        Err(e) => {
                            flow.metrics.udp_dropped_socket_error.inc();
                            tracing::debug!(%client, backend = %flow.backend, error = %e, "UDP send failed");
                            flow.task.abort();
                        }
                    }
                }
            }
        }
    }
    tasks.shutdown().await;
}

/// After a table swap, ends the flows whose endpoint is gone or no longer serving.
fn revalidate(
    inner: &Inner,
    listen: SocketAddr,
    flows: &mut HashMap<SocketAddr, Flow>,
    seen: &mut u64,
) {
    let generation = inner.generation.load(Ordering::Acquire);
    if generation == *seen {
        return;
    }
    *seen = generation;
    if flows.is_empty() {
        return;
    }
    let table = inner.table.load();
    let fe = table.frontend(listen, Protocol::Udp);
    flows.retain(|client, f| {
        let keep = fe.is_some_and(|fe| {
            fe.endpoints
                .iter()
                .any(|b| b.addr == f.backend && (b.ready || b.serving))
        });
        if !keep {
            tracing::debug!(%client, backend = %f.backend, "endpoint gone; UDP flow closed");
            f.task.abort();
        }
        keep
    });
}

/// Chooses an endpoint for a new client and starts its flow. `None`: the datagram is dropped
/// (counted).
fn open_flow(
    inner: &Inner,
    listener: &Arc<UdpSocket>,
    listen: SocketAddr,
    client: SocketAddr,
    clock: Clock,
    tasks: &mut JoinSet<()>,
) -> Option<Flow> {
    let table = inner.table.load();
    let Some(fe) = table.frontend(listen, Protocol::Udp) else {
        tracing::debug!(%listen, "no frontend (listener being released)");
        return None;
    };
    let key = fe.service_port();
    let m = inner.metrics.port(&key);
    let ip = client.ip();
    let (candidates, denied) = inner.candidates(fe, ip, table.client_node(ip));
    if denied {
        m.udp_dropped_policy.inc();
        tracing::debug!(%client, %listen, service = %fe.service, "every endpoint denied by NetworkPolicy; UDP datagram dropped");
        return None;
    }
    let now = Instant::now().into_std();
    let sticky = fe
        .affinity
        .and_then(|_| inner.affinity().lookup(&key, ip, now));
    let Some(backend) = choose(&candidates, sticky, &[], &mut rand::rng()).map(|b| b.addr) else {
        m.udp_dropped_no_endpoints.inc();
        tracing::debug!(%client, %listen, service = %fe.service, "no endpoint; UDP datagram dropped");
        return None;
    };
    let (upstream, bound) = match sock::udp_flow_socket(ip, backend) {
        Ok(s) => s,
        Err(e) => {
            m.udp_dropped_socket_error.inc();
            tracing::warn!(%client, %backend, error = %e, "cannot open a UDP flow socket");
            return None;
        }
    };
    if !bound {
        m.bind_fallbacks.inc();
    }
    if let Some(timeout) = fe.affinity {
        inner.affinity().record(&key, ip, backend, timeout, now);
    }
    m.accepted.inc();
    let upstream = Arc::new(upstream);
    let last = Arc::new(AtomicU64::new(clock.now_ms()));
    let alive = GaugeGuard::inc(&m.udp_flows);
    let task = tasks.spawn(
        Replies {
            listener: listener.clone(),
            upstream: upstream.clone(),
            client,
            last: last.clone(),
            clock,
            idle: inner.config.udp_idle_timeout,
            metrics: m.clone(),
            _alive: alive,
        }
        .run(),
    );
    tracing::trace!(%client, %listen, %backend, "UDP flow opened");
    Some(Flow {
        upstream,
        backend,
        last,
        task,
        metrics: m,
    })
}

/// The reply half of a flow: carries the endpoint's datagrams back to the client, from the
/// Service address, until the flow has been idle for `idle` or the endpoint refuses.
struct Replies {
    listener: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<AtomicU64>,
    clock: Clock,
    idle: Duration,
    metrics: PortMetrics,
    /// Counts the flow in `udp_flows_active` until the task ends or is aborted.
    _alive: GaugeGuard,
}

impl Replies {
    async fn run(self) {
        let Replies {
            listener,
            upstream,
            client,
            last,
            clock,
            idle,
            metrics: m,
            _alive,
        } = self;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let deadline = clock.at(last.load(Ordering::Relaxed)) + idle;
            tokio::select! {
                received = upstream.recv(&mut buf) => match received {
                    Ok(n) => {
                        last.store(clock.now_ms(), Ordering::Relaxed);
                        match listener.send_to(&buf[..n], client).await {
                            Ok(sent) => {
                                m.bytes_out.inc_by(sent as u64);
                            }
                            Err(e) => {
                                m.udp_dropped_socket_error.inc();
                                tracing::debug!(%client, error = %e, "UDP reply not delivered");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%client, error = %e, "UDP flow ended by the endpoint");
                        return;
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    // Traffic since the deadline was computed moves it; otherwise it has passed.
                    if Instant::now() >= clock.at(last.load(Ordering::Relaxed)) + idle {
                        tracing::trace!(%client, "UDP flow idle; closed");
                        return;
                    }
                }
            }
        }
    }
}
