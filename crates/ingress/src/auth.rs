//! External authentication (`auth-url`, `auth-method`, `auth-signin`,
//! `auth-response-headers`), as nginx's `auth_request` in ingress-nginx.
//!
//! A real sub-request goes to the auth URL with the original request's headers (no
//! body) plus `X-Original-URL`, `X-Original-Method`, `X-Auth-Request-Redirect` and the
//! `X-Forwarded-*` set. A 2xx answer lets the request through and copies the
//! `auth-response-headers` to the upstream request; 401 becomes a 302 to `auth-signin`
//! with `rd=` the original URL when it is set, else 401; 403 stays 403; anything else,
//! or an auth service that cannot be reached, gives 500.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::BodyExt;

use crate::proxy::{self, Conn, Forwarded, Proto, ReqBody, SendError, Upstreams};
use crate::table::ExternalAuth;

/// The original request, as the auth service sees it.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    /// Method.
    pub method: &'a Method,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// `http` / `https`.
    pub scheme: &'static str,
    /// The host as received.
    pub host: &'a str,
    /// Path and query as received.
    pub uri: &'a str,
    /// Client address.
    pub client_ip: IpAddr,
    /// The listener port.
    pub port: u16,
}

/// The verdict.
#[derive(Debug)]
pub enum AuthOutcome {
    /// 2xx: these headers go to the upstream request.
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// Answer the client with this.
    Deny {
        /// Status.
        status: u16,
        /// Headers (`Location`, `WWW-Authenticate`).
        headers: Vec<(HeaderName, HeaderValue)>,
        /// Why, for the body and the access log.
        reason: String,
    },
}

fn deny(status: u16, reason: String) -> AuthOutcome {
    AuthOutcome::Deny {
        status,
        headers: Vec::new(),
        reason,
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (a query parameter value).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `auth-signin` redirect target: `signin` plus `rd=` the original URL.
pub fn signin_location(signin: &str, original_url: &str) -> String {
    let sep = if signin.contains('?') { '&' } else { '?' };
    format!("{signin}{sep}rd={}", percent_encode(original_url))
}

/// Where svcnet itself can take a sub-request without asking DNS: a Service named by its
/// cluster DNS name (its cluster IP), or a host this controller serves (its own listener,
/// as the auth host's DNS would point at the ingress load balancer in a cluster).
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalNames<'a> {
    /// The current route table.
    pub table: Option<&'a crate::route::RouteTable>,
    /// The cleartext listener.
    pub http: Option<SocketAddr>,
    /// The TLS listener.
    pub https: Option<SocketAddr>,
}

async fn resolve(
    url: &http::Uri,
    local: &LocalNames<'_>,
    timeout: Duration,
) -> Result<(SocketAddr, Proto), String> {
    let proto = match url.scheme_str() {
        Some("https") => Proto::H1Tls,
        Some("http") | None => Proto::H1,
        Some(other) => return Err(format!("auth-url scheme {other:?} is not http(s)")),
    };
    let host = url.host().ok_or("auth-url has no host")?;
    let port = url
        .port_u16()
        .unwrap_or(if proto == Proto::H1Tls { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((SocketAddr::new(ip, port), proto));
    }
    if let Some(table) = local.table {
        if let Some(ip) = table.service_ip(bare) {
            return Ok((SocketAddr::new(ip, port), proto));
        }
        if table.serves_host(bare) {
            let own = if proto == Proto::H1Tls {
                local.https
            } else {
                local.http
            };
            if let Some(own) = own {
                return Ok((own, proto));
            }
        }
    }
    let mut addrs = tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port)))
        .await
        .map_err(|_| format!("resolving {bare} timed out"))?
        .map_err(|e| format!("resolving {bare}: {e}"))?;
    addrs
        .next()
        .map(|a| (a, proto))
        .ok_or_else(|| format!("{bare} has no address"))
}

fn sub_request(auth: &ExternalAuth, req: &AuthRequest<'_>) -> Result<Request<ReqBody>, String> {
    let mut headers = req.headers.clone();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::HOST);
    let client_ip = req.client_ip.to_string();
    proxy::forward_headers(
        &mut headers,
        &Forwarded {
            client_ip: &client_ip,
            scheme: req.scheme,
            host: req.host,
            port: req.port,
        },
    );
    let original = format!("{}://{}{}", req.scheme, req.host, req.uri);
    let mut set = |name: &'static str, value: &str| -> Result<(), String> {
        let v = HeaderValue::from_str(value).map_err(|_| format!("{name}: not a header value"))?;
        headers.insert(HeaderName::from_static(name), v);
        Ok(())
    };
    set("x-original-url", &original)?;
    set("x-original-method", req.method.as_str())?;
    set("x-auth-request-redirect", req.uri)?;
    set("x-sent-from", "svcnet-ingress")?;
    if let Some(a) = auth.url.authority() {
        set("host", a.as_str())?;
    }
    let pq = auth
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut r = Request::builder()
        .method(auth.method.clone())
        .uri(pq)
        .body(ReqBody::Empty)
        .map_err(|e| format!("auth request: {e}"))?;
    *r.headers_mut() = headers;
    Ok(r)
}

/// Sends the sub-request and decides. `connect` and `read` bound the exchange.
pub async fn check(
    upstreams: &Upstreams,
    local: &LocalNames<'_>,
    auth: &ExternalAuth,
    req: &AuthRequest<'_>,
    connect: Duration,
    read: Duration,
) -> AuthOutcome {
    let (addr, proto) = match resolve(&auth.url, local, connect).await {
        Ok(a) => a,
        Err(e) => return deny(500, format!("auth-url {}: {e}", auth.url)),
    };
    let sub = match sub_request(auth, req) {
        Ok(r) => r,
        Err(e) => return deny(500, e),
    };
    let exchange = async {
        let mut sub = sub;
        // One retry on a fresh connection when a pooled one was closed by the peer.
        for attempt in 0..2 {
            let conn: Conn = if attempt == 0 {
                upstreams.checkout(addr, proto, connect, false).await
            } else {
                upstreams.fresh(addr, proto, connect).await
            }
            .map_err(|e| e.to_string())?;
            let reused = conn.reused();
            match Upstreams::send(conn, sub).await {
                Ok((resp, ret)) => {
                    let (parts, body) = resp.into_parts();
                    // Read to the end so the connection can be reused.
                    let _ = body.collect().await;
                    if let Some(r) = ret {
                        r.give_back();
                    }
                    return Ok(parts);
                }
                Err(SendError::NotSent(r, _)) if reused => sub = *r,
                Err(SendError::NotSent(_, e)) | Err(SendError::Failed(e)) => {
                    return Err(e.to_string());
                }
            }
        }
        Err("auth service closed the connection".to_string())
    };
    let parts = match tokio::time::timeout(read + connect, exchange).await {
        Err(_) => return deny(500, format!("auth-url {}: timed out", auth.url)),
        Ok(Err(e)) => return deny(500, format!("auth-url {}: {e}", auth.url)),
        Ok(Ok(p)) => p,
    };
    let status = parts.status.as_u16();
    match status {
        200..=299 => AuthOutcome::Allow(
            auth.response_headers
                .iter()
                .filter_map(|n| parts.headers.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        ),
        401 => match &auth.signin {
            Some(signin) => {
                let original = format!("{}://{}{}", req.scheme, req.host, req.uri);
                let loc = signin_location(signin, &original);
                match HeaderValue::from_str(&loc) {
                    Ok(v) => AuthOutcome::Deny {
                        status: 302,
                        headers: vec![(header::LOCATION, v)],
                        reason: "authentication required: redirect to auth-signin".into(),
                    },
                    Err(_) => deny(500, "auth-signin is not a valid Location".into()),
                }
            }
            None => AuthOutcome::Deny {
                status: 401,
                headers: parts
                    .headers
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| (header::WWW_AUTHENTICATE, v.clone()))
                    .into_iter()
                    .collect(),
                reason: "authentication required".into(),
            },
        },
        403 => deny(403, "forbidden by auth-url".into()),
        other => deny(500, format!("auth-url answered {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signin_redirect_carries_the_original_url() {
        assert_eq!(
            signin_location("https://login.test/start", "https://a.test/p?q=1&r"),
            "https://login.test/start?rd=https%3A%2F%2Fa.test%2Fp%3Fq%3D1%26r"
        );
        assert_eq!(
            signin_location("https://login.test/start?x=1", "http://a.test/"),
            "https://login.test/start?x=1&rd=http%3A%2F%2Fa.test%2F"
        );
    }
}
