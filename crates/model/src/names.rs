//! Kubernetes' name and label syntax (k8s.io/apimachinery/pkg/util/validation).
//!
//! Each check returns `Err(message)` worded as the API server words it.

/// RFC 1123 label: at most 63 lower-case alphanumerics or '-', starting and ending
/// with an alphanumeric. Namespace names, port names, container names.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err(format!("{s:?}: must be no more than 63 characters"));
    }
    if !is_label_shaped(s, |c| c.is_ascii_lowercase() || c.is_ascii_digit(), true) {
        return Err(format!(
            "{s:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters. Most object names.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!("{s:?}: must be no more than 253 characters"));
    }
    let ok = !s.is_empty()
        && s.split('.')
            .all(|l| is_label_shaped(l, |c| c.is_ascii_lowercase() || c.is_ascii_digit(), true));
    if !ok {
        return Err(format!(
            "{s:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
        ));
    }
    Ok(())
}

/// RFC 1035 label: like an RFC 1123 label but starting with a letter. Service names.
pub fn dns1035_label(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err(format!("{s:?}: must be no more than 63 characters"));
    }
    let ok = is_label_shaped(s, |c| c.is_ascii_lowercase() || c.is_ascii_digit(), true)
        && s.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok {
        return Err(format!(
            "{s:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123')"
        ));
    }
    Ok(())
}

/// IANA service name (RFC 6335): named container ports and named target ports.
pub fn iana_svc_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("{s:?}: must be no more than 15 characters"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "{s:?}: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
        ));
    }
    if s.contains("--") {
        return Err(format!("{s:?}: must not contain consecutive hyphens"));
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(format!("{s:?}: must contain at least one letter (a-z)"));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!("{s:?}: must not begin or end with a hyphen"));
    }
    Ok(())
}

/// A qualified name: `[prefix/]name`, the shape of label and annotation keys.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(format!("{s:?}: prefix part must be non-empty"));
        }
        dns1123_subdomain(prefix).map_err(|e| format!("{s:?}: prefix part {e}"))?;
    }
    if name.is_empty() {
        return Err(format!("{s:?}: name part must be non-empty"));
    }
    if name.len() > 63 {
        return Err(format!(
            "{s:?}: name part must be no more than 63 characters"
        ));
    }
    if !is_label_shaped(name, |c| c.is_ascii_alphanumeric(), false) {
        return Err(format!(
            "{s:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters shaped like a qualified name's name part.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 63 {
        return Err(format!("{s:?}: must be no more than 63 characters"));
    }
    if !is_label_shaped(s, |c| c.is_ascii_alphanumeric(), false) {
        return Err(format!(
            "{s:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')"
        ));
    }
    Ok(())
}

/// Checks a string made of `alnum` characters with inner `-` (and `_`/`.` when not `dns`).
fn is_label_shaped(s: &str, alnum: impl Fn(char) -> bool, dns: bool) -> bool {
    let mut chars = s.chars();
    let (Some(first), Some(last)) = (chars.next(), s.chars().last()) else {
        return false;
    };
    alnum(first)
        && alnum(last)
        && s.chars()
            .all(|c| alnum(c) || c == '-' || (!dns && (c == '_' || c == '.')))
}

/// Host names in Ingress rules and `externalName`: a lower-case RFC 1123 subdomain, for
/// Ingress hosts optionally with one leading `*.` label.
pub fn host_name(s: &str, allow_wildcard: bool) -> Result<(), String> {
    if let Some(rest) = s.strip_prefix("*.") {
        if !allow_wildcard {
            return Err(format!("{s:?}: wildcards are not allowed here"));
        }
        return dns1123_subdomain(rest)
            .map_err(|_| format!("{s:?}: a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain"));
    }
    dns1123_subdomain(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        assert!(dns1123_label("my-name").is_ok());
        assert!(dns1123_label("123-abc").is_ok());
        assert!(dns1123_label("My-name").is_err());
        assert!(dns1123_label("-a").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1035_label("123-abc").is_err());
        assert!(dns1035_label("abc-123").is_ok());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(iana_svc_name("http").is_ok());
        assert!(iana_svc_name("http-alt2").is_ok());
        assert!(iana_svc_name("8080").is_err());
        assert!(iana_svc_name("a--b").is_err());
        assert!(iana_svc_name("sixteen-chars-xx").is_err());
        assert!(qualified_name("app.kubernetes.io/name").is_ok());
        assert!(qualified_name("kubernetes.io/metadata.name").is_ok());
        assert!(qualified_name("Tier_1.x").is_ok());
        assert!(qualified_name("/x").is_err());
        assert!(qualified_name("a/b/c").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.0_beta").is_ok());
        assert!(label_value("a b").is_err());
        assert!(host_name("*.example.com", true).is_ok());
        assert!(host_name("*.example.com", false).is_err());
        assert!(host_name("a.*.com", true).is_err());
    }
}
