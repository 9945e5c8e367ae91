//! The agent's HTTP server: HTTP/1.1 and h2c on one socket, the pod-info JSON on every
//! path, and the `/_agent/` endpoints.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::agent::PodCtx;
use crate::dial;

/// The response header naming the pod that answered.
pub const POD_HEADER: &str = "x-svcnet-pod";

/// Serves HTTP/1.1 or h2c (prior knowledge) on one connection until it closes.
pub async fn serve<S>(ctx: Arc<PodCtx>, io: S, peer: SocketAddr, local: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, peer, local, req).await) }
    });
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        debug!(%peer, %local, error = %e, "HTTP connection");
    }
}

/// The JSON every ordinary path answers.
#[derive(Serialize)]
struct PodInfo<'a> {
    pod: &'a str,
    namespace: &'a str,
    #[serde(rename = "podIP")]
    pod_ip: String,
    node: &'a str,
    port: u16,
    method: &'a str,
    path: &'a str,
    /// Path and query, as received (what an Ingress rewrite produced, for instance).
    uri: &'a str,
    host: &'a str,
    headers: BTreeMap<String, String>,
    #[serde(rename = "clientIP")]
    client_ip: String,
}

async fn handle(
    ctx: &PodCtx,
    peer: SocketAddr,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let Some(endpoint) = path.strip_prefix("/_agent/") else {
        return pod_info(ctx, peer, local, &req);
    };
    match endpoint {
        "hostname" => text(ctx, StatusCode::OK, ctx.spec.hostname.clone()),
        "clientip" => text(ctx, StatusCode::OK, peer.to_string()),
        "healthz" => {
            if ctx.healthy.load(Ordering::Relaxed) {
                text(ctx, StatusCode::OK, "ok".to_string())
            } else {
                text(
                    ctx,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unhealthy (set by the agent's owner)".to_string(),
                )
            }
        }
        "echo" => {
            let msg = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "msg")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            text(ctx, StatusCode::OK, msg)
        }
        "dial" => {
            let req = match dial::parse_dial_query(query) {
                Ok(r) => r,
                Err(e) => return text(ctx, StatusCode::BAD_REQUEST, e),
            };
            let dst = match dial::resolve(&req, &ctx.spec.ips).await {
                Ok(a) => a,
                Err(e) => return text(ctx, StatusCode::BAD_REQUEST, e),
            };
            let result = dial::dial(&ctx.spec.key, &ctx.spec.ips, &ctx.config, &req, dst).await;
            json(ctx, StatusCode::OK, &result)
        }
        _ => text(
            ctx,
            StatusCode::NOT_FOUND,
            format!(
                "no agent endpoint /_agent/{endpoint}; there are hostname, clientip, healthz, echo?msg=, dial?host=&port=&protocol=&request=&tries="
            ),
        ),
    }
}

fn pod_info(
    ctx: &PodCtx,
    peer: SocketAddr,
    local: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes());
        headers
            .entry(k.as_str().to_string())
            .and_modify(|all| {
                all.push_str(", ");
                all.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    // HTTP/2 carries the host in :authority, which hyper puts in the URI.
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let info = PodInfo {
        pod: &ctx.spec.key.name,
        namespace: &ctx.spec.key.namespace,
        pod_ip: local.ip().to_string(),
        node: &ctx.spec.node,
        port: local.port(),
        method: req.method().as_str(),
        path: req.uri().path(),
        uri: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path(), |pq| pq.as_str()),
        host,
        headers,
        client_ip: peer.ip().to_string(),
    };
    json(ctx, StatusCode::OK, &info)
}

fn json<T: Serialize>(ctx: &PodCtx, status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(ctx, status, "application/json", body.into())
        }
        Err(e) => text(ctx, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn text(ctx: &PodCtx, status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(ctx, status, "text/plain; charset=utf-8", body.into())
}

fn respond(
    ctx: &PodCtx,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Namespace and name are DNS labels (validated by model), so this always succeeds.
    if let Ok(v) = HeaderValue::from_str(&ctx.spec.key.to_string()) {
        h.insert(POD_HEADER, v);
    }
    resp
}
