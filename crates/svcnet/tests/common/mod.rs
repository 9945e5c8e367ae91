//! The harness shared by the end-to-end tests: a running `svcnet up` and real clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `svcnet up`, killed (SIGTERM) on drop.
pub struct Up {
    child: Option<Child>,
    /// The admin address.
    pub admin: String,
    /// The manifest directory (removed on drop).
    pub dir: PathBuf,
}

impl Up {
    /// Starts `svcnet up -f DIR` with ranges derived from `n` (1..=50).
    pub fn start(n: u8, manifests: &str) -> Up {
        Up::start_with(n, &[("app.yaml", manifests)], &[])
    }

    /// Starts `svcnet up -f DIR` on these files, with extra flags (later flags win).
    pub fn start_with(n: u8, files: &[(&str, &str)], extra: &[&str]) -> Up {
        let dir = std::env::temp_dir().join(format!("svcnet-up-{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let admin = format!("127.77.0.{n}:9090");
        let child = Command::new(env!("CARGO_BIN_EXE_svcnet"))
            .args(["up", "-f"])
            .arg(&dir)
            .args([
                "--admin-addr",
                &admin,
                "--service-cidr",
                &format!("127.{}.0.0/16", 100 + n),
                "--pod-cidr",
                &format!("127.{}.0.0/16", 160 + n),
                "--node-cidr",
                &format!("127.78.{n}.0/24"),
                "--load-balancer-pool",
                &format!("127.79.{n}.0/24"),
                "--node-port-range",
                &format!(
                    "{}-{}",
                    31000 + u16::from(n) * 20,
                    31019 + u16::from(n) * 20
                ),
                "--nodes",
                "2",
                "--drain-timeout",
                "1s",
                "--dns-addr",
                &format!("127.77.0.{n}:10053"),
                "--dns-upstream",
                "none",
                "--http-addr",
                &format!("127.77.0.{n}:8080"),
                "--https-addr",
                &format!("127.77.0.{n}:8443"),
                "--state-dir",
            ])
            .arg(dir.with_extension("state"))
            .args(extra)
            .env("SVCNET_LOG", "info")
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("stdout")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr")).unwrap(),
            ))
            .spawn()
            .expect("start svcnet up");
        let up = Up {
            child: Some(child),
            admin,
            dir,
        };
        up.wait_ready();
        up
    }

    pub fn logs(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default(),
            std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
        )
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let o = curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{}/readyz", self.admin),
            ]);
            if stdout(&o) == "200" {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("svcnet up did not become ready\n{}", self.logs());
    }

    pub fn state(&self) -> Value {
        let o = curl(&["-sf", &format!("http://{}/api/state", self.admin)]);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("state: {e}\n{}", self.logs()))
    }

    pub fn service(&self, ns: &str, name: &str) -> Value {
        self.state()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["metadata"]["namespace"] == ns && s["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no service {ns}/{name}\n{}", self.logs()))
    }

    pub fn write(&self, manifests: &str) {
        // Write then rename, as editors do.
        let tmp = self.dir.join(".app.yaml.tmp");
        std::fs::write(&tmp, manifests).unwrap();
        std::fs::rename(&tmp, self.dir.join("app.yaml")).unwrap();
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "svcnet up did not stop\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(self.dir.with_extension("state"));
    }
}

pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--max-time", "3"])
        .args(args)
        .output()
        .expect("curl is installed (bash scripts/test installs it)")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Multi-document YAML as JSON values, with YAML 1.2 booleans as svcnet reads manifests
/// (namespace `y` is a string).
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple_with_options::<Value>(
        text,
        serde_saphyr::options! { strict_booleans: true },
    )
    .unwrap()
    .into_iter()
    .filter(|v| !v.is_null())
    .collect()
}

/// The YAML files of `examples/NAME`, sorted: (file name, text).
pub fn example_files(name: &str) -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}
