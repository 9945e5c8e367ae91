//! End to end: the Ingress controller of `svcnet up`, driven with real curl (HTTP/1.1, h2c,
//! HTTP/2 and TLS with SNI): the Ingress conformance corpus
//! (`shared/conformance/ingress.yaml`) and the seed's Ingress examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Up, yaml_docs};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    std::env::var_os("SVCNET_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        })
}

/// One response as curl saw it.
#[derive(Debug)]
struct Seen {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Seen {
    fn pod(&self) -> Option<&str> {
        self.headers.get("x-svcnet-pod").map(String::as_str)
    }
}

/// Options of one request.
#[derive(Default)]
struct Req<'a> {
    https: bool,
    host: &'a str,
    path: &'a str,
    sni: Option<&'a str>,
    http2: bool,
    method: Option<&'a str>,
    headers: Vec<String>,
    body_bytes: Option<usize>,
    ca: Option<&'a Path>,
    insecure: bool,
}

/// Sends one request through the test's Ingress listeners (`127.77.0.N:8080/8443`).
fn send(n: u8, r: &Req<'_>) -> Seen {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "--max-time", "10", "-D", "-", "-o", "-"]);
    let url = if r.https {
        let sni = r.sni.unwrap_or_else(|| r.host.split(':').next().unwrap());
        cmd.arg("--connect-to")
            .arg(format!("{sni}:443:127.77.0.{n}:8443"));
        if let Some(ca) = r.ca {
            cmd.arg("--cacert").arg(ca);
        }
        if r.insecure {
            cmd.arg("-k");
        }
        if r.http2 {
            cmd.arg("--http2");
        } else {
            cmd.arg("--http1.1");
        }
        format!("https://{sni}{}", r.path)
    } else {
        if r.http2 {
            cmd.arg("--http2-prior-knowledge");
        }
        format!("http://127.77.0.{n}:8080{}", r.path)
    };
    cmd.arg("-H").arg(format!("Host: {}", r.host));
    for h in &r.headers {
        cmd.arg("-H").arg(h);
    }
    if let Some(m) = r.method {
        cmd.args(["-X", m]);
    }
    if let Some(b) = r.body_bytes {
        cmd.args(["--data-binary", &"x".repeat(b)]);
    }
    cmd.arg("--path-as-is").arg(url);
    let o = cmd
        .output()
        .expect("curl is installed (bash scripts/test installs it)");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no HTTP answer for {} {}: {}",
                r.host,
                r.path,
                String::from_utf8_lossy(&o.stderr)
            )
        });
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Seen {
        status,
        headers,
        body: body.to_string(),
    }
}

#[test]
fn ingress_corpus_through_up_with_curl() {
    const N: u8 = 6;
    let path = corpus_dir().join("ingress.yaml");
    let corpus: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (shared/ beside the repository?)", path.display())
        }))
        .unwrap();
    // Loopback mode: the corpus's pod network moves to 127.244/16 (its README says so).
    let cluster = corpus["cluster"]
        .as_str()
        .unwrap()
        .replace("10.244.", "127.244.");
    // Pod -> Service, through the corpus's EndpointSlices.
    let mut service_of: BTreeMap<String, (String, String)> = BTreeMap::new();
    for d in yaml_docs(&cluster) {
        if d["kind"] != "EndpointSlice" {
            continue;
        }
        let ns = d["metadata"]["namespace"].as_str().unwrap().to_string();
        let svc = d["metadata"]["labels"]["kubernetes.io/service-name"]
            .as_str()
            .unwrap()
            .to_string();
        for e in d["endpoints"].as_array().into_iter().flatten() {
            if let Some(pod) = e["targetRef"]["name"].as_str() {
                service_of.insert(format!("{ns}/{pod}"), (ns.clone(), svc.clone()));
            }
        }
    }
    let up = Up::start_with(N, &[("cluster.yaml", &cluster)], &[]);
    let ca = up.dir.with_extension("ca.pem");
    std::fs::write(&ca, corpus["tls_ca_pem"].as_str().unwrap()).unwrap();

    let (mut passed, mut failures) = (0, Vec::new());
    // Every case over HTTP/1.1 and again over HTTP/2 (h2c prior knowledge on the
    // cleartext listener, ALPN h2 on the TLS one): routing must not depend on the version.
    let cases = corpus["cases"].as_array().unwrap();
    for (case, h2) in cases.iter().flat_map(|c| [(c, false), (c, true)]) {
        let id = format!(
            "{} ({})",
            case["id"].as_str().unwrap(),
            if h2 { "HTTP/2" } else { "HTTP/1.1" }
        );
        if case["modes"]
            .as_array()
            .is_some_and(|m| !m.iter().any(|m| m == "standalone"))
        {
            continue;
        }
        let req = Req {
            https: case["scheme"] == "https",
            host: case["host"].as_str().unwrap(),
            path: case["path"].as_str().unwrap(),
            sni: case["sni"].as_str(),
            http2: h2
                || case["http_version"]
                    .as_str()
                    .is_some_and(|v| v.starts_with('2'))
                || case["http_version"].as_u64() == Some(2),
            method: case["method"].as_str(),
            body_bytes: case["body_bytes"].as_u64().map(|b| b as usize),
            ca: Some(&ca),
            insecure: case["tls_verify"] == false,
            ..Req::default()
        };
        let repeat = case["repeat"].as_u64().unwrap_or(1);
        let expect = &case["expect"];
        let mut pods = BTreeSet::new();
        let mut problems = Vec::new();
        for _ in 0..repeat {
            let seen = send(N, &req);
            if let Some(status) = expect["status"].as_u64()
                && u64::from(seen.status) != status
            {
                problems.push(format!(
                    "status {} (expected {status}): {}",
                    seen.status,
                    seen.body.trim()
                ));
                break;
            }
            if let Some(svc) = expect.get("backend_service").filter(|v| !v.is_null()) {
                let want = (
                    svc["namespace"].as_str().unwrap_or("default").to_string(),
                    svc["name"].as_str().unwrap().to_string(),
                );
                let got = seen.pod().and_then(|p| service_of.get(p));
                if got != Some(&want) {
                    problems.push(format!(
                        "answered by pod {:?} of {got:?}, expected Service {}/{}",
                        seen.pod(),
                        want.0,
                        want.1
                    ));
                    break;
                }
            }
            if let Some(pod) = expect["backend_pod"].as_str()
                && seen.pod().and_then(|p| p.split_once('/')).map(|(_, n)| n) != Some(pod)
            {
                problems.push(format!("answered by {:?}, expected pod {pod}", seen.pod()));
                break;
            }
            if let Some(loc) = expect["location"].as_str()
                && seen.headers.get("location").map(String::as_str) != Some(loc)
            {
                problems.push(format!(
                    "Location {:?}, expected {loc}",
                    seen.headers.get("location")
                ));
                break;
            }
            if let Some(p) = seen.pod() {
                pods.insert(p.to_string());
            }
        }
        if let Some(min) = expect["distinct_pods_min"].as_u64()
            && problems.is_empty()
            && (pods.len() as u64) < min
        {
            problems.push(format!(
                "{} distinct pods answered ({pods:?}), expected at least {min}",
                pods.len()
            ));
        }
        if problems.is_empty() {
            passed += 1;
        } else {
            failures.push(format!("{id}: {}", problems.join("; ")));
        }
    }
    eprintln!(
        "ingress corpus through svcnet up, each case over HTTP/1.1 and HTTP/2: {passed} passed, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        up.logs()
    );
}

fn start_example(n: u8, name: &str) -> Up {
    let files = common::example_files(name);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Up::start_with(n, &refs, &[])
}

/// The local CA's certificate, as `svcnet ca` prints it.
fn local_ca(up: &Up) -> PathBuf {
    let o = Command::new(env!("CARGO_BIN_EXE_svcnet"))
        .args(["ca", "--state-dir"])
        .arg(up.dir.with_extension("state"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "svcnet ca: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let path = up.dir.with_extension("local-ca.pem");
    std::fs::write(&path, &o.stdout).unwrap();
    path
}

#[test]
fn seed_ecommerce_ingress_routes_paths_and_redirects_to_tls() {
    const N: u8 = 7;
    let up = start_example(N, "ecommerce-ingress");
    let ca = local_ca(&up);
    // TLS with SNI, certificates from the local CA (cert-manager.io/cluster-issuer).
    for (host, path, deployment) in [
        ("api.ecommerce.com", "/users", "user-api"),
        ("api.ecommerce.com", "/products/42", "product-api"),
        ("api.ecommerce.com", "/orders", "order-api"),
        ("www.ecommerce.com", "/", "frontend"),
    ] {
        for http2 in [false, true] {
            let seen = send(
                N,
                &Req {
                    https: true,
                    host,
                    path,
                    http2,
                    ca: Some(&ca),
                    ..Req::default()
                },
            );
            assert_eq!(
                seen.status,
                200,
                "{host}{path} over TLS: {seen:?}\n{}",
                up.logs()
            );
            let pod = seen.pod().unwrap_or_default().to_string();
            assert!(
                pod.starts_with(&format!("default/{deployment}-")),
                "{host}{path} answered by {pod}, expected a pod of Deployment {deployment}"
            );
        }
    }
    // ssl-redirect: cleartext requests for a TLS host get 308 to https.
    let seen = send(
        N,
        &Req {
            host: "api.ecommerce.com",
            path: "/users?page=2",
            ..Req::default()
        },
    );
    assert_eq!(seen.status, 308, "{seen:?}");
    assert_eq!(
        seen.headers.get("location").map(String::as_str),
        Some("https://api.ecommerce.com/users?page=2")
    );
    // An unknown host: 404 from the default server.
    let seen = send(
        N,
        &Req {
            host: "nope.example.com",
            path: "/",
            ..Req::default()
        },
    );
    assert_eq!(seen.status, 404, "{seen:?}");
}

#[test]
fn seed_canary_takes_about_a_tenth() {
    const N: u8 = 8;
    let up = start_example(N, "advanced-ingress");
    let mut v2 = 0;
    let total = 200;
    for _ in 0..total {
        let seen = send(
            N,
            &Req {
                host: "api.company.com",
                path: "/",
                ..Req::default()
            },
        );
        assert_eq!(seen.status, 200, "{seen:?}\n{}", up.logs());
        if seen.pod().is_some_and(|p| p.contains("api-v2")) {
            v2 += 1;
        }
    }
    // canary-weight 10: binomial(200, 0.1) lies in 4..=40 with probability > 0.9999.
    assert!(
        (4..=40).contains(&v2),
        "{v2} of {total} requests reached the canary"
    );
}

#[test]
fn seed_external_auth_is_a_real_sub_request() {
    const N: u8 = 10;
    let up = start_example(N, "advanced-ingress");
    let app = || {
        send(
            N,
            &Req {
                host: "app.company.com",
                path: "/dashboard",
                ..Req::default()
            },
        )
    };
    // auth-url https://auth.company.com/oauth2/auth is a host this controller serves: the
    // sub-request goes to svcnet's own TLS listener, then to the oauth2-proxy pod (200).
    let seen = app();
    assert_eq!(seen.status, 200, "{seen:?}\n{}", up.logs());
    assert!(
        seen.pod().unwrap_or_default().starts_with("default/app-"),
        "{seen:?}"
    );
    // Take the auth service's only pod out of rotation: the sub-request gets 503 from
    // the controller itself, which ingress-nginx turns into 500 for the client.
    let st = up.state();
    let auth_pod = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .find(|n| n.starts_with("oauth2-proxy-"))
        .expect("an oauth2-proxy pod");
    let o = common::curl(&[
        "-sf",
        "-X",
        "POST",
        &format!(
            "http://{}/api/pods/default/{auth_pod}/ready?value=false",
            up.admin
        ),
    ]);
    assert!(o.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let seen = app();
        if seen.status == 500 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {seen:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
