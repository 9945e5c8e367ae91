//! Fuzz target: arbitrary bytes as an HTTP/1.1 request head (parsed with httparse, as
//! hyper does, and by the fast HTTP/1.1 server path, which must read it the same way)
//! through everything the Ingress server does with a head before the upstream: `RouteTable::route` on both listeners over a table compiled from the
//! Ingress examples plus extra annotations, the `X-Forwarded-*` rewrite, the upstream URI
//! for every backend protocol, endpoint choice and the CORS / auth-signin headers.
//!
//! The oracle is `crates/ingress/tests/server_head_fuzz.rs`, which under `cargo test` also
//! replays `corpus/ingress_head/` and a bounded mutation run.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/ingress/tests/server_head_fuzz.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = oracle::check(oracle::table(), data) {
        panic!("{violation}");
    }
});
