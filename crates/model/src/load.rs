//! Reading manifests: files, directories and stdin; YAML streams, JSON, `kind: List`.
//!
//! A YAML stream is split into documents on its `---` and `...` marker lines (YAML 1.2
//! forbids those lines inside any scalar, so the split is exact), each document is parsed by
//! serde-saphyr into a JSON value, and the line of any field can be found again later
//! ([`RawObject::line_of`]) by walking the document's parse events. Lines are only looked up
//! when a diagnostic needs one, so a clean load parses every byte once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser};

use crate::diag::{Diagnostic, Diagnostics, ObjectRef, Source};

/// A file's text, kept while its objects are validated so that lines can be found.
#[derive(Debug)]
pub struct SourceFile {
    /// The name shown in diagnostics.
    pub name: Arc<str>,
    /// The whole text.
    pub text: String,
}

/// Finds the lines of an object's fields again, from the text it was read from.
#[derive(Clone, Debug)]
pub struct Locator {
    file: Arc<SourceFile>,
    /// Byte range of the YAML/JSON document holding the object.
    doc: std::ops::Range<usize>,
    /// 1-based line of the document's first byte.
    doc_line: u32,
    /// Path of the object inside the document (`items[2]` for a `kind: List` item).
    prefix: String,
    /// Where the object starts.
    source: Source,
}

impl Locator {
    /// The source of a field: its line when it can be found, else the line of its nearest
    /// written ancestor, else the object's own line.
    pub fn source_of(&self, field: &str) -> Source {
        match self.line_of(field) {
            Some(line) => self.source.at_line(line),
            None => self.source.clone(),
        }
    }

    /// The 1-based line of a field (`spec.ports[0].port`), or of its nearest ancestor that is
    /// written in the document.
    pub fn line_of(&self, field: &str) -> Option<u32> {
        let text = self.file.text.get(self.doc.clone())?;
        let mut path = parse_field_path(&self.prefix);
        path.extend(parse_field_path(field));
        let line = locate(text, &path)?;
        Some(self.doc_line + line - 1)
    }
}

/// One object read from a manifest, before it is decoded into a typed Kubernetes object.
#[derive(Clone, Debug)]
pub struct RawObject {
    /// The object's JSON value.
    pub value: Value,
    /// Where the object starts.
    pub source: Source,
    /// Finds its fields' lines.
    pub locator: Arc<Locator>,
}

impl RawObject {
    /// The source of a field of this object (see [`Locator::source_of`]).
    pub fn source_of(&self, field: &str) -> Source {
        self.locator.source_of(field)
    }

    /// The 1-based line of a field (see [`Locator::line_of`]).
    pub fn line_of(&self, field: &str) -> Option<u32> {
        self.locator.line_of(field)
    }

    /// `kind:` of the object, if it is a string.
    pub fn kind(&self) -> Option<&str> {
        self.value.get("kind").and_then(Value::as_str)
    }

    /// `apiVersion:` of the object, if it is a string.
    pub fn api_version(&self) -> Option<&str> {
        self.value.get("apiVersion").and_then(Value::as_str)
    }

    /// `metadata.name`, or "".
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `metadata.namespace`, or "".
    pub fn namespace(&self) -> &str {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A reference for diagnostics, as well as the raw value allows.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind().unwrap_or("object").to_string(),
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }
}

/// Everything read from a set of `-f` paths.
#[derive(Debug, Default)]
pub struct Manifests {
    /// The objects, in the order of paths, files (sorted) and documents.
    pub objects: Vec<RawObject>,
    /// Errors that stopped a file or a document from being read.
    pub diagnostics: Diagnostics,
    /// The files read (for watching).
    pub files: Vec<PathBuf>,
}

/// Reads every path like `kubectl -f`: a file, a directory (recursive, `*.yaml`, `*.yml`,
/// `*.json`), or `-` for stdin. Problems are collected, not returned early.
pub fn read_paths(paths: &[PathBuf]) -> Manifests {
    let mut out = Manifests::default();
    for part in read_paths_with(paths, &mut out, |part| part) {
        out.objects.extend(part.objects);
        out.diagnostics.extend(part.diagnostics);
    }
    out
}

/// A text to parse: (name, text, `Some(true)` for JSON, `None` to sniff).
type Text = (String, String, Option<bool>);

/// Reads every path as [`read_paths`] does, and hands each text's objects and parse
/// problems to `per_text` as soon as that text is parsed, on whichever thread parsed it.
/// Returns what `per_text` made of each text, in the order [`read_paths`] would list
/// them; files and problems reading them go to `out`.
pub fn read_paths_with<T, F>(paths: &[PathBuf], out: &mut Manifests, per_text: F) -> Vec<T>
where
    T: Send,
    F: Fn(Manifests) -> T + Sync,
{
    let mut texts: Vec<Text> = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => texts.push(("<stdin>".to_string(), text, None)),
                Err(e) => out.diagnostics.push(Diagnostic::error(
                    "read-error",
                    Source {
                        file: Arc::from("<stdin>"),
                        line: 0,
                    },
                    format!("cannot read standard input: {e}"),
                )),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect_files(path, true, &mut files) {
            out.diagnostics.push(Diagnostic::error(
                "read-error",
                file_source(path),
                format!("cannot read: {e}"),
            ));
            continue;
        }
        for file in files {
            match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => {
                        let name = file.display().to_string();
                        let json = file.extension().is_some_and(|e| e == "json");
                        texts.push((name, text, Some(json)));
                        out.files.push(file);
                    }
                    Err(e) => out.diagnostics.push(Diagnostic::error(
                        "read-error",
                        file_source(&file),
                        format!("not UTF-8 text: {e}"),
                    )),
                },
                Err(e) => out.diagnostics.push(Diagnostic::error(
                    "read-error",
                    file_source(&file),
                    format!("cannot read: {e}"),
                )),
            }
        }
    }
    let one = |(name, text, json): Text| {
        let mut part = Manifests::default();
        read_text(&mut part, &name, text, json);
        per_text(part)
    };
    // Parsing is most of a large load: texts are parsed on every core, each thread taking
    // the next text not yet taken (so one large file does not leave a core idle), and the
    // results put back in text order, so the outcome is exactly that of parsing them one
    // after the other.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total: usize = texts.iter().map(|t| t.1.len()).sum();
    if threads < 2 || texts.len() < 2 || total < 1 << 20 {
        return texts.into_iter().map(one).collect();
    }
    let count = texts.len();
    let queue: Vec<std::sync::Mutex<Option<Text>>> = texts
        .into_iter()
        .map(|t| std::sync::Mutex::new(Some(t)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(count))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(slot) = queue.get(i) else {
                            return mine;
                        };
                        let text = slot
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .take();
                        if let Some(text) = text {
                            mine.push((i, one(text)));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

fn file_source(path: &Path) -> Source {
    Source {
        file: Arc::from(path.display().to_string()),
        line: 0,
    }
}

fn collect_files(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden {
                collect_files(&entry, false, out)?;
            }
        }
    } else if explicit
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
    {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads one text (a file or stdin). `json`: `Some(true)` for `.json` files, `None` to sniff.
pub fn read_text(out: &mut Manifests, name: &str, text: String, json: Option<bool>) {
    let is_json = json.unwrap_or_else(|| text.trim_start().starts_with(['{', '[']));
    let file = Arc::new(SourceFile {
        name: Arc::from(name),
        text,
    });
    if is_json {
        read_json(out, &file);
    } else {
        for (range, line) in split_documents(&file.text) {
            read_yaml_document(out, &file, range, line);
        }
    }
}

/// Splits a YAML stream into documents: `(byte range, 1-based first line)`. A document
/// starts at a `---` line (included, so that `--- {inline: doc}` parses) and ends before the
/// next `---` line or after a `...` line.
pub fn split_documents(text: &str) -> Vec<(std::ops::Range<usize>, u32)> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u32;
    let mut offset = 0usize;
    for (line_no, line) in (1u32..).zip(text.split_inclusive('\n')) {
        if is_marker(line, "---") {
            if offset > start {
                docs.push((start..offset, start_line));
            }
            start = offset;
            start_line = line_no;
        } else if is_marker(line, "...") {
            let end = offset + line.len();
            docs.push((start..end, start_line));
            start = end;
            start_line = line_no + 1;
        }
        offset += line.len();
    }
    if offset > start {
        docs.push((start..offset, start_line));
    }
    docs
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r']))
}

fn read_yaml_document(
    out: &mut Manifests,
    file: &Arc<SourceFile>,
    range: std::ops::Range<usize>,
    doc_line: u32,
) {
    let text = &file.text[range.clone()];
    if !has_content(text) {
        return;
    }
    // YAML 1.2 booleans only: `namespace: y` and `name: no` are strings, as Kubernetes'
    // typed decoding reads them (YAML 1.1's yes/no/on/off/y/n "Norway problem").
    let options = serde_saphyr::options! { strict_booleans: true };
    let value: Value = match serde_saphyr::from_str_with_options(text, options) {
        Ok(v) => v,
        Err(e) => {
            let line = e
                .without_snippet()
                .location()
                .map(|l| doc_line + u32::try_from(l.line()).unwrap_or(1).max(1) - 1)
                .unwrap_or(doc_line);
            out.diagnostics.push(Diagnostic::error(
                "yaml-syntax",
                Source {
                    file: file.name.clone(),
                    line,
                },
                format!("invalid YAML: {}", yaml_error_message(&e)),
            ));
            return;
        }
    };
    push_value(out, file, range, doc_line, value);
}

/// True when a YAML text holds anything but comments, blank lines and markers.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#') || t == "---" || t == "..." || t.starts_with('%'))
            && !(is_marker(l, "---") && t[3..].trim_start().starts_with('#'))
    })
}

/// serde-saphyr's message without its source snippet or location suffix.
fn yaml_error_message(e: &serde_saphyr::Error) -> String {
    let full = e.without_snippet().to_string();
    let first = full.lines().next().unwrap_or("").trim();
    // The location is reported in our own FILE:LINE prefix.
    match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

fn read_json(out: &mut Manifests, file: &Arc<SourceFile>) {
    let text = &file.text;
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut start = 0usize;
    loop {
        // Skip whitespace so the document's line is the line of its first byte.
        let rest = &text[start..];
        start += rest.len() - rest.trim_start().len();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let end = stream.byte_offset();
                let line = line_at(text, start);
                push_value(out, file, start..end, line, value);
                start = end;
            }
            Some(Err(e)) => {
                out.diagnostics.push(Diagnostic::error(
                    "json-syntax",
                    Source {
                        file: file.name.clone(),
                        line: u32::try_from(e.line()).unwrap_or(0),
                    },
                    format!("invalid JSON: {e}"),
                ));
                break;
            }
        }
    }
}

fn line_at(text: &str, offset: usize) -> u32 {
    let n = text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(n + 1).unwrap_or(u32::MAX)
}

/// Adds a parsed document: an object, the items of a `kind: List`, or nothing for `null`.
fn push_value(
    out: &mut Manifests,
    file: &Arc<SourceFile>,
    doc: std::ops::Range<usize>,
    doc_line: u32,
    value: Value,
) {
    let source = Source {
        file: file.name.clone(),
        line: doc_line,
    };
    let mut locator = Locator {
        file: file.clone(),
        doc,
        doc_line,
        prefix: String::new(),
        source: source.clone(),
    };
    match value {
        Value::Null => {}
        Value::Object(map) => {
            let is_list = map.get("kind").and_then(Value::as_str) == Some("List")
                || (map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && map.get("items").is_some_and(Value::is_array));
            // The object's line is the line of its first key, past comments and `---`.
            locator.source.line = first_content_line(&file.text[locator.doc.clone()])
                .map_or(doc_line, |l| doc_line + l - 1);
            let mut raw = RawObject {
                value: Value::Object(map),
                source: locator.source.clone(),
                locator: Arc::new(locator),
            };
            if is_list {
                let items = match raw.value.get_mut("items").map(Value::take) {
                    Some(Value::Array(items)) => items,
                    Some(Value::Null) | None => Vec::new(),
                    Some(_) => {
                        out.diagnostics.push(
                            Diagnostic::error(
                                "malformed-object",
                                raw.source_of("items"),
                                "a List's items must be a sequence of objects",
                            )
                            .on(raw.object_ref())
                            .field("items"),
                        );
                        return;
                    }
                };
                // One walk of the document finds every item's line (looking each up
                // alone would re-parse the document once per item).
                let item_lines = file
                    .text
                    .get(raw.locator.doc.clone())
                    .map(item_lines)
                    .unwrap_or_default();
                for (i, item) in items.into_iter().enumerate() {
                    let mut loc = (*raw.locator).clone();
                    loc.prefix = format!("items[{i}]");
                    loc.source.line = item_lines
                        .get(i)
                        .map_or(raw.source.line, |l| doc_line + l - 1);
                    let item_raw = RawObject {
                        value: item,
                        source: loc.source.clone(),
                        locator: Arc::new(loc),
                    };
                    if item_raw.value.is_object() {
                        out.objects.push(item_raw);
                    } else {
                        out.diagnostics.push(
                            Diagnostic::error(
                                "malformed-object",
                                item_raw.source.clone(),
                                "a List item must be an object",
                            )
                            .field(format!("items[{i}]")),
                        );
                    }
                }
            } else {
                out.objects.push(raw);
            }
        }
        other => out.diagnostics.push(Diagnostic::error(
            "malformed-object",
            source,
            format!(
                "a manifest must be an object with apiVersion and kind, not {}",
                json_type(&other)
            ),
        )),
    }
}

/// The 1-based line (relative to `text`) of the first line holding content: not blank, not
/// a comment, not a `---`/`...` marker or a `%` directive. A cheap stand-in for the parser:
/// an object's line is where its first key is written.
fn first_content_line(text: &str) -> Option<u32> {
    (1u32..).zip(text.lines()).find_map(|(n, l)| {
        let t = l.trim_start_matches('\u{feff}').trim();
        let t = t
            .strip_prefix("---")
            .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
            .map_or(t, str::trim);
        (!(t.is_empty() || t.starts_with('#') || t == "..." || t.starts_with('%'))).then_some(n)
    })
}

/// The 1-based lines (relative to `text`) of the items of a `kind: List` document's
/// top-level `items` sequence, in one walk of the parse events.
fn item_lines(text: &str) -> Vec<u32> {
    let mut events = Parser::new_from_str(text).filter_map(|r| match r {
        Ok((ev, span)) => Some((ev, u32::try_from(span.start.line()).unwrap_or(0))),
        Err(_) => None,
    });
    let mut out = Vec::new();
    // Find the root mapping.
    loop {
        match events.next() {
            Some((Event::MappingStart(..), _)) => break,
            Some(_) => continue,
            None => return out,
        }
    }
    loop {
        let Some((key_ev, _)) = next_node(&mut events) else {
            return out;
        };
        let key = match &key_ev {
            Event::MappingEnd => return out,
            Event::Scalar(s, ..) => Some(s.to_string()),
            _ => None,
        };
        if key.is_none() {
            skip(&mut events, key_ev);
        }
        let Some((val_ev, _)) = next_node(&mut events) else {
            return out;
        };
        if key.as_deref() == Some("items") && matches!(val_ev, Event::SequenceStart(..)) {
            loop {
                let Some((item_ev, line)) = next_node(&mut events) else {
                    return out;
                };
                if matches!(item_ev, Event::SequenceEnd) {
                    return out;
                }
                out.push(line);
                skip(&mut events, item_ev);
            }
        }
        skip(&mut events, val_ev);
    }
}

/// A word for a JSON value's type, for messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Parses `spec.ports[0].port` or `metadata.labels[app.kubernetes.io/name]`.
pub fn parse_field_path(path: &str) -> Vec<PathSegment> {
    let mut out = Vec::new();
    let mut chars = path.char_indices().peekable();
    let mut key = String::new();
    while let Some((_, c)) = chars.next() {
        match c {
            '.' => {
                if !key.is_empty() {
                    out.push(PathSegment::Key(std::mem::take(&mut key)));
                }
            }
            '[' => {
                if !key.is_empty() {
                    out.push(PathSegment::Key(std::mem::take(&mut key)));
                }
                let mut inner = String::new();
                for (_, c) in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                match inner.parse::<usize>() {
                    Ok(i) => out.push(PathSegment::Index(i)),
                    Err(_) => out.push(PathSegment::Key(inner)),
                }
            }
            c => key.push(c),
        }
    }
    if !key.is_empty() {
        out.push(PathSegment::Key(key));
    }
    out
}

/// The 1-based line (relative to `text`) of the node at `path`, or of the deepest ancestor
/// that exists. For a mapping key, the key's own line.
pub fn locate(text: &str, path: &[PathSegment]) -> Option<u32> {
    let mut events = Parser::new_from_str(text).filter_map(|r| match r {
        Ok((ev, span)) => Some((ev, u32::try_from(span.start.line()).unwrap_or(0))),
        Err(_) => None,
    });
    // Find the root node.
    loop {
        match events.next()? {
            (Event::StreamStart | Event::DocumentStart(..), _) => continue,
            #[allow(unreachable_patterns)]
            (Event::Anchor(..) | Event::Comment(..), _) => continue,
            (Event::MappingStart(..), line) if path.is_empty() => {
                // A block mapping's start event may sit on a comment line before it; the
                // object's line is its first key's.
                return Some(next_node(&mut events).map_or(line, |(_, l)| l));
            }
            (ev, line) => return Some(walk(&mut events, ev, line, path)),
        }
    }
}

/// Walks from a node (whose start event is `ev`) down `path`. Returns the best line found.
fn walk<'a, I>(events: &mut I, ev: Event<'a>, line: u32, path: &[PathSegment]) -> u32
where
    I: Iterator<Item = (Event<'a>, u32)>,
{
    let Some((seg, rest)) = path.split_first() else {
        return line;
    };
    match (ev, seg) {
        (Event::MappingStart(..), PathSegment::Key(want)) => loop {
            let Some((key_ev, key_line)) = next_node(events) else {
                return line;
            };
            let key = match key_ev {
                Event::MappingEnd => return line,
                Event::Scalar(ref s, ..) => Some(s.to_string()),
                _ => None,
            };
            if key.is_none() {
                skip(events, key_ev);
            }
            let Some((val_ev, _)) = next_node(events) else {
                return line;
            };
            if key.as_deref() == Some(want.as_str()) {
                // A value is reported at its key's line, which is where people look.
                return walk(events, val_ev, key_line, rest);
            }
            skip(events, val_ev);
        },
        (Event::SequenceStart(..), PathSegment::Index(want)) => {
            let mut i = 0usize;
            loop {
                let Some((item_ev, item_line)) = next_node(events) else {
                    return line;
                };
                if matches!(item_ev, Event::SequenceEnd) {
                    return line;
                }
                if i == *want {
                    return walk(events, item_ev, item_line, rest);
                }
                skip(events, item_ev);
                i += 1;
            }
        }
        _ => line,
    }
}

/// The next node event, past comments and anchor metadata.
fn next_node<'a, I>(events: &mut I) -> Option<(Event<'a>, u32)>
where
    I: Iterator<Item = (Event<'a>, u32)>,
{
    loop {
        let (ev, line) = events.next()?;
        match ev {
            #[allow(unreachable_patterns)]
            Event::Anchor(..) | Event::Comment(..) => continue,
            _ => return Some((ev, line)),
        }
    }
}

/// Skips the rest of a node whose start event was `ev`.
fn skip<'a, I>(events: &mut I, ev: Event<'a>)
where
    I: Iterator<Item = (Event<'a>, u32)>,
{
    let mut depth = match ev {
        Event::MappingStart(..) | Event::SequenceStart(..) => 1usize,
        _ => 0,
    };
    while depth > 0 {
        match events.next() {
            Some((Event::MappingStart(..) | Event::SequenceStart(..), _)) => depth += 1,
            Some((Event::MappingEnd | Event::SequenceEnd, _)) => depth -= 1,
            Some(_) => {}
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_on_markers_only() {
        let text = "a: 1\n---\nb: |\n  --- not a marker\n---\n...\nc: 3\n";
        let docs = split_documents(text);
        let parts: Vec<(&str, u32)> = docs.iter().map(|(r, l)| (&text[r.clone()], *l)).collect();
        assert_eq!(
            parts,
            vec![
                ("a: 1\n", 1),
                ("---\nb: |\n  --- not a marker\n", 2),
                ("---\n...\n", 5),
                ("c: 3\n", 7)
            ]
        );
    }

    #[test]
    fn locates_fields() {
        let text = "# c\napiVersion: v1\nkind: Service\nspec:\n  ports:\n  - name: a\n    port: 1\n  - {name: b, port: 2}\n  selector: {app: x}\n";
        let at = |p: &str| locate(text, &parse_field_path(p));
        assert_eq!(at(""), Some(2));
        assert_eq!(at("kind"), Some(3));
        assert_eq!(at("spec.ports[0].port"), Some(7));
        assert_eq!(at("spec.ports[1].port"), Some(8));
        assert_eq!(at("spec.ports[1]"), Some(8));
        assert_eq!(at("spec.selector[app]"), Some(9));
        // Missing fields point at the nearest ancestor that exists.
        assert_eq!(at("spec.ports[0].targetPort"), Some(6));
        assert_eq!(at("spec.clusterIP"), Some(4));
    }

    #[test]
    fn cheap_line_finders_agree_with_the_parser() {
        let text = "# c\n\n--- # x\napiVersion: v1\nkind: List\nitems:\n- a: 1\n  b: 2\n-   {c: 3}\n- - nested\n";
        assert_eq!(first_content_line(text), Some(4));
        assert_eq!(first_content_line("--- {a: 1}\n"), Some(1));
        assert_eq!(first_content_line("# only\n---\n"), None);
        assert_eq!(item_lines(text), vec![7, 9, 10]);
        for (i, line) in item_lines(text).into_iter().enumerate() {
            assert_eq!(
                locate(text, &parse_field_path(&format!("items[{i}]"))),
                Some(line)
            );
        }
    }

    #[test]
    fn field_paths_parse() {
        use PathSegment::*;
        assert_eq!(
            parse_field_path("metadata.labels[app.kubernetes.io/name]"),
            vec![
                Key("metadata".into()),
                Key("labels".into()),
                Key("app.kubernetes.io/name".into())
            ]
        );
        assert_eq!(
            parse_field_path("items[3].spec"),
            vec![Key("items".into()), Index(3), Key("spec".into())]
        );
    }
}
