//! The HTTP server under both planes: hyper HTTP/1.1 connections with a header-read
//! timeout, WebSocket upgrades, a cap on open connections and graceful shutdown.
//!
//! `axum::serve` installs no timer, so hyper's header-read timeout never fires there
//! (tokio-rs/axum#2741): a client trickling one header byte at a time held a socket and a
//! task forever (slowloris). Here every connection must deliver a complete request head
//! within [`ServerLimits::header_read_timeout`]; the timer also runs while a keep-alive
//! connection waits for its next request, so idle connections are closed too.
//!
//! Only HTTP/1.1 is spoken, as `axum::serve` did with axum's default features: TLS (and
//! with it HTTP/2) ends at the proxy in front.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How long a client has to send a complete request head (and how long an idle
/// keep-alive connection may wait for its next request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections (WebSockets included) allowed by default; the next client waits in
/// the kernel's accept queue until one closes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets each
/// connection finish its request in flight and returns once all have closed. The peer
/// address reaches handlers as `ConnectInfo<SocketAddr>`. A WebSocket, once upgraded,
/// belongs to its handler (the call drain waits for calls) but keeps its connection slot.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Waiting for a slot before accepting leaves surplus clients in the kernel queue.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the slots are never closed"),
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Nagle off: Media Streams frames (20 ms each) must not wait for the previous ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let io = TokioIo::new(SlotStream { tcp, _slot: slot });
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let conn = http.serve_connection(io, service).with_upgrades();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            let outcome = tokio::select! {
                outcome = conn.as_mut() => outcome,
                () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, "connection closed: {e}");
            }
        });
        // Reap finished connection tasks so the set does not grow with every client.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// A client's socket holding its connection slot: the slot is given back when the socket
/// closes, after an upgrade too (the WebSocket owns the stream then).
struct SlotStream {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for SlotStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlotStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves a two-route app with `limits`; returns its address and the stop switch.
    async fn start(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes the connection; what it sent.
    async fn read_to_close(tcp: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /peer HTTP/1.1\r\n").await.unwrap();
        // Closed by the server (well within the bound), not left hanging.
        let answer = tokio::time::timeout(BOUND, read_to_close(&mut slow))
            .await
            .expect("the half-sent request was not closed");
        assert!(!answer.contains("200 OK"), "{answer}");
        // A silent connection is closed the same way.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::timeout(BOUND, read_to_close(&mut silent))
            .await
            .expect("the silent connection was not closed");
    }

    #[tokio::test]
    async fn requests_see_the_peer_and_connections_beyond_the_cap_wait() {
        let limits = ServerLimits {
            max_connections: 1,
            ..ServerLimits::default()
        };
        let (addr, stop) = start(limits).await;
        let request = b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        let mut first = TcpStream::connect(addr).await.unwrap();
        // The second connection is accepted by the kernel but not served while the first
        // holds the only slot...
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(request).await.unwrap();
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte))
                .await
                .is_err(),
            "served beyond the cap"
        );
        first.write_all(request).await.unwrap();
        let answer = read_to_close(&mut first).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("127.0.0.1"), "{answer}");
        drop(first);
        // ...and is served once the first has closed.
        let answer = tokio::time::timeout(BOUND, read_to_close(&mut second))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        // After shutdown nothing new is accepted.
        stop.send(()).unwrap();
        tokio::task::yield_now().await;
    }
}
