//! What an agent for a pod must do, derived from the pod (pure).
//!
//! An [`AgentSpec`] holds everything an agent's sockets and probes depend on; two equal
//! specs mean the running agent can stay as it is, a different one means a restart.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use svcnet_model::types::{ObjectKey, Pod, PodPhase, PortRef, Probe, ProbeAction, Protocol};

/// Annotation prefix handing a pod port to a local process: `svcnet.dev/backend-PORT`.
pub const BACKEND_ANNOTATION_PREFIX: &str = "svcnet.dev/backend-";

/// A port the agent listens on (per pod IP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// The container port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// One container's readiness probe, resolved against the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The container it belongs to.
    pub container: String,
    /// What to check.
    pub check: Check,
    /// Timings and thresholds, as written (defaulted).
    pub probe: Probe,
}

/// A probe check ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// GET `path` from `addr`, with `Host: host` unless the headers give one.
    Http {
        /// Where to connect: the pod IP and port, or the port's backend.
        addr: SocketAddr,
        /// Host header (`podIP:port`, as kubelet sends).
        host: String,
        /// Path and query.
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// Connect to `addr`.
    Tcp {
        /// The pod IP and port, or the port's backend.
        addr: SocketAddr,
    },
    /// Cannot run in loopback mode: always succeeds.
    AlwaysSucceeds,
    /// Cannot run at all (a named port the pod does not declare): always fails, as kubelet.
    Fails {
        /// Why.
        reason: String,
    },
}

/// Everything an agent depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    /// The pod.
    pub key: ObjectKey,
    /// The hostname its containers would see (`spec.hostname` or the name, at most 63).
    pub hostname: String,
    /// Its node.
    pub node: String,
    /// Its loopback IPs, primary first.
    pub ips: Vec<IpAddr>,
    /// Ports to listen on, sorted.
    pub ports: Vec<PortSpec>,
    /// Ports handed to local processes.
    pub backends: BTreeMap<u16, SocketAddr>,
    /// Readiness probes, one per container that has one.
    pub probes: Vec<ProbeSpec>,
    /// Where probes come from: the node's address, as kubelet's do, when it is loopback.
    pub probe_source: Option<IpAddr>,
    /// Things written that the agent cannot honour (reported as errors when it starts).
    pub problems: Vec<String>,
    /// Things it does differently from a kubelet (reported as warnings when it starts).
    pub notes: Vec<String>,
}

impl AgentSpec {
    /// The primary (first) IP.
    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }
}

/// The hostname a container of the pod sees: `spec.hostname` or the pod name, cut to 63
/// characters with trailing `-` and `.` removed, as kubelet does.
pub fn pod_hostname(pod: &Pod) -> String {
    let name = pod.hostname.as_deref().unwrap_or(&pod.meta.name);
    let cut: String = name.chars().take(63).collect();
    if cut.len() < name.len() {
        cut.trim_end_matches(['-', '.']).to_string()
    } else {
        cut
    }
}

/// Derives the agent of a pod, or the reason it gets none.
pub fn derive(pod: &Pod) -> Result<AgentSpec, String> {
    match pod.phase {
        PodPhase::Pending | PodPhase::Succeeded | PodPhase::Failed => {
            return Err(format!(
                "phase {}: its containers are not running",
                pod.phase.as_str()
            ));
        }
        PodPhase::Running | PodPhase::Unknown => {}
    }
    if pod.ips.is_empty() {
        return Err("the pod has no IP".to_string());
    }
    let ips: Vec<IpAddr> = pod
        .ips
        .iter()
        .copied()
        .filter(IpAddr::is_loopback)
        .collect();
    if ips.is_empty() {
        let list: Vec<String> = pod.ips.iter().map(ToString::to_string).collect();
        return Err(format!(
            "pod IP {} is not a loopback address; loopback mode runs agents on 127.0.0.0/8 and ::1 only",
            list.join(",")
        ));
    }
    let key = ObjectKey::new(&pod.meta.namespace, &pod.meta.name);
    let mut problems = Vec::new();
    let mut notes = Vec::new();

    let mut ports: Vec<PortSpec> = Vec::new();
    for cp in pod.containers.iter().flat_map(|c| &c.ports) {
        match cp.protocol {
            Protocol::Sctp => problems.push(format!(
                "containerPort {}/SCTP: SCTP is not served in loopback mode",
                cp.port
            )),
            protocol => ports.push(PortSpec {
                port: cp.port,
                protocol,
            }),
        }
    }
    ports.sort();
    ports.dedup();

    let backends = backends(pod, &ips, &ports, &mut problems);

    let probes = pod
        .containers
        .iter()
        .filter_map(|c| {
            let probe = c.readiness_probe.as_ref()?;
            let check = check(pod, &c.name, probe, ips[0], &backends, &mut notes);
            Some(ProbeSpec {
                container: c.name.clone(),
                check,
                probe: probe.clone(),
            })
        })
        .collect();

    Ok(AgentSpec {
        key,
        hostname: pod_hostname(pod),
        node: pod.node_name.clone(),
        ips,
        ports,
        backends,
        probes,
        probe_source: pod.host_ip.filter(IpAddr::is_loopback),
        problems,
        notes,
    })
}

/// Reads the `svcnet.dev/backend-PORT` annotations; rejects what cannot work.
fn backends(
    pod: &Pod,
    ips: &[IpAddr],
    ports: &[PortSpec],
    problems: &mut Vec<String>,
) -> BTreeMap<u16, SocketAddr> {
    let mut out = BTreeMap::new();
    for (k, v) in pod.meta.annotations.iter() {
        let Some(suffix) = k.strip_prefix(BACKEND_ANNOTATION_PREFIX) else {
            continue;
        };
        let reject = |why: String| format!("annotation {k}: {v:?} rejected: {why}");
        let port = match suffix.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                problems.push(reject(format!(
                    "{suffix:?} is not a port number (write {BACKEND_ANNOTATION_PREFIX}PORT)"
                )));
                continue;
            }
        };
        if !ports.iter().any(|p| p.port == port) {
            problems.push(reject(format!(
                "the pod declares no TCP or UDP containerPort {port}"
            )));
            continue;
        }
        let target = match parse_backend(v) {
            Ok(t) => t,
            Err(why) => {
                problems.push(reject(format!(
                    "{why}; port {port} serves the default agent"
                )));
                continue;
            }
        };
        if ips.contains(&target.ip()) && target.port() == port {
            problems.push(reject(format!(
                "it points at the pod's own port; port {port} serves the default agent"
            )));
            continue;
        }
        out.insert(port, target);
    }
    out
}

/// Parses a backend target: `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`, loopback only.
pub fn parse_backend(v: &str) -> Result<SocketAddr, String> {
    let v = v.trim();
    let addr = match v.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match v.rsplit_once(':') {
            Some(("localhost", port)) => match port.parse::<u16>() {
                Ok(p) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p),
                Err(_) => return Err(format!("{port:?} is not a port number")),
            },
            Some((host, _)) if host.parse::<IpAddr>().is_err() => {
                return Err(format!(
                    "{host:?} is not an IP address; write a loopback address (127.0.0.1:PORT, [::1]:PORT) or localhost:PORT"
                ));
            }
            _ => return Err("expected HOST:PORT, e.g. 127.0.0.1:8080".to_string()),
        },
    };
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address; only a local process (127.0.0.0/8, ::1) can back a pod port",
            addr.ip()
        ));
    }
    if addr.port() == 0 {
        return Err("port 0 is not a port to connect to".to_string());
    }
    Ok(addr)
}

/// Resolves a probe against the pod: its port, and where to connect.
fn check(
    pod: &Pod,
    container: &str,
    probe: &Probe,
    ip: IpAddr,
    backends: &BTreeMap<u16, SocketAddr>,
    notes: &mut Vec<String>,
) -> Check {
    let resolve = |port: &PortRef| match pod.resolve_port(port, Protocol::Tcp) {
        Some(p) => Ok(p),
        None => Err(format!(
            "readiness probe of container {container}: port {port} is not a TCP containerPort of the pod"
        )),
    };
    let target = |port: u16| {
        backends
            .get(&port)
            .copied()
            .unwrap_or(SocketAddr::new(ip, port))
    };
    match &probe.action {
        ProbeAction::HttpGet {
            path,
            port,
            https,
            headers,
        } => match resolve(port) {
            Err(reason) => Check::Fails { reason },
            Ok(p) if *https => {
                notes.push(format!(
                    "readiness probe of container {container}: HTTPS probes are checked as TCP connects in loopback mode"
                ));
                Check::Tcp { addr: target(p) }
            }
            Ok(p) => Check::Http {
                addr: target(p),
                host: SocketAddr::new(ip, p).to_string(),
                path: if path.starts_with('/') {
                    path.clone()
                } else {
                    format!("/{path}")
                },
                headers: headers.clone(),
            },
        },
        ProbeAction::TcpSocket { port } => match resolve(port) {
            Err(reason) => Check::Fails { reason },
            Ok(p) => Check::Tcp { addr: target(p) },
        },
        ProbeAction::Exec { .. } | ProbeAction::Grpc { .. } => {
            let what = if matches!(probe.action, ProbeAction::Exec { .. }) {
                "exec"
            } else {
                "grpc"
            };
            notes.push(format!(
                "readiness probe of container {container}: {what} probes cannot run in loopback mode; treated as always succeeding"
            ));
            Check::AlwaysSucceeds
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use svcnet_model::{AddressPlan, Cluster};

    fn pod(yaml: &str) -> Pod {
        let (c, d) = Cluster::from_yaml("t.yaml", yaml, &AddressPlan::default());
        let c = c.unwrap_or_else(|| panic!("{d:?}"));
        c.pods.into_values().next().expect("one pod")
    }

    const BASE: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: t
  annotations:
    svcnet.dev/backend-8080: 127.0.0.1:18080
    svcnet.dev/backend-9090: 10.0.0.1:80
    svcnet.dev/backend-7070: 127.0.0.1:1
    svcnet.dev/backend-http: 127.0.0.1:1
spec:
  containers:
  - name: app
    ports:
    - {name: http, containerPort: 8080}
    - {containerPort: 9090}
    - {containerPort: 5353, protocol: UDP}
    - {containerPort: 8080, protocol: UDP}
    - {containerPort: 3868, protocol: SCTP}
    readinessProbe:
      httpGet: {path: healthz, port: http}
  - name: side
    ports:
    - {containerPort: 9090}
    readinessProbe:
      exec: {command: ['true']}
status:
  podIP: 127.250.0.1
";

    #[test]
    fn derives_ports_backends_probes() {
        let s = derive(&pod(BASE)).unwrap();
        assert_eq!(s.key, ObjectKey::new("t", "web"));
        assert_eq!(s.hostname, "web");
        let ports: Vec<(u16, Protocol)> = s.ports.iter().map(|p| (p.port, p.protocol)).collect();
        assert_eq!(
            ports,
            [
                (5353, Protocol::Udp),
                (8080, Protocol::Tcp),
                (8080, Protocol::Udp),
                (9090, Protocol::Tcp)
            ]
        );
        assert_eq!(s.backends.len(), 1);
        assert_eq!(s.backends[&8080], "127.0.0.1:18080".parse().unwrap());
        let problems = s.problems.join("\n");
        assert!(problems.contains("SCTP"), "{problems}");
        assert!(
            problems.contains("10.0.0.1 is not a loopback address"),
            "{problems}"
        );
        assert!(
            problems.contains("no TCP or UDP containerPort 7070"),
            "{problems}"
        );
        assert!(
            problems.contains("\"http\" is not a port number"),
            "{problems}"
        );
        assert_eq!(s.probes.len(), 2);
        assert_eq!(
            s.probes[0].check,
            Check::Http {
                addr: "127.0.0.1:18080".parse().unwrap(),
                host: "127.250.0.1:8080".to_string(),
                path: "/healthz".to_string(),
                headers: vec![],
            }
        );
        assert_eq!(s.probes[1].check, Check::AlwaysSucceeds);
        assert!(s.notes.iter().any(|n| n.contains("exec probes cannot run")));
    }

    #[test]
    fn skips_non_loopback_and_not_running() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.1.2.3}\n",
        );
        let why = derive(&p).unwrap_err();
        assert!(why.contains("10.1.2.3 is not a loopback address"), "{why}");
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 127.250.0.2, phase: Succeeded}\n",
        );
        assert!(derive(&p).unwrap_err().contains("Succeeded"));
    }

    #[test]
    fn probe_ports_resolve_by_name_and_number() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: c\n    ports: [{containerPort: 80, name: web}]\n    readinessProbe: {tcpSocket: {port: web}}\n  - name: d\n    readinessProbe: {tcpSocket: {port: 81}}\n  - name: e\n    readinessProbe: {tcpSocket: {port: nope}}\nstatus: {podIP: 127.250.0.3}\n",
        );
        let s = derive(&p).unwrap();
        let addr = |a: &str| Check::Tcp {
            addr: a.parse().unwrap(),
        };
        assert_eq!(s.probes[0].check, addr("127.250.0.3:80"));
        assert_eq!(s.probes[1].check, addr("127.250.0.3:81"));
        assert!(
            matches!(&s.probes[2].check, Check::Fails { reason } if reason.contains("port nope is not"))
        );
    }

    #[test]
    fn backend_targets() {
        assert_eq!(
            parse_backend("localhost:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_backend("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(
            parse_backend("example.com:80")
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(
            parse_backend("192.168.1.1:80")
                .unwrap_err()
                .contains("not a loopback")
        );
        assert!(parse_backend("127.0.0.1").is_err());
        assert!(parse_backend("127.0.0.1:0").is_err());
    }

    #[test]
    fn hostname_is_cut_like_kubelet() {
        let long = format!("{}-{}", "a".repeat(62), "b");
        let p = pod(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {long}}}\nspec: {{containers: [{{name: c}}]}}\nstatus: {{podIP: 127.250.0.4}}\n"
        ));
        assert_eq!(pod_hostname(&p), "a".repeat(62));
    }
}
