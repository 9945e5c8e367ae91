//! Pod agents over real loopback sockets. Each test uses its own 127.250.N.0/24 so the
//! tests can run in parallel; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use svcnet_model::types::{ObjectKey, Protocol};
use svcnet_model::{AddressPlan, Cluster};
use svcnet_sandbox::{Agents, ApplyReport, ReadinessChange, SandboxConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn cluster(yaml: &str) -> Cluster {
    let (c, diags) = Cluster::from_yaml("t.yaml", yaml, &AddressPlan::default());
    c.unwrap_or_else(|| panic!("manifests do not load: {diags:?}"))
}

/// A pod with the given IP, ports (`8080` or `8080/UDP`), and extra YAML under `spec.containers[0]`.
fn pod(
    ns: &str,
    name: &str,
    ip: &str,
    ports: &[&str],
    container_extra: &str,
    annotations: &[(&str, String)],
) -> String {
    let mut y =
        format!("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n");
    if !annotations.is_empty() {
        y.push_str("  annotations:\n");
        for (k, v) in annotations {
            y.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    y.push_str("spec:\n  containers:\n  - name: app\n");
    if !ports.is_empty() {
        y.push_str("    ports:\n");
        for p in ports {
            let (port, proto) = p.split_once('/').unwrap_or((p, "TCP"));
            y.push_str(&format!(
                "    - containerPort: {port}\n      protocol: {proto}\n"
            ));
        }
    }
    y.push_str(container_extra);
    y.push_str(&format!("status:\n  podIP: {ip}\n"));
    y
}

fn new_agents(config: SandboxConfig) -> (Agents, Reports) {
    let (tx, rx) = unbounded_channel();
    (
        Agents::new(config, tx),
        Reports {
            rx,
            pending: Vec::new(),
        },
    )
}

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(ns, name)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

/// One HTTP/1.1 GET on a fresh connection.
async fn get(to: &str, path: &str) -> Answer {
    timeout(T, async {
        let stream = TcpStream::connect(addr(to)).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", to)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
    .expect("GET timed out")
}

async fn get_json(to: &str, path: &str) -> Value {
    let a = get(to, path).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

/// Readiness reports, kept per pod until a test asks for them.
struct Reports {
    rx: UnboundedReceiver<ReadinessChange>,
    pending: Vec<ReadinessChange>,
}

impl Reports {
    /// The pod's next report, if one comes within `within`.
    async fn next(&mut self, pod: &ObjectKey, within: Duration) -> Option<ReadinessChange> {
        if let Some(i) = self.pending.iter().position(|c| &c.pod == pod) {
            return Some(self.pending.remove(i));
        }
        let rx = &mut self.rx;
        let pending = &mut self.pending;
        timeout(within, async {
            loop {
                let c = rx.recv().await?;
                if &c.pod == pod {
                    return Some(c);
                }
                pending.push(c);
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Waits until the pod reports `want`.
    async fn until(&mut self, pod: &ObjectKey, want: bool, within: Duration) -> ReadinessChange {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(pod, left).await {
                Some(c) if c.ready == want => return c,
                Some(_) => continue,
                None => panic!("{pod} did not become ready={want} within {within:?}"),
            }
        }
    }
}

fn assert_clean(report: &ApplyReport) {
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[tokio::test]
async fn http_pod_info_and_agent_endpoints() {
    let yaml = pod("t1", "web", "127.250.1.1", &["18080"], "", &[])
        + &pod("t1", "far", "10.250.1.1", &["18080"], "", &[]);
    let (agents, mut rx) = new_agents(SandboxConfig::default());
    let report = agents.apply(&cluster(&yaml)).await;
    assert_clean(&report);
    assert_eq!(report.started, vec![key("t1", "web")]);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0, key("t1", "far"));
    assert!(
        report.skipped[0].1.contains("not a loopback address"),
        "{:?}",
        report.skipped
    );
    // No probe: ready once listening.
    let c = rx.until(&key("t1", "web"), true, T).await;
    assert!(!c.reason.is_empty());

    let a = get("127.250.1.1:18080", "/some/path?x=1").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["x-svcnet-pod"], "t1/web");
    assert_eq!(a.headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["pod"], "web");
    assert_eq!(v["namespace"], "t1");
    assert_eq!(v["podIP"], "127.250.1.1");
    assert_eq!(v["node"], "node-1");
    assert_eq!(v["port"], 18080);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/some/path");
    assert_eq!(v["host"], "127.250.1.1:18080");
    assert_eq!(v["headers"]["host"], "127.250.1.1:18080");
    assert_eq!(v["clientIP"], "127.0.0.1");

    let a = get("127.250.1.1:18080", "/_agent/hostname").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web"));
    assert_eq!(a.headers["x-svcnet-pod"], "t1/web");
    let a = get("127.250.1.1:18080", "/_agent/clientip").await;
    let client: SocketAddr = a.body.parse().unwrap_or_else(|_| panic!("{}", a.body));
    assert_eq!(client.ip().to_string(), "127.0.0.1");
    assert_ne!(client.port(), 0);
    let a = get("127.250.1.1:18080", "/_agent/echo?msg=hi%20there").await;
    assert_eq!(a.body, "hi there");
    let a = get("127.250.1.1:18080", "/_agent/healthz").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ok"));
    assert!(agents.set_healthy(&key("t1", "web"), false));
    assert_eq!(
        get("127.250.1.1:18080", "/_agent/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(!agents.set_healthy(&key("t1", "nope"), false));
    assert_eq!(
        get("127.250.1.1:18080", "/_agent/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let a = get("127.250.1.1:18080", "/_agent/dial?port=1").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    agents.shutdown().await;
    assert!(TcpStream::connect("127.250.1.1:18080").await.is_err());
}

#[tokio::test]
async fn dial_from_pod_to_pod_over_tcp_udp_http() {
    let yaml = pod("t2", "a", "127.250.2.1", &["18080", "18081/UDP"], "", &[])
        + &pod("t2", "b", "127.250.2.2", &["18080", "18081/UDP"], "", &[]);
    // b's policy: refuse port 18082 (not declared, so nothing there anyway) and let the
    // dial hook deny 127.250.2.3.
    let config = SandboxConfig {
        admit: None,
        dial_admit: Some(Arc::new(
            |_pod: &ObjectKey, _src: std::net::IpAddr, dst: SocketAddr, _p: Protocol| {
                dst.ip().to_string() != "127.250.2.3"
            },
        )),
    };
    let (agents, _rx) = new_agents(config);
    assert_clean(&agents.apply(&cluster(&yaml)).await);

    let dial = |q: &str| {
        let path = format!("/_agent/dial?{q}");
        async move { get_json("127.250.2.1:18080", &path).await }
    };
    let v = dial("host=127.250.2.2&port=18080&protocol=tcp").await;
    assert_eq!(v["responses"], serde_json::json!(["b"]), "{v}");
    assert_eq!(v["errors"], serde_json::json!([]));
    let v = dial("host=127.250.2.2&port=18081&protocol=udp&tries=3").await;
    assert_eq!(v["responses"], serde_json::json!(["b", "b", "b"]), "{v}");
    let v = dial("host=127.250.2.2&port=18080&protocol=http&request=hostname").await;
    let info: Value = serde_json::from_str(v["responses"][0].as_str().unwrap()).unwrap();
    assert_eq!(info["pod"], "b");
    assert_eq!(info["path"], "/hostname");
    assert_eq!(info["clientIP"], "127.250.2.1", "b sees a's IP");
    // Default protocol is http, as agnhost's.
    let v = dial("host=127.250.2.2&port=18080&request=_agent/clientip").await;
    let seen: SocketAddr = v["responses"][0].as_str().unwrap().parse().unwrap();
    assert_eq!(seen.ip().to_string(), "127.250.2.1");
    let v = dial("host=127.250.2.2&port=18081&protocol=udp&request=echo%20me").await;
    assert_eq!(v["responses"], serde_json::json!(["echo me\n"]), "{v}");
    // Errors: nothing listens; denied by the hook.
    let v = dial("host=127.250.2.2&port=18099&protocol=tcp&tries=2").await;
    assert_eq!(v["responses"], serde_json::json!([]));
    assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{v}");
    let v = dial("host=127.250.2.3&port=18080&protocol=tcp").await;
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("denied by NetworkPolicy"),
        "{v}"
    );
    agents.shutdown().await;
}

#[tokio::test]
async fn admit_hook_closes_connections_and_drops_datagrams() {
    let yaml = pod("t9", "a", "127.250.9.1", &["18080", "18081/UDP"], "", &[]);
    let config = SandboxConfig {
        admit: Some(Arc::new(
            |src: SocketAddr, dst: SocketAddr, pod: &ObjectKey, _p: Protocol| {
                assert_eq!(pod.name, "a");
                // Only clients from 127.250.9.9 are admitted on 18080; UDP never.
                dst.port() == 18080 && src.ip().to_string() == "127.250.9.9"
            },
        )),
        dial_admit: None,
    };
    let (agents, _rx) = new_agents(config);
    assert_clean(&agents.apply(&cluster(&yaml)).await);
    timeout(T, async {
        let mut s = TcpStream::connect("127.250.9.1:18080").await.unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut buf = Vec::new();
        let n = s.read_to_end(&mut buf).await.unwrap_or(0);
        assert_eq!(
            n,
            0,
            "denied connection answered: {:?}",
            String::from_utf8_lossy(&buf)
        );

        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(addr("127.250.9.9:0")).unwrap();
        let mut s = sock.connect(addr("127.250.9.1:18080")).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.send_to(b"hostname", "127.250.9.1:18081").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(
            timeout(Duration::from_millis(300), u.recv_from(&mut buf))
                .await
                .is_err(),
            "denied datagram answered"
        );
    })
    .await
    .unwrap();
    agents.shutdown().await;
}

#[tokio::test]
async fn tcp_echo_hostname_line_and_udp() {
    let yaml = pod(
        "t3",
        "echo-0",
        "127.250.3.1",
        &["19000", "19000/UDP"],
        "",
        &[],
    );
    let (agents, _rx) = new_agents(SandboxConfig::default());
    assert_clean(&agents.apply(&cluster(&yaml)).await);
    timeout(T, async {
        // Echo, interactive: each write comes back before the client closes.
        let mut s = TcpStream::connect("127.250.3.1:19000").await.unwrap();
        for msg in [&b"hello\n"[..], b"x", b"\x00\x01binary\xff"] {
            s.write_all(msg).await.unwrap();
            let mut buf = vec![0u8; msg.len()];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, msg);
        }
        // Half-close: the agent echoes what is left, then closes its side.
        s.write_all(b"bye").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"bye");

        // A prefix of an HTTP method that turns out not to be one is echoed too.
        let mut s = TcpStream::connect("127.250.3.1:19000").await.unwrap();
        s.write_all(b"GE").await.unwrap();
        s.shutdown().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GE");

        // The `hostname` line, as `echo hostname | nc` sends it.
        let mut s = TcpStream::connect("127.250.3.1:19000").await.unwrap();
        s.write_all(b"hostname\n").await.unwrap();
        s.shutdown().await.unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "echo-0");

        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.connect("127.250.3.1:19000").await.unwrap();
        let mut buf = [0u8; 2048];
        for (send, want) in [
            (&b"hostname"[..], &b"echo-0"[..]),
            (b"hostname\n", b"echo-0"),
            (b"anything else", b"anything else"),
        ] {
            u.send(send).await.unwrap();
            let n = u.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], want);
        }
    })
    .await
    .unwrap();
    agents.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let yaml = pod("t5", "h2", "127.250.5.1", &["18080"], "", &[]);
    let (agents, _rx) = new_agents(SandboxConfig::default());
    assert_clean(&agents.apply(&cluster(&yaml)).await);
    timeout(T, async {
        let stream = TcpStream::connect("127.250.5.1:18080").await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        for path in ["/h2/path", "/_agent/hostname"] {
            let req = Request::get(format!("http://127.250.5.1:18080{path}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            assert_eq!(resp.headers()["x-svcnet-pod"], "t5/h2");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            if path == "/h2/path" {
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["path"], "/h2/path");
                assert_eq!(v["host"], "127.250.5.1:18080");
                assert_eq!(v["pod"], "h2");
            } else {
                assert_eq!(&body[..], b"h2");
            }
        }
    })
    .await
    .unwrap();
    agents.shutdown().await;
}

#[tokio::test]
async fn backend_annotation_forwards_to_a_local_process() {
    // A real local process: answers TCP with a banner, UDP with a prefix.
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = s
                    .write_all(
                        format!("backend got {}", String::from_utf8_lossy(&buf[..n])).as_bytes(),
                    )
                    .await;
            });
        }
    });
    let udp = UdpSocket::bind(format!("127.0.0.1:{tcp_port}"))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let reply = [&b"udp backend: "[..], &buf[..n]].concat();
            let _ = udp.send_to(&reply, from).await;
        }
    });
    let yaml = pod(
        "t6",
        "real",
        "127.250.6.1",
        &["18080", "18080/UDP", "18081"],
        "",
        &[
            ("svcnet.dev/backend-18080", format!("127.0.0.1:{tcp_port}")),
            ("svcnet.dev/backend-18081", "10.1.2.3:80".to_string()),
        ],
    );
    let (agents, _rx) = new_agents(SandboxConfig::default());
    let report = agents.apply(&cluster(&yaml)).await;
    assert_eq!(report.started, vec![key("t6", "real")]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let why = &report.errors[0].1;
    assert!(
        why.contains("svcnet.dev/backend-18081") && why.contains("not a loopback address"),
        "{why}"
    );
    timeout(T, async {
        let mut s = TcpStream::connect("127.250.6.1:18080").await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).await.unwrap();
        assert!(all.starts_with("backend got GET / HTTP/1.1"), "{all}");

        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.connect("127.250.6.1:18080").await.unwrap();
        let mut buf = [0u8; 128];
        for _ in 0..2 {
            u.send(b"ping").await.unwrap();
            let n = u.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"udp backend: ping");
        }
    })
    .await
    .unwrap();
    // The rejected annotation leaves the default agent on its port.
    let v = get_json("127.250.6.1:18081", "/").await;
    assert_eq!(v["pod"], "real");
    agents.shutdown().await;
}

#[tokio::test]
async fn readiness_probes_follow_kubelet() {
    // A closed local port: bind, note the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http_probe = "    readinessProbe:\n      httpGet: {path: /_agent/healthz, port: web}\n      periodSeconds: 1\n      failureThreshold: 2\n";
    let tcp_probe = "    readinessProbe:\n      tcpSocket: {port: 18090}\n      periodSeconds: 1\n";
    let yaml = pod("t7", "probed", "127.250.7.1", &[], "", &[]).replace(
        "  - name: app\n",
        &format!(
            "  - name: app\n    ports:\n    - {{containerPort: 18080, name: web}}\n{http_probe}"
        ),
    ) + &pod(
        "t7",
        "dead-backend",
        "127.250.7.2",
        &["18090"],
        tcp_probe,
        &[("svcnet.dev/backend-18090", format!("127.0.0.1:{closed}"))],
    ) + &pod("t7", "plain", "127.250.7.3", &["18080"], "", &[]);
    let (agents, mut rx) = new_agents(SandboxConfig::default());
    let report = agents.apply(&cluster(&yaml)).await;
    assert_clean(&report);
    assert_eq!(report.started.len(), 3);

    let probed = key("t7", "probed");
    let first = rx.next(&probed, T).await.unwrap();
    assert!(!first.ready, "a probed pod starts not ready: {first:?}");
    rx.until(&probed, true, Duration::from_secs(5)).await;
    assert!(agents.set_healthy(&probed, false));
    let started = tokio::time::Instant::now();
    let c = rx.until(&probed, false, Duration::from_secs(5)).await;
    assert!(c.reason.contains("503"), "{c:?}");
    // failureThreshold 2 × period 1 s, plus one period of phase.
    assert!(
        started.elapsed() <= Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
    agents.set_healthy(&probed, true);
    rx.until(&probed, true, Duration::from_secs(5)).await;

    // tcpSocket on a port whose backend is closed: the agent's own listener does not
    // count; it stays not ready.
    let dead = key("t7", "dead-backend");
    let first = rx.next(&dead, T).await.unwrap();
    assert!(!first.ready);
    assert!(
        rx.next(&dead, Duration::from_millis(2500)).await.is_none(),
        "dead backend became ready"
    );

    let plain = rx.until(&key("t7", "plain"), true, T).await;
    assert!(plain.reason.contains("no readiness probe"), "{plain:?}");
    agents.shutdown().await;
}

#[tokio::test]
async fn apply_keeps_unchanged_agents_and_stops_removed_ones() {
    let a = pod("t8", "a", "127.250.8.1", &["18080"], "", &[]);
    let b = pod("t8", "b", "127.250.8.2", &["18080"], "", &[]);
    let c = pod("t8", "c", "127.250.8.3", &["18080"], "", &[]);
    let (agents, _rx) = new_agents(SandboxConfig::default());
    let r = agents.apply(&cluster(&(a.clone() + &b))).await;
    assert_eq!(r.started, vec![key("t8", "a"), key("t8", "b")]);

    // A keep-alive connection to a.
    let stream = TcpStream::connect("127.250.8.1:18080").await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let ask = |send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        let req = Request::get("/keep")
            .header("host", "a")
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req)
    };
    let resp = timeout(T, ask(&mut send)).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap();

    let r = agents.apply(&cluster(&(a.clone() + &c))).await;
    assert_eq!(r.started, vec![key("t8", "c")]);
    assert_eq!(r.stopped, vec![key("t8", "b")]);
    assert!(r.restarted.is_empty());
    assert!(
        TcpStream::connect("127.250.8.2:18080").await.is_err(),
        "b still accepts"
    );
    assert_eq!(get_json("127.250.8.3:18080", "/").await["pod"], "c");
    // The old connection to a still works.
    send.ready().await.unwrap();
    let resp = timeout(T, ask(&mut send)).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["pod"], "a");

    // Changing a's ports restarts it on the new port.
    let a2 = pod("t8", "a", "127.250.8.1", &["18081"], "", &[]);
    let r = agents.apply(&cluster(&(a2 + &c))).await;
    assert_eq!(r.restarted, vec![key("t8", "a")]);
    assert_eq!(r.started, vec![key("t8", "a")]);
    assert!(r.stopped.is_empty());
    assert!(TcpStream::connect("127.250.8.1:18080").await.is_err());
    assert_eq!(get_json("127.250.8.1:18081", "/").await["pod"], "a");
    // And back: the old port binds again at once.
    let r = agents.apply(&cluster(&(a + &c))).await;
    assert_clean(&r);
    assert_eq!(get_json("127.250.8.1:18080", "/").await["pod"], "a");
    agents.shutdown().await;
}

#[tokio::test]
async fn bind_conflicts_are_reported_and_retried() {
    let squatter = std::net::TcpListener::bind("127.250.10.1:18080").unwrap();
    let yaml = pod("t10", "a", "127.250.10.1", &["18080", "18081"], "", &[]);
    let (agents, mut rx) = new_agents(SandboxConfig::default());
    let c = cluster(&yaml);
    let r = agents.apply(&c).await;
    assert_eq!(r.started, vec![key("t10", "a")]);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(
        r.errors[0].1.contains("127.250.10.1:18080"),
        "{:?}",
        r.errors
    );
    let first = rx.next(&key("t10", "a"), T).await.unwrap();
    assert!(!first.ready && first.reason.contains("18080"), "{first:?}");
    // The other port serves meanwhile.
    assert_eq!(get_json("127.250.10.1:18081", "/").await["pod"], "a");
    // Same error again: not reported twice.
    assert!(agents.apply(&c).await.errors.is_empty());
    drop(squatter);
    let r = agents.apply(&c).await;
    assert_clean(&r);
    assert!(r.started.is_empty());
    rx.until(&key("t10", "a"), true, T).await;
    assert_eq!(get_json("127.250.10.1:18080", "/").await["pod"], "a");
    agents.shutdown().await;
}

#[test]
fn privileged_ports_on_this_machine() {
    // High ports never need a privilege.
    assert_eq!(svcnet_sandbox::privileged_ports_blocked(40000), None);
    let c = cluster(&pod(
        "t11",
        "a",
        "127.250.11.1",
        &["8080", "53/UDP"],
        "",
        &[],
    ));
    assert_eq!(svcnet_sandbox::lowest_port(&c), Some(53));
}

/// curl, a real client: HTTP/1.1 and h2c with prior knowledge.
#[tokio::test]
async fn curl_speaks_to_an_agent() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed; skipped");
        return;
    }
    let yaml = pod("t12", "curled", "127.250.12.1", &["18080"], "", &[]);
    let (agents, _rx) = new_agents(SandboxConfig::default());
    assert_clean(&agents.apply(&cluster(&yaml)).await);
    let curl = |args: &'static [&'static str]| async move {
        let out = timeout(
            T,
            tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "5"])
                .args(args)
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&curl(&["http://127.250.12.1:18080/hello"]).await).unwrap();
    assert_eq!(
        (v["pod"].as_str(), v["path"].as_str()),
        (Some("curled"), Some("/hello"))
    );
    assert_eq!(
        v["headers"]["user-agent"]
            .as_str()
            .map(|s| s.starts_with("curl/")),
        Some(true)
    );
    let v: Value = serde_json::from_str(
        &curl(&["--http2-prior-knowledge", "http://127.250.12.1:18080/h2"]).await,
    )
    .unwrap();
    assert_eq!(v["path"], "/h2");
    let headers = curl(&[
        "--http2-prior-knowledge",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "http://127.250.12.1:18080/",
    ])
    .await;
    assert!(headers.starts_with("HTTP/2 200"), "{headers}");
    assert!(headers.contains("x-svcnet-pod: t12/curled"), "{headers}");
    assert_eq!(
        curl(&["http://127.250.12.1:18080/_agent/echo?msg=from%20curl"]).await,
        "from curl"
    );
    agents.shutdown().await;
}

/// `svcnet up` may run these on spawned tasks.
#[allow(dead_code)]
fn futures_are_send(agents: &Agents, c: &Cluster) {
    fn send<T: Send>(_: T) {}
    send(agents.apply(c));
    send(agents.shutdown());
    send(agents.clone());
}
