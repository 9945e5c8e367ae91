#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the Ingress server: a table compiled from manifests, real
//! backends (small hyper servers bound on the compiled pod addresses, all on loopback)
//! and real `curl` as the client.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use svcnet_ingress::{ControllerConfig, IngressServer, RouteTable, ServerConfig, compile};
use svcnet_model::cluster::Cluster;
use svcnet_model::plan::AddressPlan;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------
// Harness

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "svcnet-ingress-test-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A port number reserved for the test's pods (held on 127.0.0.1 so that tests running
/// at once get different numbers).
fn reserve_port() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    (l, p)
}

fn compile_yaml(yaml: &str) -> RouteTable {
    let (cluster, diags) = Cluster::from_yaml("test.yaml", yaml, &AddressPlan::default());
    let cluster = cluster.unwrap_or_else(|| panic!("manifests: {diags:?}"));
    let (table, findings) = compile(&cluster, &ControllerConfig::default());
    assert!(
        findings
            .iter()
            .all(|f| f.severity != svcnet_ingress::Severity::Error),
        "{findings:?}"
    );
    table
}

fn endpoints_of(table: &RouteTable, service: &str) -> Vec<SocketAddr> {
    let mut set = BTreeSet::new();
    for r in table.routes() {
        let backends = std::iter::once(&r.backend).chain(r.canaries.iter().map(|c| &c.backend));
        for b in backends {
            if b.service.name == service {
                set.extend(b.endpoints.iter().map(|e| e.addr));
            }
        }
    }
    set.into_iter().collect()
}

/// A Deployment of `replicas` pods listening on `port` and a Service `name` (port 80).
fn workload(name: &str, replicas: u32, port: u16) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: {name}
        image: echo
        ports:
        - containerPort: {port}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector:
    app: {name}
  ports:
  - name: http
    port: 80
    targetPort: {port}
---
"#
    )
}

/// An Ingress for `host` `/` (Prefix) to Service `service`, with annotations.
fn ingress(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> String {
    let mut ann = String::new();
    for (k, v) in annotations {
        ann.push_str(&format!(
            "    nginx.ingress.kubernetes.io/{k}: \"{}\"\n",
            v.replace('"', "\\\"")
        ));
    }
    let ann = if ann.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{ann}")
    };
    format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
{ann}spec:
  rules:
  - host: {host}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: {service}
            port:
              number: 80
---
"#
    )
}

/// The echo backend: answers with what it received. `/slow` waits 3 s, `/ws` echoes an
/// upgraded connection, `/status/N` answers N.
async fn echo(addr: SocketAddr, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if path == "/ws" {
        // What an RFC 6455 server checks, reported back.
        let handshake = format!(
            "{:?} {} key={}",
            req.method(),
            req.headers()
                .get("upgrade")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
            req.headers()
                .get("sec-websocket-key")
                .map_or(0, |v| v.len())
        );
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .header("x-handshake", handshake)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return Response::builder()
            .status(code.parse::<u16>().unwrap_or(500))
            .body(Full::new(Bytes::from("status\n")))
            .unwrap();
    }
    let mut text = format!(
        "pod: {addr}\nversion: {:?}\nmethod: {}\nuri: {}\n",
        req.version(),
        req.method(),
        req.uri()
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("header {k}: {}\n", v.to_str().unwrap_or("?")));
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    text.push_str(&format!(
        "body-len: {}\n",
        body.map(|b| b.len()).unwrap_or(usize::MAX)
    ));
    Response::builder()
        .header("x-backend", addr.to_string())
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

async fn serve_echo(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind backend {addr}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| async move {
                    Ok::<_, std::convert::Infallible>(echo(addr, req).await)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    })
}

struct Env {
    server: IngressServer,
    http: SocketAddr,
    https: SocketAddr,
    state_dir: PathBuf,
    registry: prometheus_client::registry::Registry,
    _reserve: std::net::TcpListener,
}

impl Env {
    fn url(&self, host: &str, path: &str) -> (String, String) {
        (
            format!("http://{host}{path}"),
            format!("{host}:80:127.0.0.1:{}", self.http.port()),
        )
    }

    fn ca_pem(&self) -> String {
        self.state_dir.join("ca.crt").display().to_string()
    }
}

async fn start_with(
    yaml_of: impl FnOnce(u16) -> String,
    live: &[&str],
    cfg: impl FnOnce(&mut ServerConfig),
) -> (Env, RouteTable) {
    let (reserve, port) = reserve_port();
    let yaml = yaml_of(port);
    let table = compile_yaml(&yaml);
    for svc in live {
        let eps = endpoints_of(&table, svc);
        assert!(!eps.is_empty(), "no endpoints for {svc}");
        for ep in eps {
            serve_echo(ep).await;
        }
    }
    let state_dir = temp_dir("state");
    let mut c = ServerConfig {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        https_addr: Some("127.0.0.1:0".parse().unwrap()),
        state_dir: state_dir.clone(),
        ..ServerConfig::default()
    };
    cfg(&mut c);
    let mut registry = prometheus_client::registry::Registry::default();
    let server = IngressServer::start(c, &mut registry).await.unwrap();
    let (http, https) = server.local_addrs();
    let env = Env {
        server,
        http: http.unwrap(),
        https: https.unwrap(),
        state_dir,
        registry,
        _reserve: reserve,
    };
    // A second compile of the same manifests: the first is kept to find endpoints.
    let problems = env.server.publish(compile_yaml(&yaml));
    assert!(problems.is_empty(), "{problems:?}");
    (env, table)
}

/// A server with the cleartext listener only, serving `table` (whose backends the test
/// started itself).
async fn start_http_only(table: RouteTable, tag: &str, reserve: std::net::TcpListener) -> Env {
    let mut registry = prometheus_client::registry::Registry::default();
    let server = IngressServer::start(
        ServerConfig {
            http_addr: Some("127.0.0.1:0".parse().unwrap()),
            state_dir: temp_dir(tag),
            ..ServerConfig::default()
        },
        &mut registry,
    )
    .await
    .unwrap();
    server.publish(table);
    Env {
        http: server.local_addrs().0.unwrap(),
        https: "127.0.0.1:1".parse().unwrap(),
        server,
        state_dir: temp_dir("unused"),
        registry,
        _reserve: reserve,
    }
}

async fn start(yaml_of: impl FnOnce(u16) -> String, live: &[&str]) -> (Env, RouteTable) {
    start_with(yaml_of, live, |_| {}).await
}

#[derive(Debug)]
struct Curl {
    status: u16,
    version: String,
    headers: String,
    body: String,
}

impl Curl {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

async fn curl(args: &[&str]) -> Curl {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "8", "-D", "-"])
        .args(["-w", "\n__END__%{http_code} %{http_version}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (main, end) = text.rsplit_once("\n__END__").unwrap_or((&text, "0 0"));
    let (status, version) = end.split_once(' ').unwrap_or(("0", "0"));
    // The last header block (curl prints one per response).
    let (headers, body) = match main.rfind("\r\n\r\n") {
        Some(_) => {
            let mut split = main.splitn(2, "\r\n\r\n");
            let h = split.next().unwrap_or("").to_string();
            let b = split.next().unwrap_or("").to_string();
            (h, b)
        }
        None => (String::new(), main.to_string()),
    };
    Curl {
        status: status.trim().parse().unwrap_or(0),
        version: version.trim().to_string(),
        headers,
        body,
    }
}

async fn get(env: &Env, host: &str, path: &str, extra: &[&str]) -> Curl {
    let (url, connect) = env.url(host, path);
    let mut args = vec!["--connect-to", connect.as_str()];
    args.extend_from_slice(extra);
    args.push(url.as_str());
    curl(&args).await
}

fn line<'a>(body: &'a str, prefix: &str) -> Option<&'a str> {
    body.lines().find_map(|l| l.strip_prefix(prefix))
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn http1_routes_by_host_balances_and_sets_forwarded_headers() {
    let (env, table) = start(
        |p| workload("web", 2, p) + &ingress("web", "web.test", "web", &[]),
        &["web"],
    )
    .await;
    let eps = endpoints_of(&table, "web");
    assert_eq!(eps.len(), 2);
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let r = get(&env, "web.test", "/a/b?x=1", &["--http1.1"]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.version, "1.1");
        seen.insert(line(&r.body, "pod: ").unwrap().to_string());
        assert_eq!(line(&r.body, "uri: "), Some("/a/b?x=1"));
        assert_eq!(line(&r.body, "header host: "), Some("web.test"));
        assert_eq!(line(&r.body, "header x-forwarded-for: "), Some("127.0.0.1"));
        assert_eq!(line(&r.body, "header x-real-ip: "), Some("127.0.0.1"));
        assert_eq!(line(&r.body, "header x-forwarded-proto: "), Some("http"));
        assert_eq!(line(&r.body, "header x-forwarded-host: "), Some("web.test"));
        let port = env.http.port().to_string();
        assert_eq!(
            line(&r.body, "header x-forwarded-port: "),
            Some(port.as_str())
        );
        let rid = line(&r.body, "header x-request-id: ").unwrap();
        assert!(
            rid.len() == 32 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{rid}"
        );
    }
    assert_eq!(seen.len(), 2, "round-robin reaches both pods: {seen:?}");
    // X-Forwarded-For is appended to; X-Request-ID is kept.
    let r = get(
        &env,
        "web.test",
        "/",
        &[
            "-H",
            "X-Forwarded-For: 198.51.100.9",
            "-H",
            "X-Request-ID: abc",
        ],
    )
    .await;
    assert_eq!(
        line(&r.body, "header x-forwarded-for: "),
        Some("198.51.100.9, 127.0.0.1")
    );
    assert_eq!(line(&r.body, "header x-request-id: "), Some("abc"));
    // Unknown host: 404 with a plain-text reason.
    let r = get(&env, "other.test", "/", &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no route"), "{r:?}");
    // A request body reaches the backend.
    let r = get(&env, "web.test", "/post", &["--data-binary", "0123456789"]).await;
    assert_eq!(line(&r.body, "body-len: "), Some("10"));
    env.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn h2c_prior_knowledge_on_the_cleartext_port() {
    let (env, _) = start(
        |p| workload("web", 1, p) + &ingress("web", "web.test", "web", &[]),
        &["web"],
    )
    .await;
    let r = get(&env, "web.test", "/h2", &["--http2-prior-knowledge"]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.version, "2");
    // The backend is spoken to in HTTP/1.1 with the :authority as Host.
    assert_eq!(line(&r.body, "version: "), Some("HTTP/1.1"));
    assert_eq!(line(&r.body, "header host: "), Some("web.test"));
    assert_eq!(line(&r.body, "header x-forwarded-host: "), Some("web.test"));
}

fn tls_ingress(name: &str, host: &str, service: &str, secret: Option<&str>) -> String {
    let secret = secret
        .map(|s| format!("    secretName: {s}\n"))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
spec:
  tls:
  - hosts:
    - {host}
{secret}  rules:
  - host: {host}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: {service}
            port:
              number: 80
---
"#
    )
}

fn tls_secret(name: &str, cert_pem: &str, key_pem: &str) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(cert_pem),
        indent(key_pem)
    )
}

#[tokio::test]
async fn tls_by_sni_with_alpn_h2_and_ssl_redirect() {
    // b.test's certificate comes from a Secret signed by another CA; a.test's from the
    // local CA.
    let other_dir = temp_dir("other-ca");
    let other = svcnet_ingress::LocalCa::load_or_create(&other_dir).unwrap();
    let issued = other.issue(&["b.test".to_string()]).unwrap();
    let secret = tls_secret("b-tls", &issued.cert_pem, &issued.key_pem);
    let (env, _) = start(
        |p| {
            workload("web", 1, p)
                + &tls_ingress("a", "a.test", "web", None)
                + &tls_ingress("b", "b.test", "web", Some("b-tls"))
                + &secret
        },
        &["web"],
    )
    .await;
    let port = env.https.port();
    let ca = env.ca_pem();
    let to_a = format!("a.test:443:127.0.0.1:{port}");
    let r = curl(&["--connect-to", &to_a, "--cacert", &ca, "https://a.test/x"]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.version, "2", "ALPN h2");
    assert_eq!(line(&r.body, "header x-forwarded-proto: "), Some("https"));
    let r = curl(&[
        "--http1.1",
        "--connect-to",
        &to_a,
        "--cacert",
        &ca,
        "https://a.test/x",
    ])
    .await;
    assert_eq!((r.status, r.version.as_str()), (200, "1.1"), "{r:?}");
    // b.test: the Secret's certificate, which the local CA does not vouch for.
    let to_b = format!("b.test:443:127.0.0.1:{port}");
    let other_ca = other_dir.join("ca.crt").display().to_string();
    let r = curl(&[
        "--connect-to",
        &to_b,
        "--cacert",
        &other_ca,
        "https://b.test/",
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = curl(&["--connect-to", &to_b, "--cacert", &ca, "https://b.test/"]).await;
    assert_eq!(
        r.status, 0,
        "the local CA must not verify b.test's Secret: {r:?}"
    );
    // TLS 1.1 is refused.
    let r = curl(&[
        "--connect-to",
        &to_a,
        "--cacert",
        &ca,
        "--tls-max",
        "1.1",
        "https://a.test/",
    ])
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    // Plain HTTP to a TLS host: 308 to https.
    let r = get(&env, "a.test", "/p?q=1", &[]).await;
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://a.test/p?q=1")
    );
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled_both_ways() {
    let (env, _) = start(
        |p| workload("web", 1, p) + &ingress("web", "ws.test", "web", &[]),
        &["web"],
    )
    .await;
    let mut s = TcpStream::connect(env.http).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "head: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
    }
}

#[tokio::test]
async fn websocket_over_http2_is_an_upgrade_upstream() {
    let (env, _) = start(
        |p| workload("web", 1, p) + &ingress("web", "ws.test", "web", &[]),
        &["web"],
    )
    .await;
    // h2c with prior knowledge, as a browser speaks h2 over TLS.
    let tcp = TcpStream::connect(env.http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // One plain request first: the server's SETTINGS (ENABLE_CONNECT_PROTOCOL) arrive.
    let plain = Request::get("http://ws.test/")
        .version(http::Version::HTTP_2)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(plain).await.unwrap().status(), 200);
    let mut req = Request::builder()
        .method(http::Method::CONNECT)
        .uri("http://ws.test/ws")
        .version(http::Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "{resp:?}");
    // The backend saw an RFC 6455 handshake: GET, Upgrade: websocket, a 24-byte key.
    assert_eq!(
        resp.headers().get("x-handshake").unwrap(),
        "GET websocket key=24",
        "{resp:?}"
    );
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let mut io = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    for msg in [&b"hello over h2"[..], b"second frame"] {
        io.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(3), io.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
    }
}

#[tokio::test]
async fn no_endpoints_503_body_size_413_denylist_403() {
    let (env, _) = start(
        |p| {
            workload("web", 1, p)
                + &workload("empty", 0, p + 1)
                + &ingress("empty", "empty.test", "empty", &[])
                + &ingress("small", "small.test", "web", &[("proxy-body-size", "10")])
                + &ingress(
                    "deny",
                    "deny.test",
                    "web",
                    &[("denylist-source-range", "127.0.0.0/8")],
                )
        },
        &["web"],
    )
    .await;
    let r = get(&env, "empty.test", "/", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("no ready endpoint"), "{r:?}");
    let r = get(&env, "small.test", "/", &["--data-binary", "0123456789"]).await;
    assert_eq!(r.status, 200, "at the limit: {r:?}");
    let r = get(&env, "small.test", "/", &["--data-binary", "0123456789a"]).await;
    assert_eq!(r.status, 413, "by Content-Length: {r:?}");
    // Chunked: no Content-Length, stopped while streaming.
    let big = "x".repeat(100_000);
    let r = get(
        &env,
        "small.test",
        "/",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &big],
    )
    .await;
    assert_eq!(
        r.status,
        413,
        "while streaming: {:?}",
        (r.status, &r.headers)
    );
    let r = get(&env, "deny.test", "/", &[]).await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test]
async fn rate_limits_refuse_with_503_per_client() {
    let (env, _) = start(
        |p| {
            workload("web", 1, p)
                + &ingress(
                    "rps",
                    "rps.test",
                    "web",
                    &[("limit-rps", "1"), ("limit-burst-multiplier", "2")],
                )
                + &ingress(
                    "free",
                    "free.test",
                    "web",
                    &[("limit-rps", "1"), ("limit-whitelist", "127.0.0.0/8")],
                )
        },
        &["web"],
    )
    .await;
    // One curl, ten requests on one connection: burst 2 + 1 pass, the rest get 503
    // (one more may pass if a second elapses).
    let (url, connect) = env.url("rps.test", "/");
    let mut args = vec![
        "-s".to_string(),
        "--noproxy".into(),
        "*".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}\n".into(),
        "--connect-to".into(),
        connect,
    ];
    args.extend(std::iter::repeat_n(url, 10));
    let out = tokio::process::Command::new("curl")
        .args(&args)
        .output()
        .await
        .unwrap();
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let ok = codes.iter().filter(|c| *c == "200").count();
    let limited = codes.iter().filter(|c| *c == "503").count();
    assert_eq!(ok + limited, 10, "{codes:?}");
    assert!((3..=4).contains(&ok), "{codes:?}");
    // Whitelisted clients are not limited.
    for _ in 0..5 {
        assert_eq!(get(&env, "free.test", "/", &[]).await.status, 200);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &env.registry).unwrap();
    assert!(
        text.contains(
            "svcnet_ingress_limited_total{ingress=\"default/rps\",reason=\"limit-rps exceeded\"}"
        ),
        "{text}"
    );
}

/// The auth service: `Bearer good` passes with `X-User`, `Bearer forbidden` gets 403,
/// `Bearer broken` 502, anything else 401. It records X-Original-URL.
async fn serve_auth() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let orig = req
                        .headers()
                        .get("x-original-url")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let status = match auth.as_str() {
                        "Bearer good" => 200,
                        "Bearer forbidden" => 403,
                        "Bearer broken" => 502,
                        _ => 401,
                    };
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .status(status)
                            .header("x-user", "alice")
                            .header("x-seen-url", orig)
                            .header("www-authenticate", "Bearer realm=\"test\"")
                            .body(Full::new(Bytes::from("auth\n")))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn external_auth_sub_request() {
    let auth = serve_auth().await;
    let (dead, dead_port) = reserve_port();
    drop(dead);
    let url = format!("http://{auth}/verify");
    let dead_url = format!("http://127.0.0.1:{dead_port}/verify");
    let (env, _) = start(
        |p| {
            workload("web", 1, p)
                + &ingress(
                    "signin",
                    "signin.test",
                    "web",
                    &[
                        ("auth-url", &url),
                        ("auth-signin", "https://login.test/start"),
                        ("auth-response-headers", "X-User"),
                    ],
                )
                + &ingress(
                    "plain",
                    "plain.test",
                    "web",
                    &[("auth-url", &url), ("auth-response-headers", "X-User")],
                )
                + &ingress("dead", "dead.test", "web", &[("auth-url", &dead_url)])
        },
        &["web"],
    )
    .await;
    let r = get(
        &env,
        "plain.test",
        "/p?q=1",
        &["-H", "Authorization: Bearer good"],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(line(&r.body, "header x-user: "), Some("alice"));
    let r = get(&env, "plain.test", "/p", &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"test\"")
    );
    let r = get(&env, "signin.test", "/p?q=1", &[]).await;
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://login.test/start?rd=http%3A%2F%2Fsignin.test%2Fp%3Fq%3D1")
    );
    let r = get(
        &env,
        "plain.test",
        "/",
        &["-H", "Authorization: Bearer forbidden"],
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = get(
        &env,
        "plain.test",
        "/",
        &["-H", "Authorization: Bearer broken"],
    )
    .await;
    assert_eq!(r.status, 500, "{r:?}");
    let r = get(
        &env,
        "dead.test",
        "/",
        &["-H", "Authorization: Bearer good"],
    )
    .await;
    assert_eq!(r.status, 500, "{r:?}");
}

#[tokio::test]
async fn refused_endpoint_is_retried_and_dead_backends_give_502() {
    // Two pods; only the first has a server: every request still succeeds.
    let (reserve, port) = reserve_port();
    let yaml = workload("web", 2, port)
        + &ingress("web", "web.test", "web", &[])
        + &workload("dead", 1, port)
        + &ingress("dead", "dead.test", "dead", &[]);
    let table = compile_yaml(&yaml);
    let eps = endpoints_of(&table, "web");
    assert_eq!(eps.len(), 2);
    serve_echo(eps[0]).await;
    let env = start_http_only(table, "retry", reserve).await;
    for _ in 0..4 {
        let r = get(&env, "web.test", "/", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(line(&r.body, "pod: "), Some(eps[0].to_string().as_str()));
    }
    let r = get(&env, "dead.test", "/", &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("refused"), "{r:?}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &env.registry).unwrap();
    assert!(
        text.contains("svcnet_ingress_upstream_errors_total{kind=\"connect_refused\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn read_timeout_gives_504() {
    let (env, _) = start(
        |p| {
            workload("web", 1, p)
                + &ingress("slow", "slow.test", "web", &[("proxy-read-timeout", "1")])
        },
        &["web"],
    )
    .await;
    let t = Instant::now();
    let r = get(&env, "slow.test", "/slow", &[]).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
}

/// How a raw backend misbehaves.
#[derive(Clone, Copy)]
enum Raw {
    /// Reads the request head, sends a response head promising 100 bytes, 10 of them, then
    /// nothing for 20 s.
    StallBody,
    /// Never reads (a 4 KiB receive buffer), never answers.
    NoRead,
    /// Answers every request of a keep-alive connection with a chunked body (chunk
    /// extensions, a trailer).
    Chunked,
    /// Answers with a body that ends when the connection does (no length, no chunks).
    CloseDelimited,
    /// Answers one request with a length, then closes without saying so: the proxy's
    /// pooled connection is stale for the next request.
    OneShot,
    /// Answers `GET /chunked` with 1 MB chunked in 10 KB chunks, any other request with
    /// 1 MB by `Content-Length`, written in 64 KiB pieces, on a keep-alive connection.
    Big,
}

/// The body `Raw::Big` sends: `n` bytes, a repeating pattern.
fn big_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A backend written by hand on `addr`, for the stalls a well-behaved server never makes.
async fn serve_raw(addr: SocketAddr, how: Raw) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    if matches!(how, Raw::NoRead) {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    sock.bind(addr).unwrap();
    let listener = sock.listen(64).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if matches!(how, Raw::Big) {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    let body = big_body(1_000_000);
                    loop {
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let chunked = pending.starts_with(b"GET /chunked");
                            pending.drain(..end + 4);
                            let mut answer = Vec::new();
                            if chunked {
                                answer.extend_from_slice(
                                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                                );
                                for c in body.chunks(10_000) {
                                    answer
                                        .extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                                    answer.extend_from_slice(c);
                                    answer.extend_from_slice(b"\r\n");
                                }
                                answer.extend_from_slice(b"0\r\n\r\n");
                            } else {
                                answer.extend_from_slice(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n",
                                );
                                answer.extend_from_slice(&body);
                            }
                            for piece in answer.chunks(65536) {
                                if s.write_all(piece).await.is_err() {
                                    return;
                                }
                            }
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                }
                if matches!(how, Raw::Chunked | Raw::CloseDelimited | Raw::OneShot) {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            let answer: &[u8] = match how {
                                Raw::Chunked => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
                                Raw::CloseDelimited => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close",
                                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n",
                            };
                            if s.write_all(answer).await.is_err() || !matches!(how, Raw::Chunked) {
                                return;
                            }
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                }
                if matches!(how, Raw::StallBody) {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                        .await;
                }
                tokio::time::sleep(Duration::from_secs(20)).await;
                drop(s);
            });
        }
    });
}

#[tokio::test]
async fn read_timeout_also_bounds_gaps_in_the_response_body() {
    let (env, table) = start(
        |p| {
            workload("web", 1, p)
                + &ingress("stall", "stall.test", "web", &[("proxy-read-timeout", "1")])
        },
        &[],
    )
    .await;
    for ep in endpoints_of(&table, "web") {
        serve_raw(ep, Raw::StallBody).await;
    }
    let t = Instant::now();
    let r = get(&env, "stall.test", "/", &[]).await;
    // The head came (200) and 10 bytes; then the connection is cut, not held for 20 s.
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "0123456789", "{r:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn upstream_bodies_chunked_close_delimited_and_stale_keep_alive() {
    let (env, table) = start(
        |p| {
            workload("chunked", 1, p)
                + &workload("close", 1, p + 1)
                + &workload("oneshot", 1, p + 2)
                + &ingress("c", "chunked.test", "chunked", &[])
                + &ingress("d", "close.test", "close", &[])
                + &ingress("o", "oneshot.test", "oneshot", &[])
        },
        &[],
    )
    .await;
    for (svc, how) in [
        ("chunked", Raw::Chunked),
        ("close", Raw::CloseDelimited),
        ("oneshot", Raw::OneShot),
    ] {
        for ep in endpoints_of(&table, svc) {
            serve_raw(ep, how).await;
        }
    }
    for _ in 0..3 {
        let r = get(&env, "chunked.test", "/", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "hello world"), "{r:?}");
        let r = get(&env, "close.test", "/", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "until close"), "{r:?}");
        // The backend closed the pooled connection after the previous answer without a
        // word: the request goes again on a new connection.
        let r = get(&env, "oneshot.test", "/", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{r:?}");
    }
}

#[tokio::test]
async fn head_requests_get_the_length_and_no_body() {
    let (env, _) = start(
        |p| workload("web", 1, p) + &ingress("web", "head.test", "web", &[]),
        &["web"],
    )
    .await;
    for _ in 0..2 {
        let r = get(&env, "head.test", "/", &["-I"]).await;
        assert_eq!(r.status, 200, "{r:?}");
        let len: usize = r.header("content-length").unwrap().parse().unwrap();
        assert!(len > 0, "{r:?}");
        // And the pooled connection is still in step: a GET after it gets its body.
        let r = get(&env, "head.test", "/", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(line(&r.body, "method: "), Some("GET"), "{r:?}");
    }
}

#[tokio::test]
async fn send_timeout_gives_504_when_the_upstream_takes_no_more_of_the_body() {
    let (env, table) = start(
        |p| {
            workload("web", 1, p)
                + &ingress(
                    "upload",
                    "upload.test",
                    "web",
                    &[
                        ("proxy-send-timeout", "1"),
                        ("proxy-read-timeout", "30"),
                        ("proxy-body-size", "0"),
                    ],
                )
        },
        &[],
    )
    .await;
    for ep in endpoints_of(&table, "web") {
        serve_raw(ep, Raw::NoRead).await;
    }
    // 64 MiB: more than the loopback socket buffers on both sides can hold.
    let dir = temp_dir("upload");
    let file = dir.join("body");
    std::fs::write(&file, vec![b'x'; 64 << 20]).unwrap();
    let data = format!("@{}", file.display());
    let t = Instant::now();
    let r = get(
        &env,
        "upload.test",
        "/",
        &["-H", "Expect:", "--data-binary", data.as_str()],
    )
    .await;
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.body.contains("proxy-send-timeout"), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_slow_client_body_is_not_an_upstream_send_timeout() {
    let (env, _) = start(
        |p| {
            workload("web", 1, p)
                + &ingress(
                    "drip",
                    "drip.test",
                    "web",
                    &[("proxy-send-timeout", "1"), ("proxy-read-timeout", "1")],
                )
        },
        &["web"],
    )
    .await;
    // 48 KB at 16 KB/s: about 3 s of body, none of it the upstream's fault.
    let dir = temp_dir("drip");
    let file = dir.join("body");
    std::fs::write(&file, vec![b'y'; 48_000]).unwrap();
    let data = format!("@{}", file.display());
    let r = get(
        &env,
        "drip.test",
        "/",
        &[
            "-H",
            "Expect:",
            "--limit-rate",
            "16K",
            "--data-binary",
            data.as_str(),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(line(&r.body, "body-len: "), Some("48000"), "{r:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn worker_threads_share_the_listeners_and_shut_down_gracefully() {
    let (env, _) = start_with(
        |p| workload("web", 2, p) + &ingress("w", "w.test", "web", &[]),
        &["web"],
        |c| c.workers = 3,
    )
    .await;
    // Fresh connections each time: the kernel spreads them over the workers' sockets.
    let mut pods = BTreeSet::new();
    for _ in 0..12 {
        let r = get(&env, "w.test", "/", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        pods.insert(line(&r.body, "pod: ").unwrap_or_default().to_string());
    }
    assert_eq!(pods.len(), 2, "{pods:?}");
    let r = get(&env, "w.test", "/", &["--http2-prior-knowledge"]).await;
    assert_eq!((r.status, r.version.as_str()), (200, "2"), "{r:?}");
    // A request in flight finishes; then the listeners are closed on every worker.
    let (url, connect) = env.url("w.test", "/slow");
    let slow = tokio::spawn(async move { curl(&["--connect-to", &connect, &url]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(slow.await.unwrap().status, 200);
    assert!(TcpStream::connect(env.http).await.is_err());
}

#[tokio::test]
async fn cookie_affinity_sticks_to_one_pod() {
    let (env, _) = start(
        |p| {
            workload("web", 3, p)
                + &ingress(
                    "sticky",
                    "sticky.test",
                    "web",
                    &[("affinity", "cookie"), ("session-cookie-name", "route")],
                )
        },
        &["web"],
    )
    .await;
    let r = get(&env, "sticky.test", "/", &[]).await;
    let set = r.header("set-cookie").expect("affinity cookie set");
    assert!(set.starts_with("route=") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let pod = line(&r.body, "pod: ").unwrap().to_string();
    for _ in 0..5 {
        let r = get(
            &env,
            "sticky.test",
            "/",
            &["-H", &format!("Cookie: {cookie}")],
        )
        .await;
        assert_eq!(line(&r.body, "pod: "), Some(pod.as_str()));
        assert!(r.header("set-cookie").is_none());
    }
}

#[tokio::test]
async fn cors_preflight_and_response_headers() {
    let (env, _) = start(
        |p| {
            workload("web", 1, p)
                + &ingress(
                    "cors",
                    "cors.test",
                    "web",
                    &[
                        ("enable-cors", "true"),
                        ("cors-allow-origin", "https://app.test"),
                    ],
                )
        },
        &["web"],
    )
    .await;
    let r = get(
        &env,
        "cors.test",
        "/api",
        &[
            "-X",
            "OPTIONS",
            "-H",
            "Origin: https://app.test",
            "-H",
            "Access-Control-Request-Method: PUT",
        ],
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("https://app.test")
    );
    assert!(r.header("access-control-allow-methods").is_some(), "{r:?}");
    assert!(
        r.body.is_empty(),
        "preflight does not reach the backend: {r:?}"
    );
    let r = get(
        &env,
        "cors.test",
        "/api",
        &["-H", "Origin: https://app.test"],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("https://app.test")
    );
    let r = get(
        &env,
        "cors.test",
        "/api",
        &["-H", "Origin: https://evil.test"],
    )
    .await;
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
}

#[tokio::test]
async fn grpc_backend_is_spoken_to_over_h2c() {
    let (env, _) = start(
        |p| {
            workload("web", 1, p)
                + &ingress("grpc", "grpc.test", "web", &[("backend-protocol", "GRPC")])
        },
        &["web"],
    )
    .await;
    let r = get(
        &env,
        "grpc.test",
        "/pkg.Svc/Call",
        &["--http2-prior-knowledge"],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(line(&r.body, "version: "), Some("HTTP/2.0"));
    assert_eq!(
        line(&r.body, "uri: "),
        Some("http://grpc.test/pkg.Svc/Call")
    );
}

#[tokio::test]
async fn publish_swaps_routes_and_in_flight_requests_finish() {
    let (reserve, port) = reserve_port();
    let v1 = workload("web", 1, port) + &ingress("web", "v1.test", "web", &[]);
    let v2 = workload("web", 1, port) + &ingress("web", "v2.test", "web", &[]);
    let table = compile_yaml(&v1);
    for ep in endpoints_of(&table, "web") {
        serve_echo(ep).await;
    }
    let env = start_http_only(table, "publish", reserve).await;
    let slow = {
        let (url, connect) = env.url("v1.test", "/slow");
        tokio::spawn(async move { curl(&["--connect-to", &connect, &url]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.server.publish(compile_yaml(&v2));
    assert_eq!(get(&env, "v2.test", "/", &[]).await.status, 200);
    assert_eq!(get(&env, "v1.test", "/", &[]).await.status, 404);
    assert_eq!(
        slow.await.unwrap().status,
        200,
        "in flight on the old table"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_then_refuses() {
    let (env, _) = start(
        |p| workload("web", 1, p) + &ingress("web", "web.test", "web", &[]),
        &["web"],
    )
    .await;
    let slow = {
        let (url, connect) = env.url("web.test", "/slow");
        tokio::spawn(async move { curl(&["--connect-to", &connect, &url]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    env.server.shutdown(Duration::from_secs(6)).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(slow.await.unwrap().status, 200);
    assert!(
        TcpStream::connect(env.http).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn connection_cap_and_header_and_idle_timeouts() {
    let (env, _) = start_with(
        |p| workload("web", 1, p) + &ingress("web", "web.test", "web", &[]),
        &["web"],
        |c| {
            c.max_connections = 2;
            c.header_timeout = Duration::from_millis(400);
            c.idle_timeout = Duration::from_millis(1500);
        },
    )
    .await;
    // Slowloris: half a head, then nothing: closed after the header timeout.
    let mut slow = TcpStream::connect(env.http).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // A keep-alive connection idle for longer than the header timeout stays open, then
    // is closed after the idle timeout.
    let mut ka = TcpStream::connect(env.http).await.unwrap();
    ka.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("body-len") {
        let n = ka.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    ka.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .await
        .unwrap();
    let n = ka.read(&mut buf).await.unwrap();
    assert!(n > 0, "still open after 800 ms idle");
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(4), ka.read_to_end(&mut rest)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(4), "closed when idle");
    // Cap of 2: with two connections open, a third is closed at once.
    let mut a = TcpStream::connect(env.http).await.unwrap();
    let mut b = TcpStream::connect(env.http).await.unwrap();
    a.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .await
        .unwrap();
    b.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .await
        .unwrap();
    assert!(a.read(&mut buf).await.unwrap() > 0);
    assert!(b.read(&mut buf).await.unwrap() > 0);
    let r = get(&env, "web.test", "/", &[]).await;
    assert_eq!(r.status, 0, "third connection refused: {r:?}");
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(&env, "web.test", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn metrics_and_access_log_fields() {
    let (env, _) = start(
        |p| workload("web", 1, p) + &ingress("web", "web.test", "web", &[]),
        &["web"],
    )
    .await;
    assert_eq!(get(&env, "web.test", "/m", &[]).await.status, 200);
    assert_eq!(get(&env, "nope.test", "/", &[]).await.status, 404);
    let wants = [
        "svcnet_ingress_requests_total{ingress=\"default/web\",host=\"web.test\",path=\"/\",status=\"200\"} 1",
        "svcnet_ingress_requests_total{ingress=\"\",host=\"nope.test\",path=\"\",status=\"404\"} 1",
        "svcnet_ingress_request_duration_seconds_count{ingress=\"default/web\"} 1",
        "svcnet_ingress_active_connections{listener=\"http\"}",
    ];
    // A request is recorded just after its response is sent: wait for it, briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &env.registry).unwrap();
        let missing: Vec<_> = wants.iter().filter(|w| !text.contains(*w)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "missing {missing:?} in\n{text}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The echo backend over TLS (ALPN h2 and http/1.1), with a certificate no one trusts.
async fn serve_echo_tls(addr: SocketAddr, dir: &std::path::Path) {
    let ca = svcnet_ingress::LocalCa::load_or_create(dir).unwrap();
    let issued = ca.issue(&["backend.invalid".to_string()]).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(svcnet_ingress::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(issued.chain, issued.key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| async move {
                    Ok::<_, std::convert::Infallible>(echo(addr, req).await)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
}

#[tokio::test]
async fn https_and_grpcs_backends_over_unverified_tls() {
    let (reserve, port) = reserve_port();
    let yaml = workload("web", 1, port)
        + &ingress("tls", "tls.test", "web", &[("backend-protocol", "HTTPS")])
        + &ingress(
            "grpcs",
            "grpcs.test",
            "web",
            &[("backend-protocol", "GRPCS")],
        );
    let table = compile_yaml(&yaml);
    for ep in endpoints_of(&table, "web") {
        serve_echo_tls(ep, &temp_dir("backend-ca")).await;
    }
    let env = start_http_only(table, "tls-backend", reserve).await;
    let r = get(&env, "tls.test", "/s", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(line(&r.body, "version: "), Some("HTTP/1.1"));
    assert_eq!(line(&r.body, "header x-forwarded-proto: "), Some("http"));
    let r = get(&env, "grpcs.test", "/pkg.Svc/Call", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(line(&r.body, "version: "), Some("HTTP/2.0"));
    assert_eq!(
        line(&r.body, "uri: "),
        Some("https://grpcs.test/pkg.Svc/Call")
    );
}

// ---------------------------------------------------------------------------------------
// The fast HTTP/1.1 server path, byte by byte

/// A client connection that reads responses as an HTTP/1.1 client frames them.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

/// One response: status, header fields (names lower-case), the body (de-chunked).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads more; 0 at the end of the stream.
    async fn fill(&mut self) -> usize {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut b))
            .await
            .expect("an answer within 5 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&b[..n]);
        n
    }

    /// A line (CRLF removed) from the buffer.
    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return l;
            }
            assert!(self.fill().await > 0, "closed inside a line");
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await > 0, "closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// The next response; `None` when the connection closed first.
    async fn answer(&mut self, head_request: bool) -> Option<Answer> {
        let (status, headers, len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = r.parse(&self.buf).unwrap() {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (r.code.unwrap(), headers, len);
            }
            if self.fill().await == 0 {
                assert!(self.buf.is_empty(), "closed inside a head");
                return None;
            }
        };
        self.buf.drain(..len);
        let mut a = Answer {
            status,
            headers,
            body: String::new(),
        };
        if head_request || status == 204 || status == 304 {
            return Some(a);
        }
        let body = if a.header("transfer-encoding") == Some("chunked") {
            let mut body = Vec::new();
            loop {
                let size = self.line().await;
                let size = usize::from_str_radix(size.split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break body;
                }
                body.extend(self.take(size).await);
                assert_eq!(self.take(2).await, b"\r\n");
            }
        } else if let Some(n) = a.header("content-length") {
            self.take(n.parse().unwrap()).await
        } else {
            while self.fill().await > 0 {}
            std::mem::take(&mut self.buf)
        };
        a.body = String::from_utf8_lossy(&body).into_owned();
        Some(a)
    }

    /// True when the server closed the connection (nothing more to read).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill().await == 0
    }
}

/// The same bytes on the wire from the fast path as from hyper alone.
#[tokio::test]
async fn http1_keep_alive_pipelining_and_the_switch_to_hyper_mid_connection() {
    for fast in [true, false] {
        http1_connection_behaviour(fast).await;
    }
}

async fn http1_connection_behaviour(fast: bool) {
    let (env, table) = start_with(
        |p| {
            workload("web", 1, p)
                + &workload("chunked", 1, p + 1)
                + &workload("big", 1, p + 2)
                + &ingress("web", "web.test", "web", &[])
                + &ingress("c", "chunked.test", "chunked", &[])
                + &ingress("b", "big.test", "big", &[])
        },
        &["web"],
        |c| c.fast_http1 = fast,
    )
    .await;
    for ep in endpoints_of(&table, "chunked") {
        serve_raw(ep, Raw::Chunked).await;
    }
    for ep in endpoints_of(&table, "big") {
        serve_raw(ep, Raw::Big).await;
    }
    let get = |host: &str, path: &str, version: &str, extra: &str| {
        format!("GET {path} HTTP/{version}\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
    };
    let mut c = Client::connect(env.http).await;
    // Two requests in one write: two answers, in order, on one connection.
    let mut two = get("web.test", "/one", "1.1", "");
    two.extend(get("web.test", "/two", "1.1", ""));
    c.send(&two).await;
    for path in ["/one", "/two"] {
        let a = c.answer(false).await.unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(line(&a.body, "uri: "), Some(path), "{a:?}");
        assert!(a.header("date").is_some(), "{a:?}");
    }
    // A body: hyper serves this request and the rest of the connection.
    c.send(b"POST /three HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let a = c.answer(false).await.unwrap();
    assert_eq!(
        (a.status, line(&a.body, "body-len: ")),
        (200, Some("5")),
        "{a:?}"
    );
    c.send(&get("web.test", "/four", "1.1", "")).await;
    let a = c.answer(false).await.unwrap();
    assert_eq!(line(&a.body, "uri: "), Some("/four"), "{a:?}");

    // A body of unknown length goes chunked to an HTTP/1.1 client...
    let mut c = Client::connect(env.http).await;
    for _ in 0..2 {
        c.send(&get("chunked.test", "/", "1.1", "")).await;
        let a = c.answer(false).await.unwrap();
        assert_eq!(a.header("transfer-encoding"), Some("chunked"), "{a:?}");
        assert_eq!((a.status, a.body.as_str()), (200, "hello world"), "{a:?}");
    }
    // ... and `Connection: close` is the last request of a connection.
    c.send(&get("web.test", "/", "1.1", "Connection: close\r\n"))
        .await;
    let a = c.answer(false).await.unwrap();
    assert_eq!(
        (a.status, a.header("connection")),
        (200, Some("close")),
        "{a:?}"
    );
    assert!(c.closed().await);

    // HTTP/1.0: one request per connection unless it asks for keep-alive; a body of
    // unknown length is delimited by the close.
    let mut c = Client::connect(env.http).await;
    c.send(&get("web.test", "/", "1.0", "")).await;
    assert_eq!(c.answer(false).await.unwrap().status, 200);
    assert!(c.closed().await);
    let mut c = Client::connect(env.http).await;
    for _ in 0..2 {
        c.send(&get("web.test", "/", "1.0", "Connection: keep-alive\r\n"))
            .await;
        let a = c.answer(false).await.unwrap();
        assert_eq!(a.header("connection"), Some("keep-alive"), "{a:?}");
    }
    c.send(&get(
        "chunked.test",
        "/",
        "1.0",
        "Connection: keep-alive\r\n",
    ))
    .await;
    let a = c.answer(false).await.unwrap();
    assert_eq!(a.header("transfer-encoding"), None, "{a:?}");
    assert_eq!(a.body, "hello world", "{a:?}");

    // Large bodies, by length and chunked, arrive whole and in order, twice on one
    // connection (the upstream connection goes back to the pool after each).
    let mut c = Client::connect(env.http).await;
    let want = String::from_utf8(big_body(1_000_000)).unwrap();
    for path in ["/length", "/chunked", "/length", "/chunked"] {
        c.send(&get("big.test", path, "1.1", "")).await;
        let a = c.answer(false).await.unwrap();
        assert_eq!(a.status, 200, "{path}");
        assert!(a.body == want, "{path}: {} bytes", a.body.len());
    }

    // HEAD: the length, no body, and the connection stays in step.
    let mut c = Client::connect(env.http).await;
    c.send(b"HEAD / HTTP/1.1\r\nHost: web.test\r\n\r\n").await;
    let a = c.answer(true).await.unwrap();
    assert!(a.header("content-length").is_some(), "{a:?}");
    c.send(&get("web.test", "/after-head", "1.1", "")).await;
    let a = c.answer(false).await.unwrap();
    assert_eq!(line(&a.body, "uri: "), Some("/after-head"), "{a:?}");

    // What httparse refuses goes to hyper, which answers 400 and closes.
    let mut c = Client::connect(env.http).await;
    c.send(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n").await;
    let a = c.answer(false).await.unwrap();
    assert_eq!(a.status, 400, "{a:?}");

    // Shutdown: an idle keep-alive connection is closed at once; a request in flight is
    // answered, with `Connection: close`, and its connection closed after.
    let mut idle = Client::connect(env.http).await;
    idle.send(&get("web.test", "/", "1.1", "")).await;
    assert_eq!(idle.answer(false).await.unwrap().status, 200);
    let mut busy = Client::connect(env.http).await;
    busy.send(&get("web.test", "/slow", "1.1", "")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let server = env.server.clone();
    let down = tokio::spawn(async move { server.shutdown(Duration::from_secs(10)).await });
    assert!(idle.closed().await);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let a = busy.answer(false).await.unwrap();
    assert_eq!(
        (a.status, a.header("connection")),
        (200, Some("close")),
        "{a:?}"
    );
    assert!(busy.closed().await);
    down.await.unwrap();
}

/// Every request's access-log line names what served it: the Ingress, the Service (a
/// canary's own for a canary request) and the pod behind the upstream address, and a
/// request no route took names none. The lines are written after the responses (the
/// bookkeeping is deferred) and all of them are there once the server has shut down.
#[tokio::test]
async fn access_log_names_the_ingress_service_and_pod_of_each_request() {
    let log = temp_dir("access-log").join("access.log");
    let path = log.clone();
    let (env, _) = start_with(
        |p| {
            workload("web", 1, p)
                + &workload("canary", 1, p)
                + &ingress("web", "web.test", "web", &[])
                + &ingress(
                    "web-canary",
                    "web.test",
                    "canary",
                    &[("canary", "true"), ("canary-by-header", "x-canary")],
                )
        },
        &["web", "canary"],
        move |c| {
            c.access_log = svcnet_ingress::accesslog::AccessLogConfig {
                target: svcnet_ingress::accesslog::AccessLogTarget::File(path),
                format: svcnet_ingress::accesslog::AccessLogFormat::Json,
            };
        },
    )
    .await;
    let main = get(&env, "web.test", "/a", &[]).await;
    let canary = get(&env, "web.test", "/b", &["-H", "x-canary: always"]).await;
    let none = get(&env, "nope.test", "/c", &[]).await;
    assert_eq!((main.status, canary.status, none.status), (200, 200, 404));
    env.server.shutdown(Duration::from_secs(1)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_path = |p: &str| {
        let found: Vec<_> = lines.iter().filter(|l| l["path"] == p).collect();
        assert_eq!(found.len(), 1, "one line for {p} in\n{text}");
        found[0].clone()
    };
    for (p, resp, ingress, service) in [
        ("/a", &main, "default/web", "default/web"),
        ("/b", &canary, "default/web", "default/canary"),
    ] {
        let l = by_path(p);
        assert_eq!(l["ingress"], ingress, "{l}");
        assert_eq!(l["service"], service, "{l}");
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["upstream"].as_str(), line(&resp.body, "pod: "), "{l}");
        let pod = l["pod"].as_str().unwrap_or_default();
        assert!(pod.starts_with(&format!("{service}-")), "{l}");
    }
    let l = by_path("/c");
    assert_eq!(
        (&l["ingress"], &l["service"], &l["pod"]),
        (&"".into(), &"".into(), &"".into()),
        "{l}"
    );
    assert_eq!(l["status"], 404, "{l}");
}

/// An Ingress whose backend is an ExternalName Service naming a Service of the cluster
/// reaches that Service's pods, as a client resolving the name through cluster DNS would.
#[tokio::test]
async fn an_external_name_backend_reaches_the_service_it_names() {
    let external = r#"
apiVersion: v1
kind: Service
metadata:
  name: web-alias
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
  ports:
  - {name: http, port: 80}
"#;
    let (env, table) = start(
        |p| {
            workload("web", 2, p)
                + external
                + "---\n"
                + &ingress("alias", "alias.test", "web-alias", &[])
        },
        // Echo servers at the alias's endpoints: web's two pods (the routing tests check
        // that resolution; this one that traffic follows it).
        &["web-alias"],
    )
    .await;
    let pods: BTreeSet<String> = endpoints_of(&table, "web-alias")
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
    let mut seen = BTreeSet::new();
    for _ in 0..8 {
        let r = get(&env, "alias.test", "/x", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(line(&r.body, "header host: "), Some("alias.test"), "{r:?}");
        seen.insert(line(&r.body, "pod: ").unwrap_or_default().to_string());
    }
    assert_eq!(seen, pods, "both of web's pods answer");
}

/// A resolver from a table, counting lookups.
struct NameTable {
    lookups: std::sync::atomic::AtomicUsize,
    answers: Vec<(&'static str, std::net::IpAddr)>,
}

impl svcnet_ingress::names::Resolve for NameTable {
    fn lookup(&self, host: &str, port: u16) -> svcnet_ingress::names::Lookup {
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let found: Vec<SocketAddr> = self
            .answers
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, ip)| SocketAddr::new(*ip, port))
            .collect();
        Box::pin(async move {
            if found.is_empty() {
                Err(std::io::Error::other("NXDOMAIN"))
            } else {
                Ok(found)
            }
        })
    }
}

/// An ExternalName backend outside the cluster is looked up when requests come (once for
/// many requests: the answer is kept) and gets the request at the Service's targetPort;
/// a name that does not resolve answers 503 saying so.
#[tokio::test]
async fn an_external_name_outside_the_cluster_is_looked_up_when_requests_come() {
    let names = std::sync::Arc::new(NameTable {
        lookups: std::sync::atomic::AtomicUsize::new(0),
        answers: vec![("api.partner.test", "127.77.0.1".parse().unwrap())],
    });
    let resolver = svcnet_ingress::names::Resolver(names.clone());
    let external = |name: &str, host: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{type: ExternalName, externalName: {host}, ports: [{{port: 80, targetPort: {port}}}]}}\n---\n"
        )
    };
    let mut target = 0;
    let (env, _) = start_with(
        |p| {
            target = p;
            external("partner", "api.partner.test", p)
                + &external("gone", "gone.partner.test", p)
                + &ingress("partner", "partner.test", "partner", &[])
                + &ingress("gone", "gone.test", "gone", &[])
        },
        &[],
        move |c| c.resolver = resolver,
    )
    .await;
    let backend = SocketAddr::new("127.77.0.1".parse().unwrap(), target);
    serve_echo(backend).await;
    for _ in 0..3 {
        let r = get(&env, "partner.test", "/v1/orders", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(line(&r.body, "pod: "), Some(backend.to_string().as_str()));
        assert_eq!(line(&r.body, "header host: "), Some("partner.test"));
    }
    let r = get(&env, "gone.test", "/", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.body
            .contains("cannot resolve gone.partner.test: NXDOMAIN"),
        "{r:?}"
    );
    assert_eq!(
        names.lookups.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one lookup per name"
    );
}
