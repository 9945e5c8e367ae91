//! The server over real sockets with real `dig`, on loopback only: UDP and TCP, NXDOMAIN
//! with SOA, truncation and dig's retry over TCP, a live zone swap, forwarding to an
//! upstream (another svcnet DNS server on loopback) with its cache, and metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use prometheus_client::registry::Registry;
use svcnet_dns::{DnsConfig, DnsServer, DnsZone, PodsMode, Upstream};
use svcnet_model::{AddressPlan, Cluster};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: prod}
spec:
  clusterIP: 10.96.7.7
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: many, namespace: prod}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
"#;

/// ExternalName Services pointing at names the upstream serves.
const EXTERNALS: &str = "---\napiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: prod}\nspec: {type: ExternalName, externalName: api.prod.svc.example.test}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ext-missing, namespace: prod}\nspec: {type: ExternalName, externalName: nope.prod.svc.example.test}\n";

fn cluster(extra: &str, domain: &str) -> Cluster {
    let mut text = format!(
        "{CLUSTER}{extra}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: many-1\n  namespace: prod\n  labels: {{kubernetes.io/service-name: many}}\naddressType: IPv4\nports: [{{name: http, port: 80, protocol: TCP}}]\nendpoints:\n"
    );
    for i in 1..=60 {
        text.push_str(&format!("- addresses: [10.3.0.{i}]\n"));
    }
    let plan = AddressPlan {
        cluster_domain: domain.to_string(),
        ..AddressPlan::default()
    };
    let (c, diags) = Cluster::from_yaml("server-test.yaml", &text, &plan);
    c.unwrap_or_else(|| panic!("{diags:?}"))
}

/// A loopback address of its own for each test, so parallel tests and other processes
/// never meet (the port is the OS's choice).
fn loopback(n: u8) -> SocketAddr {
    let pid = std::process::id();
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 53, (pid % 250) as u8 + 1, n)),
        0,
    )
}

async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("dig runs (scripts/test installs dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(upstream: Upstream) -> DnsConfig {
    DnsConfig {
        ttl: 5,
        pods: PodsMode::Verified,
        upstream,
        ..DnsConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_over_udp_and_tcp() {
    let cfg = config(Upstream::None);
    let mut registry = Registry::default();
    let server = DnsServer::bind(
        loopback(1),
        DnsZone::build(&cluster("", "cluster.local"), &cfg),
        &cfg,
        &mut registry,
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    let test = async {
        // UDP and TCP, with the case of the question echoed.
        let udp = dig(addr, &["+notcp", "Api.Prod.svc.cluster.local", "A"]).await;
        assert!(udp.contains("status: NOERROR"), "{udp}");
        assert!(udp.contains("flags: qr aa rd;"), "{udp}");
        assert!(
            udp.contains("Api.Prod.svc.cluster.local. 5\tIN\tA\t10.96.7.7"),
            "{udp}"
        );
        let tcp = dig(addr, &["+tcp", "api.prod.svc.cluster.local", "A"]).await;
        assert!(
            tcp.contains("api.prod.svc.cluster.local. 5\tIN\tA\t10.96.7.7"),
            "{tcp}"
        );
        let srv = dig(
            addr,
            &["+short", "_http._tcp.api.prod.svc.cluster.local", "SRV"],
        )
        .await;
        assert_eq!(srv.trim(), "0 100 80 api.prod.svc.cluster.local.");
        let ptr = dig(addr, &["+short", "-x", "10.96.7.7"]).await;
        assert_eq!(ptr.trim(), "api.prod.svc.cluster.local.");

        // NXDOMAIN and NODATA carry the SOA.
        let nx = dig(addr, &["nope.prod.svc.cluster.local", "A"]).await;
        assert!(nx.contains("status: NXDOMAIN"), "{nx}");
        assert!(nx.contains("AUTHORITY: 1"), "{nx}");
        assert!(
            nx.contains("cluster.local.\t\t5\tIN\tSOA\tns.dns.cluster.local."),
            "{nx}"
        );
        let nodata = dig(addr, &["prod.svc.cluster.local", "A"]).await;
        assert!(nodata.contains("status: NOERROR"), "{nodata}");
        assert!(nodata.contains("ANSWER: 0, AUTHORITY: 1"), "{nodata}");
        let refused = dig(addr, &["www.example.com", "A"]).await;
        assert!(refused.contains("status: REFUSED"), "{refused}");
        let axfr = dig(addr, &["cluster.local", "AXFR"]).await;
        assert!(axfr.contains("Transfer failed"), "{axfr}");

        // 60 A records do not fit in 512 octets: TC over UDP...
        let tc = dig(
            addr,
            &["+noedns", "+ignore", "many.prod.svc.cluster.local", "A"],
        )
        .await;
        assert!(tc.contains("flags: qr aa tc rd;"), "{tc}");
        assert!(tc.contains("ANSWER: 0,"), "{tc}");
        // ...and dig retries over TCP by itself and gets them all.
        let full = dig(addr, &["+noedns", "many.prod.svc.cluster.local", "A"]).await;
        assert!(full.contains("Truncated, retrying in TCP mode."), "{full}");
        assert!(full.contains("ANSWER: 60,"), "{full}");
        assert!(full.contains("(TCP)"), "{full}");

        // A live update: the new Service answers right after publish.
        let extra = "---\napiVersion: v1\nkind: Service\nmetadata: {name: new, namespace: prod}\nspec:\n  clusterIP: 10.96.8.8\n  ports: [{port: 80}]\n";
        let before = dig(addr, &["+short", "new.prod.svc.cluster.local", "A"]).await;
        assert_eq!(before.trim(), "");
        server.publish(DnsZone::build(&cluster(extra, "cluster.local"), &cfg));
        let after = dig(addr, &["+short", "new.prod.svc.cluster.local", "A"]).await;
        assert_eq!(after.trim(), "10.96.8.8");

        // Metrics: queries by type and rcode, truncations, latency.
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "svcnet_dns_queries_total{transport=\"udp\",qtype=\"A\",rcode=\"NXDOMAIN\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "svcnet_dns_queries_total{transport=\"tcp\",qtype=\"A\",rcode=\"NOERROR\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "svcnet_dns_queries_total{transport=\"tcp\",qtype=\"AXFR\",rcode=\"REFUSED\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("svcnet_dns_truncated_total 2"), "{text}");
        assert!(
            text.contains("svcnet_dns_query_duration_seconds_count{source=\"zone\"}"),
            "{text}"
        );
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("dig test finishes in time");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_outside_names_and_caches() {
    // The "upstream" is another svcnet DNS server, authoritative for example.test.
    let up_cfg = config(Upstream::None);
    let mut up_registry = Registry::default();
    let upstream = DnsServer::bind(
        loopback(2),
        DnsZone::build(&cluster("", "example.test"), &up_cfg),
        &up_cfg,
        &mut up_registry,
    )
    .await
    .unwrap();
    let cfg = config(Upstream::Servers(vec![upstream.local_addr()]));
    let mut registry = Registry::default();
    let server = DnsServer::bind(
        loopback(3),
        DnsZone::build(&cluster(EXTERNALS, "cluster.local"), &cfg),
        &cfg,
        &mut registry,
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    let test = async {
        let first = dig(addr, &["API.prod.svc.example.test", "A"]).await;
        assert!(first.contains("status: NOERROR"), "{first}");
        assert!(first.contains("flags: qr aa rd ra;"), "{first}");
        assert!(
            first.contains("API.prod.svc.example.test. 5\tIN\tA\t10.96.7.7"),
            "{first}"
        );
        let second = dig(addr, &["api.prod.svc.example.test", "A"]).await;
        assert!(
            second.contains("api.prod.svc.example.test. 5\tIN\tA\t10.96.7.7"),
            "{second}"
        );
        // A denial is forwarded and cached too.
        let nx = dig(addr, &["nope.prod.svc.example.test", "A"]).await;
        assert!(nx.contains("status: NXDOMAIN"), "{nx}");
        let nx = dig(addr, &["nope.prod.svc.example.test", "A"]).await;
        assert!(nx.contains("status: NXDOMAIN"), "{nx}");
        // Over TCP, and truncation passed on over UDP.
        let tcp = dig(addr, &["+tcp", "+short", "api.prod.svc.example.test", "A"]).await;
        assert_eq!(tcp.trim(), "10.96.7.7");
        let full = dig(addr, &["+noedns", "many.prod.svc.example.test", "A"]).await;
        assert!(full.contains("ANSWER: 60,"), "{full}");
        // Cluster names are still answered here, authoritatively.
        let local = dig(addr, &["+short", "api.prod.svc.cluster.local", "A"]).await;
        assert_eq!(local.trim(), "10.96.7.7");

        // ExternalName: the CNAME, then the target's records from upstream.
        let ext = dig(addr, &["ext.prod.svc.cluster.local", "A"]).await;
        assert!(ext.contains("status: NOERROR"), "{ext}");
        assert!(
            ext.contains("ext.prod.svc.cluster.local. 5\tIN\tCNAME\tapi.prod.svc.example.test."),
            "{ext}"
        );
        assert!(
            ext.contains("api.prod.svc.example.test. 5\tIN\tA\t10.96.7.7"),
            "{ext}"
        );
        let ext = dig(addr, &["+tcp", "ext.prod.svc.cluster.local", "A"]).await;
        assert!(ext.contains("ANSWER: 2,"), "{ext}");
        let missing = dig(addr, &["ext-missing.prod.svc.cluster.local", "A"]).await;
        assert!(missing.contains("status: NXDOMAIN"), "{missing}");
        assert!(missing.contains("ANSWER: 1, AUTHORITY: 1"), "{missing}");

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("svcnet_dns_upstream_cache_hits_total 7"),
            "{text}"
        );
        assert!(
            text.contains("svcnet_dns_upstream_failures_total 0"),
            "{text}"
        );
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("forwarding test finishes in time");

    // The upstream goes away: SERVFAIL, quickly, not a hang.
    upstream.shutdown().await;
    let fail = tokio::time::timeout(
        Duration::from_secs(20),
        dig(addr, &["+time=5", "other.prod.svc.example.test", "A"]),
    )
    .await
    .unwrap();
    assert!(fail.contains("status: SERVFAIL"), "{fail}");
    // The chase fails: the CNAME alone (CoreDNS would drop it).
    let ext = dig(addr, &["+time=5", "ext.prod.svc.cluster.local", "AAAA"]).await;
    assert!(ext.contains("status: NOERROR"), "{ext}");
    assert!(ext.contains("ANSWER: 1,"), "{ext}");
    assert!(ext.contains("\tCNAME\tapi.prod.svc.example.test."), "{ext}");
    server.shutdown().await;
}
