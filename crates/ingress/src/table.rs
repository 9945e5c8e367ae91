//! The compiled route table: the contract between the pure core (`compile`, `route`) and
//! the server. Everything here is immutable once built; the server holds it in an
//! `ArcSwap` and loads it per request.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use svcnet_model::types::{ObjectKey, PathType};

/// `http` or `https`: the listener the request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// The cleartext listener.
    Http,
    /// The TLS listener.
    Https,
}

impl Scheme {
    /// `http` / `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What the router needs to know of a request.
#[derive(Clone, Copy, Debug)]
pub struct RouteRequest<'a> {
    /// The listener.
    pub scheme: Scheme,
    /// The `Host` header (HTTP/1.1) or `:authority` (HTTP/2) exactly as received,
    /// port included when present. The router lower-cases it and drops the port.
    pub host: &'a str,
    /// The path, without the query, as received (not decoded).
    pub path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
    /// The request method.
    pub method: &'a http::Method,
    /// All request headers (canary-by-header, cookies, CORS `Origin`).
    pub headers: &'a http::HeaderMap,
    /// The client's address (allow/deny lists).
    pub client_ip: IpAddr,
    /// A uniformly random number in `0..100` drawn by the caller for this request: the
    /// canary-weight draw. Passing it in keeps [`RouteTable::route`] pure and testable.
    pub weight_draw: u32,
}

/// The answer for one request.
#[derive(Debug)]
pub enum Decision<'t> {
    /// Answer without contacting a backend: redirects (ssl-redirect, force-ssl-redirect,
    /// app-root, permanent/temporal-redirect), 404 (no route), 403 (source ranges),
    /// 503 (a backend Service that does not exist or has no port of that name).
    Respond(Reply),
    /// Forward to a backend.
    Proxy(Upstream<'t>),
}

/// A response made by the controller itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Location` for redirects).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Why, for the access log and error pages (`no route for host ...`).
    pub reason: String,
    /// The route that produced it, when one matched (metrics labels).
    pub route: Option<usize>,
}

/// Where a request goes.
#[derive(Debug)]
pub struct Upstream<'t> {
    /// The matched route.
    pub route: &'t Route,
    /// The backend chosen: the route's own, or one of its canaries'.
    pub backend: &'t Backend,
    /// True when `backend` is a canary's.
    pub canary: bool,
    /// The path and query to send upstream (after `rewrite-target`).
    pub path_and_query: String,
}

/// One path of one host: the unit of matching, metrics and per-route state.
#[derive(Debug)]
pub struct Route {
    /// Index in [`RouteTable::routes`]: the key of per-route state (rate limiters, metrics).
    pub id: usize,
    /// The Ingress that defined it.
    pub ingress: ObjectKey,
    /// The host as written (`None` for host-less rules and the catch-all default backend).
    pub host: Option<String>,
    /// The path as written (`/` for default backends).
    pub path: String,
    /// The path type, as written (`None` for a default backend).
    pub path_type: Option<PathType>,
    /// True when the path is matched as a regex (`use-regex` / `rewrite-target`).
    pub regex: bool,
    /// The annotations of the Ingress that defined it.
    pub policy: Arc<Policy>,
    /// The backend.
    pub backend: Backend,
    /// Canary backends attached to this route, in the order they are tried.
    pub canaries: Vec<Canary>,
}

impl Route {
    /// The backend at `index`: 0 is the route's own, `i + 1` its canary `i`.
    pub fn backend_at(&self, index: usize) -> Option<&Backend> {
        match index {
            0 => Some(&self.backend),
            i => self.canaries.get(i - 1).map(|c| &c.backend),
        }
    }

    /// The index of `backend` (one of this route's) as [`Route::backend_at`] takes it.
    pub fn backend_index(&self, backend: &Backend) -> Option<usize> {
        if std::ptr::eq(backend, &self.backend) {
            return Some(0);
        }
        self.canaries
            .iter()
            .position(|c| std::ptr::eq(&c.backend, backend))
            .map(|i| i + 1)
    }
}

/// A backend: a Service port and its ready endpoints, resolved at compile time.
#[derive(Debug)]
pub struct Backend {
    /// The Service.
    pub service: ObjectKey,
    /// The Service port (number as resolved, from a number or a name).
    pub service_port: Option<u16>,
    /// The Service port's name (empty when unnamed).
    pub port_name: String,
    /// Ready endpoints (pod address and resolved target port), in a stable order.
    /// Empty (and no `external`): the server answers 503.
    pub endpoints: Vec<UpstreamEndpoint>,
    /// An ExternalName Service naming a host outside the cluster: its endpoints are looked
    /// up when requests come (see [`crate::names`]), `endpoints` is empty.
    pub external: Option<ExternalTarget>,
    /// The policy of the Ingress that defined this backend (a canary's own Ingress for
    /// canary backends): backend-protocol, timeouts, affinity, upstream-hash-by.
    pub policy: Arc<Policy>,
    /// Set when the backend cannot be used and why (Service missing, port not found,
    /// `resource` backends). The server answers 503 with this reason.
    pub unusable: Option<String>,
}

/// Where an ExternalName backend outside the cluster sends requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalTarget {
    /// The name, lower-cased, without a trailing dot.
    pub host: String,
    /// The Service port's `targetPort`.
    pub port: u16,
}

/// One upstream endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamEndpoint {
    /// Pod IP and port.
    pub addr: SocketAddr,
    /// The pod (`targetRef`).
    pub pod: Option<ObjectKey>,
}

/// A canary attached to a route.
#[derive(Debug)]
pub struct Canary {
    /// The canary Ingress.
    pub ingress: ObjectKey,
    /// How requests are chosen.
    pub rule: CanaryRule,
    /// Where they go.
    pub backend: Backend,
}

/// `canary-by-header`, `canary-by-header-value`, `canary-by-cookie`, `canary-weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CanaryRule {
    /// `canary-by-header`: the header name (lower-case).
    pub header: Option<String>,
    /// `canary-by-header-value`: when set, only this exact value routes to the canary.
    pub header_value: Option<String>,
    /// `canary-by-cookie`: the cookie name.
    pub cookie: Option<String>,
    /// `canary-weight`, 0..=`weight_total`.
    pub weight: u32,
    /// `canary-weight-total`, default 100.
    pub weight_total: u32,
}

/// `backend-protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendProtocol {
    /// HTTP/1.1 (the default).
    #[default]
    Http,
    /// HTTP/1.1 over TLS (not verified, as ingress-nginx's default).
    Https,
    /// gRPC: HTTP/2 cleartext.
    Grpc,
    /// gRPC over TLS.
    Grpcs,
    /// HTTP/2 cleartext (h2c).
    H2c,
}

/// The annotations of one Ingress, parsed and checked. Defaults are ingress-nginx's.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// `ssl-redirect` (default true): plain-HTTP requests to a host with TLS get 308.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect` (default false): 308 even without TLS for the host.
    pub force_ssl_redirect: bool,
    /// `rewrite-target`, with `$1`.. capture references.
    pub rewrite_target: Option<String>,
    /// `use-regex`.
    pub use_regex: bool,
    /// `app-root`: `/` redirects (302) here.
    pub app_root: Option<String>,
    /// `permanent-redirect` and its code (default 301).
    pub permanent_redirect: Option<(String, u16)>,
    /// `temporal-redirect` (302).
    pub temporal_redirect: Option<String>,
    /// `backend-protocol`.
    pub backend_protocol: BackendProtocol,
    /// Rate limits (`limit-rps`, `limit-rpm`, `limit-connections`, ...).
    pub limits: Limits,
    /// `allowlist-source-range` / `whitelist-source-range` (empty = everyone).
    pub allow_source: Vec<IpNet>,
    /// `denylist-source-range`.
    pub deny_source: Vec<IpNet>,
    /// `auth-url` and friends.
    pub auth: Option<ExternalAuth>,
    /// `proxy-body-size` in bytes (default 1 MiB, as ingress-nginx); `None` = unlimited
    /// (`0`).
    pub proxy_body_size: Option<u64>,
    /// `proxy-connect-timeout` (default 5 s).
    pub connect_timeout: Duration,
    /// `proxy-read-timeout` (default 60 s).
    pub read_timeout: Duration,
    /// `proxy-send-timeout` (default 60 s).
    pub send_timeout: Duration,
    /// `enable-cors` and `cors-allow-*`.
    pub cors: Option<Cors>,
    /// `affinity: cookie` and `session-cookie-*`.
    pub affinity: Option<CookieAffinity>,
    /// `upstream-hash-by`.
    pub upstream_hash_by: Option<HashBy>,
    /// `server-alias`: extra precise host names of this Ingress's hosts.
    pub server_alias: Vec<String>,
    /// `canary: "true"` and the `canary-*` rules: this Ingress is a canary of the primary
    /// paths with the same host, path and pathType (`None` for ordinary Ingresses).
    pub canary: Option<CanaryRule>,
}

/// Per-client-address limits (ingress-nginx's `limit-*`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// `limit-rps`.
    pub rps: Option<u32>,
    /// `limit-rpm`.
    pub rpm: Option<u32>,
    /// `limit-connections`: concurrent connections (requests in flight) per address.
    pub connections: Option<u32>,
    /// `limit-burst-multiplier` (default 5).
    pub burst_multiplier: u32,
    /// `limit-whitelist`: addresses the limits do not apply to.
    pub whitelist: Vec<IpNet>,
}

/// `auth-url`, `auth-signin`, `auth-response-headers`, `auth-method`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalAuth {
    /// The URL of the auth service (http or https).
    pub url: http::Uri,
    /// `auth-method` (default GET).
    pub method: http::Method,
    /// `auth-signin`: on 401, redirect (302) here with `rd=` the original URL.
    pub signin: Option<String>,
    /// `auth-response-headers`: copied from the auth response to the upstream request.
    pub response_headers: Vec<http::HeaderName>,
}

/// CORS settings (ingress-nginx defaults when only `enable-cors` is set).
#[derive(Clone, Debug, PartialEq)]
pub struct Cors {
    /// `cors-allow-origin` (default `*`).
    pub allow_origin: Vec<String>,
    /// `cors-allow-methods`.
    pub allow_methods: String,
    /// `cors-allow-headers`.
    pub allow_headers: String,
    /// `cors-expose-headers`.
    pub expose_headers: Option<String>,
    /// `cors-allow-credentials` (default true).
    pub allow_credentials: bool,
    /// `cors-max-age` seconds (default 1728000).
    pub max_age: u32,
}

/// `affinity: cookie`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieAffinity {
    /// `session-cookie-name` (default `INGRESSCOOKIE`).
    pub name: String,
    /// `session-cookie-path` (default: the route's path, `/` for regex paths).
    pub path: Option<String>,
    /// `session-cookie-max-age` / `-expires` seconds.
    pub max_age: Option<u64>,
}

/// `upstream-hash-by`: what consistent hashing keys on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashBy {
    /// `$remote_addr` / `$binary_remote_addr`.
    RemoteAddr,
    /// `$request_uri` (path and query).
    RequestUri,
    /// `$uri` (path only).
    Uri,
    /// `$host`.
    Host,
    /// `$http_<name>`: a request header.
    Header(http::HeaderName),
    /// `$cookie_<name>`.
    Cookie(String),
    /// `$arg_<name>`: a query parameter.
    Arg(String),
}

/// A host that needs a certificate on the TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsHost {
    /// The host (`*.example.com` for wildcards), lower-case.
    pub host: String,
    /// Where the certificate comes from.
    pub source: CertSource,
    /// The Ingress that asked for it.
    pub ingress: ObjectKey,
}

/// Where a host's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// A `kubernetes.io/tls` Secret (PEM chain and key, as stored).
    Secret {
        /// The Secret.
        secret: ObjectKey,
        /// `tls.crt`.
        cert_pem: Vec<u8>,
        /// `tls.key`.
        key_pem: Vec<u8>,
    },
    /// No usable Secret (none named, missing, or invalid): svcnet's local CA issues one,
    /// as it does for `cert-manager.io/(cluster-)issuer` in standalone mode.
    LocalCa {
        /// Why (for `svcnet check` and logs): `no secretName`, `secret missing`,
        /// `cert-manager.io/cluster-issuer: NAME`.
        why: String,
    },
}

/// One finding of the compiler, for `svcnet check` and the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The Ingress it is about.
    pub ingress: ObjectKey,
    /// Error: the Ingress is not served. Warning: served, with the issue described.
    pub severity: Severity,
    /// The field or annotation (`metadata.annotations[nginx.ingress.kubernetes.io/limit-rps]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Informational: ignored (another class), a conflict lost.
    Notice,
    /// Served, but not as written (a deprecated annotation name, ...).
    Warning,
    /// Not served.
    Error,
}

/// Which Ingresses this controller serves.
#[derive(Clone, Debug, Default)]
pub struct ControllerConfig {
    /// Extra class names to serve (`--ingress-class`), beside classes whose controller is
    /// [`CONTROLLER_NAME`].
    pub extra_classes: Vec<String>,
}

/// The `spec.controller` of IngressClasses svcnet serves.
pub const CONTROLLER_NAME: &str = "svcnet.io/ingress-controller";

/// Counts for logs and `get ingress`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Ingresses served.
    pub ingresses: usize,
    /// Routes (host × path).
    pub routes: usize,
    /// Precise hosts.
    pub hosts: usize,
    /// Wildcard hosts.
    pub wildcard_hosts: usize,
}

/// Ingresses served, by key, with the class that selected them (for `get ingress` and
/// `check`).
pub type Served = BTreeMap<ObjectKey, String>;
