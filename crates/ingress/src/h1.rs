//! The fast HTTP/1.1 path to an upstream, for the request most traffic is: `GET` or
//! `HEAD`, no body, no upgrade, to a cleartext HTTP/1.1 backend. The request head is
//! written in one `write`, the response head parsed with httparse and the body framed
//! (RFC 9112 section 6.3: no body, `Content-Length`, chunked, or until close) and streamed
//! straight from the connection, all in the request's own task: no connection task, no
//! channel between the two. Keep-alive connections go back to a per-worker pool when
//! their body has been read to its end.
//!
//! hyper's client does the same with more generality (bodies, upgrades, 1xx hooks), at
//! about 2 µs of CPU more per request (12.6 % of a worker's time under wrk, measured with
//! perf); everything else still goes through it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Frame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::proxy::{self, ForwardedFields};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most response header fields accepted.
const MAX_HEADERS: usize = 128;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// An idle connection and when it went idle.
type Idle = (Conn, Instant);

/// The idle connections to one endpoint.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    /// An idle connection younger than `max_idle` at `now`, if any.
    pub fn take(&self, max_idle: Duration, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((c, at)) = idle.pop() {
            if now.saturating_duration_since(at) < max_idle {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, conn: Conn, max: usize) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < max {
            idle.push((conn, Instant::now()));
        }
    }

    /// True when no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.idle.lock().map_or(true, |i| i.is_empty())
    }
}

/// A connection to an HTTP/1.1 upstream, with what has been read and not yet used.
#[derive(Debug)]
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

impl From<&str> for Error {
    fn from(what: &str) -> Error {
        Error::Protocol(what.to_string())
    }
}

/// How an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection was closed or reset before any byte of a response: on a pooled
    /// connection, the request may be sent again on a new one.
    #[error("upstream closed the connection before answering")]
    Closed,
    /// Reading or writing failed.
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
    /// The response is not valid HTTP/1.1.
    #[error("invalid response from upstream: {0}")]
    Protocol(String),
}

/// The request head as written upstream: `METHOD TARGET HTTP/1.1`, the fields, a blank
/// line.
pub fn request_head(method: &Method, target: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut b = head_line(method, target, headers.len());
    for (k, v) in headers {
        field(&mut b, k.as_str(), v.as_bytes());
    }
    b.extend_from_slice(b"\r\n");
    b
}

/// The request head for a client's request, written straight from the client's fields:
/// what [`request_head`] writes after [`proxy::forward_headers`], the `extra` fields
/// (`auth-response-headers`, replacing the client's) and `Host` when the client sent none,
/// with no header map rebuilt on the way.
pub fn forward_head(
    method: &Method,
    target: &str,
    client: &HeaderMap,
    fields: &ForwardedFields<'_>,
    extra: &[(HeaderName, HeaderValue)],
    host: &str,
) -> Vec<u8> {
    let mut b = head_line(method, target, client.len() + 8);
    let named = if client.contains_key(header::CONNECTION) {
        proxy::connection_named(client)
    } else {
        Vec::new()
    };
    let in_extra = |n: &str| extra.iter().any(|(k, _)| k.as_str() == n);
    for (k, v) in client {
        if proxy::is_hop_by_hop(k)
            || ForwardedFields::replaces(k)
            || named.contains(k)
            || in_extra(k.as_str())
        {
            continue;
        }
        field(&mut b, k.as_str(), v.as_bytes());
    }
    fields.each(|n, v| {
        if !in_extra(n) {
            field(&mut b, n, v);
        }
    });
    for (k, v) in extra {
        field(&mut b, k.as_str(), v.as_bytes());
    }
    if !client.contains_key(header::HOST) && HeaderValue::from_str(host).is_ok() {
        field(&mut b, "host", host.as_bytes());
    }
    b.extend_from_slice(b"\r\n");
    b
}

fn head_line(method: &Method, target: &str, fields: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(256 + fields * 32);
    b.extend_from_slice(method.as_str().as_bytes());
    b.push(b' ');
    b.extend_from_slice(target.as_bytes());
    b.extend_from_slice(b" HTTP/1.1\r\n");
    b
}

fn field(b: &mut Vec<u8>, name: &str, value: &[u8]) {
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b": ");
    b.extend_from_slice(value);
    b.extend_from_slice(b"\r\n");
}

/// A response head, and how its body is framed.
#[derive(Debug)]
pub struct Head {
    /// The status.
    pub status: StatusCode,
    /// The header fields, hop-by-hop ones left out.
    pub headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// How a message body is framed on an HTTP/1.1 connection (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body bytes (HEAD, 1xx, 204, 304, `Content-Length: 0`).
    Empty,
    /// `Content-Length`: so many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection.
    Close,
}

/// Writes `head` on `conn` and reads the response head. Informational (1xx) responses
/// before the final one are skipped.
pub async fn exchange(conn: &mut Conn, head: &[u8], is_head: bool) -> Result<Head, Error> {
    if let Err(e) = conn.io.write_all(head).await {
        return Err(closed_or(e));
    }
    let mut got_any = false;
    loop {
        if let Some((len, parsed)) = parse_head(&conn.buf, is_head)? {
            conn.buf.advance(len);
            match parsed {
                Some(h) => return Ok(h),
                None => continue, // 1xx
            }
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(Error::Protocol(format!(
                "response head larger than {MAX_HEAD} bytes"
            )));
        }
        match conn.fill().await {
            Ok(0) if !got_any => return Err(Error::Closed),
            Ok(0) => {
                return Err(Error::Protocol(
                    "connection closed in the response head".into(),
                ));
            }
            Ok(_) => got_any = true,
            Err(e) if !got_any => return Err(closed_or(e)),
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

fn closed_or(e: std::io::Error) -> Error {
    use std::io::ErrorKind::*;
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof => Error::Closed,
        _ => Error::Io(e),
    }
}

/// Parses a response head at the start of `buf`: `None` when more bytes are needed;
/// `Some((len, None))` for an informational response to skip.
fn parse_head(buf: &[u8], is_head: bool) -> Result<Option<(usize, Option<Head>)>, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Protocol(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| Error::Protocol(format!("status code {code}")))?;
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::Protocol(
                "101 to a request that asked for no upgrade".into(),
            ));
        }
        return Ok(Some((len, None)));
    }
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    // Headers the Connection field names are hop-by-hop too (RFC 9110 section 7.6.1).
    // A scan per field, no allocation: a head has a few dozen fields at most.
    let named = |name: &HeaderName| {
        resp.headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("connection"))
            .flat_map(|f| f.value.split(|&b| b == b','))
            .any(|t| {
                t.trim_ascii()
                    .eq_ignore_ascii_case(name.as_str().as_bytes())
            })
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coding = false;
    let mut close = resp.version == Some(0);
    for f in resp.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| Error::Protocol(format!("header name {:?}", f.name)))?;
        let value = HeaderValue::from_bytes(f.value)
            .map_err(|_| Error::Protocol(format!("value of header {}", f.name)))?;
        if name == http::header::CONTENT_LENGTH {
            let n = std::str::from_utf8(f.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::Protocol("invalid content-length".into()))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(Error::Protocol("two different content-lengths".into()));
            }
            content_length = Some(n);
        } else if name == http::header::TRANSFER_ENCODING {
            transfer_coding = true;
            // Chunked only counts as the last coding.
            chunked = value
                .to_str()
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name == http::header::CONNECTION {
            let v = value.to_str().unwrap_or_default();
            if v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")) {
                close = true;
            } else if v
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
            {
                close = false;
            }
        }
        if !proxy::is_hop_by_hop(&name) && !named(&name) {
            headers.append(name, value);
        }
    }
    if transfer_coding {
        // RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length, which a proxy
        // must not pass on beside it.
        headers.remove(http::header::CONTENT_LENGTH);
    }
    let framing =
        if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Empty
        } else if transfer_coding {
            if chunked {
                Framing::Chunked
            } else {
                Framing::Close
            }
        } else {
            match content_length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        };
    let keep_alive = !close && framing != Framing::Close;
    Ok(Some((
        len,
        Some(Head {
            status,
            headers,
            framing,
            keep_alive,
        }),
    )))
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data: bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// A response body read from the connection in the request's task.
#[derive(Debug)]
pub struct Body {
    conn: Option<Conn>,
    state: BodyState,
    keep_alive: bool,
    pool: Option<(Arc<Pool>, usize)>,
}

#[derive(Debug)]
enum BodyState {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

impl Body {
    /// The body of `head` on `conn`; the connection goes back to `pool` (holding at most
    /// `max_idle`) when the body has been read to its end and keep-alive allows it.
    pub fn new(conn: Conn, head: &Head, pool: Arc<Pool>, max_idle: usize) -> Body {
        let state = match head.framing {
            Framing::Empty => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(Chunk::Size),
            Framing::Close => BodyState::Close,
        };
        let mut b = Body {
            conn: Some(conn),
            state,
            keep_alive: head.keep_alive,
            pool: Some((pool, max_idle)),
        };
        if matches!(b.state, BodyState::Done) {
            b.finish();
        }
        b
    }

    /// True when nothing is left to read.
    pub fn is_end_stream(&self) -> bool {
        matches!(self.state, BodyState::Done)
    }

    /// Bytes left when the length is known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            BodyState::Length(n) => Some(n),
            BodyState::Done => Some(0),
            _ => None,
        }
    }

    fn finish(&mut self) {
        self.state = BodyState::Done;
        if let (Some(conn), Some((pool, max))) = (self.conn.take(), self.pool.take())
            && self.keep_alive
            && conn.buf.is_empty()
        {
            pool.give_back(conn, max);
        }
    }

    /// Ends the body with an error; the connection is closed, never pooled.
    fn fail(&mut self, e: impl Into<Error>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }

    /// The next frame of data, or the end.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = conn
                            .buf
                            .len()
                            .min(usize::try_from(left).unwrap_or(usize::MAX));
                        let data = conn.buf.split_to(n).freeze();
                        let left = left - n as u64;
                        self.state = BodyState::Length(left);
                        if left == 0 {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(conn.poll_fill(cx)) {
                        Ok(0) => return self.fail("connection closed before the end of the body"),
                        Ok(_) => {}
                        Err(e) => return self.fail(e),
                    }
                }
                BodyState::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(conn.poll_fill(cx)) {
                        Ok(0) => {
                            self.state = BodyState::Done;
                            self.conn = None;
                            return Poll::Ready(None);
                        }
                        Ok(_) => {}
                        Err(e) => return self.fail(e),
                    }
                }
                BodyState::Chunked(c) => match step_chunked(&mut conn.buf, c) {
                    Ok(Step::Data(data, next)) => {
                        self.state = BodyState::Chunked(next);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Step::Next(next)) => self.state = BodyState::Chunked(next),
                    Ok(Step::End) => {
                        self.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::More) => match ready!(conn.poll_fill(cx)) {
                        Ok(0) => return self.fail("connection closed inside a chunked body"),
                        Ok(_) => {}
                        Err(e) => return self.fail(e),
                    },
                    Err(e) => {
                        return self.fail(e);
                    }
                },
            }
        }
    }
}

/// One step of the chunked decoder over the buffered bytes.
#[derive(Debug)]
enum Step {
    /// Data, then the next state.
    Data(Bytes, Chunk),
    /// A line was consumed.
    Next(Chunk),
    /// The body (and its trailers) ended.
    End,
    /// More bytes are needed.
    More,
}

fn line(buf: &BytesMut) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn step_chunked(buf: &mut BytesMut, c: Chunk) -> Result<Step, Error> {
    match c {
        Chunk::Size => {
            let Some(end) = line(buf) else {
                return if buf.len() > 4096 {
                    Err(Error::Protocol("chunk-size line too long".into()))
                } else {
                    Ok(Step::More)
                };
            };
            let text = std::str::from_utf8(&buf[..end])
                .map_err(|_| Error::Protocol("chunk-size line".into()))?;
            // chunk-size [; extensions]
            let hex = text.split(';').next().unwrap_or("").trim();
            if hex.is_empty() || hex.len() > 16 {
                return Err(Error::Protocol(format!("chunk size {hex:?}")));
            }
            let size = u64::from_str_radix(hex, 16)
                .map_err(|_| Error::Protocol(format!("chunk size {hex:?}")))?;
            buf.advance(end + 2);
            Ok(Step::Next(if size == 0 {
                Chunk::Trailers
            } else {
                Chunk::Data(size)
            }))
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::More);
            }
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let data = buf.split_to(n).freeze();
            let left = left - n as u64;
            Ok(Step::Data(
                data,
                if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                },
            ))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::More);
            }
            if &buf[..2] != b"\r\n" {
                return Err(Error::Protocol("no CRLF after chunk data".into()));
            }
            buf.advance(2);
            Ok(Step::Next(Chunk::Size))
        }
        Chunk::Trailers => {
            let Some(end) = line(buf) else {
                return if buf.len() > MAX_HEAD {
                    Err(Error::Protocol("trailers too long".into()))
                } else {
                    Ok(Step::More)
                };
            };
            buf.advance(end + 2);
            // Trailer fields are dropped (nginx does not pass them on either); the empty
            // line ends the body.
            Ok(if end == 0 {
                Step::End
            } else {
                Step::Next(Chunk::Trailers)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn head(text: &str, is_head: bool) -> Head {
        let (len, h) = parse_head(text.as_bytes(), is_head).unwrap().unwrap();
        assert_eq!(len, text.len());
        h.unwrap()
    }

    #[test]
    fn hop_by_hop_fields_are_left_out() {
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nx-keep: 2\r\ncontent-length: 0\r\n\r\n",
            false,
        );
        let names: Vec<&str> = h.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep", "content-length"]);
        assert!(h.keep_alive);
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(12), true));
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", true);
        assert_eq!(h.framing, Framing::Empty);
        let h = head("HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Empty);
        let h = head(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Empty);
        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.headers.get("content-length").is_none());
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            false,
        );
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false);
        assert!(!h.keep_alive);
        let h = head(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
            false,
        );
        assert!(h.keep_alive);
        assert!(
            parse_head(
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                false
            )
            .is_err()
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false).is_err());
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-len", false)
                .unwrap()
                .is_none()
        );
        // 1xx is skipped; 101 to a plain request is an error.
        let (len, none) = parse_head(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(none.is_none() && len > 0);
        assert!(parse_head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_err());
    }

    fn decode(input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut buf = BytesMut::from(input);
        let mut c = Chunk::Size;
        let mut out = Vec::new();
        loop {
            match step_chunked(&mut buf, c)? {
                Step::Data(d, next) => {
                    out.extend_from_slice(&d);
                    c = next;
                }
                Step::Next(next) => c = next,
                Step::End => return Ok(out),
                Step::More => return Err(Error::Protocol("incomplete".into())),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        assert_eq!(decode(b"5\r\nhello\r\n0\r\n\r\n").unwrap(), b"hello");
        assert_eq!(
            decode(b"3;name=v\r\nabc\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n").unwrap(),
            b"abc0123456789"
        );
        assert!(decode(b"5\r\nhelloXX0\r\n\r\n").is_err());
        assert!(decode(b"zz\r\n").is_err());
        assert!(decode(b"5\r\nhel").is_err());
    }
}
