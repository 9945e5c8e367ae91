//! CORS headers (`enable-cors`, `cors-allow-*`), as ingress-nginx writes them.
//!
//! Pure: given the route's [`Cors`] settings and the request's `Origin`, the headers to
//! add. A preflight (`OPTIONS`) is answered 204 by the controller without reaching the
//! backend, in nginx's rewrite phase (before rate limits and external auth, so that
//! browsers' credential-less preflights are not refused); other responses get
//! `Access-Control-Allow-Origin` and friends added.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};

use crate::table::Cors;

/// The allowed origin to echo for a request `Origin`, or `None` when it is not allowed.
/// `*` in the list allows every origin and is sent as `*`.
pub fn allowed_origin(cors: &Cors, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
    if cors.allow_origin.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin = origin?;
    let text = origin.to_str().ok()?;
    cors.allow_origin
        .iter()
        .any(|o| origin_matches(o, text))
        .then(|| origin.clone())
}

/// `https://*.example.com` matches one or more labels in place of `*`, as ingress-nginx
/// allows; otherwise byte equality (case-insensitive).
fn origin_matches(pattern: &str, origin: &str) -> bool {
    if let Some((scheme, rest)) = pattern.split_once("://*.") {
        let Some((oscheme, orest)) = origin.split_once("://") else {
            return false;
        };
        return oscheme.eq_ignore_ascii_case(scheme)
            && orest.len() > rest.len() + 1
            && orest[orest.len() - rest.len()..].eq_ignore_ascii_case(rest)
            && orest.as_bytes()[orest.len() - rest.len() - 1] == b'.';
    }
    pattern.eq_ignore_ascii_case(origin)
}

/// True for a request nginx's CORS block answers itself.
pub fn is_preflight(method: &Method) -> bool {
    method == Method::OPTIONS
}

fn push(out: &mut Vec<(HeaderName, HeaderValue)>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        out.push((HeaderName::from_static(name), v));
    }
}

fn common(cors: &Cors, origin: HeaderValue, out: &mut Vec<(HeaderName, HeaderValue)>) {
    out.push((
        HeaderName::from_static("access-control-allow-origin"),
        origin,
    ));
    if cors.allow_credentials {
        push(out, "access-control-allow-credentials", "true");
    }
    push(out, "access-control-allow-methods", &cors.allow_methods);
    push(out, "access-control-allow-headers", &cors.allow_headers);
}

/// The headers of the 204 answer to a preflight. Without an allowed origin, none of the
/// `Access-Control-*` headers (the browser then refuses the cross-origin request).
pub fn preflight_headers(cors: &Cors, req: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(origin) = allowed_origin(cors, req.get(http::header::ORIGIN)) {
        common(cors, origin, &mut out);
        push(
            &mut out,
            "access-control-max-age",
            &cors.max_age.to_string(),
        );
    }
    push(&mut out, "content-type", "text/plain; charset=utf-8");
    push(&mut out, "content-length", "0");
    out
}

/// The headers added to a proxied response.
pub fn response_headers(cors: &Cors, req: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(origin) = allowed_origin(cors, req.get(http::header::ORIGIN)) {
        common(cors, origin, &mut out);
        if let Some(expose) = &cors.expose_headers {
            push(&mut out, "access-control-expose-headers", expose);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors {
            allow_origin: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS".into(),
            allow_headers: "DNT,Keep-Alive,User-Agent,Content-Type,Authorization".into(),
            expose_headers: Some("X-Total".into()),
            allow_credentials: true,
            max_age: 1_728_000,
        }
    }

    fn origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ORIGIN, HeaderValue::from_str(o).unwrap());
        h
    }

    fn get<'a>(h: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn star_allows_everyone() {
        let h = preflight_headers(&cors(&["*"]), &origin("https://a.test"));
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "access-control-max-age"), Some("1728000"));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
    }

    #[test]
    fn listed_origins_are_echoed_others_get_nothing() {
        let c = cors(&["https://a.test", "https://*.b.test"]);
        let h = response_headers(&c, &origin("https://a.test"));
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://a.test")
        );
        assert_eq!(get(&h, "access-control-expose-headers"), Some("X-Total"));
        let h = response_headers(&c, &origin("https://x.y.b.test"));
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://x.y.b.test")
        );
        assert!(response_headers(&c, &origin("https://b.test")).is_empty());
        assert!(response_headers(&c, &origin("https://evil.test")).is_empty());
        assert!(response_headers(&c, &origin("https://evilb.test")).is_empty());
        assert!(response_headers(&c, &HeaderMap::new()).is_empty());
    }
}
