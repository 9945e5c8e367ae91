//! The `svcnet` command as a user runs it: tables, formats, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn svcnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_svcnet"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run svcnet")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SHOP: &str = "tests/fixtures/shop";

#[test]
fn get_tables_look_like_kubectl() {
    let o = svcnet(&[
        "get",
        "svc,pods,endpoints,endpointslices,deploy,rs,sts",
        "-n",
        "shop",
        "-f",
        SHOP,
        "-o",
        "wide",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn get_all_namespaces_and_names() {
    let o = svcnet(&["get", "svc", "-A", "-f", SHOP]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
    let o = svcnet(&["get", "po", "-n", "shop", "-f", SHOP, "-o", "name"]);
    let names = stdout(&o);
    assert!(names.lines().all(|l| l.starts_with("pod/")), "{names}");
    assert!(names.contains("pod/db-0\npod/db-1\n"), "{names}");
}

#[test]
fn get_one_object_as_yaml_and_json() {
    let o = svcnet(&[
        "get", "service", "web", "-n", "shop", "-f", SHOP, "-o", "yaml",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
    let o = svcnet(&[
        "get", "svc", "front", "-n", "shop", "-f", SHOP, "-o", "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ip = v["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap();
    assert!(ip.starts_with("127.240."), "{ip}");
    assert!(v["spec"]["ports"][0]["nodePort"].as_i64().unwrap() >= 30000);
    let o = svcnet(&["get", "pods", "-n", "shop", "-f", SHOP, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["kind"], "List");
    for pod in v["items"].as_array().unwrap() {
        assert!(
            pod["status"]["podIP"]
                .as_str()
                .unwrap()
                .starts_with("127.244.")
        );
    }
}

#[test]
fn not_found_and_unknown_kinds() {
    let o = svcnet(&["get", "svc", "nope", "-n", "shop", "-f", SHOP]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Error from server (NotFound): services \"nope\" not found"),
        "{}",
        stderr(&o)
    );
    let o = svcnet(&["get", "deploy", "nope", "-n", "shop", "-f", SHOP]);
    assert!(
        stderr(&o).contains("deployments.apps \"nope\" not found"),
        "{}",
        stderr(&o)
    );
    let o = svcnet(&["get", "widgets", "-f", SHOP]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("resource type \"widgets\""),
        "{}",
        stderr(&o)
    );
    let o = svcnet(&["get", "svc", "-f", SHOP, "-o", "toml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn stdin_is_a_source() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_svcnet"))
        .args(["get", "svc", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: v1\nkind: Service\nmetadata: {name: from-stdin}\nspec: {ports: [{port: 53, protocol: UDP}]}\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("from-stdin"), "{}", stdout(&o));
    assert!(stdout(&o).contains("53/UDP"), "{}", stdout(&o));
}

#[test]
fn check_exit_codes() {
    // Clean (warnings and notices only): 0.
    let o = svcnet(&["check", "-f", SHOP]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    insta::assert_snapshot!(stdout(&o));
    // A lint error (an Ingress backend that does not exist): 1.
    let dir = tempdir("lint");
    std::fs::write(
        dir.join("ing.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec:\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: ghost, port: {number: 80}}}}\n",
    )
    .unwrap();
    let o = svcnet(&["check", "-f", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("ing.yaml:8: Ingress default/i: spec.rules[0].http.paths[0].backend.service: Service default/ghost does not exist"), "{}", stdout(&o));
    // Load errors: 2, and all of them are reported.
    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: BAD}\nspec: {ports: [{port: 0}]}\n",
    )
    .unwrap();
    let o = svcnet(&["check", "-f", dir.to_str().unwrap(), "-o", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["loaded"], false);
    assert_eq!(v["errors"], 2);
    assert_eq!(v["findings"][0]["source"]["line"], 3);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("svcnet-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
