//! Admitting plain TCP connections (the metrics endpoints): at most `max_connections` at once
//! and `max_connections_per_source` per IP address; a connection past a cap is closed at once
//! and counted. TLS listeners admit in two stages instead (`identity::listener`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::budget::{PerSource, Slot};
use crate::limits::Limits;
use crate::metrics::ListenerMetrics;
use crate::server::Accepted;

/// An admitted TCP connection.
#[derive(Debug)]
pub struct TcpConn {
    stream: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
}

impl Accepted for TcpConn {
    type Info = SocketAddr;

    fn info(&self) -> SocketAddr {
        self.peer
    }
}

struct Admission {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    per_ip: PerSource<std::net::IpAddr>,
    metrics: ListenerMetrics,
}

/// The connections of `listener` that fit its budgets.
pub fn tcp_incoming(
    listener: TcpListener,
    limits: &Limits,
    metrics: ListenerMetrics,
) -> impl Stream<Item = TcpConn> + Send + 'static {
    let admission = Admission {
        listener,
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        per_ip: PerSource::new(limits.max_connections_per_source),
        metrics,
    };
    futures::stream::unfold(admission, |admission| async move {
        let conn = admission.next().await;
        Some((conn, admission))
    })
}

impl Admission {
    async fn next(&self) -> TcpConn {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    if let Some(conn) = self.admit(stream, peer) {
                        return conn;
                    }
                }
                Err(error) => {
                    tracing::warn!(listener = self.metrics.name(), %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) -> Option<TcpConn> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.metrics.refused("capacity", &peer);
            return None;
        };
        let Some(ip) = self.per_ip.try_take(peer.ip()) else {
            self.metrics.refused("per_source", &peer);
            return None;
        };
        let _ = stream.set_nodelay(true);
        Some(TcpConn {
            stream,
            peer,
            _slot: Slot::new(permit, self.metrics.open()).with(ip),
        })
    }
}

impl AsyncRead for TcpConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
