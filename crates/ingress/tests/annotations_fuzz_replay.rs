//! Replays the `ingress_annotations` fuzz corpus (`fuzz/corpus/ingress_annotations/`)
//! through the fuzz target's own oracle (`fuzz/ingress_oracle.rs`), so that stable CI checks
//! every seed and every input the fuzzer kept, without cargo-fuzz or nightly; and generates
//! annotation sets with proptest (known names, values both plausible and hostile) against
//! the same oracle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../fuzz/ingress_oracle.rs"]
mod ingress_oracle;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ingress_annotations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn run(what: &str, data: &[u8]) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| ingress_oracle::check(data))) {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: panicked")),
    }
}

#[test]
fn corpus_replays_clean() {
    let files = corpus();
    assert!(files.len() >= 10, "corpus too small: {}", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let data = std::fs::read(f).unwrap();
            run(&f.display().to_string(), &data).err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The input format: one `name=value` per line, short names get the ingress-nginx prefix;
/// a refused snippet passes the oracle (it checks the refusal, not its absence).
#[test]
fn input_lines_are_annotations() {
    let ann = ingress_oracle::annotations(b"canary-weight=5\nexample.com/x=a=b\nfoo");
    assert_eq!(ann["nginx.ingress.kubernetes.io/canary-weight"], "5");
    assert_eq!(ann["example.com/x"], "a=b");
    assert_eq!(ann["nginx.ingress.kubernetes.io/foo"], "");
    assert_eq!(ingress_oracle::check(b"server-snippet=x"), Ok(()));
}

/// Every annotation svcnet reads, plus snippets (refused).
fn names() -> Vec<&'static str> {
    let mut n = svcnet_ingress::annotations::KNOWN.to_vec();
    n.extend(["configuration-snippet", "x-snippet"]);
    n
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("0".to_string()),
        Just("100".to_string()),
        Just("cookie".to_string()),
        Just("/".to_string()),
        Just("/$1/x".to_string()),
        Just("https://a.test/b".to_string()),
        Just("127.0.0.0/8,::1".to_string()),
        Just("$http_x_user".to_string()),
        Just("8m".to_string()),
        "[0-9]{1,12}[kmgs]?",
        "[ -~]{0,40}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5c_ca_7e),
        failure_persistence: None,
        ..Config::default()
    })]
    #[test]
    fn generated_annotation_sets(pairs in proptest::collection::vec((0..names().len(), value()), 0..8)) {
        let names = names();
        let text: String = pairs
            .iter()
            .map(|(n, v)| format!("{}={}\n", names[*n], v.replace(['\n', '\r'], " ")))
            .collect();
        let r = run("generated", text.as_bytes());
        prop_assert!(r.is_ok(), "{}\ninput:\n{}", r.unwrap_err(), text);
    }
}
