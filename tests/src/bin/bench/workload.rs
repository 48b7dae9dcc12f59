//! The agent's Workload API as its clients see it, every call figure against a call the agent
//! refuses on the same socket (`FetchX509SVID` without the security header), which costs the
//! transport and gRPC framing but no attestation and no cache lookup:
//! - an X509-SVID from the agent's cache: a new stream on a kept-open channel until its first
//!   message (caller attested through `/proc`, entries matched, SVID and bundle encoded);
//! - a JWT-SVID (`FetchJWTSVID`, unary) on the same channel;
//! - the `spiffe` crate's `fetch_x509_svid` on a new connection each time, against a new
//!   connection and one refused call;
//! - a new registration entry until an open stream delivers its SVID, against a 1 s budget.

use std::time::Instant;

use anyhow::Context;
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spire_proto::workload::{JwtsvidRequest, X509svidRequest};
use tests::stack::{Agent, Server};
use tonic::transport::Channel;

use crate::measure::{self, Stats};
use crate::{Figures, Plan, progress};

fn with_header<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

async fn x509(channel: &Channel) -> anyhow::Result<()> {
    let mut stream = SpiffeWorkloadApiClient::new(channel.clone())
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?
        .into_inner();
    let first = stream
        .message()
        .await?
        .context("stream ended before its first message")?;
    anyhow::ensure!(!first.svids.is_empty(), "an SVID expected");
    Ok(())
}

async fn refused(channel: Channel) -> anyhow::Result<()> {
    match SpiffeWorkloadApiClient::new(channel)
        .fetch_x509svid(X509svidRequest {})
        .await
    {
        Err(status) if status.code() == tonic::Code::InvalidArgument => Ok(()),
        other => anyhow::bail!("expected InvalidArgument, got {other:?}"),
    }
}

pub async fn run(plan: Plan, figures: &mut Figures) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let td = "example.org";
    progress("starting identity server and agent...");
    let server = Server::start(&dir.path().join("server"), td, &[]).await;
    let token = server.join_token(&[]);
    // Unlimited: the bench would otherwise measure the per-process rate limit.
    let agent = Agent::start_with(
        &server,
        &dir.path().join("agent"),
        Some(&token),
        &["-workloadRateLimit", "0"],
    )
    .await;
    let uid = nix::unistd::geteuid().as_raw().to_string();
    let exe = std::env::current_exe()?;
    let selectors = [
        format!("unix:uid:{uid}"),
        format!("unix:path:{}", exe.display()),
    ];
    let selectors: Vec<&str> = selectors.iter().map(String::as_str).collect();
    let parent = server.agent_id(&token);
    server.create_entry(&format!("spiffe://{td}/bench"), &parent, &selectors, &[]);
    agent.fetch_svid().await;
    let endpoint = agent.endpoint();

    let channel = spire_proto::uds::connect(&agent.socket).await?;
    for _ in 0..50 {
        x509(&channel).await?;
        refused(channel.clone()).await?;
    }
    progress("X509-SVIDs from the agent's cache...");
    // In turns (ten rounds), so that the machine's drift falls on both alike.
    let stats = measure::time_in_turns(2, plan.reads, 10, |kind, _| {
        let channel = &channel;
        async move {
            match kind {
                0 => x509(channel).await,
                _ => refused(channel.clone()).await,
            }
        }
    })
    .await?;
    let [subject, floor] = <[Stats; 2]>::try_from(stats)
        .map_err(|_| anyhow::anyhow!("two kinds of call, two results"))?;
    progress(&format!(
        "  x509 {}\n           refused {}",
        subject.line(),
        floor.line()
    ));
    figures.record("workload_x509", subject.mean_us(), floor.mean_us())?;

    progress("JWT-SVIDs...");
    let jwt = measure::time(plan.reads, |_| {
        let mut client = SpiffeWorkloadApiClient::new(channel.clone());
        async move {
            let response = client
                .fetch_jwtsvid(with_header(JwtsvidRequest {
                    audience: vec!["bench".to_owned()],
                    spiffe_id: String::new(),
                }))
                .await?
                .into_inner();
            anyhow::ensure!(response.svids.len() == 1, "one JWT-SVID expected");
            Ok(())
        }
    })
    .await?;
    figures.record("workload_jwt", jwt.mean_us(), floor.mean_us())?;

    progress("X509-SVIDs on new connections...");
    let fresh = plan.reads / 4;
    let subject = measure::time(fresh, |_| {
        let endpoint = endpoint.clone();
        async move {
            let client = spiffe::WorkloadApiClient::connect_to(&endpoint).await?;
            client.fetch_x509_svid().await?;
            Ok(())
        }
    })
    .await?;
    let floor = measure::time(fresh, |_| {
        let socket = agent.socket.clone();
        async move { refused(spire_proto::uds::connect(socket).await?).await }
    })
    .await?;
    figures.record("workload_x509_new_conn", subject.mean_us(), floor.mean_us())?;

    progress("new entries to an open Workload API stream...");
    let mut stream = SpiffeWorkloadApiClient::new(channel.clone())
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?
        .into_inner();
    let first = stream.message().await?.context("no first message")?;
    let mut have = first.svids.len();
    let mut samples = Vec::new();
    for k in 0..if plan.quick { 2 } else { 5 } {
        let start = Instant::now();
        server.create_entry(
            &format!("spiffe://{td}/bench/new-{k}"),
            &parent,
            &selectors,
            &[],
        );
        loop {
            let update = tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
                .await
                .context("no update within 30 s")??
                .context("stream ended")?;
            if update.svids.len() > have {
                have = update.svids.len();
                break;
            }
        }
        samples.push(start.elapsed());
    }
    let entry = Stats::new(samples);
    progress(&format!("  {}", entry.line()));
    figures.record("entry_to_workload_ms", entry.mean_ms(), 1000.0)
}
