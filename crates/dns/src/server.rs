//! The tokio shell: UDP and TCP listeners answering from the current [`DnsZone`], which
//! [`DnsServer::publish`] swaps atomically (in-flight queries finish on the zone they
//! started with), forwarding to upstream servers, and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::answer::{Action, Outcome, ResponseCode, Transport};
use crate::config::{DnsConfig, Upstream};
use crate::upstream::{Forwarder, ForwarderLimits, Source};
use crate::zone::DnsZone;

/// TCP connections served at once; more wait in the kernel's accept queue.
const MAX_TCP_CONNECTIONS: usize = 512;
/// A TCP connection idle this long is closed (RFC 7766 6.2.3 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A failure to start the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The UDP or TCP socket could not be bound.
    #[error("cannot listen for DNS on {proto} {addr}: {source}")]
    Bind {
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    transport: &'static str,
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

type HistogramFamily = Family<SourceLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 2 µs to ~1 s: zone answers sit at the bottom, upstream ones at the top.
    Histogram::new(exponential_buckets(0.000_002, 4.0, 10))
}

#[derive(Clone)]
struct Metrics {
    queries: Family<QueryLabels, Counter>,
    latency: HistogramFamily,
    truncated: Counter,
    dropped: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    upstream_failures: Counter,
    zone_names: Gauge,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            queries: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            truncated: Counter::default(),
            dropped: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            upstream_failures: Counter::default(),
            zone_names: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("svcnet_dns");
        r.register(
            "queries",
            "DNS queries answered, by transport, query type and response code",
            m.queries.clone(),
        );
        r.register(
            "query_duration_seconds",
            "Time from a query's arrival to its response, by source (zone, cache, upstream)",
            m.latency.clone(),
        );
        r.register(
            "truncated",
            "UDP responses sent with TC set because the answer did not fit",
            m.truncated.clone(),
        );
        r.register(
            "dropped",
            "Datagrams dropped without an answer (shorter than a header, or responses)",
            m.dropped.clone(),
        );
        r.register(
            "upstream_cache_hits",
            "Forwarded queries answered from the cache",
            m.cache_hits.clone(),
        );
        r.register(
            "upstream_cache_misses",
            "Forwarded queries sent to an upstream server",
            m.cache_misses.clone(),
        );
        r.register(
            "upstream_failures",
            "Forwarded queries that got SERVFAIL: no upstream answered, or too many in flight",
            m.upstream_failures.clone(),
        );
        r.register(
            "zone_names",
            "Names in the published zone (empty non-terminals included)",
            m.zone_names.clone(),
        );
        m
    }

    fn observe(
        &self,
        transport: Transport,
        outcome: &Outcome,
        source: &'static str,
        start: Instant,
    ) {
        self.queries
            .get_or_create(&QueryLabels {
                transport: match transport {
                    Transport::Udp => "udp",
                    Transport::Tcp => "tcp",
                },
                qtype: qtype_label(outcome.qtype),
                rcode: outcome.rcode.as_str(),
            })
            .inc();
        if outcome.truncated {
            self.truncated.inc();
        }
        self.latency
            .get_or_create(&SourceLabels { source })
            .observe(start.elapsed().as_secs_f64());
    }
}

/// A bounded set of label values: common types by name, the rest as `other`.
fn qtype_label(qtype: u16) -> &'static str {
    match qtype {
        0 => "none",
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        64 => "SVCB",
        65 => "HTTPS",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        _ => "other",
    }
}

struct Inner {
    zone: ArcSwap<DnsZone>,
    forwarder: Option<Forwarder>,
    metrics: Metrics,
}

/// The DNS server: UDP and TCP on one address, answering from the published zone.
pub struct DnsServer {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Listens on UDP and TCP at `addr` (port 0: one free port for both) and serves `zone`.
    /// Names outside the owned zones go to `config.upstream` (none: REFUSED). Metrics are
    /// registered in `registry` under `svcnet_dns_`. Must be called inside a tokio
    /// runtime; the listeners run as tasks until [`DnsServer::shutdown`] or drop.
    pub async fn bind(
        addr: SocketAddr,
        zone: DnsZone,
        config: &DnsConfig,
        registry: &mut Registry,
    ) -> Result<DnsServer, ServerError> {
        let (udp, tcp) = bind_both(addr).await?;
        let local_addr = udp.local_addr().map_err(|source| ServerError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        let metrics = Metrics::register(registry);
        metrics.zone_names.set(zone.name_count() as i64);
        let forwarder = match &config.upstream {
            Upstream::Servers(servers) if !servers.is_empty() => {
                // Never forward to ourselves.
                let servers: Vec<SocketAddr> = servers
                    .iter()
                    .copied()
                    .filter(|s| *s != local_addr)
                    .collect();
                Some(Forwarder::new(servers, ForwarderLimits::default()))
            }
            _ => None,
        };
        let inner = Arc::new(Inner {
            zone: ArcSwap::from_pointee(zone),
            forwarder,
            metrics,
        });
        let (stop, stopped) = watch::channel(false);
        let udp = Arc::new(udp);
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        let mut tasks = Vec::new();
        for _ in 0..workers {
            tasks.push(tokio::spawn(serve_udp(
                inner.clone(),
                udp.clone(),
                stopped.clone(),
            )));
        }
        tasks.push(tokio::spawn(serve_tcp(inner.clone(), tcp, stopped)));
        tracing::info!(%local_addr, workers, "DNS listening on UDP and TCP");
        Ok(DnsServer {
            inner,
            local_addr,
            stop,
            tasks,
        })
    }

    /// The address both listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Makes `zone` the one answered from, for the next query on. Lock-free.
    pub fn publish(&self, zone: DnsZone) {
        self.inner.metrics.zone_names.set(zone.name_count() as i64);
        self.inner.zone.store(Arc::new(zone));
    }

    /// The zone currently served.
    pub fn zone(&self) -> Arc<DnsZone> {
        self.inner.zone.load_full()
    }

    /// Stops the listeners and waits for them (connections being served are dropped).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind_both(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), ServerError> {
    let mut last_err = None;
    // With port 0 the UDP port chosen may be taken for TCP: try a few.
    let tries = if addr.port() == 0 { 16 } else { 1 };
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                proto: "udp",
                addr,
                source,
            })?;
        let bound = udp.local_addr().map_err(|source| ServerError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last_err = Some(ServerError::Bind {
                    proto: "tcp",
                    addr: bound,
                    source,
                });
            }
        }
    }
    Err(last_err.unwrap_or_else(|| ServerError::Bind {
        proto: "tcp",
        addr,
        source: std::io::Error::other("no port"),
    }))
}

async fn serve_udp(inner: Arc<Inner>, sock: Arc<UdpSocket>, mut stopped: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(1232);
    loop {
        let received = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            _ = stopped.changed() => return,
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; keep going.
                tracing::debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        let start = Instant::now();
        let query = &buf[..n];
        let outcome = inner
            .zone
            .load()
            .answer_into(query, Transport::Udp, &mut out);
        match outcome.action {
            Action::Reply if outcome.chase_upstream && inner.forwarder.is_some() => {
                let inner = inner.clone();
                let sock = sock.clone();
                let query = query.to_vec();
                let ours = out.clone();
                tokio::spawn(async move {
                    let (resp, outcome, source) =
                        chase(&inner, &query, ours, Transport::Udp, outcome).await;
                    if let Err(e) = sock.send_to(&resp, peer).await {
                        tracing::debug!(error = %e, %peer, "DNS UDP send failed");
                    }
                    inner
                        .metrics
                        .observe(Transport::Udp, &outcome, source, start);
                });
            }
            Action::Reply => {
                if let Err(e) = sock.send_to(&out, peer).await {
                    tracing::debug!(error = %e, %peer, "DNS UDP send failed");
                }
                inner
                    .metrics
                    .observe(Transport::Udp, &outcome, "zone", start);
            }
            Action::Drop => {
                inner.metrics.dropped.inc();
            }
            Action::Forward => {
                let inner = inner.clone();
                let sock = sock.clone();
                let query = query.to_vec();
                tokio::spawn(async move {
                    let (resp, outcome, source) =
                        forward(&inner, &query, Transport::Udp, outcome).await;
                    if let Err(e) = sock.send_to(&resp, peer).await {
                        tracing::debug!(error = %e, %peer, "DNS UDP send failed");
                    }
                    inner
                        .metrics
                        .observe(Transport::Udp, &outcome, source, start);
                });
            }
        }
    }
}

/// Forwards a query; on failure answers SERVFAIL. Over UDP an answer larger than the
/// client can take is cut to its header and question with TC set.
async fn forward(
    inner: &Inner,
    query: &[u8],
    transport: Transport,
    mut outcome: Outcome,
) -> (Vec<u8>, Outcome, &'static str) {
    let zone = inner.zone.load_full();
    let result = match &inner.forwarder {
        Some(f) => f.forward(query).await.map_err(|e| e.to_string()),
        None => Err("no upstream configured".to_string()),
    };
    outcome.action = Action::Reply;
    match result {
        Ok((mut resp, source)) => {
            let source = match source {
                Source::Cache => {
                    inner.metrics.cache_hits.inc();
                    "cache"
                }
                Source::Upstream => {
                    inner.metrics.cache_misses.inc();
                    "upstream"
                }
            };
            if transport == Transport::Udp {
                let limit = crate::upstream::client_udp_limit(query, zone.max_udp_payload);
                if resp.len() > limit
                    && let Some(cut) = crate::upstream::truncate(&resp)
                {
                    resp = cut;
                    outcome.truncated = true;
                }
            }
            outcome.rcode = ResponseCode::from_opt(domain::base::iana::OptRcode::masked_from_int(
                u16::from(resp.get(3).map_or(2, |b| b & 0x0f)),
            ));
            (resp, outcome, source)
        }
        Err(reason) => {
            tracing::debug!(%reason, "DNS forward failed");
            inner.metrics.upstream_failures.inc();
            let mut out = Vec::new();
            let o = zone.servfail_into(query, transport, &mut out);
            (out, o, "upstream")
        }
    }
}

/// Appends the upstream records of an ExternalName's out-of-zone target to svcnet's
/// CNAME answer `ours`. On any failure the CNAME alone is answered.
async fn chase(
    inner: &Inner,
    query: &[u8],
    ours: Vec<u8>,
    transport: Transport,
    mut outcome: Outcome,
) -> (Vec<u8>, Outcome, &'static str) {
    let Some(forwarder) = &inner.forwarder else {
        return (ours, outcome, "zone");
    };
    let max = inner.zone.load().max_udp_payload;
    let Some(target_query) = crate::chase::target_query(&ours, max) else {
        return (ours, outcome, "zone");
    };
    let (upstream, source) = match forwarder.forward(&target_query).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "DNS ExternalName chase failed; answering the CNAME");
            inner.metrics.upstream_failures.inc();
            return (ours, outcome, "zone");
        }
    };
    let source = match source {
        Source::Cache => {
            inner.metrics.cache_hits.inc();
            "cache"
        }
        Source::Upstream => {
            inner.metrics.cache_misses.inc();
            "upstream"
        }
    };
    let limit = match transport {
        Transport::Udp => crate::upstream::client_udp_limit(query, max),
        Transport::Tcp => usize::from(u16::MAX),
    };
    match crate::chase::append(&ours, &upstream, limit) {
        Some(merged) => {
            outcome.truncated = merged.get(2).is_some_and(|b| b & 0x02 != 0);
            outcome.authoritative = false;
            outcome.rcode = ResponseCode::from_opt(domain::base::iana::OptRcode::masked_from_int(
                u16::from(merged.get(3).map_or(0, |b| b & 0x0f)),
            ));
            (merged, outcome, source)
        }
        None => (ours, outcome, "zone"),
    }
}

async fn serve_tcp(inner: Arc<Inner>, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS TCP accept failed");
                // Out of descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let inner = inner.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = serve_tcp_connection(&inner, stream) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, %peer, "DNS TCP connection ended");
                    }
                }
                _ = stopped.changed() => {}
            }
            drop(permit);
        });
    }
}

/// Answers length-prefixed queries in order until the client closes or idles.
async fn serve_tcp_connection(inner: &Inner, mut stream: TcpStream) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut query = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(n)) => usize::from(n),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        query.resize(len, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "query body"))??;
        let start = Instant::now();
        let outcome = inner
            .zone
            .load()
            .answer_into(&query, Transport::Tcp, &mut out);
        let (resp, outcome, source) = match outcome.action {
            Action::Drop => {
                inner.metrics.dropped.inc();
                continue;
            }
            Action::Reply if outcome.chase_upstream => {
                let ours = out.clone();
                chase(inner, &query, ours, Transport::Tcp, outcome).await
            }
            Action::Reply => (std::mem::take(&mut out), outcome, "zone"),
            Action::Forward => forward(inner, &query, Transport::Tcp, outcome).await,
        };
        let Ok(n) = u16::try_from(resp.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(resp.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&resp);
        stream.write_all(&framed).await?;
        inner
            .metrics
            .observe(Transport::Tcp, &outcome, source, start);
        if source == "zone" {
            out = resp;
        }
    }
}
