//! `svcnet probe`: one real connection from inside a pod, through a running `svcnet up`
//! (its admin API dials from the pod's agent, so the pod's address, its egress policy and
//! the Service load balancer all take part).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Arguments of `svcnet probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The pod the connection starts from, `NAMESPACE/POD`.
    #[arg(long, value_name = "NS/POD")]
    from: String,
    /// Where to: `HOST:PORT` (a pod IP, a Service VIP, a name the system resolves).
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
    /// tcp (connect, send a line, read the reply), udp (a datagram and its reply) or
    /// http (GET /hostname).
    #[arg(long, default_value = "tcp", value_name = "PROTOCOL")]
    protocol: String,
    /// The admin address of the running `svcnet up`.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    admin_addr: SocketAddr,
    /// Print the JSON answer.
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "text")]
    output: String,
}

/// Runs the probe: exit 0 connected, 1 blocked (refused, reset, timed out, denied), 2 the
/// probe could not run (no such pod, bad input, `svcnet up` not reachable).
pub fn run(args: ProbeArgs) -> Result<ExitCode> {
    let (host, port) = args
        .to
        .rsplit_once(':')
        .with_context(|| format!("--to {:?}: expected HOST:PORT", args.to))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--to {:?}: the port must be 1-65535", args.to))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !args.from.contains('/') {
        bail!("--from {:?}: expected NAMESPACE/POD", args.from);
    }
    let protocol = args.protocol.to_ascii_lowercase();
    let path = format!(
        "/api/probe?from={}&host={}&port={port}&protocol={}",
        encode(&args.from),
        encode(host),
        encode(&protocol)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (status, body) = runtime
        .block_on(get(args.admin_addr, &path))
        .with_context(|| {
            format!(
                "asking svcnet up at {} (is it running? --admin-addr)",
                args.admin_addr
            )
        })?;
    if status != 200 {
        bail!("svcnet up answered {status}: {}", body.trim());
    }
    let v: Value = serde_json::from_str(&body).context("the admin API's answer")?;
    if v["outcome"] == "error" {
        bail!(
            "{}",
            v["error"].as_str().unwrap_or("the probe could not run")
        );
    }
    let connected = v["connected"].as_bool().unwrap_or(false);
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let target = format!("{}:{port}/{}", host, protocol.to_ascii_uppercase());
        if connected {
            println!(
                "{} -> {target}: connected (reply {:?})",
                args.from,
                v["reply"].as_str().unwrap_or("")
            );
        } else {
            println!(
                "{} -> {target}: blocked ({})",
                args.from,
                v["error"].as_str().unwrap_or("no reply")
            );
        }
    }
    Ok(if connected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
