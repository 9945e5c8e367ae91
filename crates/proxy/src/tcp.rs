//! TCP: accept, choose an endpoint (retrying on refusal or timeout), connect from the
//! client's address, then copy both ways with half-close.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use svcnet_model::types::Protocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::Inner;
use crate::choose::choose;
use crate::metrics::{GaugeGuard, PortMetrics};
use crate::sock;

/// Accepts until stopped (or until the proxy is dropped), one task per connection. The
/// listener closes when this returns.
pub(crate) async fn accept_loop(
    inner: Weak<Inner>,
    listener: TcpListener,
    listen: SocketAddr,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(inner) = inner.upgrade() else { return };
                    tokio::spawn(serve(inner, stream, peer, listen));
                }
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(%listen, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
}

async fn serve(inner: Arc<Inner>, client: TcpStream, peer: SocketAddr, listen: SocketAddr) {
    let _tracked = inner.track();
    let mut close = inner.close.subscribe();
    tokio::select! {
        biased;
        _ = close.wait_for(|c| *c) => {}
        () = forward(&inner, client, peer, listen) => {}
    }
}

async fn forward(inner: &Inner, client: TcpStream, peer: SocketAddr, listen: SocketAddr) {
    let Some((upstream, backend, m)) = connect(inner, peer, listen).await else {
        sock::reset(client);
        return;
    };
    m.accepted.inc();
    let _active = GaugeGuard::inc(&m.active);
    if let Err(e) = client.set_nodelay(true) {
        tracing::trace!(error = %e, "TCP_NODELAY on the client side failed");
    }
    tracing::trace!(%peer, %listen, %backend, "forwarding");
    if let Err(e) = pump(client, upstream, &m, inner.config.copy_buffer).await {
        tracing::debug!(%peer, %listen, %backend, error = %e, "connection ended with an error");
    }
}

/// Chooses and connects an endpoint. `None`: nothing serves this client (counted).
async fn connect(
    inner: &Inner,
    peer: SocketAddr,
    listen: SocketAddr,
) -> Option<(TcpStream, SocketAddr, PortMetrics)> {
    let table = inner.table.load_full();
    let Some(fe) = table.frontend(listen, Protocol::Tcp) else {
        tracing::debug!(%listen, "no frontend (listener being released)");
        return None;
    };
    let key = fe.service_port();
    let m = inner.metrics.port(&key);
    let client = peer.ip();
    let (candidates, denied) = inner.candidates(fe, client, table.client_node(client));
    if denied {
        m.refused_policy.inc();
        tracing::debug!(%peer, %listen, service = %fe.service, "every endpoint denied by NetworkPolicy; refusing");
        return None;
    }
    if candidates.is_empty() {
        m.refused_no_endpoints.inc();
        tracing::debug!(%peer, %listen, service = %fe.service, "no endpoint; refusing");
        return None;
    }
    let attempts = inner.config.connect_attempts.max(1);
    let mut tried = Vec::with_capacity(attempts.min(candidates.len()));
    while tried.len() < attempts {
        let picked = {
            let now = tokio::time::Instant::now().into_std();
            let sticky = fe
                .affinity
                .and_then(|_| inner.affinity().lookup(&key, client, now));
            choose(&candidates, sticky, &tried, &mut rand::rng()).map(|b| b.addr)
        };
        let Some(backend) = picked else { break };
        if !tried.is_empty() {
            m.connect_retries.inc();
        }
        tried.push(backend);
        match sock::connect_from(client, backend, inner.config.connect_timeout).await {
            Ok((stream, bound)) => {
                if !bound {
                    m.bind_fallbacks.inc();
                }
                if let Some(timeout) = fe.affinity {
                    let now = tokio::time::Instant::now().into_std();
                    inner.affinity().record(&key, client, backend, timeout, now);
                }
                return Some((stream, backend, m));
            }
            Err(e) => {
                m.connect_failures.inc();
                tracing::debug!(%peer, %backend, error = %e, "connect failed");
            }
        }
    }
    m.refused_connect_failed.inc();
    tracing::debug!(%peer, %listen, tried = tried.len(), "every connect failed; refusing");
    None
}

/// Copies both ways until both directions have ended. When one side stops writing (EOF),
/// the other side's write half is shut down and the opposite direction goes on. An error
/// either way ends both, with a reset, so neither peer waits on a half-dead connection.
async fn pump(
    mut client: TcpStream,
    mut upstream: TcpStream,
    m: &PortMetrics,
    buffer: usize,
) -> io::Result<()> {
    let result = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        tokio::try_join!(
            copy_half(client_read, upstream_write, &m.bytes_in, buffer),
            copy_half(upstream_read, client_write, &m.bytes_out, buffer),
        )
    };
    if result.is_err() {
        sock::reset(client);
        sock::reset(upstream);
    }
    result.map(|_| ())
}

async fn copy_half<R, W>(mut from: R, mut to: W, bytes: &Counter, buffer: usize) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pooled = BufferPool::take(buffer.max(1024));
    let buf = pooled.as_mut();
    loop {
        let n = from.read(buf).await?;
        if n == 0 {
            break;
        }
        // Counted as read: a byte taken from one peer is on its way to the other.
        bytes.inc_by(n as u64);
        to.write_all(&buf[..n]).await?;
    }
    match to.shutdown().await {
        // The peer is already gone: nothing left to tell it.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    }
}

/// Copy buffers, reused across connections. Allocating and zeroing two fresh 32 KiB
/// buffers per connection (and glibc handing the pages back with madvise, so the next
/// connection faults them in again) cost about 10% of the proxy's CPU per connection
/// in bench/l4's profile.
struct BufferPool;

/// At most this many idle buffers are kept (8 MiB at the default 32 KiB).
const POOL_MAX: usize = 256;

static POOL: std::sync::Mutex<Vec<Box<[u8]>>> = std::sync::Mutex::new(Vec::new());

/// A buffer taken from the pool; it goes back when dropped.
struct PooledBuf(Option<Box<[u8]>>);

impl BufferPool {
    fn take(size: usize) -> PooledBuf {
        let reused = POOL.lock().ok().and_then(|mut free| {
            let i = free.iter().rposition(|b| b.len() == size)?;
            Some(free.swap_remove(i))
        });
        PooledBuf(Some(
            reused.unwrap_or_else(|| vec![0u8; size].into_boxed_slice()),
        ))
    }
}

impl PooledBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or(&mut [])
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let (Some(buf), Ok(mut free)) = (self.0.take(), POOL.lock())
            && free.len() < POOL_MAX
        {
            free.push(buf);
        }
    }
}
