//! Accepting mTLS connections and carrying the verified peer's SPIFFE ID to handlers.
//!
//! [`tls_incoming`] turns a TCP listener into a stream of finished TLS connections
//! ([`PeerStream`]), each tagged with the client's SPIFFE ID. A handshake runs in its own task
//! with a deadline, so a slow or silent client cannot hold up the others. At most
//! `max_connections` connections (handshaking or open) exist at once: past that, new ones wait
//! in the kernel's accept queue until one closes. tonic servers take the stream directly
//! (`serve_with_incoming`) and find [`PeerInfo`] in each request's extensions.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use spiffe::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::peer::{peer_serial_number, peer_spiffe_id};

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The client's SPIFFE ID, if it presented a (verified) SVID.
    pub spiffe_id: Option<SpiffeId>,
    /// The serial number of that SVID (lowercase hex, see
    /// [`serial_number_from_cert`](crate::peer::serial_number_from_cert)), so a server can
    /// tell one SVID of a SPIFFE ID from another (the identity server accepts only an agent's
    /// current SVID).
    pub serial_number: Option<String>,
    /// The client's socket address.
    pub remote_addr: SocketAddr,
}

/// A server-side TLS connection whose handshake has completed.
pub struct PeerStream {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
    /// This connection's place among the `max_connections`; freed when the stream is dropped.
    _slot: OwnedSemaphorePermit,
}

impl PeerStream {
    /// Who the peer is.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// Accepts TCP connections on `listener` and yields those that complete a TLS handshake under
/// `config`, at most [`DEFAULT_MAX_CONNECTIONS`] at once. Failed handshakes are logged and
/// dropped.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<io::Result<PeerStream>> {
    tls_incoming_bounded(listener, config, DEFAULT_MAX_CONNECTIONS)
}

/// [`tls_incoming`] with at most `max_connections` connections (handshaking or open) at once.
pub fn tls_incoming_bounded(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    max_connections: usize,
) -> ReceiverStream<io::Result<PeerStream>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            // A slot first: at the limit, clients wait in the accept queue, costing nothing here.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let (tcp, remote_addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                break;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let conn = tls.get_ref().1;
                        let info = PeerInfo {
                            spiffe_id: peer_spiffe_id(conn),
                            serial_number: peer_serial_number(conn),
                            remote_addr,
                        };
                        let stream = PeerStream {
                            inner: tls,
                            info,
                            _slot: slot,
                        };
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote_addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote_addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
