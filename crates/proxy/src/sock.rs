//! Socket set-up: listeners, and outgoing sockets bound to the client's address so the
//! endpoint sees the client as the source, as it does behind kube-proxy.
//!
//! Every function refuses addresses outside loopback: the table never holds one, and this is
//! the last check before a bind or a connect.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

/// Refuses an address outside 127.0.0.0/8 and ::1.
pub(crate) fn ensure_loopback(addr: SocketAddr) -> io::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{addr} is not a loopback address; svcnet binds and connects 127.0.0.0/8 and ::1 only"
            ),
        ))
    }
}

/// A TCP listener with `SO_REUSEADDR`, so a listener released and bound again does not
/// wait for TIME_WAIT connections of the old one.
pub(crate) fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    ensure_loopback(addr)?;
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    TcpListener::from_std(s.into())
}

/// A UDP listener. No `SO_REUSEADDR`: on Linux it would let a second socket share the port
/// and split the datagrams.
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    ensure_loopback(addr)?;
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(SockProtocol::UDP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn may_bind_source(src: IpAddr, dst: SocketAddr) -> bool {
    src.is_loopback() && src.is_ipv4() == dst.is_ipv4()
}

fn loopback_of(dst: SocketAddr) -> IpAddr {
    if dst.is_ipv4() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    }
}

/// Connects to `dst` from the client's address `src` (port chosen by the kernel), within
/// `timeout`. When `src` cannot be bound (not loopback, another family, no free port), the
/// connect goes out unbound and the second value is false.
///
/// `IP_FREEBIND`/`IP_TRANSPARENT` are not needed: every 127/8 address is local on Linux.
pub(crate) async fn connect_from(
    src: IpAddr,
    dst: SocketAddr,
    timeout: Duration,
) -> io::Result<(TcpStream, bool)> {
    ensure_loopback(dst)?;
    let sock = if dst.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A failed bind leaves the socket unbound, and an unbound socket connects as usual.
    let bound = may_bind_source(src, dst) && sock.bind(SocketAddr::new(src, 0)).is_ok();
    let stream = match tokio::time::timeout(timeout, sock.connect(dst)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {dst} timed out after {timeout:?}"),
            ));
        }
    };
    stream.set_nodelay(true)?;
    Ok((stream, bound))
}

/// A UDP socket for one flow: bound to the client's address (else to the loopback address of
/// the family, second value false) and connected to the endpoint, so that only the
/// endpoint's replies arrive on it.
pub(crate) fn udp_flow_socket(src: IpAddr, dst: SocketAddr) -> io::Result<(UdpSocket, bool)> {
    ensure_loopback(dst)?;
    let s = Socket::new(
        Domain::for_address(dst),
        Type::DGRAM,
        Some(SockProtocol::UDP),
    )?;
    s.set_nonblocking(true)?;
    let bound = may_bind_source(src, dst) && s.bind(&SocketAddr::new(src, 0).into()).is_ok();
    if !bound {
        s.bind(&SocketAddr::new(loopback_of(dst), 0).into())?;
    }
    s.connect(&dst.into())?;
    Ok((UdpSocket::from_std(s.into())?, bound))
}

/// Closes a connection with a reset (`SO_LINGER` 0): the client learns at once that nothing
/// serves it, as with kube-proxy's REJECT rule.
pub(crate) fn reset(stream: TcpStream) {
    // Failing to set the option only turns the RST into a FIN; the connection closes either way.
    if let Err(e) = stream.set_zero_linger() {
        tracing::trace!(error = %e, "SO_LINGER 0 failed; closing with FIN");
    }
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_outside_loopback_are_never_bound_or_connected() {
        let outside: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let e = bind_tcp(outside, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            bind_udp(outside).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        let e = connect_from(
            "127.0.0.1".parse().unwrap(),
            outside,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let e = udp_flow_socket("127.0.0.1".parse().unwrap(), outside).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }

    #[tokio::test]
    async fn an_unbindable_source_falls_back_to_an_unbound_connect() {
        let l = TcpListener::bind("127.244.250.1:0").await.unwrap();
        let dst = l.local_addr().unwrap();
        // Not loopback: never bound, so the connect goes out unbound.
        let (s, bound) = connect_from("192.0.2.9".parse().unwrap(), dst, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(!bound);
        assert!(s.local_addr().unwrap().ip().is_loopback());
        let (s, bound) = connect_from("127.250.0.9".parse().unwrap(), dst, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(bound);
        assert_eq!(
            s.local_addr().unwrap().ip(),
            "127.250.0.9".parse::<IpAddr>().unwrap()
        );
        let (u, bound) =
            udp_flow_socket("::1".parse().unwrap(), "127.244.250.1:9".parse().unwrap()).unwrap();
        assert!(!bound);
        assert_eq!(
            u.local_addr().unwrap().ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }
}
