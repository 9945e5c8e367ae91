//! A one-request HTTP/1.1 client bound to a chosen source address (for `/_agent/dial`
//! and readiness probes; hyper's pooled client cannot bind a source per request).

use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// GETs `path` from `addr`, connecting from `source`, with the given headers; returns the
/// status and the body's first `limit` bytes (the rest is not read, as kubelet reads
/// at most 10 KiB of a probe's answer).
pub async fn get(
    source: Option<IpAddr>,
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    limit: usize,
) -> Result<(StatusCode, Bytes), String> {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {path}: invalid request: {e}"))?;
    let stream = crate::net::connect_from(source, addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
    // The connection task ends when `sender` and the response body are dropped, at the
    // latest when this function returns or its caller's timeout drops it.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP client connection");
        }
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut out = BytesMut::new();
    while out.len() < limit {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = limit - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(e)) => return Err(format!("GET http://{addr}{path}: reading the body: {e}")),
        }
    }
    Ok((status, out.freeze()))
}
