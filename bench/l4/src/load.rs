//! The load generator: the same two workloads against any target address. It is kept lean
//! (one thread by default) because on a small machine it competes with the proxy for CPU.
//!
//! Client sockets are bound to one of several 127.x source addresses before connecting, so
//! that neither the client nor svcnet (which connects to the backend from the client's
//! address) runs out of ephemeral ports, and they close with a reset (`SO_LINGER` 0), so
//! that no TIME_WAIT piles up on the client side. Both targets get exactly the same.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Size of one write of the bulk workload.
const CHUNK: usize = 1 << 20;

async fn connect_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    sock.connect(to).await
}

/// One bulk run: bytes moved and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct Bulk {
    /// Bytes the sink counted, over every stream.
    pub bytes: u64,
    /// From the first connect until the last stream's sink answered its count.
    pub elapsed: Duration,
}

impl Bulk {
    /// Throughput in GB/s (10^9 bytes per second).
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e9
    }
}

/// `streams` parallel connections each send `per_stream` bytes to `to` (the sink), close
/// their write side, and wait for the sink's count, which must match.
pub async fn bulk(
    to: SocketAddr,
    streams: usize,
    per_stream: u64,
    sources: &[IpAddr],
) -> Result<Bulk> {
    let chunk: Arc<[u8]> = vec![0x5a; CHUNK].into();
    let start = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let src = sources[i % sources.len()];
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut s = connect_from(src, to).await?;
                let mut sent = 0u64;
                while sent < per_stream {
                    let n = (per_stream - sent).min(CHUNK as u64) as usize;
                    s.write_all(&chunk[..n]).await?;
                    sent += n as u64;
                }
                s.shutdown().await?;
                let mut count = [0u8; 8];
                s.read_exact(&mut count).await?;
                anyhow::Ok(u64::from_be_bytes(count))
            })
        })
        .collect();
    let mut bytes = 0;
    for t in tasks {
        let got = t.await.context("bulk stream task")??;
        if got != per_stream {
            bail!("the sink counted {got} bytes of {per_stream}");
        }
        bytes += got;
    }
    Ok(Bulk {
        bytes,
        elapsed: start.elapsed(),
    })
}

/// One run of the new-connections workload.
#[derive(Debug, Default)]
pub struct Conns {
    /// Completed connect → request → echo → close cycles.
    pub done: u64,
    /// Failed cycles (any error, or a wrong echo).
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Until the last worker stopped.
    pub elapsed: Duration,
    /// Time to connect, per completed cycle (ns), sorted.
    pub connect_ns: Vec<u64>,
    /// From writing the request until the whole echo was read, per completed cycle (ns), sorted.
    pub rtt_ns: Vec<u64>,
}

impl Conns {
    /// Completed connections per second.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
}

/// `workers` concurrent loops for `duration`: connect to `to` (the echo), write `request`
/// bytes, read them back, close with a reset. Worker `i` connects from `sources[i % n]`.
pub async fn conns(
    to: SocketAddr,
    workers: usize,
    duration: Duration,
    request: usize,
    sources: &[IpAddr],
) -> Result<Conns> {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|i| tokio::spawn(worker(to, sources[i % sources.len()], deadline, request)))
        .collect();
    let mut all = Conns::default();
    for t in tasks {
        let w = t.await.context("connection worker task")?;
        all.done += w.done;
        all.errors += w.errors;
        if all.first_error.is_none() {
            all.first_error = w.first_error;
        }
        all.connect_ns.extend(w.connect_ns);
        all.rtt_ns.extend(w.rtt_ns);
    }
    all.elapsed = start.elapsed();
    all.connect_ns.sort_unstable();
    all.rtt_ns.sort_unstable();
    Ok(all)
}

async fn worker(to: SocketAddr, src: IpAddr, deadline: Instant, request: usize) -> Conns {
    let req = vec![0x42u8; request];
    let mut echo = vec![0u8; request];
    let mut out = Conns {
        connect_ns: Vec::with_capacity(1 << 14),
        rtt_ns: Vec::with_capacity(1 << 14),
        ..Conns::default()
    };
    while Instant::now() < deadline {
        match cycle(to, src, &req, &mut echo).await {
            Ok((connect, rtt)) => {
                out.done += 1;
                out.connect_ns.push(connect.as_nanos() as u64);
                out.rtt_ns.push(rtt.as_nanos() as u64);
            }
            Err(e) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!("{e:#}"));
                }
                // Do not spin on a target that refuses.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    out
}

async fn cycle(
    to: SocketAddr,
    src: IpAddr,
    req: &[u8],
    echo: &mut [u8],
) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let mut s = tokio::time::timeout(Duration::from_secs(5), connect_from(src, to))
        .await
        .context("connect timed out")?
        .context("connect")?;
    let t1 = Instant::now();
    s.set_nodelay(true)?;
    s.write_all(req).await.context("write")?;
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(echo))
        .await
        .context("echo timed out")?
        .context("read")?;
    let t2 = Instant::now();
    if echo != req {
        bail!("the echo differs from the request");
    }
    s.set_zero_linger()?;
    drop(s);
    Ok((t1 - t0, t2 - t1))
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
