//! The two proxies under test, as child processes: haproxy (`mode tcp`) and `svcnet up` with
//! a selector-less Service whose hand-written EndpointSlice names the backend. Both are
//! killed when their [`Proc`] is dropped, including on an error or a signal.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::Backend;

/// haproxy's frontend address.
const HAPROXY_IP: Ipv4Addr = Ipv4Addr::new(127, 78, 0, 1);
/// svcnet's admin address.
const ADMIN_IP: Ipv4Addr = Ipv4Addr::new(127, 83, 0, 1);
/// svcnet's address plan: ranges of its own, so that another `svcnet up` on the machine
/// (on the defaults) does not collide with this one.
const SERVICE_CIDR: &str = "127.79.0.0/16";
const POD_CIDR: &str = "127.80.0.0/16";
const NODE_CIDR: &str = "127.81.0.0/24";
const LOAD_BALANCER_POOL: &str = "127.82.0.0/16";
const NODE_PORT_RANGE: &str = "30000-30099";
/// The Service's ports (the ClusterIP is svcnet's to allocate).
const SERVICE_ECHO_PORT: u16 = 7000;
const SERVICE_SINK_PORT: u16 = 7001;
/// How long a peer may take to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process, killed and reaped on drop.
pub struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Result<Proc> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Proc { name, child, log })
    }

    /// The process id, for CPU accounting.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the end of its log, when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of its log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Errors here mean the child is already gone, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(e) => format!("(cannot read the log: {e})"),
    }
}

/// A free port on `ip`, as the kernel picks it. Another process could take it before the
/// peer binds it; on loopback addresses of their own that does not happen in practice.
fn free_ports(ip: Ipv4Addr, n: usize) -> Result<Vec<u16>> {
    // Held together so that the kernel hands out different ports.
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind((ip, 0)))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("finding free ports on {ip}"))?;
    held.iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<Result<_>>()
}

/// A running proxy and the two addresses it forwards to the backend's echo and sink ports.
pub struct Peer {
    /// The process.
    pub proc: Proc,
    /// Forwards to the backend's echo port.
    pub echo: SocketAddr,
    /// Forwards to the backend's sink port.
    pub sink: SocketAddr,
}

/// Starts `haproxy -f CFG -db` in `mode tcp` with one frontend per backend port.
pub async fn haproxy(bin: &Path, dir: &Path, backend: &Backend) -> Result<Peer> {
    let ports = free_ports(HAPROXY_IP, 2)?;
    let echo = SocketAddr::new(IpAddr::V4(HAPROXY_IP), ports[0]);
    let sink = SocketAddr::new(IpAddr::V4(HAPROXY_IP), ports[1]);
    let cfg = haproxy_config(echo, sink, backend);
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).with_context(|| format!("writing {}", path.display()))?;
    let mut proc = Proc::spawn(
        "haproxy",
        Command::new(bin).arg("-f").arg(&path).arg("-db"),
        dir.join("haproxy.log"),
    )?;
    wait_echo(&mut proc, echo).await?;
    Ok(Peer { proc, echo, sink })
}

/// haproxy's configuration: the defaults of a plain TCP load balancer. `nbthread` is left at
/// haproxy's default (one thread per CPU), as svcnet's runtime uses one worker per CPU; no
/// splicing, no logging.
fn haproxy_config(echo: SocketAddr, sink: SocketAddr, backend: &Backend) -> String {
    format!(
        "# Written by svcnet-bench-l4.
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend echo
    bind {echo}
    default_backend echo

frontend sink
    bind {sink}
    default_backend sink

backend echo
    server echo {backend_echo}

backend sink
    server sink {backend_sink}
",
        backend_echo = backend.echo,
        backend_sink = backend.sink,
    )
}

/// Starts `svcnet up` on a Service without a selector and an EndpointSlice naming the
/// backend, waits for /readyz, and reads the allocated ClusterIP from /api/state.
pub async fn svcnet(bin: &Path, dir: &Path, backend: &Backend) -> Result<Peer> {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    let path = manifests.join("l4.yaml");
    std::fs::write(&path, svcnet_manifests(backend))
        .with_context(|| format!("writing {}", path.display()))?;
    let admin = SocketAddr::new(IpAddr::V4(ADMIN_IP), free_ports(ADMIN_IP, 1)?[0]);
    let mut proc = Proc::spawn(
        "svcnet",
        Command::new(bin)
            .arg("up")
            .arg("-f")
            .arg(&manifests)
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(["--service-cidr", SERVICE_CIDR])
            .args(["--pod-cidr", POD_CIDR])
            .args(["--node-cidr", NODE_CIDR])
            .args(["--load-balancer-pool", LOAD_BALANCER_POOL])
            .args(["--node-port-range", NODE_PORT_RANGE])
            .args(["--nodes", "1"]),
        dir.join("svcnet.log"),
    )?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        proc.check_alive()?;
        if let Ok((200, _)) = http_get(admin, "/readyz").await {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "svcnet was not ready within {READY_TIMEOUT:?}; end of its log:\n{}",
                tail(&proc.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = http_get(admin, "/api/state").await?;
    if status != 200 {
        bail!("GET /api/state answered {status}");
    }
    let ip = cluster_ip(&body)?;
    let echo = SocketAddr::new(ip, SERVICE_ECHO_PORT);
    let sink = SocketAddr::new(ip, SERVICE_SINK_PORT);
    wait_echo(&mut proc, echo).await?;
    Ok(Peer { proc, echo, sink })
}

fn svcnet_manifests(backend: &Backend) -> String {
    format!(
        r#"# Written by svcnet-bench-l4: a Service without a selector, and its endpoints by hand.
apiVersion: v1
kind: Service
metadata: {{name: l4, namespace: bench}}
spec:
  ports:
  - {{name: echo, port: {SERVICE_ECHO_PORT}, protocol: TCP}}
  - {{name: sink, port: {SERVICE_SINK_PORT}, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: l4-1
  namespace: bench
  labels: {{kubernetes.io/service-name: l4}}
addressType: IPv4
ports:
- {{name: echo, port: {echo}, protocol: TCP}}
- {{name: sink, port: {sink}, protocol: TCP}}
endpoints:
- addresses: ["{ip}"]
"#,
        echo = backend.echo.port(),
        sink = backend.sink.port(),
        ip = backend.echo.ip(),
    )
}

/// `services[]` of bench/l4 → `spec.clusterIP`.
fn cluster_ip(state: &str) -> Result<IpAddr> {
    let v: Value = serde_json::from_str(state).context("parsing /api/state")?;
    let services = v["services"]
        .as_array()
        .context("/api/state has no services[]")?;
    let svc = services
        .iter()
        .find(|s| s["metadata"]["name"] == "l4" && s["metadata"]["namespace"] == "bench")
        .context("/api/state has no Service bench/l4")?;
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .context("Service bench/l4 has no spec.clusterIP")?;
    ip.parse()
        .with_context(|| format!("spec.clusterIP {ip:?} is not an IP address"))
}

/// A minimal HTTP/1.0 GET (no chunked bodies, the server closes): status and body.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp))
        .await
        .context("response timed out")??;
    let text = String::from_utf8(resp).context("response is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("response has no end of head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Waits until one echo goes through `addr` and comes back.
async fn wait_echo(proc: &mut Proc, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        proc.check_alive()?;
        let e = match echo_once(addr).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            bail!(
                "no echo through {} at {addr}: {e:#}\nend of its log:\n{}",
                proc.name,
                tail(&proc.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn echo_once(addr: SocketAddr) -> Result<()> {
    let mut s = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf))
        .await
        .context("echo timed out")??;
    if &buf != b"ping" {
        bail!("echo came back as {buf:?}");
    }
    Ok(())
}
