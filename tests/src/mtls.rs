//! One mutual-TLS exchange between two workloads, each holding an `X509Source` from its own
//! agent and each authorising exactly the other's SPIFFE ID in the other's trust domain: the
//! check that federation works (or, once removed, no longer does).

use std::sync::Arc;

use spiffe::X509Source;
use spiffe_rustls::{TrustDomainPolicy, mtls_client, mtls_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
