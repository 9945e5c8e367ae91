//! A load generator that sends requests at a steady rate: request `i` is due at
//! `start + i / RATE`, on connection `i % CONNECTIONS`, whatever the answers before it did
//! (open loop). h2load's `--rps` fires every connection's timer in the same loop turn, so
//! its requests leave in bursts of 20-60 and its percentiles mostly measure the bursts;
//! here a pacing thread (timer slack 1 ns) releases each request at its own time.
//!
//! Latency is counted from the time a request was due, not from when it left, as wrk2
//! counts it: a request that waits behind a slow one on the same HTTP/1.1 connection, or
//! behind the generator itself, is charged the wait (no coordinated omission).
//!
//! `http://` URLs are HTTP/1.1 over keep-alive connections, `https://` HTTP/2 over TLS
//! (ALPN h2, the certificate not verified: benchmarks use self-signed ones). The log has
//! h2load's `--log-file` format, one line per request: due time (µs since the epoch),
//! status (or -1 for a failure), latency in µs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(version, about = "Requests at a steady rate; latency per request")]
struct Args {
    /// Where to connect (the proxy's listener); the URL gives the Host and path.
    #[arg(long)]
    connect: SocketAddr,
    /// Requests per second, over all connections.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// Connections (kept alive).
    #[arg(long, default_value_t = 20)]
    connections: usize,
    /// How long to send for.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Where to write one line per request.
    #[arg(long)]
    log: PathBuf,
    /// `http://HOST/PATH` (HTTP/1.1) or `https://HOST/PATH` (HTTP/2 over TLS).
    url: http::Uri,
}

type Body = Empty<bytes::Bytes>;

/// One connection's sender.
enum Sender {
    H1(mpsc::UnboundedSender<Instant>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

/// What one request did: when it was due, its status (-1: failed), its latency.
type Outcome = (Instant, i32, Duration);

fn main() -> Result<()> {
    let args = Args::parse();
    if args.rate == 0 || args.connections == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("--rate, --connections and --seconds must be above 0");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = SystemTime::now();
    let epoch = Instant::now();
    let (outcomes, elapsed) = runtime.block_on(run(&args))?;
    let ok = outcomes
        .iter()
        .filter(|o| (200..300).contains(&o.1))
        .count();
    let failed = outcomes.iter().filter(|o| o.1 < 0).count();
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&args.log).with_context(|| format!("{}", args.log.display()))?,
    );
    let base = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    for (due, status, latency) in &outcomes {
        let at = base + due.saturating_duration_since(epoch);
        writeln!(log, "{}\t{status}\t{}", at.as_micros(), latency.as_micros())?;
    }
    log.flush()?;
    let secs = elapsed.as_secs_f64();
    println!(
        "finished in {secs:.2}s, {:.2} req/s",
        outcomes.len() as f64 / secs
    );
    println!(
        "requests: {} total, {ok} 2xx, {} other, {failed} failed",
        outcomes.len(),
        outcomes.len() - ok - failed
    );
    Ok(())
}

async fn run(args: &Args) -> Result<(Vec<Outcome>, Duration)> {
    let tls = args.url.scheme_str() == Some("https");
    let host = args.url.host().context("the URL has no host")?.to_string();
    let path = args
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let request = move || {
        let mut b = http::Request::get(path.as_str());
        if !tls {
            b = b.header(http::header::HOST, host.as_str());
        } else {
            b = b.uri(format!("https://{host}{path}"));
        }
        b.body(Body::new())
    };
    let request: Arc<MakeRequest> = Arc::new(request);
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        senders.push(connect(args, tls, &request, &done_tx).await?);
    }

    // The pacing thread: each request due at its own time.
    let total = (f64::from(args.rate) * args.seconds).round() as u64;
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<Instant>();
    let start = Instant::now() + Duration::from_millis(20);
    let pacer = std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            // Without it a sleep ends up to 50 µs late (the default timer slack).
            let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
            for i in 0..total {
                let due = start + gap.mul_f64(i as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if due_tx.send(due).is_err() {
                    return;
                }
            }
        })?;
    let mut i = 0usize;
    while let Some(due) = due_rx.recv().await {
        match &senders[i % senders.len()] {
            Sender::H1(queue) => {
                let _ = queue.send(due);
            }
            Sender::H2(send) => {
                let mut send = send.clone();
                let done = done_tx.clone();
                let req = request.clone();
                tokio::spawn(async move {
                    let status = match req() {
                        Ok(r) if send.ready().await.is_ok() => {
                            status_of(send.send_request(r)).await
                        }
                        _ => -1,
                    };
                    let _ = done.send((due, status, due.elapsed()));
                });
            }
        }
        i += 1;
    }
    let _ = pacer.join();
    drop(senders);
    drop(done_tx);
    let mut outcomes = Vec::with_capacity(total as usize);
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while outcomes.len() < total as usize {
        tokio::select! {
            o = done_rx.recv() => match o {
                Some(o) => outcomes.push(o),
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    let elapsed = start.elapsed();
    outcomes.sort_by_key(|o| o.0);
    Ok((outcomes, elapsed))
}

/// Builds the request every connection sends.
type MakeRequest = dyn Fn() -> http::Result<http::Request<Body>> + Send + Sync;

async fn connect(
    args: &Args,
    tls: bool,
    request: &Arc<MakeRequest>,
    done: &mpsc::UnboundedSender<Outcome>,
) -> Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(args.connect)
        .await
        .with_context(|| format!("connecting to {}", args.connect))?;
    tcp.set_nodelay(true)?;
    if tls {
        let cfg = svcnet_ingress::tls::upstream_client_config(&[b"h2"])?;
        let name = rustls_name(&args.url)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .context("HTTP/2 handshake")?;
        tokio::spawn(conn);
        return Ok(Sender::H2(send));
    }
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(conn);
    let (queue, mut due_rx) = mpsc::unbounded_channel::<Instant>();
    let done = done.clone();
    let request = request.clone();
    tokio::spawn(async move {
        // One request at a time on the connection: a request due while the one before
        // is out waits, and its latency counts the wait.
        while let Some(due) = due_rx.recv().await {
            let status = match request() {
                Ok(r) if send.ready().await.is_ok() => status_of(send.send_request(r)).await,
                _ => -1,
            };
            let _ = done.send((due, status, due.elapsed()));
        }
    });
    Ok(Sender::H1(queue))
}

fn rustls_name(url: &http::Uri) -> Result<tokio_rustls::rustls::pki_types::ServerName<'static>> {
    let host = url.host().context("the URL has no host")?.to_string();
    tokio_rustls::rustls::pki_types::ServerName::try_from(host).context("the URL's host")
}

/// The status of a response once its whole body is read, or -1 when either failed.
async fn status_of(
    resp: impl std::future::Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
) -> i32 {
    let Ok(resp) = resp.await else {
        return -1;
    };
    let status = i32::from(resp.status().as_u16());
    match resp.into_body().collect().await {
        Ok(_) => status,
        Err(_) => -1,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A keep-alive HTTP/1.1 server that answers every request 200 after `delay`.
    async fn server(delay: Duration) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok\n")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    }

    fn args(connect: SocketAddr, rate: u32, connections: usize, seconds: f64) -> Args {
        Args {
            connect,
            rate,
            connections,
            seconds,
            log: PathBuf::new(),
            url: "http://h.test/x".parse().unwrap(),
        }
    }

    /// Every request is due `1 / rate` after the one before, whatever the answers do.
    #[tokio::test]
    async fn requests_are_due_evenly_spaced() {
        let addr = server(Duration::ZERO).await;
        let (outcomes, _) = run(&args(addr, 1000, 4, 0.2)).await.unwrap();
        assert_eq!(outcomes.len(), 200);
        assert!(outcomes.iter().all(|o| o.1 == 200), "{outcomes:?}");
        for w in outcomes.windows(2) {
            assert_eq!(w[1].0 - w[0].0, Duration::from_millis(1));
        }
    }

    /// A request due while the one before it on the same HTTP/1.1 connection is still
    /// out waits for it, and its latency counts the wait (no coordinated omission).
    #[tokio::test]
    async fn a_wait_behind_a_slow_answer_is_counted() {
        // One connection, a request due every 10 ms, each answered after 30 ms: request k
        // leaves ~20 ms x k after it was due.
        let addr = server(Duration::from_millis(30)).await;
        let (outcomes, _) = run(&args(addr, 100, 1, 0.05)).await.unwrap();
        assert_eq!(outcomes.len(), 5);
        let last = outcomes.last().unwrap().2;
        assert!(last >= Duration::from_millis(30 * 5 - 40), "{outcomes:?}");
    }
}
