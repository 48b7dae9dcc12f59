//! Hostile clients for the reliability suite (`tests/tests/hostile_network.rs`): floods of
//! connections that each hold a place at a listener for as long as the server lets them and
//! then come straight back, as a reconnect loop does, plus the one-shot attacks (a forged
//! certificate, an oversized upload, an oversized HTTP/2 frame).
//!
//! A [`Flood`] is a set of slots, each a task: connect, hold the connection in the way its
//! [`Hold`] says until the server closes it, wait [`RECONNECT_DELAY`], connect again. The
//! counts say how often slots connected and how often the server closed them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::wait_for;

/// How long a slot waits before coming back after its connection ended.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// What a slot does with its connection.
#[derive(Clone)]
pub enum Hold {
    /// Sends nothing (never starts TLS, or never speaks HTTP on a Unix socket).
    Silent,
    /// Sends the first bytes of a TLS ClientHello record and stalls (a half-open handshake).
    HalfOpenTls,
    /// Completes a TLS handshake with this config (a client certificate or none), then
    /// sends nothing.
    IdleTls(Arc<rustls::ClientConfig>),
}

/// Where a flood connects.
#[derive(Clone)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// How a flood went.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections made (TLS handshakes completed, for [`Hold::IdleTls`]).
    pub connected: AtomicU64,
    /// Connections the server ended.
    pub closed: AtomicU64,
    /// Attempts that failed (refused, reset, handshake refused).
    pub failed: AtomicU64,
}

/// A running flood; [`Flood::stop`] ends it.
pub struct Flood {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counts: Arc<Counts>,
}

impl Flood {
    /// `slots` clients of `target`, each holding its connection as `hold` says.
    pub fn start(target: Target, slots: usize, hold: Hold) -> Flood {
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let tasks = (0..slots)
            .map(|_| {
                tokio::spawn(slot(
                    target.clone(),
                    hold.clone(),
                    counts.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        Flood {
            stop,
            tasks,
            counts,
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Connections made so far.
    pub fn connected(&self) -> u64 {
        self.counts.connected.load(Ordering::Relaxed)
    }

    /// Connections the server ended so far.
    pub fn closed(&self) -> u64 {
        self.counts.closed.load(Ordering::Relaxed)
    }

    /// Failed attempts so far.
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// Waits (up to 60 s) until at least `n` connections were made: the flood is in full
    /// swing.
    pub async fn wait_connected(&self, n: u64) {
        wait_for("the flood to connect", Duration::from_secs(60), || {
            let connected = self.connected();
            async move { (connected >= n).then_some(()) }
        })
        .await;
    }

    /// Stops every slot and closes its connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn slot(target: Target, hold: Hold, counts: Arc<Counts>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let held = tokio::select! {
            held = connect_and_hold(&target, &hold, &counts) => held,
            _ = stop.changed() => return,
        };
        let counter = if held { &counts.closed } else { &counts.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Connects and holds until the server ends the connection: `true` if it was held, `false`
/// if connecting (or the handshake) failed.
async fn connect_and_hold(target: &Target, hold: &Hold, counts: &Counts) -> bool {
    match (target, hold) {
        (Target::Unix(path), _) => match UnixStream::connect(path).await {
            Ok(stream) => {
                counts.connected.fetch_add(1, Ordering::Relaxed);
                until_closed(stream).await;
                true
            }
            Err(_) => false,
        },
        (Target::Tcp(address), Hold::Silent) => match TcpStream::connect(address).await {
            Ok(stream) => {
                counts.connected.fetch_add(1, Ordering::Relaxed);
                until_closed(stream).await;
                true
            }
            Err(_) => false,
        },
        (Target::Tcp(address), Hold::HalfOpenTls) => {
            let Ok(mut stream) = TcpStream::connect(address).await else {
                return false;
            };
            // A handshake record header announcing 512 bytes, and a few of them.
            let start = [
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            if stream.write_all(&start).await.is_err() {
                return false;
            }
            counts.connected.fetch_add(1, Ordering::Relaxed);
            until_closed(stream).await;
            true
        }
        (Target::Tcp(address), Hold::IdleTls(config)) => {
            let Ok(tcp) = TcpStream::connect(address).await else {
                return false;
            };
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            match connector.connect(server_name(), tcp).await {
                Ok(stream) => {
                    counts.connected.fetch_add(1, Ordering::Relaxed);
                    until_closed(stream).await;
                    true
                }
                Err(_) => false,
            }
        }
    }
}

/// Reads (and ignores) until the server closes the connection or it fails.
async fn until_closed(mut stream: impl AsyncRead + Unpin) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// The name a client sends: peers are authenticated by SPIFFE ID, so it is a placeholder.
fn server_name() -> ServerName<'static> {
    ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
}

/// Raises this process's soft limit on open files to its hard limit, which must allow
/// `needed` (floods hold thousands of connections).
pub fn raise_open_files_limit(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("reading RLIMIT_NOFILE");
    assert!(
        hard >= needed,
        "this suite holds {needed} connections at once, but the hard limit on open files is {hard}: raise it (ulimit -Hn)"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raising RLIMIT_NOFILE");
}

/// A client config presenting a self-signed certificate for `spiffe_id` (not issued by the
/// trust domain's CA: a forged identity), accepting any server whose SVID verifies against
/// `bundle` (DER CA certificates).
pub fn forged_client_config(bundle: &[Vec<u8>], spiffe_id: &str) -> Arc<rustls::ClientConfig> {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(spiffe_id).expect("URI"),
    )];
    // Everything an X509-SVID has (X509-SVID §4), but signed by its own key.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let store = Arc::new(identity::svid_tls::SvidStore::new(bundle).expect("bundle"));
    store
        .set_svid(&[cert.der().to_vec()], &key.serialize_der())
        .expect("forged SVID");
    let any: identity::svid_tls::Authorizer = Arc::new(|_: &spiffe::SpiffeId| true);
    Arc::new(identity::svid_tls::client_config(store, any).expect("client config"))
}

/// A client config that presents no certificate (an anonymous client, as an agent before it
/// attests), accepting any server whose SVID verifies against `bundle`.
pub fn anonymous_client_config(bundle: &[Vec<u8>]) -> Arc<rustls::ClientConfig> {
    let store = Arc::new(identity::svid_tls::SvidStore::new(bundle).expect("bundle"));
    let any: identity::svid_tls::Authorizer = Arc::new(|_: &spiffe::SpiffeId| true);
    Arc::new(identity::svid_tls::client_config(store, any).expect("client config"))
}

/// Connects with `config` and does the handshake; the error if it fails.
pub async fn tls_handshake(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name(), tcp)
        .await
}

/// An upload as Python's urllib and requests send one: `POST path` over HTTP/1.1 with the
/// headers and the whole `body_len`-byte body written before anything is read, no
/// `Expect: 100-continue`. Returns the answer's status line, or the error that lost it.
pub async fn post_whole_body(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    body_len: usize,
) -> std::io::Result<String> {
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut stream = tls_handshake(address, Arc::new(config)).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: nexus\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let chunk = vec![b' '; 64 * 1024];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).await?;
        left -= n;
    }
    stream.flush().await?;
    let mut answer = Vec::new();
    // A close without close_notify still leaves the whole answer in `answer`.
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .lines()
        .next()
        .filter(|line| line.starts_with("HTTP/"))
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {answer:?}")))
}

/// The HTTP/2 error code of the first GOAWAY frame in `bytes` (a server's frames, after
/// nothing else), if there is one.
pub fn goaway_error_code(mut bytes: &[u8]) -> Option<u32> {
    while bytes.len() >= 9 {
        let len =
            (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        let kind = bytes[3];
        let payload = bytes.get(9..9 + len)?;
        if kind == 0x7 {
            let code = payload.get(4..8)?;
            return Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
        }
        bytes = &bytes[9 + len..];
    }
    None
}

/// Sends the HTTP/2 preface, an empty SETTINGS frame, and the header of a HEADERS frame
/// declaring 16 MiB followed by `payload` bytes of it, over the Unix socket at `path`;
/// returns what the server sent back before it closed the connection.
pub async fn oversized_frame(path: &std::path::Path, payload: usize) -> std::io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(path).await?;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0xff, 0xff, 0xff, 0x1, 0x4, 0, 0, 0, 1]);
    stream.write_all(&hello).await?;
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0u8; 64 * 1024];
        let mut left = payload;
        while left > 0 {
            let n = left.min(chunk.len());
            // The server closes the connection early: the rest is refused, as it should be.
            if write.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            left -= n;
        }
    });
    let mut answer = Vec::new();
    let _ = read.read_to_end(&mut answer).await;
    writer.abort();
    Ok(answer)
}
