//! The fast HTTP/1.1 server path, for the requests most traffic is: no body, no upgrade.
//!
//! A connection that speaks HTTP/1.1 (cleartext, or TLS with ALPN `http/1.1` or none)
//! starts here. Each request head is parsed with httparse straight from the connection's
//! buffer; the response head and a small body go out in one `write`. The first request
//! this path does not serve (a body, `Upgrade`, `Expect`, `CONNECT`, the HTTP/2 preface,
//! anything httparse rejects) hands the connection, with every byte read so far, to
//! hyper for the rest of its life ([`Ended::Handover`]): hyper stays the one
//! implementation of bodies, upgrades, h2c and error answers.
//!
//! hyper's server does what this does with more generality (a dispatcher, a service
//! call, an encoder per message) at about 1 µs of CPU more per request (perf, under wrk).

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::h1::Framing;
use crate::proxy::RespBody;

/// Largest request head served here; a longer one goes to hyper (which answers 431).
const MAX_HEAD: usize = 64 * 1024;
/// Most request header fields served here (hyper's default limit).
const MAX_HEADERS: usize = 100;
/// Read buffer size and growth step.
const READ_CHUNK: usize = 8 * 1024;
/// Body data up to this size is copied next to the head (one write); larger data is
/// written from its own buffer.
const COPY_MAX: usize = 16 * 1024;

/// How a connection served here ended.
#[derive(Debug)]
pub enum Ended<IO> {
    /// Closed: by the client, after `Connection: close`, at shutdown or on an error.
    Closed,
    /// A request this path does not serve: the connection, with the bytes read and not
    /// yet consumed in front, for hyper.
    Handover(Prefixed<IO>),
}

/// A connection with bytes already read in front of it.
#[derive(Debug)]
pub struct Prefixed<IO> {
    prefix: BytesMut,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// `AsyncWrite` for a wrapper `$t<T>` by its field `$f: T`, every call passed through.
macro_rules! delegate_async_write {
    ($t:ident, $f:ident) => {
        impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $t<T> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().$f).poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().$f).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().$f).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().$f).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$f.is_write_vectored()
            }
        }
    };
}
pub(crate) use delegate_async_write;

delegate_async_write!(Prefixed, io);

/// A parsed request head.
#[derive(Debug)]
struct Head {
    request: Request<Option<Incoming>>,
    /// Bytes of the head.
    len: usize,
    keep_alive: bool,
}

/// What the buffered bytes hold.
// Made and taken apart once per request on the stack: a box would cost an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Parse {
    /// A request this path serves.
    Mine(Head),
    /// Not a whole head yet.
    Partial,
    /// Something for hyper.
    NotMine,
}

/// Parses the request head at the start of `buf`.
fn parse(buf: &[u8]) -> Parse {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::NotMine,
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parse::NotMine;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parse::NotMine;
    };
    if method == Method::CONNECT {
        return Parse::NotMine;
    }
    let Ok(uri) = Uri::from_maybe_shared(Bytes::copy_from_slice(target.as_bytes())) else {
        return Parse::NotMine;
    };
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut keep_alive = version == Version::HTTP_11;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for f in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(f.name.as_bytes()) else {
            return Parse::NotMine;
        };
        if name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
            || (name == header::CONTENT_LENGTH && f.value.trim_ascii() != b"0")
        {
            return Parse::NotMine;
        }
        if name == header::CONNECTION {
            for token in f.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parse::NotMine;
                }
            }
        }
        let Ok(value) = HeaderValue::from_bytes(f.value) else {
            return Parse::NotMine;
        };
        headers.append(name, value);
    }
    let mut request = Request::new(None);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Parse::Mine(Head {
        request,
        len,
        keep_alive,
    })
}

/// The request head at the start of `buf` when this path serves it: the request (its
/// body is `None`), the head's length in bytes, and whether the connection may carry
/// another request after it. `None` for a partial head and for what goes to hyper. For
/// the fuzz oracle (`crates/ingress/tests/server_head_fuzz.rs`).
pub fn parse_request(buf: &[u8]) -> Option<(Request<Option<Incoming>>, usize, bool)> {
    match parse(buf) {
        Parse::Mine(h) => Some((h.request, h.len, h.keep_alive)),
        Parse::Partial | Parse::NotMine => None,
    }
}

/// Writes the response head into `out` and says how the body follows. Like hyper's
/// server: the `Content-Length` given (else `exact`, the body's exact size), else chunked for an
/// HTTP/1.1 client and close-delimited for an HTTP/1.0 one; `Date` when missing;
/// `Connection: close` when the connection ends after this response, `keep-alive` to a
/// persistent HTTP/1.0 client.
fn encode_head(
    out: &mut Vec<u8>,
    parts: &mut http::response::Parts,
    exact: Option<u64>,
    head_request: bool,
    version: Version,
    keep_alive: &mut bool,
) -> Framing {
    let status = parts.status;
    let h = &mut parts.headers;
    h.remove(header::TRANSFER_ENCODING);
    h.remove(header::CONNECTION);
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        h.remove(header::CONTENT_LENGTH);
    }
    let declared = {
        let mut values = h.get_all(header::CONTENT_LENGTH).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok()),
            _ => None,
        }
    };
    if declared.is_none() {
        h.remove(header::CONTENT_LENGTH);
    }
    let length = declared.or(exact);
    let framing = if bodiless_status {
        Framing::Empty
    } else {
        match length {
            Some(n) => {
                if declared.is_none() {
                    let mut itoa = [0u8; 20];
                    h.insert(
                        header::CONTENT_LENGTH,
                        HeaderValue::from_bytes(fmt_u64(n, &mut itoa))
                            .unwrap_or(HeaderValue::from_static("0")),
                    );
                }
                if head_request {
                    Framing::Empty
                } else {
                    Framing::Length(n)
                }
            }
            None if head_request => Framing::Empty,
            None if version == Version::HTTP_11 => Framing::Chunked,
            None => {
                *keep_alive = false;
                Framing::Close
            }
        }
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in h.iter() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !h.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        DATE.with(|d| d.borrow_mut().write(out));
        out.extend_from_slice(b"\r\n");
    }
    if !*keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// `n` in decimal, in `buf` (no `core::fmt`, which shows in profiles).
pub(crate) fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `n` in lower-case hexadecimal, in `buf`.
fn fmt_hex(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The `Date` value (IMF-fixdate), formatted once a second per thread.
struct CachedDate {
    second: u64,
    text: [u8; 29],
}

impl CachedDate {
    fn write(&mut self, out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == self.text.len() {
                self.text.copy_from_slice(text.as_bytes());
                self.second = second;
            }
        }
        out.extend_from_slice(&self.text);
    }
}

thread_local! {
    static DATE: std::cell::RefCell<CachedDate> = const {
        std::cell::RefCell::new(CachedDate {
            second: 0,
            text: *b"Thu, 01 Jan 1970 00:00:00 GMT",
        })
    };
}

/// Writes `out` then `data` (either may be empty) and clears `out`.
async fn send<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    data: &[u8],
) -> std::io::Result<()> {
    let (mut a, mut b) = (&out[..], data);
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            io.write(b).await?
        } else if b.is_empty() {
            io.write(a).await?
        } else {
            io.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                .await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    out.clear();
    Ok(())
}

/// Writes a response; `false` when the connection cannot carry another one (the body
/// failed, or it did not match its length).
async fn respond<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    resp: Response<RespBody>,
    head_request: bool,
    version: Version,
    keep_alive: &mut bool,
) -> std::io::Result<bool> {
    let (mut parts, mut body) = resp.into_parts();
    let exact = body.size_hint().exact();
    let framing = encode_head(out, &mut parts, exact, head_request, version, keep_alive);
    drop(parts);
    if framing == Framing::Empty || body.is_end_stream() {
        if framing == Framing::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        send(io, out, &[]).await?;
        return Ok(matches!(
            framing,
            Framing::Empty | Framing::Chunked | Framing::Length(0)
        ));
    }
    let mut sent: u64 = 0;
    let chunked = framing == Framing::Chunked;
    // The CRLF that ends the last chunk's data, not written yet.
    let mut pending_crlf = false;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                // Like hyper: what was sent stands, the connection is closed.
                tracing::debug!(error = %e, "response body failed");
                send(io, out, &[]).await?;
                return Ok(false);
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers: HTTP/1.1 clients get none (hyper sends none either)
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if let Framing::Length(n) = framing
            && sent > n
        {
            tracing::debug!(length = n, "response body longer than its Content-Length");
            send(io, out, &[]).await?;
            return Ok(false);
        }
        if chunked {
            if pending_crlf {
                out.extend_from_slice(b"\r\n");
            }
            let mut hex = [0u8; 16];
            out.extend_from_slice(fmt_hex(data.len(), &mut hex));
            out.extend_from_slice(b"\r\n");
            pending_crlf = true;
        }
        let end = body.is_end_stream();
        if data.len() <= COPY_MAX {
            out.extend_from_slice(&data);
            if end {
                break; // sent below, with the end of the body
            }
            if chunked {
                out.extend_from_slice(b"\r\n");
                pending_crlf = false;
            }
            send(io, out, &[]).await?;
        } else {
            send(io, out, &data).await?;
            if end {
                break;
            }
        }
    }
    if chunked {
        if pending_crlf {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    }
    send(io, out, &[]).await?;
    Ok(match framing {
        Framing::Chunked => true,
        Framing::Length(n) => sent == n,
        Framing::Close | Framing::Empty => false,
    })
}

/// Serves HTTP/1.1 requests on `io` with `handler` until the connection ends or a
/// request needs hyper. `closing` says the server is shutting down: the response in
/// hand is the last (`Connection: close`).
pub async fn serve<IO, H, Fut>(mut io: IO, mut handler: H, closing: impl Fn() -> bool) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: FnMut(Request<Option<Incoming>>) -> Fut,
    Fut: Future<Output = Response<RespBody>>,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(1024);
    loop {
        let head = loop {
            if !buf.is_empty() {
                match parse(&buf) {
                    Parse::Mine(h) => break h,
                    Parse::Partial if buf.len() <= MAX_HEAD => {}
                    Parse::Partial | Parse::NotMine => {
                        return Ended::Handover(Prefixed { prefix: buf, io });
                    }
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(_) => {}
            }
        };
        buf.advance(head.len);
        let Head {
            request,
            mut keep_alive,
            ..
        } = head;
        let head_request = request.method() == Method::HEAD;
        let version = request.version();
        let resp = handler(request).await;
        if closing() {
            keep_alive = false;
        }
        let reusable = respond(
            &mut io,
            &mut out,
            resp,
            head_request,
            version,
            &mut keep_alive,
        )
        .await
        .unwrap_or(false);
        if !reusable || !keep_alive {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        match parse(text.as_bytes()) {
            Parse::Mine(h) => h,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn bodiless_requests_are_served_here_and_the_rest_goes_to_hyper() {
        let h = head("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert_eq!(h.request.uri().path(), "/a");
        assert_eq!(h.request.uri().query(), Some("b=1"));
        assert_eq!(h.request.headers()["host"], "x");
        assert!(h.keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(head("DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parse::Partial
        ));
        for not_mine in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(
                matches!(parse(not_mine.as_bytes()), Parse::NotMine),
                "{not_mine:?}"
            );
        }
    }

    fn encoded(resp: Response<RespBody>, head_request: bool, version: Version) -> (String, bool) {
        let (mut parts, body) = resp.into_parts();
        let mut out = Vec::new();
        let mut keep_alive = true;
        let exact = body.size_hint().exact();
        encode_head(
            &mut out,
            &mut parts,
            exact,
            head_request,
            version,
            &mut keep_alive,
        );
        let text = String::from_utf8(out).unwrap_or_default();
        // The date changes; its presence is what counts.
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("date: ") {
                    "date: D"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        (text, keep_alive)
    }

    #[test]
    fn response_heads_are_framed_like_hyper_frames_them() {
        let full = Response::new(RespBody::full("hello"));
        assert_eq!(
            encoded(full, false, Version::HTTP_11),
            ("HTTP/1.1 200 OK\ncontent-length: 5\ndate: D\n".into(), true)
        );
        // HEAD: the length of the body that is not sent.
        let full = Response::new(RespBody::full("hello"));
        assert_eq!(
            encoded(full, true, Version::HTTP_11).0,
            "HTTP/1.1 200 OK\ncontent-length: 5\ndate: D\n"
        );
        let mut no_content = Response::new(RespBody::full(""));
        *no_content.status_mut() = StatusCode::NO_CONTENT;
        no_content
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(
            encoded(no_content, false, Version::HTTP_10),
            (
                "HTTP/1.1 204 No Content\ndate: D\nconnection: keep-alive\n".into(),
                true
            )
        );
        // Length unknown: chunked to HTTP/1.1, until close to HTTP/1.0.
        let stream = || {
            let mut r = Response::new(RespBody::full("x"));
            r.headers_mut()
                .insert(header::DATE, HeaderValue::from_static("Mon"));
            let (parts, _) = r.into_parts();
            parts
        };
        let unknown = |version| {
            let mut parts = stream();
            let mut out = Vec::new();
            let mut keep_alive = true;
            let f = encode_head(&mut out, &mut parts, None, false, version, &mut keep_alive);
            (String::from_utf8(out).unwrap_or_default(), f, keep_alive)
        };
        assert_eq!(
            unknown(Version::HTTP_11),
            (
                "HTTP/1.1 200 OK\r\ndate: Mon\r\ntransfer-encoding: chunked\r\n\r\n".into(),
                Framing::Chunked,
                true
            )
        );
        assert_eq!(
            unknown(Version::HTTP_10),
            (
                "HTTP/1.1 200 OK\r\ndate: Mon\r\nconnection: close\r\n\r\n".into(),
                Framing::Close,
                false
            )
        );
    }

    #[test]
    fn numbers_format_in_decimal() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(1234567890, &mut b), b"1234567890");
        assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
    }
}
