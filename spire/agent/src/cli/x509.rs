//! `spire-agent api fetch x509 [-write DIR]` and `spire-agent api watch`: the Workload API's
//! X.509 profile from the command line, with SPIRE's output and file names.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use spire_proto::workload as wl;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::api::{Socket, client};
use super::{Output, print_json};

/// `api fetch x509`: the first `FetchX509SVID` message, printed (unless `silent`) and written
/// to `write` when given.
pub async fn fetch(
    socket: &Socket,
    write: Option<&Path>,
    silent: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let response = tokio::time::timeout(timeout, first_message(socket))
        .await
        .map_err(|_| anyhow::anyhow!("no SVID received within {timeout:?}"))??;
    let json = socket.output == Output::Json;
    if !silent {
        if json {
            print_json(&response_json(&response));
        } else {
            print_response(&response, started.elapsed())?;
        }
    }
    if let Some(dir) = write {
        // The JSON on stdout stays one document: no "Writing ..." lines.
        write_response(&response, dir, !json)?;
    }
    Ok(())
}

/// `api watch`: prints every `FetchX509SVID` message until the stream ends or the process is
/// interrupted (`-output json`: one line of JSON per message).
pub async fn watch(socket: &Socket) -> anyhow::Result<()> {
    let mut stream = client(socket)
        .await?
        .fetch_x509svid(wl::X509svidRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("fetching X509-SVIDs failed: {}", s.message()))?
        .into_inner();
    let mut last = Instant::now();
    loop {
        let message = stream
            .message()
            .await
            .map_err(|s| anyhow::anyhow!("the X509-SVID stream failed: {}", s.message()))?;
        let Some(response) = message else {
            anyhow::bail!("the agent closed the X509-SVID stream");
        };
        match socket.output {
            // One JSON document per line, one line per update.
            Output::Json => print_json(&response_json(&response)),
            Output::Pretty => {
                print_response(&response, last.elapsed())?;
                println!();
            }
        }
        last = Instant::now();
    }
}

async fn first_message(socket: &Socket) -> anyhow::Result<wl::X509svidResponse> {
    client(socket)
        .await?
        .fetch_x509svid(wl::X509svidRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("fetching X509-SVIDs failed: {}", s.message()))?
        .into_inner()
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("fetching X509-SVIDs failed: {}", s.message()))?
        .ok_or_else(|| anyhow::anyhow!("the agent closed the X509-SVID stream"))
}

/// An `X509SVIDResponse` as SPIRE's `-output json` prints it: protobuf JSON field names, DER
/// certificates and the PKCS#8 key in standard base64 (the key is the caller's own, as in
/// SPIRE's output).
fn response_json(response: &wl::X509svidResponse) -> serde_json::Value {
    serde_json::json!({
        "svids": response.svids.iter().map(|s| serde_json::json!({
            "spiffe_id": s.spiffe_id,
            "x509_svid": BASE64.encode(&s.x509_svid),
            "x509_svid_key": BASE64.encode(&s.x509_svid_key),
            "bundle": BASE64.encode(&s.bundle),
            "hint": s.hint,
        })).collect::<Vec<_>>(),
        "crl": response.crl.iter().map(|c| BASE64.encode(c)).collect::<Vec<_>>(),
        "federated_bundles": response.federated_bundles.iter()
            .map(|(td, der)| (td.clone(), serde_json::Value::from(BASE64.encode(der))))
            .collect::<serde_json::Map<_, _>>(),
    })
}

fn print_response(response: &wl::X509svidResponse, after: Duration) -> anyhow::Result<()> {
    let count = response.svids.len();
    println!(
        "Received {count} svid{} after {after:?}",
        if count == 1 { "" } else { "s" }
    );
    for svid in &response.svids {
        println!();
        println!("SPIFFE ID:\t\t{}", svid.spiffe_id);
        if !svid.hint.is_empty() {
            println!("Hint:\t\t\t{}", svid.hint);
        }
        let chain = split_certificates(&svid.x509_svid)?;
        let (from, until) = validity(chain[0])?;
        println!("SVID Valid After:\t{from}");
        println!("SVID Valid Until:\t{until}");
        for (i, intermediate) in chain.iter().enumerate().skip(1) {
            let (from, until) = validity(intermediate)?;
            println!("Intermediate #{i} Valid After:\t{from}");
            println!("Intermediate #{i} Valid Until:\t{until}");
        }
        for (i, ca) in split_certificates(&svid.bundle)?.iter().enumerate() {
            let (from, until) = validity(ca)?;
            println!("CA #{} Valid After:\t{from}", i + 1);
            println!("CA #{} Valid Until:\t{until}", i + 1);
        }
        let mut federated: Vec<_> = response.federated_bundles.iter().collect();
        federated.sort();
        for (td, bundle) in federated {
            for (i, ca) in split_certificates(bundle)?.iter().enumerate() {
                let (from, until) = validity(ca)?;
                println!("[{td}] CA #{} Valid After:\t{from}", i + 1);
                println!("[{td}] CA #{} Valid Until:\t{until}", i + 1);
            }
        }
    }
    Ok(())
}

/// Writes SPIRE's files: `svid.N.pem` (chain), `svid.N.key` (PKCS#8, mode 0600),
/// `bundle.N.pem` and `federated_bundle.N.M.pem`, one set per SVID; `announce` prints a
/// line per file.
fn write_response(
    response: &wl::X509svidResponse,
    dir: &Path,
    announce: bool,
) -> anyhow::Result<()> {
    let mut federated: Vec<_> = response.federated_bundles.iter().collect();
    federated.sort();
    for (n, svid) in response.svids.iter().enumerate() {
        let files = [
            (format!("svid.{n}.pem"), certs_pem(&svid.x509_svid)?, 0o644),
            (
                format!("svid.{n}.key"),
                pem::encode(&pem::Pem::new("PRIVATE KEY", svid.x509_svid_key.clone())),
                0o600,
            ),
            (format!("bundle.{n}.pem"), certs_pem(&svid.bundle)?, 0o644),
        ];
        for (name, contents, mode) in files {
            write_file(&dir.join(name), contents.as_bytes(), mode, announce)?;
        }
        for (m, (_, bundle)) in federated.iter().enumerate() {
            let path = dir.join(format!("federated_bundle.{n}.{m}.pem"));
            write_file(&path, certs_pem(bundle)?.as_bytes(), 0o644, announce)?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32, announce: bool) -> anyhow::Result<()> {
    if announce {
        println!("Writing {}", path.display());
    }
    // Atomic, and with exactly `mode`: an existing file's wider mode is not kept for a key.
    common_process::files::write_atomic(path, contents, mode)
        .with_context(|| format!("writing {}", path.display()))
}

/// Concatenated DER certificates as PEM.
fn certs_pem(der: &[u8]) -> anyhow::Result<String> {
    Ok(split_certificates(der)?
        .into_iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.to_vec())))
        .collect())
}

/// Splits concatenated DER certificates, as the Workload API sends chains and bundles.
fn split_certificates(mut der: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
    let mut certs = Vec::new();
    while !der.is_empty() {
        let (rest, _) = X509Certificate::from_der(der)
            .map_err(|e| anyhow::anyhow!("the agent sent an unparsable certificate: {e}"))?;
        certs.push(&der[..der.len() - rest.len()]);
        der = rest;
    }
    if certs.is_empty() {
        anyhow::bail!("the agent sent no certificate");
    }
    Ok(certs)
}

/// NotBefore and NotAfter, RFC 2822-ish as x509-parser prints them.
fn validity(der: &[u8]) -> anyhow::Result<(String, String)> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("unparsable certificate: {e}"))?;
    let v = cert.validity();
    Ok((v.not_before.to_string(), v.not_after.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_concatenated_der_and_refuses_garbage() {
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).expect("a");
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).expect("b");
        let both = [a.cert.der().as_ref(), b.cert.der().as_ref()].concat();
        let split = split_certificates(&both).expect("split");
        assert_eq!(split, vec![a.cert.der().as_ref(), b.cert.der().as_ref()]);
        assert!(split_certificates(&both[..both.len() - 1]).is_err());
        assert!(split_certificates(&[]).is_err());
        assert_eq!(
            certs_pem(&both)
                .expect("pem")
                .matches("BEGIN CERTIFICATE")
                .count(),
            2
        );
    }
}
