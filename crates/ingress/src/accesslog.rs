//! The access log: one line per request, as nginx's `access_log`, in logfmt (`text`) or
//! JSON lines (`json`).
//!
//! Fields: `ts`, `ingress`, `host`, `path`, `method`, `client`, `service`, `pod`,
//! `upstream`, `status`, `duration_ms`, `upstream_ms` (`-1` when no upstream was
//! contacted), `reason` (why the controller answered itself, empty otherwise).
//!
//! It is not a `tracing` event: formatting a 13-field event through tracing-subscriber and
//! writing it with one syscall per request cost about 6 µs of CPU per request (measured,
//! bench/ingress), a quarter of the proxy's budget. Lines are formatted by hand into a
//! shared buffer and written by a background thread every [`FLUSH_EVERY`] (or sooner when
//! [`FLUSH_AT`] bytes are pending), as nginx's `access_log ... buffer=` does. To a regular
//! file a batch goes out in one `write`; to a pipe or a terminal in whole lines of at most
//! 4 KiB per `write`, so that they do not interleave with other writers of the same pipe.
//! At most [`FLUSH_EVERY`] of lines are lost if the process is killed.
//!
//! The writer runs at the lowest priority (nice 19): it shares the workers' CPUs, and at
//! normal priority its wake-up preempted a worker in the middle of a burst of requests for
//! the ~20-80 µs a batch takes. Should it fall [`WRITE_INLINE_AT`] bytes behind (a CPU
//! saturated by the workers), the thread that logs writes the batch itself, so memory
//! stays bounded and no line is dropped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use svcnet_model::types::ObjectKey;

/// Pending lines are written at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Pending lines are written as soon as this many bytes wait.
pub const FLUSH_AT: usize = 64 * 1024;

/// The most bytes handed to one `write` (whole lines) on a pipe: atomic there (PIPE_BUF).
const WRITE_CHUNK: usize = 4096;

/// Pending bytes at which the thread that logs writes them itself, the writer thread
/// being starved of CPU.
pub const WRITE_INLINE_AT: usize = 16 * FLUSH_AT;

/// The nice value of the writer thread.
const WRITER_NICE: i32 = 19;

/// Where the access log goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Nowhere.
    #[default]
    Off,
    /// Standard error, beside the other logs.
    Stderr,
    /// A file, appended to (created when missing).
    File(PathBuf),
}

/// How lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `key=value` pairs (logfmt), values quoted when they need it.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The access log's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Where.
    pub target: AccessLogTarget,
    /// How.
    pub format: AccessLogFormat,
}

/// One request's log entry.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    /// `namespace/name` of the Ingress, empty when no route matched.
    pub ingress: &'a str,
    /// The request's host.
    pub host: &'a str,
    /// The request's path.
    pub path: &'a str,
    /// The method.
    pub method: &'a str,
    /// The client address.
    pub client: Option<IpAddr>,
    /// The Service.
    pub service: Option<&'a ObjectKey>,
    /// The pod that answered.
    pub pod: Option<&'a ObjectKey>,
    /// The endpoint address.
    pub upstream: Option<SocketAddr>,
    /// The status sent.
    pub status: u16,
    /// Total time to the response head, ms.
    pub duration_ms: f64,
    /// Time spent waiting for the upstream, ms.
    pub upstream_ms: Option<f64>,
    /// Why the controller answered itself.
    pub reason: &'a str,
}

struct Pending {
    buf: Vec<u8>,
    closed: bool,
    /// The writer was woken for this batch: one wake-up (a futex call) per batch, not one
    /// per line until the writer gets the CPU.
    woken: bool,
}

struct Inner {
    format: AccessLogFormat,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while a batch is written (lock order: `out`, then `pending`), so that batches
    /// go out in the order they were taken.
    out: Mutex<Sink>,
}

/// Where the lines go.
struct Sink {
    out: Box<dyn std::io::Write + Send>,
    /// A regular file: a batch in one `write` (a `write` to a file is not interleaved with
    /// another's). Otherwise whole lines in chunks of at most [`WRITE_CHUNK`].
    file: bool,
}

impl Sink {
    fn write(&mut self, batch: &[u8]) {
        if self.file {
            // Nowhere to report a failure: the log itself is what failed.
            let _ = self.out.write_all(batch);
        } else {
            write_lines(&mut *self.out, batch);
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The access log writer. Cheap to clone; the last clone dropped (or [`AccessLog::close`])
/// writes what is pending.
#[derive(Clone)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
    /// The writer thread, joined by `close`.
    thread: Option<Arc<Mutex<Option<std::thread::JoinHandle<()>>>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl AccessLog {
    /// A log that writes nothing.
    pub fn off() -> AccessLog {
        AccessLog {
            inner: None,
            thread: None,
        }
    }

    /// Opens the target and starts the writer thread.
    pub fn open(cfg: &AccessLogConfig) -> std::io::Result<AccessLog> {
        let sink = match &cfg.target {
            AccessLogTarget::Off => return Ok(AccessLog::off()),
            AccessLogTarget::Stderr => Sink {
                file: is_regular_file(std::io::stderr()),
                out: Box::new(std::io::stderr()),
            },
            AccessLogTarget::File(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?;
                Sink {
                    file: is_regular_file(&f),
                    out: Box::new(f),
                }
            }
        };
        let inner = Arc::new(Inner {
            format: cfg.format,
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(FLUSH_AT),
                closed: false,
                woken: false,
            }),
            wake: Condvar::new(),
            out: Mutex::new(sink),
        });
        let writer = inner.clone();
        let handle = std::thread::Builder::new()
            .name("svcnet-access-log".into())
            .spawn(move || write_loop(&writer))?;
        Ok(AccessLog {
            inner: Some(inner),
            thread: Some(Arc::new(Mutex::new(Some(handle)))),
        })
    }

    /// True when lines are written somewhere.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Appends one entry.
    pub fn log(&self, e: &Entry<'_>) {
        let Some(inner) = &self.inner else {
            return;
        };
        // Format outside the lock, into a per-thread scratch line.
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            format_entry(&mut line, e, inner.format);
            let mut p = locked(&inner.pending);
            p.buf.extend_from_slice(line.as_bytes());
            if p.buf.len() >= FLUSH_AT && !p.woken {
                p.woken = true;
                inner.wake.notify_one();
            }
            if p.buf.len() >= WRITE_INLINE_AT {
                // The writer is starved (or busy writing: then it is making progress, and
                // this line waits for its next batch). Never blocks on `out` while
                // holding `pending`: the writer takes them the other way round.
                let mut sink = match inner.out.try_lock() {
                    Ok(s) => s,
                    Err(TryLockError::Poisoned(e)) => e.into_inner(),
                    Err(TryLockError::WouldBlock) => return,
                };
                let batch = std::mem::replace(&mut p.buf, Vec::with_capacity(FLUSH_AT));
                p.woken = false;
                drop(p);
                sink.write(&batch);
            }
        });
    }

    /// Writes what is pending and stops the writer thread.
    pub fn close(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        locked(&inner.pending).closed = true;
        inner.wake.notify_one();
        let handle = self
            .thread
            .as_ref()
            .and_then(|t| t.lock().unwrap_or_else(PoisonError::into_inner).take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn write_loop(inner: &Inner) {
    // Linux nice values are per thread: this lowers the writer alone. Failing to (a
    // platform without it) only costs latency.
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), WRITER_NICE);
    let mut batch = Vec::with_capacity(FLUSH_AT);
    loop {
        {
            let p = locked(&inner.pending);
            if p.buf.len() < FLUSH_AT && !p.closed {
                drop(
                    inner
                        .wake
                        .wait_timeout(p, FLUSH_EVERY)
                        .unwrap_or_else(PoisonError::into_inner),
                );
            }
        }
        let mut sink = locked(&inner.out);
        let closed = {
            let mut p = locked(&inner.pending);
            std::mem::swap(&mut p.buf, &mut batch);
            p.woken = false;
            p.closed
        };
        sink.write(&batch);
        batch.clear();
        if closed {
            let _ = sink.out.flush();
            return;
        }
    }
}

/// True when `fd` is a regular file (not a pipe, socket or terminal).
fn is_regular_file(fd: impl std::os::fd::AsFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
    })
}

/// Writes whole lines, at most [`WRITE_CHUNK`] bytes per `write` (a longer line alone).
///
/// A batch is written in one go. Yielding the CPU between writes (so that a worker on the
/// same CPU waits for one write, not ~80 µs for a 64 KiB batch) starved the writer at
/// full load: the pending buffer grew to megabytes and its reallocations stalled the
/// worker for tens of milliseconds (wrk's p99 went from 1.1-1.5 ms to 47-86 ms). The
/// writer's low priority and [`WRITE_INLINE_AT`] are the answer kept.
fn write_lines(out: &mut dyn std::io::Write, mut data: &[u8]) {
    while !data.is_empty() {
        let cut = if data.len() <= WRITE_CHUNK {
            data.len()
        } else {
            match data[..WRITE_CHUNK].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => data
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |i| i + 1),
            }
        };
        if out.write_all(&data[..cut]).is_err() {
            // Nowhere to report it: the log itself is what failed.
            return;
        }
        data = &data[cut..];
    }
}

/// Milliseconds with microsecond precision (integer arithmetic: float formatting showed
/// in the profile).
fn push_ms(out: &mut String, ms: f64) {
    // Saturating float-to-int conversion; durations are far below the limits.
    let us = (ms * 1000.0).round() as i64;
    if us < 0 {
        out.push('-');
    }
    let us = us.unsigned_abs();
    push_u64(out, us / 1000);
    push_frac3(out, us % 1000);
}

/// `n` in decimal.
fn push_u64(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    out.push_str(std::str::from_utf8(crate::h1server::fmt_u64(n, &mut buf)).unwrap_or("0"));
}

/// `.` and three digits of `n` (below 1000).
fn push_frac3(out: &mut String, n: u64) {
    out.push('.');
    for d in [n / 100 % 10, n / 10 % 10, n % 10] {
        out.push(char::from(b'0' + d as u8));
    }
}

/// `namespace/name`, or nothing.
fn push_key(out: &mut String, key: Option<&ObjectKey>) {
    if let Some(k) = key {
        out.push_str(&k.namespace);
        out.push('/');
        out.push_str(&k.name);
    }
}

fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(o));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn push_socket_addr(out: &mut String, a: SocketAddr) {
    if a.is_ipv6() {
        out.push('[');
    }
    push_ip(out, a.ip());
    if a.is_ipv6() {
        out.push(']');
    }
    out.push(':');
    push_u64(out, u64::from(a.port()));
}

/// The RFC 3339 timestamp with milliseconds (`2026-11-25T02:12:38.123Z`, as jiff's
/// `{:.3}` writes it); the part up to the second is formatted once a second per thread.
fn push_timestamp(out: &mut String) {
    struct Second {
        at: i64,
        text: String,
    }
    thread_local! {
        static SECOND: std::cell::RefCell<Second> =
            const { std::cell::RefCell::new(Second { at: i64::MIN, text: String::new() }) };
    }
    let now = jiff::Timestamp::now();
    let (secs, millis) = (now.as_second(), now.subsec_millisecond());
    SECOND.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            let _ = write!(out, "{now:.3}");
            return;
        };
        if s.at != secs {
            s.text.clear();
            let whole = jiff::Timestamp::from_second(secs).unwrap_or(now);
            let _ = write!(s.text, "{whole:.0}");
            // `{:.0}` ends in `Z`; the milliseconds go before it.
            s.text.pop();
            s.at = secs;
        }
        out.push_str(&s.text);
    });
    push_frac3(out, u64::try_from(millis).unwrap_or(0));
    out.push('Z');
}

/// One line, newline included.
pub fn format_entry(out: &mut String, e: &Entry<'_>, format: AccessLogFormat) {
    // One scratch for the three composed values (`client`, `service`, `pod`).
    let mut scratch = String::with_capacity(128);
    if let Some(ip) = e.client {
        push_ip(&mut scratch, ip);
    }
    let client_end = scratch.len();
    push_key(&mut scratch, e.service);
    let service_end = scratch.len();
    push_key(&mut scratch, e.pod);
    let client = &scratch[..client_end];
    let service = &scratch[client_end..service_end];
    let pod = &scratch[service_end..];
    match format {
        AccessLogFormat::Text => {
            out.push_str("ts=");
            push_timestamp(out);
            out.push_str(" msg=access");
            for (k, v) in [
                ("ingress", e.ingress),
                ("host", e.host),
                ("path", e.path),
                ("method", e.method),
                ("client", client),
                ("service", service),
                ("pod", pod),
            ] {
                out.push(' ');
                out.push_str(k);
                out.push('=');
                logfmt_value(out, v);
            }
            out.push_str(" upstream=");
            if let Some(u) = e.upstream {
                push_socket_addr(out, u);
            }
            out.push_str(" status=");
            push_u64(out, u64::from(e.status));
            out.push_str(" duration_ms=");
            push_ms(out, e.duration_ms);
            out.push_str(" upstream_ms=");
            push_ms(out, e.upstream_ms.unwrap_or(-1.0));
            out.push_str(" reason=");
            logfmt_value(out, e.reason);
        }
        AccessLogFormat::Json => {
            out.push_str("{\"ts\":\"");
            push_timestamp(out);
            out.push_str("\",\"msg\":\"access\"");
            for (k, v) in [
                ("ingress", e.ingress),
                ("host", e.host),
                ("path", e.path),
                ("method", e.method),
                ("client", client),
                ("service", service),
                ("pod", pod),
            ] {
                out.push_str(",\"");
                out.push_str(k);
                out.push_str("\":");
                json_string(out, v);
            }
            out.push_str(",\"upstream\":\"");
            if let Some(u) = e.upstream {
                push_socket_addr(out, u);
            }
            out.push_str("\",\"status\":");
            push_u64(out, u64::from(e.status));
            out.push_str(",\"duration_ms\":");
            push_ms(out, e.duration_ms);
            out.push_str(",\"upstream_ms\":");
            push_ms(out, e.upstream_ms.unwrap_or(-1.0));
            out.push_str(",\"reason\":");
            json_string(out, e.reason);
            out.push('}');
        }
    }
    out.push('\n');
}

/// A logfmt value: bare when it is plain, else double-quoted with `\"`, `\\` and control
/// characters escaped (a request cannot forge a line or a field).
fn logfmt_value(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b > b' ' && b != b'"' && b != b'=' && b != b'\\' && b < 0x7f);
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    escape_into(out, v);
    out.push('"');
}

fn json_string(out: &mut String, v: &str) {
    out.push('"');
    escape_into(out, v);
    out.push('"');
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    static WEB: std::sync::LazyLock<ObjectKey> =
        std::sync::LazyLock::new(|| ObjectKey::new("default", "web"));
    static WEB_1: std::sync::LazyLock<ObjectKey> =
        std::sync::LazyLock::new(|| ObjectKey::new("default", "web-1"));

    fn entry() -> Entry<'static> {
        Entry {
            ingress: "default/web",
            host: "web.test",
            path: "/a b\"\n",
            method: "GET",
            client: Some("127.0.0.1".parse().unwrap()),
            service: Some(&WEB),
            pod: Some(&WEB_1),
            upstream: Some("127.244.0.3:8080".parse().unwrap()),
            status: 200,
            duration_ms: 1.23456,
            upstream_ms: None,
            reason: "",
        }
    }

    #[test]
    fn text_lines_quote_what_needs_it() {
        let mut s = String::new();
        format_entry(&mut s, &entry(), AccessLogFormat::Text);
        let rest = s.split_once(" msg=access ").unwrap().1;
        assert_eq!(
            rest,
            "ingress=default/web host=web.test path=\"/a b\\\"\\n\" method=GET client=127.0.0.1 \
             service=default/web pod=default/web-1 upstream=127.244.0.3:8080 status=200 \
             duration_ms=1.235 upstream_ms=-1.000 reason=\"\"\n"
        );
        assert_eq!(s.matches('\n').count(), 1);
    }

    #[test]
    fn timestamps_and_addresses_read_as_jiff_and_std_write_them() {
        for _ in 0..3 {
            let before = jiff::Timestamp::now();
            let mut s = String::new();
            push_timestamp(&mut s);
            let parsed: jiff::Timestamp = s.parse().unwrap();
            assert!(
                parsed
                    >= before.round(jiff::Unit::Millisecond).unwrap()
                        - jiff::SignedDuration::from_millis(1)
            );
            assert_eq!(s, format!("{parsed:.3}"));
        }
        for a in [
            "127.0.0.1:80",
            "10.200.3.255:65535",
            "[::1]:8080",
            "[fd00::1:2]:1",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut s = String::new();
            push_socket_addr(&mut s, a);
            assert_eq!(s, a.to_string());
        }
    }

    #[test]
    fn milliseconds() {
        for (ms, want) in [
            (0.0, "0.000"),
            (1.2345, "1.235"),
            (-1.0, "-1.000"),
            (12.0004, "12.000"),
        ] {
            let mut s = String::new();
            push_ms(&mut s, ms);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn json_lines_parse() {
        let mut s = String::new();
        format_entry(&mut s, &entry(), AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(s.trim_end()).unwrap();
        assert_eq!(v["path"], "/a b\"\n");
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream_ms"], -1.0);
        assert_eq!(v["client"], "127.0.0.1");
    }

    #[test]
    fn writes_whole_lines_in_small_chunks() {
        struct Rec(Vec<Vec<u8>>);
        impl std::io::Write for Rec {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.push(b.to_vec());
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let line = format!("{}\n", "x".repeat(99));
        let data = line.repeat(100);
        let mut rec = Rec(Vec::new());
        write_lines(&mut rec, data.as_bytes());
        assert!(
            rec.0
                .iter()
                .all(|w| w.len() <= WRITE_CHUNK && w.ends_with(b"\n"))
        );
        assert_eq!(rec.0.concat(), data.as_bytes());
    }

    #[test]
    fn a_file_log_gets_every_line_on_close() {
        let dir = std::env::temp_dir().join(format!("svcnet-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let _ = std::fs::remove_file(&path);
        let log = AccessLog::open(&AccessLogConfig {
            target: AccessLogTarget::File(path.clone()),
            format: AccessLogFormat::Json,
        })
        .unwrap();
        for _ in 0..1000 {
            log.log(&entry());
        }
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1000);
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn regular_files_and_the_rest() {
        let dir = std::env::temp_dir().join(format!("svcnet-access-kind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = std::fs::File::create(dir.join("f")).unwrap();
        assert!(is_regular_file(&f));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!is_regular_file(&a));
        let (r, _w) = std::io::pipe().unwrap();
        assert!(!is_regular_file(&r));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A writer thread that never gets the CPU: past WRITE_INLINE_AT the thread that logs
    /// writes the batch itself (unless a write is under way), and every line arrives once,
    /// in order.
    #[test]
    fn a_starved_writer_is_relieved_inline_and_order_holds() {
        let dir = std::env::temp_dir().join(format!("svcnet-access-inline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let file = std::fs::File::create(&path).unwrap();
        // No writer thread at all: only the inline path can write.
        let inner = Arc::new(Inner {
            format: AccessLogFormat::Text,
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                closed: false,
                woken: false,
            }),
            wake: Condvar::new(),
            out: Mutex::new(Sink {
                file: true,
                out: Box::new(file),
            }),
        });
        let log = AccessLog {
            inner: Some(inner.clone()),
            thread: None,
        };
        let paths: Vec<String> = (0..60_000).map(|i| format!("/{i}")).collect();
        let mut next = 0;
        let mut log_one = || {
            log.log(&Entry {
                path: &paths[next],
                ..entry()
            });
            next += 1;
            next
        };
        let written = || -> Vec<String> {
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| {
                    let v = l.split(" path=").nth(1).unwrap();
                    v.split(' ').next().unwrap().to_string()
                })
                .collect()
        };
        // Up to the mark nothing is written; at it, the whole batch.
        let mut n = 0;
        while written().is_empty() {
            n = log_one();
            assert!(n < 30_000, "nothing written after {n} lines");
        }
        let bytes = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(bytes >= WRITE_INLINE_AT, "{bytes} bytes written");
        assert_eq!(written(), paths[..n]);
        assert!(inner.pending.lock().unwrap().buf.is_empty());
        // A write under way (the lock held): lines pile up past the mark and wait...
        let held = inner.out.lock().unwrap();
        for _ in 0..n + 100 {
            log_one();
        }
        assert!(inner.pending.lock().unwrap().buf.len() >= WRITE_INLINE_AT);
        drop(held);
        assert_eq!(written().len(), n);
        // ...and go out, in order, with the next line.
        let m = log_one();
        assert_eq!(written(), paths[..m]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
