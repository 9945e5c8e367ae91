//! L4 benchmark of svcnet's ClusterIP forwarder against haproxy (`mode tcp`), both in front
//! of the same backend, in the same run: bulk throughput, and new connections per second
//! with connect and request latency (p50, p99). The backend is also measured directly, as
//! the baseline of what loopback and the load generator can do without a proxy.
//!
//! Each measurement runs `--rounds` times, the targets taking turns in a rotating order so
//! that noise on the machine hits every target alike; the median of the rounds is reported
//! with the ratio svcnet / haproxy. It measures and compares with the targets; it
//! does not tune either proxy beyond their defaults. `bench/l4/run.sh` builds and runs it.

mod backend;
mod cpu;
mod load;
mod peers;
mod report;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::peers::{Peer, Proc};
use crate::report::{BulkSample, ConnSample, Report, Which};

/// svcnet's ClusterIP against haproxy (mode tcp) in front of the same backend.
#[derive(Parser, Debug, Clone)]
#[command(name = "svcnet-bench-l4")]
struct Cli {
    /// The svcnet binary (default: `svcnet` beside this binary).
    #[arg(long)]
    svcnet: Option<PathBuf>,
    /// The haproxy binary.
    #[arg(long, default_value = "haproxy")]
    haproxy: PathBuf,
    /// Bulk: parallel connections.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Bulk: MiB sent per run, over all connections.
    #[arg(long, default_value_t = 1024)]
    bulk_mib: u64,
    /// New connections: concurrent workers.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// New connections: seconds per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// New connections: bytes of the request (echoed back).
    #[arg(long, default_value_t = 64)]
    request_bytes: usize,
    /// Measured runs of each workload against each target (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Client source addresses (127.90.0.1 and up) the connections are spread over.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Threads of the load generator (the backend has one thread of its own).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Where to write the results in Markdown (nothing is written when absent).
    #[arg(long)]
    results: Option<PathBuf>,
    /// svcnet's source revision, for the results (run.sh passes `git describe`).
    #[arg(long)]
    svcnet_rev: Option<String>,
    /// Keep the working directory (configurations and logs of the peers).
    #[arg(long)]
    keep: bool,
}

/// Backend address; the peers' addresses are in `peers`.
const BACKEND_IP: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);
/// Pause between runs, so that one run's closing sockets do not land in the next.
const SETTLE: Duration = Duration::from_millis(250);

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.rounds == 0 || cli.streams == 0 || cli.workers == 0 || cli.sources == 0 {
        bail!("--rounds, --streams, --workers and --sources must be at least 1");
    }
    if !(cli.seconds > 0.0 && cli.seconds <= 60.0) {
        bail!("--seconds must be in (0, 60]");
    }
    let rt = if cli.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.client_threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // Dropping `run` on a signal drops the peers, which kills them.
        tokio::select! {
            r = run(&cli) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    })
}

/// The working directory, removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("cannot remove {}: {e}", self.path.display());
        }
    }
}

async fn run(cli: &Cli) -> Result<()> {
    let svcnet_bin = match &cli.svcnet {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("svcnet"),
    };
    let haproxy_version = first_line(&cli.haproxy, &["-v"])?;
    let svcnet_version = first_line(&svcnet_bin, &["version"])?;
    let work = WorkDir {
        path: std::env::temp_dir().join(format!("svcnet-bench-l4-{}", std::process::id())),
        keep: cli.keep,
    };
    std::fs::create_dir_all(&work.path)?;

    let backend = backend::start(IpAddr::V4(BACKEND_IP))?;
    let sources: Vec<IpAddr> = (1..=cli.sources)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 90, 0, i)))
        .collect();
    eprintln!(
        "backend: echo {} sink {}; clients from 127.90.0.1..={}",
        backend.echo,
        backend.sink,
        sources[sources.len() - 1]
    );
    let mut haproxy = peers::haproxy(&cli.haproxy, &work.path, &backend).await?;
    eprintln!(
        "haproxy: echo {} sink {} (pid {})",
        haproxy.echo,
        haproxy.sink,
        haproxy.proc.pid()
    );
    let mut svcnet = peers::svcnet(&svcnet_bin, &work.path, &backend).await?;
    eprintln!(
        "svcnet: ClusterIP echo {} sink {} (pid {})",
        svcnet.echo,
        svcnet.sink,
        svcnet.proc.pid()
    );

    let mut report = Report::new(report::Setup {
        nproc: std::thread::available_parallelism()?.get(),
        cpu_model: cpu_model(),
        kernel: read_or_unknown("/proc/sys/kernel/osrelease")
            .trim()
            .to_string(),
        loadavg_before: loadavg(),
        date: jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M UTC")
            .to_string(),
        haproxy_version,
        svcnet_version: match &cli.svcnet_rev {
            Some(rev) => format!("{svcnet_version} ({rev})"),
            None => svcnet_version,
        },
        streams: cli.streams,
        bulk_mib: cli.bulk_mib,
        workers: cli.workers,
        seconds: cli.seconds,
        request_bytes: cli.request_bytes,
        rounds: cli.rounds,
        sources: cli.sources,
        client_threads: cli.client_threads,
    });

    let per_stream = cli.bulk_mib * (1 << 20) / cli.streams as u64;
    let duration = Duration::from_secs_f64(cli.seconds);
    // Warm-up, not recorded: page cache, allocators, haproxy's and tokio's pools.
    eprintln!("warming up");
    for which in Which::ALL {
        let (to_sink, to_echo, _) = addrs(which, &backend, &haproxy, &svcnet);
        load::bulk(to_sink, cli.streams, per_stream / 8, &sources).await?;
        load::conns(
            to_echo,
            cli.workers,
            duration.min(Duration::from_secs(1)),
            cli.request_bytes,
            &sources,
        )
        .await?;
    }
    for round in 0..cli.rounds {
        let order = Which::rotated(round);
        for which in order {
            settle(&mut haproxy.proc, &mut svcnet.proc).await?;
            let (to, _, pid) = addrs(which, &backend, &haproxy, &svcnet);
            let before = Cpu::now(pid)?;
            let b = load::bulk(to, cli.streams, per_stream, &sources).await?;
            let used = before.since(pid)?;
            let sample = BulkSample::new(&b, used.proxy_ns, used.own_ns);
            eprintln!("round {} bulk  {:<8} {}", round + 1, which.name(), sample);
            report.bulk(which, sample);
        }
        for which in order {
            settle(&mut haproxy.proc, &mut svcnet.proc).await?;
            let (_, to, pid) = addrs(which, &backend, &haproxy, &svcnet);
            let before = Cpu::now(pid)?;
            let c = load::conns(to, cli.workers, duration, cli.request_bytes, &sources).await?;
            let used = before.since(pid)?;
            let sample = ConnSample::new(&c, used.proxy_ns, used.own_ns);
            eprintln!("round {} conns {:<8} {}", round + 1, which.name(), sample);
            report.conns(which, sample);
        }
    }
    haproxy.proc.check_alive()?;
    svcnet.proc.check_alive()?;
    report.loadavg_after = loadavg();

    let text = report.markdown();
    println!("{text}");
    if let Some(path) = &cli.results {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The sink address, the echo address and the proxy's pid of a target.
fn addrs(
    which: Which,
    backend: &backend::Backend,
    haproxy: &Peer,
    svcnet: &Peer,
) -> (SocketAddr, SocketAddr, Option<u32>) {
    match which {
        Which::Direct => (backend.sink, backend.echo, None),
        Which::Haproxy => (haproxy.sink, haproxy.echo, Some(haproxy.proc.pid())),
        Which::Svcnet => (svcnet.sink, svcnet.echo, Some(svcnet.proc.pid())),
    }
}

async fn settle(a: &mut Proc, b: &mut Proc) -> Result<()> {
    a.check_alive()?;
    b.check_alive()?;
    tokio::time::sleep(SETTLE).await;
    Ok(())
}

/// CPU used by the proxy and by this process (load generator and backend) over a run.
struct Cpu {
    proxy_ns: Option<u64>,
    own_ns: u64,
}

impl Cpu {
    fn now(pid: Option<u32>) -> Result<Cpu> {
        Ok(Cpu {
            proxy_ns: pid.map(|p| cpu::cpu_ns(Some(p))).transpose()?,
            own_ns: cpu::cpu_ns(None)?,
        })
    }

    fn since(&self, pid: Option<u32>) -> Result<Cpu> {
        let now = Cpu::now(pid)?;
        Ok(Cpu {
            proxy_ns: match (now.proxy_ns, self.proxy_ns) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                _ => None,
            },
            own_ns: now.own_ns.saturating_sub(self.own_ns),
        })
    }
}

fn first_line(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// A /proc file for the description of the machine: a missing one makes the description
/// poorer, not the measurement wrong, so it does not stop the benchmark.
fn read_or_unknown(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("unknown ({path}: {e})"))
}

fn cpu_model() -> String {
    read_or_unknown("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn loadavg() -> String {
    read_or_unknown("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
