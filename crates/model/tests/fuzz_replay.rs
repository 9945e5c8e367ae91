//! Replays the `load` fuzz corpus (`fuzz/corpus/load/`) through the fuzz target's own oracle
//! (`fuzz/oracle.rs`), so that stable CI checks every seed and every input the fuzzer kept
//! without cargo-fuzz or nightly; and mutates valid manifests with proptest against the same
//! oracle. Invariants: no panic; every diagnostic starts with the file name and names a line
//! inside the file; a build with an error returns no cluster, and no cluster means an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../fuzz/oracle.rs"]
mod oracle;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use svcnet_model::Cluster;
use svcnet_model::load;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The corpus files, sorted, without the ones `fuzz/known-crashes.txt` lists.
fn corpus() -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus/load");
    let known = known_crashes();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.retain(|p| {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let skip = known.contains(&name);
        if skip {
            eprintln!("skipping {name}: listed in fuzz/known-crashes.txt");
        }
        !skip
    });
    files
}

/// Corpus files that still crash the loader (an abort cannot be caught by a test), one name
/// per line with `#` comments. Each is an open bug: remove its line when it is fixed.
fn known_crashes() -> Vec<String> {
    let path = fuzz_dir().join("known-crashes.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs `f`, turning a panic into an error that names the input.
fn no_panic(what: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("{what}: panicked: {msg}"))
        }
    }
}

#[test]
fn corpus_replays_through_the_oracle() {
    let files = corpus();
    assert!(
        files.len() >= 20,
        "the corpus in fuzz/corpus/load/ is missing ({} files)",
        files.len()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let bytes = std::fs::read(path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            no_panic(&name, || oracle::check_bytes(&bytes))
                .err()
                .map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} corpus inputs break the oracle:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same files read from disk, as `svcnet -f FILE` reads them: by extension, and with
/// invalid UTF-8 rejected by `read_paths` rather than replaced.
#[test]
fn corpus_files_load_from_disk() {
    let mut failures = Vec::new();
    for path in corpus() {
        let name = path.display().to_string();
        let text = std::fs::read(&path).unwrap();
        let lines = oracle::line_count(&String::from_utf8_lossy(&text));
        let result = no_panic(&name, || {
            let manifests = load::read_paths(std::slice::from_ref(&path));
            oracle::check_diagnostics(&name, lines, "read_paths", &manifests.diagnostics)?;
            let (cluster, diags) = Cluster::build(manifests.objects, &oracle::plan(), None);
            oracle::check_diagnostics(&name, lines, "Cluster::build", &diags)?;
            if cluster.is_some() == diags.has_errors() {
                return Err(format!(
                    "cluster returned: {}, errors: {}\n{diags}",
                    cluster.is_some(),
                    diags.has_errors()
                ));
            }
            Ok(())
        });
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Valid manifests to mutate: the seeds made from examples/ and the conformance corpora.
fn valid_seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        corpus()
            .iter()
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("example-") || n.starts_with("conformance-")
            })
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    })
}

/// Values a scalar is replaced with: wrong types, out-of-range numbers, YAML syntax, and
/// enum values of other fields. (No replica count large enough to derive many pods: the
/// property must stay fast.)
const SCALARS: &[&str] = &[
    "",
    "0",
    "-1",
    "65536",
    "2147483648",
    "99999999999999999999",
    "1.5",
    ".inf",
    "0x1F",
    "null",
    "~",
    "true",
    "no",
    "[]",
    "{}",
    "[a, 1]",
    "{a: [",
    "\"\"",
    "'it''s'",
    "\"\\u0000\"",
    "*anchor",
    "&anchor value",
    "!!binary aGk=",
    "!custom x",
    "|",
    ">-",
    "a: b",
    "- x",
    "# comment",
    "---",
    "UDP",
    "SCTP",
    "Prefix",
    "Exact",
    "Local",
    "None",
    "ClientIP",
    "LoadBalancer",
    "NodePort",
    "ExternalName",
    "IPv6",
    "RequireDualStack",
    "http",
    "10.0.0.1",
    "::1",
    "0.0.0.0/0",
    "127.96.0.10",
    "kube-system",
    "default",
    "UPPER_case",
    "a.b.c",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// One edit of a manifest's lines; indices are taken modulo the line count.
#[derive(Clone, Debug)]
enum Edit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Scalar(usize, usize),
    Indent(usize, bool),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = any::<usize>();
    prop_oneof![
        3 => i.prop_map(Edit::Delete),
        2 => i.prop_map(Edit::Duplicate),
        2 => (i, any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        6 => (i, 0..SCALARS.len()).prop_map(|(a, s)| Edit::Scalar(a, s)),
        1 => (i, any::<bool>()).prop_map(|(a, deeper)| Edit::Indent(a, deeper)),
        1 => i.prop_map(Edit::Truncate),
    ]
}

/// Replaces the scalar of a line: the value after `key: `, the item after `- `, or the line.
fn replace_scalar(line: &str, value: &str) -> String {
    if let Some(i) = line.find(": ") {
        format!("{}: {value}", &line[..i])
    } else if line.trim_start().starts_with("- ") {
        let indent = line.len() - line.trim_start().len();
        format!("{}- {value}", &line[..indent])
    } else {
        let indent = line.len() - line.trim_start().len();
        format!("{}{value}", &line[..indent])
    }
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *e {
            Edit::Delete(i) => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Swap(a, b) => lines.swap(a % n, b % n),
            Edit::Scalar(i, s) => lines[i % n] = replace_scalar(&lines[i % n], SCALARS[s]),
            Edit::Indent(i, deeper) => {
                let l = &lines[i % n];
                lines[i % n] = if deeper {
                    format!("  {l}")
                } else {
                    l.strip_prefix("  ").unwrap_or(l).to_string()
                };
            }
            Edit::Truncate(i) => lines.truncate(i % n),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn proptest_config() -> Config {
    // A fixed seed keeps CI reproducible; SVCNET_PROPTEST_SEED explores other mutations.
    let seed = std::env::var("SVCNET_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f022);
    Config {
        cases: 256,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn mutated_manifests_keep_the_invariants(
        seed in any::<usize>(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let seeds = valid_seeds();
        prop_assume!(!seeds.is_empty());
        let text = apply(&seeds[seed % seeds.len()], &edits);
        let result = no_panic("mutated manifest", || oracle::check_text(&text));
        prop_assert!(result.is_ok(), "{}\n--- input ---\n{}", result.unwrap_err(), text);
    }
}

#[test]
fn mutations_apply_as_described() {
    let text = "a: 1\nb:\n  - x\n  c: 2\n";
    assert_eq!(apply(text, &[Edit::Delete(0)]), "b:\n  - x\n  c: 2\n");
    assert_eq!(
        apply(text, &[Edit::Swap(0, 1)]),
        "b:\na: 1\n  - x\n  c: 2\n"
    );
    assert_eq!(
        apply(text, &[Edit::Scalar(2, 1)]),
        "a: 1\nb:\n  - 0\n  c: 2\n"
    );
    assert_eq!(
        apply(text, &[Edit::Scalar(3, 2)]),
        "a: 1\nb:\n  - x\n  c: -1\n"
    );
    assert_eq!(apply(text, &[Edit::Truncate(1)]), "a: 1\n");
}
