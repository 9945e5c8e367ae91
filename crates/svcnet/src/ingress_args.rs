//! Ingress controller flags shared by `svcnet up`, `get` and `check`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// Which Ingresses svcnet serves, and where.
#[derive(clap::Args, Debug, Clone)]
pub struct IngressArgs {
    /// Cleartext HTTP listener of the Ingress controller (HTTP/1.1 and h2c), or `none`.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR|none")]
    pub http_addr: String,
    /// TLS listener of the Ingress controller (HTTP/1.1 and HTTP/2 by ALPN), or `none`.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR|none")]
    pub https_addr: String,
    /// Threads serving the Ingress listeners, each with its own single-threaded runtime
    /// and its own listening sockets (SO_REUSEPORT), as nginx's `worker_processes auto`
    /// with `reuseport`. Default: one per CPU this process may run on; 0: the main runtime
    /// serves them.
    #[arg(long, value_name = "N")]
    pub ingress_workers: Option<usize>,
    /// Who serves HTTP/1.1 requests without a body: `fast` (svcnet's own path, the
    /// default) or `hyper` (every request through hyper, as before the fast path; for
    /// comparison and as a fallback).
    #[arg(long, default_value = "fast", value_name = "fast|hyper")]
    pub ingress_http1: Http1Engine,
    #[command(flatten)]
    pub classes: IngressClassArgs,
}

/// `--ingress-http1`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http1Engine {
    /// svcnet's own HTTP/1.1 path for requests without a body.
    Fast,
    /// hyper for every request.
    Hyper,
}

/// Which Ingresses svcnet serves (`up`, `check`, `get`).
#[derive(clap::Args, Debug, Clone)]
pub struct IngressClassArgs {
    /// Also serve Ingresses of this IngressClass name (repeatable), beside classes whose
    /// controller is `svcnet.io/ingress-controller`: `--ingress-class nginx` takes over an
    /// ingress-nginx cluster.
    #[arg(long = "ingress-class", value_name = "NAME")]
    pub ingress_classes: Vec<String>,
}

impl IngressClassArgs {
    /// The controller's selection settings.
    pub fn controller(&self) -> svcnet_ingress::ControllerConfig {
        svcnet_ingress::ControllerConfig {
            extra_classes: self.ingress_classes.clone(),
        }
    }
}

impl IngressArgs {
    /// `--ingress-workers`, defaulted to the CPUs available.
    pub fn workers(&self) -> usize {
        self.ingress_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The controller's selection settings.
    pub fn controller(&self) -> svcnet_ingress::ControllerConfig {
        self.classes.controller()
    }

    /// A listener flag: `None` for `none`/`off`.
    fn addr(flag: &str, value: &str) -> Result<Option<SocketAddr>> {
        match value {
            "none" | "off" => Ok(None),
            v => v
                .parse()
                .map(Some)
                .with_context(|| format!("--{flag}: {v:?} is not an address like 127.0.0.1:8080")),
        }
    }

    /// The HTTP listener address.
    pub fn http(&self) -> Result<Option<SocketAddr>> {
        IngressArgs::addr("http-addr", &self.http_addr)
    }

    /// The HTTPS listener address.
    pub fn https(&self) -> Result<Option<SocketAddr>> {
        IngressArgs::addr("https-addr", &self.https_addr)
    }
}

/// Where svcnet keeps state between runs (the Ingress controller's local CA).
#[derive(clap::Args, Debug, Clone)]
pub struct StateArgs {
    /// State directory (the local CA's key and certificate). Default: $SVCNET_STATE_DIR,
    /// else $XDG_STATE_HOME/svcnet, else ~/.local/state/svcnet.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateArgs {
    /// The directory to use.
    pub fn dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(svcnet_ingress::default_state_dir)
    }
}
