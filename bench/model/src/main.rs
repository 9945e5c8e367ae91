//! Benchmark of svcnet's manifest loading: generates 10,000 Services and 50,000 pods worth of
//! manifests, then measures reading, validating and deriving them, in-process (per phase) and
//! end to end through the released `svcnet check` binary, with peak memory of both.
//!
//! It measures; it does not judge beyond comparing with the targets (1 s, 500 MB).
//! There is no external peer that loads Kubernetes manifests offline, so the ratios it
//! reports are to those targets, not to another program.

mod generate;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The allocator svcnet itself uses (crates/svcnet/src/main.rs), so that the figures are
/// svcnet's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use svcnet_model::{AddressPlan, Cluster, lint, validate};

/// Load-and-derive benchmark for svcnet-model.
#[derive(Parser, Debug)]
#[command(name = "svcnet-bench-model")]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    #[command(flatten)]
    size: SizeArgs,
    /// Timed in-process runs (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Where to write manifests; a fresh temporary directory by default.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the generated manifests.
    #[arg(long)]
    keep: bool,
    /// The svcnet binary to time end to end (default: `svcnet` beside this binary).
    #[arg(long)]
    svcnet: Option<PathBuf>,
    /// Where to write the results in Markdown (nothing is written when absent).
    #[arg(long)]
    results: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
struct SizeArgs {
    /// Services to generate (one Deployment or StatefulSet behind each).
    #[arg(long, default_value_t = 10_000, global = true)]
    services: usize,
    /// Namespaces to spread them over.
    #[arg(long, default_value_t = 50, global = true)]
    namespaces: usize,
    /// Replicas per workload.
    #[arg(long, default_value_t = 5, global = true)]
    replicas: usize,
    /// Nodes of the address plan (each holds at most 254 pods).
    #[arg(long, default_value_t = 250, global = true)]
    nodes: u32,
    /// Every N-th namespace writes its Services as a JSON `kind: List` (0: YAML only).
    #[arg(long, default_value_t = 10, global = true)]
    json_every: usize,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Only write the manifests into DIR (for profiling with callgrind or perf).
    Generate {
        /// The directory to write into (created).
        dir: PathBuf,
    },
    /// Load DIR once and print one JSON line: phase times and this process's peak memory.
    Once {
        /// The directory to load.
        dir: PathBuf,
    },
}

/// Wall time of each phase of one load.
#[derive(Clone, Copy, Debug, Default)]
struct Phases {
    read: Duration,
    build: Duration,
    lint: Duration,
    drop: Duration,
    /// Peak resident memory (VmHWM, kB) after reading, after deriving, after linting.
    peak_kb: [u64; 3],
}

impl Phases {
    /// What the issue asks for: read, parse, validate, derive.
    fn load(&self) -> Duration {
        self.read + self.build
    }

    /// Everything `svcnet check` does in-process.
    fn all(&self) -> Duration {
        self.read + self.build + self.lint + self.drop
    }
}

/// Object counts of one load.
#[derive(Clone, Debug, Default)]
struct Counts {
    raw_objects: usize,
    kinds: Vec<(String, usize)>,
    warnings: usize,
    lint_findings: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let plan = AddressPlan {
        nodes: cli.size.nodes,
        ..Default::default()
    };
    match &cli.command {
        Some(Mode::Generate { dir }) => {
            std::fs::create_dir_all(dir)?;
            let w = generate::write(dir, &size(&cli.size))?;
            println!(
                "wrote {} files, {} objects, {:.1} MB into {}",
                w.files,
                w.objects,
                mb(w.bytes),
                dir.display()
            );
            Ok(())
        }
        Some(Mode::Once { dir }) => {
            let (phases, counts) = load_once(dir, &plan)?;
            let doc = json!({
                "read_s": phases.read.as_secs_f64(),
                "build_s": phases.build.as_secs_f64(),
                "lint_s": phases.lint.as_secs_f64(),
                "drop_s": phases.drop.as_secs_f64(),
                "raw_objects": counts.raw_objects,
                "peak_rss_kb": proc_status_kb("VmHWM:")?,
                "peak_rss_after_read_kb": phases.peak_kb[0],
                "peak_rss_after_derive_kb": phases.peak_kb[1],
                "peak_rss_after_lint_kb": phases.peak_kb[2],
            });
            println!("{doc}");
            Ok(())
        }
        None => run(&cli, &plan),
    }
}

fn size(s: &SizeArgs) -> generate::Size {
    generate::Size {
        services: s.services,
        namespaces: s.namespaces,
        replicas: s.replicas,
        json_every: s.json_every,
    }
}

/// One load of `dir`, timed by phase. Fails when the manifests do not load cleanly, since a
/// benchmark of an error path would measure the wrong thing.
fn load_once(dir: &Path, plan: &AddressPlan) -> Result<(Phases, Counts)> {
    let t0 = Instant::now();
    // What `svcnet check` and `svcnet up` do (`Cluster::load`), in two timed steps: each
    // file is parsed and its objects validated on the thread that read it, then the
    // cluster is derived.
    let loaded = validate::read_paths(&[dir.to_path_buf()]);
    let t1 = Instant::now();
    let hwm_read = proc_status_kb("VmHWM:").unwrap_or(0);
    if loaded.read_diagnostics.has_errors() {
        bail!("reading failed:\n{}", first_lines(&loaded.read_diagnostics));
    }
    let raw_objects = loaded.raw_objects;
    let (cluster, diags) = Cluster::build_validated(loaded.objects, loaded.diagnostics, plan, None);
    let t2 = Instant::now();
    let hwm_build = proc_status_kb("VmHWM:").unwrap_or(0);
    let Some(cluster) = cluster else {
        bail!("build failed:\n{}", first_lines(&diags));
    };
    let findings = lint::lint(&cluster);
    let t3 = Instant::now();
    let hwm_lint = proc_status_kb("VmHWM:").unwrap_or(0);
    let counts = Counts {
        raw_objects,
        kinds: cluster
            .counts()
            .into_iter()
            .map(|(k, n)| (k.as_str().to_string(), n))
            .collect(),
        warnings: diags.count(svcnet_model::Severity::Warning),
        lint_findings: findings.0.len(),
    };
    drop(cluster);
    drop(diags);
    drop(findings);
    let t4 = Instant::now();
    Ok((
        Phases {
            read: t1 - t0,
            build: t2 - t1,
            lint: t3 - t2,
            drop: t4 - t3,
            peak_kb: [hwm_read, hwm_build, hwm_lint],
        },
        counts,
    ))
}

fn first_lines(d: &svcnet_model::Diagnostics) -> String {
    d.errors()
        .take(10)
        .map(|e| format!("  {e}\n"))
        .collect::<String>()
}

/// A value in kB from /proc/self/status (`VmHWM:` is the peak resident set size).
fn proc_status_kb(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    let kb = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb)
}

/// min, p50, p99 (nearest rank) and max, in seconds.
#[derive(Clone, Copy, Debug)]
struct Stats {
    min: f64,
    p50: f64,
    p99: f64,
    n: usize,
}

fn stats(mut xs: Vec<f64>) -> Stats {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let rank = |p: f64| {
        let r = (p * n as f64).ceil() as usize;
        xs.get(r.clamp(1, n.max(1)) - 1)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Stats {
        min: xs.first().copied().unwrap_or(f64::NAN),
        p50: rank(0.50),
        p99: rank(0.99),
        n,
    }
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// End-to-end numbers of the released binary.
#[derive(Debug, Default)]
struct EndToEnd {
    tool: String,
    wall: Option<Stats>,
    peak_rss_kb: Option<u64>,
    exit_code: Option<i32>,
}

fn run(cli: &Cli, plan: &AddressPlan) -> Result<()> {
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("svcnet-bench-model-{}", std::process::id())),
    };
    if dir.exists() {
        bail!("{} exists; remove it or name another --dir", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    let result = measure(cli, plan, &dir);
    if !cli.keep {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    result
}

fn measure(cli: &Cli, plan: &AddressPlan, dir: &Path) -> Result<()> {
    let t = Instant::now();
    let written = generate::write(dir, &size(&cli.size))?;
    eprintln!(
        "generated {} objects ({} Services, {} pods asked for) in {} files, {:.1} MB, in {:.2?}",
        written.objects,
        written.services,
        written.pods,
        written.files,
        mb(written.bytes),
        t.elapsed()
    );

    // Peak memory of one load, in a fresh process so that nothing else counts.
    let me = std::env::current_exe()?;
    let out = Command::new(&me)
        .args(size_flags(&cli.size))
        .arg("once")
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .context("running the one-load child")?;
    if !out.status.success() {
        bail!("the one-load child failed ({})", out.status);
    }
    let once: Value = serde_json::from_slice(&out.stdout)?;
    let once_peak_kb = once["peak_rss_kb"].as_u64().unwrap_or(0);
    let once_steps_kb = [
        "peak_rss_after_read_kb",
        "peak_rss_after_derive_kb",
        "peak_rss_after_lint_kb",
    ]
    .map(|k| once[k].as_u64().unwrap_or(0));

    // Wall times in this process: one warm-up, then the timed runs.
    eprintln!("in-process: 1 warm-up + {} timed runs", cli.runs);
    let (_, counts) = load_once(dir, plan)?;
    let mut runs = Vec::with_capacity(cli.runs);
    for _ in 0..cli.runs.max(1) {
        runs.push(load_once(dir, plan)?.0);
    }
    let phase =
        |f: fn(&Phases) -> Duration| stats(runs.iter().map(|p| f(p).as_secs_f64()).collect());
    let rows = [
        (
            "read + parse + validate (validate::read_paths)",
            phase(|p| p.read),
        ),
        ("derive (Cluster::build_validated)", phase(|p| p.build)),
        ("total: load and derive", phase(Phases::load)),
        ("lint (lint::lint)", phase(|p| p.lint)),
        ("drop", phase(|p| p.drop)),
        ("all of the above", phase(Phases::all)),
    ];

    let svcnet = match &cli.svcnet {
        Some(p) => p.clone(),
        None => me.with_file_name("svcnet"),
    };
    let e2e = if svcnet.exists() {
        end_to_end(&svcnet, dir, cli.size.nodes, cli.runs)?
    } else {
        eprintln!("{} not found: no end-to-end numbers", svcnet.display());
        EndToEnd::default()
    };

    let report = report(
        cli,
        &written,
        &counts,
        &rows,
        (once_peak_kb, once_steps_kb),
        &svcnet,
        &e2e,
    )?;
    println!("{report}");
    if let Some(path) = &cli.results {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn size_flags(s: &SizeArgs) -> Vec<String> {
    vec![
        format!("--services={}", s.services),
        format!("--namespaces={}", s.namespaces),
        format!("--replicas={}", s.replicas),
        format!("--nodes={}", s.nodes),
        format!("--json-every={}", s.json_every),
    ]
}

fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Times `svcnet check -q -f DIR --nodes N` with hyperfine when present (else a loop), and
/// reads its peak memory from `/usr/bin/time -v` when present.
fn end_to_end(svcnet: &Path, dir: &Path, nodes: u32, runs: usize) -> Result<EndToEnd> {
    let args: Vec<String> = vec![
        "check".into(),
        "-q".into(),
        "-f".into(),
        dir.display().to_string(),
        "--nodes".into(),
        nodes.to_string(),
    ];
    let mut e2e = EndToEnd::default();

    let status = Command::new(svcnet)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    e2e.exit_code = status.code();

    let time = Path::new("/usr/bin/time");
    if time.exists() {
        let out = Command::new(time)
            .arg("-v")
            .arg(svcnet)
            .args(&args)
            .stdout(Stdio::null())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        e2e.peak_rss_kb = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|v| v.trim().parse().ok());
    }

    if has("hyperfine") {
        e2e.tool = "hyperfine".into();
        let json_path = dir.with_extension("hyperfine.json");
        let command = std::iter::once(svcnet.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let status = Command::new("hyperfine")
            .args(["--shell=none", "--ignore-failure", "--style", "basic"])
            .args(["--warmup", "1", "--runs", &runs.max(2).to_string()])
            .arg("--export-json")
            .arg(&json_path)
            .arg(&command)
            .stdout(std::io::stderr())
            .status()?;
        if !status.success() {
            bail!("hyperfine failed ({status})");
        }
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path)?)?;
        std::fs::remove_file(&json_path)?;
        let times = doc["results"][0]["times"]
            .as_array()
            .context("hyperfine JSON without results[0].times")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        e2e.wall = Some(stats(times));
    } else {
        e2e.tool = "loop".into();
        let mut times = Vec::new();
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            Command::new(svcnet)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            times.push(t.elapsed().as_secs_f64());
        }
        e2e.wall = Some(stats(times));
    }
    Ok(e2e)
}

fn machine() -> (String, String, String) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kb| format!("{:.1} GiB", kb / 1048576.0),
        );
    (model, cpus.to_string(), mem)
}

/// The commit measured, and whether crates/ had local changes (`git` in the current
/// directory; "unknown" outside a repository).
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) => {
            let dirty =
                git(&["status", "--porcelain", "--", "crates"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("commit {hash} with local changes in crates/")
            } else {
                format!("commit {hash}")
            }
        }
        None => "unknown".to_string(),
    }
}

fn ms(s: f64) -> String {
    format!("{:.1}", s * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

#[allow(clippy::too_many_arguments)]
fn report(
    cli: &Cli,
    written: &generate::Written,
    counts: &Counts,
    rows: &[(&str, Stats)],
    (once_peak_kb, once_steps_kb): (u64, [u64; 3]),
    svcnet: &Path,
    e2e: &EndToEnd,
) -> Result<String> {
    let (model, cpus, mem) = machine();
    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut r = String::new();
    writeln!(r, "# svcnet-model load benchmark: results\n")?;
    writeln!(
        r,
        "Measured {date} on {cpus} CPUs ({model}), {mem} of memory, by `bash bench/model/run.sh`; \
         code: {}.",
        commit()
    )?;
    writeln!(
        r,
        "Target (issue): load and derive 10,000 Services and 50,000 pods in under 1 s and \
         under 500 MB. No external peer loads manifests offline, so ratios are to the target.\n"
    )?;
    writeln!(r, "## Input\n")?;
    writeln!(
        r,
        "{} Services over {} namespaces, {} replicas each, {} nodes: {} objects in {} files \
         ({:.1} MB; YAML streams{}).\n",
        written.services,
        cli.size.namespaces,
        cli.size.replicas,
        cli.size.nodes,
        written.objects,
        written.files,
        mb(written.bytes),
        match cli.size.json_every {
            0 => String::new(),
            1 => ", Services as JSON `kind: List` files".to_string(),
            n => format!(", and Services as JSON `kind: List` files in every {n}th namespace"),
        }
    )?;
    writeln!(r, "| kind | count |\n|---|---:|")?;
    writeln!(r, "| objects read | {} |", counts.raw_objects)?;
    for (kind, n) in &counts.kinds {
        if *n > 0 {
            writeln!(r, "| {kind} | {n} |")?;
        }
    }
    writeln!(
        r,
        "\nWarnings from the build: {}; lint findings: {}.\n",
        counts.warnings, counts.lint_findings
    )?;

    writeln!(r, "## In-process (svcnet-model, release build)\n")?;
    let n = rows.first().map_or(0, |(_, s)| s.n);
    writeln!(
        r,
        "{n} runs after one warm-up, wall time in ms; p99 is the nearest rank, so with \
         fewer than 100 runs it is the slowest run.\n"
    )?;
    writeln!(r, "| phase | min | p50 | p99 |\n|---|---:|---:|---:|")?;
    for (name, s) in rows {
        writeln!(
            r,
            "| {name} | {} | {} | {} |",
            ms(s.min),
            ms(s.p50),
            ms(s.p99)
        )?;
    }
    let total = rows
        .iter()
        .find(|(name, _)| name.starts_with("total"))
        .map_or(f64::NAN, |(_, s)| s.p50);
    let peak_mb = once_peak_kb as f64 * 1024.0 / 1e6;
    writeln!(
        r,
        "\nPeak resident memory of a process that loads, derives and lints once (VmHWM): \
         {peak_mb:.0} MB.\n"
    )?;
    let [read_mb, derive_mb, lint_mb] = once_steps_kb.map(|kb| kb as f64 * 1024.0 / 1e6);
    writeln!(
        r,
        "Peak so far after reading and validating: {read_mb:.0} MB; after deriving: \
         {derive_mb:.0} MB; after linting: {lint_mb:.0} MB.\n"
    )?;

    writeln!(r, "## End to end (`svcnet check`)\n")?;
    writeln!(
        r,
        "`{} check -q -f DIR --nodes {}`, timed with {}; exit code {}.\n",
        svcnet.file_name().map_or_else(
            || svcnet.display().to_string(),
            |f| { format!("target/release/{}", f.to_string_lossy()) }
        ),
        cli.size.nodes,
        if e2e.tool.is_empty() {
            "nothing"
        } else {
            &e2e.tool
        },
        e2e.exit_code.map_or("?".into(), |c| c.to_string())
    )?;
    writeln!(r, "| measure | value |\n|---|---:|")?;
    if let Some(s) = e2e.wall {
        writeln!(r, "| wall min (ms) | {} |", ms(s.min))?;
        writeln!(r, "| wall p50 (ms) | {} |", ms(s.p50))?;
        writeln!(r, "| wall p99 (ms) | {} |", ms(s.p99))?;
        writeln!(r, "| runs | {} |", s.n)?;
    }
    let e2e_peak_mb = e2e.peak_rss_kb.map(|kb| kb as f64 * 1024.0 / 1e6);
    if let Some(p) = e2e_peak_mb {
        writeln!(r, "| peak RSS (MB, /usr/bin/time -v) | {p:.0} |")?;
    }

    writeln!(r, "\n## Against the target\n")?;
    writeln!(
        r,
        "| measure | value | target | ratio | |\n|---|---:|---:|---:|---|"
    )?;
    writeln!(
        r,
        "| in-process load and derive, p50 | {} ms | 1000 ms | {:.2} | {} |",
        ms(total),
        total,
        verdict(total < 1.0)
    )?;
    writeln!(
        r,
        "| in-process peak memory | {peak_mb:.0} MB | 500 MB | {:.2} | {} |",
        peak_mb / 500.0,
        verdict(peak_mb < 500.0)
    )?;
    if let Some(s) = e2e.wall {
        writeln!(
            r,
            "| `svcnet check` wall, p50 | {} ms | 1000 ms | {:.2} | {} |",
            ms(s.p50),
            s.p50,
            verdict(s.p50 < 1.0)
        )?;
    }
    if let Some(p) = e2e_peak_mb {
        writeln!(
            r,
            "| `svcnet check` peak memory | {p:.0} MB | 500 MB | {:.2} | {} |",
            p / 500.0,
            verdict(p < 500.0)
        )?;
    }
    Ok(r)
}
