//! Fuzz target: arbitrary text as ingress-nginx annotations (`name=value` per line) through
//! `parse_annotations`, then `compile` and `RouteTable::route` with the Ingress carrying them.
//!
//! The oracle is `../ingress_oracle.rs`, shared with
//! `crates/ingress/tests/annotations_fuzz_replay.rs` (which replays
//! `corpus/ingress_annotations/` in normal `cargo test`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../ingress_oracle.rs"]
mod ingress_oracle;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = ingress_oracle::check(data) {
        panic!("{violation}");
    }
});
