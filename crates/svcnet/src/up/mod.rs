//! `svcnet up`: the standalone runtime. A thin wiring of components (DESIGN.md):
//! manifests → [`Cluster`] → pod agents (svcnet-sandbox) and the Service load balancer
//! (svcnet-proxy), kept live by a file watcher, with an admin HTTP endpoint.
//!
//! One controller task owns the state. Everything that changes it (a manifest edit, a
//! readiness probe, an admin flip, a signal) is an [`Event`] sent to that task, so state
//! changes are serialized without locks on any request path.

mod admin;
mod metrics;
mod policy;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use svcnet_model::types::{ObjectKey, ServiceType};
use svcnet_model::{Cluster, Diagnostics, Kind, Severity};
use svcnet_proxy::{Proxy, ProxyConfig, ServiceTable};
use svcnet_sandbox::{Agents, ReadinessChange};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::Sources;
use crate::plan_args::PlanArgs;

/// Arguments of `svcnet up`. A flag given twice takes its last value (scripts append
/// overrides).
#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct UpArgs {
    #[command(flatten)]
    sources: Sources,
    /// Admin HTTP address: /healthz, /readyz, /metrics, /api/state, /api/errors,
    /// POST /api/pods/NS/NAME/ready?value=true|false|auto.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    admin_addr: SocketAddr,
    /// How long open connections may drain on SIGINT/SIGTERM.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    drain_timeout: Duration,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_name = "FORMAT")]
    log_format: String,
    /// Cluster DNS address (UDP and TCP), or `none`.
    #[arg(long, default_value = "127.0.0.1:10053", value_name = "ADDR|none")]
    dns_addr: String,
    #[command(flatten)]
    dns: crate::dns_args::DnsArgs,
    #[command(flatten)]
    ingress: crate::ingress_args::IngressArgs,
    /// The Ingress controller's access log (one line per request, logfmt or JSON per
    /// --log-format): stderr, off, or a file path.
    #[arg(long, default_value = "stderr", value_name = "stderr|off|PATH")]
    access_log: String,
    #[command(flatten)]
    state: crate::ingress_args::StateArgs,
    #[command(flatten)]
    plan: PlanArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 5s or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// What the controller reacts to.
pub(crate) enum Event {
    /// Watched manifests changed.
    FilesChanged,
    /// A pod agent's readiness changed.
    Readiness(ReadinessChange),
    /// The admin API flips a pod's readiness (`None` = back to the probes).
    SetReady(
        ObjectKey,
        Option<bool>,
        oneshot::Sender<Result<bool, String>>,
    ),
}

/// State the admin endpoint reads, published by the controller.
pub(crate) struct Shared {
    /// The cluster being served (manifests plus runtime readiness).
    pub served: ArcSwap<Cluster>,
    /// Diagnostics of the last reload (errors mean it was refused).
    pub last_reload: ArcSwap<ReloadOutcome>,
    /// True once every listener is bound and the first state is served.
    pub ready: AtomicBool,
    /// Why not ready, when not.
    pub not_ready_reason: ArcSwap<String>,
    /// Bumped on every applied change.
    pub generation: AtomicU64,
    /// Metrics registry, read by /metrics.
    pub registry: prometheus_client::registry::Registry,
    /// Runtime metrics.
    pub metrics: metrics::RuntimeMetrics,
    /// The pod agents (`/api/probe` dials from them).
    pub agents: Agents,
}

/// The result of the last reload attempt.
#[derive(Default)]
pub(crate) struct ReloadOutcome {
    /// Accepted (true) or refused (false).
    pub ok: bool,
    /// Its diagnostics.
    pub diagnostics: Diagnostics,
    /// When (seconds since the Unix epoch).
    pub at: u64,
}

/// Runs `svcnet up` until SIGINT/SIGTERM.
pub fn run(args: UpArgs) -> Result<ExitCode> {
    crate::logging::init(&args.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("svcnet")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: UpArgs) -> Result<ExitCode> {
    let plan = args.plan.plan()?;
    let paths = args.sources.files.clone();
    let (cluster, diags) = Cluster::load(&paths, &plan, None);
    print_diagnostics(&diags);
    let Some(cluster) = cluster else {
        eprintln!(
            "error: {} error(s) in the manifests; nothing was started",
            diags.count(Severity::Error)
        );
        return Ok(ExitCode::from(2));
    };
    // Ports below 1024 need a privilege: say so before binding anything.
    if let Some(lowest) = lowest_port(&cluster)
        && let Some(fix) = svcnet_sandbox::privileged_ports_blocked(lowest)
    {
        eprintln!(
            "error: this cluster listens on port {lowest}, below the unprivileged port range; nothing was started.\n{fix}"
        );
        return Ok(ExitCode::from(2));
    }

    // Each component names its metrics `svcnet_<component>_...` itself.
    let mut registry = prometheus_client::registry::Registry::default();
    let runtime_metrics = metrics::RuntimeMetrics::register(&mut registry);
    let gate = policy::PolicyGate::new(&cluster, &mut registry);
    let proxy = Proxy::new(
        &mut registry,
        ProxyConfig {
            admit: Some(gate.proxy_admit()),
            ..ProxyConfig::default()
        },
    );
    let dns_config = args.dns.config()?;
    let dns = match args.dns_addr.as_str() {
        "none" | "off" => None,
        addr => {
            let addr: SocketAddr = addr.parse().with_context(|| {
                format!("--dns-addr: {addr:?} is not an address like 127.0.0.1:10053")
            })?;
            let zone = svcnet_dns::DnsZone::build(&cluster, &dns_config);
            let server = svcnet_dns::DnsServer::bind(addr, zone, &dns_config, &mut registry)
                .await
                .with_context(|| format!("binding the DNS address {addr}"))?;
            Some(server)
        }
    };
    let (http_addr, https_addr) = (args.ingress.http()?, args.ingress.https()?);
    let ingress = if http_addr.is_none() && https_addr.is_none() {
        None
    } else {
        use svcnet_ingress::accesslog::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
        let config = svcnet_ingress::ServerConfig {
            http_addr,
            https_addr,
            state_dir: args.state.dir(),
            access_log: AccessLogConfig {
                target: match args.access_log.as_str() {
                    "stderr" | "-" => AccessLogTarget::Stderr,
                    "off" | "none" => AccessLogTarget::Off,
                    path => AccessLogTarget::File(path.into()),
                },
                format: if args.log_format == "json" {
                    AccessLogFormat::Json
                } else {
                    AccessLogFormat::Text
                },
            },
            workers: args.ingress.workers(),
            fast_http1: args.ingress.ingress_http1 == crate::ingress_args::Http1Engine::Fast,
            ..svcnet_ingress::ServerConfig::default()
        };
        let server = svcnet_ingress::IngressServer::start(config, &mut registry)
            .await
            .context(
                "starting the Ingress controller (other listeners: --http-addr ADDR \
                 --https-addr ADDR; none turns one off)",
            )?;
        Some(server)
    };
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<ReadinessChange>();
    let agents = Agents::new(gate.sandbox_config(), ready_tx);
    let shared = Arc::new(Shared {
        served: ArcSwap::from_pointee(cluster.clone()),
        last_reload: ArcSwap::from_pointee(ReloadOutcome {
            ok: true,
            diagnostics: diags,
            at: now_secs(),
        }),
        ready: AtomicBool::new(false),
        not_ready_reason: ArcSwap::from_pointee("starting".to_string()),
        generation: AtomicU64::new(0),
        registry,
        metrics: runtime_metrics,
        agents: agents.clone(),
    });
    let dns = dns.map(Arc::new);

    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let admin = admin::serve(args.admin_addr, shared.clone(), events_tx.clone())
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_addr))?;

    let mut ctl = Controller {
        base: cluster,
        probes: HashMap::new(),
        flips: HashMap::new(),
        with_agent: Default::default(),
        proxy: proxy.clone(),
        agents: agents.clone(),
        shared: shared.clone(),
        paths: paths.clone(),
        plan,
        reported: Default::default(),
        dns: dns.clone().map(|d| (d, dns_config.clone())),
        gate,
        ingress: ingress.clone().map(|i| (i, args.ingress.controller())),
        ingress_served: Default::default(),
    };
    // Watch before anything is served: a change made as soon as /readyz says 200 must
    // not be missed. Events that arrive meanwhile wait in the queue.
    let _watcher = watch::watch(&paths, events_tx.clone())?;
    ctl.apply().await;
    // Every agent reports its readiness once when it starts: wait for those first reports
    // (briefly) so that the first state served already has its endpoints.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while ctl.with_agent.iter().any(|k| !ctl.probes.contains_key(k)) {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(change)) => {
                ctl.probes.insert(change.pod, change.ready);
            }
            _ => break,
        }
    }
    let bind_errors = ctl.apply().await;
    print_summary(
        &shared.served.load(),
        args.admin_addr,
        dns.as_ref().map(|d| d.local_addr()),
        ingress
            .as_ref()
            .map(|i| (i.local_addrs(), ctl.ingress_served.clone())),
        args.state.state_dir.as_deref(),
    );
    if bind_errors == 0 {
        shared.ready.store(true, Ordering::SeqCst);
        shared.not_ready_reason.store(Arc::new(String::new()));
    } else {
        shared.not_ready_reason.store(Arc::new(format!(
            "{bind_errors} listener(s) could not be bound"
        )));
        warn!(
            bind_errors,
            "some listeners could not be bound; /readyz reports not ready"
        );
    }
    info!(admin = %admin, "svcnet is up");

    // Forward readiness changes into the controller's queue.
    let fwd = events_tx.clone();
    tokio::spawn(async move {
        while let Some(change) = ready_rx.recv().await {
            if fwd.send(Event::Readiness(change)).is_err() {
                break;
            }
        }
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            ev = events_rx.recv() => {
                let Some(ev) = ev else { break };
                ctl.handle(ev, &mut events_rx).await;
            }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
        }
    }
    shared.ready.store(false, Ordering::SeqCst);
    shared
        .not_ready_reason
        .store(Arc::new("shutting down".to_string()));
    if let Some(ingress) = &ingress {
        ingress.shutdown(args.drain_timeout).await;
    }
    proxy.shutdown(args.drain_timeout).await;
    agents.shutdown().await;
    drop(ctl);
    if let Some(dns) = dns.and_then(|d| Arc::try_unwrap(d).ok()) {
        dns.shutdown().await;
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Owns the state: the cluster from the manifests, readiness from probes and flips.
struct Controller {
    base: Cluster,
    probes: HashMap<ObjectKey, bool>,
    flips: HashMap<ObjectKey, bool>,
    with_agent: std::collections::HashSet<ObjectKey>,
    proxy: Proxy,
    agents: Agents,
    shared: Arc<Shared>,
    paths: Vec<PathBuf>,
    plan: svcnet_model::AddressPlan,
    /// Objects already reported as skipped (said once per object).
    reported: std::collections::HashSet<String>,
    /// The DNS server and its configuration, when enabled.
    dns: Option<(Arc<svcnet_dns::DnsServer>, svcnet_dns::DnsConfig)>,
    /// NetworkPolicy enforcement.
    gate: Arc<policy::PolicyGate>,
    /// The Ingress controller and which classes it serves, when enabled.
    ingress: Option<(
        svcnet_ingress::IngressServer,
        svcnet_ingress::ControllerConfig,
    )>,
    /// The Ingresses the last applied route table serves (for the start-up summary).
    ingress_served: svcnet_ingress::Served,
}

impl Controller {
    async fn handle(&mut self, ev: Event, queue: &mut mpsc::UnboundedReceiver<Event>) {
        match ev {
            Event::FilesChanged => {
                // Coalesce a burst of file events into one reload.
                tokio::time::sleep(Duration::from_millis(15)).await;
                let mut pending = Vec::new();
                while let Ok(ev) = queue.try_recv() {
                    if !matches!(ev, Event::FilesChanged) {
                        pending.push(ev);
                    }
                }
                self.reload().await;
                for ev in pending {
                    Box::pin(self.handle(ev, queue)).await;
                }
            }
            Event::Readiness(change) => {
                if self.probes.insert(change.pod.clone(), change.ready) != Some(change.ready) {
                    info!(pod = %change.pod, ready = change.ready, reason = %change.reason, "readiness changed");
                    self.apply().await;
                }
            }
            Event::SetReady(pod, value, reply) => {
                if !self.base.pods.contains_key(&pod) {
                    let _ = reply.send(Err(format!("pod {pod} not found")));
                    return;
                }
                match value {
                    Some(v) => self.flips.insert(pod.clone(), v),
                    None => self.flips.remove(&pod),
                };
                info!(pod = %pod, ready = ?value, "readiness set by the admin API");
                self.apply().await;
                let ready = self
                    .shared
                    .served
                    .load()
                    .pods
                    .get(&pod)
                    .is_some_and(|p| p.ready);
                let _ = reply.send(Ok(ready));
            }
        }
    }

    /// Reloads the manifests; a bad change is reported and the last good state stays.
    async fn reload(&mut self) {
        let started = Instant::now();
        let (cluster, diags) = Cluster::load(&self.paths, &self.plan, Some(&self.base));
        match cluster {
            Some(c) => {
                for d in diags.0.iter().filter(|d| d.severity == Severity::Warning) {
                    warn!(diagnostic = %d, "manifest warning");
                }
                self.shared.last_reload.store(Arc::new(ReloadOutcome {
                    ok: true,
                    diagnostics: diags,
                    at: now_secs(),
                }));
                self.base = c;
                // Policies depend on labels and addresses, not on readiness: compiled
                // here, before the agents and the load balancer see the new state.
                self.gate.publish(&self.base);
                self.apply().await;
                self.shared.metrics.reloads_ok.inc();
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "manifests reloaded"
                );
            }
            None => {
                for d in diags.errors() {
                    error!(diagnostic = %d, "manifest error; the last good state keeps serving");
                }
                self.shared.metrics.reloads_failed.inc();
                self.shared.last_reload.store(Arc::new(ReloadOutcome {
                    ok: false,
                    diagnostics: diags,
                    at: now_secs(),
                }));
            }
        }
    }

    /// Computes the served cluster (manifests + readiness) and hands it to every data
    /// plane. Returns the number of listeners that could not be bound.
    async fn apply(&mut self) -> usize {
        let started = Instant::now();
        // Agents depend on pods' addresses, ports and probes, not on readiness.
        let report = self.agents.apply(&self.base).await;
        for k in &report.started {
            self.with_agent.insert(k.clone());
        }
        for k in &report.stopped {
            self.with_agent.remove(k);
            self.probes.remove(k);
        }
        for (k, why) in &report.skipped {
            if self.reported.insert(format!("pod {k}")) {
                info!(pod = %k, reason = %why, "pod gets no agent");
            }
        }
        for (k, why) in &report.errors {
            warn!(pod = %k, error = %why, "pod agent failed");
        }
        for (k, why) in &report.warnings {
            if self.reported.insert(format!("warning {k} {why}")) {
                info!(pod = %k, note = %why, "pod agent");
            }
        }
        // A pod with an agent is ready when its manifest says so and its agent (probes)
        // agrees; an admin flip overrides both, for pods with or without agents.
        let mut served = self.base.clone();
        let readiness: HashMap<ObjectKey, bool> = served
            .pods
            .iter()
            .filter(|(k, _)| self.with_agent.contains(*k) || self.flips.contains_key(*k))
            .map(|(k, p)| {
                let ready = match self.flips.get(k) {
                    Some(v) => *v,
                    None => p.ready && self.probes.get(k).copied().unwrap_or(false),
                };
                (k.clone(), ready)
            })
            .collect();
        served.set_readiness(&readiness);

        let mut table = ServiceTable::build(&served);
        // The built-in `kubernetes` and `kube-dns` Services have no pods behind them in
        // standalone mode (the DNS server answers on its own address), and their ports
        // (443, 53) would need privileges: they get no listener.
        table.retain(|fe| {
            served
                .services
                .get(&fe.service)
                .is_none_or(|s| s.meta.source != svcnet_model::Source::builtin())
        });
        for s in table.skipped() {
            if self.reported.insert(s.to_string()) {
                info!(skipped = %s, "no listener (outside loopback)");
            }
        }
        let report = self.proxy.apply(table).await;
        for e in &report.errors {
            error!(error = %e, "cannot bind");
        }
        if let Some((server, config)) = &self.dns {
            server.publish(svcnet_dns::DnsZone::build(&served, config));
        }
        if let Some((server, config)) = &self.ingress {
            let (table, findings) = svcnet_ingress::compile(&served, config);
            self.ingress_served = table.served().clone();
            for f in findings {
                if !self.reported.insert(format!("ingress {f:?}")) {
                    continue;
                }
                let (ingress, field, message) = (f.ingress.to_string(), &f.field, &f.message);
                match f.severity {
                    svcnet_ingress::Severity::Error => {
                        error!(%ingress, %field, %message, "Ingress not served");
                    }
                    svcnet_ingress::Severity::Warning => {
                        warn!(%ingress, %field, %message, "Ingress")
                    }
                    svcnet_ingress::Severity::Notice => {
                        info!(%ingress, %field, %message, "Ingress")
                    }
                }
            }
            for (host, problem) in server.publish(table) {
                if self
                    .reported
                    .insert(format!("certificate {host} {problem}"))
                {
                    warn!(%host, %problem, "certificate: serving one from the local CA instead");
                }
            }
        }
        self.shared.served.store(Arc::new(served));
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared
            .metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        report.errors.len()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// curl commands for the first Ingress paths: https (with the local CA) for hosts with TLS,
/// plain http otherwise.
fn ingress_tries(
    c: &Cluster,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    state_dir: Option<&std::path::Path>,
) -> Vec<String> {
    let tls_hosts: std::collections::BTreeSet<&str> = c
        .ingresses
        .values()
        .flat_map(|i| {
            i.tls
                .iter()
                .flat_map(|t| t.hosts.iter().map(String::as_str))
        })
        .collect();
    let ca = match state_dir {
        Some(d) => format!("<(svcnet ca --state-dir {})", d.display()),
        None => "<(svcnet ca)".to_string(),
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for ing in c.ingresses.values() {
        for rule in &ing.rules {
            let Some(host) = rule.host.as_deref().filter(|h| !h.starts_with('*')) else {
                continue;
            };
            let path = rule.paths.first().map_or("/", |p| p.path.as_str());
            if out.len() >= 4 || !seen.insert(host) {
                continue;
            }
            match (tls_hosts.contains(host), https, http) {
                (true, Some(https), _) => out.push(format!(
                    "curl -s --connect-to {host}:443:{https} --cacert {ca} https://{host}{path}        # Ingress {}",
                    ing.meta.key()
                )),
                (_, _, Some(http)) => out.push(format!(
                    "curl -s -H 'Host: {host}' http://{http}{path}        # Ingress {}",
                    ing.meta.key()
                )),
                _ => {}
            }
        }
    }
    out
}

/// The lowest port anything in the cluster will bind on loopback.
fn lowest_port(c: &Cluster) -> Option<u16> {
    let loopback = |ip: &std::net::IpAddr| ip.is_loopback();
    let pods = c
        .pods
        .values()
        .filter(|p| p.ips.iter().any(loopback))
        .flat_map(|p| {
            p.containers
                .iter()
                .flat_map(|c| c.ports.iter().map(|p| p.port))
        });
    let services = c
        .services
        .values()
        .filter(|s| s.meta.source != svcnet_model::Source::builtin())
        .filter(|s| s.type_ != ServiceType::ExternalName && !s.is_headless())
        .filter(|s| s.cluster_ip_list().iter().any(loopback))
        .flat_map(|s| s.ports.iter().map(|p| p.port));
    pods.chain(services).min()
}

fn print_diagnostics(diags: &Diagnostics) {
    for d in &diags.0 {
        match d.severity {
            Severity::Error => eprintln!("{d}"),
            Severity::Warning => eprintln!("Warning: {d}"),
            Severity::Notice => {}
        }
    }
}

/// What `up` brought up, and a few commands to paste.
type Listeners = (Option<SocketAddr>, Option<SocketAddr>);

fn print_summary(
    c: &Cluster,
    admin: SocketAddr,
    dns: Option<SocketAddr>,
    ingress: Option<(Listeners, svcnet_ingress::Served)>,
    state_dir: Option<&std::path::Path>,
) {
    let services = crate::get::table(c, Kind::Service, None, false);
    let pods = crate::get::table(c, Kind::Pod, None, true);
    println!("Services:\n{services}");
    println!("Pods:\n{pods}");
    if let Some(((http, https), served)) = &ingress
        && !c.ingresses.is_empty()
    {
        let view = crate::get::IngressView::of(served.clone(), *http, *https);
        let table = crate::get::table_with(c, Kind::Ingress, None, false, Some(&view));
        println!("Ingresses:\n{table}");
    }
    let mut tries = Vec::new();
    for s in c.services.values() {
        if s.meta.namespace == "kube-system"
            || (s.meta.namespace == "default" && s.meta.name == "kubernetes")
        {
            continue;
        }
        let Some(ip) = s.cluster_ip_list().iter().find(|ip| ip.is_loopback()) else {
            continue;
        };
        for p in &s.ports {
            let http = p.port == 80
                || p.port == 8080
                || p.name.as_deref().is_some_and(|n| n.starts_with("http"))
                || p.app_protocol
                    .as_deref()
                    .is_some_and(|a| a.starts_with("http"));
            let line = match p.protocol {
                svcnet_model::types::Protocol::Udp => {
                    format!(
                        "echo hostname | nc -u -w1 {ip} {}        # {}",
                        p.port,
                        s.meta.key()
                    )
                }
                _ if http => format!("curl -s http://{ip}:{}/        # {}", p.port, s.meta.key()),
                _ => format!("nc -v {ip} {}        # {} (echo)", p.port, s.meta.key()),
            };
            tries.push(line);
            if let Some(np) = p.node_port {
                tries.push(format!(
                    "curl -s http://127.0.0.1:{np}/        # {} via NodePort",
                    s.meta.key()
                ));
            }
            if let Some(lb) = s.load_balancer_ips.first() {
                tries.push(format!(
                    "curl -s http://{lb}:{}/        # {} via LoadBalancer",
                    p.port,
                    s.meta.key()
                ));
            }
        }
    }
    println!("Try:");
    for t in tries.iter().take(8) {
        println!("  {t}");
    }
    if let Some(dns) = dns {
        let domain = &c.plan.cluster_domain;
        let name = c
            .services
            .values()
            .find(|s| s.meta.namespace != "kube-system" && s.meta.name != "kubernetes")
            .map_or(format!("kubernetes.default.svc.{domain}"), |s| {
                format!("{}.{}.svc.{domain}", s.meta.name, s.meta.namespace)
            });
        println!("  dig @{} -p {} {name}", dns.ip(), dns.port());
    }
    if let Some(((http, https), _)) = &ingress {
        for line in ingress_tries(c, *http, *https, state_dir) {
            println!("  {line}");
        }
    }
    println!("  curl -s http://{admin}/metrics | grep svcnet_");
    println!("  curl -s -X POST 'http://{admin}/api/pods/NAMESPACE/POD/ready?value=false'");
    println!();
}
