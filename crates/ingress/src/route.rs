//! The compiled route table and the match of one request head against it.
//!
//! Lookup cost depends on the request (its host, the number of `/` in its path, the regex
//! paths of its host), never on the number of Ingresses: precise hosts and wildcard parents
//! are hash lookups, `Exact` paths a hash lookup, `Prefix` paths one hash lookup per path
//! element, then the host's regex paths longest first.

use std::collections::HashMap;

/// The table's maps: keyed by host or path, looked up per request with foldhash (seeded
/// per process; the keys come from the manifests, so a client cannot grow a chain).
pub(crate) type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;
use std::net::IpAddr;

use http::HeaderValue;
use regex::Regex;

use crate::hosts::{MAX_HOST, normalize_host, valid_authority, wildcard_parent};
use crate::paths::{normalize, prefix_candidates};
use crate::table::{
    Backend, Decision, Policy, Reply, Route, RouteRequest, Scheme, Served, TableStats, TlsHost,
    Upstream,
};

/// The immutable route table: every served Ingress compiled into host and path maps.
/// Built by [`crate::compile`]; shared across threads (`Send + Sync`).
#[derive(Debug, Default)]
pub struct RouteTable {
    pub(crate) routes: Vec<Route>,
    pub(crate) hosts: Vec<HostTable>,
    /// Precise host (and `server-alias`) -> index in `hosts`.
    pub(crate) precise: Map<usize>,
    /// Parent domain of a `*.parent` host -> index in `hosts`.
    pub(crate) wildcard: Map<usize>,
    /// Host-less rules and the catch-all default backend.
    pub(crate) default_server: HostTable,
    pub(crate) tls_hosts: Vec<TlsHost>,
    pub(crate) served: Served,
    pub(crate) stats: TableStats,
    /// `name.namespace` of every Service with a cluster IP -> its first cluster IP: where
    /// an `auth-url` naming a Service (`http://oauth2-proxy.auth.svc.cluster.local/...`)
    /// goes without a cluster resolver.
    pub(crate) service_ips: Map<std::net::IpAddr>,
    /// `.svc.<cluster domain>`: the suffix of Service DNS names.
    pub(crate) svc_suffix: String,
}

// The table is shared by every connection task: it must stay `Send + Sync`.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<RouteTable>();
};

/// The paths of one host, merged across Ingresses.
#[derive(Debug, Default)]
pub(crate) struct HostTable {
    /// The host as written (`*.foo.com` for wildcards); empty for the default server.
    pub(crate) name: String,
    /// A certificate covers this host: plain-HTTP requests are redirected (ssl-redirect).
    pub(crate) tls: bool,
    /// `Exact` paths -> route.
    pub(crate) exact: Map<usize>,
    /// `Prefix` (and plain `ImplementationSpecific`) paths by element key -> (route, length
    /// of the path as written: `/foo/` is longer than `/foo` and wins over it).
    pub(crate) prefix: Map<(usize, usize)>,
    /// Regex paths, longest pattern first.
    pub(crate) regexes: Vec<RegexPath>,
    /// The host's default backend route (or the catch-all, for the default server).
    pub(crate) default_backend: Option<usize>,
}

/// One regex path of a host.
#[derive(Debug)]
pub(crate) struct RegexPath {
    /// `(?i)^(?:PATTERN)`.
    pub(crate) regex: Regex,
    /// Length of the pattern as written, in characters (longest path wins).
    pub(crate) len: usize,
    /// The route.
    pub(crate) route: usize,
}

/// How a path matched (the regex, for `rewrite-target` capture groups).
struct PathMatch<'t> {
    route: usize,
    regex: Option<&'t Regex>,
}

impl HostTable {
    /// The longest matching path: Exact beats Prefix on equal length, both beat a regex of
    /// the same length.
    fn match_path(&self, path: &str) -> Option<PathMatch<'_>> {
        // (written length, rank, route)
        let mut best: Option<(usize, u8, usize)> = None;
        if let Some(&r) = self.exact.get(path) {
            best = Some((path.chars().count(), 2, r));
        }
        if !self.prefix.is_empty() {
            for key in prefix_candidates(path) {
                if let Some(&(r, len)) = self.prefix.get(key) {
                    if best.is_none_or(|(bl, brank, _)| (len, 1) > (bl, brank)) {
                        best = Some((len, 1, r));
                    }
                    break;
                }
            }
        }
        for rp in &self.regexes {
            if let Some((bl, _, _)) = best
                && rp.len <= bl
            {
                break;
            }
            if rp.regex.is_match(path) {
                return Some(PathMatch {
                    route: rp.route,
                    regex: Some(&rp.regex),
                });
            }
        }
        best.map(|(_, _, route)| PathMatch { route, regex: None })
    }
}

impl RouteTable {
    /// A table that serves nothing: every request gets 404.
    pub fn empty() -> RouteTable {
        RouteTable::default()
    }

    /// True when a request with this Host would reach a named host of this table (a
    /// precise host, a `server-alias` or a wildcard), not the default server.
    pub fn serves_host(&self, host: &str) -> bool {
        let mut buf = [0u8; MAX_HOST];
        normalize_host(host, &mut buf).is_some_and(|h| self.host_table(h).is_some())
    }

    /// The cluster IP of a Service named the way cluster DNS names it:
    /// `name.namespace`, `name.namespace.svc` or `name.namespace.svc.<cluster domain>`
    /// (a trailing dot allowed).
    pub fn service_ip(&self, host: &str) -> Option<std::net::IpAddr> {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        let short = h
            .strip_suffix(self.svc_suffix.as_str())
            .or_else(|| h.strip_suffix(".svc"))
            .unwrap_or(&h);
        self.service_ips.get(short).copied()
    }

    /// Every route, indexed by [`Route::id`].
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Hosts that need a certificate on the TLS listener.
    pub fn tls_hosts(&self) -> &[TlsHost] {
        &self.tls_hosts
    }

    /// The Ingresses served, with the class that selected each.
    pub fn served(&self) -> &Served {
        &self.served
    }

    /// Counts.
    pub fn stats(&self) -> TableStats {
        self.stats.clone()
    }

    /// A deterministic text listing of the table (hosts sorted, paths in match order):
    /// for logs, `svcnet check` and snapshot tests.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut hosts: Vec<&HostTable> = self.hosts.iter().collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        for h in hosts {
            let _ = writeln!(out, "host {}{}", h.name, if h.tls { " [tls]" } else { "" });
            self.describe_paths(&mut out, h);
        }
        let mut aliases: Vec<(&String, &usize)> = self
            .precise
            .iter()
            .filter(|(name, i)| self.hosts.get(**i).is_some_and(|h| h.name != **name))
            .collect();
        aliases.sort();
        for (alias, i) in aliases {
            if let Some(h) = self.hosts.get(*i) {
                let _ = writeln!(out, "alias {alias} -> {}", h.name);
            }
        }
        let _ = writeln!(out, "default server");
        self.describe_paths(&mut out, &self.default_server);
        for t in &self.tls_hosts {
            let source = match &t.source {
                crate::table::CertSource::Secret { secret, .. } => format!("Secret {secret}"),
                crate::table::CertSource::LocalCa { why } => format!("local CA ({why})"),
            };
            let _ = writeln!(out, "tls {} <- {source} [{}]", t.host, t.ingress);
        }
        out
    }

    fn describe_paths(&self, out: &mut String, h: &HostTable) {
        use std::fmt::Write as _;
        let mut ids: Vec<usize> = Vec::new();
        let mut exact: Vec<(&String, &usize)> = h.exact.iter().collect();
        exact.sort();
        ids.extend(exact.into_iter().map(|(_, r)| *r));
        let mut prefix: Vec<(&String, &(usize, usize))> = h.prefix.iter().collect();
        prefix.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        ids.extend(prefix.into_iter().map(|(_, (r, _))| *r));
        ids.extend(h.regexes.iter().map(|r| r.route));
        ids.extend(h.default_backend);
        for id in ids {
            let Some(r) = self.routes.get(id) else {
                continue;
            };
            let what = match r.path_type {
                Some(t) if r.regex => format!("{} regex {}", t.as_str(), r.path),
                Some(t) => format!("{} {}", t.as_str(), r.path),
                None => "default backend".to_string(),
            };
            let _ = writeln!(
                out,
                "  {what} -> {} [{}]",
                describe_backend(&r.backend),
                r.ingress
            );
            for c in &r.canaries {
                let _ = writeln!(
                    out,
                    "    canary {:?} -> {} [{}]",
                    c.rule,
                    describe_backend(&c.backend),
                    c.ingress
                );
            }
        }
    }

    /// The host table for a routing host: precise (or alias), then wildcard by parent.
    fn host_table(&self, host: &str) -> Option<&HostTable> {
        if let Some(&i) = self.precise.get(host) {
            return self.hosts.get(i);
        }
        let parent = wildcard_parent(host)?;
        self.wildcard.get(parent).and_then(|&i| self.hosts.get(i))
    }

    /// Where one request goes. Pure: the same request and table give the same decision.
    ///
    /// Decided here: the route (host, then the longest path, then the host's default
    /// backend, then 404), app-root (302), permanent-redirect / temporal-redirect,
    /// ssl-redirect and force-ssl-redirect (308), allow/deny source ranges (403), the
    /// canary (header, cookie, weight), unusable backends (503) and the upstream path
    /// (`rewrite-target`). Left to the server: rate limits, external auth, body size,
    /// CORS headers, affinity and hashing, and 503 when `backend.endpoints` is empty.
    pub fn route(&self, req: &RouteRequest<'_>) -> Decision<'_> {
        // nginx refuses a Host that is not a valid authority with 400: redirects and logs
        // never see control characters.
        if !valid_authority(req.host) {
            return Decision::Respond(reply(400, "invalid Host header".to_string(), None));
        }
        let mut buf = [0u8; MAX_HOST];
        let host = normalize_host(req.host, &mut buf);
        let table = host
            .and_then(|h| self.host_table(h))
            .unwrap_or(&self.default_server);
        // The path is matched as nginx's `$uri`; the original is what goes upstream.
        let raw_path = req.path.split(['?', '#']).next().unwrap_or("");
        let Some(path) = normalize(raw_path) else {
            return Decision::Respond(reply(400, format!("bad request path {raw_path:?}"), None));
        };
        let matched = table.match_path(&path);
        let (route_id, regex) = match matched {
            Some(m) => (m.route, m.regex),
            None => match table.default_backend {
                Some(r) => (r, None),
                None => {
                    return Decision::Respond(reply(
                        404,
                        format!(
                            "no route for host {:?} path {:?}",
                            host.unwrap_or(""),
                            raw_path
                        ),
                        None,
                    ));
                }
            },
        };
        let Some(route) = self.routes.get(route_id) else {
            return Decision::Respond(reply(500, "route table is inconsistent".into(), None));
        };
        let policy: &Policy = &route.policy;

        if let Some(reply) = redirect(req, table, route, policy, &path, raw_path) {
            return Decision::Respond(reply);
        }
        if !source_allowed(policy, req.client_ip) {
            return Decision::Respond(reply(
                403,
                format!(
                    "client {} is not allowed by {}",
                    req.client_ip, route.ingress
                ),
                Some(route.id),
            ));
        }

        let (backend, canary) = choose_backend(route, req);
        if let Some(why) = &backend.unusable {
            return Decision::Respond(reply(503, why.clone(), Some(route.id)));
        }
        let path_and_query = upstream_path(route, policy, regex, &path, raw_path, req.query);
        Decision::Proxy(Upstream {
            route,
            backend,
            canary,
            path_and_query,
        })
    }
}

fn reply(status: u16, reason: String, route: Option<usize>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        reason,
        route,
    }
}

/// `location` with the bytes a URI cannot hold percent-encoded: controls, space,
/// `"<>\\^`{|}` and every byte past ASCII (a request path may carry raw UTF-8, which
/// nginx would echo raw into `Location`; RFC 3986 wants it encoded).
fn uri_escaped(location: &str) -> std::borrow::Cow<'_, str> {
    let bad = |b: u8| b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b);
    if !location.bytes().any(bad) {
        return std::borrow::Cow::Borrowed(location);
    }
    let mut out = String::with_capacity(location.len() + 16);
    for b in location.bytes() {
        if bad(b) {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push(char::from(b));
        }
    }
    std::borrow::Cow::Owned(out)
}

fn redirect_reply(status: u16, location: &str, reason: String, route: usize) -> Reply {
    match HeaderValue::from_str(&uri_escaped(location)) {
        Ok(v) => Reply {
            status,
            headers: vec![(http::header::LOCATION, v)],
            reason,
            route: Some(route),
        },
        Err(_) => reply(400, format!("cannot redirect to {location:?}"), Some(route)),
    }
}

/// app-root, permanent/temporal redirects, then ssl-redirect: nginx's rewrite phase runs
/// before its access phase (source ranges).
fn redirect(
    req: &RouteRequest<'_>,
    table: &HostTable,
    route: &Route,
    policy: &Policy,
    path: &str,
    raw_path: &str,
) -> Option<Reply> {
    if let Some(root) = &policy.app_root
        && path == "/"
    {
        let location = format!("{}://{}{}", req.scheme.as_str(), req.host, root);
        return Some(redirect_reply(
            302,
            &location,
            format!("app-root of {}", route.ingress),
            route.id,
        ));
    }
    if let Some((url, code)) = &policy.permanent_redirect {
        return Some(redirect_reply(
            *code,
            url,
            format!("permanent-redirect of {}", route.ingress),
            route.id,
        ));
    }
    if let Some(url) = &policy.temporal_redirect {
        return Some(redirect_reply(
            302,
            url,
            format!("temporal-redirect of {}", route.ingress),
            route.id,
        ));
    }
    if req.scheme == Scheme::Http
        && (policy.force_ssl_redirect || (policy.ssl_redirect && table.tls))
    {
        let mut buf = [0u8; MAX_HOST];
        let host = normalize_host(req.host, &mut buf).unwrap_or("");
        // ingress-nginx drops a trailing `/` of the URI (preserve-trailing-slash: false).
        let p = if raw_path.len() > 1 {
            raw_path.strip_suffix('/').unwrap_or(raw_path)
        } else {
            raw_path
        };
        let mut location = format!("https://{host}{p}");
        if let Some(q) = req.query {
            location.push('?');
            location.push_str(q);
        }
        let why = if policy.force_ssl_redirect {
            "force-ssl-redirect"
        } else {
            "ssl-redirect"
        };
        return Some(redirect_reply(
            308,
            &location,
            format!("{why} of {}", route.ingress),
            route.id,
        ));
    }
    None
}

fn source_allowed(policy: &Policy, client: IpAddr) -> bool {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if policy.deny_source.iter().any(|n| n.contains(&client)) {
        return false;
    }
    policy.allow_source.is_empty() || policy.allow_source.iter().any(|n| n.contains(&client))
}

/// The canary order of ingress-nginx: canary-by-header, then canary-by-cookie, then
/// canary-weight.
fn choose_backend<'t>(route: &'t Route, req: &RouteRequest<'_>) -> (&'t Backend, bool) {
    if route.canaries.is_empty() {
        return (&route.backend, false);
    }
    for c in &route.canaries {
        let Some(name) = &c.rule.header else { continue };
        let Some(value) = req.headers.get(name.as_str()) else {
            continue;
        };
        let value = value.as_bytes();
        match &c.rule.header_value {
            Some(want) => {
                if value == want.as_bytes() {
                    return (&c.backend, true);
                }
            }
            None => {
                if value == b"always" {
                    return (&c.backend, true);
                }
                if value == b"never" {
                    return (&route.backend, false);
                }
            }
        }
    }
    for c in &route.canaries {
        let Some(name) = &c.rule.cookie else { continue };
        match cookie(req.headers, name) {
            Some(b"always") => return (&c.backend, true),
            Some(b"never") => return (&route.backend, false),
            _ => {}
        }
    }
    for c in &route.canaries {
        let total = u64::from(c.rule.weight_total.max(1));
        // The draw is uniform in 0..100: canary when draw/100 < weight/total.
        if u64::from(req.weight_draw.min(99)) * total < u64::from(c.rule.weight) * 100 {
            return (&c.backend, true);
        }
    }
    (&route.backend, false)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h [u8]> {
    for h in headers.get_all(http::header::COOKIE) {
        for pair in h.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(rest) = pair.strip_prefix(name.as_bytes())
                && let Some(value) = rest.strip_prefix(b"=")
            {
                return Some(value.trim_ascii());
            }
        }
    }
    None
}

/// The path and query sent upstream: unchanged, or rewritten by `rewrite-target` as nginx's
/// `rewrite` does (captures `$1`..`$9`; the original query appended).
fn upstream_path(
    route: &Route,
    policy: &Policy,
    regex: Option<&Regex>,
    path: &str,
    raw_path: &str,
    query: Option<&str>,
) -> String {
    let Some(target) = policy
        .rewrite_target
        .as_deref()
        .filter(|_| route.path_type.is_some())
    else {
        let mut s = String::with_capacity(raw_path.len() + query.map_or(0, |q| q.len() + 1));
        s.push_str(raw_path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        return s;
    };
    let caps = regex.and_then(|r| r.captures(path));
    let mut out = String::with_capacity(target.len() + path.len());
    let mut chars = target.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '$'
            && let Some(&(_, d)) = chars.peek()
            && let Some(n) = d.to_digit(10)
        {
            chars.next();
            if let Some(m) = caps.as_ref().and_then(|c| c.get(n as usize)) {
                out.push_str(m.as_str());
            }
            continue;
        }
        out.push(c);
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if let Some(q) = query {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(q);
    }
    out
}

fn describe_backend(b: &Backend) -> String {
    match &b.unusable {
        Some(why) => format!("unusable: {why}"),
        None => {
            let port = b.service_port.map(|p| p.to_string()).unwrap_or_default();
            let eps: Vec<String> = match &b.external {
                Some(x) => vec![format!("{}:{} (DNS)", x.host, x.port)],
                None => b.endpoints.iter().map(|e| e.addr.to_string()).collect(),
            };
            format!("{}:{port} [{}]", b.service, eps.join(" "))
        }
    }
}
