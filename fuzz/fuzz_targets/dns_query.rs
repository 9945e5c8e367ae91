//! Fuzz target: arbitrary bytes as a DNS query through `DnsZone::answer` (UDP and TCP) on
//! the zone of the conformance cluster (`shared/conformance/dns.yaml`, pods insecure, no
//! upstream). Invariants: no panic; an empty response (Drop) only for input shorter than a
//! header or with QR set; any other response parses completely with `domain` (header,
//! question, every record of every section), is a response (QR) with the query's ID, fits
//! the UDP limit over UDP, and sets TC when the outcome says truncated.
//!
//! The oracle is `../dns_oracle.rs`, shared with `crates/dns/tests/fuzz_replay.rs`
//! (which replays `corpus/dns_query/` in normal `cargo test`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use svcnet_dns::Transport;

#[path = "../dns_oracle.rs"]
mod dns_oracle;

const CORPUS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/dns.yaml"
));

fuzz_target!(|data: &[u8]| {
    let zone = dns_oracle::zone(CORPUS);
    for transport in [Transport::Udp, Transport::Tcp] {
        if let Err(violation) = dns_oracle::check(zone, data, transport) {
            panic!("{violation}");
        }
    }
});
