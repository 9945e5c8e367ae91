//! End to end: `svcnet up` on loopback, driven with real curl and nc.
//!
//! Each test uses its own address ranges (service, pod, node, load-balancer CIDRs, node
//! ports, admin address), so tests can run in parallel without sharing a socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Up, curl, stdout};

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `dig +short` against the test's DNS server.
fn dig(n: u8, args: &[&str]) -> String {
    let o = Command::new("dig")
        .args([
            &format!("@127.77.0.{n}"),
            "-p",
            "10053",
            "+short",
            "+time=2",
            "+tries=1",
        ])
        .args(args)
        .output()
        .expect("dig is installed (bash scripts/test installs it)");
    stdout(&o)
}

/// The pod that answered (`x-svcnet-pod` header) for `n` requests to `url`.
fn pods_behind(url: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let o = curl(&["-s", "-D", "-", "-o", "/dev/null", url]);
            let head = stdout(&o);
            head.lines()
                .find_map(|l| l.strip_prefix("x-svcnet-pod: "))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| format!("<no answer: {head}>"))
        })
        .collect()
}

fn ip_port(svc: &Value) -> (String, u64) {
    (
        svc["spec"]["clusterIP"].as_str().unwrap().to_string(),
        svc["spec"]["ports"][0]["port"].as_u64().unwrap(),
    )
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - {name: http, containerPort: 8080}
        - {name: dns, containerPort: 5353, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 8081, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8082, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: shop}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{name: http, port: 8083, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: udp, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: dns, port: 5353, protocol: UDP, targetPort: dns}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: shop}
spec:
  selector: {app: nothing}
  ports: [{port: 8084}]
"#;

#[test]
fn services_balance_across_ready_pods() {
    let up = Up::start(1, APP);
    let (ip, port) = ip_port(&up.service("shop", "web"));
    let seen: BTreeSet<String> = pods_behind(&format!("http://{ip}:{port}/"), 30)
        .into_iter()
        .collect();
    assert_eq!(
        seen.len(),
        3,
        "traffic spreads over all 3 pods: {seen:?}\n{}",
        up.logs()
    );

    // Cluster DNS answers with the same ClusterIP, over UDP and TCP.
    assert_eq!(dig(1, &["web.shop.svc.cluster.local"]), ip);
    assert_eq!(dig(1, &["+tcp", "WEB.Shop.svc.cluster.local"]), ip);
    assert_eq!(
        dig(1, &["_http._tcp.web.shop.svc.cluster.local", "SRV"]),
        format!("0 100 {port} web.shop.svc.cluster.local.")
    );

    // NodePort on 127.0.0.1 and on a node address; LoadBalancer IP.
    let np = up.service("shop", "web-np");
    let node_port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    for host in ["127.0.0.1", "127.78.1.2"] {
        let who = pods_behind(&format!("http://{host}:{node_port}/"), 3);
        assert!(
            who.iter().all(|w| w.starts_with("shop/web-")),
            "{host}: {who:?}\n{}",
            up.logs()
        );
    }
    let lb = up.service("shop", "web-lb");
    let lb_ip = lb["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let who = pods_behind(&format!("http://{lb_ip}:8082/"), 3);
    assert!(who.iter().all(|w| w.starts_with("shop/web-")), "{who:?}");

    // The pod's JSON names the pod and sees the client's own address.
    let o = curl(&["-s", &format!("http://{ip}:{port}/hello")]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["namespace"], "shop");
    assert_eq!(v["path"], "/hello");
    assert_eq!(
        v["clientIP"].as_str().unwrap().split(':').next(),
        Some("127.0.0.1")
    );

    // Session affinity sticks.
    let (sip, sport) = ip_port(&up.service("shop", "sticky"));
    let sticky: BTreeSet<String> = pods_behind(&format!("http://{sip}:{sport}/"), 10)
        .into_iter()
        .collect();
    assert_eq!(sticky.len(), 1, "{sticky:?}");

    // UDP: `hostname` gets the pod name.
    let (uip, uport) = ip_port(&up.service("shop", "udp"));
    let mut nc = Command::new("nc")
        .args(["-u", "-w1", &uip, &uport.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc is installed");
    nc.stdin.take().unwrap().write_all(b"hostname").unwrap();
    let out = nc.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("web-"),
        "{:?}",
        out
    );

    // A Service without endpoints refuses at once.
    let (eip, eport) = ip_port(&up.service("shop", "empty"));
    let t = Instant::now();
    let o = curl(&["-s", &format!("http://{eip}:{eport}/")]);
    assert!(!o.status.success());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "refused in {:?}",
        t.elapsed()
    );

    // Metrics are Prometheus text.
    let o = curl(&["-s", &format!("http://{}/metrics", up.admin)]);
    let m = stdout(&o);
    assert!(m.contains("svcnet_reloads_total"), "{m}");
    assert!(m.contains("# EOF"), "{m}");

    assert!(up.stop().success());
}

#[test]
fn not_ready_pods_leave_rotation_within_a_second() {
    let up = Up::start(2, APP);
    let (ip, port) = ip_port(&up.service("shop", "web"));
    let url = format!("http://{ip}:{port}/");
    let victim = pods_behind(&url, 1).remove(0);
    let (ns, name) = victim.split_once('/').unwrap();
    let o = curl(&[
        "-s",
        "-X",
        "POST",
        &format!("http://{}/api/pods/{ns}/{name}/ready?value=false", up.admin),
    ]);
    assert!(stdout(&o).contains("\"ready\": false"), "{}", stdout(&o));
    let t = Instant::now();
    // Within 1 s the victim gets no new connection.
    std::thread::sleep(Duration::from_millis(200));
    let after = pods_behind(&url, 20);
    assert!(
        !after.contains(&victim),
        "{victim} still serving: {after:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // Unknown pods are 404.
    let o = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        &format!("http://{}/api/pods/shop/nope/ready?value=false", up.admin),
    ]);
    assert_eq!(stdout(&o), "404");
    // Back to its probes: it serves again.
    curl(&[
        "-s",
        "-X",
        "POST",
        &format!("http://{}/api/pods/{ns}/{name}/ready?value=auto", up.admin),
    ]);
    std::thread::sleep(Duration::from_millis(200));
    let back: BTreeSet<String> = pods_behind(&url, 30).into_iter().collect();
    assert!(back.contains(&victim), "{back:?}");
}

#[test]
fn manifest_changes_are_live_and_bad_ones_keep_the_old_state() {
    let up = Up::start(3, APP);
    let extra = "---\napiVersion: v1\nkind: Service\nmetadata: {name: added, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 8090, targetPort: 8080}]\n";
    let t = Instant::now();
    up.write(&format!("{APP}{extra}"));
    let deadline = t + Duration::from_secs(5);
    let added = loop {
        let st = up.state();
        if let Some(s) = st["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["metadata"]["name"] == "added")
        {
            break s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the new Service never appeared\n{}",
            up.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let (ip, port) = ip_port(&added);
    // DNS follows the change too, with no stale negative answer.
    assert_eq!(dig(3, &["added.shop.svc.cluster.local"]), ip);
    let who = pods_behind(&format!("http://{ip}:{port}/"), 2);
    assert!(
        who.iter().all(|w| w.starts_with("shop/web-")),
        "{who:?}\n{}",
        up.logs()
    );
    eprintln!("new Service reachable {:?} after the write", t.elapsed());

    // Unchanged services kept their addresses.
    let before = up.service("shop", "web");
    // A broken manifest: reported, and the old state keeps serving.
    up.write(&format!("{APP}{extra}---\napiVersion: v1\nkind: Service\nmetadata: {{name: Broken}}\nspec: {{ports: [{{port: 0}}]}}\n"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let errors = loop {
        let o = curl(&["-s", &format!("http://{}/api/errors", up.admin)]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        if v["accepted"] == false {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the bad change was not reported\n{}",
            up.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = errors["diagnostics"].to_string();
    assert!(
        text.contains("app.yaml:") && text.contains("Service default/Broken"),
        "{text}"
    );
    let (wip, wport) = ip_port(&before);
    let who = pods_behind(&format!("http://{wip}:{wport}/"), 2);
    assert!(who.iter().all(|w| w.starts_with("shop/web-")), "{who:?}");
    assert_eq!(
        up.service("shop", "web")["spec"]["clusterIP"],
        before["spec"]["clusterIP"]
    );
}

const DNS_APP: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: pg, image: postgres, ports: [{name: pg, containerPort: 15432}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: many, namespace: shop}
spec:
  clusterIP: None
  selector: {app: many}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: many, namespace: shop}
spec:
  replicas: 40
  selector: {matchLabels: {app: many}}
  template:
    metadata: {labels: {app: many}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: many}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: shop}
spec:
  type: ExternalName
  externalName: web.shop.svc.cluster.local
"#;

/// `dig` with the header, to read the status and flags.
fn dig_full(n: u8, args: &[&str]) -> String {
    let o = Command::new("dig")
        .args([
            &format!("@127.77.0.{n}"),
            "-p",
            "10053",
            "+time=2",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
            "+authority",
        ])
        .args(args)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cluster_dns_through_up_with_dig() {
    let up = Up::start(4, DNS_APP);
    // Headless: every ready pod, and a name per StatefulSet pod.
    let pods = up.state()["pods"].as_array().unwrap().clone();
    let ip_of = |name: &str| {
        pods.iter()
            .find(|p| p["metadata"]["name"] == name)
            .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
            .unwrap()
    };
    let mut db: Vec<String> = dig(4, &["db.shop.svc.cluster.local"])
        .lines()
        .map(str::to_string)
        .collect();
    db.sort();
    let mut want = vec![ip_of("db-0"), ip_of("db-1")];
    want.sort();
    assert_eq!(db, want);
    assert_eq!(dig(4, &["db-1.db.shop.svc.cluster.local"]), ip_of("db-1"));
    assert!(
        dig(4, &["_pg._tcp.db.shop.svc.cluster.local", "SRV"])
            .contains("db-0.db.shop.svc.cluster.local.")
    );
    // PTR of a Service IP and of a pod IP.
    let (web_ip, _) = ip_port(&up.service("shop", "web"));
    assert_eq!(dig(4, &["-x", &web_ip]), "web.shop.svc.cluster.local.");
    assert_eq!(
        dig(4, &["-x", &ip_of("db-0")]),
        "db-0.db.shop.svc.cluster.local."
    );
    // ExternalName: a CNAME, chased inside the zone.
    let alias = dig(4, &["alias.shop.svc.cluster.local"]);
    assert_eq!(
        alias.lines().collect::<Vec<_>>(),
        ["web.shop.svc.cluster.local.", web_ip.as_str()]
    );
    // NXDOMAIN vs NODATA, each with the SOA, authoritative.
    let nx = dig_full(4, &["nope.shop.svc.cluster.local"]);
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains(" aa") && nx.contains("SOA"),
        "{nx}"
    );
    let nodata = dig_full(4, &["web.shop.svc.cluster.local", "AAAA"]);
    assert!(
        nodata.contains("status: NOERROR")
            && nodata.contains("ANSWER: 0")
            && nodata.contains("SOA"),
        "{nodata}"
    );
    let ent = dig_full(4, &["shop.svc.cluster.local"]);
    assert!(
        ent.contains("status: NOERROR"),
        "empty non-terminal is NODATA: {ent}"
    );
    // 40 endpoints do not fit 512 bytes: TC over UDP, all of them over TCP.
    let udp = dig_full(4, &["+noedns", "+ignore", "many.shop.svc.cluster.local"]);
    assert!(udp.contains(" tc"), "{udp}");
    assert_eq!(
        dig(4, &["+noedns", "many.shop.svc.cluster.local"])
            .lines()
            .count(),
        40
    );
    assert_eq!(
        dig(4, &["+tcp", "many.shop.svc.cluster.local"])
            .lines()
            .count(),
        40
    );
}
