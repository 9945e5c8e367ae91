//! Replays the `dns_query` fuzz corpus (`fuzz/corpus/dns_query/`) through the fuzz target's
//! oracle, so that stable `cargo test` checks every seed and every input the fuzzer kept,
//! without cargo-fuzz or nightly. The zone is the conformance cluster
//! (`shared/conformance/dns.yaml`, pods insecure, no upstream), as in the fuzz target.
//!
//! The invariants are the fuzz target's own oracle, `fuzz/dns_oracle.rs`, included here.
//!
//! `cargo test -p svcnet-dns --test fuzz_replay -- --ignored write_seeds` rewrites the
//! hand-made seeds (`seed-*`); inputs the fuzzer found are kept as `found-*`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use domain::base::Message;
use svcnet_dns::Transport;

#[path = "../../../fuzz/dns_oracle.rs"]
mod dns_oracle;

use dns_oracle::check;

/// The DNS conformance corpus, read at run time (from `$SVCNET_CONFORMANCE` or
/// `../shared/conformance` beside the repository) so that building the tests never needs it.
fn corpus_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let dir = std::env::var_os("SVCNET_CONFORMANCE").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
            PathBuf::from,
        );
        let path = dir.join("dns.yaml");
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (set SVCNET_CONFORMANCE or put shared/ beside the repository)",
                path.display()
            )
        })
    })
}

fn zone() -> &'static svcnet_dns::DnsZone {
    dns_oracle::zone(corpus_text())
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dns_query")
}

#[test]
fn replay_corpus() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "{} inputs in {}",
        files.len(),
        dir.display()
    );
    let zone = zone();
    // The zone is the conformance cluster, not an empty one: a Service answers.
    let (resp, _) = zone.answer(
        &query("svc1.testns.svc.cluster.local", A, IN, None),
        Transport::Udp,
    );
    let msg = Message::from_octets(resp.as_slice()).unwrap();
    assert!(
        msg.header_counts().ancount() >= 1,
        "svc1.testns has no A record"
    );
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        for transport in [Transport::Udp, Transport::Tcp] {
            let result = catch_unwind(AssertUnwindSafe(|| check(zone, &data, transport)));
            let name = path.file_name().unwrap().to_string_lossy();
            match result {
                Ok(Ok(())) => {}
                Ok(Err(violation)) => failures.push(format!("{name}: {violation}")),
                Err(_) => failures.push(format!("{name}: {transport:?}: panicked")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Encodes a name in uncompressed wire form (no validation: labels over 63 octets and
/// names over 255 are written as asked).
fn name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

/// OPT record: root owner, type 41, class = UDP size, TTL = ext-rcode/version/DO.
fn opt(size: u16, version: u8, dnssec_ok: bool, options: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 41];
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
    out.extend_from_slice(&(options.len() as u16).to_be_bytes());
    out.extend_from_slice(options);
    out
}

/// A standard query (RD set) for `qname`/`qtype`/`qclass`, with an optional OPT.
fn query(qname: &str, qtype: u16, qclass: u16, edns: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = header(0x1234, 0x0100, [1, 0, 0, u16::from(edns.is_some())]);
    out.extend(name(qname));
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    if let Some(o) = edns {
        out.extend(o);
    }
    out
}

const A: u16 = 1;
const NS: u16 = 2;
const CNAME: u16 = 5;
const SOA: u16 = 6;
const PTR: u16 = 12;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const SRV: u16 = 33;
const AXFR: u16 = 252;
const ANY: u16 = 255;
const IN: u16 = 1;

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let e = || Some(opt(1232, 0, false, &[]));
    let mut s: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "a-clusterip",
            query("svc1.testns.svc.cluster.local", A, IN, None),
        ),
        (
            "a-0x20",
            query("SvC1.TestNS.SVC.Cluster.Local", A, IN, None),
        ),
        (
            "aaaa-v6",
            query("svc6.testns.svc.cluster.local", AAAA, IN, None),
        ),
        (
            "aaaa-dual",
            query("dual.testns.svc.cluster.local", AAAA, IN, e()),
        ),
        (
            "a-headless",
            query("web.testns.svc.cluster.local", A, IN, None),
        ),
        (
            "a-headless-endpoint",
            query("web-0.web.testns.svc.cluster.local", A, IN, None),
        ),
        (
            "a-headless-empty",
            query("hdls-empty.testns.svc.cluster.local", A, IN, None),
        ),
        (
            "srv-named-port",
            query("_http._tcp.svc1.testns.svc.cluster.local", SRV, IN, None),
        ),
        (
            "srv-headless",
            query("_http._tcp.web.testns.svc.cluster.local", SRV, IN, e()),
        ),
        (
            "srv-service",
            query("web.testns.svc.cluster.local", SRV, IN, None),
        ),
        (
            "srv-kube-dns",
            query(
                "_dns._udp.kube-dns.kube-system.svc.cluster.local",
                SRV,
                IN,
                None,
            ),
        ),
        (
            "txt-version",
            query("dns-version.cluster.local", TXT, IN, None),
        ),
        (
            "cname-external",
            query("ext.testns.svc.cluster.local", CNAME, IN, None),
        ),
        (
            "a-external",
            query("ext.testns.svc.cluster.local", A, IN, e()),
        ),
        (
            "ptr-v4-service",
            query("1.0.96.10.in-addr.arpa", PTR, IN, None),
        ),
        (
            "ptr-v4-endpoint",
            query("3.1.1.10.in-addr.arpa", PTR, IN, None),
        ),
        (
            "ptr-v6",
            query(
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.1.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa",
                PTR,
                IN,
                None,
            ),
        ),
        (
            "ptr-v4-unknown",
            query("9.9.9.9.in-addr.arpa", PTR, IN, None),
        ),
        ("soa-apex", query("cluster.local", SOA, IN, None)),
        ("ns-apex", query("cluster.local", NS, IN, None)),
        (
            "any-service",
            query("svc1.testns.svc.cluster.local", ANY, IN, None),
        ),
        (
            "a-pod",
            query("10-1-2-3.testns.pod.cluster.local", A, IN, None),
        ),
        ("a-ent", query("testns.svc.cluster.local", A, IN, None)),
        (
            "a-nxdomain",
            query("nope.testns.svc.cluster.local", A, IN, None),
        ),
        ("a-outside", query("example.com", A, IN, None)),
        ("a-root", query(".", A, IN, None)),
        ("axfr", query("cluster.local", AXFR, IN, None)),
        (
            "class-chaos",
            query("svc1.testns.svc.cluster.local", A, 3, None),
        ),
        (
            "edns-4096-do",
            query(
                "web.testns.svc.cluster.local",
                SRV,
                IN,
                Some(opt(4096, 0, true, &[])),
            ),
        ),
        (
            "edns-512",
            query(
                "svc1.testns.svc.cluster.local",
                A,
                IN,
                Some(opt(512, 0, false, &[])),
            ),
        ),
        (
            "edns-tiny",
            query(
                "svc1.testns.svc.cluster.local",
                A,
                IN,
                Some(opt(1, 0, false, &[])),
            ),
        ),
        (
            "edns-version-1",
            query(
                "svc1.testns.svc.cluster.local",
                A,
                IN,
                Some(opt(1232, 1, false, &[])),
            ),
        ),
        (
            "edns-cookie",
            query(
                "svc1.testns.svc.cluster.local",
                A,
                IN,
                Some(opt(1232, 0, false, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])),
            ),
        ),
        (
            "edns-bad-option-length",
            query(
                "svc1.testns.svc.cluster.local",
                A,
                IN,
                Some(opt(1232, 0, false, &[0, 10, 0, 40, 1])),
            ),
        ),
        ("zero-length", Vec::new()),
        ("one-octet", vec![0]),
        ("header-only", header(1, 0x0100, [0, 0, 0, 0])),
        (
            "header-qdcount-1-no-question",
            header(1, 0x0100, [1, 0, 0, 0]),
        ),
        ("header-counts-max", header(1, 0x0100, [0xffff; 4])),
        ("response-bit", {
            let mut q = query("svc1.testns.svc.cluster.local", A, IN, None);
            q[2] |= 0x80;
            q
        }),
        ("opcode-notify", {
            let mut q = query("cluster.local", SOA, IN, None);
            q[2] = 4 << 3;
            q
        }),
        ("opcode-update-flags-all", {
            let mut q = query("cluster.local", SOA, IN, None);
            q[2] = 0x7f;
            q[3] = 0xff;
            q
        }),
        (
            "label-64",
            query(&format!("{}.cluster.local", "a".repeat(64)), A, IN, None),
        ),
        (
            "name-over-255",
            query(
                &format!("{}cluster.local", "abcdefghi.".repeat(26)),
                A,
                IN,
                None,
            ),
        ),
    ];
    let full = query("svc1.testns.svc.cluster.local", A, IN, e());
    for cut in [5, 11, 13, 20, 47, full.len() - 1] {
        let name: &'static str = Box::leak(format!("truncated-at-{cut}").into_boxed_str());
        s.push((name, full[..cut].to_vec()));
    }
    let mut trailing = full.clone();
    trailing.extend_from_slice(b"garbage");
    s.push(("trailing-octets", trailing));
    // Compression pointers in the question: to itself, a two-pointer loop, past the end,
    // into the header, and a valid pointer to an earlier question.
    let q = |body: &[u8], qd: u16| {
        let mut out = header(0x4242, 0x0100, [qd, 0, 0, 0]);
        out.extend_from_slice(body);
        out
    };
    s.push(("pointer-self", q(&[0xc0, 12, 0, 1, 0, 1], 1)));
    s.push((
        "pointer-loop",
        q(&[1, b'a', 0xc0, 14, 0xc0, 12, 0, 1, 0, 1], 1),
    ));
    s.push(("pointer-past-end", q(&[0xc0, 0xff, 0, 1, 0, 1], 1)));
    s.push(("pointer-into-header", q(&[0xc0, 2, 0, 1, 0, 1], 1)));
    s.push(("label-type-01", q(&[0x40, 0, 0, 1, 0, 1], 1)));
    let mut two = name("svc1.testns.svc.cluster.local");
    two.extend_from_slice(&[0, 1, 0, 1, 1, b'x', 0xc0, 12, 0, 28, 0, 1]);
    s.push(("two-questions-compressed", q(&two, 2)));
    // An OPT in the answer section, and two OPTs in the additional section.
    let mut opt_in_answer = header(7, 0x0100, [1, 1, 0, 0]);
    opt_in_answer.extend(name("svc1.testns.svc.cluster.local"));
    opt_in_answer.extend_from_slice(&[0, 1, 0, 1]);
    opt_in_answer.extend(opt(1232, 0, false, &[]));
    s.push(("opt-in-answer", opt_in_answer));
    let mut two_opts = query("svc1.testns.svc.cluster.local", A, IN, e());
    two_opts[11] = 2;
    two_opts.extend(opt(1232, 0, false, &[]));
    s.push(("two-opts", two_opts));
    s
}

/// Rewrites the hand-made seeds (`seed-*`) in `fuzz/corpus/dns_query/`.
#[test]
#[ignore = "writes files; run by hand to regenerate the seed corpus"]
fn write_seeds() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
