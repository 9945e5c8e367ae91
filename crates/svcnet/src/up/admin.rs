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
//! | `GET /api/probe?from=NS/POD&host=H&port=P&protocol=tcp\|udp\|http` | a real connection from inside a pod (`svcnet probe`) |
//! | `POST /api/probes` | many probes at once, concurrently: a JSON list of `{"from", "host", "port", "protocol"}` |

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
        (&Method::GET, "/api/probe") => {
            let query = req.uri().query().unwrap_or("").to_string();
            match probe_query(&query) {
                Ok(p) => json_response(StatusCode::OK, &probe_with(&shared.agents, p).await),
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        (&Method::POST, "/api/probes") => {
            let body = match http_body_util::BodyExt::collect(http_body_util::Limited::new(
                req.into_body(),
                4 << 20,
            ))
            .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading the body: {e}\n")),
            };
            let probes: Vec<ProbeSpec> = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "expected a JSON list of {{\"from\", \"host\", \"port\", \"protocol\"}}: {e}\n"
                        ),
                    );
                }
            };
            if probes.len() > MAX_PROBES {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("at most {MAX_PROBES} probes per request\n"),
                );
            }
            let mut set = tokio::task::JoinSet::new();
            for (i, p) in probes.into_iter().enumerate() {
                let agents = shared.agents.clone();
                set.spawn(async move { (i, probe_with(&agents, p).await) });
            }
            let mut out = Vec::new();
            while let Some(r) = set.join_next().await {
                if let Ok(r) = r {
                    out.push(r);
                }
            }
            out.sort_by_key(|(i, _)| *i);
            json_response(
                StatusCode::OK,
                &Value::Array(out.into_iter().map(|(_, v)| v).collect()),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The most probes one `POST /api/probes` may carry.
const MAX_PROBES: usize = 10_000;

/// One probe: from a pod, to an address, as `/_agent/dial` does it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ProbeSpec {
    /// `NAMESPACE/POD`.
    from: String,
    /// Target host (an IP, or a name for the system resolver).
    host: String,
    /// Target port.
    port: u16,
    /// `tcp` (default), `udp` or `http`.
    #[serde(default)]
    protocol: Option<String>,
}

fn probe_query(query: &str) -> Result<ProbeSpec, String> {
    let get = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let from = get("from").ok_or("missing from=NAMESPACE/POD")?;
    let host = get("host").ok_or("missing host=")?;
    let port = get("port")
        .ok_or("missing port=")?
        .parse()
        .map_err(|_| "port must be 1-65535".to_string())?;
    Ok(ProbeSpec {
        from,
        host,
        port,
        protocol: get("protocol"),
    })
}

/// Dials once from the pod. The JSON says whether a reply came back (`connected`), and
/// `outcome`: `connected`, `blocked` (the dial ran, no reply: refused, reset, timed out,
/// or denied by the pod's egress policy) or `error` (no such pod or agent, bad input).
async fn probe_with(agents: &svcnet_sandbox::Agents, p: ProbeSpec) -> Value {
    let protocol = p.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
    let base = json!({"from": p.from, "host": p.host, "port": p.port, "protocol": protocol});
    let fail = |e: String| {
        let mut v = base.clone();
        v["connected"] = Value::Bool(false);
        v["outcome"] = Value::from("error");
        v["error"] = Value::from(e);
        v
    };
    let Some((ns, name)) = p.from.split_once('/') else {
        return fail(format!("from: {:?} is not NAMESPACE/POD", p.from));
    };
    use svcnet_sandbox::dial::{DialProtocol, DialRequest};
    let dial_protocol = match protocol.as_str() {
        "tcp" => DialProtocol::Tcp,
        "udp" => DialProtocol::Udp,
        "http" => DialProtocol::Http,
        other => return fail(format!("protocol: {other:?} is not tcp, udp or http")),
    };
    let req = DialRequest {
        host: p.host.clone(),
        port: p.port,
        protocol: dial_protocol,
        request: "hostname".to_string(),
        tries: 1,
    };
    match agents.dial(&ObjectKey::new(ns, name), &req).await {
        Err(e) => fail(e),
        Ok(r) => {
            let mut v = base.clone();
            let reply = r.responses.first().map(|s| s.trim().to_string());
            // An empty TCP reply is a connection closed without an answer: not a success.
            let connected = reply.as_deref().is_some_and(|s| !s.is_empty());
            v["connected"] = Value::Bool(connected);
            v["outcome"] = Value::from(if connected { "connected" } else { "blocked" });
            if let Some(reply) = reply {
                v["reply"] = Value::from(reply);
            }
            if let Some(e) = r.errors.first() {
                v["error"] = Value::from(e.clone());
            } else if !connected {
                v["error"] = Value::from("the connection closed without a reply");
            }
            v
        }
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
