//! ingress-nginx annotations (`nginx.ingress.kubernetes.io/*`) parsed into a typed
//! [`Policy`], with ingress-nginx's value syntax and defaults.
//!
//! Every value is checked here, once: the data plane never sees annotation text. Values
//! that would be copied into responses (redirect targets, CORS headers, cookie names) must
//! be valid header values; any `*-snippet` annotation is refused, because svcnet never
//! splices user text into configuration. An invalid value is an
//! [`Severity::Error`]: the Ingress that carries it is not served.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::table::{
    BackendProtocol, CanaryRule, CookieAffinity, Cors, ExternalAuth, HashBy, Limits, Policy,
    Severity,
};

/// The annotation prefix ingress-nginx reads.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// ingress-nginx's default `proxy-body-size`: 1 MiB.
pub const DEFAULT_BODY_SIZE: u64 = 1024 * 1024;

/// ingress-nginx's default `cors-allow-methods`.
pub const DEFAULT_CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";

/// ingress-nginx's default `cors-allow-headers`.
pub const DEFAULT_CORS_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

/// One problem with an annotation: its full name, how bad, what is wrong.
pub type AnnotationIssue = (String, Severity, String);

impl Default for Policy {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Policy {
            ssl_redirect: true,
            force_ssl_redirect: false,
            rewrite_target: None,
            use_regex: false,
            app_root: None,
            permanent_redirect: None,
            temporal_redirect: None,
            backend_protocol: BackendProtocol::Http,
            limits: Limits {
                burst_multiplier: 5,
                ..Limits::default()
            },
            allow_source: Vec::new(),
            deny_source: Vec::new(),
            auth: None,
            proxy_body_size: Some(DEFAULT_BODY_SIZE),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            cors: None,
            affinity: None,
            upstream_hash_by: None,
            server_alias: Vec::new(),
            canary: None,
        }
    }
}

/// Parses the `nginx.ingress.kubernetes.io/` annotations of one Ingress. Annotations with
/// other prefixes are not looked at. Returns the policy and every issue found; when an
/// issue is an [`Severity::Error`], the policy must not be used (the Ingress is not
/// served).
pub fn parse_annotations(annotations: &BTreeMap<String, String>) -> (Policy, Vec<AnnotationIssue>) {
    let mut p = Parser {
        annotations,
        issues: Vec::new(),
    };
    let policy = p.policy();
    (policy, p.issues)
}

/// The annotations svcnet reads (without the prefix).
pub const KNOWN: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "rewrite-target",
    "use-regex",
    "app-root",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "backend-protocol",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    "limit-whitelist",
    "limit-allowlist",
    "allowlist-source-range",
    "whitelist-source-range",
    "denylist-source-range",
    "auth-url",
    "auth-signin",
    "auth-response-headers",
    "auth-method",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-cookie",
    "affinity",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-max-age",
    "session-cookie-expires",
    "upstream-hash-by",
    "server-alias",
    "rate-limit",
    "rate-limit-rps",
];

struct Parser<'a> {
    annotations: &'a BTreeMap<String, String>,
    issues: Vec<AnnotationIssue>,
}

impl Parser<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.annotations
            .get(&format!("{PREFIX}{name}"))
            .map(|v| v.trim())
    }

    fn error(&mut self, name: &str, message: impl Into<String>) {
        self.issues
            .push((format!("{PREFIX}{name}"), Severity::Error, message.into()));
    }

    fn warn(&mut self, name: &str, message: impl Into<String>) {
        self.issues
            .push((format!("{PREFIX}{name}"), Severity::Warning, message.into()));
    }

    /// A value parsed by `f`; `None` (with an error) when it does not parse.
    fn parse<T>(&mut self, name: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let value = self.get(name)?.to_string();
        match f(&value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(name, format!("invalid value {value:?}: {e}"));
                None
            }
        }
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        self.parse(name, parse_bool)
    }

    fn policy(&mut self) -> Policy {
        let mut p = Policy::default();
        self.refuse_snippets_and_unknown();

        if let Some(v) = self.bool("ssl-redirect") {
            p.ssl_redirect = v;
        }
        if let Some(v) = self.bool("force-ssl-redirect") {
            p.force_ssl_redirect = v;
        }
        if let Some(v) = self.bool("use-regex") {
            p.use_regex = v;
        }
        p.rewrite_target = self.parse("rewrite-target", |v| {
            header_safe(v)?;
            if v.is_empty() {
                return Err("must not be empty".into());
            }
            if v.contains("://") {
                return Err(
                    "a rewrite to another URL would be a redirect: use permanent-redirect or temporal-redirect"
                        .into(),
                );
            }
            Ok(v.to_string())
        });
        p.app_root = self.parse("app-root", |v| {
            header_safe(v)?;
            if !v.starts_with('/') || v.starts_with("//") {
                return Err("must be a path starting with `/`".into());
            }
            Ok(v.to_string())
        });
        let permanent = self.parse("permanent-redirect", redirect_url);
        let code = self
            .parse("permanent-redirect-code", |v| {
                let code: u16 = v.parse().map_err(|_| "not a number".to_string())?;
                if (300..=308).contains(&code) {
                    Ok(code)
                } else {
                    Err("must be a redirect status, 300 to 308".into())
                }
            })
            .unwrap_or(301);
        if self.get("permanent-redirect-code").is_some() && permanent.is_none() {
            self.warn(
                "permanent-redirect-code",
                "has no effect without nginx.ingress.kubernetes.io/permanent-redirect",
            );
        }
        p.permanent_redirect = permanent.map(|u| (u, code));
        p.temporal_redirect = self.parse("temporal-redirect", redirect_url);
        if p.permanent_redirect.is_some() && p.temporal_redirect.is_some() {
            self.warn(
                "temporal-redirect",
                "ignored: nginx.ingress.kubernetes.io/permanent-redirect is also set and takes precedence",
            );
            p.temporal_redirect = None;
        }
        if let Some(v) = self.parse("backend-protocol", |v| {
            match v.to_ascii_uppercase().as_str() {
                "HTTP" | "AUTO_HTTP" => Ok(BackendProtocol::Http),
                "HTTPS" => Ok(BackendProtocol::Https),
                "GRPC" => Ok(BackendProtocol::Grpc),
                "GRPCS" => Ok(BackendProtocol::Grpcs),
                "H2C" => Ok(BackendProtocol::H2c),
                "FCGI" => Err("FastCGI backends are not supported by svcnet".into()),
                _ => Err("expected HTTP, HTTPS, GRPC, GRPCS, H2C or AUTO_HTTP".into()),
            }
        }) {
            p.backend_protocol = v;
        }

        self.limits(&mut p.limits);
        let allow = self.parse("allowlist-source-range", parse_ranges);
        let white = self.parse("whitelist-source-range", parse_ranges);
        p.allow_source = match (allow, white) {
            (Some(a), Some(_)) => {
                self.warn(
                    "whitelist-source-range",
                    "ignored: nginx.ingress.kubernetes.io/allowlist-source-range is also set and takes precedence",
                );
                a
            }
            (Some(a), None) => a,
            (None, Some(w)) => w,
            (None, None) => Vec::new(),
        };
        p.deny_source = self
            .parse("denylist-source-range", parse_ranges)
            .unwrap_or_default();

        p.auth = self.auth();
        if let Some(v) = self.parse("proxy-body-size", parse_size) {
            p.proxy_body_size = if v == 0 { None } else { Some(v) };
        }
        if let Some(v) = self.parse("proxy-connect-timeout", parse_seconds) {
            p.connect_timeout = v;
        }
        if let Some(v) = self.parse("proxy-read-timeout", parse_seconds) {
            p.read_timeout = v;
        }
        if let Some(v) = self.parse("proxy-send-timeout", parse_seconds) {
            p.send_timeout = v;
        }
        p.cors = self.cors();
        p.affinity = self.affinity();
        p.upstream_hash_by = self.parse("upstream-hash-by", parse_hash_by);
        p.server_alias = self
            .parse("server-alias", |v| {
                let mut out = Vec::new();
                for a in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    let a = a.to_ascii_lowercase();
                    if a.contains('*') {
                        return Err(format!("{a:?}: wildcard aliases are not supported"));
                    }
                    svcnet_model::names::host_name(&a, false)?;
                    out.push(a);
                }
                Ok(out)
            })
            .unwrap_or_default();
        p.canary = self.canary();
        p
    }

    fn refuse_snippets_and_unknown(&mut self) {
        let names: Vec<String> = self
            .annotations
            .keys()
            .filter_map(|k| k.strip_prefix(PREFIX))
            .map(str::to_string)
            .collect();
        for name in names {
            if name.ends_with("-snippet") || name.ends_with("-snippets") {
                self.error(
                    &name,
                    "snippets are refused: svcnet never splices user text into configuration",
                );
            } else if !KNOWN.contains(&name.as_str()) {
                self.warn(&name, "not supported by svcnet: ignored");
            }
        }
    }

    fn limits(&mut self, l: &mut Limits) {
        let count = |v: &str| -> Result<u32, String> {
            let n: u32 = v
                .parse()
                .map_err(|_| "expected a non-negative integer".to_string())?;
            Ok(n)
        };
        let rps = self.parse("limit-rps", count);
        for seed_name in ["rate-limit", "rate-limit-rps"] {
            if let Some(v) = self.parse(seed_name, count) {
                if rps.is_some() {
                    self.warn(
                        seed_name,
                        format!("not an ingress-nginx annotation; ignored because {PREFIX}limit-rps is set"),
                    );
                } else {
                    self.warn(
                        seed_name,
                        format!("not an ingress-nginx annotation; read as {PREFIX}limit-rps (use that name)"),
                    );
                    if l.rps.is_none() {
                        l.rps = Some(v);
                    }
                }
            }
        }
        if rps.is_some() {
            l.rps = rps;
        }
        l.rpm = self.parse("limit-rpm", count);
        l.connections = self.parse("limit-connections", count);
        // ingress-nginx: 0 means "no limit" for these.
        for v in [&mut l.rps, &mut l.rpm, &mut l.connections] {
            if *v == Some(0) {
                *v = None;
            }
        }
        if let Some(m) = self.parse("limit-burst-multiplier", |v| {
            let n = count(v)?;
            if n == 0 {
                Err("must be at least 1".into())
            } else {
                Ok(n)
            }
        }) {
            l.burst_multiplier = m;
        }
        let white = self.parse("limit-whitelist", parse_ranges);
        let allow = self.parse("limit-allowlist", parse_ranges);
        l.whitelist = allow.or(white).unwrap_or_default();
    }

    fn auth(&mut self) -> Option<ExternalAuth> {
        let url = self.parse("auth-url", |v| {
            header_safe(v)?;
            let uri: http::Uri = v.parse().map_err(|e| format!("not a URL: {e}"))?;
            match uri.scheme_str() {
                Some("http") | Some("https") => {}
                _ => return Err("must be an http:// or https:// URL".into()),
            }
            if uri.host().is_none_or(str::is_empty) {
                return Err("must name a host".into());
            }
            Ok(uri)
        });
        let method = self
            .parse("auth-method", |v| {
                http::Method::from_bytes(v.to_ascii_uppercase().as_bytes())
                    .map_err(|_| "not an HTTP method".to_string())
            })
            .unwrap_or(http::Method::GET);
        let signin = self.parse("auth-signin", |v| {
            header_safe(v)?;
            if !(v.starts_with("http://") || v.starts_with("https://") || v.starts_with('/')) {
                return Err("must be an http(s) URL or an absolute path".into());
            }
            Ok(v.to_string())
        });
        let response_headers = self
            .parse("auth-response-headers", |v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|h| {
                        http::HeaderName::from_bytes(h.as_bytes())
                            .map_err(|_| format!("{h:?} is not a header name"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap_or_default();
        match url {
            Some(url) => Some(ExternalAuth {
                url,
                method,
                signin,
                response_headers,
            }),
            None => {
                for other in ["auth-signin", "auth-response-headers", "auth-method"] {
                    if self.get(other).is_some() && self.get("auth-url").is_none() {
                        self.warn(other, format!("has no effect without {PREFIX}auth-url"));
                    }
                }
                None
            }
        }
    }

    fn cors(&mut self) -> Option<Cors> {
        let enabled = self.bool("enable-cors").unwrap_or(false);
        let allow_origin = self.parse("cors-allow-origin", |v| {
            let mut out = Vec::new();
            for o in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                header_safe(o)?;
                let ok = o == "*"
                    || ((o.starts_with("http://") || o.starts_with("https://"))
                        && !o.contains(char::is_whitespace)
                        && o.split("://").nth(1).is_some_and(|rest| {
                            !rest.is_empty() && !rest.contains('/') && !rest.contains('?')
                        }));
                if !ok {
                    return Err(format!("{o:?}: origins are `*` or scheme://host[:port]"));
                }
                out.push(o.to_string());
            }
            if out.is_empty() {
                return Err("no origin given".into());
            }
            Ok(out)
        });
        let token_list = |extra: &'static str| {
            move |v: &str| -> Result<String, String> {
                let ok = !v.is_empty()
                    && v.chars().all(|c| {
                        c.is_ascii_alphanumeric() || c == ',' || c == ' ' || extra.contains(c)
                    });
                if ok {
                    Ok(v.to_string())
                } else {
                    Err("expected a comma-separated list of names".into())
                }
            }
        };
        let methods = self.parse("cors-allow-methods", token_list(""));
        let headers = self.parse("cors-allow-headers", token_list("-_*"));
        let expose = self.parse("cors-expose-headers", token_list("-_*"));
        let credentials = self.bool("cors-allow-credentials");
        let max_age = self.parse("cors-max-age", |v| {
            v.parse::<u32>()
                .map_err(|_| "expected a number of seconds".to_string())
        });
        if !enabled {
            for name in [
                "cors-allow-origin",
                "cors-allow-methods",
                "cors-allow-headers",
                "cors-expose-headers",
                "cors-allow-credentials",
                "cors-max-age",
            ] {
                if self.get(name).is_some() {
                    self.warn(
                        name,
                        format!("has no effect without {PREFIX}enable-cors: \"true\""),
                    );
                }
            }
            return None;
        }
        Some(Cors {
            allow_origin: allow_origin.unwrap_or_else(|| vec!["*".to_string()]),
            allow_methods: methods.unwrap_or_else(|| DEFAULT_CORS_METHODS.to_string()),
            allow_headers: headers.unwrap_or_else(|| DEFAULT_CORS_HEADERS.to_string()),
            expose_headers: expose,
            allow_credentials: credentials.unwrap_or(true),
            max_age: max_age.unwrap_or(1_728_000),
        })
    }

    fn affinity(&mut self) -> Option<CookieAffinity> {
        let kind = self.parse("affinity", |v| {
            if v == "cookie" {
                Ok(())
            } else {
                Err("the only affinity type is \"cookie\"".into())
            }
        });
        let name = self.parse("session-cookie-name", |v| {
            if is_token(v) {
                Ok(v.to_string())
            } else {
                Err("not a cookie name".into())
            }
        });
        let path = self.parse("session-cookie-path", |v| {
            header_safe(v)?;
            if v.starts_with('/') && !v.contains(';') {
                Ok(v.to_string())
            } else {
                Err("must be a path starting with `/`".into())
            }
        });
        let seconds = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| "expected a number of seconds".to_string())
        };
        let max_age = self.parse("session-cookie-max-age", seconds);
        let expires = self.parse("session-cookie-expires", seconds);
        kind?;
        Some(CookieAffinity {
            name: name.unwrap_or_else(|| "INGRESSCOOKIE".to_string()),
            path,
            max_age: max_age.or(expires),
        })
    }

    fn canary(&mut self) -> Option<CanaryRule> {
        let enabled = self.bool("canary").unwrap_or(false);
        let total = self
            .parse("canary-weight-total", |v| {
                let n: u32 = v.parse().map_err(|_| "expected an integer".to_string())?;
                if n == 0 {
                    Err("must be at least 1".into())
                } else {
                    Ok(n)
                }
            })
            .unwrap_or(100);
        let weight = self
            .parse("canary-weight", |v| {
                let n: u32 = v.parse().map_err(|_| "expected an integer".to_string())?;
                if n > total {
                    Err(format!(
                        "must be between 0 and canary-weight-total ({total})"
                    ))
                } else {
                    Ok(n)
                }
            })
            .unwrap_or(0);
        let header = self.parse("canary-by-header", |v| {
            http::HeaderName::from_bytes(v.as_bytes())
                .map(|h| h.as_str().to_string())
                .map_err(|_| "not a header name".to_string())
        });
        let header_value = self.parse("canary-by-header-value", |v| {
            http::HeaderValue::from_str(v)
                .map(|_| v.to_string())
                .map_err(|_| "not a header value".to_string())
        });
        let cookie = self.parse("canary-by-cookie", |v| {
            if is_token(v) {
                Ok(v.to_string())
            } else {
                Err("not a cookie name".into())
            }
        });
        if header_value.is_some() && header.is_none() {
            self.warn(
                "canary-by-header-value",
                format!("has no effect without {PREFIX}canary-by-header"),
            );
        }
        if !enabled {
            for name in [
                "canary-weight",
                "canary-weight-total",
                "canary-by-header",
                "canary-by-header-value",
                "canary-by-cookie",
            ] {
                if self.get(name).is_some() {
                    self.warn(
                        name,
                        format!("has no effect without {PREFIX}canary: \"true\""),
                    );
                }
            }
            return None;
        }
        Some(CanaryRule {
            header,
            header_value,
            cookie,
            weight,
            weight_total: total,
        })
    }
}

/// Go's `strconv.ParseBool`, as ingress-nginx reads booleans.
fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err("expected \"true\" or \"false\"".into()),
    }
}

/// The value can be sent in a header (no control characters, no line breaks).
fn header_safe(v: &str) -> Result<(), String> {
    if http::HeaderValue::from_str(v).is_ok() && !v.contains(['\r', '\n']) {
        Ok(())
    } else {
        Err("contains characters that cannot appear in an HTTP header".into())
    }
}

fn redirect_url(v: &str) -> Result<String, String> {
    header_safe(v)?;
    let uri: http::Uri = v.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some_and(|h| !h.is_empty()) => {
            Ok(v.to_string())
        }
        None if v.starts_with('/') => Ok(v.to_string()),
        _ => Err("expected an http(s) URL or an absolute path".into()),
    }
}

/// `10.0.0.0/8, 192.168.1.1, ::1/128`: CIDRs or single addresses.
fn parse_ranges(v: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let net = if r.contains('/') {
            r.parse::<IpNet>()
                .map_err(|_| format!("{r:?} is not a CIDR"))?
                .trunc()
        } else {
            IpNet::from(
                r.parse::<IpAddr>()
                    .map_err(|_| format!("{r:?} is not an IP address"))?,
            )
        };
        out.push(net);
    }
    Ok(out)
}

/// nginx sizes: `1024`, `8k`, `8m`, `1g` (either case); `0` = unlimited.
fn parse_size(v: &str) -> Result<u64, String> {
    let (digits, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1024u64),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1024 * 1024),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a size such as 1024, 8k, 8m or 1g".into());
    }
    let n: u64 = digits.parse().map_err(|_| "too large".to_string())?;
    n.checked_mul(mult).ok_or_else(|| "too large".to_string())
}

/// ingress-nginx timeouts: whole seconds (nginx's `s` suffix accepted).
fn parse_seconds(v: &str) -> Result<Duration, String> {
    let digits = v.strip_suffix('s').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a number of seconds".into());
    }
    let n: u64 = digits.parse().map_err(|_| "too large".to_string())?;
    if n > 24 * 3600 {
        return Err("at most one day".into());
    }
    Ok(Duration::from_secs(n))
}

fn parse_hash_by(v: &str) -> Result<HashBy, String> {
    let bad = || {
        "expected one nginx variable: $remote_addr, $binary_remote_addr, $request_uri, $uri, $host, $http_NAME, $cookie_NAME or $arg_NAME".to_string()
    };
    let var = v.strip_prefix('$').ok_or_else(bad)?;
    let named = |rest: &str| -> Result<String, String> {
        if !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Ok(rest.to_string())
        } else {
            Err(bad())
        }
    };
    match var {
        "remote_addr" | "binary_remote_addr" => Ok(HashBy::RemoteAddr),
        "request_uri" => Ok(HashBy::RequestUri),
        "uri" => Ok(HashBy::Uri),
        "host" => Ok(HashBy::Host),
        _ => {
            if let Some(h) = var.strip_prefix("http_") {
                let h = named(h)?.to_ascii_lowercase().replace('_', "-");
                http::HeaderName::from_bytes(h.as_bytes())
                    .map(HashBy::Header)
                    .map_err(|_| bad())
            } else if let Some(c) = var.strip_prefix("cookie_") {
                named(c).map(HashBy::Cookie)
            } else if let Some(a) = var.strip_prefix("arg_") {
                named(a).map(HashBy::Arg)
            } else {
                Err(bad())
            }
        }
    }
}

/// An RFC 7230 token (cookie and header names).
fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (Policy, Vec<AnnotationIssue>) {
        let map = pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect();
        parse_annotations(&map)
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8m"), Ok(8 * 1024 * 1024));
        assert_eq!(parse_size("1g"), Ok(1024 * 1024 * 1024));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("m").is_err());
        assert!(parse_size("1.5m").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
    }

    #[test]
    fn defaults_without_annotations() {
        let (p, issues) = parse(&[]);
        assert!(issues.is_empty());
        assert_eq!(p, Policy::default());
        assert_eq!(p.proxy_body_size, Some(1024 * 1024));
        assert_eq!(p.limits.burst_multiplier, 5);
        assert!(p.ssl_redirect);
    }

    #[test]
    fn body_size_zero_is_unlimited() {
        let (p, issues) = parse(&[("proxy-body-size", "0")]);
        assert!(issues.is_empty());
        assert_eq!(p.proxy_body_size, None);
    }
}
