//! Diagnostics: every problem found in manifests, with file, line, object and field.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::kind::Kind;

/// Where an object (or a field of it) was written: a file and a 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Source {
    /// The file as the user named it (`-` is shown as `<stdin>`).
    pub file: Arc<str>,
    /// 1-based line; 0 when unknown.
    pub line: u32,
}

impl Source {
    /// A source for objects that svcnet creates itself (implicit namespaces, default nodes).
    pub fn builtin() -> Self {
        Source {
            file: Arc::from("<builtin>"),
            line: 0,
        }
    }

    /// The same file at another line.
    pub fn at_line(&self, line: u32) -> Self {
        Source {
            file: self.file.clone(),
            line,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The manifests are rejected (load) or the configuration is broken (check).
    Error,
    /// Probably not what the author meant; the cluster still loads.
    Warning,
    /// Information: something svcnet did on the user's behalf.
    Notice,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
        })
    }
}

/// The object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// Kind name as written in manifests (`Service`), or the unknown kind's own name.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name; empty when the manifest has none.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a known kind.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.as_str().to_string(),
            namespace: if kind.namespaced() {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names come from input: never let a control character (an ANSI escape, say)
        // reach the user's terminal as is.
        let escaped;
        let name = if self.name.is_empty() {
            "<unnamed>"
        } else if self.name.chars().any(char::is_control) {
            escaped = self.name.escape_debug().to_string();
            &escaped
        } else {
            &self.name
        };
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, name)
        }
    }
}

/// One finding: `FILE:LINE: Kind namespace/name: field.path: message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// How bad it is.
    pub severity: Severity,
    /// A short stable identifier of the rule (`selector-matches-no-pod`), for machines.
    pub code: &'static str,
    /// Where it was written.
    pub source: Source,
    /// The object concerned, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// Field path inside the object (`spec.ports[0].port`), when one field is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
}

impl Diagnostic {
    /// An error.
    pub fn error(code: &'static str, source: Source, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            source,
            object: None,
            field: None,
            message: message.into(),
        }
    }

    /// A warning.
    pub fn warning(code: &'static str, source: Source, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, source, message)
        }
    }

    /// A notice.
    pub fn notice(code: &'static str, source: Source, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Notice,
            ..Diagnostic::error(code, source, message)
        }
    }

    /// Names the object concerned.
    pub fn on(mut self, object: ObjectRef) -> Self {
        self.object = Some(object);
        self
    }

    /// Names the field concerned.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = if field.is_empty() { None } else { Some(field) };
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Errors read exactly `FILE:LINE: Kind namespace/name: field.path: message`;
    /// warnings and notices carry their severity before the message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        if self.severity != Severity::Error {
            write!(f, "{}: ", self.severity)?;
        }
        f.write_str(&self.message)
    }
}

/// A set of diagnostics collected by one load, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// Count of one severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.0.iter().filter(|d| d.severity == severity).count()
    }

    /// Errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// Sorts by file, line, then text, so output does not depend on load order;
    /// removes exact duplicates.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (&a.source.file, a.source.line, a.severity, a.to_string()).cmp(&(
                &b.source.file,
                b.source.line,
                b.severity,
                b.to_string(),
            ))
        });
        self.0.dedup();
    }

    /// Appends all of another set.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
