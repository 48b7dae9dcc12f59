//! Raw HTTP/1.1 over mTLS, for tests that must see exactly what a server answers (status,
//! headers, error body) or how it refused the handshake (the TLS alert it sent): things a
//! typed client hides. One request per connection (`Connection: close`).
//!
//! Also [`handshake`]: one mutual-TLS exchange between two workloads, each holding an
//! `X509Source` from its own agent and each authorising exactly the other's SPIFFE ID in the
//! other's trust domain: the check that federation works (or, once removed, no longer does).

use std::sync::Arc;

use spiffe::X509Source;
use spiffe_rustls::{TrustDomainPolicy, mtls_client, mtls_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP answer read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics, quoting it, if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    /// Path and query.
    pub target: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Request {
    /// `POST target` with a JSON body.
    pub fn post_json(target: impl Into<String>, body: &serde_json::Value) -> Request {
        Request {
            method: "POST",
            target: target.into(),
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        }
    }
}

/// `POST path` with a JSON `body` to `127.0.0.1:port` on a new mTLS connection.
pub async fn post(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    path: &str,
    body: &str,
) -> std::io::Result<Answer> {
    let request = Request {
        method: "POST",
        target: path.to_owned(),
        content_type: "application/json",
        body: body.as_bytes().to_vec(),
    };
    send(tls, port, &request).await
}

/// Sends `request` to `127.0.0.1:port` on a new mTLS connection and reads the whole answer.
/// A refused handshake is an error; [`alert`] tells which alert the server sent.
pub async fn send(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    request: &Request,
) -> std::io::Result<Answer> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        request.method,
        request.target,
        request.content_type,
        request.body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&request.body);
    // In TLS 1.3 the client finishes its handshake before the server has checked the client
    // certificate, so a refusal arrives as an alert after the request went out, and the
    // write may already fail on the closed connection: the read still finds the alert.
    let written = stream.write_all(&bytes).await;
    let mut raw = Vec::new();
    // A peer closing without close_notify still leaves the whole answer in `raw`.
    let read = stream.read_to_end(&mut raw).await;
    if let Err(error) = written {
        return Err(match read {
            Err(read) if alert(&read).is_some() => read,
            _ => error,
        });
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(read.err().unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no HTTP answer: {}", String::from_utf8_lossy(&raw)),
            )
        }));
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no HTTP status line: {head}"),
            )
        })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        crate::dechunk_bytes(rest)
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The TLS alert the server sent, if that is why `error` happened.
pub fn alert(error: &std::io::Error) -> Option<rustls::AlertDescription> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// `client` (with the SVID `client_id`) dials `server` (with `server_id`) on loopback; each
/// trusts only the other's trust domain and ID. Returns the ID the server saw, or the error.
pub async fn handshake(
    server: &X509Source,
    server_id: &str,
    client: &X509Source,
    client_id: &str,
) -> Result<String, String> {
    let id = |raw: &str| identity::SpiffeId::new(raw).map_err(|e| e.to_string());
    let (server_id, client_id) = (id(server_id)?, id(client_id)?);
    let only =
        |id: &identity::SpiffeId| TrustDomainPolicy::AllowList([id.trust_domain().clone()].into());
    let server_tls = mtls_server(server.clone())
        .trust_domain_policy(only(&client_id))
        .authorize(identity::workload::exactly(client_id.clone()))
        .build()
        .map_err(|e| e.to_string())?;
    let client_tls = mtls_client(client.clone())
        .trust_domain_policy(only(&server_id))
        .authorize(identity::workload::exactly(server_id))
        .build()
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls));
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = identity::peer::peer_spiffe_id(tls.get_ref().1).ok_or("no client SVID")?;
        tls.write_all(b"!").await.map_err(|e| e.to_string())?;
        let _ = tls.shutdown().await;
        Ok::<_, String>(peer.to_string())
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls));
    let dialed = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("workload").expect("a valid name");
        let mut tls = connector.connect(name, tcp).await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(())
    }
    .await;
    let accepted = accept.await.map_err(|e| e.to_string())?;
    dialed.map_err(|e| format!("client: {e}"))?;
    accepted
}
