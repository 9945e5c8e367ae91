//! The one backend behind every target: an echo port (for new connections) and a sink port
//! (for bulk throughput), served by one thread of its own so that the backend costs the
//! same whichever target is measured.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where the backend listens.
#[derive(Clone, Copy, Debug)]
pub struct Backend {
    /// Echoes every byte back until the client closes.
    pub echo: SocketAddr,
    /// Reads and discards until EOF, then answers the byte count (8 bytes, big endian).
    pub sink: SocketAddr,
}

/// Binds both ports on `ip` (ports chosen by the kernel) and serves them on a new thread
/// until the process exits.
pub fn start(ip: IpAddr) -> Result<Backend> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    // The receiver only goes away if start() already returned.
                    let _ = tx.send(Err(anyhow::Error::new(e).context("backend runtime")));
                    return;
                }
            };
            rt.block_on(async move {
                let bound = async {
                    let echo = TcpListener::bind((ip, 0))
                        .await
                        .with_context(|| format!("binding the echo port on {ip}"))?;
                    let sink = TcpListener::bind((ip, 0))
                        .await
                        .with_context(|| format!("binding the sink port on {ip}"))?;
                    let addrs = Backend {
                        echo: echo.local_addr()?,
                        sink: sink.local_addr()?,
                    };
                    anyhow::Ok((echo, sink, addrs))
                }
                .await;
                match bound {
                    Ok((echo, sink, addrs)) => {
                        let _ = tx.send(Ok(addrs));
                        tokio::join!(accept(echo, serve_echo), accept(sink, serve_sink));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .context("starting the backend thread")?;
    rx.recv()
        .context("the backend thread ended before binding")?
}

async fn accept<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        match listener.accept().await {
            // Resets by the client (SO_LINGER 0) end a connection with an error by design.
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            Err(e) => {
                eprintln!("backend: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_echo(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}

async fn serve_sink(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    s.write_all(&total.to_be_bytes()).await?;
    s.shutdown().await
}
