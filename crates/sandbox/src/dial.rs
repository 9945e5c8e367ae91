//! `/_agent/dial`: connectivity probes from inside a pod, as agnhost's `/dial` does them for
//! the Kubernetes e2e tests. Parsing is pure; each try connects from the pod's address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use svcnet_model::types::{ObjectKey, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::SandboxConfig;

/// How long one try may take.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(1);

/// The most tries one request may ask for.
pub const MAX_TRIES: u32 = 10;

/// The most bytes of one response kept.
const RESPONSE_LIMIT: usize = 64 * 1024;

/// How the dial speaks to its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialProtocol {
    /// `GET http://host:port/REQUEST`, the body is the response (agnhost's default).
    Http,
    /// Connect, write `REQUEST\n`, half-close, read until the peer closes.
    Tcp,
    /// Send the datagram `REQUEST\n`, read one datagram back.
    Udp,
}

impl DialProtocol {
    fn l4(self) -> Protocol {
        match self {
            DialProtocol::Http | DialProtocol::Tcp => Protocol::Tcp,
            DialProtocol::Udp => Protocol::Udp,
        }
    }

    fn net(self) -> &'static str {
        match self {
            DialProtocol::Http | DialProtocol::Tcp => "tcp",
            DialProtocol::Udp => "udp",
        }
    }
}

/// A parsed `/_agent/dial` query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialRequest {
    /// Target host: an IP address or a name for the system resolver.
    pub host: String,
    /// Target port.
    pub port: u16,
    /// Protocol, default http.
    pub protocol: DialProtocol,
    /// What to send, default `hostname`.
    pub request: String,
    /// Number of tries, 1 to [`MAX_TRIES`], default 1.
    pub tries: u32,
}

/// Parses `host=&port=&protocol=&request=&tries=` (the first value of each counts).
pub fn parse_dial_query(query: &str) -> Result<DialRequest, String> {
    let mut host = None;
    let mut port = None;
    let mut protocol = None;
    let mut request = None;
    let mut tries = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "host" => &mut host,
            "port" => &mut port,
            "protocol" => &mut protocol,
            "request" => &mut request,
            "tries" => &mut tries,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    let host = host
        .filter(|h| !h.is_empty())
        .ok_or("host parameter not specified")?;
    let port = match port.as_deref() {
        None | Some("") => return Err("port parameter not specified".to_string()),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("port parameter is invalid: {p:?}")),
        },
    };
    let protocol = match protocol.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("http") => DialProtocol::Http,
        Some("tcp") => DialProtocol::Tcp,
        Some("udp") => DialProtocol::Udp,
        Some(other) => {
            return Err(format!(
                "unsupported protocol {other:?}: use http, tcp or udp"
            ));
        }
    };
    let tries = match tries.as_deref() {
        None | Some("") => 1,
        Some(t) => match t.parse::<u32>() {
            Ok(n) if (1..=MAX_TRIES).contains(&n) => n,
            _ => {
                return Err(format!(
                    "tries parameter is invalid: {t:?} (1 to {MAX_TRIES})"
                ));
            }
        },
    };
    let request = request
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "hostname".to_string());
    Ok(DialRequest {
        host,
        port,
        protocol,
        request,
        tries,
    })
}

/// The answer of `/_agent/dial`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DialResult {
    /// One entry per successful try.
    pub responses: Vec<String>,
    /// One entry per failed try.
    pub errors: Vec<String>,
}

/// Resolves the target: an IP literal (IPv6 with or without brackets), else the system
/// resolver, preferring a family the pod has an address of.
pub(crate) async fn resolve(req: &DialRequest, pod_ips: &[IpAddr]) -> Result<SocketAddr, String> {
    let literal = req.host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, req.port));
    }
    let lookup = tokio::net::lookup_host((req.host.as_str(), req.port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(TRY_TIMEOUT, lookup).await {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => return Err(format!("cannot resolve {}: {e}", req.host)),
        Err(_) => return Err(format!("cannot resolve {}: timed out", req.host)),
    };
    addrs
        .iter()
        .find(|a| pod_ips.iter().any(|ip| ip.is_ipv4() == a.is_ipv4()))
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve {}: no address", req.host))
}

/// Runs the tries one after the other from the pod's address.
pub(crate) async fn dial(
    pod: &ObjectKey,
    pod_ips: &[IpAddr],
    config: &SandboxConfig,
    req: &DialRequest,
    dst: SocketAddr,
) -> DialResult {
    let mut out = DialResult::default();
    let net = req.protocol.net();
    for _ in 0..req.tries {
        let Some(src) = pod_ips
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == dst.is_ipv4())
        else {
            out.errors.push(format!(
                "dial {net} {dst}: the pod has no address of that IP family"
            ));
            continue;
        };
        if let Some(admit) = &config.dial_admit
            && !admit(pod, src, dst, req.protocol.l4())
        {
            out.errors
                .push(format!("dial {net} {dst}: denied by NetworkPolicy"));
            continue;
        }
        match tokio::time::timeout(TRY_TIMEOUT, try_once(req, src, dst)).await {
            Ok(Ok(r)) => out.responses.push(r),
            Ok(Err(e)) => out.errors.push(e),
            Err(_) => out.errors.push(format!(
                "dial {net} {dst}: timed out after {}s",
                TRY_TIMEOUT.as_secs()
            )),
        }
    }
    out
}

async fn try_once(req: &DialRequest, src: IpAddr, dst: SocketAddr) -> Result<String, String> {
    match req.protocol {
        DialProtocol::Http => {
            let path = format!("/{}", req.request.trim_start_matches('/'));
            let host = if req.host.parse::<std::net::Ipv6Addr>().is_ok() {
                format!("[{}]:{}", req.host, req.port)
            } else {
                format!("{}:{}", req.host, req.port)
            };
            let headers = [("host".to_string(), host)];
            let (_, body) =
                crate::client::get(Some(src), dst, &path, &headers, RESPONSE_LIMIT).await?;
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        DialProtocol::Tcp => {
            let err = |e: std::io::Error| format!("dial tcp {dst}: {e}");
            let mut s = crate::net::connect_from(Some(src), dst)
                .await
                .map_err(err)?;
            s.write_all(format!("{}\n", req.request).as_bytes())
                .await
                .map_err(err)?;
            s.shutdown().await.map_err(err)?;
            let mut buf = Vec::new();
            (&mut s)
                .take(RESPONSE_LIMIT as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(err)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        DialProtocol::Udp => {
            let err = |e: std::io::Error| format!("dial udp {dst}: {e}");
            let s = crate::net::udp_from(src, dst).await.map_err(err)?;
            s.send(format!("{}\n", req.request).as_bytes())
                .await
                .map_err(err)?;
            let mut buf = vec![0u8; 65536];
            let n = s.recv(&mut buf).await.map_err(err)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_follow_agnhost() {
        let r = parse_dial_query("host=127.0.0.1&port=8080").unwrap();
        assert_eq!(r.protocol, DialProtocol::Http);
        assert_eq!(r.request, "hostname");
        assert_eq!(r.tries, 1);
    }

    #[test]
    fn parses_everything() {
        let r =
            parse_dial_query("host=a.b&port=53&protocol=UDP&request=echo%20hi&tries=3").unwrap();
        assert_eq!(
            r,
            DialRequest {
                host: "a.b".into(),
                port: 53,
                protocol: DialProtocol::Udp,
                request: "echo hi".into(),
                tries: 3
            }
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_dial_query("port=80").unwrap_err().contains("host"));
        assert!(parse_dial_query("host=x").unwrap_err().contains("port"));
        assert!(parse_dial_query("host=x&port=0").is_err());
        assert!(parse_dial_query("host=x&port=70000").is_err());
        assert!(
            parse_dial_query("host=x&port=80&protocol=sctp")
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(
            parse_dial_query("host=x&port=80&tries=11")
                .unwrap_err()
                .contains("tries")
        );
        assert!(parse_dial_query("host=x&port=80&tries=0").is_err());
    }
}
