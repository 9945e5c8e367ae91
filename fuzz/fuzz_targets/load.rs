//! Fuzz target: arbitrary bytes through svcnet's manifest loader (YAML and JSON modes) and
//! `Cluster::build`, checked against the oracle in `../oracle.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = oracle::check_bytes(data) {
        panic!("{violation}");
    }
});
