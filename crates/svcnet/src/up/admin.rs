//! The admin HTTP endpoint of `svcnet up`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok` while the process runs |
//! | `GET /readyz` | 200 once every listener is bound and the first state is served, else 503 |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /api/state` | the served cluster as Kubernetes objects (JSON) |
//! | `GET /api/errors` | the last reload: accepted or refused, with its diagnostics |
//! | `POST /api/pods/NS/NAME/ready?value=true\|false\|auto` | flip a pod's readiness (`auto`: back to its probes) |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use svcnet_model::render;
use svcnet_model::types::ObjectKey;
use tokio::net::TcpListener;
use tokio::sync::{mpsc::UnboundedSender, oneshot};
use tracing::debug;

use super::{Event, Shared};

type Body = Full<Bytes>;

/// Binds the admin address and serves it in the background. Returns the bound address.
pub(crate) async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
    events: UnboundedSender<Event>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            let events = events.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let shared = shared.clone();
                    let events = events.clone();
                    async move { Ok::<_, Infallible>(route(req, &shared, &events).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!(error = %e, "admin connection");
                }
            });
        }
    });
    Ok(local)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn route(
    req: Request<Incoming>,
    shared: &Shared,
    events: &UnboundedSender<Event>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if shared.ready.load(Ordering::SeqCst) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", shared.not_ready_reason.load()),
                )
            }
        }
        (&Method::GET, "/metrics") => {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, &shared.registry) {
                Ok(()) => {
                    let mut r = text(StatusCode::OK, out);
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    r
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding metrics: {e}\n"),
                ),
            }
        }
        (&Method::GET, "/api/state") => json_response(StatusCode::OK, &state_json(shared)),
        (&Method::GET, "/api/errors") => {
            let last = shared.last_reload.load();
            let findings: Vec<Value> = last
                .diagnostics
                .0
                .iter()
                .map(|d| {
                    let mut v = serde_json::to_value(d).unwrap_or_default();
                    v["text"] = Value::from(d.to_string());
                    v
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({
                    "accepted": last.ok,
                    "at": last.at,
                    "errors": last.diagnostics.count(svcnet_model::Severity::Error),
                    "diagnostics": findings,
                }),
            )
        }
        (&Method::POST, p) if p.starts_with("/api/pods/") => {
            let parts: Vec<&str> = p.trim_start_matches("/api/pods/").split('/').collect();
            let [ns, name, "ready"] = parts.as_slice() else {
                return text(
                    StatusCode::NOT_FOUND,
                    "use POST /api/pods/NAMESPACE/NAME/ready?value=true|false|auto\n",
                );
            };
            let value = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("value="))
                .unwrap_or("");
            let value = match value {
                "true" => Some(true),
                "false" => Some(false),
                "auto" => None,
                other => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("value must be true, false or auto, not {other:?}\n"),
                    );
                }
            };
            let (tx, rx) = oneshot::channel();
            let pod = ObjectKey::new(*ns, *name);
            if events
                .send(Event::SetReady(pod.clone(), value, tx))
                .is_err()
            {
                return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
            }
            match rx.await {
                Ok(Ok(ready)) => json_response(
                    StatusCode::OK,
                    &json!({"pod": pod.to_string(), "ready": ready, "override": value}),
                ),
                Ok(Err(e)) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
                Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The served cluster as Kubernetes objects, grouped by kind.
fn state_json(shared: &Shared) -> Value {
    let c = shared.served.load();
    let list = |values: Vec<Value>| Value::Array(values);
    json!({
        "generation": shared.generation.load(Ordering::SeqCst),
        "namespaces": list(c.namespaces.values().map(render::namespace).collect()),
        "nodes": list(c.nodes.values().map(render::node).collect()),
        "pods": list(c.pods.values().map(render::pod).collect()),
        "services": list(c.services.values().map(render::service).collect()),
        "endpointSlices": list(c.endpoint_slices.values().map(render::endpoint_slice).collect()),
        "ingresses": list(c.ingresses.values().map(render::ingress).collect()),
        "networkPolicies": list(c.network_policies.values().map(render::network_policy).collect()),
        "workloads": list(c.workloads.values().map(|w| render::workload(&c, w)).collect()),
    })
}
