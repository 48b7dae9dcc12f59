//! The TLS handshakes a listener has in progress, and who gets pushed out when there are too
//! many.
//!
//! Handshakes have a budget of their own, separate from the connections served: a flood of
//! connections that never finish a handshake fills this one, never the other. New
//! connections are always admitted (waiting in the kernel's accept queue behind a flood is
//! what starved clients before); when a budget is over, an older handshake is pushed out:
//! - over `max_per_ip` for the new connection's address: one of that address's handshakes;
//! - over `max` overall: one of the address with the most handshakes in progress, so a
//!   flood from one address cannot push out other addresses' handshakes beyond its share.
//!
//! Within an address the victim is the oldest handshake whose client has not sent a byte
//! yet, else the oldest. Whether a client has sent a byte is asked of the kernel at the
//! moment a victim is chosen (a non-blocking peek on a duplicate of the socket), not only
//! when the connection's own task gets to run: under a flood that task may not have been
//! scheduled yet, and an honest client whose ClientHello already waits in the socket must
//! not count as silent. An honest client sends its ClientHello at once, so a flood of
//! silent connections never pushes it out, and a flood of stalled handshakes pushes it out
//! only if `max_per_ip` newer connections from its own address arrive before it is done.
//! The new connection itself is never the victim.

use std::collections::{HashMap, VecDeque};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// A listener's handshakes in progress.
#[derive(Debug)]
pub(crate) struct Pending {
    max: usize,
    max_per_ip: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_ip: HashMap<IpAddr, VecDeque<Entry>>,
    total: usize,
    next_id: u64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// The client has sent its first byte.
    started: bool,
    /// A duplicate of the connection's socket, to ask the kernel whether the client has sent
    /// anything yet; `None` if it could not be duplicated (then only `started` tells).
    probe: Option<socket2::Socket>,
    /// Told (by a send, or by being dropped) when this handshake is pushed out.
    evict: oneshot::Sender<()>,
}

/// A handshake's place in [`Pending`]; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Ticket {
    pending: Arc<Pending>,
    ip: IpAddr,
    id: u64,
}

impl Pending {
    /// At most `max` handshakes at once, `max_per_ip` from one address (each at least 1).
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Pending {
            max: max.max(1),
            max_per_ip: max_per_ip.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    /// Admits a handshake from `ip`, pushing out another if a budget is over. The receiver
    /// resolves when this handshake is pushed out in turn. `probe` is a duplicate of the
    /// connection's (non-blocking) socket, see the module docs.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        probe: Option<socket2::Socket>,
    ) -> (Ticket, oneshot::Receiver<()>) {
        let (evict, evicted) = oneshot::channel();
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.by_ip.entry(ip).or_default().push_back(Entry {
            id,
            started: false,
            probe,
            evict,
        });
        table.total += 1;
        let from_ip = table.by_ip.get(&ip).map_or(0, VecDeque::len);
        if from_ip > self.max_per_ip {
            table.evict_from(ip, id);
        } else if table.total > self.max
            && let Some(victim) = table.busiest_besides(id)
        {
            table.evict_from(victim, id);
        }
        drop(table);
        let ticket = Ticket {
            pending: self.clone(),
            ip,
            id,
        };
        (ticket, evicted)
    }

    /// Handshakes in progress.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table is consistent after every statement; a panic elsewhere leaves it usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    /// The address with the most handshakes that could be pushed out (all but `keep`).
    fn busiest_besides(&self, keep: u64) -> Option<IpAddr> {
        self.by_ip
            .iter()
            .map(|(ip, queue)| (queue.iter().filter(|e| e.id != keep).count(), *ip))
            .filter(|(count, _)| *count > 0)
            .max_by_key(|(count, _)| *count)
            .map(|(_, ip)| ip)
    }

    /// Pushes out `ip`'s oldest silent handshake, else its oldest, never `keep`.
    fn evict_from(&mut self, ip: IpAddr, keep: u64) {
        let Some(queue) = self.by_ip.get_mut(&ip) else {
            return;
        };
        let victim = queue
            .iter_mut()
            .position(|e| e.id != keep && !e.has_spoken())
            .or_else(|| queue.iter().position(|e| e.id != keep));
        let Some(entry) = victim.and_then(|at| queue.remove(at)) else {
            return;
        };
        if queue.is_empty() {
            self.by_ip.remove(&ip);
        }
        self.total -= 1;
        // The handshake may have ended meanwhile; then nobody is listening.
        let _ = entry.evict.send(());
    }

    fn remove(&mut self, ip: IpAddr, id: u64) {
        let Some(queue) = self.by_ip.get_mut(&ip) else {
            return;
        };
        if let Some(at) = queue.iter().position(|e| e.id == id) {
            queue.remove(at);
            self.total -= 1;
        }
        if queue.is_empty() {
            self.by_ip.remove(&ip);
        }
    }
}

impl Entry {
    /// Whether the client has sent a byte: known from its task, else asked of the kernel
    /// (and remembered). A client that has closed has not spoken: it is the first to go.
    fn has_spoken(&mut self) -> bool {
        if !self.started
            && let Some(probe) = &self.probe
        {
            let mut byte = [MaybeUninit::uninit()];
            // Would block: nothing sent yet. Ok(0): the client has gone.
            if let Ok(n) = probe.peek(&mut byte) {
                self.started = n > 0;
            }
        }
        self.started
    }
}

impl Ticket {
    /// The client sent its first byte: it is no longer among the first to be pushed out.
    pub(crate) fn started(&self) {
        let mut table = self.pending.lock();
        if let Some(entry) = table
            .by_ip
            .get_mut(&self.ip)
            .and_then(|queue| queue.iter_mut().find(|e| e.id == self.id))
        {
            entry.started = true;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pending.lock().remove(self.ip, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn evicted(rx: &mut oneshot::Receiver<()>) -> bool {
        !matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }

    #[test]
    fn a_silent_flood_pushes_out_silent_handshakes_never_a_started_one() {
        let pending = Pending::new(100, 4);
        let (honest, mut honest_rx) = pending.admit(A, None);
        honest.started();
        let mut flood: Vec<_> = (0..1000).map(|_| pending.admit(A, None)).collect();
        assert!(!evicted(&mut honest_rx), "the started handshake stays");
        assert_eq!(pending.len(), 4, "the address keeps its cap");
        let alive = flood
            .iter_mut()
            .map(|(_, rx)| evicted(rx))
            .filter(|gone| !gone)
            .count();
        assert_eq!(alive, 3, "the three newest silent connections remain");
        // The newest arrivals are the ones kept: the first of the flood went first.
        assert!(evicted(&mut flood[0].1));
        assert!(!evicted(&mut flood[999].1));
    }

    #[test]
    fn with_only_started_handshakes_the_oldest_goes_and_never_the_new_one() {
        let pending = Pending::new(100, 2);
        let (first, mut first_rx) = pending.admit(A, None);
        first.started();
        let (second, mut second_rx) = pending.admit(A, None);
        second.started();
        let (_third, mut third_rx) = pending.admit(A, None);
        assert!(evicted(&mut first_rx), "the oldest started one");
        assert!(!evicted(&mut second_rx));
        assert!(
            !evicted(&mut third_rx),
            "not the new connection, though it is silent"
        );
    }

    #[test]
    fn over_the_total_the_busiest_address_gives_way() {
        let pending = Pending::new(5, 100);
        let (_b, mut b_rx) = pending.admit(B, None);
        let mut from_a: Vec<_> = (0..4).map(|_| pending.admit(A, None)).collect();
        // Sixth handshake, from B: the total is over, and A has the most.
        let (_b2, mut b2_rx) = pending.admit(B, None);
        assert!(!evicted(&mut b_rx), "B's first handshake stays");
        assert!(!evicted(&mut b2_rx));
        assert!(evicted(&mut from_a[0].1), "A's oldest went");
        assert_eq!(pending.len(), 5);
    }

    /// A client whose first bytes wait in its socket is not silent, although its task has not
    /// run yet to say so: the kernel is asked when a victim is chosen.
    #[test]
    fn a_client_that_has_sent_bytes_is_not_pushed_out_by_a_silent_flood() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let accept = || {
            let (socket, _) = listener.accept().expect("accept");
            socket.set_nonblocking(true).expect("non-blocking");
            Some(socket2::Socket::from(socket))
        };
        let mut honest_client = std::net::TcpStream::connect(address).expect("connect");
        std::io::Write::write_all(&mut honest_client, &[0x16]).expect("first byte");
        let pending = Pending::new(100, 4);
        let (_honest, mut honest_rx) = pending.admit(A, accept());
        let silent_clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(address).expect("connect"))
            .collect();
        let mut silent: Vec<_> = silent_clients
            .iter()
            .map(|_| pending.admit(A, accept()))
            .collect();
        // Four from A: at the cap. Each newer silent connection pushes out a silent one.
        let _more: Vec<_> = (0..10).map(|_| pending.admit(A, None)).collect();
        assert!(
            !evicted(&mut honest_rx),
            "the client whose ClientHello waits in its socket stays"
        );
        assert!(silent.iter_mut().all(|(_, rx)| evicted(rx)));
    }

    #[test]
    fn a_finished_handshake_frees_its_place() {
        let pending = Pending::new(2, 2);
        let (first, _) = pending.admit(A, None);
        let (_second, mut second_rx) = pending.admit(A, None);
        drop(first);
        assert_eq!(pending.len(), 1);
        let (_third, _) = pending.admit(A, None);
        assert!(
            !evicted(&mut second_rx),
            "room was left by the finished one"
        );
        assert_eq!(pending.len(), 2);
    }
}
