//! Runs the shared DNS conformance corpus (`dns.yaml`) against the pure zone, with the
//! corpus's settings (TTL 5, pods insecure, no upstream) and its matching rules. Fails
//! listing every mismatching case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::name::ParsedName;
use domain::base::{Message, MessageBuilder, Name};
use domain::rdata::AllRecordData;
use serde::Deserialize;
use svcnet_dns::{DnsConfig, DnsZone, PodsMode, Transport, Upstream};
use svcnet_model::{AddressPlan, Cluster};

#[derive(Deserialize)]
struct Corpus {
    zone: String,
    default_ttl: u32,
    cluster: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    qname: String,
    qtype: String,
    expect_rcode: String,
    expect_answers: Vec<String>,
    #[serde(default)]
    allow_extra_out_of_zone_answers: bool,
    strictness: String,
}

fn corpus_path() -> PathBuf {
    match std::env::var_os("SVCNET_CONFORMANCE") {
        Some(dir) => PathBuf::from(dir).join("dns.yaml"),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/dns.yaml")
        }
    }
}

/// One answer record, in presentation form split into fields.
#[derive(Debug, Clone)]
struct Rr {
    owner: String,
    ttl: u32,
    rtype: String,
    rdata: Vec<String>,
}

impl std::fmt::Display for Rr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} IN {} {}",
            self.owner,
            self.ttl,
            self.rtype,
            self.rdata.join(" ")
        )
    }
}

fn parse_expected(line: &str) -> Rr {
    let mut words = line.split_whitespace();
    let owner = words.next().unwrap_or_default().to_string();
    let ttl = words.next().unwrap_or_default().parse().unwrap_or(0);
    let class = words.next().unwrap_or_default();
    assert_eq!(class, "IN", "expected record {line:?}");
    let rtype = words.next().unwrap_or_default().to_string();
    Rr {
        owner,
        ttl,
        rtype,
        rdata: words.map(str::to_string).collect(),
    }
}

fn norm_name(s: &str) -> String {
    s.trim_end_matches('.').to_ascii_lowercase()
}

fn field_matches(expected: &str, actual: &str) -> bool {
    if expected == "*" {
        return true;
    }
    if let (Ok(a), Ok(b)) = (expected.parse::<IpAddr>(), actual.parse::<IpAddr>()) {
        return a == b;
    }
    norm_name(expected.trim_matches('"')) == norm_name(actual.trim_matches('"'))
}

fn rr_matches(expected: &Rr, actual: &Rr) -> bool {
    if norm_name(&expected.owner) != norm_name(&actual.owner)
        || expected.ttl != actual.ttl
        || !expected.rtype.eq_ignore_ascii_case(&actual.rtype)
        || expected.rdata.len() != actual.rdata.len()
    {
        return false;
    }
    // SRV priority and weight are not prescribed by the specification.
    let skip = if expected.rtype.eq_ignore_ascii_case("SRV") {
        2
    } else {
        0
    };
    expected
        .rdata
        .iter()
        .zip(&actual.rdata)
        .skip(skip)
        .all(|(e, a)| field_matches(e, a))
}

fn to_rr(rec: domain::base::ParsedRecord<'_, Vec<u8>>) -> Rr {
    let owner = format!("{}.", rec.owner());
    let ttl = rec.ttl().as_secs();
    let rtype = rec.rtype().to_string();
    let data = rec
        .to_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>()
        .ok()
        .flatten()
        .map(|r| r.data().to_string())
        .unwrap_or_else(|| "<unparsable>".to_string());
    Rr {
        owner,
        ttl,
        rtype,
        rdata: data.split_whitespace().map(str::to_string).collect(),
    }
}

fn query(qname: &str, qtype: Rtype) -> Vec<u8> {
    let mut b = MessageBuilder::new_vec();
    b.header_mut().set_id(0x5a5a);
    b.header_mut().set_rd(true);
    let mut q = b.question();
    let name = Name::<Vec<u8>>::vec_from_str(qname).expect("corpus qname");
    q.push((name, qtype, Class::IN)).expect("question");
    let mut add = q.additional();
    add.opt(|o| {
        o.set_udp_payload_size(1232);
        Ok(())
    })
    .expect("opt");
    add.finish()
}

/// The apex whose SOA a negative answer for `qname` must carry.
fn apex_for(qname: &str, zone: &str) -> String {
    let q = norm_name(qname);
    for apex in [norm_name(zone), "in-addr.arpa".into(), "ip6.arpa".into()] {
        if q == apex || q.ends_with(&format!(".{apex}")) {
            return apex;
        }
    }
    String::new()
}

/// Checks one case; returns the reasons it fails.
fn check(zone: &DnsZone, corpus: &Corpus, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let qtype: Rtype = match case.qtype.parse() {
        Ok(t) => t,
        Err(_) => return vec![format!("unknown qtype {}", case.qtype)],
    };
    let (wire, _) = zone.answer(&query(&case.qname, qtype), Transport::Udp);
    let msg = match Message::from_octets(wire) {
        Ok(m) => m,
        Err(e) => return vec![format!("unparsable response: {e}")],
    };
    let h = msg.header();
    if h.id() != 0x5a5a || !h.qr() {
        problems.push("bad response header".into());
    }
    if !h.aa() {
        problems.push("AA not set".into());
    }
    if h.tc() {
        problems.push("TC set".into());
    }
    let want_rcode = match case.expect_rcode.as_str() {
        "NOERROR" => Rcode::NOERROR,
        "NXDOMAIN" => Rcode::NXDOMAIN,
        other => return vec![format!("unknown expect_rcode {other}")],
    };
    if h.rcode() != want_rcode {
        problems.push(format!("rcode {} (want {})", h.rcode(), want_rcode));
    }
    // Echo of the question's case.
    if let Ok(q) = msg.sole_question() {
        let echoed = format!("{}.", q.qname());
        if echoed.trim_end_matches('.') != case.qname.trim_end_matches('.') {
            problems.push(format!("question not echoed as asked: {echoed}"));
        }
    }
    let answers: Vec<Rr> = match msg.answer() {
        Ok(sec) => sec.filter_map(Result::ok).map(to_rr).collect(),
        Err(e) => return vec![format!("answer section: {e}")],
    };
    let expected: Vec<Rr> = case
        .expect_answers
        .iter()
        .map(|l| parse_expected(l))
        .collect();
    let mut used = vec![false; answers.len()];
    for e in &expected {
        match answers
            .iter()
            .enumerate()
            .find(|(i, a)| !used[*i] && rr_matches(e, a))
        {
            Some((i, _)) => used[i] = true,
            None => problems.push(format!("missing {e}")),
        }
    }
    let zone_suffix = norm_name(&corpus.zone);
    for (i, a) in answers.iter().enumerate() {
        if used[i] {
            continue;
        }
        let owner = norm_name(&a.owner);
        let out_of_zone = owner != zone_suffix && !owner.ends_with(&format!(".{zone_suffix}"));
        if !(case.allow_extra_out_of_zone_answers && out_of_zone) {
            problems.push(format!("unexpected {a}"));
        }
    }
    // Owner case echo for records owned by the query name (SHOULD, checked anyway).
    for a in &answers {
        if norm_name(&a.owner) == norm_name(&case.qname)
            && a.owner.trim_end_matches('.') != case.qname.trim_end_matches('.')
        {
            problems.push(format!("owner case not echoed: {}", a.owner));
        }
    }
    // Negative answers carry one SOA of the zone apex, negative TTL = default TTL.
    let negative = want_rcode == Rcode::NXDOMAIN || case.expect_answers.is_empty();
    let authority: Vec<Rr> = match msg.authority() {
        Ok(sec) => sec.filter_map(Result::ok).map(to_rr).collect(),
        Err(e) => return vec![format!("authority section: {e}")],
    };
    let soas: Vec<&Rr> = authority.iter().filter(|r| r.rtype == "SOA").collect();
    if negative {
        let apex = apex_for(&case.qname, &corpus.zone);
        if soas.len() != 1 {
            problems.push(format!("{} SOA records in authority (want 1)", soas.len()));
        } else {
            let soa = soas[0];
            if norm_name(&soa.owner) != apex {
                problems.push(format!("SOA owner {} (want {apex}.)", soa.owner));
            }
            let minimum: u32 = soa.rdata.get(6).and_then(|m| m.parse().ok()).unwrap_or(0);
            let negative_ttl = soa.ttl.min(minimum);
            if negative_ttl != corpus.default_ttl {
                problems.push(format!(
                    "negative TTL {negative_ttl} (want {})",
                    corpus.default_ttl
                ));
            }
        }
    }
    problems
}

#[test]
fn dns_conformance_corpus() {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let corpus: Corpus = serde_saphyr::from_str(&text).expect("dns.yaml parses");
    let (cluster, diags) = Cluster::from_yaml("dns.yaml", &corpus.cluster, &AddressPlan::default());
    let cluster = cluster.unwrap_or_else(|| panic!("corpus cluster does not load: {diags:?}"));
    assert_eq!(
        format!("{}.", cluster.plan.cluster_domain),
        corpus.zone,
        "corpus zone is the default cluster domain"
    );
    let config = DnsConfig {
        ttl: corpus.default_ttl,
        pods: PodsMode::Insecure,
        upstream: Upstream::None,
        ..DnsConfig::default()
    };
    let zone = DnsZone::build(&cluster, &config);

    let mut ids = HashSet::new();
    let mut failures = Vec::new();
    for case in &corpus.cases {
        assert!(ids.insert(case.id.clone()), "duplicate case id {}", case.id);
        let problems = check(&zone, &corpus, case);
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}, {} {}):\n    {}",
                case.id,
                case.strictness,
                case.qname,
                case.qtype,
                problems.join("\n    ")
            ));
        }
    }
    let passed = corpus.cases.len() - failures.len();
    println!(
        "dns conformance: {passed}/{} cases pass",
        corpus.cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} DNS conformance cases fail:\n{}",
        failures.len(),
        corpus.cases.len(),
        failures.join("\n")
    );
}
