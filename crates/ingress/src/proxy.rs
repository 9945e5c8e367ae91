//! Forwarding to endpoints: endpoint choice (cookie affinity, `upstream-hash-by`,
//! round-robin), the upstream connection pools (HTTP/1.1 keep-alive, HTTP/2 shared
//! connections, over TCP or TLS), the request and response header rewrites
//! (`X-Forwarded-*`, `X-Real-IP`, `X-Request-ID`, hop-by-hop headers) and the bodies.
//!
//! Connections are established before the request is handed over, so a refused connect
//! is retried on another endpoint with the request (and its body) intact. A pooled
//! HTTP/1.1 connection goes back to its pool when the response body has been read to its
//! end; one dropped half-way is closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::limits::ConnectionSlot;
use crate::table::{BackendProtocol, HashBy, Policy, UpstreamEndpoint};

/// The error type of the bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an idle upstream HTTP/1.1 connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle HTTP/1.1 connections kept per endpoint.
pub(crate) const POOL_MAX_IDLE: usize = 256;
/// Distinct endpoints tried for one request (ingress-nginx's `proxy-next-upstream-tries`).
pub const MAX_TRIES: usize = 3;

// ---------------------------------------------------------------------------------------
// Bodies

/// The request body sent upstream.
#[derive(Debug)]
pub enum ReqBody {
    /// No body (auth sub-requests, bodiless requests).
    Empty,
    /// The client's body, counted against `proxy-body-size`.
    Client(LimitedBody),
}

/// The client's request body with the `proxy-body-size` limit applied while streaming.
#[derive(Debug)]
pub struct LimitedBody {
    inner: Incoming,
    limit: Option<u64>,
    seen: u64,
    exceeded: Arc<AtomicBool>,
    progress: Arc<Progress>,
}

impl LimitedBody {
    /// Wraps `inner`; `exceeded` is set when more than `limit` bytes arrive, and
    /// `progress` follows the body on its way upstream (`proxy-send-timeout`).
    pub fn new(
        inner: Incoming,
        limit: Option<u64>,
        exceeded: Arc<AtomicBool>,
        progress: Arc<Progress>,
    ) -> LimitedBody {
        LimitedBody {
            inner,
            limit,
            seen: 0,
            exceeded,
            progress,
        }
    }
}

/// Where the exchange with the upstream stands, for ingress-nginx's timeouts:
/// `proxy-send-timeout` bounds the time between two writes of the request to the upstream,
/// `proxy-read-timeout` the time from the end of the request to the response head. Time
/// spent waiting for the client's own body counts against neither (ingress-nginx buffers
/// the body first; svcnet streams it).
#[derive(Debug)]
pub struct Progress {
    base: Instant,
    /// Milliseconds since `base` of the last change, shifted left by 2, or'ed with the
    /// phase.
    state: std::sync::atomic::AtomicU64,
}

/// Runs `exchange` (the request sent, its response head awaited) under
/// `proxy-send-timeout` and `proxy-read-timeout` as `progress` reports them: one timer,
/// moved on as the exchange progresses.
pub async fn watched<F: Future>(
    exchange: F,
    progress: &Progress,
    send: Duration,
    read: Duration,
) -> Result<F::Output, Stall> {
    let mut exchange = std::pin::pin!(exchange);
    // The first deadline from when the phase began (no clock read): one already past
    // fires the timer at once, and the check below reads the clock.
    let (_, since) = progress.get();
    let first = progress.check(since, send, read)?;
    let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(first));
    let mut sleep = std::pin::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            out = &mut exchange => return Ok(out),
            () = &mut sleep => {
                let next = progress.check(Instant::now(), send, read)?;
                sleep.as_mut().reset(tokio::time::Instant::from_std(next));
            }
        }
    }
}

/// The phases of [`Progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The body's next bytes are awaited from the client.
    Client = 0,
    /// Bytes were handed over for the upstream, which has yet to take more.
    Sending = 1,
    /// The request is sent; the response head is awaited.
    Sent = 2,
}

/// Which timeout an exchange ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// `proxy-send-timeout`: the upstream took no more of the request.
    Send,
    /// `proxy-read-timeout`: no response head after the request.
    Read,
}

impl Progress {
    /// Starts in `phase`, now.
    pub fn new(phase: Phase) -> Arc<Progress> {
        Arc::new(Progress {
            base: Instant::now(),
            state: std::sync::atomic::AtomicU64::new(phase as u64),
        })
    }

    fn set(&self, phase: Phase) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX >> 2);
        self.state
            .store((ms << 2) | phase as u64, Ordering::Relaxed);
    }

    /// When the exchange began.
    pub fn started(&self) -> Instant {
        self.base
    }

    /// The phase and when it began.
    pub fn get(&self) -> (Phase, Instant) {
        let s = self.state.load(Ordering::Relaxed);
        let phase = match s & 3 {
            0 => Phase::Client,
            1 => Phase::Sending,
            _ => Phase::Sent,
        };
        (phase, self.base + Duration::from_millis(s >> 2))
    }

    /// At `now`: the stall, if a timeout has run out, else when to look again.
    pub fn check(&self, now: Instant, send: Duration, read: Duration) -> Result<Instant, Stall> {
        let (phase, since) = self.get();
        let (deadline, stall) = match phase {
            Phase::Client => return Ok(now + send.max(Duration::from_millis(100))),
            Phase::Sending => (since + send, Stall::Send),
            Phase::Sent => (since + read, Stall::Read),
        };
        if now >= deadline {
            Err(stall)
        } else {
            Ok(deadline)
        }
    }
}

/// The error a body over `proxy-body-size` fails with.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than proxy-body-size ({0} bytes)")]
pub struct BodyTooLarge(pub u64);

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Client(b) => {
                let frame = match Pin::new(&mut b.inner).poll_frame(cx) {
                    Poll::Pending => {
                        b.progress.set(Phase::Client);
                        return Poll::Pending;
                    }
                    Poll::Ready(None) => {
                        b.progress.set(Phase::Sent);
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(Some(Ok(f))) => f,
                };
                b.progress.set(if b.inner.is_end_stream() {
                    Phase::Sent
                } else {
                    Phase::Sending
                });
                if let Some(d) = frame.data_ref() {
                    b.seen += d.len() as u64;
                    if let Some(limit) = b.limit
                        && b.seen > limit
                    {
                        b.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Client(b) => b.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Client(b) => b.inner.size_hint(),
        }
    }
}

/// Kept alive as long as the response body is: per-request guards.
#[derive(Debug, Default)]
pub struct Hold {
    /// A `limit-connections` slot.
    pub slot: Option<ConnectionSlot>,
    /// The connection's in-flight count (idle timeout).
    pub in_flight: Option<crate::server::InFlight>,
}

/// The response body sent to the client.
#[derive(Debug)]
pub struct RespBody {
    kind: RespKind,
    _hold: Hold,
}

#[derive(Debug)]
enum RespKind {
    Full(Option<Bytes>),
    Upstream(Incoming, Option<PoolReturn>, Option<Gap>),
    /// From the fast HTTP/1.1 path.
    Raw(crate::h1::Body, Option<Gap>),
}

/// `proxy-read-timeout` between two reads of a response body: armed when the body has
/// nothing to give, re-armed only after bytes came (one clock read per wait, none per
/// frame).
#[derive(Debug)]
struct Gap {
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    moved: bool,
}

impl Gap {
    /// A gap timer of `timeout`, when there is one.
    fn new(timeout: Option<Duration>) -> Option<Gap> {
        timeout.map(|timeout| Gap {
            timeout,
            sleep: None,
            moved: false,
        })
    }

    /// Called when the body has nothing to give: the error once it has been silent for
    /// `timeout`.
    fn check(gap: &mut Option<Gap>, cx: &mut Context<'_>) -> Option<BoxError> {
        let g = gap.as_mut()?;
        g.stalled(cx)
            .then(|| Box::new(BodyStalled(g.timeout)) as BoxError)
    }

    /// Called when bytes came.
    fn moved(gap: &mut Option<Gap>) {
        if let Some(g) = gap {
            g.moved = true;
        }
    }

    /// True when the body has been silent for `timeout`.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + self.timeout;
        match &mut self.sleep {
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            Some(s) if self.moved => s.as_mut().reset(deadline),
            Some(_) => {}
        }
        self.moved = false;
        self.sleep
            .as_mut()
            .is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }
}

/// A response body that stopped for longer than `proxy-read-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent no response bytes for proxy-read-timeout ({0:?})")]
pub struct BodyStalled(pub Duration);

impl RespBody {
    /// A body made by the controller.
    pub fn full(bytes: impl Into<Bytes>) -> RespBody {
        let b: Bytes = bytes.into();
        RespBody {
            kind: RespKind::Full((!b.is_empty()).then_some(b)),
            _hold: Hold::default(),
        }
    }

    /// The upstream's body; the pooled connection goes back at its end. The body fails
    /// (and the connection is closed) when it stops for `read_timeout`.
    pub fn upstream(
        body: Incoming,
        ret: Option<PoolReturn>,
        read_timeout: Option<Duration>,
    ) -> RespBody {
        let ret = match ret {
            Some(r) if body.is_end_stream() => {
                r.give_back();
                None
            }
            other => other,
        };
        RespBody {
            kind: RespKind::Upstream(body, ret, Gap::new(read_timeout)),
            _hold: Hold::default(),
        }
    }

    /// A body of the fast HTTP/1.1 path, failing when it stops for `read_timeout`.
    pub fn raw(body: crate::h1::Body, read_timeout: Option<Duration>) -> RespBody {
        RespBody {
            kind: RespKind::Raw(body, Gap::new(read_timeout)),
            _hold: Hold::default(),
        }
    }

    /// Attaches the per-request guards.
    pub fn hold(mut self, hold: Hold) -> RespBody {
        self._hold = hold;
        self
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            RespKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespKind::Raw(body, gap) => match body.poll_frame(cx) {
                // A stalled body is dropped with its connection: closed, never pooled.
                Poll::Pending => {
                    Gap::check(gap, cx).map_or(Poll::Pending, |e| Poll::Ready(Some(Err(e))))
                }
                Poll::Ready(Some(Ok(f))) => {
                    Gap::moved(gap);
                    Poll::Ready(Some(Ok(f)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(None) => Poll::Ready(None),
            },
            RespKind::Upstream(body, ret, gap) => match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => match Gap::check(gap, cx) {
                    Some(e) => {
                        // The pooled connection is dropped, not given back: closed.
                        ret.take();
                        Poll::Ready(Some(Err(e)))
                    }
                    None => Poll::Pending,
                },
                Poll::Ready(None) => {
                    if let Some(r) = ret.take() {
                        r.give_back();
                    }
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Ok(f))) => {
                    Gap::moved(gap);
                    if body.is_end_stream()
                        && let Some(r) = ret.take()
                    {
                        r.give_back();
                    }
                    Poll::Ready(Some(Ok(f)))
                }
                Poll::Ready(Some(Err(e))) => {
                    ret.take();
                    Poll::Ready(Some(Err(e.into())))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RespKind::Full(b) => b.is_none(),
            RespKind::Upstream(b, _, _) => b.is_end_stream(),
            RespKind::Raw(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RespKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespKind::Upstream(b, _, _) => b.size_hint(),
            RespKind::Raw(b, _) => b
                .remaining()
                .map_or_else(SizeHint::new, SizeHint::with_exact),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Connection pools

/// How a backend is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// HTTP/1.1 over TCP.
    H1,
    /// HTTP/1.1 over TLS.
    H1Tls,
    /// HTTP/2 cleartext (prior knowledge).
    H2c,
    /// HTTP/2 over TLS (ALPN h2).
    H2Tls,
}

impl Proto {
    /// The protocol for a `backend-protocol`.
    pub fn of(p: BackendProtocol) -> Proto {
        match p {
            BackendProtocol::Http => Proto::H1,
            BackendProtocol::Https => Proto::H1Tls,
            BackendProtocol::Grpc | BackendProtocol::H2c => Proto::H2c,
            BackendProtocol::Grpcs => Proto::H2Tls,
        }
    }

    fn is_h2(self) -> bool {
        matches!(self, Proto::H2c | Proto::H2Tls)
    }

    fn scheme(self) -> &'static str {
        match self {
            Proto::H1 | Proto::H2c => "http",
            Proto::H1Tls | Proto::H2Tls => "https",
        }
    }
}

/// The connections of one endpoint and protocol.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Vec<(http1::SendRequest<ReqBody>, Instant)>>,
    h2: Mutex<Option<http2::SendRequest<ReqBody>>>,
    /// Connections of the fast HTTP/1.1 path ([`crate::h1`]).
    raw: Arc<crate::h1::Pool>,
}

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(http1::SendRequest<ReqBody>, Instant)>> {
        // Pushes and pops leave the vector consistent: a poisoned lock is still usable.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn h2(&self) -> std::sync::MutexGuard<'_, Option<http2::SendRequest<ReqBody>>> {
        self.h2.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_empty(&self) -> bool {
        self.idle().is_empty()
            && self.h2().as_ref().is_none_or(|s| s.is_closed())
            && self.raw.is_empty()
    }
}

/// Gives a HTTP/1.1 connection back to its pool (at the end of the response body).
#[derive(Debug)]
pub struct PoolReturn {
    sender: http1::SendRequest<ReqBody>,
    pool: Arc<Pool>,
}

impl PoolReturn {
    pub(crate) fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        let mut idle = self.pool.idle();
        if idle.len() < POOL_MAX_IDLE {
            idle.push((self.sender, Instant::now()));
        }
    }
}

/// A connection ready to take one request.
#[derive(Debug)]
pub enum Conn {
    /// HTTP/1.1; `reused` when it came from the pool.
    H1 {
        /// The sender.
        sender: http1::SendRequest<ReqBody>,
        /// Where it goes back.
        pool: Option<Arc<Pool>>,
        /// From the pool (may have been closed by the peer meanwhile).
        reused: bool,
    },
    /// HTTP/2.
    H2 {
        /// The sender.
        sender: http2::SendRequest<ReqBody>,
        /// The shared connection was already open.
        reused: bool,
    },
}

impl Conn {
    /// True when it came from a pool.
    pub fn reused(&self) -> bool {
        match self {
            Conn::H1 { reused, .. } | Conn::H2 { reused, .. } => *reused,
        }
    }
}

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The endpoint refused the connection: another endpoint is tried.
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    /// `proxy-connect-timeout` elapsed.
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    /// Another socket error.
    #[error("connect to {addr}: {source}")]
    Io {
        /// The endpoint.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        /// The endpoint.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP handshake failed.
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        /// The endpoint.
        addr: SocketAddr,
        /// The error.
        source: hyper::Error,
    },
}

impl ConnectError {
    /// The `upstream_errors_total` kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectError::Refused(_) => "connect_refused",
            ConnectError::Timeout(_) => "connect_timeout",
            ConnectError::Io { .. } => "connect_error",
            ConnectError::Tls { .. } => "tls",
            ConnectError::Handshake { .. } => "protocol",
        }
    }

    /// The status answered: 504 for a timeout (as nginx), else 502.
    pub fn status(&self) -> u16 {
        match self {
            ConnectError::Timeout(_) => 504,
            _ => 502,
        }
    }
}

/// Why a request could not be sent on a connection.
#[derive(Debug)]
pub enum SendError {
    /// Not sent at all: the request is given back (retry on a fresh connection).
    NotSent(Box<Request<ReqBody>>, hyper::Error),
    /// Failed after (part of) it was sent.
    Failed(hyper::Error),
}

/// The upstream connection pools, shared by every request.
pub struct Upstreams {
    pools: Mutex<HashMap<(SocketAddr, Proto), Arc<Pool>>>,
    tls_h1: TlsConnector,
    tls_h2: TlsConnector,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    /// Empty pools.
    pub fn new() -> Result<Upstreams, rustls::Error> {
        Ok(Upstreams {
            pools: Mutex::new(HashMap::new()),
            tls_h1: TlsConnector::from(Arc::new(crate::tls::upstream_client_config(&[
                b"http/1.1",
            ])?)),
            tls_h2: TlsConnector::from(Arc::new(crate::tls::upstream_client_config(&[b"h2"])?)),
        })
    }

    fn pool(&self, addr: SocketAddr, proto: Proto) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if pools.len() > 4096 && !pools.contains_key(&(addr, proto)) {
            pools.retain(|_, p| Arc::strong_count(p) > 1 || !p.is_empty());
        }
        pools.entry((addr, proto)).or_default().clone()
    }

    /// A connection to `addr`: an idle pooled one when there is one (never for
    /// upgrades), else a new one within `connect_timeout`.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        proto: Proto,
        connect_timeout: Duration,
        upgrade: bool,
    ) -> Result<Conn, ConnectError> {
        let pool = self.pool(addr, proto);
        if proto.is_h2() {
            if let Some(s) = pool.h2().as_ref().filter(|s| !s.is_closed()) {
                return Ok(Conn::H2 {
                    sender: s.clone(),
                    reused: true,
                });
            }
        } else if !upgrade {
            let mut idle = pool.idle();
            while let Some((s, at)) = idle.pop() {
                if !s.is_closed() && at.elapsed() < POOL_IDLE {
                    return Ok(Conn::H1 {
                        sender: s,
                        pool: Some(pool.clone()),
                        reused: true,
                    });
                }
            }
        }
        self.connect(addr, proto, connect_timeout, upgrade, pool)
            .await
    }

    /// For the fast HTTP/1.1 path ([`crate::h1`]): an idle pooled cleartext connection to
    /// `addr` (unless `fresh`), no older than the pool allows at `now`, else a new one
    /// within `connect_timeout`; whether it was pooled; and its pool.
    pub async fn raw_checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        fresh: bool,
        now: Instant,
    ) -> Result<(crate::h1::Conn, bool, Arc<crate::h1::Pool>), ConnectError> {
        let pool = self.pool(addr, Proto::H1).raw.clone();
        if !fresh && let Some(c) = pool.take(POOL_IDLE, now) {
            return Ok((c, true, pool));
        }
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let tcp = connect_tcp(addr, deadline).await?;
        Ok((crate::h1::Conn::new(tcp), false, pool))
    }

    /// A new connection, bypassing the pool (after a pooled one failed).
    pub async fn fresh(
        &self,
        addr: SocketAddr,
        proto: Proto,
        connect_timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        let pool = self.pool(addr, proto);
        self.connect(addr, proto, connect_timeout, false, pool)
            .await
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        proto: Proto,
        connect_timeout: Duration,
        upgrade: bool,
        pool: Arc<Pool>,
    ) -> Result<Conn, ConnectError> {
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let tcp = connect_tcp(addr, deadline).await?;
        let io: Box<dyn IoBox> = match proto {
            Proto::H1 | Proto::H2c => Box::new(tcp),
            Proto::H1Tls | Proto::H2Tls => {
                let connector = if proto == Proto::H2Tls {
                    &self.tls_h2
                } else {
                    &self.tls_h1
                };
                // No SNI for an address, as nginx's default `proxy_ssl_server_name off`.
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
                    Err(_) => return Err(ConnectError::Timeout(addr)),
                    Ok(Err(source)) => return Err(ConnectError::Tls { addr, source }),
                    Ok(Ok(s)) => Box::new(s),
                }
            }
        };
        let io = TokioIo::new(io);
        if proto.is_h2() {
            let mut b = http2::Builder::new(TokioExecutor::new());
            b.initial_stream_window_size(1 << 20)
                .initial_connection_window_size(4 << 20);
            let (sender, conn) = b
                .handshake(io)
                .await
                .map_err(|source| ConnectError::Handshake { addr, source })?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(upstream = %addr, error = %e, "upstream h2 connection ended");
                }
            });
            *pool.h2() = Some(sender.clone());
            Ok(Conn::H2 {
                sender,
                reused: false,
            })
        } else {
            let (sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|source| ConnectError::Handshake { addr, source })?;
            if upgrade {
                tokio::spawn(async move {
                    if let Err(e) = conn.with_upgrades().await {
                        tracing::debug!(upstream = %addr, error = %e, "upstream connection ended");
                    }
                });
            } else {
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(upstream = %addr, error = %e, "upstream connection ended");
                    }
                });
            }
            Ok(Conn::H1 {
                sender,
                pool: (!upgrade).then_some(pool),
                reused: false,
            })
        }
    }

    /// Sends `req` on `conn`; the response head, and what gives the connection back.
    pub async fn send(
        conn: Conn,
        req: Request<ReqBody>,
    ) -> Result<(Response<Incoming>, Option<PoolReturn>), SendError> {
        match conn {
            Conn::H1 {
                mut sender, pool, ..
            } => {
                if let Err(e) = sender.ready().await {
                    return Err(SendError::NotSent(Box::new(req), e));
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => {
                        let ret = pool.map(|pool| PoolReturn { sender, pool });
                        Ok((resp, ret))
                    }
                    Err(mut e) => match e.take_message() {
                        Some(req) => Err(SendError::NotSent(Box::new(req), e.into_error())),
                        None => Err(SendError::Failed(e.into_error())),
                    },
                }
            }
            Conn::H2 { mut sender, .. } => match sender.try_send_request(req).await {
                Ok(resp) => Ok((resp, None)),
                Err(mut e) => match e.take_message() {
                    Some(req) => Err(SendError::NotSent(Box::new(req), e.into_error())),
                    None => Err(SendError::Failed(e.into_error())),
                },
            },
        }
    }
}

/// A TCP connection to `addr` by `deadline`, with Nagle off.
async fn connect_tcp(
    addr: SocketAddr,
    deadline: tokio::time::Instant,
) -> Result<TcpStream, ConnectError> {
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout(addr)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(ConnectError::Refused(addr));
        }
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

trait IoBox: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoBox for T {}

// ---------------------------------------------------------------------------------------
// Endpoint choice

/// What endpoint choice looks at in a request.
#[derive(Debug)]
pub struct PickRequest<'a> {
    /// Request headers (cookies, `upstream-hash-by: $http_*`).
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The request host (lower-cased, no port).
    pub host: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The query.
    pub query: Option<&'a str>,
    /// The matched route's path (default cookie path).
    pub route_path: &'a str,
    /// The route matches by regex (cookie path `/`).
    pub route_regex: bool,
}

/// An endpoint chosen, and the affinity cookie to set.
#[derive(Debug)]
pub struct Pick {
    /// Index in `backend.endpoints`.
    pub index: usize,
    /// `Set-Cookie` to add to the response.
    pub set_cookie: Option<HeaderValue>,
}

/// FNV-1a with a final avalanche: a stable hash (the same across runs and hosts).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The affinity cookie value that designates an endpoint.
pub fn affinity_token(addr: SocketAddr) -> String {
    format!("{:016x}", stable_hash(&[addr.to_string().as_bytes()]))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The value of query parameter `name` (not decoded).
fn query_arg<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn hash_key(by: &HashBy, req: &PickRequest<'_>) -> Vec<u8> {
    match by {
        HashBy::RemoteAddr => req.client_ip.to_string().into_bytes(),
        HashBy::RequestUri => match req.query {
            Some(q) => format!("{}?{}", req.path, q).into_bytes(),
            None => req.path.as_bytes().to_vec(),
        },
        HashBy::Uri => req.path.as_bytes().to_vec(),
        HashBy::Host => req.host.as_bytes().to_vec(),
        HashBy::Header(name) => req
            .headers
            .get(name)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default(),
        HashBy::Cookie(name) => cookie(req.headers, name).unwrap_or("").as_bytes().to_vec(),
        HashBy::Arg(name) => query_arg(req.query, name).unwrap_or("").as_bytes().to_vec(),
    }
}

/// Chooses one of `eps` (a backend's endpoints, or what its external name resolved to)
/// not in `tried`, per the backend's `policy`: the affinity cookie's when it still
/// designates one, else by `upstream-hash-by` (rendezvous hashing: removing an endpoint
/// moves only its own keys), else round-robin. `None` when every endpoint was tried.
pub fn pick(
    eps: &[UpstreamEndpoint],
    policy: &Policy,
    req: &PickRequest<'_>,
    rr: &AtomicUsize,
    tried: &[usize],
) -> Option<Pick> {
    let n = eps.len();
    if n == 0 || tried.len() >= n {
        return None;
    }
    if let Some(aff) = &policy.affinity {
        if let Some(value) = cookie(req.headers, &aff.name)
            && let Some(i) =
                (0..n).find(|&i| !tried.contains(&i) && affinity_token(eps[i].addr) == value)
        {
            return Some(Pick {
                index: i,
                set_cookie: None,
            });
        }
        let index = round_robin(n, rr, tried)?;
        let path = match (&aff.path, req.route_regex) {
            (Some(p), _) => p.as_str(),
            (None, true) => "/",
            (None, false) => req.route_path,
        };
        let mut c = format!(
            "{}={}; Path={}; HttpOnly",
            aff.name,
            affinity_token(eps[index].addr),
            path
        );
        if let Some(age) = aff.max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        return Some(Pick {
            index,
            set_cookie: HeaderValue::from_str(&c).ok(),
        });
    }
    if let Some(by) = &policy.upstream_hash_by {
        let key = hash_key(by, req);
        let index = (0..n)
            .filter(|i| !tried.contains(i))
            .max_by_key(|&i| stable_hash(&[&key, eps[i].addr.to_string().as_bytes()]))?;
        return Some(Pick {
            index,
            set_cookie: None,
        });
    }
    Some(Pick {
        index: round_robin(n, rr, tried)?,
        set_cookie: None,
    })
}

fn round_robin(n: usize, rr: &AtomicUsize, tried: &[usize]) -> Option<usize> {
    let start = rr.fetch_add(1, Ordering::Relaxed);
    (0..n).map(|k| (start + k) % n).find(|i| !tried.contains(i))
}

// ---------------------------------------------------------------------------------------
// Header rewriting

/// Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// True for a hop-by-hop header (and HTTP/2's `HTTP2-Settings`).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name.as_str() == "http2-settings"
}

/// The headers a message's `Connection` header names (hop-by-hop by that naming).
pub fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Removes hop-by-hop headers, and the headers named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for n in connection_named(headers) {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    headers.remove(HeaderName::from_static("http2-settings"));
}

/// True for an HTTP/1.1 `Upgrade` request (WebSocket).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// True for a WebSocket opened over HTTP/2 (RFC 8441): `CONNECT` with the `:protocol`
/// pseudo-header `websocket`.
pub fn is_h2_websocket<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_2
        && req.method() == http::Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Turns an RFC 8441 WebSocket request into the HTTP/1.1 upgrade an upstream expects
/// (RFC 6455): `GET` with `Connection: Upgrade`, `Upgrade: websocket` and a fresh
/// `Sec-WebSocket-Key` (an HTTP/2 client sends none).
pub fn h2_websocket_to_h1(parts: &mut http::request::Parts) {
    parts.method = http::Method::GET;
    parts.version = Version::HTTP_11;
    parts.extensions.remove::<hyper::ext::Protocol>();
    let key: [u8; 16] = rand::random();
    if let Ok(v) = HeaderValue::from_str(&base64(&key)) {
        parts.headers.insert(header::SEC_WEBSOCKET_KEY, v);
    }
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Standard base64 with padding (RFC 4648), for `Sec-WebSocket-Key`.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A new `X-Request-ID`: 32 hex digits, as nginx's `$request_id`.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v: u128 = rand::random();
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[usize::try_from((v >> (124 - 4 * i)) & 0xf).unwrap_or(0)];
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

/// What the forwarded headers say about the client side.
#[derive(Debug)]
pub struct Forwarded<'a> {
    /// Client address, as text.
    pub client_ip: &'a str,
    /// `http` / `https`.
    pub scheme: &'static str,
    /// The request's host as received (port included when present).
    pub host: &'a str,
    /// The listener's port.
    pub port: u16,
}

/// The fields [`forward_headers`] sets, computed once from the client's request: put
/// into a header map (hyper's client), or written straight into a request head
/// ([`crate::h1::forward_head`]).
#[derive(Debug)]
pub struct ForwardedFields<'a> {
    fwd: &'a Forwarded<'a>,
    /// `X-Forwarded-For` when the client sent one: its values, then the client.
    xff: Option<String>,
    /// `X-Request-ID` when the client sent none.
    request_id: Option<HeaderValue>,
    /// The listener port in decimal, and where its digits start.
    port: ([u8; 5], usize),
}

impl<'a> ForwardedFields<'a> {
    /// The names set here; a client's own fields of these names are replaced.
    pub const REPLACED: [&'static str; 6] = [
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "x-forwarded-scheme",
        "x-forwarded-host",
        "x-forwarded-port",
    ];

    /// The fields for a request with `headers`.
    pub fn new(headers: &HeaderMap, fwd: &'a Forwarded<'a>) -> ForwardedFields<'a> {
        let xff = HeaderName::from_static("x-forwarded-for");
        let xff = headers.contains_key(&xff).then(|| {
            let mut v = String::new();
            for prior in headers.get_all(&xff).iter().filter_map(|v| v.to_str().ok()) {
                v.push_str(prior);
                v.push_str(", ");
            }
            v.push_str(fwd.client_ip);
            v
        });
        let request_id = (!headers.contains_key("x-request-id")).then(new_request_id);
        let mut digits = [0u8; 20];
        let text = crate::h1server::fmt_u64(u64::from(fwd.port), &mut digits);
        let mut port = [0u8; 5];
        let at = port.len() - text.len();
        port[at..].copy_from_slice(text);
        ForwardedFields {
            fwd,
            xff,
            request_id,
            port: (port, at),
        }
    }

    /// True when `name` is one of [`Self::REPLACED`].
    pub fn replaces(name: &HeaderName) -> bool {
        Self::REPLACED.contains(&name.as_str())
    }

    /// Each field, valid as a header value: the `REPLACED` ones, then `X-Request-ID`
    /// when the client sent none.
    pub fn each(&self, mut f: impl FnMut(&'static str, &[u8])) {
        let valid = |v: &[u8]| v.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t');
        let ip = self.fwd.client_ip.as_bytes();
        let xff = self.xff.as_ref().map_or(ip, |x| x.as_bytes());
        if valid(xff) {
            f("x-forwarded-for", xff);
        }
        if valid(ip) {
            f("x-real-ip", ip);
        }
        let scheme: &[u8] = if self.fwd.scheme == "https" {
            b"https"
        } else {
            b"http"
        };
        f("x-forwarded-proto", scheme);
        f("x-forwarded-scheme", scheme);
        if valid(self.fwd.host.as_bytes()) {
            f("x-forwarded-host", self.fwd.host.as_bytes());
        }
        let (port, at) = &self.port;
        f("x-forwarded-port", &port[*at..]);
        if let Some(rid) = &self.request_id {
            f("x-request-id", rid.as_bytes());
        }
    }
}

/// Rewrites request headers for the upstream: hop-by-hop removed, `X-Forwarded-For`
/// appended, `X-Forwarded-Proto/-Host/-Port/-Scheme`, `X-Real-IP`, and `X-Request-ID`
/// (kept when the client sent one). Returns the request id.
pub fn forward_headers(headers: &mut HeaderMap, fwd: &Forwarded<'_>) -> HeaderValue {
    strip_hop_by_hop(headers);
    let fields = ForwardedFields::new(headers, fwd);
    fields.each(|name, value| {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    });
    headers
        .get("x-request-id")
        .cloned()
        .unwrap_or(HeaderValue::from_static(""))
}

/// The URI to send upstream: origin-form for HTTP/1.1, absolute for HTTP/2.
pub fn upstream_uri(proto: Proto, authority: &str, path_and_query: &str) -> Option<Uri> {
    if proto.is_h2() {
        Uri::builder()
            .scheme(proto.scheme())
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
            .ok()
    } else {
        path_and_query.parse().ok()
    }
}

/// The request version to use for a protocol.
pub fn upstream_version(proto: Proto) -> Version {
    if proto.is_h2() {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::table::{Backend, CookieAffinity};
    use svcnet_model::types::ObjectKey;

    #[test]
    fn base64_is_rfc_4648() {
        // RFC 4648 section 10, and RFC 6455's sample key.
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("the sample nonce", "dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
    }

    fn backend(n: u16, policy: Policy) -> Backend {
        Backend {
            service: ObjectKey::new("default", "svc"),
            service_port: Some(80),
            port_name: String::new(),
            endpoints: (0..n)
                .map(|i| UpstreamEndpoint {
                    addr: SocketAddr::from(([127, 244, 0, 1 + i as u8], 8080)),
                    pod: None,
                })
                .collect(),
            external: None,
            policy: Arc::new(policy),
            unusable: None,
        }
    }

    fn req<'a>(headers: &'a HeaderMap, path: &'a str) -> PickRequest<'a> {
        PickRequest {
            headers,
            client_ip: "192.0.2.7".parse().unwrap(),
            host: "a.test",
            path,
            query: Some("user=42&x"),
            route_path: "/app",
            route_regex: false,
        }
    }

    #[test]
    fn round_robin_skips_tried_endpoints() {
        let b = backend(3, Policy::default());
        let h = HeaderMap::new();
        let rr = AtomicUsize::new(0);
        let seq: Vec<usize> = (0..6)
            .map(|_| {
                pick(&b.endpoints, &b.policy, &req(&h, "/"), &rr, &[])
                    .unwrap()
                    .index
            })
            .collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
        assert_eq!(
            pick(&b.endpoints, &b.policy, &req(&h, "/"), &rr, &[0, 1])
                .unwrap()
                .index,
            2
        );
        assert!(pick(&b.endpoints, &b.policy, &req(&h, "/"), &rr, &[0, 1, 2]).is_none());
    }

    #[test]
    fn affinity_sets_then_follows_the_cookie() {
        let b = backend(
            4,
            Policy {
                affinity: Some(CookieAffinity {
                    name: "route".into(),
                    path: None,
                    max_age: Some(60),
                }),
                ..Policy::default()
            },
        );
        let rr = AtomicUsize::new(0);
        let first = pick(
            &b.endpoints,
            &b.policy,
            &req(&HeaderMap::new(), "/"),
            &rr,
            &[],
        )
        .unwrap();
        let set = first.set_cookie.unwrap();
        let set = set.to_str().unwrap();
        assert!(set.contains("; Path=/app; HttpOnly; Max-Age=60"), "{set}");
        let value = set.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {value}")).unwrap(),
        );
        for _ in 0..5 {
            let p = pick(&b.endpoints, &b.policy, &req(&h, "/"), &rr, &[]).unwrap();
            assert_eq!(p.index, first.index);
            assert!(p.set_cookie.is_none());
        }
        // A stale cookie gets a new endpoint and a new cookie.
        h.insert(header::COOKIE, HeaderValue::from_static("route=0000"));
        assert!(
            pick(&b.endpoints, &b.policy, &req(&h, "/"), &rr, &[])
                .unwrap()
                .set_cookie
                .is_some()
        );
    }

    #[test]
    fn hash_by_is_stable_and_consistent() {
        let policy = Policy {
            upstream_hash_by: Some(HashBy::Arg("user".into())),
            ..Policy::default()
        };
        let b5 = backend(5, policy.clone());
        let h = HeaderMap::new();
        let rr = AtomicUsize::new(0);
        let i = pick(&b5.endpoints, &b5.policy, &req(&h, "/"), &rr, &[])
            .unwrap()
            .index;
        for _ in 0..5 {
            assert_eq!(
                pick(&b5.endpoints, &b5.policy, &req(&h, "/other"), &rr, &[])
                    .unwrap()
                    .index,
                i
            );
        }
        // Removing another endpoint does not move this key.
        let mut b4 = backend(5, policy);
        let other = if i == 0 { 1 } else { 0 };
        b4.endpoints.remove(other);
        let j = pick(&b4.endpoints, &b4.policy, &req(&h, "/"), &rr, &[])
            .unwrap()
            .index;
        assert_eq!(b4.endpoints[j].addr, b5.endpoints[i].addr);
    }

    #[test]
    fn forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-drop"),
        );
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        let rid = forward_headers(
            &mut h,
            &Forwarded {
                client_ip: "192.0.2.7",
                scheme: "https",
                host: "a.test:8443",
                port: 8443,
            },
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.test:8443");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-request-id"], rid);
        assert_eq!(rid.len(), 32);
        assert!(!h.contains_key("x-drop") && !h.contains_key("connection"));
        assert!(!h.contains_key("te"));
    }
}
