//! A misbehaving workload for the end-to-end tests of the agent's per-caller limits: one
//! process (one PID) that calls the Workload API as fast as it can, or opens streams until
//! refused.
//!
//! Usage:
//! - `workload-flood flood <endpoint> <seconds>`: eight concurrent loops of `FetchX509SVID`
//!   over one connection for at most `<seconds>`. Prints `exhausted: <message>` at the first
//!   ResourceExhausted answer, then `calls ok=<n> exhausted=<n> other=<n>` twice a second and
//!   at the end.
//! - `workload-flood streams <endpoint> <n>`: opens up to `n` `FetchX509SVID` streams and
//!   keeps them open, reading each one's first message. Prints `opened <k>` for each, then
//!   `exhausted: <message>` (or `error: <message>`) if one is refused, and exits.
//! - `workload-flood hold <socket path> <n>`: keeps `n` connections to the socket that never
//!   send a byte, each reconnecting when the agent closes it (`tests::flood`), until killed.
//!   Prints `connected=<n> closed=<n> failed=<n>` twice a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use spiffe::transport::{GrpcStatusCode, TransportError};
use spiffe::{WorkloadApiClient, WorkloadApiError};
use tests::flood::{Flood, Hold, Target};

/// The message of a ResourceExhausted answer, if `error` is one.
fn exhausted(error: &WorkloadApiError) -> Option<&str> {
    match error {
        WorkloadApiError::Transport(TransportError::Status(status))
            if status.code() == GrpcStatusCode::ResourceExhausted =>
        {
            Some(status.message())
        }
        _ => None,
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    exhausted: AtomicU64,
    other: AtomicU64,
}

impl Counts {
    fn print(&self) {
        println!(
            "calls ok={} exhausted={} other={}",
            self.ok.load(Ordering::Relaxed),
            self.exhausted.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed)
        );
    }
}

async fn flood(client: WorkloadApiClient, seconds: u64) {
    let counts = Arc::new(Counts::default());
    let until = Instant::now() + Duration::from_secs(seconds);
    let loops: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let counts = counts.clone();
            tokio::spawn(async move {
                while Instant::now() < until {
                    match client.fetch_x509_svid().await {
                        Ok(_) => counts.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => match exhausted(&e) {
                            Some(message) => {
                                if counts.exhausted.fetch_add(1, Ordering::Relaxed) == 0 {
                                    println!("exhausted: {message}");
                                }
                                1
                            }
                            None => {
                                if counts.other.fetch_add(1, Ordering::Relaxed) == 0 {
                                    println!("error: {e}");
                                }
                                1
                            }
                        },
                    };
                }
            })
        })
        .collect();
    let report = {
        let counts = counts.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                counts.print();
            }
        })
    };
    for task in loops {
        let _ = task.await;
    }
    report.abort();
    counts.print();
}

async fn streams(client: WorkloadApiClient, n: usize) {
    let mut open = Vec::new();
    for _ in 0..n {
        match client.stream_x509_svids().await {
            Ok(mut stream) => match stream.next().await {
                Some(Ok(_)) => {
                    open.push(stream);
                    println!("opened {}", open.len());
                }
                Some(Err(e)) => return println!("error: {e}"),
                None => return println!("error: the stream ended at once"),
            },
            Err(e) => {
                match exhausted(&e) {
                    Some(message) => println!("exhausted: {message}"),
                    None => println!("error: {e}"),
                }
                return;
            }
        }
    }
}

async fn hold(path: &str, n: usize) -> ! {
    let flood = Flood::start(Target::Unix(path.into()), n, Hold::Silent);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "connected={} closed={} failed={}",
            flood.connected(),
            flood.closed(),
            flood.failed()
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let usage = "usage: workload-flood flood|streams|hold <endpoint|socket path> <seconds|n>";
    let mut args = std::env::args().skip(1);
    let mode = args.next().context(usage)?;
    let endpoint = args.next().context(usage)?;
    let number: u64 = args.next().context(usage)?.parse().context(usage)?;
    if mode == "hold" {
        hold(&endpoint, usize::try_from(number)?).await;
    }
    let client = WorkloadApiClient::connect_to(&endpoint).await?;
    match mode.as_str() {
        "flood" => flood(client, number).await,
        "streams" => streams(client, usize::try_from(number)?).await,
        _ => anyhow::bail!(usage),
    }
    Ok(())
}
