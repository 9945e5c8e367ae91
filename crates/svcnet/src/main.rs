//! svcnet: Kubernetes service networking in one binary.
//!
//! The binary parses flags, wires the library crates together and prints for people.
//! Business logic lives in the crates below it (DESIGN.md).

mod ca_cmd;
mod check;
mod dns_args;
mod dns_cmd;
mod get;
mod ingress_args;
mod logging;
mod plan_args;
mod policy_cmd;
mod probe_cmd;
mod table;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc, not glibc's malloc: loading a large cluster is allocation-bound (parsed YAML,
/// k8s objects, 50,000 pods), and with mimalloc `bench/model` loads and derives 10,000
/// Services and 50,000 pods in 0.80 s instead of 1.14 s; it frees the cluster in a third of
/// the time. The data planes allocate per request and gain the same way.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kubernetes Services, Ingress, NetworkPolicy and cluster DNS, from manifests, in one binary.
#[derive(Parser, Debug)]
#[command(name = "svcnet", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Bring the cluster to life on loopback: pod agents, Service VIPs, NodePorts,
    /// LoadBalancer IPs; live reload of the manifests.
    Up(up::UpArgs),
    /// Show objects of the cluster the manifests describe, like `kubectl get`.
    Get(get::GetArgs),
    /// Validate manifests and report what will not work as intended.
    Check(check::CheckArgs),
    /// Cluster DNS tools.
    #[command(subcommand)]
    Dns(dns_cmd::DnsCommand),
    /// Print the /etc/resolv.conf kubelet would write for a pod (dnsPolicy, dnsConfig).
    ResolvConf(dns_cmd::ResolvConfArgs),
    /// Follow a pod's resolver: the search-list expansion, each query and its answer.
    Resolve(dns_cmd::ResolveArgs),
    /// NetworkPolicy analysis: who can reach whom, and why.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// One real connection from inside a pod, through a running `svcnet up`.
    Probe(probe_cmd::ProbeArgs),
    /// Print the local CA certificate the Ingress controller signs certificates with.
    Ca(ca_cmd::CaArgs),
    /// Print the version.
    Version,
}

/// Manifest sources, like `kubectl -f`.
#[derive(clap::Args, Debug, Clone)]
pub struct Sources {
    /// A manifest file, a directory (recursive: *.yaml, *.yml, *.json) or `-` for stdin.
    /// Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Get(args) => get::run(args),
        Command::Check(args) => check::run(args),
        Command::Dns(cmd) => dns_cmd::run(cmd),
        Command::ResolvConf(args) => dns_cmd::resolv_conf(args),
        Command::Resolve(args) => dns_cmd::resolve(args),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Ca(args) => ca_cmd::run(args),
        Command::Probe(args) => probe_cmd::run(args),
        Command::Version => {
            println!("svcnet {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
