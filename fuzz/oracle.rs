//! The oracle of the `load` fuzz target, shared with the corpus replay test
//! (`crates/model/tests/fuzz_replay.rs` includes this file with `#[path]`), so that libFuzzer on
//! nightly and `cargo test` on stable check exactly the same things.
//!
//! One input is read as YAML and as JSON (`load::read_text`), then built (`Cluster::build`).
//! Invariants: nothing panics; every diagnostic's text starts with the file name (the
//! `FILE:LINE: ...` convention) and names a line inside the file; a build that reports an
//! error returns no cluster, and a build that returns no cluster reports an error.

use svcnet_model::load::{self, Manifests};
use svcnet_model::{AddressPlan, Cluster, Diagnostics};

/// The file name inputs are read under in YAML mode.
pub const YAML_NAME: &str = "fuzz-input.yaml";
/// The file name inputs are read under in JSON mode.
pub const JSON_NAME: &str = "fuzz-input.json";

/// A few nodes, so that derived pods get placed and addressed, while one workload's
/// replicas can still exhaust them.
pub fn plan() -> AddressPlan {
    AddressPlan {
        nodes: 3,
        ..AddressPlan::default()
    }
}

/// Checks one input given as bytes: invalid UTF-8 is replaced (U+FFFD), as a reader that
/// decodes lossily would, so that byte-level mutations still reach the YAML parser.
pub fn check_bytes(data: &[u8]) -> Result<(), String> {
    check_text(&String::from_utf8_lossy(data))
}

/// Checks one text in YAML mode and in JSON mode.
pub fn check_text(text: &str) -> Result<(), String> {
    check_mode(text, YAML_NAME, Some(false))?;
    check_mode(text, JSON_NAME, Some(true))
}

/// Reads `text` as the file `name` (`json`: as `read_text` takes it), builds the cluster and
/// checks every invariant. The error says which one broke, with the diagnostics.
pub fn check_mode(text: &str, name: &str, json: Option<bool>) -> Result<(), String> {
    let mut manifests = Manifests::default();
    load::read_text(&mut manifests, name, text.to_string(), json);
    let lines = line_count(text);
    check_diagnostics(name, lines, "read_text", &manifests.diagnostics)?;
    let (cluster, diags) = Cluster::build(manifests.objects, &plan(), None);
    check_diagnostics(name, lines, "Cluster::build", &diags)?;
    match (cluster.is_some(), diags.has_errors()) {
        (true, true) => Err(format!(
            "{name}: Cluster::build returned a cluster and errors:\n{diags}"
        )),
        (false, false) => Err(format!(
            "{name}: Cluster::build returned no cluster and no error:\n{diags}"
        )),
        _ => Ok(()),
    }
}

/// Every diagnostic starts with `name` and, when it gives a line, a line of the text (or the
/// line just past its end, where a parser reports an unexpected end of input).
pub fn check_diagnostics(
    name: &str,
    lines: u32,
    stage: &str,
    diags: &Diagnostics,
) -> Result<(), String> {
    for d in &diags.0 {
        let text = d.to_string();
        if !text.starts_with(name) {
            return Err(format!(
                "{stage}: diagnostic does not start with the file name {name:?}: {text}"
            ));
        }
        if d.source.line > lines.saturating_add(1) {
            return Err(format!(
                "{stage}: diagnostic names line {} of a {lines}-line file: {text}",
                d.source.line
            ));
        }
    }
    Ok(())
}

/// Lines as YAML counts them: CR, LF and CRLF each end a line; a last line without a line
/// break counts.
pub fn line_count(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut breaks = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        let crlf = b == b'\r' && bytes.get(i + 1) == Some(&b'\n');
        if b == b'\n' || (b == b'\r' && !crlf) {
            breaks = breaks.saturating_add(1);
        }
    }
    let unterminated = !matches!(bytes.last(), None | Some(b'\n' | b'\r'));
    breaks.saturating_add(u32::from(unterminated))
}
