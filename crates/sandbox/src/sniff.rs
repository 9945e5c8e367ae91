//! What a TCP client speaks, decided from its first bytes (pure).
//!
//! An agent's TCP port serves HTTP/1.x, h2c with prior knowledge, the `hostname` line
//! request, or echo, on one socket. The decision needs at most 14 bytes, and it is made
//! as soon as the bytes seen so far can only be one of them, so an echo client that sends
//! a single byte gets it back at once.

/// The protocol of a TCP connection, as far as its first bytes tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// HTTP/1.x (a method token and a space) or h2c (`PRI * HTTP/2.0`).
    Http,
    /// The first line is `hostname`: answer with the pod's hostname, as for UDP.
    Hostname,
    /// Anything else: echo.
    Other,
    /// Not decided yet: the bytes so far are a prefix of more than one answer.
    Incomplete,
}

/// The HTTP/2 connection preface's request line (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Methods of RFC 9110 and PATCH (RFC 5789), each with the space that ends it. Only these
/// count: any token followed by a space would make a text line like `hello world` HTTP.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
];

/// Line requests a TCP client may send instead of HTTP.
const HOSTNAME_LINES: &[&[u8]] = &[b"hostname\n", b"hostname\r\n"];

/// Decides what the client speaks from the bytes read so far. `eof` is true when the
/// client has half-closed, so no more bytes will come: then the answer is never
/// [`Sniff::Incomplete`], and a bare `hostname` counts as the hostname request.
pub fn sniff(buf: &[u8], eof: bool) -> Sniff {
    if buf.starts_with(H2_PREFACE) || METHODS.iter().any(|m| buf.starts_with(m)) {
        return Sniff::Http;
    }
    if HOSTNAME_LINES.iter().any(|l| buf.starts_with(l)) || (eof && buf == b"hostname") {
        return Sniff::Hostname;
    }
    let candidates = METHODS
        .iter()
        .chain(HOSTNAME_LINES)
        .chain(std::iter::once(&H2_PREFACE));
    let undecided = candidates.into_iter().any(|c| c.starts_with(buf));
    if undecided && !eof {
        Sniff::Incomplete
    } else {
        Sniff::Other
    }
}

/// The most bytes [`sniff`] ever needs to decide.
pub const SNIFF_MAX: usize = 16;

/// True when a UDP datagram asks for the hostname: `hostname`, optionally with a trailing
/// newline (`echo hostname | nc -u` sends one).
pub fn is_hostname_datagram(d: &[u8]) -> bool {
    d == b"hostname" || HOSTNAME_LINES.contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_methods_and_preface() {
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n", false), Sniff::Http);
        assert_eq!(sniff(b"OPTIONS ", false), Sniff::Http);
        assert_eq!(
            sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false),
            Sniff::Http
        );
        assert_eq!(sniff(b"PRI * HTTP/2.0", false), Sniff::Http);
    }

    #[test]
    fn prefixes_wait_for_more() {
        for p in [
            &b""[..],
            b"G",
            b"GE",
            b"GET",
            b"PRI * HT",
            b"host",
            b"hostname",
            b"hostname\r",
            b"P",
            b"PA",
        ] {
            assert_eq!(
                sniff(p, false),
                Sniff::Incomplete,
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn anything_else_is_echo_at_once() {
        assert_eq!(sniff(b"x", false), Sniff::Other);
        assert_eq!(sniff(b"hello world\n", false), Sniff::Other);
        assert_eq!(sniff(b"get / HTTP/1.1", false), Sniff::Other);
        assert_eq!(sniff(b"GETX", false), Sniff::Other);
        assert_eq!(sniff(b"PRI * HTTP/1.1", false), Sniff::Other);
        assert_eq!(sniff(b"hostnames\n", false), Sniff::Other);
        assert_eq!(sniff(b"\x16\x03\x01", false), Sniff::Other);
    }

    #[test]
    fn eof_decides() {
        assert_eq!(sniff(b"GE", true), Sniff::Other);
        assert_eq!(sniff(b"", true), Sniff::Other);
        assert_eq!(sniff(b"hostname", true), Sniff::Hostname);
        assert_eq!(sniff(b"hostname\n", false), Sniff::Hostname);
        assert_eq!(sniff(b"hostname\r\nmore", false), Sniff::Hostname);
    }

    #[test]
    fn never_needs_more_than_max() {
        let long = [b'G'; SNIFF_MAX];
        assert_ne!(sniff(&long, false), Sniff::Incomplete);
        assert!(H2_PREFACE.len() <= SNIFF_MAX);
        assert!(
            METHODS
                .iter()
                .chain(HOSTNAME_LINES)
                .all(|m| m.len() <= SNIFF_MAX)
        );
    }

    #[test]
    fn hostname_datagrams() {
        assert!(is_hostname_datagram(b"hostname"));
        assert!(is_hostname_datagram(b"hostname\n"));
        assert!(is_hostname_datagram(b"hostname\r\n"));
        assert!(!is_hostname_datagram(b"hostname please"));
        assert!(!is_hostname_datagram(b"HOSTNAME"));
    }
}
