//! The pure zone, query by query: NODATA vs NXDOMAIN, empty non-terminals, CNAME chasing,
//! pod records in each mode, protocol errors, EDNS, truncation, and inputs that must not
//! panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::base::iana::{Class, Opcode, OptRcode, Rcode, Rtype};
use domain::base::name::ParsedName;
use domain::base::{Message, MessageBuilder, Name};
use domain::rdata::AllRecordData;
use svcnet_dns::{Action, DnsConfig, DnsZone, PodsMode, ResponseCode, Transport, Upstream, ZoneId};
use svcnet_model::{AddressPlan, Cluster};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: testns}
---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: testns}
spec:
  clusterIP: 10.96.0.11
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: ext-internal, namespace: testns}
spec: {type: ExternalName, externalName: svc1.testns.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: ext-missing, namespace: testns}
spec: {type: ExternalName, externalName: nope.testns.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: loop-a, namespace: testns}
spec: {type: ExternalName, externalName: loop-b.testns.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: loop-b, namespace: testns}
spec: {type: ExternalName, externalName: loop-a.testns.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: testns}
spec: {type: ExternalName, externalName: www.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: big, namespace: testns}
spec:
  clusterIP: None
  ports:
  - {name: http, port: 80}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: testns}
spec:
  containers: [{name: c}]
status:
  phase: Running
  podIP: 10.1.9.9
  podIPs: [{ip: 10.1.9.9}]
"#;

/// A headless Service `big` with `n` ready endpoints, to overflow UDP.
fn big_slice(n: usize) -> String {
    let mut s = String::from(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: testns\n  labels: {kubernetes.io/service-name: big}\naddressType: IPv4\nports: [{name: http, port: 80, protocol: TCP}]\nendpoints:\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "- addresses: [10.2.{}.{}]\n  conditions: {{ready: true}}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    s
}

fn zone_with(pods: PodsMode, upstream: Upstream) -> DnsZone {
    let text = format!("{CLUSTER}{}", big_slice(100));
    let (cluster, diags) = Cluster::from_yaml("test.yaml", &text, &AddressPlan::default());
    let cluster = cluster.unwrap_or_else(|| panic!("{diags:?}"));
    DnsZone::build(
        &cluster,
        &DnsConfig {
            ttl: 5,
            pods,
            upstream,
            ..DnsConfig::default()
        },
    )
}

fn zone() -> DnsZone {
    zone_with(PodsMode::Insecure, Upstream::None)
}

fn query_with(qname: &str, qtype: Rtype, edns: Option<(u16, u8, bool)>) -> Vec<u8> {
    let mut b = MessageBuilder::new_vec();
    b.header_mut().set_id(7);
    b.header_mut().set_rd(true);
    let mut q = b.question();
    q.push((
        Name::<Vec<u8>>::vec_from_str(qname).unwrap(),
        qtype,
        Class::IN,
    ))
    .unwrap();
    let mut add = q.additional();
    if let Some((size, version, dnssec_ok)) = edns {
        add.opt(|o| {
            o.set_udp_payload_size(size);
            o.set_version(version);
            o.set_dnssec_ok(dnssec_ok);
            Ok(())
        })
        .unwrap();
    }
    add.finish()
}

fn query(qname: &str, qtype: Rtype) -> Vec<u8> {
    query_with(qname, qtype, Some((1232, 0, false)))
}

/// The parts of a response a test looks at.
#[derive(Debug)]
struct Resp {
    rcode: Rcode,
    opt_rcode: OptRcode,
    aa: bool,
    tc: bool,
    answers: Vec<String>,
    authority: Vec<String>,
    opt: Option<(u16, bool)>,
    len: usize,
}

fn section(sec: domain::base::RecordSection<'_, Vec<u8>>) -> Vec<String> {
    sec.filter_map(Result::ok)
        .filter(|r| r.rtype() != Rtype::OPT)
        .map(|r| {
            let data = r
                .to_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>()
                .unwrap()
                .unwrap();
            format!(
                "{}. {} {} {}",
                r.owner(),
                r.ttl().as_secs(),
                r.rtype(),
                data.data()
            )
        })
        .collect()
}

fn decode(wire: Vec<u8>) -> Resp {
    let len = wire.len();
    let msg = Message::from_octets(wire).unwrap();
    let h = msg.header();
    Resp {
        rcode: h.rcode(),
        opt_rcode: msg.opt_rcode(),
        aa: h.aa(),
        tc: h.tc(),
        answers: section(msg.answer().unwrap()),
        authority: section(msg.authority().unwrap()),
        opt: msg.opt().map(|o| (o.udp_payload_size(), o.dnssec_ok())),
        len,
    }
}

fn ask(zone: &DnsZone, qname: &str, qtype: Rtype) -> Resp {
    let (wire, outcome) = zone.answer(&query(qname, qtype), Transport::Udp);
    assert_eq!(outcome.action, Action::Reply, "{qname} {qtype}");
    decode(wire)
}

fn assert_nodata(r: &Resp, apex: &str) {
    assert_eq!(r.rcode, Rcode::NOERROR, "{r:?}");
    assert!(r.answers.is_empty(), "{r:?}");
    assert!(r.aa);
    assert_eq!(r.authority.len(), 1, "{r:?}");
    assert!(
        r.authority[0].starts_with(&format!("{apex} 5 SOA ")),
        "{r:?}"
    );
}

fn assert_nxdomain(r: &Resp, apex: &str) {
    assert_eq!(r.rcode, Rcode::NXDOMAIN, "{r:?}");
    assert!(r.aa);
    assert_eq!(r.authority.len(), 1, "{r:?}");
    assert!(
        r.authority[0].starts_with(&format!("{apex} 5 SOA ")),
        "{r:?}"
    );
}

#[test]
fn empty_non_terminals_are_nodata() {
    let z = zone();
    for name in [
        "svc.cluster.local.",
        "testns.svc.cluster.local.",
        "default.svc.cluster.local.",
        "_tcp.svc1.testns.svc.cluster.local.",
        "_udp.svc1.testns.svc.cluster.local.",
        "pod.cluster.local.",
        "testns.pod.cluster.local.",
        "0.96.10.in-addr.arpa.",
        "10.in-addr.arpa.",
    ] {
        let r = ask(&z, name, Rtype::A);
        let apex = if name.ends_with("in-addr.arpa.") {
            "in-addr.arpa."
        } else {
            "cluster.local."
        };
        assert_nodata(&r, apex);
    }
}

#[test]
fn missing_names_are_nxdomain_with_soa() {
    let z = zone();
    assert_nxdomain(
        &ask(&z, "nope.testns.svc.cluster.local.", Rtype::A),
        "cluster.local.",
    );
    assert_nxdomain(
        &ask(&z, "svc1.nons.svc.cluster.local.", Rtype::A),
        "cluster.local.",
    );
    assert_nxdomain(
        &ask(&z, "_http._udp.svc1.testns.svc.cluster.local.", Rtype::SRV),
        "cluster.local.",
    );
    assert_nxdomain(
        &ask(&z, "9.9.9.9.in-addr.arpa.", Rtype::PTR),
        "in-addr.arpa.",
    );
    assert_nxdomain(
        &ask(
            &z,
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            Rtype::PTR,
        ),
        "ip6.arpa.",
    );
}

#[test]
fn existing_name_other_type_is_nodata() {
    let z = zone();
    assert_nodata(
        &ask(&z, "svc1.testns.svc.cluster.local.", Rtype::AAAA),
        "cluster.local.",
    );
    assert_nodata(
        &ask(&z, "svc1.testns.svc.cluster.local.", Rtype::MX),
        "cluster.local.",
    );
    assert_nodata(
        &ask(&z, "11.0.96.10.in-addr.arpa.", Rtype::A),
        "in-addr.arpa.",
    );
}

#[test]
fn apex_soa_ns_and_version() {
    let z = zone();
    let r = ask(&z, "cluster.local.", Rtype::SOA);
    assert_eq!(r.answers.len(), 1);
    assert!(
        r.answers[0].contains("SOA ns.dns.cluster.local. hostmaster.cluster.local."),
        "{r:?}"
    );
    assert!(r.answers[0].ends_with(" 7200 1800 86400 5"), "{r:?}");
    let r = ask(&z, "cluster.local.", Rtype::NS);
    assert_eq!(r.answers, vec!["cluster.local. 5 NS ns.dns.cluster.local."]);
    let r = ask(&z, "dns-version.cluster.local.", Rtype::TXT);
    assert_eq!(
        r.answers,
        vec!["dns-version.cluster.local. 28800 TXT \"1.1.0\""]
    );
}

#[test]
fn service_records() {
    let z = zone();
    let r = ask(&z, "svc1.testns.svc.cluster.local.", Rtype::A);
    assert_eq!(
        r.answers,
        vec!["svc1.testns.svc.cluster.local. 5 A 10.96.0.11"]
    );
    let r = ask(&z, "_dns._udp.svc1.testns.svc.cluster.local.", Rtype::SRV);
    assert_eq!(r.answers.len(), 1);
    assert!(
        r.answers[0].contains(" 53 svc1.testns.svc.cluster.local"),
        "{r:?}"
    );
    // Service-level SRV: every port.
    let r = ask(&z, "svc1.testns.svc.cluster.local.", Rtype::SRV);
    assert_eq!(r.answers.len(), 2, "{r:?}");
    let r = ask(&z, "11.0.96.10.in-addr.arpa.", Rtype::PTR);
    assert_eq!(
        r.answers,
        vec!["11.0.96.10.in-addr.arpa. 5 PTR svc1.testns.svc.cluster.local."]
    );
    let r = ask(&z, "svc1.testns.svc.cluster.local.", Rtype::ANY);
    assert_eq!(r.answers.len(), 3, "{r:?}");
}

#[test]
fn case_is_echoed() {
    let z = zone();
    let r = ask(&z, "SVC1.TestNS.svc.Cluster.Local.", Rtype::A);
    assert_eq!(
        r.answers,
        vec!["SVC1.TestNS.svc.Cluster.Local. 5 A 10.96.0.11"]
    );
}

#[test]
fn external_names_chase_inside_the_zone() {
    let z = zone();
    let r = ask(&z, "ext-internal.testns.svc.cluster.local.", Rtype::A);
    assert_eq!(
        r.answers,
        vec![
            "ext-internal.testns.svc.cluster.local. 5 CNAME svc1.testns.svc.cluster.local.",
            "svc1.testns.svc.cluster.local. 5 A 10.96.0.11",
        ]
    );
    assert!(r.authority.is_empty());
    // The target exists without AAAA: NODATA after the CNAME, with the SOA.
    let r = ask(&z, "ext-internal.testns.svc.cluster.local.", Rtype::AAAA);
    assert_eq!(r.answers.len(), 1);
    assert_nodata(
        &Resp {
            answers: vec![],
            ..r
        },
        "cluster.local.",
    );
    // A missing target: NXDOMAIN with the CNAME (RFC 6604).
    let r = ask(&z, "ext-missing.testns.svc.cluster.local.", Rtype::A);
    assert_eq!(r.answers.len(), 1, "{r:?}");
    assert_nxdomain(&r, "cluster.local.");
    // A CNAME query is answered with the CNAME only.
    let r = ask(&z, "ext-internal.testns.svc.cluster.local.", Rtype::CNAME);
    assert_eq!(r.answers.len(), 1);
    // Outside the zone, without upstream: the CNAME alone, NOERROR.
    let r = ask(&z, "ext.testns.svc.cluster.local.", Rtype::AAAA);
    assert_eq!(
        r.answers,
        vec!["ext.testns.svc.cluster.local. 5 CNAME www.example.com."]
    );
    assert_eq!(r.rcode, Rcode::NOERROR);
    // A loop ends.
    let r = ask(&z, "loop-a.testns.svc.cluster.local.", Rtype::A);
    assert_eq!(r.rcode, Rcode::NOERROR);
    assert_eq!(r.answers.len(), 8, "{r:?}");
}

#[test]
fn pod_records_by_mode() {
    let insecure = zone_with(PodsMode::Insecure, Upstream::None);
    let r = ask(&insecure, "10-1-2-3.testns.pod.cluster.local.", Rtype::A);
    assert_eq!(
        r.answers,
        vec!["10-1-2-3.testns.pod.cluster.local. 5 A 10.1.2.3"]
    );
    let r = ask(
        &insecure,
        "fd00-1--5.testns.pod.cluster.local.",
        Rtype::AAAA,
    );
    assert_eq!(
        r.answers,
        vec!["fd00-1--5.testns.pod.cluster.local. 5 AAAA fd00:1::5"]
    );
    assert_nodata(
        &ask(&insecure, "10-1-2-3.testns.pod.cluster.local.", Rtype::AAAA),
        "cluster.local.",
    );
    assert_nxdomain(
        &ask(&insecure, "10-1-2-3.nons.pod.cluster.local.", Rtype::A),
        "cluster.local.",
    );
    assert_nxdomain(
        &ask(&insecure, "web.testns.pod.cluster.local.", Rtype::A),
        "cluster.local.",
    );

    let verified = zone_with(PodsMode::Verified, Upstream::None);
    let r = ask(&verified, "10-1-9-9.testns.pod.cluster.local.", Rtype::A);
    assert_eq!(
        r.answers,
        vec!["10-1-9-9.testns.pod.cluster.local. 5 A 10.1.9.9"]
    );
    assert_nxdomain(
        &ask(&verified, "10-1-2-3.testns.pod.cluster.local.", Rtype::A),
        "cluster.local.",
    );
    assert_nxdomain(
        &ask(&verified, "10-1-9-9.default.pod.cluster.local.", Rtype::A),
        "cluster.local.",
    );

    let disabled = zone_with(PodsMode::Disabled, Upstream::None);
    assert_nxdomain(
        &ask(&disabled, "10-1-9-9.testns.pod.cluster.local.", Rtype::A),
        "cluster.local.",
    );
    assert_nxdomain(
        &ask(&disabled, "pod.cluster.local.", Rtype::A),
        "cluster.local.",
    );
}

#[test]
fn outside_the_zone() {
    let z = zone();
    let r = ask(&z, "www.example.com.", Rtype::A);
    assert_eq!(r.rcode, Rcode::REFUSED);
    assert!(!r.aa);

    let fwd = zone_with(
        PodsMode::Insecure,
        Upstream::Servers(vec!["127.0.0.1:53".parse().unwrap()]),
    );
    let (_, o) = fwd.answer(&query("www.example.com.", Rtype::A), Transport::Udp);
    assert_eq!(o.action, Action::Forward);
    // Reverse names: known addresses answered here, the rest forwarded.
    let (_, o) = fwd.answer(&query("9.9.9.9.in-addr.arpa.", Rtype::PTR), Transport::Udp);
    assert_eq!(o.action, Action::Forward);
    let r = ask(&fwd, "11.0.96.10.in-addr.arpa.", Rtype::PTR);
    assert_eq!(r.answers.len(), 1);
    assert!(r.aa);
    // Cluster names are never forwarded.
    assert_nxdomain(
        &ask(&fwd, "nope.testns.svc.cluster.local.", Rtype::A),
        "cluster.local.",
    );
}

#[test]
fn refused_and_notimp() {
    let z = zone();
    for t in [Rtype::AXFR, Rtype::IXFR] {
        let r = ask(&z, "cluster.local.", t);
        assert_eq!(r.rcode, Rcode::REFUSED, "{t}");
        assert!(r.answers.is_empty());
    }
    let mut notify = query("cluster.local.", Rtype::SOA);
    Message::from_octets(&mut notify[..])
        .unwrap()
        .header_mut()
        .set_opcode(Opcode::NOTIFY);
    let (wire, o) = z.answer(&notify, Transport::Udp);
    assert_eq!(o.rcode, ResponseCode::NotImp);
    assert_eq!(decode(wire).rcode, Rcode::NOTIMP);

    let mut b = MessageBuilder::new_vec();
    let mut q = b.question();
    q.push((
        Name::<Vec<u8>>::vec_from_str("version.bind.").unwrap(),
        Rtype::TXT,
        Class::CH,
    ))
    .unwrap();
    let (wire, _) = z.answer(&q.finish(), Transport::Udp);
    assert_eq!(decode(wire).rcode, Rcode::REFUSED);
    b = MessageBuilder::new_vec();
    let _ = b.header_mut();
}

#[test]
fn malformed_queries_get_formerr_or_nothing() {
    let z = zone();
    // Shorter than a header; a response.
    assert_eq!(z.answer(&[1, 2, 3], Transport::Udp).1.action, Action::Drop);
    let mut resp = query("svc1.testns.svc.cluster.local.", Rtype::A);
    resp[2] |= 0x80;
    assert_eq!(z.answer(&resp, Transport::Udp).1.action, Action::Drop);

    let good = query("svc1.testns.svc.cluster.local.", Rtype::A);
    // Cut in the middle of the question.
    let (wire, o) = z.answer(&good[..20], Transport::Udp);
    assert_eq!(o.rcode, ResponseCode::FormErr);
    assert_eq!(decode(wire).rcode, Rcode::FORMERR);
    // Two questions claimed, one present.
    let mut two = good.clone();
    two[5] = 2;
    assert_eq!(
        z.answer(&two, Transport::Udp).1.rcode,
        ResponseCode::FormErr
    );
    // No question.
    let mut none = good[..12].to_vec();
    none[5] = 0;
    assert_eq!(
        z.answer(&none, Transport::Udp).1.rcode,
        ResponseCode::FormErr
    );
    // A compression pointer loop in the question.
    let mut lp = good[..12].to_vec();
    lp.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(z.answer(&lp, Transport::Udp).1.rcode, ResponseCode::FormErr);
    // Two OPT records.
    let mut b = MessageBuilder::new_vec();
    let mut q = b.question();
    q.push((
        Name::<Vec<u8>>::vec_from_str("cluster.local.").unwrap(),
        Rtype::SOA,
    ))
    .unwrap();
    let mut add = q.additional();
    add.opt(|_| Ok(())).unwrap();
    add.opt(|_| Ok(())).unwrap();
    let (wire, o) = z.answer(&add.finish(), Transport::Udp);
    assert_eq!(o.rcode, ResponseCode::FormErr);
    assert_eq!(decode(wire).rcode, Rcode::FORMERR);
    b = MessageBuilder::new_vec();
    let _ = b.header_mut();
    // OPT as the query type.
    assert_eq!(
        z.answer(&query("cluster.local.", Rtype::OPT), Transport::Udp)
            .1
            .rcode,
        ResponseCode::FormErr
    );
}

#[test]
fn edns_is_echoed_capped_and_versioned() {
    let z = zone();
    let name = "svc1.testns.svc.cluster.local.";
    let r = decode(
        z.answer(
            &query_with(name, Rtype::A, Some((4096, 0, true))),
            Transport::Udp,
        )
        .0,
    );
    assert_eq!(r.opt, Some((1232, true)));
    let r = decode(
        z.answer(&query_with(name, Rtype::A, None), Transport::Udp)
            .0,
    );
    assert_eq!(r.opt, None);
    let (wire, o) = z.answer(
        &query_with(name, Rtype::A, Some((1232, 1, false))),
        Transport::Udp,
    );
    assert_eq!(o.rcode, ResponseCode::BadVers);
    let r = decode(wire);
    assert_eq!(r.opt_rcode, OptRcode::BADVERS);
    assert!(r.answers.is_empty());
}

#[test]
fn large_answers_truncate_over_udp_only() {
    let z = zone();
    let name = "big.testns.svc.cluster.local.";
    // 100 A records: ~1.6 kB with compression pointers... over 512 and over 1232.
    let (wire, o) = z.answer(&query_with(name, Rtype::A, None), Transport::Udp);
    assert!(o.truncated);
    let r = decode(wire);
    assert!(r.tc && r.answers.is_empty() && r.len <= 512, "{r:?}");
    let (wire, o) = z.answer(
        &query_with(name, Rtype::A, Some((4096, 0, false))),
        Transport::Udp,
    );
    let r = decode(wire);
    assert!(
        r.tc && o.truncated && r.len <= 1232 && r.opt.is_some(),
        "{r:?}"
    );
    let (wire, o) = z.answer(&query_with(name, Rtype::A, None), Transport::Tcp);
    assert!(!o.truncated);
    let r = decode(wire);
    assert!(!r.tc);
    assert_eq!(r.answers.len(), 100);
    // 30 records fit in 512 octets without EDNS.
    let r = ask(&z, "svc1.testns.svc.cluster.local.", Rtype::A);
    assert!(!r.tc);
}

#[test]
fn headless_names_and_srv() {
    let z = zone();
    let r = ask(&z, "10-2-0-1.big.testns.svc.cluster.local.", Rtype::A);
    assert_eq!(
        r.answers,
        vec!["10-2-0-1.big.testns.svc.cluster.local. 5 A 10.2.0.1"]
    );
    let r = ask(&z, "1.0.2.10.in-addr.arpa.", Rtype::PTR);
    assert_eq!(
        r.answers,
        vec!["1.0.2.10.in-addr.arpa. 5 PTR 10-2-0-1.big.testns.svc.cluster.local."]
    );
    let (wire, _) = z.answer(
        &query("_http._tcp.big.testns.svc.cluster.local.", Rtype::SRV),
        Transport::Tcp,
    );
    assert_eq!(decode(wire).answers.len(), 100);
}

#[test]
fn zone_file_lists_every_zone() {
    let z = zone();
    let text = z.zone_file(None);
    assert!(text.contains("$ORIGIN cluster.local.\n"));
    assert!(text.contains("$ORIGIN in-addr.arpa.\n"));
    assert!(text.contains("svc1.testns.svc.cluster.local.\t5\tIN\tA\t10.96.0.11\n"));
    assert!(
        text.contains("11.0.96.10.in-addr.arpa.\t5\tIN\tPTR\tsvc1.testns.svc.cluster.local.\n")
    );
    let only = z.zone_file(Some(ZoneId::InAddrArpa));
    assert!(!only.contains("$ORIGIN cluster.local."));
    // Same records, same serial.
    assert_eq!(zone().serial(), z.serial());
}

/// Random mutations of real queries: never a panic, and every response parses.
#[test]
fn mutated_queries_never_panic() {
    let z = zone();
    let seeds = [
        query("svc1.testns.svc.cluster.local.", Rtype::A),
        query("_http._tcp.big.testns.svc.cluster.local.", Rtype::SRV),
        query("10-1-2-3.testns.pod.cluster.local.", Rtype::A),
        query("ext-internal.testns.svc.cluster.local.", Rtype::ANY),
        query("11.0.96.10.in-addr.arpa.", Rtype::PTR),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for i in 0..50_000 {
        let mut q = seeds[i % seeds.len()].clone();
        for _ in 0..(next() % 4 + 1) {
            match next() % 3 {
                0 if !q.is_empty() => {
                    let at = (next() as usize) % q.len();
                    q[at] = next() as u8;
                }
                1 => q.truncate((next() as usize) % (q.len() + 1)),
                _ => q.push(next() as u8),
            }
        }
        let transport = if i % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let o = z.answer_into(&q, transport, &mut out);
        if o.action == Action::Reply {
            let msg = Message::from_octets(out.as_slice()).expect("response parses");
            assert!(msg.header().qr());
            assert_eq!(msg.header().id(), u16::from_be_bytes([q[0], q[1]]));
            for rec in msg.answer().unwrap() {
                rec.unwrap();
            }
            if transport == Transport::Udp {
                assert!(out.len() <= 1232);
            }
        }
    }
}
