//! The forwarder with real sockets on 127.0.0.0/8: echo backends on pod-like addresses
//! (127.244.x.y, ports chosen by the OS), Services on unusual VIPs so parallel tests never
//! share a listener, every test bounded by a timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use svcnet_model::types::Protocol;
use svcnet_model::{AddressPlan, Cluster};
use svcnet_proxy::{Listen, Proxy, ProxyConfig, ServiceTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out");
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// Manifests

/// One endpoint: address, node, ready.
struct Ep {
    addr: SocketAddr,
    node: &'static str,
    ready: bool,
}

fn ep(addr: SocketAddr, node: &'static str) -> Ep {
    Ep {
        addr,
        node,
        ready: true,
    }
}

/// A selector-less Service with hand-written EndpointSlices (one per endpoint, since their
/// ports differ).
fn service(ns: &str, name: &str, spec: &str, protocol: &str, eps: &[Ep]) -> String {
    let mut out = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n"
    );
    for (i, e) in eps.iter().enumerate() {
        out += &format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{i}\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: \"\", port: {port}, protocol: {protocol}}}]\nendpoints:\n- addresses: [\"{ip}\"]\n  nodeName: {node}\n  conditions: {{ready: {ready}}}\n",
            port = e.addr.port(),
            ip = e.addr.ip(),
            node = e.node,
            ready = e.ready,
        );
    }
    out
}

fn cluster_ip(ns: &str, name: &str, vip: &str, port: u16, protocol: &str, eps: &[Ep]) -> String {
    let spec = format!("  clusterIP: {vip}\n  ports: [{{port: {port}, protocol: {protocol}}}]");
    service(ns, name, &spec, protocol, eps)
}

fn table(text: &str, nodes: u32) -> ServiceTable {
    let plan = AddressPlan {
        nodes,
        ..AddressPlan::default()
    };
    let (c, d) = Cluster::from_yaml("t.yaml", text, &plan);
    let Some(c) = c else {
        panic!("did not load:\n{d}")
    };
    let mut t = ServiceTable::build(&c);
    // The built-in kubernetes and kube-dns Services would collide between parallel tests.
    t.retain(|f| f.service.namespace != "default" && f.service.namespace != "kube-system");
    t
}

fn proxy(config: ProxyConfig) -> (Proxy, Registry) {
    let mut registry = Registry::default();
    let p = Proxy::new(&mut registry, config);
    (p, registry)
}

fn metrics(registry: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, registry).unwrap();
    s
}

/// The value of the first metric line that starts with `name{` and contains every needle.
fn metric(registry: &Registry, name: &str, needles: &[&str]) -> f64 {
    let text = metrics(registry);
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no {name} {needles:?} in\n{text}"))
}

// ---------------------------------------------------------------------------------------
// Backends

/// A TCP backend: greets each connection with "<its address> <peer address>\n", echoes what
/// it reads, and after the client's EOF writes "bye\n" and closes.
struct TcpBackend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tcp_backend(ip: &str) -> TcpBackend {
    let l = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, peer)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let greeting = format!("{addr} {peer}\n");
                if s.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                let _ = s.write_all(b"bye\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    TcpBackend { addr, task }
}

/// An address on which nothing listens (bound once by the OS, then closed).
async fn dead_endpoint(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    l.local_addr().unwrap()
}

/// A UDP backend: answers each datagram with "<its address> <peer address> <datagram>".
async fn udp_backend(ip: &str) -> (SocketAddr, JoinHandle<()>) {
    let s = UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let addr = s.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, peer)) = s.recv_from(&mut buf).await else {
                continue;
            };
            let reply = format!("{addr} {peer} {}", String::from_utf8_lossy(&buf[..n]));
            let _ = s.send_to(reply.as_bytes(), peer).await;
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------------
// Clients

async fn connect_from(src: &str, dst: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(ip(src), 0)).unwrap();
    s.connect(dst).await.unwrap()
}

/// Reads the backend's greeting line: (backend address, the source address it saw).
async fn greeting(s: &mut TcpStream) -> (SocketAddr, SocketAddr) {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = s.read(&mut b).await.unwrap();
        assert_eq!(n, 1, "connection closed before the greeting");
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let (a, b) = line.split_once(' ').unwrap();
    (sa(a), sa(b))
}

async fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, msg);
}

/// True when the connection is closed or reset by the proxy within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 16];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn tcp_echo_through_a_cluster_ip() {
    bounded(async {
        let b = tcp_backend("127.244.61.1").await;
        let vip = "127.96.61.1";
        let t = table(
            &cluster_ip("t61", "echo", vip, 18080, "TCP", &[ep(b.addr, "node-1")]),
            1,
        );
        let (p, reg) = proxy(ProxyConfig::default());
        let report = p.apply(t).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(
            report.bound,
            [Listen {
                addr: sa("127.96.61.1:18080"),
                protocol: Protocol::Tcp
            }]
        );

        let mut c = TcpStream::connect(sa("127.96.61.1:18080")).await.unwrap();
        let (backend, _) = greeting(&mut c).await;
        assert_eq!(backend, b.addr);
        echo_once(&mut c, b"hello through the VIP").await;
        drop(c);

        let labels = [
            "namespace=\"t61\"",
            "service=\"echo\"",
            "port=\"18080\"",
            "protocol=\"TCP\"",
        ];
        assert_eq!(
            metric(&reg, "svcnet_proxy_connections_accepted_total", &labels),
            1.0
        );
        assert_eq!(metric(&reg, "svcnet_proxy_endpoints_ready", &labels), 1.0);
        let mut with_dir = labels.to_vec();
        with_dir.push("direction=\"in\"");
        assert_eq!(metric(&reg, "svcnet_proxy_bytes_total", &with_dir), 21.0);
        assert_eq!(
            metric(&reg, "svcnet_proxy_listeners", &["protocol=\"TCP\""]),
            1.0
        );
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn connections_spread_over_three_endpoints() {
    bounded(async {
        let bs = [
            tcp_backend("127.244.62.1").await,
            tcp_backend("127.244.62.2").await,
            tcp_backend("127.244.62.3").await,
        ];
        let eps: Vec<Ep> = bs.iter().map(|b| ep(b.addr, "node-1")).collect();
        let t = table(
            &cluster_ip("t62", "echo", "127.96.62.1", 18080, "TCP", &eps),
            1,
        );
        let (p, _reg) = proxy(ProxyConfig::default());
        assert!(p.apply(t).await.errors.is_empty());
        let mut seen = BTreeSet::new();
        for _ in 0..60 {
            let mut c = TcpStream::connect(sa("127.96.62.1:18080")).await.unwrap();
            seen.insert(greeting(&mut c).await.0);
        }
        let want: BTreeSet<SocketAddr> = bs.iter().map(|b| b.addr).collect();
        assert_eq!(seen, want);
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn no_endpoints_refuses_at_once() {
    bounded(async {
        let text = cluster_ip("t63", "empty", "127.96.63.1", 18080, "TCP", &[])
            + &cluster_ip("t63", "empty-udp", "127.96.63.2", 18053, "UDP", &[]);
        let (p, reg) = proxy(ProxyConfig::default());
        assert!(p.apply(table(&text, 1)).await.errors.is_empty());

        let start = Instant::now();
        let mut c = TcpStream::connect(sa("127.96.63.1:18080")).await.unwrap();
        assert!(closed_within(&mut c, Duration::from_millis(100)).await);
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
        let labels = ["service=\"empty\"", "reason=\"no_endpoints\""];
        assert_eq!(
            metric(&reg, "svcnet_proxy_connections_refused_total", &labels),
            1.0
        );

        // UDP: the datagram is dropped (and counted); nothing comes back.
        let u = UdpSocket::bind("127.35.63.1:0").await.unwrap();
        u.send_to(b"anyone?", sa("127.96.63.2:18053"))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_millis(200), u.recv_from(&mut buf)).await;
        assert!(r.is_err(), "got a reply: {r:?}");
        let labels = ["service=\"empty-udp\"", "reason=\"no_endpoints\""];
        assert_eq!(
            metric(&reg, "svcnet_proxy_udp_packets_dropped_total", &labels),
            1.0
        );
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn a_refusing_endpoint_is_retried_on_another() {
    bounded(async {
        let live = tcp_backend("127.244.64.1").await;
        let dead1 = dead_endpoint("127.244.64.2").await;
        let dead2 = dead_endpoint("127.244.64.3").await;
        let eps = [
            ep(live.addr, "node-1"),
            ep(dead1, "node-1"),
            ep(dead2, "node-1"),
        ];
        let text = cluster_ip("t64", "flaky", "127.96.64.1", 18080, "TCP", &eps)
            + &cluster_ip(
                "t64",
                "dead",
                "127.96.64.2",
                18080,
                "TCP",
                &[ep(dead1, "node-1"), ep(dead2, "node-1")],
            );
        let (p, reg) = proxy(ProxyConfig {
            connect_attempts: 3,
            ..ProxyConfig::default()
        });
        assert!(p.apply(table(&text, 1)).await.errors.is_empty());
        for _ in 0..12 {
            let mut c = TcpStream::connect(sa("127.96.64.1:18080")).await.unwrap();
            assert_eq!(greeting(&mut c).await.0, live.addr);
        }
        let flaky = ["service=\"flaky\""];
        assert!(metric(&reg, "svcnet_proxy_connect_retries_total", &flaky) >= 1.0);
        assert!(metric(&reg, "svcnet_proxy_connect_failures_total", &flaky) >= 1.0);
        assert_eq!(
            metric(&reg, "svcnet_proxy_connections_accepted_total", &flaky),
            12.0
        );

        // Every endpoint refuses: the client is refused at once, each endpoint tried once.
        let mut c = TcpStream::connect(sa("127.96.64.2:18080")).await.unwrap();
        assert!(closed_within(&mut c, Duration::from_millis(500)).await);
        let dead = ["service=\"dead\""];
        assert_eq!(
            metric(&reg, "svcnet_proxy_connect_failures_total", &dead),
            2.0
        );
        let refused = ["service=\"dead\"", "reason=\"connect_failed\""];
        assert_eq!(
            metric(&reg, "svcnet_proxy_connections_refused_total", &refused),
            1.0
        );
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn the_endpoint_sees_the_clients_address() {
    bounded(async {
        let b = tcp_backend("127.244.65.1").await;
        let t = table(
            &cluster_ip(
                "t65",
                "echo",
                "127.96.65.1",
                18080,
                "TCP",
                &[ep(b.addr, "node-1")],
            ),
            1,
        );
        let (p, reg) = proxy(ProxyConfig::default());
        assert!(p.apply(t).await.errors.is_empty());
        for client in ["127.33.0.7", "127.33.0.8"] {
            let mut c = connect_from(client, sa("127.96.65.1:18080")).await;
            let (_, seen) = greeting(&mut c).await;
            assert_eq!(seen.ip(), ip(client));
        }
        let text = metrics(&reg);
        assert!(
            !text.lines().any(
                |l| l.starts_with("svcnet_proxy_source_bind_fallbacks_total{")
                    && !l.ends_with(" 0")
            ),
            "{text}"
        );
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn half_close_is_carried_both_ways() {
    bounded(async {
        let b = tcp_backend("127.244.66.1").await;
        let t = table(
            &cluster_ip(
                "t66",
                "echo",
                "127.96.66.1",
                18080,
                "TCP",
                &[ep(b.addr, "node-1")],
            ),
            1,
        );
        let (p, _reg) = proxy(ProxyConfig::default());
        assert!(p.apply(t).await.errors.is_empty());
        let mut c = TcpStream::connect(sa("127.96.66.1:18080")).await.unwrap();
        greeting(&mut c).await;
        c.write_all(b"request").await.unwrap();
        // The client is done sending; it still expects the whole reply.
        c.shutdown().await.unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"requestbye\n");
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn udp_flows_per_client_through_a_vip() {
    bounded(async {
        let (b1, t1) = udp_backend("127.244.67.1").await;
        let (b2, t2) = udp_backend("127.244.67.2").await;
        let eps = [ep(b1, "node-1"), ep(b2, "node-1")];
        let t = table(
            &cluster_ip("t67", "dns", "127.96.67.1", 18053, "UDP", &eps),
            1,
        );
        let (p, reg) = proxy(ProxyConfig {
            udp_idle_timeout: Duration::from_millis(300),
            ..ProxyConfig::default()
        });
        assert!(p.apply(t).await.errors.is_empty());
        let vip = sa("127.96.67.1:18053");
        let mut clients = Vec::new();
        for client in ["127.34.0.1", "127.34.0.2"] {
            let u = UdpSocket::bind((ip(client), 0)).await.unwrap();
            let mut backend_of_flow = None;
            for i in 0..3 {
                let msg = format!("{client} #{i}");
                u.send_to(msg.as_bytes(), vip).await.unwrap();
                let mut buf = [0u8; 512];
                let (n, from) = u.recv_from(&mut buf).await.unwrap();
                // Replies come from the Service address.
                assert_eq!(from, vip);
                let reply = String::from_utf8_lossy(&buf[..n]).to_string();
                let mut parts = reply.splitn(3, ' ');
                let backend = sa(parts.next().unwrap());
                let seen = sa(parts.next().unwrap());
                assert_eq!(parts.next().unwrap(), msg);
                // The endpoint sees the client's IP; one flow per client: one endpoint.
                assert_eq!(seen.ip(), ip(client));
                assert_eq!(*backend_of_flow.get_or_insert(backend), backend);
            }
            clients.push(u);
        }
        let labels = ["service=\"dns\"", "protocol=\"UDP\""];
        assert_eq!(metric(&reg, "svcnet_proxy_udp_flows_active", &labels), 2.0);
        assert_eq!(
            metric(&reg, "svcnet_proxy_connections_accepted_total", &labels),
            2.0
        );
        // Idle flows close.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(metric(&reg, "svcnet_proxy_udp_flows_active", &labels), 0.0);
        // A new datagram opens a new flow.
        clients[0].send_to(b"again", vip).await.unwrap();
        let mut buf = [0u8; 512];
        let (_, from) = clients[0].recv_from(&mut buf).await.unwrap();
        assert_eq!(from, vip);
        assert_eq!(metric(&reg, "svcnet_proxy_udp_flows_active", &labels), 1.0);
        p.shutdown(Duration::from_secs(1)).await;
        t1.abort();
        t2.abort();
    })
    .await;
}

#[tokio::test]
async fn apply_keeps_established_connections_and_rebinds_only_what_changed() {
    bounded(async {
        let b = tcp_backend("127.244.68.1").await;
        let one = cluster_ip(
            "t68",
            "one",
            "127.96.68.1",
            18080,
            "TCP",
            &[ep(b.addr, "node-1")],
        );
        let two = cluster_ip(
            "t68",
            "two",
            "127.96.68.2",
            18080,
            "TCP",
            &[ep(b.addr, "node-1")],
        );
        let (p, _reg) = proxy(ProxyConfig::default());
        let r = p.apply(table(&one, 1)).await;
        assert_eq!(r.bound.len(), 1);

        let mut c = TcpStream::connect(sa("127.96.68.1:18080")).await.unwrap();
        greeting(&mut c).await;
        echo_once(&mut c, b"before").await;

        // Add a Service: one listener bound, the other kept (same socket).
        let r = p.apply(table(&(one.clone() + &two), 1)).await;
        let listen = |a: &str| Listen {
            addr: sa(a),
            protocol: Protocol::Tcp,
        };
        assert_eq!(r.bound, [listen("127.96.68.2:18080")]);
        assert_eq!(r.kept, [listen("127.96.68.1:18080")]);
        assert!(r.released.is_empty() && r.errors.is_empty());
        echo_once(&mut c, b"after adding").await;
        let mut c2 = TcpStream::connect(sa("127.96.68.2:18080")).await.unwrap();
        greeting(&mut c2).await;

        // Remove the first Service: its listener closes, its connection stays.
        let r = p.apply(table(&two, 1)).await;
        assert_eq!(r.released, [listen("127.96.68.1:18080")]);
        assert_eq!(r.kept, [listen("127.96.68.2:18080")]);
        echo_once(&mut c, b"after removing").await;
        let refused = TcpStream::connect(sa("127.96.68.1:18080")).await;
        assert!(refused.is_err(), "the released listener still accepts");
        assert_eq!(p.listeners().await, [listen("127.96.68.2:18080")]);

        // An identical table changes nothing.
        let r = p.apply(table(&two, 1)).await;
        assert!(r.bound.is_empty() && r.released.is_empty());
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn node_ports_on_every_node_and_localhost_with_local_policy() {
    bounded(async {
        let b1 = tcp_backend("127.244.69.1").await;
        let b2 = tcp_backend("127.244.69.2").await;
        let eps = [ep(b1.addr, "node-1"), ep(b2.addr, "node-2")];
        let spec = "  type: NodePort\n  clusterIP: 127.96.69.1\n  externalTrafficPolicy: Local\n  ports: [{port: 18080, nodePort: 31869}]";
        let t = table(&service("t69", "np", spec, "TCP", &eps), 2);
        let (p, _reg) = proxy(ProxyConfig::default());
        let r = p.apply(t).await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let bound: BTreeSet<String> = r.bound.iter().map(|l| l.addr.to_string()).collect();
        let want: BTreeSet<String> = ["127.96.69.1:18080", "127.0.1.1:31869", "127.0.1.2:31869", "127.0.0.1:31869"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(bound, want);
        // From the host (outside every node), Local keeps the receiving node's endpoints:
        // node-2's address reaches node-2's pod, 127.0.0.1 counts as node-1.
        for _ in 0..8 {
            let mut c = connect_from("127.0.0.1", sa("127.0.1.2:31869")).await;
            assert_eq!(greeting(&mut c).await.0, b2.addr);
            let mut c = connect_from("127.0.0.1", sa("127.0.0.1:31869")).await;
            assert_eq!(greeting(&mut c).await.0, b1.addr);
            let mut c = connect_from("127.0.0.1", sa("127.0.1.1:31869")).await;
            assert_eq!(greeting(&mut c).await.0, b1.addr);
        }
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn session_affinity_sticks_to_one_endpoint() {
    bounded(async {
        let bs = [
            tcp_backend("127.244.70.1").await,
            tcp_backend("127.244.70.2").await,
            tcp_backend("127.244.70.3").await,
        ];
        let eps: Vec<Ep> = bs.iter().map(|b| ep(b.addr, "node-1")).collect();
        let spec =
            "  clusterIP: 127.96.70.1\n  sessionAffinity: ClientIP\n  ports: [{port: 18080}]";
        let t = table(&service("t70", "sticky", spec, "TCP", &eps), 1);
        let (p, _reg) = proxy(ProxyConfig::default());
        assert!(p.apply(t).await.errors.is_empty());
        for client in ["127.36.0.1", "127.36.0.2"] {
            let mut seen = BTreeSet::new();
            for _ in 0..10 {
                let mut c = connect_from(client, sa("127.96.70.1:18080")).await;
                seen.insert(greeting(&mut c).await.0);
            }
            assert_eq!(seen.len(), 1, "{client}: {seen:?}");
        }
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn admission_check_filters_endpoints() {
    bounded(async {
        let allowed = tcp_backend("127.244.71.1").await;
        let denied = tcp_backend("127.244.71.2").await;
        let eps = [ep(allowed.addr, "node-1"), ep(denied.addr, "node-1")];
        let t = table(
            &cluster_ip("t71", "guarded", "127.96.71.1", 18080, "TCP", &eps),
            1,
        );
        let denied_addr = denied.addr;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let asked2 = asked.clone();
        let (p, _reg) = proxy(ProxyConfig {
            admit: Some(Arc::new(move |client, b, proto, port| {
                asked2.lock().unwrap().push((client, proto, port));
                b.addr != denied_addr
            })),
            ..ProxyConfig::default()
        });
        assert!(p.apply(t).await.errors.is_empty());
        for _ in 0..10 {
            let mut c = connect_from("127.37.0.1", sa("127.96.71.1:18080")).await;
            assert_eq!(greeting(&mut c).await.0, allowed.addr);
        }
        let asked = asked.lock().unwrap().clone();
        assert!(
            asked
                .iter()
                .all(|(c, proto, _)| *c == ip("127.37.0.1") && *proto == Protocol::Tcp)
        );
        assert!(asked.iter().any(|(_, _, port)| *port == denied_addr.port()));
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn not_ready_endpoints_are_not_used_while_a_ready_one_exists() {
    bounded(async {
        let ready = tcp_backend("127.244.72.1").await;
        let not_ready = tcp_backend("127.244.72.2").await;
        let eps = [
            ep(ready.addr, "node-1"),
            Ep {
                addr: not_ready.addr,
                node: "node-1",
                ready: false,
            },
        ];
        let t = table(
            &cluster_ip("t72", "r", "127.96.72.1", 18080, "TCP", &eps),
            1,
        );
        let (p, _reg) = proxy(ProxyConfig::default());
        assert!(p.apply(t).await.errors.is_empty());
        for _ in 0..10 {
            let mut c = TcpStream::connect(sa("127.96.72.1:18080")).await.unwrap();
            assert_eq!(greeting(&mut c).await.0, ready.addr);
        }
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_drains_then_closes() {
    bounded(async {
        let b = tcp_backend("127.244.73.1").await;
        let t = table(
            &cluster_ip(
                "t73",
                "echo",
                "127.96.73.1",
                18080,
                "TCP",
                &[ep(b.addr, "node-1")],
            ),
            1,
        );
        let (p, _reg) = proxy(ProxyConfig::default());
        assert!(p.apply(t.clone()).await.errors.is_empty());
        let mut c = TcpStream::connect(sa("127.96.73.1:18080")).await.unwrap();
        greeting(&mut c).await;
        assert_eq!(p.connections(), 1);

        let start = Instant::now();
        let p2 = p.clone();
        let stopping = tokio::spawn(async move { p2.shutdown(Duration::from_millis(300)).await });
        // Draining: the listener is gone, the connection still works.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(TcpStream::connect(sa("127.96.73.1:18080")).await.is_err());
        echo_once(&mut c, b"still here").await;
        // After the deadline it is closed.
        stopping.await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(closed_within(&mut c, Duration::from_millis(500)).await);
        assert_eq!(p.connections(), 0);
        // Nothing is bound after a shutdown.
        let r = p.apply(t).await;
        assert!(r.bound.is_empty() && !r.errors.is_empty());

        // Without connections, shutdown returns at once.
        let (q, _reg) = proxy(ProxyConfig::default());
        let start = Instant::now();
        q.shutdown(Duration::from_secs(5)).await;
        assert!(start.elapsed() < Duration::from_secs(1));
    })
    .await;
}

#[tokio::test]
async fn udp_flows_end_when_their_endpoint_goes() {
    bounded(async {
        let (b1, t1) = udp_backend("127.244.74.1").await;
        let (b2, t2) = udp_backend("127.244.74.2").await;
        let vip = sa("127.96.74.1:18053");
        let first = cluster_ip(
            "t74",
            "dns",
            "127.96.74.1",
            18053,
            "UDP",
            &[ep(b1, "node-1")],
        );
        let second = cluster_ip(
            "t74",
            "dns",
            "127.96.74.1",
            18053,
            "UDP",
            &[ep(b2, "node-1")],
        );
        let (p, reg) = proxy(ProxyConfig::default());
        assert!(p.apply(table(&first, 1)).await.errors.is_empty());
        let u = UdpSocket::bind("127.38.0.1:0").await.unwrap();
        let ask = |msg: &'static str| {
            let u = &u;
            async move {
                u.send_to(msg.as_bytes(), vip).await.unwrap();
                let mut buf = [0u8; 512];
                let (n, _) = u.recv_from(&mut buf).await.unwrap();
                let reply = String::from_utf8_lossy(&buf[..n]).to_string();
                sa(reply.split(' ').next().unwrap())
            }
        };
        assert_eq!(ask("one").await, b1);
        let labels = ["service=\"dns\"", "namespace=\"t74\""];
        assert_eq!(metric(&reg, "svcnet_proxy_udp_flows_active", &labels), 1.0);
        // The endpoint is replaced: the flow is closed (as kube-proxy flushes UDP conntrack
        // entries) and the next datagram goes to the new endpoint.
        let r = p.apply(table(&second, 1)).await;
        assert_eq!(r.kept.len(), 1);
        assert_eq!(ask("two").await, b2);
        assert_eq!(metric(&reg, "svcnet_proxy_udp_flows_active", &labels), 1.0);
        assert_eq!(
            metric(&reg, "svcnet_proxy_connections_accepted_total", &labels),
            2.0
        );
        p.shutdown(Duration::from_secs(1)).await;
        assert_eq!(metric(&reg, "svcnet_proxy_udp_flows_active", &labels), 0.0);
        t1.abort();
        t2.abort();
    })
    .await;
}

#[tokio::test]
async fn bind_errors_are_reported_and_retried_by_the_next_apply() {
    bounded(async {
        let b = tcp_backend("127.244.75.1").await;
        let text = cluster_ip(
            "t75",
            "echo",
            "127.96.75.1",
            18080,
            "TCP",
            &[ep(b.addr, "node-1")],
        );
        let squatter = std::net::TcpListener::bind("127.96.75.1:18080").unwrap();
        let (p, _reg) = proxy(ProxyConfig::default());
        let r = p.apply(table(&text, 1)).await;
        assert!(r.bound.is_empty());
        assert_eq!(r.errors.len(), 1);
        let e = r.errors[0].to_string();
        assert!(
            e.starts_with("cannot listen on TCP 127.96.75.1:18080: "),
            "{e}"
        );
        drop(squatter);
        let r = p.apply(table(&text, 1)).await;
        assert_eq!(r.bound.len(), 1, "{:?}", r.errors);
        let mut c = TcpStream::connect(sa("127.96.75.1:18080")).await.unwrap();
        assert_eq!(greeting(&mut c).await.0, b.addr);
        p.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}
