//! Admitting plain TCP connections (the metrics endpoints): at most `max_connections` at once
//! and `max_connections_per_source` per IP address; a connection past a cap is closed at once
//! and counted. TLS listeners admit in two stages instead (`identity::listener`).

use std::net::SocketAddr;
use std::sync::Arc;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::admitted::{Admitted, accept_until};
use crate::budget::{PerSource, Slot};
use crate::limits::Limits;
use crate::metrics::ListenerMetrics;

/// An admitted TCP connection, from its peer's address.
pub type TcpConn = Admitted<TcpStream, SocketAddr>;

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
        accept_until(
            self.metrics.name(),
            || self.listener.accept(),
            |(stream, peer)| self.admit(stream, peer),
        )
        .await
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
        let slot = Slot::new(permit, self.metrics.open()).with(ip);
        Some(Admitted::new(stream, peer, slot))
    }
}
