//! One pod's agent: its listeners, the connections they accept, its probes. Everything it
//! spawns is tracked and stops with it.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use svcnet_model::types::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::net::{self, Rewind};
use crate::probe::{self, Readiness};
use crate::sniff::{self, Sniff};
use crate::spec::AgentSpec;
use crate::{ReadinessChange, SandboxConfig};

/// How long an agent's tasks get to end when it stops.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection to a backend may take.
const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A UDP client's session with a backend ends after this long without a datagram.
const UDP_SESSION_IDLE: Duration = Duration::from_secs(60);

/// After answering `hostname` on TCP, how long to wait for the client to close.
const LINGER: Duration = Duration::from_secs(5);

/// What a pod's connections share.
pub struct PodCtx {
    /// The spec it runs.
    pub spec: AgentSpec,
    /// False makes `/_agent/healthz` answer 503.
    pub healthy: AtomicBool,
    /// Admission hooks.
    pub config: SandboxConfig,
    /// Its readiness.
    pub readiness: Arc<Readiness>,
}

impl PodCtx {
    fn admits(&self, src: SocketAddr, local: SocketAddr, protocol: Protocol) -> bool {
        self.config
            .admit
            .as_ref()
            .is_none_or(|admit| admit(src, local, &self.spec.key, protocol))
    }
}

/// One socket of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ListenerId {
    addr: SocketAddr,
    protocol: Protocol,
}

impl std::fmt::Display for ListenerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let net = match self.protocol {
            Protocol::Udp => "udp",
            _ => "tcp",
        };
        write!(f, "{net} {}", self.addr)
    }
}

/// A running agent.
pub struct Agent {
    /// Shared with its tasks.
    pub ctx: Arc<PodCtx>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Sockets that could not be bound, with the last error reported.
    failed: BTreeMap<ListenerId, String>,
}

impl Agent {
    /// Binds the pod's sockets and starts its probes. Returns the agent and what went
    /// wrong (sockets that could not be bound are retried by [`Agent::retry`]).
    /// Must run inside a tokio runtime.
    pub fn start(
        spec: AgentSpec,
        config: SandboxConfig,
        tx: UnboundedSender<ReadinessChange>,
    ) -> (Agent, Vec<String>) {
        let readiness = Arc::new(Readiness::new(spec.key.clone(), &spec.probes, tx));
        let mut errors = spec.problems.clone();
        let mut failed = BTreeMap::new();
        for p in &spec.ports {
            for ip in &spec.ips {
                let id = ListenerId {
                    addr: SocketAddr::new(*ip, p.port),
                    protocol: p.protocol,
                };
                failed.insert(id, String::new());
            }
        }
        let ctx = Arc::new(PodCtx {
            spec,
            healthy: AtomicBool::new(true),
            config,
            readiness,
        });
        let mut agent = Agent {
            ctx,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            failed,
        };
        errors.extend(agent.retry());
        for (index, p) in agent.ctx.spec.probes.iter().enumerate() {
            let run = probe::run_prober(
                p.clone(),
                index,
                agent.ctx.spec.probe_source,
                agent.ctx.readiness.clone(),
            );
            agent.spawn(run);
        }
        (agent, errors)
    }

    /// Binds the sockets that are not bound yet. Returns errors that differ from the
    /// last ones reported for the same socket.
    pub fn retry(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut listen_errors = BTreeMap::new();
        let ids: Vec<ListenerId> = self.failed.keys().copied().collect();
        for id in ids {
            match self.listen(id) {
                Ok(()) => {
                    self.failed.remove(&id);
                }
                Err(e) => {
                    let msg = bind_error(id, &e);
                    if self.failed.get(&id) != Some(&msg) {
                        errors.push(msg.clone());
                    }
                    listen_errors.insert(id.to_string(), e.to_string());
                    self.failed.insert(id, msg);
                }
            }
        }
        // One update for all sockets, so readiness does not flicker while they bind; the
        // first call also publishes the agent's first verdict.
        self.ctx
            .readiness
            .update(|s| s.listen_errors = listen_errors);
        errors
    }

    /// Sets what `/_agent/healthz` answers.
    pub fn set_healthy(&self, healthy: bool) {
        self.ctx.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Closes every socket and waits (boundedly) for its tasks to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(STOP_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(pod = %self.ctx.spec.key, "agent tasks did not stop in time");
        }
    }

    fn spawner(&self) -> Spawner {
        Spawner {
            cancel: self.cancel.clone(),
            tasks: self.tasks.clone(),
        }
    }

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawner().spawn(fut);
    }

    fn listen(&self, id: ListenerId) -> io::Result<()> {
        let backend = self.ctx.spec.backends.get(&id.addr.port()).copied();
        let ctx = self.ctx.clone();
        match id.protocol {
            Protocol::Udp => {
                let socket = net::bind_udp(id.addr)?;
                match backend {
                    Some(b) => {
                        let spawner = self.spawner();
                        self.spawn(udp_proxy(ctx, socket, id.addr.port(), b, spawner));
                    }
                    None => self.spawn(udp_serve(ctx, socket, id.addr.port())),
                }
            }
            _ => {
                let listener = net::bind_tcp(id.addr)?;
                let spawner = self.spawner();
                self.spawn(tcp_accept(ctx, listener, backend, spawner));
            }
        }
        Ok(())
    }
}

/// Spawns connection tasks into an agent's tracker, cancelled with it.
#[derive(Clone)]
struct Spawner {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Spawner {
    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = fut => {}
            }
        });
    }
}

fn bind_error(id: ListenerId, e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::PermissionDenied if id.addr.port() < 1024 => {
            "; ports below 1024 need CAP_NET_BIND_SERVICE or `sudo sysctl -w net.ipv4.ip_unprivileged_port_start=0`"
        }
        io::ErrorKind::AddrNotAvailable => {
            "; the address is not configured on this machine (on macOS: `sudo ifconfig lo0 alias ADDRESS`)"
        }
        io::ErrorKind::AddrInUse => "; another process (or pod) already listens there",
        _ => "",
    };
    format!("listen {id}: {e}{hint}")
}

async fn tcp_accept(
    ctx: Arc<PodCtx>,
    listener: TcpListener,
    backend: Option<SocketAddr>,
    spawner: Spawner,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(pod = %ctx.spec.key, error = %e, "listener without an address");
            return;
        }
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: go on,
                // slowly enough not to spin.
                debug!(%local, error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if !ctx.admits(peer, local, Protocol::Tcp) {
            debug!(%peer, %local, "connection not admitted");
            // A reset, not an orderly close: the client's first read fails, as a
            // rejected connection would (a listener cannot refuse one SYN selectively).
            if let Err(e) = stream.set_zero_linger() {
                debug!(error = %e, "SO_LINGER");
            }
            drop(stream);
            continue;
        }
        let ctx = ctx.clone();
        match backend {
            Some(b) => spawner.spawn(tcp_proxy(stream, peer, b)),
            None => spawner.spawn(tcp_serve(ctx, stream, peer, local)),
        }
    }
}

/// A TCP connection to the agent itself: sniff, then HTTP, hostname or echo.
async fn tcp_serve(ctx: Arc<PodCtx>, mut stream: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut eof = false;
    let what = loop {
        match sniff::sniff(&buf, eof) {
            Sniff::Incomplete => match stream.read_buf(&mut buf).await {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => {
                    debug!(%peer, error = %e, "read");
                    return;
                }
            },
            decided => break decided,
        }
    };
    let result = match what {
        Sniff::Http => {
            crate::http::serve(ctx, Rewind::new(buf.freeze(), stream), peer, local).await;
            Ok(())
        }
        Sniff::Hostname => answer_hostname(&ctx, &mut stream).await,
        _ => echo(&mut stream, &buf, eof).await,
    };
    if let Err(e) = result {
        debug!(%peer, %local, error = %e, "TCP connection");
    }
}

async fn answer_hostname(ctx: &PodCtx, stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(ctx.spec.hostname.as_bytes()).await?;
    stream.shutdown().await?;
    // Read until the client closes: closing with unread bytes would send a reset that can
    // destroy the answer before the client reads it.
    let mut sink = [0u8; 1024];
    let drain = async {
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    tokio::time::timeout(LINGER, drain).await.unwrap_or(Ok(()))
}

/// Echoes until the client half-closes, then half-closes too.
async fn echo(stream: &mut TcpStream, first: &[u8], eof: bool) -> io::Result<()> {
    stream.write_all(first).await?;
    if !eof {
        let (mut r, mut w) = stream.split();
        tokio::io::copy(&mut r, &mut w).await?;
    }
    stream.shutdown().await
}

/// Forwards a connection to the port's backend.
async fn tcp_proxy(mut client: TcpStream, peer: SocketAddr, backend: SocketAddr) {
    let connect = tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, TcpStream::connect(backend)).await;
    let mut upstream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, %backend, error = %e, "backend connect");
            return;
        }
        Err(_) => {
            debug!(%peer, %backend, "backend connect timed out");
            return;
        }
    };
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        debug!(%peer, %backend, error = %e, "backend connection");
    }
}

/// A bound UDP socket's address (what admission judges datagrams against).
fn local_addr(ctx: &PodCtx, socket: &UdpSocket, port: u16) -> Option<SocketAddr> {
    match socket.local_addr() {
        Ok(a) => Some(a),
        Err(e) => {
            warn!(pod = %ctx.spec.key, port, error = %e, "UDP socket without an address");
            None
        }
    }
}

/// UDP for the agent itself: `hostname` gets the hostname, anything else comes back.
async fn udp_serve(ctx: Arc<PodCtx>, socket: UdpSocket, port: u16) {
    let Some(local) = local_addr(&ctx, &socket, port) else {
        return;
    };
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                debug!(port, error = %e, "UDP receive");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if !ctx.admits(peer, local, Protocol::Udp) {
            continue;
        }
        let data = &buf[..n];
        let reply = if sniff::is_hostname_datagram(data) {
            ctx.spec.hostname.as_bytes()
        } else {
            data
        };
        if let Err(e) = socket.send_to(reply, peer).await {
            debug!(%peer, error = %e, "UDP send");
        }
    }
}

/// One client's flow to a UDP backend.
struct UdpSession {
    upstream: Arc<UdpSocket>,
    last_active: Instant,
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, UdpSession>>>;

/// UDP forwarding to the port's backend: one upstream socket per client, so replies find
/// their way back; a session ends after [`UDP_SESSION_IDLE`] without traffic.
async fn udp_proxy(
    ctx: Arc<PodCtx>,
    socket: UdpSocket,
    port: u16,
    backend: SocketAddr,
    spawner: Spawner,
) {
    let Some(local) = local_addr(&ctx, &socket, port) else {
        return;
    };
    let socket = Arc::new(socket);
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                debug!(port, error = %e, "UDP receive");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if !ctx.admits(peer, local, Protocol::Udp) {
            continue;
        }
        let existing = {
            let mut map = sessions.lock().unwrap_or_else(PoisonError::into_inner);
            map.get_mut(&peer).map(|s| {
                s.last_active = Instant::now();
                s.upstream.clone()
            })
        };
        let upstream = match existing {
            Some(u) => u,
            None => {
                let local = SocketAddr::new(
                    if backend.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    },
                    0,
                );
                let upstream = match UdpSocket::bind(local).await {
                    Ok(u) => u,
                    Err(e) => {
                        debug!(%backend, error = %e, "UDP backend socket");
                        continue;
                    }
                };
                if let Err(e) = upstream.connect(backend).await {
                    debug!(%backend, error = %e, "UDP backend connect");
                    continue;
                }
                let upstream = Arc::new(upstream);
                sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        peer,
                        UdpSession {
                            upstream: upstream.clone(),
                            last_active: Instant::now(),
                        },
                    );
                // Tracked with the agent, so the listening socket (which the task
                // shares) is closed when the agent stops.
                spawner.spawn(udp_replies(
                    socket.clone(),
                    upstream.clone(),
                    peer,
                    sessions.clone(),
                ));
                upstream
            }
        };
        if let Err(e) = upstream.send(&buf[..n]).await {
            debug!(%backend, error = %e, "UDP send to backend");
        }
    }
}

/// Carries a backend's replies to one client until the session is idle.
async fn udp_replies(
    listener: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    peer: SocketAddr,
    sessions: Sessions,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(UDP_SESSION_IDLE, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                if let Some(s) = sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_mut(&peer)
                {
                    s.last_active = Instant::now();
                }
                if let Err(e) = listener.send_to(&buf[..n], peer).await {
                    debug!(%peer, error = %e, "UDP reply");
                }
            }
            // The backend is not listening (ICMP port unreachable): the client's datagram
            // is lost, as it would be; keep the session for the next one.
            Ok(Err(e)) => debug!(%peer, error = %e, "UDP backend receive"),
            Err(_) => {
                let mut map = sessions.lock().unwrap_or_else(PoisonError::into_inner);
                if map
                    .get(&peer)
                    .is_none_or(|s| s.last_active.elapsed() >= UDP_SESSION_IDLE)
                {
                    map.remove(&peer);
                    return;
                }
            }
        }
    }
}
