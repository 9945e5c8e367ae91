//! Heap allocations per query on the zone path: with a reused output buffer, answering
//! allocates nothing (the `domain` crate parses in place and compresses names from a
//! table on the stack).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::base::iana::{Class, Rtype};
use domain::base::{MessageBuilder, Name};
use svcnet_dns::{DnsConfig, DnsZone, PodsMode, Transport, Upstream};
use svcnet_model::{AddressPlan, Cluster};

fn query(qname: &str, qtype: Rtype) -> Vec<u8> {
    let mut b = MessageBuilder::new_vec();
    b.header_mut().set_id(1);
    let mut q = b.question();
    q.push((
        Name::<Vec<u8>>::vec_from_str(qname).unwrap(),
        qtype,
        Class::IN,
    ))
    .unwrap();
    let mut add = q.additional();
    add.opt(|o| {
        o.set_udp_payload_size(1232);
        Ok(())
    })
    .unwrap();
    add.finish()
}

#[test]
fn answering_from_the_zone_does_not_allocate() {
    let text = std::fs::read_to_string(
        std::env::var_os("SVCNET_CONFORMANCE")
            .map(|d| std::path::PathBuf::from(d).join("dns.yaml"))
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/conformance/dns.yaml")
            }),
    )
    .unwrap();
    // The corpus's cluster text is the `cluster: |` block; load it by hand to keep this
    // binary free of a YAML dependency on the measured path.
    let start = text.find("cluster: |\n").unwrap() + "cluster: |\n".len();
    let end = text.find("\ncases:").unwrap();
    let cluster_text: String = text[start..end]
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let (cluster, diags) = Cluster::from_yaml("dns.yaml", &cluster_text, &AddressPlan::default());
    let cluster = cluster.unwrap_or_else(|| panic!("{diags:?}"));
    let zone = DnsZone::build(
        &cluster,
        &DnsConfig {
            pods: PodsMode::Insecure,
            upstream: Upstream::None,
            ..DnsConfig::default()
        },
    );
    let queries = [
        query("svc1.testns.svc.cluster.local.", Rtype::A),
        query("SvC1.TestNS.SVC.Cluster.Local.", Rtype::A),
        query("web.testns.svc.cluster.local.", Rtype::AAAA),
        query("_http._tcp.web.testns.svc.cluster.local.", Rtype::SRV),
        query("ext-internal.testns.svc.cluster.local.", Rtype::A),
        query("nope.testns.svc.cluster.local.", Rtype::A),
        query("testns.svc.cluster.local.", Rtype::A),
        query("10-1-2-3.testns.pod.cluster.local.", Rtype::A),
        query("1.0.96.10.in-addr.arpa.", Rtype::PTR),
        query("dns-version.cluster.local.", Rtype::TXT),
        query("www.example.com.", Rtype::A),
    ];
    let mut out = Vec::with_capacity(1232);
    // Warm up: the buffer reaches its working size.
    for q in &queries {
        zone.answer_into(q, Transport::Udp, &mut out);
    }
    let rounds = 1000;
    let info = allocation_counter::measure(|| {
        for _ in 0..rounds {
            for q in &queries {
                zone.answer_into(q, Transport::Udp, &mut out);
            }
        }
    });
    let allocations = info.count_total;
    let per_query = allocations as f64 / (rounds * queries.len()) as f64;
    println!("allocations per query: {per_query}");
    assert_eq!(allocations, 0, "{per_query} allocations per query");
}
