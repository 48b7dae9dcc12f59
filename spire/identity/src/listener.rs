//! Accepting mTLS connections and carrying the verified peer's SPIFFE ID to handlers.
//!
//! [`tls_incoming`] turns a TCP listener into a stream of finished TLS connections
//! ([`PeerStream`]), each tagged with the client's SPIFFE ID, in two stages with budgets of
//! their own ([`Limits`]):
//! 1. **Handshake.** Every connection is accepted at once and gets `handshake_timeout` to
//!    finish its handshake, within a budget of `max_handshakes` (`max_handshakes_per_ip` per
//!    address) that pushes out the oldest silent connections first when full
//!    ([`crate::pending`]). A connection whose first byte is not a TLS handshake record is
//!    closed at once.
//! 2. **Served.** A finished handshake takes one of `max_connections` slots (waiting for one
//!    until its handshake deadline, still in the handshake budget), and one of
//!    `max_connections_per_source` for its client: its SPIFFE ID, or its IP address when it
//!    presented no certificate. The slot is freed when the [`PeerStream`] is dropped.
//!
//! Every failed handshake and every refusal is counted by reason and logged at warn with the
//! peer's address, rate-limited ([`ListenerMetrics`]).
//!
//! The accept loop runs as a task of its own, so that accepting never waits for the server
//! to poll. Its failure must not look like a listener that closed: a panic in it is raised
//! again in whoever polls the stream ([`TlsIncoming`]), where the process's supervisor
//! (`common_process::Supervisor`) counts it and stops the process with a failure. [`crate::http::serve`] serves axum
//! and tonic routes on the stream with every later phase bounded; handlers find [`PeerInfo`]
//! in each request's extensions.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common_net::budget::{PerSource, Slot};
use common_net::{Admitted, Limits, ListenerMetrics};
use futures::{FutureExt, Stream, StreamExt};
use spiffe::SpiffeId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::failure::HandshakeFailure;
use crate::peer::{peer_serial_number, peer_spiffe_id};
use crate::pending::{Pending, Ticket};

/// The first byte of a TLS record that carries a handshake message (RFC 8446 §5.1), which a
/// ClientHello always starts with.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

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

/// A server-side TLS connection whose handshake has completed, with its peer's
/// [`PeerInfo`] and its served slot (freed when dropped).
pub type PeerStream = Admitted<TlsStream<TcpStream>, PeerInfo>;

/// Whom a served connection counts against: its SPIFFE ID once authenticated, else the only
/// source there is, its address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Id(String),
    Ip(IpAddr),
}

/// The listener's budgets and what it needs for a handshake.
struct Admission {
    acceptor: TlsAcceptor,
    pending: Arc<Pending>,
    slots: Arc<Semaphore>,
    per_client: PerSource<Client>,
    handshake_timeout: Duration,
    metrics: ListenerMetrics,
}

/// The connections [`tls_incoming`] admitted. Polling it raises a panic of the accept loop
/// in the caller (see the module docs); dropping it closes the listener.
pub struct TlsIncoming {
    admitted: ReceiverStream<PeerStream>,
    accept_loop: Option<JoinHandle<()>>,
}

impl TlsIncoming {
    fn new(admitted: mpsc::Receiver<PeerStream>, accept_loop: JoinHandle<()>) -> Self {
        TlsIncoming {
            admitted: ReceiverStream::new(admitted),
            accept_loop: Some(accept_loop),
        }
    }
}

impl Stream for TlsIncoming {
    type Item = PeerStream;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerStream>> {
        // The loop first: once it died, no connection should be served as if all were well.
        if let Some(accept_loop) = self.accept_loop.as_mut()
            && let Poll::Ready(ended) = accept_loop.poll_unpin(cx)
        {
            self.accept_loop = None;
            if let Err(error) = ended
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
            // It ends by itself only once this stream is dropped, and is never aborted.
            return Poll::Ready(None);
        }
        match self.admitted.poll_next_unpin(cx) {
            // The loop's sender is dropped as it unwinds, which may close the channel before
            // the loop's end is known: wait for that end (its waker is registered above).
            Poll::Ready(None) if self.accept_loop.is_some() => Poll::Pending,
            polled => polled,
        }
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        // The loop would also notice the closed channel; stopping it here closes the
        // listener without waiting for that.
        if let Some(accept_loop) = &self.accept_loop {
            accept_loop.abort();
        }
    }
}

/// A test-only fault: in debug builds, if `SPIKE_LISTENER_FAILPOINT` names this listener
/// (its metrics name: `api`, `agent_api`...), its accept loop panics at its first
/// connection, so the end-to-end suite can show what a dying listener does to its process.
/// Release builds ignore it.
fn failpoint(listener: &str) {
    if cfg!(debug_assertions)
        && std::env::var("SPIKE_LISTENER_FAILPOINT").is_ok_and(|name| name == listener)
    {
        panic!("test failpoint reached: the {listener} accept loop fails");
    }
}

/// Accepts TCP connections on `listener` and yields those that complete a TLS handshake under
/// `config` and fit the budgets of `limits` (see the module docs). The listener closes when
/// the stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: &Limits,
    metrics: ListenerMetrics,
) -> TlsIncoming {
    let (tx, rx) = mpsc::channel(64);
    let admission = Arc::new(Admission {
        acceptor: TlsAcceptor::from(config),
        pending: Pending::new(limits.max_handshakes, limits.max_handshakes_per_ip),
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        per_client: PerSource::new(limits.max_connections_per_source),
        handshake_timeout: limits.handshake_timeout,
        metrics,
    });
    let accept_loop = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => break,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(listener = admission.metrics.name(), %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            failpoint(admission.metrics.name());
            let probe = socket2::SockRef::from(&tcp).try_clone().ok();
            let (ticket, evicted) = admission.pending.admit(remote_addr.ip(), probe);
            let admission = admission.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(stream) = admission.admit(tcp, remote_addr, ticket, evicted).await {
                    let _ = tx.send(stream).await;
                }
            });
        }
    });
    TlsIncoming::new(rx, accept_loop)
}

impl Admission {
    /// Runs the handshake, then takes a served slot; `None` if either fails (counted).
    async fn admit(
        &self,
        tcp: TcpStream,
        remote_addr: SocketAddr,
        ticket: Ticket,
        mut evicted: oneshot::Receiver<()>,
    ) -> Option<PeerStream> {
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + self.handshake_timeout;
        let outcome = tokio::select! {
            _ = &mut evicted => Err((
                HandshakeFailure::Evicted,
                "pushed out by newer connections while the handshake budget was full".to_owned(),
            )),
            done = tokio::time::timeout_at(deadline, self.handshake(tcp, &ticket)) => {
                done.unwrap_or_else(|_| Err((
                    HandshakeFailure::Timeout,
                    format!("not finished within {:?}", self.handshake_timeout),
                )))
            }
        };
        let tls = match outcome {
            Ok(tls) => tls,
            Err((HandshakeFailure::Closed, _)) => {
                self.metrics
                    .count_handshake_failure(HandshakeFailure::Closed.label());
                return None;
            }
            Err((failure, detail)) => {
                self.metrics
                    .handshake_failed(failure.label(), &remote_addr, &detail);
                return None;
            }
        };
        let conn = tls.get_ref().1;
        let info = PeerInfo {
            spiffe_id: peer_spiffe_id(conn),
            serial_number: peer_serial_number(conn),
            remote_addr,
        };
        let client = match &info.spiffe_id {
            Some(id) => Client::Id(id.to_string()),
            None => Client::Ip(remote_addr.ip()),
        };
        let Some(source) = self.per_client.try_take(client) else {
            self.metrics.refused("per_source", &remote_addr);
            return None;
        };
        // At the limit, wait for a slot until the handshake deadline, still in the handshake
        // budget (so waiting connections stay bounded and can be pushed out).
        let permit = tokio::select! {
            permit = self.slots.clone().acquire_owned() => permit.ok(),
            _ = &mut evicted => None,
            () = tokio::time::sleep_until(deadline) => None,
        };
        let Some(permit) = permit else {
            self.metrics.refused("capacity", &remote_addr);
            return None;
        };
        drop(ticket);
        let slot = Slot::new(permit, self.metrics.open()).with(source);
        Some(Admitted::new(tls, info, slot))
    }

    /// Waits for the client's first byte, refuses anything but TLS, then runs the handshake.
    async fn handshake(
        &self,
        tcp: TcpStream,
        ticket: &Ticket,
    ) -> Result<TlsStream<TcpStream>, (HandshakeFailure, String)> {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => {
                return Err((
                    HandshakeFailure::Closed,
                    "closed before sending anything".to_owned(),
                ));
            }
            Ok(_) => {}
            Err(error) => return Err((HandshakeFailure::of_io(&error), error.to_string())),
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            return Err((
                HandshakeFailure::NotTls,
                format!(
                    "first byte {:#04x} does not start a TLS handshake",
                    first[0]
                ),
            ));
        }
        ticket.started();
        self.acceptor
            .accept(tcp)
            .await
            .map_err(|error| (HandshakeFailure::of_io(&error), error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use super::*;

    /// Polls `incoming`, which must raise the accept loop's panic ("accept loop broke").
    async fn assert_loop_panic_reaches_the_server(incoming: &mut TlsIncoming) {
        let polled = AssertUnwindSafe(incoming.next()).catch_unwind().await;
        let panic = polled.expect_err("the loop's panic reaches the server");
        assert_eq!(
            panic.downcast_ref::<&str>().copied(),
            Some("accept loop broke")
        );
    }

    #[tokio::test]
    async fn a_panic_in_the_accept_loop_is_raised_in_the_server_not_taken_for_a_close() {
        let (tx, rx) = mpsc::channel::<PeerStream>(1);
        // As the real loop: it holds the sender, so the channel would just close.
        let accept_loop = tokio::spawn(async move {
            let _tx = tx;
            panic!("accept loop broke");
        });
        let mut incoming = TlsIncoming::new(rx, accept_loop);
        assert_loop_panic_reaches_the_server(&mut incoming).await;
    }

    #[tokio::test]
    async fn a_channel_closed_by_a_dying_loop_is_not_taken_for_a_close() {
        let (tx, rx) = mpsc::channel::<PeerStream>(1);
        let (closed_tx, closed) = oneshot::channel::<()>();
        let (go_tx, go) = oneshot::channel::<()>();
        // The sender goes first, as when the loop unwinds; its end is known only later.
        let accept_loop = tokio::spawn(async move {
            drop(tx);
            let _ = closed_tx.send(());
            let _ = go.await;
            panic!("accept loop broke");
        });
        let mut incoming = TlsIncoming::new(rx, accept_loop);
        closed.await.expect("the channel closed");
        assert!(
            futures::poll!(incoming.next()).is_pending(),
            "the stream ended while its loop had not"
        );
        go_tx.send(()).expect("the loop waits");
        assert_loop_panic_reaches_the_server(&mut incoming).await;
    }

    #[tokio::test]
    async fn the_listener_closes_when_the_stream_is_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
        let incoming = tls_incoming(
            listener,
            Arc::new(config),
            &Limits::default(),
            ListenerMetrics::default(),
        );
        tokio::net::TcpStream::connect(address)
            .await
            .expect("open while the stream lives");
        drop(incoming);
        let mut refused = false;
        for _ in 0..1000 {
            if tokio::net::TcpStream::connect(address).await.is_err() {
                refused = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            refused,
            "the listener still accepts after the stream was dropped"
        );
    }
}
