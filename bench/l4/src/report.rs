//! Samples of every round, their medians, the ratios svcnet / haproxy, and the Markdown that
//! goes to stdout and to RESULTS.md.

use std::fmt::{self, Write as _};

use comfy_table::{Table, presets};

use crate::load::{Bulk, Conns, quantile};

/// Throughput target: svcnet / haproxy at least this.
const TARGET_THROUGHPUT: f64 = 1.0;
/// New connections per second target: svcnet / haproxy at least this.
const TARGET_CONN_RATE: f64 = 0.8;

/// A target of the workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The backend itself: no proxy.
    Direct,
    /// haproxy, `mode tcp`.
    Haproxy,
    /// svcnet's ClusterIP.
    Svcnet,
}

impl Which {
    /// Every target, in the order of the table.
    pub const ALL: [Which; 3] = [Which::Direct, Which::Haproxy, Which::Svcnet];

    /// The order of round `round`: each target goes first, second and third in turn.
    pub fn rotated(round: usize) -> [Which; 3] {
        let mut order = Which::ALL;
        order.rotate_left(round % 3);
        order
    }

    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Which::Direct => "direct",
            Which::Haproxy => "haproxy",
            Which::Svcnet => "svcnet",
        }
    }

    fn index(self) -> usize {
        match self {
            Which::Direct => 0,
            Which::Haproxy => 1,
            Which::Svcnet => 2,
        }
    }
}

/// One bulk run, reduced.
#[derive(Clone, Debug)]
pub struct BulkSample {
    gbps: f64,
    /// Proxy CPU seconds per GB moved.
    proxy_s_per_gb: Option<f64>,
    /// Proxy CPU over wall time (1.0 = one core busy).
    proxy_cores: Option<f64>,
    /// This process (generator and backend) CPU over wall time.
    own_cores: f64,
}

impl BulkSample {
    /// Reduces a run and the CPU the proxy and this process used during it.
    pub fn new(b: &Bulk, proxy_ns: Option<u64>, own_ns: u64) -> BulkSample {
        let wall = b.elapsed.as_secs_f64();
        BulkSample {
            gbps: b.gbps(),
            proxy_s_per_gb: proxy_ns.map(|ns| ns as f64 / 1e9 / (b.bytes as f64 / 1e9)),
            proxy_cores: proxy_ns.map(|ns| ns as f64 / 1e9 / wall),
            own_cores: own_ns as f64 / 1e9 / wall,
        }
    }
}

impl fmt::Display for BulkSample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} GB/s", self.gbps)?;
        if let Some(c) = self.proxy_cores {
            write!(f, ", proxy {c:.2} cores")?;
        }
        write!(f, ", bench {:.2} cores", self.own_cores)
    }
}

/// One new-connections run, reduced.
#[derive(Clone, Debug)]
pub struct ConnSample {
    rate: f64,
    done: u64,
    errors: u64,
    first_error: Option<String>,
    connect_p50_us: f64,
    connect_p99_us: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
    /// Proxy CPU microseconds per completed connection.
    proxy_us_per_conn: Option<f64>,
    proxy_cores: Option<f64>,
    own_cores: f64,
}

impl ConnSample {
    /// Reduces a run and the CPU the proxy and this process used during it.
    pub fn new(c: &Conns, proxy_ns: Option<u64>, own_ns: u64) -> ConnSample {
        let wall = c.elapsed.as_secs_f64();
        let us = |ns: u64| ns as f64 / 1e3;
        ConnSample {
            rate: c.rate(),
            done: c.done,
            errors: c.errors,
            first_error: c.first_error.clone(),
            connect_p50_us: us(quantile(&c.connect_ns, 0.50)),
            connect_p99_us: us(quantile(&c.connect_ns, 0.99)),
            rtt_p50_us: us(quantile(&c.rtt_ns, 0.50)),
            rtt_p99_us: us(quantile(&c.rtt_ns, 0.99)),
            proxy_us_per_conn: proxy_ns.map(|ns| ns as f64 / 1e3 / c.done.max(1) as f64),
            proxy_cores: proxy_ns.map(|ns| ns as f64 / 1e9 / wall),
            own_cores: own_ns as f64 / 1e9 / wall,
        }
    }
}

impl fmt::Display for ConnSample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0} conn/s, connect p50 {:.0} µs p99 {:.0} µs, request p50 {:.0} µs p99 {:.0} µs",
            self.rate, self.connect_p50_us, self.connect_p99_us, self.rtt_p50_us, self.rtt_p99_us
        )?;
        if let Some(c) = self.proxy_cores {
            write!(f, ", proxy {c:.2} cores")?;
        }
        write!(f, ", bench {:.2} cores", self.own_cores)?;
        if self.errors > 0 {
            write!(f, ", {} errors", self.errors)?;
        }
        Ok(())
    }
}

/// What the run was, and where.
#[derive(Clone, Debug)]
pub struct Setup {
    /// CPUs this process may use.
    pub nproc: usize,
    /// From /proc/cpuinfo.
    pub cpu_model: String,
    /// From /proc/sys/kernel/osrelease.
    pub kernel: String,
    /// /proc/loadavg before the run (other work on the machine).
    pub loadavg_before: String,
    /// When.
    pub date: String,
    /// `haproxy -v`, first line.
    pub haproxy_version: String,
    /// `svcnet version`, and the revision when known.
    pub svcnet_version: String,
    /// Bulk connections.
    pub streams: usize,
    /// Bulk MiB per run.
    pub bulk_mib: u64,
    /// Connection workers.
    pub workers: usize,
    /// Seconds per connections run.
    pub seconds: f64,
    /// Request size.
    pub request_bytes: usize,
    /// Rounds.
    pub rounds: usize,
    /// Client source addresses.
    pub sources: u8,
    /// Generator threads.
    pub client_threads: usize,
}

/// Every sample of a run of the benchmark.
pub struct Report {
    setup: Setup,
    bulk: [Vec<BulkSample>; 3],
    conns: [Vec<ConnSample>; 3],
    /// /proc/loadavg after the run.
    pub loadavg_after: String,
}

/// The samples of one target, in round order.
struct Samples<'a> {
    bulk: &'a [BulkSample],
    conns: &'a [ConnSample],
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "–".to_string(),
    }
}

fn ratio(svcnet: Option<f64>, haproxy: Option<f64>) -> Option<f64> {
    match (svcnet, haproxy) {
        (Some(s), Some(h)) if h > 0.0 => Some(s / h),
        _ => None,
    }
}

fn verdict(r: Option<f64>, target: f64) -> &'static str {
    match r {
        Some(r) if r >= target => "met",
        Some(_) => "missed",
        None => "not measured",
    }
}

impl Report {
    /// An empty report.
    pub fn new(setup: Setup) -> Report {
        Report {
            setup,
            bulk: Default::default(),
            conns: Default::default(),
            loadavg_after: String::new(),
        }
    }

    /// Records a bulk run.
    pub fn bulk(&mut self, which: Which, s: BulkSample) {
        self.bulk[which.index()].push(s);
    }

    /// Records a new-connections run.
    pub fn conns(&mut self, which: Which, s: ConnSample) {
        self.conns[which.index()].push(s);
    }

    fn bulk_median(&self, which: Which, f: impl Fn(&BulkSample) -> Option<f64>) -> Option<f64> {
        median(self.bulk[which.index()].iter().filter_map(f).collect())
    }

    fn conns_median(&self, which: Which, f: impl Fn(&ConnSample) -> Option<f64>) -> Option<f64> {
        median(self.conns[which.index()].iter().filter_map(f).collect())
    }

    /// svcnet / haproxy of each round, from one value per target and round: the spread
    /// shows how much the machine's noise moves a ratio.
    fn per_round(&self, values: impl Fn(&Samples<'_>) -> Vec<f64>) -> String {
        let h = values(&self.samples(Which::Haproxy));
        let v = values(&self.samples(Which::Svcnet));
        h.iter()
            .zip(&v)
            .map(|(h, v)| cell(ratio(Some(*v), Some(*h)), 2))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn samples(&self, which: Which) -> Samples<'_> {
        Samples {
            bulk: &self.bulk[which.index()],
            conns: &self.conns[which.index()],
        }
    }

    /// The whole report in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        let s = &self.setup;
        let mut table = Table::new();
        table.load_style(presets::ASCII_MARKDOWN).set_header(vec![
            "metric",
            "direct",
            "haproxy",
            "svcnet",
            "svcnet / haproxy",
            "target",
        ]);

        type Row<'a> = (
            &'a str,
            usize,
            Box<dyn Fn(Which) -> Option<f64> + 'a>,
            &'a str,
        );
        let rows: Vec<Row> = vec![
            (
                "bulk throughput, GB/s (higher is better)",
                2,
                Box::new(|w| self.bulk_median(w, |b| Some(b.gbps))),
                "≥ 1.00",
            ),
            (
                "bulk: proxy CPU, s per GB",
                3,
                Box::new(|w| self.bulk_median(w, |b| b.proxy_s_per_gb)),
                "",
            ),
            (
                "bulk: proxy busy cores",
                2,
                Box::new(|w| self.bulk_median(w, |b| b.proxy_cores)),
                "",
            ),
            (
                "bulk: bench busy cores (client + backend)",
                2,
                Box::new(|w| self.bulk_median(w, |b| Some(b.own_cores))),
                "",
            ),
            (
                "new connections / s (higher is better)",
                0,
                Box::new(|w| self.conns_median(w, |c| Some(c.rate))),
                "≥ 0.80",
            ),
            (
                "connect p50, µs",
                0,
                Box::new(|w| self.conns_median(w, |c| Some(c.connect_p50_us))),
                "",
            ),
            (
                "connect p99, µs",
                0,
                Box::new(|w| self.conns_median(w, |c| Some(c.connect_p99_us))),
                "",
            ),
            (
                "request round trip p50, µs",
                0,
                Box::new(|w| self.conns_median(w, |c| Some(c.rtt_p50_us))),
                "",
            ),
            (
                "request round trip p99, µs",
                0,
                Box::new(|w| self.conns_median(w, |c| Some(c.rtt_p99_us))),
                "",
            ),
            (
                "conns: proxy CPU, µs per connection",
                1,
                Box::new(|w| self.conns_median(w, |c| c.proxy_us_per_conn)),
                "",
            ),
            (
                "conns: proxy busy cores",
                2,
                Box::new(|w| self.conns_median(w, |c| c.proxy_cores)),
                "",
            ),
            (
                "conns: bench busy cores (client + backend)",
                2,
                Box::new(|w| self.conns_median(w, |c| Some(c.own_cores))),
                "",
            ),
        ];
        for (name, decimals, value, target) in &rows {
            let [d, h, v] = Which::ALL.map(value);
            table.add_row(vec![
                name.to_string(),
                cell(d, *decimals),
                cell(h, *decimals),
                cell(v, *decimals),
                cell(ratio(v, h), 2),
                target.to_string(),
            ]);
        }

        let throughput = ratio(
            self.bulk_median(Which::Svcnet, |b| Some(b.gbps)),
            self.bulk_median(Which::Haproxy, |b| Some(b.gbps)),
        );
        let conn_rate = ratio(
            self.conns_median(Which::Svcnet, |c| Some(c.rate)),
            self.conns_median(Which::Haproxy, |c| Some(c.rate)),
        );

        writeln!(
            out,
            "# bench/l4: svcnet's ClusterIP against haproxy (mode tcp)\n"
        )?;
        writeln!(
            out,
            "Written by `bash bench/l4/run.sh`. Every number below comes from that one run; \
             README.md says how to read them.\n"
        )?;
        writeln!(out, "## Machine and versions\n")?;
        writeln!(out, "- date: {}", s.date)?;
        writeln!(out, "- CPU: {} × {}", s.nproc, s.cpu_model)?;
        writeln!(out, "- kernel: Linux {}", s.kernel)?;
        writeln!(
            out,
            "- load average before / after: {} / {} (other work on the machine)",
            s.loadavg_before, self.loadavg_after
        )?;
        writeln!(
            out,
            "- haproxy: {} (nbthread: its default, one per CPU; no splice)",
            s.haproxy_version
        )?;
        writeln!(
            out,
            "- svcnet: {} (`svcnet up`, tokio runtime with one worker per CPU)\n",
            s.svcnet_version
        )?;
        writeln!(out, "## Workloads\n")?;
        writeln!(
            out,
            "- bulk: {} connections each send {} MiB into the backend's sink \
             ({} MiB per run); GB/s = 10^9 bytes per second, until the sink has counted every byte",
            s.streams,
            s.bulk_mib / s.streams as u64,
            s.bulk_mib
        )?;
        writeln!(
            out,
            "- new connections: {} workers for {} s each loop connect → write {} bytes → read \
             the echo → close with a reset; connect = until the handshake with the target \
             completed, request round trip = from the write until the whole echo was read \
             (includes the proxy's connect to the backend)",
            s.workers, s.seconds, s.request_bytes
        )?;
        writeln!(
            out,
            "- clients connect from {} source addresses (127.90.0.1 and up); load generator: \
             {} thread(s), backend: 1 thread, in one process (\"bench\" below)",
            s.sources, s.client_threads
        )?;
        writeln!(
            out,
            "- {} rounds; in each, the targets take turns in a rotating order; the table shows \
             the median of the rounds, metric by metric\n",
            s.rounds
        )?;
        writeln!(out, "## Results (median of {} rounds)\n", s.rounds)?;
        writeln!(out, "{table}\n")?;
        writeln!(out, "## Targets\n")?;
        writeln!(
            out,
            "- bulk throughput at least haproxy's: svcnet / haproxy = {} → **{}** \
             (round by round: {})",
            cell(throughput, 3),
            verdict(throughput, TARGET_THROUGHPUT),
            self.per_round(|r| r.bulk.iter().map(|b| b.gbps).collect())
        )?;
        writeln!(
            out,
            "- new connections per second at least 80% of haproxy's: svcnet / haproxy = {} → \
             **{}** (round by round: {})\n",
            cell(conn_rate, 3),
            verdict(conn_rate, TARGET_CONN_RATE),
            self.per_round(|r| r.conns.iter().map(|c| c.rate).collect())
        )?;
        writeln!(out, "## Notes\n")?;
        if s.nproc <= 2 {
            writeln!(
                out,
                "- This machine has {} CPU(s). The load generator and the backend run on the \
                 same CPUs as the proxy under test and take a large share of them (the \"bench \
                 busy cores\" rows), so every proxy is measured short of CPU. The generator is \
                 the same for both proxies, so the ratios hold; the absolute numbers would be \
                 higher with the generator on other CPUs.",
                s.nproc
            )?;
        }
        writeln!(
            out,
            "- \"direct\" is the backend without a proxy: the ceiling of this machine and \
             generator, not a competitor. Busy cores are CPU time (all threads, from \
             /proc/PID/task/*/schedstat) over wall time."
        )?;
        for which in Which::ALL {
            let errors: u64 = self.conns[which.index()].iter().map(|c| c.errors).sum();
            if errors > 0 {
                let first = self.conns[which.index()]
                    .iter()
                    .find_map(|c| c.first_error.clone())
                    .unwrap_or_default();
                writeln!(
                    out,
                    "- {}: {errors} failed connection cycles (first: {first})",
                    which.name()
                )?;
            }
        }
        writeln!(out, "\n## Every round\n")?;
        let mut raw = Table::new();
        raw.load_style(presets::ASCII_MARKDOWN).set_header(vec![
            "round",
            "target",
            "bulk GB/s",
            "conn/s",
            "connect p50 / p99 µs",
            "request p50 / p99 µs",
            "connections (errors)",
        ]);
        for round in 0..s.rounds {
            for which in Which::rotated(round) {
                let b = self.bulk[which.index()].get(round);
                let c = self.conns[which.index()].get(round);
                raw.add_row(vec![
                    (round + 1).to_string(),
                    which.name().to_string(),
                    cell(b.map(|b| b.gbps), 2),
                    cell(c.map(|c| c.rate), 0),
                    c.map(|c| format!("{:.0} / {:.0}", c.connect_p50_us, c.connect_p99_us))
                        .unwrap_or_default(),
                    c.map(|c| format!("{:.0} / {:.0}", c.rtt_p50_us, c.rtt_p99_us))
                        .unwrap_or_default(),
                    c.map(|c| format!("{} ({})", c.done, c.errors))
                        .unwrap_or_default(),
                ]);
            }
        }
        writeln!(out, "Rows in the order they ran.\n\n{raw}")
    }
}
