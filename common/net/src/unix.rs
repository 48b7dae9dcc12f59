//! Admitting connections on a Unix socket (the agent's Workload API, the server's admin API):
//! the kernel names the peer's process and user (`SO_PEERCRED`), so a connection counts
//! against its UID's and its PID's caps as well as the socket's. A connection past a cap is
//! closed at once (a local client gets an immediate error rather than a hang) and counted;
//! the rest is bounded by [`crate::server::HttpServer`] like any connection.

use std::fmt;
use std::sync::Arc;

use futures::Stream;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::admitted::{Admitted, accept_until};
use crate::budget::{PerSource, Slot};
use crate::limits::Limits;
use crate::metrics::ListenerMetrics;

/// The process at the other end of a Unix socket, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixPeer {
    /// Its process ID (the kernel may not know it, e.g. across PID namespaces).
    pub pid: Option<i32>,
    /// Its user ID.
    pub uid: u32,
    /// Its group ID.
    pub gid: u32,
}

impl fmt::Display for UnixPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid} uid {}", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// An admitted Unix-socket connection, from its peer's credentials.
pub type UnixConn = Admitted<UnixStream, UnixPeer>;

struct Admission {
    listener: UnixListener,
    slots: Arc<Semaphore>,
    per_uid: PerSource<u32>,
    per_pid: PerSource<i32>,
    metrics: ListenerMetrics,
}

/// The connections of `listener` that fit its budgets: at most `max_connections` at once,
/// `max_connections_per_source` per UID, `max_connections_per_process` per PID.
pub fn unix_incoming(
    listener: UnixListener,
    limits: &Limits,
    metrics: ListenerMetrics,
) -> impl Stream<Item = UnixConn> + Send + 'static {
    let admission = Admission {
        listener,
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        per_uid: PerSource::new(limits.max_connections_per_source),
        per_pid: PerSource::new(limits.max_connections_per_process),
        metrics,
    };
    futures::stream::unfold(admission, |admission| async move {
        let conn = admission.next().await;
        Some((conn, admission))
    })
}

impl Admission {
    async fn next(&self) -> UnixConn {
        accept_until(
            self.metrics.name(),
            || self.listener.accept(),
            |(stream, _)| self.admit(stream),
        )
        .await
    }

    fn admit(&self, stream: UnixStream) -> Option<UnixConn> {
        let Ok(cred) = stream.peer_cred() else {
            self.metrics
                .refused("no_peer_credentials", &"unknown process");
            return None;
        };
        let peer = UnixPeer {
            pid: cred.pid(),
            uid: cred.uid(),
            gid: cred.gid(),
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.metrics.refused("capacity", &peer);
            return None;
        };
        let Some(uid) = self.per_uid.try_take(peer.uid) else {
            self.metrics.refused("per_source", &peer);
            return None;
        };
        let mut slot = Slot::new(permit, self.metrics.open()).with(uid);
        if let Some(pid) = peer.pid {
            let Some(pid) = self.per_pid.try_take(pid) else {
                self.metrics.refused("per_process", &peer);
                return None;
            };
            slot = slot.with(pid);
        }
        Some(Admitted::new(stream, peer, slot))
    }
}
