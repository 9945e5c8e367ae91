//! Does splice(2) beat a userspace copy for the TCP forwarder on loopback?
//!
//! One process: a sink backend that reads and discards everything, and four forwarders in
//! front of it: svcnet's [`Proxy`] (its copy loop with 32, 64 and 128 KiB buffers),
//! `tokio::io::copy_bidirectional` (8 KiB buffers), and `tokio_splice::zero_copy_bidirectional`
//! (splice through a pipe, the only safe-API splice crate on crates.io). Each round sends
//! `BYTES` through each of `STREAMS` parallel connections and reports GB/s; the forwarders
//! are measured in turns, several rounds each, and the median is printed beside the ratio to
//! the direct (no proxy) path.
//!
//! Run: `cargo bench -p svcnet-proxy --bench splice` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use svcnet_model::{AddressPlan, Cluster};
use svcnet_proxy::{Proxy, ProxyConfig, ServiceTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BYTES: u64 = 1 << 30;
const STREAMS: usize = 4;
const ROUNDS: usize = 5;

async fn sink() -> SocketAddr {
    let l = TcpListener::bind("127.244.99.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                s.write_all(&total.to_be_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    addr
}

async fn simple_proxy(backend: SocketAddr, splice: bool) -> SocketAddr {
    let l = TcpListener::bind("127.97.99.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut u = TcpStream::connect(backend).await.unwrap();
                if splice {
                    tokio_splice::zero_copy_bidirectional(&mut c, &mut u)
                        .await
                        .unwrap();
                } else {
                    tokio::io::copy_bidirectional(&mut c, &mut u).await.unwrap();
                }
            });
        }
    });
    addr
}

async fn svcnet_proxy(backend: SocketAddr, vip: &str, buffer: usize) -> (Proxy, SocketAddr) {
    let port = {
        let probe = std::net::TcpListener::bind((vip, 0)).unwrap();
        probe.local_addr().unwrap().port()
    };
    let text = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: sink, namespace: bench}}
spec:
  clusterIP: {vip}
  ports: [{{port: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: sink-1, namespace: bench, labels: {{kubernetes.io/service-name: sink}}}}
addressType: IPv4
ports: [{{name: "", port: {bport}, protocol: TCP}}]
endpoints:
- addresses: ["{bip}"]
"#,
        bport = backend.port(),
        bip = backend.ip(),
    );
    let (c, d) = Cluster::from_yaml("bench.yaml", &text, &AddressPlan::default());
    let c = c.unwrap_or_else(|| panic!("{d}"));
    let mut t = ServiceTable::build(&c);
    t.retain(|f| f.service.namespace == "bench");
    let mut registry = Registry::default();
    let p = Proxy::new(
        &mut registry,
        ProxyConfig {
            copy_buffer: buffer,
            ..ProxyConfig::default()
        },
    );
    let r = p.apply(t).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    (p, format!("{vip}:{port}").parse().unwrap())
}

async fn one_stream(to: SocketAddr) {
    let mut s = TcpStream::connect(to).await.unwrap();
    s.set_nodelay(true).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut sent = 0u64;
    while sent < BYTES {
        s.write_all(&chunk).await.unwrap();
        sent += chunk.len() as u64;
    }
    s.shutdown().await.unwrap();
    let mut total = [0u8; 8];
    s.read_exact(&mut total).await.unwrap();
    assert_eq!(u64::from_be_bytes(total), sent);
}

async fn round(to: SocketAddr) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..STREAMS).map(|_| tokio::spawn(one_stream(to))).collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    (BYTES as f64 * STREAMS as f64) / secs / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let backend = sink().await;
    let (_p32, svcnet32) = svcnet_proxy(backend, "127.97.99.2", 32 * 1024).await;
    let (_p64, svcnet64) = svcnet_proxy(backend, "127.97.99.4", 64 * 1024).await;
    let (_p128, svcnet128) = svcnet_proxy(backend, "127.97.99.3", 128 * 1024).await;
    let copy = simple_proxy(backend, false).await;
    let splice = simple_proxy(backend, true).await;
    let paths = [
        ("direct (no proxy)", backend),
        ("svcnet copy loop, 32 KiB", svcnet32),
        ("svcnet copy loop, 64 KiB", svcnet64),
        ("svcnet copy loop, 128 KiB", svcnet128),
        ("tokio copy_bidirectional", copy),
        ("tokio-splice", splice),
    ];
    // Warm up every path once.
    for (_, to) in &paths {
        one_stream(*to).await;
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for _ in 0..ROUNDS {
        for (i, (_, to)) in paths.iter().enumerate() {
            results[i].push(round(*to).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let direct = median(results[0].clone());
    println!(
        "{STREAMS} streams x {} MiB, median of {ROUNDS} rounds",
        BYTES >> 20
    );
    for ((name, _), r) in paths.iter().zip(results) {
        let m = median(r);
        println!("{name:<28} {m:>6.2} GB/s  {:>5.2} x direct", m / direct);
    }
}
