//! svcnet's Ingress controller.
//!
//! The pure core compiles the cluster's Ingresses into an immutable [`RouteTable`]
//! (`compile`) and answers, for one request head, where it goes ([`RouteTable::route`]).
//! The server (`server`) is the tokio shell around it: listeners, TLS, proxying,
//! stateful middlewares (rate limits, external auth, affinity).

pub mod annotations;
pub mod compile;
mod hosts;
mod paths;
pub mod route;
pub mod table;

pub mod accesslog;
pub mod auth;
pub mod ca;
pub mod cors;
pub mod h1;
pub mod h1server;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod server;
pub mod tls;

pub use ca::{LocalCa, default_state_dir};
pub use server::{IngressServer, ServerConfig, ServerError};

pub use annotations::parse_annotations;
pub use compile::compile;
pub use route::RouteTable;
pub use table::*;
