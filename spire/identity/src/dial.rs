//! Outbound mTLS gRPC channels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// A lazily connecting gRPC channel to `addr` over mTLS with `config`.
///
/// The peer is authenticated by the config's verifier (by SPIFFE ID), so the TLS server name
/// is only a placeholder required by the protocol.
pub fn grpc_channel(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Channel {
    let connector = TlsConnector::from(config);
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("invariant: http://<socket address> is a valid URI")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::IpAddress(addr.ip().into());
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    }))
}
