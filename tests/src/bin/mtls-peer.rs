//! A second workload for the end-to-end tests: gets its SVID from the agent through the shared
//! `identity` crate, connects over mTLS to the address given, and reports who it talked to.
//!
//! Usage: `mtls-peer <host:port> <expected server SPIFFE ID>`. Prints `server=<ID>` (the peer
//! it verified) and `seen-as=<ID>` (what the server says it saw), one per line.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use identity::SpiffeId;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .context("usage: mtls-peer <host:port> <server SPIFFE ID>")?;
    let expected = SpiffeId::new(&args.next().context("missing server SPIFFE ID")?)?;
    let source = identity::workload::x509_source(None, Duration::from_secs(20)).await?;
    let td = expected.trust_domain().clone();
    let config =
        identity::workload::client_config(source, td, identity::workload::exactly(expected))?;
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let server = identity::peer::peer_spiffe_id(tls.get_ref().1).context("server sent no SVID")?;
    println!("server={server}");
    let mut line = String::new();
    BufReader::new(tls).read_line(&mut line).await?;
    println!("seen-as={}", line.trim());
    Ok(())
}
