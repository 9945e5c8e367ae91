//! Domain names as the zone keys them: uncompressed wire format, folded to ASCII lower
//! case. A query's name is folded into a [`NameKey`] on the stack, so a lookup does not
//! allocate.

use std::fmt::Write as _;

use domain::base::name::Label;

/// A domain name's wire form is at most 255 octets (RFC 1035 2.3.4).
pub(crate) const MAX_WIRE: usize = 255;
/// At most 127 labels besides the root fit in 255 octets.
const MAX_LABELS: usize = 128;

/// The zone's owned domain names in wire format, lower case.
pub(crate) type Wire = Box<[u8]>;

/// A name folded to lower case in wire format, with the offset of each label.
pub(crate) struct NameKey {
    buf: [u8; MAX_WIRE],
    len: usize,
    offsets: [u8; MAX_LABELS],
    labels: usize,
}

impl NameKey {
    /// Folds a sequence of labels (the root label ends it, or is absent).
    pub(crate) fn from_labels<'a>(labels: impl Iterator<Item = &'a Label>) -> Option<NameKey> {
        let mut key = NameKey {
            buf: [0; MAX_WIRE],
            len: 0,
            offsets: [0; MAX_LABELS],
            labels: 0,
        };
        for label in labels {
            if label.is_root() {
                break;
            }
            key.push_label(label.as_slice())?;
        }
        key.finish()?;
        Some(key)
    }

    /// Folds a name written in uncompressed wire format.
    pub(crate) fn from_wire(wire: &[u8]) -> Option<NameKey> {
        let mut key = NameKey {
            buf: [0; MAX_WIRE],
            len: 0,
            offsets: [0; MAX_LABELS],
            labels: 0,
        };
        let mut rest = wire;
        loop {
            let (&n, tail) = rest.split_first()?;
            if n == 0 {
                break;
            }
            let n = usize::from(n);
            if n > 63 || tail.len() < n {
                return None;
            }
            key.push_label(&tail[..n])?;
            rest = &tail[n..];
        }
        key.finish()?;
        Some(key)
    }

    fn push_label(&mut self, label: &[u8]) -> Option<()> {
        if label.is_empty() || label.len() > 63 || self.labels + 1 >= MAX_LABELS {
            return None;
        }
        // One length octet, the label, and the root octet still to come.
        if self.len + 1 + label.len() + 1 > MAX_WIRE {
            return None;
        }
        self.offsets[self.labels] = u8::try_from(self.len).ok()?;
        self.labels += 1;
        self.buf[self.len] = u8::try_from(label.len()).ok()?;
        self.len += 1;
        for &b in label {
            self.buf[self.len] = b.to_ascii_lowercase();
            self.len += 1;
        }
        Some(())
    }

    fn finish(&mut self) -> Option<()> {
        if self.len >= MAX_WIRE {
            return None;
        }
        self.buf[self.len] = 0;
        self.len += 1;
        Some(())
    }

    /// The whole name in wire format, root octet included.
    pub(crate) fn wire(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Number of labels besides the root.
    pub(crate) fn label_count(&self) -> usize {
        self.labels
    }

    /// Label `i` (0 = leftmost), lower case, without its length octet.
    pub(crate) fn label(&self, i: usize) -> &[u8] {
        if i >= self.labels {
            return &[];
        }
        let start = usize::from(self.offsets[i]);
        let n = usize::from(self.buf[start]);
        &self.buf[start + 1..start + 1 + n]
    }

    /// The name without its first `i` labels, in wire format.
    pub(crate) fn suffix(&self, i: usize) -> &[u8] {
        if i >= self.labels {
            return &self.buf[self.len - 1..self.len];
        }
        &self.buf[usize::from(self.offsets[i])..self.len]
    }

    /// True when the name is `apex` or below it (`apex` in wire format, `apex_labels`
    /// labels long).
    pub(crate) fn is_at_or_below(&self, apex: &[u8], apex_labels: usize) -> bool {
        self.labels >= apex_labels && self.suffix(self.labels - apex_labels) == apex
    }
}

/// Converts a dotted name (no escapes: Kubernetes names never need them; a trailing dot
/// is optional) into lower-case wire format. `None` when a label is empty or too long.
pub(crate) fn wire_from_text(text: &str) -> Option<Vec<u8>> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() + 2);
    if !text.is_empty() {
        for label in text.split('.') {
            let n = label.len();
            if n == 0 || n > 63 {
                return None;
            }
            out.push(u8::try_from(n).ok()?);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    (out.len() <= MAX_WIRE).then_some(out)
}

/// Joins labels in front of a wire-format name.
pub(crate) fn prepend(labels: &[&str], base: &[u8]) -> Option<Vec<u8>> {
    let mut out =
        Vec::with_capacity(base.len() + labels.iter().map(|l| l.len() + 1).sum::<usize>());
    for l in labels {
        let n = l.len();
        if n == 0 || n > 63 {
            return None;
        }
        out.push(u8::try_from(n).ok()?);
        out.extend(l.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.extend_from_slice(base);
    (out.len() <= MAX_WIRE).then_some(out)
}

/// The parent of a wire-format name (`None` for the root).
pub(crate) fn parent(wire: &[u8]) -> Option<&[u8]> {
    let n = usize::from(*wire.first()?);
    if n == 0 {
        return None;
    }
    wire.get(1 + n..)
}

/// Number of labels besides the root.
pub(crate) fn label_count(wire: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = wire;
    while let Some(p) = parent(rest) {
        count += 1;
        rest = p;
    }
    count
}

/// Presentation format with a trailing dot, escaping as RFC 1035 5.1 does.
pub(crate) fn wire_to_text(wire: &[u8]) -> String {
    let mut out = String::with_capacity(wire.len() + 1);
    let mut rest = wire;
    while let Some((&n, tail)) = rest.split_first() {
        if n == 0 {
            break;
        }
        let n = usize::from(n).min(tail.len());
        for &b in &tail[..n] {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b)),
                _ => {
                    let _ = write!(out, "\\{b:03}");
                }
            }
        }
        out.push('.');
        rest = &tail[n..];
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The endpoint name CoreDNS gives an address without a hostname: the IP with `.` or `:`
/// turned into `-`. An IPv6 form that starts or ends with `-` gets a `0` there, so the
/// label is a valid hostname (CoreDNS only pads the end).
pub(crate) fn dashed_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        std::net::IpAddr::V6(v6) => {
            let mut s = v6.to_string().replace(':', "-");
            if s.ends_with('-') {
                s.push('0');
            }
            if s.starts_with('-') {
                s.insert(0, '0');
            }
            s
        }
    }
}

/// Reads a dashed IP label back (`10-1-2-3`, `fd00-10--1`); `None` when it is not one.
/// Does not allocate: it runs on the query path.
pub(crate) fn parse_dashed_ip(label: &[u8]) -> Option<std::net::IpAddr> {
    // The longest textual IPv6 address is 45 characters.
    if label.len() > 45 {
        return None;
    }
    let dashes = label.iter().filter(|&&b| b == b'-').count();
    let v4 = dashes == 3 && !label.windows(2).any(|w| w == b"--");
    let sep = if v4 { b'.' } else { b':' };
    let mut buf = [0u8; 45];
    for (d, &s) in buf.iter_mut().zip(label) {
        *d = if s == b'-' { sep } else { s };
    }
    let text = std::str::from_utf8(&buf[..label.len()]).ok()?;
    if v4 {
        text.parse::<std::net::Ipv4Addr>()
            .ok()
            .map(std::net::IpAddr::V4)
    } else {
        text.parse::<std::net::Ipv6Addr>()
            .ok()
            .map(std::net::IpAddr::V6)
    }
}

/// The reverse-lookup name of an address: `d.c.b.a.in-addr.arpa.` or the 32-nibble
/// `ip6.arpa.` form (RFC 3596 2.5), in wire format.
pub(crate) fn reverse_wire(ip: std::net::IpAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    match ip {
        std::net::IpAddr::V4(v4) => {
            for octet in v4.octets().iter().rev() {
                let s = octet.to_string();
                out.push(s.len() as u8);
                out.extend_from_slice(s.as_bytes());
            }
            out.extend_from_slice(b"\x07in-addr\x04arpa\x00");
        }
        std::net::IpAddr::V6(v6) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for octet in v6.octets().iter().rev() {
                out.push(1);
                out.push(HEX[usize::from(octet & 0x0f)]);
                out.push(1);
                out.push(HEX[usize::from(octet >> 4)]);
            }
            out.extend_from_slice(b"\x03ip6\x04arpa\x00");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn text_and_wire_round_trip() {
        let w = wire_from_text("Svc1.TestNS.svc.cluster.local.").unwrap();
        assert_eq!(wire_to_text(&w), "svc1.testns.svc.cluster.local.");
        assert_eq!(label_count(&w), 5);
        assert_eq!(
            wire_to_text(parent(&w).unwrap()),
            "testns.svc.cluster.local."
        );
        assert_eq!(wire_from_text("").unwrap(), vec![0]);
        assert_eq!(wire_to_text(&[0]), ".");
        assert!(wire_from_text("a..b").is_none());
        assert!(wire_from_text(&"x".repeat(64)).is_none());
    }

    #[test]
    fn key_folds_case_and_finds_suffixes() {
        let w = b"\x03WeB\x06testns\x03svc\x07cluster\x05local\x00";
        let k = NameKey::from_wire(w).unwrap();
        assert_eq!(k.label(0), b"web");
        assert_eq!(k.label_count(), 5);
        let apex = wire_from_text("cluster.local").unwrap();
        assert!(k.is_at_or_below(&apex, 2));
        assert!(!k.is_at_or_below(b"\x04arpa\x00", 1));
        assert_eq!(k.suffix(5), &[0]);
    }

    #[test]
    fn dashed_ips_follow_coredns() {
        assert_eq!(dashed_ip("10.1.2.1".parse().unwrap()), "10-1-2-1");
        assert_eq!(
            dashed_ip("fd00:10:1:1::1".parse().unwrap()),
            "fd00-10-1-1--1"
        );
        assert_eq!(dashed_ip("fd00::".parse().unwrap()), "fd00--0");
        assert_eq!(dashed_ip("::1".parse().unwrap()), "0--1");
        for s in ["10.1.2.1", "fd00:10:1:1::1", "fd00::", "::1"] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(parse_dashed_ip(dashed_ip(ip).as_bytes()), Some(ip));
        }
        assert_eq!(parse_dashed_ip(b"web-0"), None);
    }

    #[test]
    fn reverse_names() {
        let v4 = reverse_wire("10.96.0.1".parse().unwrap());
        assert_eq!(wire_to_text(&v4), "1.0.96.10.in-addr.arpa.");
        let v6 = reverse_wire("fd00:10:96::6".parse().unwrap());
        assert_eq!(
            wire_to_text(&v6),
            "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa."
        );
    }
}
