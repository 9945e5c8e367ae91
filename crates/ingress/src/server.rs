//! The Ingress server: the tokio shell around [`RouteTable::route`].
//!
//! Listeners (cleartext: HTTP/1.1 and h2c prior knowledge; TLS: ALPN `h2` and
//! `http/1.1`, certificates by SNI), connection limits and timeouts, and per request:
//! route, then the stateful middlewares in nginx's phase order (body size by
//! `Content-Length`, CORS preflight, `limit-*`, `auth-url`), then the proxy to an
//! endpoint (see [`crate::proxy`]), the access log line and the metrics.
//!
//! The table is swapped atomically by [`IngressServer::publish`]: a request in flight
//! finishes on the table it started with.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::accesslog;
use crate::auth::{self, AuthOutcome, AuthRequest};
use crate::ca::{CaError, LocalCa};
use crate::cors;
use crate::h1;
use crate::h1server;
use crate::limits::RouteLimiter;
use crate::metrics::{IngressLabels, LimitLabels, ListenerLabels, Metrics, RequestLabels};
use crate::proxy::{
    self, ConnectError, Forwarded, Hold, LimitedBody, Phase, PickRequest, Progress, Proto, ReqBody,
    RespBody, SendError, Stall, Upstreams,
};
use crate::route::RouteTable;
use crate::table::{Decision, HashBy, Reply, RouteRequest, Scheme, Upstream, UpstreamEndpoint};
use crate::tls::{CertStore, LocalCaCerts, SecretCache, SniResolver};

/// The server's settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The cleartext listener (HTTP/1.1 and h2c), if any.
    pub http_addr: Option<SocketAddr>,
    /// The TLS listener, if any.
    pub https_addr: Option<SocketAddr>,
    /// Where the local CA persists (`ca.crt`, `ca.key`).
    pub state_dir: PathBuf,
    /// Time allowed for a request head (and the TLS handshake before the first one),
    /// from its first byte: the slowloris guard. Default 10 s.
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this. Default 75 s.
    pub idle_timeout: Duration,
    /// Client connections open at most; more are closed at once. Default 10 000.
    pub max_connections: usize,
    /// The access log (default off; `svcnet up` writes it to stderr).
    pub access_log: accesslog::AccessLogConfig,
    /// Threads that serve client connections, as nginx's worker processes: each runs a
    /// single-threaded runtime with its own listeners on the same addresses
    /// (`SO_REUSEPORT`, the kernel spreads connections) and its own upstream pools, so a
    /// request never changes thread. 0 (the default): the caller's runtime serves them.
    pub workers: usize,
    /// HTTP/1.1 requests without a body or upgrade are served by the fast path
    /// ([`crate::h1server`]); `false` leaves every request to hyper. Default `true`.
    pub fast_http1: bool,
    /// Where the names of ExternalName backends outside the cluster are looked up
    /// (default: the system's resolver).
    pub resolver: crate::names::Resolver,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: None,
            https_addr: None,
            state_dir: crate::ca::default_state_dir(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            access_log: accesslog::AccessLogConfig::default(),
            workers: 0,
            fast_http1: true,
            resolver: crate::names::Resolver::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}")]
    Bind {
        /// `HTTP` or `HTTPS`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The local CA could not be loaded or created.
    #[error("local CA in {dir}")]
    Ca {
        /// The state directory.
        dir: PathBuf,
        /// Why.
        source: CaError,
    },
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The access log could not be opened.
    #[error("access log {target}")]
    AccessLog {
        /// Where it was to go.
        target: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker thread or its runtime could not start.
    #[error("ingress worker: {0}")]
    Worker(String),
}

/// Per-route state that outlives a request: limiters, round-robin cursors, and the
/// route's metric series resolved once (no label building on the request path).
#[derive(Debug)]
struct RouteState {
    limiter: Option<Arc<RouteLimiter>>,
    /// One cursor for the route's backend, then one per canary.
    rr: Box<[AtomicUsize]>,
    ingress: String,
    /// `requests_total{status="200"}` of this route.
    ok: Counter,
    duration: Histogram,
    upstream_duration: Histogram,
}

/// One published table with its per-route state.
#[derive(Debug)]
struct Generation {
    table: RouteTable,
    routes: Vec<RouteState>,
}

struct Shared {
    cfg: ServerConfig,
    snap: ArcSwap<Generation>,
    certs: Arc<ArcSwap<CertStore>>,
    secret_cache: Mutex<SecretCache>,
    limiters: Mutex<HashMap<String, Arc<RouteLimiter>>>,
    /// One set of upstream pools per worker ([`WORKER`]).
    upstreams: Vec<Upstreams>,
    metrics: Metrics,
    builder: auto::Builder<RunFirst>,
    tls: Option<TlsAcceptor>,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    open_conns: AtomicUsize,
    /// The open connections, per worker ([`WORKER`]): swept for timeouts by their
    /// worker, asked to finish or close at shutdown.
    conns: Vec<Mutex<HashMap<u64, Arc<ConnInfo>>>>,
    next_conn: AtomicU64,
    conns_changed: Notify,
    closing: watch::Sender<bool>,
    force: watch::Sender<bool>,
    accept_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    epoch: Instant,
    /// The access log.
    access: accesslog::AccessLog,
    /// Per worker ([`WORKER`]): requests answered, their bookkeeping not yet run.
    finishing: Vec<Mutex<Finishing>>,
    /// Answers for the names of ExternalName backends outside the cluster.
    names: crate::names::NameCache,
}

/// The running server. Cheap to clone (shared).
#[derive(Clone)]
pub struct IngressServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IngressServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressServer")
            .field("http", &self.shared.http_addr)
            .field("https", &self.shared.https_addr)
            .finish_non_exhaustive()
    }
}

/// A listening socket, not yet tied to a runtime. With `reuse_port`, other sockets may
/// listen on the same address (the workers').
fn bind(
    what: &'static str,
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<std::net::TcpListener, ServerError> {
    let err = |source| ServerError::Bind { what, addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    Ok(socket.into())
}

/// The listeners of one worker (or of the caller's runtime).
#[derive(Debug)]
struct Listeners {
    http: Option<std::net::TcpListener>,
    https: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Starts the accept loops on the current runtime.
    fn spawn(self, shared: &Arc<Shared>) -> Result<Vec<tokio::task::JoinHandle<()>>, ServerError> {
        let mut tasks = Vec::new();
        for (l, scheme, what) in [
            (self.http, Scheme::Http, "HTTP"),
            (self.https, Scheme::Https, "HTTPS"),
        ] {
            let Some(l) = l else { continue };
            let addr = l
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let l = TcpListener::from_std(l).map_err(|source| ServerError::Bind {
                what,
                addr,
                source,
            })?;
            tasks.push(tokio::spawn(accept_loop(shared.clone(), l, scheme)));
        }
        tasks.push(tokio::spawn(sweep(shared.clone())));
        Ok(tasks)
    }
}

thread_local! {
    /// Which worker this thread is (0 also for the caller's runtime): picks its pools.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Shared {
    /// After `force`: up to 200 ms for the closed connections to run their destructors
    /// (on every runtime that serves some).
    async fn settle(&self) {
        let until = tokio::time::Instant::now() + Duration::from_millis(200);
        while self.open_conns.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Asks every open connection to finish (`Ask::Finish`) or to close now.
    fn ask_all(&self, what: Ask) {
        for conns in &self.conns {
            for c in lock(conns).values() {
                c.state.ask(what);
            }
        }
    }

    /// The upstream pools of the worker this runs on.
    fn upstreams(&self) -> &Upstreams {
        let i = WORKER.with(std::cell::Cell::get);
        &self.upstreams[i % self.upstreams.len()]
    }
}

impl IngressServer {
    /// Binds the listeners (errors name the address and the OS reason) and starts
    /// accepting. The table is empty (every request gets 404) until [`Self::publish`].
    /// The local CA is loaded or created in `state_dir` when `https_addr` is set.
    pub async fn start(
        cfg: ServerConfig,
        registry: &mut Registry,
    ) -> Result<IngressServer, ServerError> {
        let workers = cfg.workers;
        let reuse = workers > 1;
        let http = match cfg.http_addr {
            Some(a) => Some(bind("HTTP", a, reuse)?),
            None => None,
        };
        let https = match cfg.https_addr {
            Some(a) => Some(bind("HTTPS", a, reuse)?),
            None => None,
        };
        let certs = Arc::new(ArcSwap::from_pointee(CertStore::default()));
        let tls = match &https {
            None => None,
            Some(_) => {
                let ca =
                    LocalCa::load_or_create(&cfg.state_dir).map_err(|source| ServerError::Ca {
                        dir: cfg.state_dir.clone(),
                        source,
                    })?;
                let local = Arc::new(LocalCaCerts::new(ca));
                let resolver = SniResolver::new(certs.clone(), local).map_err(ServerError::Tls)?;
                let sc = crate::tls::server_config(Arc::new(resolver))
                    .map_err(|e| ServerError::Tls(e.to_string()))?;
                Some(TlsAcceptor::from(Arc::new(sc)))
            }
        };
        let mut builder = auto::Builder::new(RunFirst);
        builder
            .http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            // The header timeout is enforced per connection below: hyper's would also
            // close idle keep-alive connections after it.
            .header_read_timeout(None);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(250)
            // RFC 8441: WebSockets over HTTP/2 (forward() turns them into HTTP/1.1 upgrades).
            .enable_connect_protocol()
            .keep_alive_interval(None);
        let upstreams = (0..workers.max(1))
            .map(|_| Upstreams::new())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let access = accesslog::AccessLog::open(&cfg.access_log).map_err(|source| {
            ServerError::AccessLog {
                target: format!("{:?}", cfg.access_log.target),
                source,
            }
        })?;
        let local_addr =
            |l: &Option<std::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let names = crate::names::NameCache::new(cfg.resolver.0.clone());
        let shared = Arc::new(Shared {
            http_addr: local_addr(&http),
            https_addr: local_addr(&https),
            cfg,
            snap: ArcSwap::from_pointee(Generation {
                table: RouteTable::empty(),
                routes: Vec::new(),
            }),
            certs,
            secret_cache: Mutex::new(SecretCache::default()),
            limiters: Mutex::new(HashMap::new()),
            upstreams,
            metrics: Metrics::register(registry),
            builder,
            tls,
            open_conns: AtomicUsize::new(0),
            conns: (0..workers.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            next_conn: AtomicU64::new(0),
            conns_changed: Notify::new(),
            closing: watch::channel(false).0,
            force: watch::channel(false).0,
            accept_tasks: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            access,
            finishing: (0..workers.max(1))
                .map(|_| Mutex::new(Finishing::default()))
                .collect(),
            names,
        });
        let first = Listeners { http, https };
        if workers == 0 {
            let tasks = first.spawn(&shared)?;
            *lock(&shared.accept_tasks) = tasks;
            return Ok(IngressServer { shared });
        }
        // Every worker after the first listens on the addresses the first one got (the
        // real ports when asked for port 0).
        let mut sets = vec![first];
        for _ in 1..workers {
            let again = |what, a: Option<SocketAddr>| a.map(|a| bind(what, a, true)).transpose();
            sets.push(Listeners {
                http: again("HTTP", shared.http_addr)?,
                https: again("HTTPS", shared.https_addr)?,
            });
        }
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        for (index, set) in sets.into_iter().enumerate() {
            let shared = shared.clone();
            let started = started_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("svcnet-ingress-{index}"))
                .spawn(move || run_worker(index, set, shared, started))
                .map_err(|e| ServerError::Worker(e.to_string()))?;
            drop(thread);
        }
        drop(started_tx);
        for _ in 0..workers {
            match started_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ServerError::Worker("a worker thread ended".into())),
            }
        }
        Ok(IngressServer { shared })
    }

    /// Swaps in a new table atomically. Certificates for its `tls_hosts()` are built
    /// here: Secret PEM parsed (cached while unchanged), local-CA ones issued on first
    /// use and cached by host across publishes. Returns per-host certificate problems;
    /// such a host is served a local-CA certificate.
    pub fn publish(&self, table: RouteTable) -> Vec<(String, String)> {
        let s = &self.shared;
        let problems = {
            let mut cache = lock(&s.secret_cache);
            let (store, problems) = CertStore::build(table.tls_hosts(), &mut cache);
            s.certs.store(Arc::new(store));
            problems
        };
        let mut old = lock(&s.limiters);
        let mut next = HashMap::new();
        let routes = table
            .routes()
            .iter()
            .map(|r| {
                let key = format!(
                    "{}|{}|{}|{:?}",
                    r.ingress,
                    r.host.as_deref().unwrap_or(""),
                    r.path,
                    r.path_type
                );
                let limiter = match old.remove(&key) {
                    Some(l) if l.limits() == &r.policy.limits => Some(l),
                    _ => RouteLimiter::new(&r.policy.limits).map(Arc::new),
                };
                if let Some(l) = &limiter {
                    next.insert(key, l.clone());
                }
                let start: usize = rand::random_range(0..1024);
                RouteState {
                    limiter,
                    rr: (0..=r.canaries.len())
                        .map(|_| AtomicUsize::new(start))
                        .collect(),
                    ok: s
                        .metrics
                        .requests
                        .get_or_create(&RequestLabels {
                            ingress: r.ingress.to_string(),
                            host: r.host.clone().unwrap_or_default(),
                            path: r.path.clone(),
                            status: 200,
                        })
                        .clone(),
                    duration: s
                        .metrics
                        .duration
                        .get_or_create(&IngressLabels {
                            ingress: r.ingress.to_string(),
                        })
                        .clone(),
                    upstream_duration: s
                        .metrics
                        .upstream_duration
                        .get_or_create(&IngressLabels {
                            ingress: r.ingress.to_string(),
                        })
                        .clone(),
                    ingress: r.ingress.to_string(),
                }
            })
            .collect();
        *old = next;
        s.snap.store(Arc::new(Generation { table, routes }));
        problems
    }

    /// The bound addresses (cleartext, TLS): the real ports when bound to port 0.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (self.shared.http_addr, self.shared.https_addr)
    }

    /// Stops accepting, asks every connection to finish its in-flight requests and
    /// close, and waits for them up to `grace`; connections still open then are closed.
    pub async fn shutdown(&self, grace: Duration) {
        let s = &self.shared;
        s.closing.send_replace(true);
        s.ask_all(Ask::Finish);
        let tasks = std::mem::take(&mut *lock(&s.accept_tasks));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = s.conns_changed.notified();
            if s.open_conns.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        s.force.send_replace(true);
        s.ask_all(Ask::Close);
        s.settle().await;
        for worker in 0..s.finishing.len() {
            s.record_finished(worker);
        }
        // The last lines of the access log, written before the process goes.
        let access = s.access.clone();
        let _ = tokio::task::spawn_blocking(move || access.close()).await;
    }
}

/// One worker thread: its runtime serves its listeners' connections until the server is
/// shut down (`force`), then the connections still open are dropped with it.
fn run_worker(
    index: usize,
    set: Listeners,
    shared: Arc<Shared>,
    started: std::sync::mpsc::Sender<Result<(), ServerError>>,
) {
    WORKER.with(|w| w.set(index));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = started.send(Err(ServerError::Worker(e.to_string())));
            return;
        }
    };
    runtime.block_on(async {
        let mut force = shared.force.subscribe();
        match set.spawn(&shared) {
            Ok(tasks) => {
                lock(&shared.accept_tasks).extend(tasks);
                let _ = started.send(Ok(()));
            }
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        }
        drop(started);
        let _ = force.wait_for(|f| *f).await;
        shared.settle().await;
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent: a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// Connections

/// Timing state of one client connection, shared by its IO wrapper, its requests and
/// its watchdog. Times are milliseconds since the server started.
#[derive(Debug)]
struct ConnState {
    epoch: Instant,
    last_read: AtomicU64,
    /// When the current request head started (+1), 0 when none is pending.
    head_start: AtomicU64,
    in_flight: AtomicUsize,
    h2: AtomicBool,
    /// What the server asks of the connection ([`Ask`]), and its task to wake then.
    asked: AtomicU8,
    waker: atomic_waker::AtomicWaker,
}

/// What the server asks of a connection, in increasing force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ask {
    /// Nothing: serve.
    Serve = 0,
    /// Finish the request in hand, then close (idle timeout, shutdown).
    Finish = 1,
    /// Close now (request-head timeout, end of the shutdown grace).
    Close = 2,
}

impl Ask {
    fn from_u8(v: u8) -> Ask {
        match v {
            0 => Ask::Serve,
            1 => Ask::Finish,
            _ => Ask::Close,
        }
    }
}

/// Resolves when the connection is asked for more than `seen`.
struct Asked<'a> {
    state: &'a ConnState,
    seen: Ask,
}

impl Future for Asked<'_> {
    type Output = Ask;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ask> {
        // Register first: an ask after the load below still wakes the task.
        self.state.waker.register(cx.waker());
        let now = self.state.asked();
        if now > self.seen {
            Poll::Ready(now)
        } else {
            Poll::Pending
        }
    }
}

impl ConnState {
    fn new(epoch: Instant) -> ConnState {
        ConnState {
            epoch,
            last_read: AtomicU64::new(0),
            head_start: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            asked: AtomicU8::new(Ask::Serve as u8),
            waker: atomic_waker::AtomicWaker::new(),
        }
    }

    fn asked(&self) -> Ask {
        Ask::from_u8(self.asked.load(Ordering::Acquire))
    }

    /// Asks for `what` (never less than asked before) and wakes the connection's task.
    fn ask(&self, what: Ask) {
        if self.asked.fetch_max(what as u8, Ordering::AcqRel) < what as u8 {
            self.waker.wake();
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn on_read(&self) {
        let now = self.now();
        self.last_read.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0
            && !self.h2.load(Ordering::Relaxed)
            && self.head_start.load(Ordering::Relaxed) == 0
        {
            self.head_start.store(now + 1, Ordering::Relaxed);
        }
    }

    /// True between requests: no head begun, none in flight.
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.head_start.load(Ordering::Relaxed) == 0
    }

    /// When the watchdog must look again, and what expires then.
    fn deadline(&self, cfg: &ServerConfig) -> (u64, Expiry) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let head = self.head_start.load(Ordering::Relaxed);
        if head != 0 {
            return (head - 1 + ms(cfg.header_timeout), Expiry::Header);
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return (self.now() + ms(cfg.idle_timeout), Expiry::Recheck);
        }
        (
            self.last_read.load(Ordering::Relaxed) + ms(cfg.idle_timeout),
            Expiry::Idle,
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
    Recheck,
}

/// One request in flight on a connection; dropped with the response body.
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl InFlight {
    fn enter(state: &Arc<ConnState>, h2: bool) -> InFlight {
        if h2 {
            state.h2.store(true, Ordering::Relaxed);
        }
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.head_start.store(0, Ordering::Relaxed);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let st = &self.0;
        st.last_read.store(st.now(), Ordering::Relaxed);
        st.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Records read activity of a client connection.
struct Activity<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_read();
        }
        r
    }
}

h1server::delegate_async_write!(Activity, inner);

/// What a request knows of its connection.
#[derive(Debug)]
struct ConnInfo {
    scheme: Scheme,
    peer: SocketAddr,
    /// The client's address as text (forwarded headers, access log).
    peer_text: Box<str>,
    port: u16,
    state: Arc<ConnState>,
}

/// Counts an open connection until dropped.
struct ConnGuard {
    shared: Arc<Shared>,
    listener: &'static str,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.open_conns.fetch_sub(1, Ordering::AcqRel);
        self.shared
            .metrics
            .active_connections
            .get_or_create(&ListenerLabels {
                listener: self.listener,
            })
            .dec();
        self.shared.conns_changed.notify_waiters();
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, scheme: Scheme) {
    let name = scheme.as_str();
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut closing = shared.closing.subscribe();
    loop {
        if *closing.borrow_and_update() {
            return;
        }
        let accepted = tokio::select! {
            _ = closing.changed() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if shared.open_conns.load(Ordering::Acquire) >= shared.cfg.max_connections {
            shared
                .metrics
                .connections_refused
                .get_or_create(&ListenerLabels { listener: name })
                .inc();
            drop(stream);
            continue;
        }
        shared.open_conns.fetch_add(1, Ordering::AcqRel);
        shared
            .metrics
            .active_connections
            .get_or_create(&ListenerLabels { listener: name })
            .inc();
        let guard = ConnGuard {
            shared: shared.clone(),
            listener: name,
        };
        tokio::spawn(serve_connection(
            shared.clone(),
            guard,
            stream,
            peer,
            scheme,
            port,
        ));
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    _guard: ConnGuard,
    stream: TcpStream,
    peer: SocketAddr,
    scheme: Scheme,
    port: u16,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::new(shared.epoch));
    let now = state.now();
    state.last_read.store(now, Ordering::Relaxed);
    // The first request head (and the TLS handshake) is due from the accept on.
    state.head_start.store(now + 1, Ordering::Relaxed);
    let io = Activity {
        inner: stream,
        state: state.clone(),
    };
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let info = Arc::new(ConnInfo {
        scheme,
        peer,
        peer_text: peer.ip().to_string().into(),
        port,
        state: state.clone(),
    });
    let _registered = Registered::new(&shared, &info);
    match (scheme, &shared.tls) {
        (Scheme::Https, Some(acceptor)) => {
            let tls = tokio::time::timeout(shared.cfg.header_timeout, acceptor.accept(io)).await;
            match tls {
                Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                    drive(&shared, TokioIo::new(tls), &info).await;
                }
                Ok(Ok(tls)) => serve_http1(&shared, tls, &info).await,
                Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
            }
        }
        _ => serve_http1(&shared, io, &info).await,
    }
}

/// hyper's executor for the HTTP/2 streams of client connections: a new stream's future
/// is polled once at once, inside the connection task that accepted it, and spawned only
/// if it has to wait (for the upstream, mostly).
///
/// Spawned straight away, a stream waited at the back of the worker's run queue: with
/// many connections ready at once (a burst), every connection task decoded its request
/// before the first request went upstream, and every response waited for the last
/// stream task's turn. Run first, a request goes upstream as soon as it is decoded, as the
/// HTTP/1.1 paths (one task per connection) always did.
///
/// The first poll uses a waker that does nothing: whatever it registered and fires
/// before the spawned task's own first poll is seen by that poll (a future is polled
/// again once spawned, and only the latest poll's waker counts).
#[derive(Clone, Copy, Debug, Default)]
pub struct RunFirst;

impl<F> hyper::rt::Executor<F> for RunFirst
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut fut = Box::pin(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if fut.as_mut().poll(&mut cx).is_pending() {
            tokio::spawn(fut);
        }
    }
}

/// An HTTP/1.1 connection (or what may turn out to be h2c): the fast path
/// ([`h1server`]) until a request needs hyper, then hyper.
async fn serve_http1<IO>(shared: &Arc<Shared>, io: IO, info: &Arc<ConnInfo>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !shared.cfg.fast_http1 {
        return drive(shared, TokioIo::new(io), info).await;
    }
    let fast = h1server::serve(
        io,
        |req| handle(shared.clone(), info.clone(), req),
        || info.state.asked() >= Ask::Finish,
    );
    // Between requests the connection can go at once; inside one it ends after the
    // response (serve() reads the ask there).
    let ended = supervised(&info.state, fast, |_| info.state.is_idle()).await;
    if let Some(h1server::Ended::Handover(io)) = ended {
        drive(shared, TokioIo::new(io), info).await;
    }
}

/// A connection served by hyper (HTTP/1.1 with bodies and upgrades, h2c, h2).
async fn drive<I>(shared: &Arc<Shared>, io: I, info: &Arc<ConnInfo>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = {
        let shared = shared.clone();
        let info = info.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let shared = shared.clone();
            let info = info.clone();
            async move { Ok::<_, Infallible>(handle(shared, info, req.map(Some)).await) }
        })
    };
    let conn = shared.builder.serve_connection_with_upgrades(io, svc);
    let ended = supervised(&info.state, conn, |c| {
        c.graceful_shutdown();
        false
    })
    .await;
    if let Some(Err(e)) = ended {
        tracing::debug!(client = %info.peer, error = %e, "connection ended with an error");
    }
}

/// Runs a connection until it ends or the server asks ([`Ask`]): `Finish` calls `finish`,
/// which says whether the connection may be dropped at once (else it runs on to the end
/// of what it has in hand); `Close` drops it. `None` when it was dropped.
///
/// Timeouts are not polled here: the worker's [`sweep`] asks. A connection's wake-ups
/// cost one atomic load besides its own work (a timer and two `watch` receivers polled
/// at every wake-up, the shared ones behind a mutex, were 4-5 % of a worker's CPU).
async fn supervised<F: Future>(
    state: &ConnState,
    conn: F,
    mut finish: impl FnMut(Pin<&mut F>) -> bool,
) -> Option<F::Output> {
    tokio::pin!(conn);
    let mut seen = Ask::Serve;
    loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => return Some(r),
            asked = Asked { state, seen } => {
                seen = asked;
                if asked == Ask::Close || finish(conn.as_mut()) {
                    return None;
                }
            }
        }
    }
}

/// A connection in its worker's registry while it lives.
struct Registered<'a> {
    shared: &'a Shared,
    worker: usize,
    id: u64,
}

impl<'a> Registered<'a> {
    fn new(shared: &'a Shared, info: &Arc<ConnInfo>) -> Registered<'a> {
        let worker = WORKER.with(std::cell::Cell::get) % shared.conns.len();
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(&shared.conns[worker]).insert(id, info.clone());
        // A shutdown that began before the insert did not see this connection.
        if *shared.closing.borrow() {
            info.state.ask(Ask::Finish);
        }
        Registered { shared, worker, id }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.shared.conns[self.worker]).remove(&self.id);
    }
}

/// The timeouts of one worker's connections, checked every few milliseconds (a quarter of
/// the shorter timeout, 10 to 250 ms): a request head not complete within the header
/// timeout (slowloris) closes its connection; a connection idle for the idle timeout is
/// asked to finish.
async fn sweep(shared: Arc<Shared>) {
    let cfg = &shared.cfg;
    let tick = (cfg.header_timeout.min(cfg.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let worker = WORKER.with(std::cell::Cell::get) % shared.conns.len();
    loop {
        every.tick().await;
        let now = u64::try_from(shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        for c in lock(&shared.conns[worker]).values() {
            let (at, what) = c.state.deadline(cfg);
            if at > now {
                continue;
            }
            match what {
                Expiry::Header => {
                    tracing::debug!(client = %c.peer, "request head timeout: closing");
                    c.state.ask(Ask::Close);
                }
                Expiry::Idle => c.state.ask(Ask::Finish),
                Expiry::Recheck => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// What one request did, for the access log and the metrics. Objects are named by their
/// place in the generation that served the request, so that the record owns no copy.
#[derive(Default)]
struct Outcome {
    route: Option<usize>,
    /// The backend of `route` the request went to ([`crate::table::Route::backend_at`]).
    backend: Option<usize>,
    /// The endpoint of that backend tried last.
    endpoint: Option<usize>,
    reason: String,
    upstream: Option<SocketAddr>,
    upstream_ms: Option<f64>,
}

/// A request answered, waiting for its metrics and access-log line.
struct Finished {
    snap: Arc<Generation>,
    out: Outcome,
    host: String,
    path: String,
    method: http::Method,
    client: std::net::IpAddr,
    status: u16,
    elapsed: Duration,
}

/// The requests a worker answered whose bookkeeping has not run yet.
#[derive(Default)]
struct Finishing {
    done: Vec<Finished>,
    /// A task to record `done` is spawned and has not taken it yet.
    scheduled: bool,
    /// The vector `done` was in the last time (its capacity kept).
    spare: Vec<Finished>,
}

impl Shared {
    /// Queues the bookkeeping of a request answered on this worker. It runs once the worker
    /// has nothing else ready (tokio's deferred yield: after the tasks woken with it, the
    /// connection that carries this response among them, have run and the driver has
    /// been polled), as nginx's log phase runs after the response is sent. A burst of
    /// responses goes out first and is recorded together after.
    fn finished(self: &Arc<Self>, f: Finished) {
        let worker = WORKER.with(std::cell::Cell::get) % self.finishing.len();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.record(&f);
        };
        let mut q = lock(&self.finishing[worker]);
        q.done.push(f);
        if q.scheduled {
            return;
        }
        q.scheduled = true;
        drop(q);
        // Records when the task is dropped too, polled or not (its runtime shutting
        // down): nothing answered goes unrecorded.
        let record = RecordOnDrop {
            shared: self.clone(),
            worker,
        };
        runtime.spawn(async move {
            let _record = record;
            tokio::task::yield_now().await;
        });
    }

    /// Records what `worker` has finished.
    fn record_finished(&self, worker: usize) {
        let Some(slot) = self.finishing.get(worker) else {
            return;
        };
        let mut done = {
            let mut q = lock(slot);
            q.scheduled = false;
            let spare = std::mem::take(&mut q.spare);
            std::mem::replace(&mut q.done, spare)
        };
        for f in &done {
            self.record(f);
        }
        done.clear();
        let mut q = lock(slot);
        if q.spare.capacity() < done.capacity() {
            q.spare = done;
        }
    }

    /// The metrics and the access-log line of one request.
    fn record(&self, f: &Finished) {
        let status = f.status;
        let out = &f.out;
        let route = out.route.and_then(|id| f.snap.table.routes().get(id));
        let state = out.route.and_then(|id| f.snap.routes.get(id));
        let ingress = state.map_or("", |s| s.ingress.as_str());
        let m = &self.metrics;
        match state {
            Some(st) if status == 200 => {
                st.ok.inc();
            }
            _ => {
                m.requests
                    .get_or_create(&RequestLabels {
                        ingress: ingress.to_string(),
                        host: match route {
                            Some(r) => r.host.clone().unwrap_or_default(),
                            None => f.host.clone(),
                        },
                        path: route.map(|r| r.path.clone()).unwrap_or_default(),
                        status,
                    })
                    .inc();
            }
        }
        match state {
            Some(st) => {
                st.duration.observe(f.elapsed.as_secs_f64());
                if let Some(ms) = out.upstream_ms {
                    st.upstream_duration.observe(ms / 1000.0);
                }
            }
            None => m
                .duration
                .get_or_create(&IngressLabels {
                    ingress: String::new(),
                })
                .observe(f.elapsed.as_secs_f64()),
        }
        let backend = route.zip(out.backend).and_then(|(r, i)| r.backend_at(i));
        let pod = backend
            .zip(out.endpoint)
            .and_then(|(b, i)| b.endpoints.get(i))
            .and_then(|e| e.pod.as_ref());
        self.access.log(&accesslog::Entry {
            ingress,
            host: &f.host,
            path: &f.path,
            method: f.method.as_str(),
            client: Some(f.client),
            service: backend.map(|b| &b.service),
            pod,
            upstream: out.upstream,
            status,
            duration_ms: f.elapsed.as_secs_f64() * 1000.0,
            upstream_ms: out.upstream_ms,
            reason: &out.reason,
        });
    }
}

/// Records a worker's finished requests when dropped (see [`Shared::finished`]).
struct RecordOnDrop {
    shared: Arc<Shared>,
    worker: usize,
}

impl Drop for RecordOnDrop {
    fn drop(&mut self) {
        self.shared.record_finished(self.worker);
    }
}

fn plain(status: u16, reason: &str, headers: Vec<(HeaderName, HeaderValue)>) -> Response<RespBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        RespBody::full(bytes::Bytes::new())
    } else {
        RespBody::full(format!("{reason}\n"))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (n, v) in headers {
        h.append(n, v);
    }
    resp
}

fn reply_response(r: &Reply) -> Response<RespBody> {
    plain(r.status, &r.reason, r.headers.clone())
}

/// The host a request names: `:authority` (HTTP/2, absolute-form) or `Host`.
fn request_host<B>(req: &Request<B>) -> &str {
    if req.version() == Version::HTTP_2
        && let Some(a) = req.uri().authority()
    {
        return a.as_str();
    }
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

async fn handle(
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    req: Request<Option<Incoming>>,
) -> Response<RespBody> {
    let start = Instant::now();
    let in_flight = InFlight::enter(&info.state, req.version() == Version::HTTP_2);
    let snap = shared.snap.load_full();
    let host = request_host(&req).to_string();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let (resp, out, slot) = process(&shared, &snap, &info, &host, req).await;
    shared.finished(Finished {
        snap,
        out,
        host,
        path,
        method,
        client: info.peer.ip(),
        status: resp.status().as_u16(),
        elapsed: start.elapsed(),
    });
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        body.hold(Hold {
            slot,
            in_flight: Some(in_flight),
        }),
    )
}

type Processed = (
    Response<RespBody>,
    Outcome,
    Option<crate::limits::ConnectionSlot>,
);

async fn process(
    shared: &Shared,
    snap: &Generation,
    info: &ConnInfo,
    host: &str,
    req: Request<Option<Incoming>>,
) -> Processed {
    let client_ip = info.peer.ip();
    // A Host that is not a valid authority gets 400 from the router (as from nginx).
    let decision = snap.table.route(&RouteRequest {
        scheme: info.scheme,
        host,
        path: req.uri().path(),
        query: req.uri().query(),
        method: req.method(),
        headers: req.headers(),
        client_ip,
        weight_draw: rand::random_range(0..100),
    });
    let up = match decision {
        Decision::Respond(r) => {
            let out = Outcome {
                route: r.route,
                reason: r.reason.clone(),
                ..Outcome::default()
            };
            return (reply_response(&r), out, None);
        }
        Decision::Proxy(up) => up,
    };
    let route = up.route;
    let backend = up.backend;
    let mut out = Outcome {
        route: Some(route.id),
        backend: route.backend_index(backend),
        ..Outcome::default()
    };
    let fail = |out: &mut Outcome, status: u16, reason: String| {
        out.reason = reason;
        plain(status, &out.reason, Vec::new())
    };
    if backend.endpoints.is_empty() && backend.external.is_none() {
        let resp = fail(
            &mut out,
            503,
            format!("no ready endpoint for service {}", backend.service),
        );
        return (resp, out, None);
    }
    let policy = &route.policy;
    // nginx checks client_max_body_size against Content-Length when the location is
    // found, before any other phase.
    if let Some(limit) = policy.proxy_body_size {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            let resp = fail(
                &mut out,
                413,
                format!("request body larger than proxy-body-size ({limit} bytes)"),
            );
            return (resp, out, None);
        }
    }
    // CORS preflight: nginx's rewrite phase, before limits and auth.
    if let Some(c) = &policy.cors
        && cors::is_preflight(req.method())
    {
        out.reason = "CORS preflight".into();
        let mut resp = Response::new(RespBody::full(bytes::Bytes::new()));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        for (n, v) in cors::preflight_headers(c, req.headers()) {
            resp.headers_mut().append(n, v);
        }
        return (resp, out, None);
    }
    let state = snap.routes.get(route.id);
    let slot = match state.and_then(|s| s.limiter.as_ref()) {
        None => None,
        Some(l) => match l.admit(client_ip, Instant::now()) {
            Ok(slot) => slot,
            Err(why) => {
                shared
                    .metrics
                    .limited
                    .get_or_create(&LimitLabels {
                        ingress: route.ingress.to_string(),
                        reason: why.as_str(),
                    })
                    .inc();
                let resp = fail(&mut out, 503, why.as_str().to_string());
                return (resp, out, None);
            }
        },
    };
    let mut auth_headers = Vec::new();
    if let Some(auth) = &policy.auth {
        let uri = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let outcome = auth::check(
            shared.upstreams(),
            &auth::LocalNames {
                table: Some(&snap.table),
                http: shared.http_addr,
                https: shared.https_addr,
            },
            auth,
            &AuthRequest {
                method: req.method(),
                headers: req.headers(),
                scheme: info.scheme.as_str(),
                host,
                uri: &uri,
                client_ip,
                port: info.port,
            },
            policy.connect_timeout,
            policy.read_timeout,
        )
        .await;
        match outcome {
            AuthOutcome::Allow(h) => auth_headers = h,
            AuthOutcome::Deny {
                status,
                headers,
                reason,
            } => {
                if status == 500 {
                    shared.metrics.upstream_error("auth");
                    tracing::warn!(ingress = %route.ingress, error = %reason, "auth-url failed");
                }
                out.reason = reason;
                return (plain(status, &out.reason, headers), out, slot);
            }
        }
    }
    let cors_headers = policy
        .cors
        .as_ref()
        .map(|c| cors::response_headers(c, req.headers()))
        .unwrap_or_default();
    // An external name's endpoints: looked up now, after every check that could refuse
    // the request, and kept for their TTL (crate::names).
    let looked_up: crate::names::Endpoints;
    let eps: &[UpstreamEndpoint] = match &backend.external {
        None => &backend.endpoints,
        Some(x) => match shared.names.resolve(&x.host, x.port).await {
            Ok(found) => {
                looked_up = found;
                &looked_up
            }
            Err(why) => {
                shared.metrics.upstream_error("resolve");
                return (fail(&mut out, 503, why), out, slot);
            }
        },
    };
    let mut resp = forward(
        shared,
        &up,
        eps,
        state,
        info,
        host,
        req,
        auth_headers,
        &mut out,
    )
    .await;
    for (n, v) in cors_headers {
        resp.headers_mut().insert(n, v);
    }
    (resp, out, slot)
}

/// A connect that failed: `None` to try another endpoint (refused, tries left), else
/// the response.
fn connect_failed(
    e: ConnectError,
    addr: SocketAddr,
    metrics: &Metrics,
    tried: &[usize],
    last_error: &mut Option<ConnectError>,
    out: &mut Outcome,
) -> Option<Response<RespBody>> {
    metrics.upstream_error(e.kind());
    tracing::debug!(upstream = %addr, error = %e, "upstream connect failed");
    let refused = matches!(e, ConnectError::Refused(_));
    *last_error = Some(e);
    if refused && tried.len() < proxy::MAX_TRIES {
        return None;
    }
    let e = last_error.take();
    out.reason = e.as_ref().map(|e| e.to_string()).unwrap_or_default();
    let status = e.map_or(502, |e| e.status());
    Some(plain(status, &out.reason, Vec::new()))
}

/// The 504 of an upstream that ran into proxy-send-timeout or proxy-read-timeout.
fn stalled(
    stall: Stall,
    addr: SocketAddr,
    metrics: &Metrics,
    out: &mut Outcome,
) -> Response<RespBody> {
    let (kind, what) = match stall {
        Stall::Read => ("read_timeout", "did not answer within proxy-read-timeout"),
        Stall::Send => (
            "send_timeout",
            "took no more of the request for proxy-send-timeout",
        ),
    };
    metrics.upstream_error(kind);
    out.reason = format!("upstream {addr} {what}");
    plain(504, &out.reason, Vec::new())
}

/// How the fast path failed.
enum FastError {
    Connect(ConnectError),
    Stall(Stall),
    Exchange(h1::Error),
}

/// One request on the fast HTTP/1.1 path: a pooled connection (or a new one), the head
/// written, the response head read under the timeouts. A pooled connection the upstream
/// had closed gets the request once more on a new one (GET and HEAD are idempotent, and
/// nginx retries them the same way).
async fn fast_exchange(
    shared: &Shared,
    addr: SocketAddr,
    bpol: &crate::table::Policy,
    head: &[u8],
    is_head: bool,
    progress: &Progress,
) -> Result<(h1::Head, h1::Body), FastError> {
    let ups = shared.upstreams();
    let mut fresh = false;
    loop {
        let (mut conn, reused, pool) = ups
            .raw_checkout(addr, bpol.connect_timeout, fresh, progress.started())
            .await
            .map_err(FastError::Connect)?;
        let answer = proxy::watched(
            h1::exchange(&mut conn, head, is_head),
            progress,
            bpol.send_timeout,
            bpol.read_timeout,
        )
        .await
        .map_err(FastError::Stall)?;
        match answer {
            Ok(h) => {
                let body = h1::Body::new(conn, &h, pool, proxy::POOL_MAX_IDLE);
                return Ok((h, body));
            }
            Err(h1::Error::Closed) if reused => fresh = true,
            Err(e) => return Err(FastError::Exchange(e)),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    shared: &Shared,
    up: &Upstream<'_>,
    eps: &[UpstreamEndpoint],
    state: Option<&RouteState>,
    info: &ConnInfo,
    host: &str,
    mut req: Request<Option<Incoming>>,
    auth_headers: Vec<(HeaderName, HeaderValue)>,
    out: &mut Outcome,
) -> Response<RespBody> {
    let route = up.route;
    let backend = up.backend;
    let bpol = &backend.policy;
    let proto = Proto::of(bpol.backend_protocol);
    // A WebSocket over HTTP/2 (RFC 8441) goes upstream as the HTTP/1.1 upgrade (RFC 6455)
    // every WebSocket server speaks, and is tunnelled like one.
    let h2_websocket = proxy::is_h2_websocket(&req);
    if h2_websocket && matches!(proto, Proto::H2c | Proto::H2Tls) {
        out.reason = "a WebSocket over HTTP/2 to an HTTP/2 backend is not supported".into();
        return plain(501, &out.reason, Vec::new());
    }
    let upgrade = proxy::is_upgrade(&req) || h2_websocket;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let upgrade_value = req.headers().get(header::UPGRADE).cloned();
    let te_trailers = req
        .headers()
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let (mut parts, body) = req.into_parts();
    let client_path = parts.uri.path().to_string();
    let client_query = parts.uri.query().map(str::to_string);
    // Endpoint choice reads headers only for the affinity cookie and some hash keys: the
    // common case copies nothing.
    let pick_headers = if bpol.affinity.is_some()
        || matches!(
            bpol.upstream_hash_by,
            Some(HashBy::Header(_) | HashBy::Cookie(_))
        ) {
        parts.headers.clone()
    } else {
        http::HeaderMap::new()
    };
    let policy = &route.policy;
    let exceeded = Arc::new(AtomicBool::new(false));
    let (body, progress) = match body {
        Some(body) if !body.is_end_stream() => {
            let progress = Progress::new(Phase::Sending);
            let body = LimitedBody::new(
                body,
                policy.proxy_body_size,
                exceeded.clone(),
                progress.clone(),
            );
            (ReqBody::Client(body), progress)
        }
        _ => (ReqBody::Empty, Progress::new(Phase::Sent)),
    };
    let authority = if host.is_empty() {
        eps.first().map(|e| e.addr.to_string()).unwrap_or_default()
    } else {
        host.to_string()
    };
    let Some(uri) = proxy::upstream_uri(proto, &authority, &up.path_and_query) else {
        out.reason = format!("cannot build upstream URI from {:?}", up.path_and_query);
        return plain(500, &out.reason, Vec::new());
    };
    let fwd = Forwarded {
        client_ip: &info.peer_text,
        scheme: info.scheme.as_str(),
        host,
        port: info.port,
    };
    // The fast path (crate::h1) for what most traffic is: a bodiless GET or HEAD, no
    // upgrade, to a cleartext HTTP/1.1 backend. Its head is written straight from the
    // client's fields.
    let is_head = parts.method == http::Method::HEAD;
    let fast = proto == Proto::H1
        && !upgrade
        && matches!(body, ReqBody::Empty)
        && (parts.method == http::Method::GET || is_head);
    let (fast_head, mut request) = if fast {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let fields = proxy::ForwardedFields::new(&parts.headers, &fwd);
        let head = h1::forward_head(
            &parts.method,
            target,
            &parts.headers,
            &fields,
            &auth_headers,
            host,
        );
        (Some(head), None)
    } else {
        proxy::forward_headers(&mut parts.headers, &fwd);
        for (n, v) in auth_headers {
            parts.headers.insert(n, v);
        }
        if proto == Proto::H2c || proto == Proto::H2Tls {
            parts.headers.remove(header::HOST);
            if te_trailers {
                parts
                    .headers
                    .insert(header::TE, HeaderValue::from_static("trailers"));
            }
        } else if !parts.headers.contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(host)
        {
            parts.headers.insert(header::HOST, v);
        }
        if h2_websocket {
            proxy::h2_websocket_to_h1(&mut parts);
        } else if let (true, Some(u)) = (upgrade, upgrade_value) {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, u);
        }
        parts.uri = uri;
        parts.version = proxy::upstream_version(proto);
        (None, Some(Request::from_parts(parts, body)))
    };

    let host_only = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.ends_with(']') || p.is_empty())
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let pick_req = PickRequest {
        headers: &pick_headers,
        client_ip: info.peer.ip(),
        host: &host_only,
        path: &client_path,
        query: client_query.as_deref(),
        route_path: &route.path,
        route_regex: route.regex,
    };
    let backend_index = out.backend.unwrap_or(0);
    let fallback_rr = AtomicUsize::new(0);
    let rr = state
        .and_then(|s| s.rr.get(backend_index))
        .unwrap_or(&fallback_rr);
    let metrics = &shared.metrics;
    let mut tried: Vec<usize> = Vec::with_capacity(1);
    let mut last_error: Option<ConnectError> = None;
    loop {
        let Some(pick) = proxy::pick(eps, bpol, &pick_req, rr, &tried) else {
            return match last_error {
                Some(e) => {
                    out.reason = e.to_string();
                    plain(e.status(), &out.reason, Vec::new())
                }
                None => {
                    out.reason = "no endpoint left to try".into();
                    plain(502, &out.reason, Vec::new())
                }
            };
        };
        tried.push(pick.index);
        let Some(ep) = eps.get(pick.index) else {
            continue;
        };
        out.upstream = Some(ep.addr);
        out.endpoint = Some(pick.index);
        if let Some(head) = &fast_head {
            let t0 = Instant::now();
            match fast_exchange(shared, ep.addr, bpol, head, is_head, &progress).await {
                Ok((h, body)) => {
                    out.upstream_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
                    let mut resp = Response::new(RespBody::raw(body, Some(bpol.read_timeout)));
                    *resp.status_mut() = h.status;
                    *resp.headers_mut() = h.headers;
                    if let Some(c) = pick.set_cookie {
                        resp.headers_mut().append(header::SET_COOKIE, c);
                    }
                    return resp;
                }
                Err(FastError::Connect(e)) => {
                    match connect_failed(e, ep.addr, metrics, &tried, &mut last_error, out) {
                        None => continue,
                        Some(r) => return r,
                    }
                }
                Err(FastError::Stall(stall)) => return stalled(stall, ep.addr, metrics, out),
                Err(FastError::Exchange(e)) => {
                    metrics.upstream_error("protocol");
                    out.reason = format!("upstream {}: {e}", ep.addr);
                    return plain(502, &out.reason, Vec::new());
                }
            }
        }
        let conn = match shared
            .upstreams()
            .checkout(ep.addr, proto, bpol.connect_timeout, upgrade)
            .await
        {
            Ok(c) => c,
            Err(e) => match connect_failed(e, ep.addr, metrics, &tried, &mut last_error, out) {
                None => continue,
                Some(r) => return r,
            },
        };
        let t0 = Instant::now();
        let mut conn = Some(conn);
        let sent = loop {
            let (Some(c), Some(r)) = (conn.take(), request.take()) else {
                break None;
            };
            let reused = c.reused();
            let exchange = proxy::watched(
                Upstreams::send(c, r),
                &progress,
                bpol.send_timeout,
                bpol.read_timeout,
            );
            match exchange.await {
                Err(stall) => return stalled(stall, ep.addr, metrics, out),
                Ok(Ok(x)) => break Some(x),
                Ok(Err(SendError::NotSent(r, _))) if reused => {
                    // A pooled connection the peer had closed: once more on a new one.
                    request = Some(*r);
                    match shared
                        .upstreams()
                        .fresh(ep.addr, proto, bpol.connect_timeout)
                        .await
                    {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            metrics.upstream_error(e.kind());
                            out.reason = e.to_string();
                            return plain(e.status(), &out.reason, Vec::new());
                        }
                    }
                }
                Ok(Err(SendError::NotSent(_, e))) | Ok(Err(SendError::Failed(e))) => {
                    if exceeded.load(Ordering::Relaxed) {
                        out.reason = format!(
                            "request body larger than proxy-body-size ({} bytes)",
                            policy.proxy_body_size.unwrap_or(0)
                        );
                        return plain(413, &out.reason, Vec::new());
                    }
                    metrics.upstream_error("protocol");
                    out.reason = format!("upstream {}: {e}", ep.addr);
                    return plain(502, &out.reason, Vec::new());
                }
            }
        };
        let Some((mut resp, ret)) = sent else {
            out.reason = "internal: request lost".into();
            return plain(500, &out.reason, Vec::new());
        };
        out.upstream_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = client_upgrade
        {
            let upstream = hyper::upgrade::on(&mut resp);
            let addr = ep.addr;
            tokio::spawn(async move {
                match tokio::try_join!(client, upstream) {
                    Ok((c, u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            tracing::debug!(upstream = %addr, error = %e, "tunnel ended");
                        }
                    }
                    Err(e) => tracing::debug!(upstream = %addr, error = %e, "upgrade failed"),
                }
            });
            let (mut parts, _) = resp.into_parts();
            if h2_websocket {
                // RFC 8441: the tunnel is open when the CONNECT stream gets a 2xx; the
                // HTTP/1.1 handshake's connection headers have no place in HTTP/2.
                parts.status = StatusCode::OK;
                parts.version = Version::HTTP_2;
                for h in [
                    header::CONNECTION,
                    header::UPGRADE,
                    header::SEC_WEBSOCKET_ACCEPT,
                    header::CONTENT_LENGTH,
                ] {
                    parts.headers.remove(h);
                }
            } else {
                parts.version = Version::HTTP_11;
            }
            return Response::from_parts(parts, RespBody::full(bytes::Bytes::new()));
        }
        let (mut parts, body) = resp.into_parts();
        proxy::strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        if let Some(c) = pick.set_cookie {
            parts.headers.append(header::SET_COOKIE, c);
        }
        let body = RespBody::upstream(body, ret, Some(bpol.read_timeout));
        return Response::from_parts(parts, body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// A stream's future runs inside `execute` up to its first wait; the rest runs on the
    /// runtime, even when what it waits for fires before the spawned task's first poll.
    #[tokio::test(flavor = "current_thread")]
    async fn run_first_polls_at_once_and_spawns_what_waits() {
        let steps = Arc::new(AtomicUsize::new(0));
        let s = steps.clone();
        RunFirst.execute(async move {
            s.fetch_add(1, SeqCst);
        });
        assert_eq!(steps.load(SeqCst), 1, "ready at once: done inside execute");

        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let s = steps.clone();
        RunFirst.execute(async move {
            s.fetch_add(1, SeqCst);
            let _ = wait.await;
            s.fetch_add(1, SeqCst);
            let _ = done.send(());
        });
        assert_eq!(steps.load(SeqCst), 2, "the first part ran inside execute");
        // Fires while only the do-nothing waker of the first poll is registered.
        go.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), finished)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(steps.load(SeqCst), 3);
    }

    /// A request's metrics and access-log line are recorded once the tasks ready with it
    /// have run, and are recorded even when its worker's runtime goes before that.
    #[tokio::test(flavor = "current_thread")]
    async fn bookkeeping_waits_for_the_ready_tasks_and_outlives_its_runtime() {
        let dir = std::env::temp_dir().join(format!("svcnet-finish-{}", std::process::id()));
        let mut registry = prometheus_client::registry::Registry::default();
        let server = IngressServer::start(
            ServerConfig {
                http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                state_dir: dir.clone(),
                ..ServerConfig::default()
            },
            &mut registry,
        )
        .await
        .unwrap();
        let shared = server.shared.clone();
        let answered = |host: &str| Finished {
            snap: shared.snap.load_full(),
            out: Outcome::default(),
            host: host.to_string(),
            path: "/".into(),
            method: http::Method::GET,
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            status: 404,
            elapsed: Duration::from_millis(1),
        };
        let registry = Arc::new(registry);
        let recorded = |host: &str| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text.contains(&format!(
                "svcnet_ingress_requests_total{{ingress=\"\",host=\"{host}\",path=\"\",status=\"404\"}} 1"
            ))
        };

        shared.finished(answered("a.test"));
        assert!(!recorded("a.test"), "recorded before anything else ran");
        let r = registry.clone();
        let seen_by_ready_task = tokio::spawn(async move {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
            text.contains("a.test")
        });
        assert!(
            !seen_by_ready_task.await.unwrap(),
            "recorded before a ready task"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(recorded("a.test"));

        let s = shared.clone();
        let b = answered("b.test");
        let before_drop = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async { s.finished(b) });
            let before = s.finishing.iter().any(|q| !lock(q).done.is_empty());
            drop(runtime);
            before
        })
        .join()
        .unwrap();
        assert!(before_drop, "b.test was recorded before its runtime went");
        assert!(recorded("b.test"), "b.test lost with its runtime");
        let _ = std::fs::remove_dir_all(dir);
    }
}
