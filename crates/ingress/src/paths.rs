//! Request paths as the router matches them: normalised like nginx's `$uri`
//! (percent-decoded, slashes merged, dot segments resolved), and split on `/` for
//! element-wise `Prefix` matching.

use std::borrow::Cow;

/// The key of a `Prefix` path: trailing slashes dropped (`/` becomes the empty key), so
/// `/foo` and `/foo/` share the element list `["foo"]`.
pub(crate) fn prefix_key(path: &str) -> &str {
    path.trim_end_matches('/')
}

/// Every element-wise prefix of `path`, longest first: `/a/b/` gives `/a/b`, `/a`, ``.
pub(crate) fn prefix_candidates(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = prefix_key(path);
    let mut next: Option<&str> = Some(trimmed);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.rfind('/').map(|i| &current[..i]);
        Some(current)
    })
}

/// The path nginx would match on (`$uri`): `%XX` decoded, `//` merged, `.` and `..`
/// segments resolved. Borrowed when nothing changes. `None` when `..` climbs above the
/// root or the path does not start with `/` (nginx answers 400).
pub(crate) fn normalize(path: &str) -> Option<Cow<'_, str>> {
    if !path.starts_with('/') {
        return None;
    }
    let needs = path.contains('%')
        || path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..");
    if !needs {
        return Some(Cow::Borrowed(path));
    }
    let decoded = percent_decode(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" => {
                if i == last && i != 0 {
                    trailing_slash = true;
                }
            }
            "." => trailing_slash = i == last,
            ".." => {
                out.pop()?;
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        s.push('/');
    }
    Some(Cow::Owned(s))
}

fn percent_decode(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_longest_first() {
        let c: Vec<&str> = prefix_candidates("/aaa/bbb/ccc").collect();
        assert_eq!(c, ["/aaa/bbb/ccc", "/aaa/bbb", "/aaa", ""]);
        let c: Vec<&str> = prefix_candidates("/foo/").collect();
        assert_eq!(c, ["/foo", ""]);
        let c: Vec<&str> = prefix_candidates("/").collect();
        assert_eq!(c, [""]);
    }

    #[test]
    fn normalizes_like_nginx() {
        assert_eq!(normalize("/a/b").as_deref(), Some("/a/b"));
        assert_eq!(normalize("/a//b").as_deref(), Some("/a/b"));
        assert_eq!(normalize("/a/./b/").as_deref(), Some("/a/b/"));
        assert_eq!(normalize("/a/../b").as_deref(), Some("/b"));
        assert_eq!(normalize("/a/..").as_deref(), Some("/"));
        assert_eq!(normalize("/%61dmin").as_deref(), Some("/admin"));
        assert_eq!(normalize("/x/%2e%2e/admin").as_deref(), Some("/admin"));
        assert_eq!(normalize("/%zz").as_deref(), Some("/%zz"));
        assert_eq!(normalize("/%4").as_deref(), Some("/%4"));
        assert_eq!(normalize("/../x"), None);
        assert_eq!(normalize("x"), None);
    }
}
