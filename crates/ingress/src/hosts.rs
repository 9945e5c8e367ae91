//! Host names as the router sees them: the `Host` header lower-cased with its port (and a
//! trailing dot) dropped, and wildcard hosts keyed by their parent domain.

/// Longest host name the router looks up (a DNS name is at most 253 characters).
pub(crate) const MAX_HOST: usize = 255;

/// The routing host of a `Host` header or `:authority`: port dropped, trailing dot dropped,
/// lower-cased into `buf` (no allocation). `None` for an empty or oversized host.
pub(crate) fn normalize_host<'b>(raw: &str, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        // An IPv6 literal: `[::1]:8080` -> `[::1]`.
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.find(':') {
            Some(colon) => &raw[..colon],
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST {
        return None;
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    // ASCII lower-casing keeps UTF-8 valid; the fallback cannot be reached.
    std::str::from_utf8(out).ok()
}

/// True when `raw` may be a `Host` header / `:authority` (RFC 3986 authority characters:
/// reg-name, IPv6 literal, port). Control characters, spaces, `/`, `?`, `#`, `@` and
/// non-ASCII are not: nginx answers 400 to them, and so does the router.
pub(crate) fn valid_authority(raw: &str) -> bool {
    raw.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

/// The parent domain a `*.parent` wildcard must have to match `host`: everything after
/// the first label, when the first label is not empty.
pub(crate) fn wildcard_parent(host: &str) -> Option<&str> {
    let (label, parent) = host.split_once('.')?;
    (!label.is_empty() && !parent.is_empty()).then_some(parent)
}

/// True when a certificate for `cert_host` (`*.x.com` or precise) covers `host` (a rule's
/// host, itself possibly a wildcard).
pub(crate) fn cert_covers(cert_host: &str, host: &str) -> bool {
    if cert_host == host {
        return true;
    }
    match cert_host.strip_prefix("*.") {
        Some(parent) => !host.starts_with("*.") && wildcard_parent(host) == Some(parent),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_forms() {
        let mut b = [0u8; MAX_HOST];
        assert_eq!(
            normalize_host("Foo.Bar.com:8080", &mut b),
            Some("foo.bar.com")
        );
        let mut b = [0u8; MAX_HOST];
        assert_eq!(normalize_host("foo.bar.com.", &mut b), Some("foo.bar.com"));
        let mut b = [0u8; MAX_HOST];
        assert_eq!(normalize_host("[::1]:8443", &mut b), Some("[::1]"));
        let mut b = [0u8; MAX_HOST];
        assert_eq!(normalize_host(":80", &mut b), None);
        let mut b = [0u8; MAX_HOST];
        assert_eq!(normalize_host(&"a".repeat(300), &mut b), None);
    }

    #[test]
    fn authorities() {
        for ok in [
            "a.example.com",
            "a.example.com:8080",
            "[::1]:443",
            "x_y.test",
            "",
        ] {
            assert!(valid_authority(ok), "{ok}");
        }
        for bad in [
            "a\tb.fuzz.test",
            "a b",
            "a/b",
            "u@h",
            "h?x",
            "h#x",
            "é.test",
            "a\u{7f}",
        ] {
            assert!(!valid_authority(bad), "{bad:?}");
        }
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert_eq!(wildcard_parent("bar.foo.com"), Some("foo.com"));
        assert_eq!(wildcard_parent("foo"), None);
        assert_eq!(wildcard_parent(".foo.com"), None);
        assert!(cert_covers("*.foo.com", "bar.foo.com"));
        assert!(!cert_covers("*.foo.com", "baz.bar.foo.com"));
        assert!(!cert_covers("*.foo.com", "foo.com"));
        assert!(cert_covers("*.foo.com", "*.foo.com"));
    }
}
