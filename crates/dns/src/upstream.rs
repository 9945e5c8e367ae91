//! Forwarding names outside the owned zones to upstream resolvers, with a bounded cache of
//! their answers (success and denial, TTLs capped) and a limit on concurrent upstream
//! queries. Cluster names never reach this module.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::name::NameKey;

/// Limits of the forwarder.
#[derive(Clone, Debug)]
pub(crate) struct ForwarderLimits {
    /// Upstream queries in flight at once; more get SERVFAIL at once.
    pub(crate) max_concurrent: usize,
    /// Cached answers kept (oldest evicted first).
    pub(crate) cache_entries: usize,
    /// Longest time a positive answer is cached.
    pub(crate) max_ttl: Duration,
    /// Longest time a denial (NXDOMAIN, NODATA) is cached.
    pub(crate) max_negative_ttl: Duration,
    /// Time allowed to each upstream server before the next one is tried.
    pub(crate) timeout: Duration,
}

impl Default for ForwarderLimits {
    fn default() -> Self {
        ForwarderLimits {
            max_concurrent: 256,
            cache_entries: 10_000,
            max_ttl: Duration::from_secs(300),
            max_negative_ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Why forwarding failed; the client gets SERVFAIL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("too many upstream queries in flight")]
    Busy,
    #[error("no upstream server answered")]
    NoAnswer,
    #[error("the query cannot be forwarded (no question)")]
    BadQuery,
}

/// Cache key: the question folded to lower case, and the DO bit (answers differ).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    qname: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
}

struct CacheEntry {
    response: Vec<u8>,
    stored: Instant,
    expires: Instant,
}

#[derive(Default)]
struct Cache {
    map: HashMap<CacheKey, CacheEntry>,
    order: VecDeque<CacheKey>,
}

/// The upstream servers, the cache, and the concurrency limit.
pub(crate) struct Forwarder {
    servers: Vec<SocketAddr>,
    limits: ForwarderLimits,
    cache: Mutex<Cache>,
    in_flight: Semaphore,
    next_id: AtomicU16,
}

/// Where a forwarded answer came from (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Cache,
    Upstream,
}

impl Forwarder {
    pub(crate) fn new(servers: Vec<SocketAddr>, limits: ForwarderLimits) -> Forwarder {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Forwarder {
            servers,
            in_flight: Semaphore::new(limits.max_concurrent),
            limits,
            cache: Mutex::new(Cache::default()),
            next_id: AtomicU16::new((seed & 0xffff) as u16),
        }
    }

    /// Answers `query` from the cache or from the first upstream server that answers.
    /// The response carries the query's ID and the question exactly as asked.
    pub(crate) async fn forward(&self, query: &[u8]) -> Result<(Vec<u8>, Source), ForwardError> {
        let q = QuestionSpan::find(query).ok_or(ForwardError::BadQuery)?;
        let key = q.key(query).ok_or(ForwardError::BadQuery)?;
        if let Some(cached) = self.cached(&key, query, &q) {
            return Ok((cached, Source::Cache));
        }
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| ForwardError::Busy)?;
        let id = self.id();
        let mut upstream_query = query.to_vec();
        upstream_query[0..2].copy_from_slice(&id.to_be_bytes());
        for server in &self.servers {
            let attempt = tokio::time::timeout(
                self.limits.timeout,
                exchange(*server, &upstream_query, id, &q, query),
            )
            .await;
            let Ok(Ok(mut response)) = attempt else {
                continue;
            };
            response[0..2].copy_from_slice(&query[0..2]);
            // svcnet offers recursion for these names, whatever the upstream said.
            response[3] |= 0x80;
            self.store(key, &response);
            return Ok((response, Source::Upstream));
        }
        Err(ForwardError::NoAnswer)
    }

    fn id(&self) -> u16 {
        // IDs step by a large odd number: consecutive queries are not guessable from one
        // another at a glance; the random source port adds the real entropy.
        self.next_id.fetch_add(40503, Ordering::Relaxed)
    }

    fn cached(&self, key: &CacheKey, query: &[u8], q: &QuestionSpan) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut cache = self.cache.lock().ok()?;
        let entry = cache.map.get(key)?;
        if entry.expires <= now {
            cache.map.remove(key);
            return None;
        }
        let elapsed = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut response = entry.response.clone();
        drop(cache);
        response[0..2].copy_from_slice(&query[0..2]);
        // The question as asked (its case), at the same offsets.
        let span = q.start..q.end;
        if response.get(span.clone()).map(<[u8]>::len) == Some(span.len()) {
            response[span.clone()].copy_from_slice(&query[span]);
        }
        age_ttls(&mut response, elapsed);
        Some(response)
    }

    fn store(&self, key: CacheKey, response: &[u8]) {
        let Some(ttl) = cache_ttl(response, &self.limits) else {
            return;
        };
        let now = Instant::now();
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        while cache.map.len() >= self.limits.cache_entries {
            let Some(old) = cache.order.pop_front() else {
                break;
            };
            cache.map.remove(&old);
        }
        if cache.order.len() > self.limits.cache_entries * 2 {
            // Keys of entries that expired or were replaced linger in `order`; compact.
            let Cache { map, order } = &mut *cache;
            order.retain(|k| map.contains_key(k));
        }
        if cache
            .map
            .insert(
                key.clone(),
                CacheEntry {
                    response: response.to_vec(),
                    stored: now,
                    expires: now + ttl,
                },
            )
            .is_none()
        {
            cache.order.push_back(key);
        }
    }

    /// Number of cached answers.
    #[cfg(test)]
    pub(crate) fn cache_len(&self) -> usize {
        self.cache.lock().map(|c| c.map.len()).unwrap_or(0)
    }
}

/// One query and its answer over UDP, then over TCP when the answer is truncated.
async fn exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    q: &QuestionSpan,
    original: &[u8],
) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        let resp = &buf[..n];
        if !matches_query(resp, id, q, original) {
            // Not ours (late answer to an earlier query, or spoofed): keep waiting.
            continue;
        }
        if resp[2] & 0x02 == 0 {
            return Ok(resp.to_vec());
        }
        break;
    }
    // Truncated: ask again over TCP.
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let n = usize::from(stream.read_u16().await?);
    let mut resp = vec![0u8; n];
    stream.read_exact(&mut resp).await?;
    if !matches_query(&resp, id, q, original) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "upstream answer does not match the query",
        ));
    }
    Ok(resp)
}

/// A response to our query: our ID, QR set, the same question (case-insensitively).
fn matches_query(resp: &[u8], id: u16, q: &QuestionSpan, query: &[u8]) -> bool {
    if resp.len() < 12 || resp[0..2] != id.to_be_bytes() || resp[2] & 0x80 == 0 {
        return false;
    }
    let Some(rq) = QuestionSpan::find(resp) else {
        return false;
    };
    rq.end - rq.start == q.end - q.start
        && resp[rq.start..rq.end].eq_ignore_ascii_case(&query[q.start..q.end])
}

/// Where the single question of a message lies (uncompressed, right after the header).
#[derive(Clone, Copy, Debug)]
struct QuestionSpan {
    start: usize,
    /// End of the name.
    name_end: usize,
    /// End of QTYPE and QCLASS.
    end: usize,
}

impl QuestionSpan {
    fn find(msg: &[u8]) -> Option<QuestionSpan> {
        if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
            return None;
        }
        let start = 12;
        let mut pos = start;
        loop {
            let n = usize::from(*msg.get(pos)?);
            if n == 0 {
                pos += 1;
                break;
            }
            if n > 63 {
                return None;
            }
            pos += 1 + n;
        }
        let name_end = pos;
        let end = pos + 4;
        (end <= msg.len()).then_some(QuestionSpan {
            start,
            name_end,
            end,
        })
    }

    fn key(&self, msg: &[u8]) -> Option<CacheKey> {
        let name = NameKey::from_wire(&msg[self.start..self.name_end])?;
        let qtype = u16::from_be_bytes([msg[self.name_end], msg[self.name_end + 1]]);
        let qclass = u16::from_be_bytes([msg[self.name_end + 2], msg[self.name_end + 3]]);
        Some(CacheKey {
            qname: name.wire().into(),
            qtype,
            qclass,
            dnssec_ok: dnssec_ok(msg, self.end),
        })
    }
}

/// The DO bit of the query's OPT record, if it has one.
fn dnssec_ok(msg: &[u8], question_end: usize) -> bool {
    let mut found = false;
    let _ = walk_records(msg, question_end, |rtype, ttl_at, _| {
        if rtype == 41 {
            found = msg.get(ttl_at + 2).is_some_and(|b| b & 0x80 != 0);
        }
    });
    found
}

/// Calls `f(rtype, ttl_offset, section)` for every record after the question; `None` when
/// the message is malformed.
fn walk_records(
    msg: &[u8],
    question_end: usize,
    mut f: impl FnMut(u16, usize, usize),
) -> Option<()> {
    let counts = [
        u16::from_be_bytes([*msg.get(6)?, *msg.get(7)?]),
        u16::from_be_bytes([*msg.get(8)?, *msg.get(9)?]),
        u16::from_be_bytes([*msg.get(10)?, *msg.get(11)?]),
    ];
    let mut pos = question_end;
    for (section, count) in counts.into_iter().enumerate() {
        for _ in 0..count {
            // Owner name: labels up to the root or a compression pointer.
            loop {
                let n = *msg.get(pos)?;
                if n & 0xc0 == 0xc0 {
                    pos += 2;
                    break;
                }
                if n == 0 {
                    pos += 1;
                    break;
                }
                pos += 1 + usize::from(n);
            }
            let rtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
            let ttl_at = pos + 4;
            let rdlen = usize::from(u16::from_be_bytes([*msg.get(pos + 8)?, *msg.get(pos + 9)?]));
            pos += 10 + rdlen;
            if pos > msg.len() {
                return None;
            }
            f(rtype, ttl_at, section);
        }
    }
    Some(())
}

/// How long a response may be cached: the smallest TTL of its answer and authority
/// records (for a denial, the SOA's TTL and MINIMUM, RFC 2308), capped. `None` for
/// answers not worth caching (errors other than NXDOMAIN, truncated, malformed).
fn cache_ttl(resp: &[u8], limits: &ForwarderLimits) -> Option<Duration> {
    let q = QuestionSpan::find(resp)?;
    let rcode = resp[3] & 0x0f;
    if resp[2] & 0x02 != 0 || !(rcode == 0 || rcode == 3) {
        return None;
    }
    let ancount = u16::from_be_bytes([resp[6], resp[7]]);
    let negative = rcode == 3 || ancount == 0;
    let mut min: Option<u32> = None;
    walk_records(resp, q.end, |rtype, ttl_at, section| {
        if section == 2 || rtype == 41 {
            return;
        }
        let Some(ttl) = resp.get(ttl_at..ttl_at + 4) else {
            return;
        };
        let mut ttl = u32::from_be_bytes([ttl[0], ttl[1], ttl[2], ttl[3]]);
        if negative && rtype == 6 {
            // SOA MINIMUM is the last four octets of its rdata.
            let rdlen_at = ttl_at + 4;
            if let Some(rd) = resp.get(rdlen_at..rdlen_at + 2) {
                let rdlen = usize::from(u16::from_be_bytes([rd[0], rd[1]]));
                let end = rdlen_at + 2 + rdlen;
                if let Some(m) = resp.get(end.saturating_sub(4)..end) {
                    ttl = ttl.min(u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
                }
            }
        }
        min = Some(min.map_or(ttl, |m| m.min(ttl)));
    })?;
    let cap = if negative {
        limits.max_negative_ttl
    } else {
        limits.max_ttl
    };
    // A denial without SOA: cache briefly (RFC 2308 5 says not at all; a few seconds
    // keep a burst of retries off the upstream).
    let ttl = Duration::from_secs(u64::from(min.unwrap_or(5)));
    let ttl = ttl.min(cap);
    (!ttl.is_zero()).then_some(ttl)
}

/// Lowers every TTL (answer and authority; not OPT) by `elapsed` seconds.
fn age_ttls(resp: &mut [u8], elapsed: u32) {
    if elapsed == 0 {
        return;
    }
    let Some(q) = QuestionSpan::find(resp) else {
        return;
    };
    let mut offsets = Vec::new();
    let _ = walk_records(resp, q.end, |rtype, ttl_at, _| {
        if rtype != 41 {
            offsets.push(ttl_at);
        }
    });
    for at in offsets {
        if let Some(b) = resp.get_mut(at..at + 4) {
            let ttl = u32::from_be_bytes([b[0], b[1], b[2], b[3]]).saturating_sub(elapsed);
            b.copy_from_slice(&ttl.to_be_bytes());
        }
    }
}

/// The largest UDP response a client takes: its EDNS buffer size (at least 512, at
/// most `max`), or 512 without EDNS.
pub(crate) fn client_udp_limit(query: &[u8], max: u16) -> usize {
    let Some(q) = QuestionSpan::find(query) else {
        return 512;
    };
    let mut size = None;
    let _ = walk_records(query, q.end, |rtype, ttl_at, _| {
        if rtype == 41 {
            // The OPT record's CLASS field (just before the TTL) is the buffer size.
            size = query
                .get(ttl_at - 2..ttl_at)
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
        }
    });
    match size {
        Some(s) => usize::from(s.clamp(512, max.max(512))),
        None => 512,
    }
}

/// A response cut to its header and question with TC set, so the client retries over
/// TCP.
pub(crate) fn truncate(resp: &[u8]) -> Option<Vec<u8>> {
    let q = QuestionSpan::find(resp)?;
    let mut out = resp[..q.end].to_vec();
    out[2] |= 0x02;
    out[6..12].fill(0);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `example.com. A` with one A record of TTL `ttl`, or NXDOMAIN with a
    /// SOA (TTL 3600, minimum `ttl`).
    fn response(nx: bool, ttl: u32) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        m[3] |= if nx { 3 } else { 0 };
        m.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        if nx {
            m[9] = 1;
            m.extend_from_slice(b"\xc0\x0c\x00\x06\x00\x01");
            m.extend_from_slice(&3600u32.to_be_bytes());
            let rdata: Vec<u8> = [
                b"\x02ns\xc0\x0c".as_slice(),
                b"\x02hm\xc0\x0c",
                &1u32.to_be_bytes(),
                &1u32.to_be_bytes(),
                &1u32.to_be_bytes(),
                &1u32.to_be_bytes(),
                &ttl.to_be_bytes(),
            ]
            .concat();
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(&rdata);
        } else {
            m[7] = 1;
            m.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01");
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        }
        m
    }

    #[test]
    fn ttls_are_capped_and_denials_use_soa_minimum() {
        let limits = ForwarderLimits::default();
        assert_eq!(
            cache_ttl(&response(false, 60), &limits),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            cache_ttl(&response(false, 86400), &limits),
            Some(limits.max_ttl)
        );
        assert_eq!(
            cache_ttl(&response(true, 10), &limits),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            cache_ttl(&response(true, 900), &limits),
            Some(limits.max_negative_ttl)
        );
        assert_eq!(cache_ttl(&response(false, 0), &limits), None);
        let mut servfail = response(false, 60);
        servfail[3] = 0x82;
        assert_eq!(cache_ttl(&servfail, &limits), None);
    }

    #[test]
    fn ages_ttls() {
        let mut r = response(false, 60);
        age_ttls(&mut r, 15);
        let at = r.len() - 10;
        assert_eq!(
            u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]),
            45
        );
    }

    #[test]
    fn cache_is_bounded_and_keyed_case_insensitively() {
        let f = Forwarder::new(
            vec![],
            ForwarderLimits {
                cache_entries: 2,
                ..ForwarderLimits::default()
            },
        );
        let r = response(false, 60);
        let q = QuestionSpan::find(&r).unwrap();
        f.store(q.key(&r).unwrap(), &r);
        let mut query = r[..q.end].to_vec();
        query[2] = 0x01;
        query[3] = 0;
        query[0] = 0xab;
        query[13] = b'E'; // "Example"
        let qs = QuestionSpan::find(&query).unwrap();
        let hit = f.cached(&qs.key(&query).unwrap(), &query, &qs).unwrap();
        assert_eq!(hit[0], 0xab, "the client's ID");
        assert_eq!(hit[13], b'E', "the question as asked");
        for name in [b"a", b"b", b"c"] {
            let mut other = r.clone();
            other[13] = name[0];
            f.store(q.key(&other).unwrap(), &other);
        }
        assert_eq!(f.cache_len(), 2);
    }
}
