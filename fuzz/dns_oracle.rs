//! The oracle of the `dns_query` fuzz target, shared with the corpus replay in
//! `crates/dns/tests/fuzz_replay.rs` (both include this file with `#[path]`).
//! Invariants: no panic; an empty response (Drop) only for input shorter than a header
//! or with QR set; any other response parses completely with `domain` (header, question,
//! every record of every section), is a response (QR) with the query's ID, fits the UDP
//! limit over UDP, and sets TC when the outcome says truncated.

use std::sync::OnceLock;

use domain::base::Message;
use domain::base::name::ParsedName;
use domain::rdata::AllRecordData;
use svcnet_dns::{Action, DnsConfig, DnsZone, PodsMode, Transport, Upstream};
use svcnet_model::{AddressPlan, Cluster};

/// The `cluster: |` block of the conformance corpus, unindented.
pub fn cluster_yaml(corpus: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in corpus.lines() {
        if inside {
            if !line.is_empty() && !line.starts_with(' ') {
                break;
            }
            out.push_str(line.strip_prefix("  ").unwrap_or(line));
            out.push('\n');
        } else if line.starts_with("cluster: |") {
            inside = true;
        }
    }
    out
}

/// The zone of the conformance cluster (`corpus` is the text of `dns.yaml`), built once.
pub fn zone(corpus: &str) -> &'static DnsZone {
    static ZONE: OnceLock<DnsZone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let (cluster, diags) =
            Cluster::from_yaml("dns.yaml", &cluster_yaml(corpus), &AddressPlan::default());
        let Some(cluster) = cluster else {
            panic!("conformance cluster does not load: {diags:?}");
        };
        let config = DnsConfig {
            ttl: 5,
            pods: PodsMode::Insecure,
            upstream: Upstream::None,
            ..DnsConfig::default()
        };
        DnsZone::build(&cluster, &config)
    })
}

/// Answers `query` over `transport` and checks the invariants.
pub fn check(zone: &DnsZone, query: &[u8], transport: Transport) -> Result<(), String> {
    let (resp, outcome) = zone.answer(query, transport);
    let not_a_query = query.len() < 12 || query[2] & 0x80 != 0;
    if resp.is_empty() {
        if !not_a_query {
            return Err(format!(
                "{transport:?}: empty response to a query ({outcome:?})"
            ));
        }
        if outcome.action != Action::Drop {
            return Err(format!("{transport:?}: empty response, action {outcome:?}"));
        }
        return Ok(());
    }
    if not_a_query {
        return Err(format!("{transport:?}: answered a non-query ({outcome:?})"));
    }
    if outcome.action != Action::Reply {
        return Err(format!(
            "{transport:?}: response written, action {outcome:?}"
        ));
    }
    if transport == Transport::Udp && resp.len() > 1232 {
        return Err(format!("UDP response of {} octets", resp.len()));
    }
    let msg = Message::from_octets(resp.as_slice()).map_err(|e| format!("header: {e}"))?;
    let h = msg.header();
    if !h.qr() {
        return Err("response without QR".into());
    }
    if h.id() != u16::from_be_bytes([query[0], query[1]]) {
        return Err("response ID differs from the query's".into());
    }
    if outcome.truncated && !h.tc() {
        return Err("outcome truncated, TC not set".into());
    }
    let mut question = msg.question();
    for q in &mut question {
        q.map_err(|e| format!("question: {e}"))?;
    }
    let mut section = question.answer().map_err(|e| format!("answer: {e}"))?;
    loop {
        for rr in &mut section {
            let rr = rr.map_err(|e| format!("record: {e}"))?;
            rr.to_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>()
                .map_err(|e| format!("{} record data: {e}", rr.rtype()))?;
        }
        match section
            .next_section()
            .map_err(|e| format!("section: {e}"))?
        {
            Some(next) => section = next,
            None => break,
        }
    }
    Ok(())
}
