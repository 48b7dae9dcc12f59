//! The benchmark harness (DESIGN.md section 7, issue 16): drives the real processes over real
//! mTLS on loopback and reports each figure as a ratio against a baseline measured in the same
//! run, because absolute times on shared machines drift. Higher is better; 1.0 is the floor.
//! The figures, their stable names and goals are listed in `tests::bench::SPECS`.
//!
//! Run it optimised, built together with the binaries it drives (a build of this binary alone
//! resolves features differently, and the harness would rebuild and replace itself):
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/bench [--quick] [--json FILE] [--only PHASE,...] [--rate-calls N]
//! ```
//!
//! Phases: `secrets` (reads, writes, audit, restart), `policies`, `scale` (rotation and
//! 100,000 secrets), `workload`, `sign`, `replicas` (PostgreSQL: `SPIKE_TEST_POSTGRES_URL` or
//! the local server). `--quick` uses smaller counts and finishes in under a minute; its figures
//! are not comparable with a full run's. Progress goes to stderr, figures to stdout. Every load
//! generator targets loopback and stops after a fixed number of calls.

mod baseline;
mod measure;
mod policies;
mod replicas;
mod secrets;
mod sign;
mod workload;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tests::bench::{Figure, Report};

/// How much of everything one run does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    /// Sequential calls per latency figure.
    pub reads: usize,
    /// Calls per throughput figure (16 clients share them).
    pub rate_calls: usize,
    /// Concurrent clients in throughput figures.
    pub clients: usize,
    /// Sequential calls for the slower latency figures (new connections, writes).
    pub slow: usize,
    /// Policies in the "many policies" figures (the stable names say 1,000).
    pub policies: usize,
    /// Secrets the rotation rewrites (the stable name says 10,000).
    pub rotate_secrets: usize,
    /// Secrets stored for the scale figures (the stable names say 100,000).
    pub secrets: usize,
    /// Nexus restarts timed.
    pub restarts: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            reads: 2000,
            rate_calls: 4000,
            clients: 16,
            slow: 200,
            policies: 1000,
            rotate_secrets: 10_000,
            secrets: 100_000,
            restarts: 5,
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            reads: 300,
            rate_calls: 800,
            clients: 16,
            slow: 40,
            policies: 100,
            rotate_secrets: 1000,
            secrets: 5000,
            restarts: 2,
        }
    }
}

/// The figures measured so far; each is printed as it is recorded.
#[derive(Default)]
pub struct Figures {
    list: Vec<Figure>,
}

impl Figures {
    /// Records figure `name` (a name from `tests::bench::SPECS`).
    pub fn record(&mut self, name: &str, subject: f64, baseline: f64) -> anyhow::Result<()> {
        let figure = Figure::new(name, subject, baseline)?;
        println!("{}", figure.line());
        self.list.push(figure);
        Ok(())
    }
}

/// Progress on stderr, with the time since the run started.
pub fn progress(message: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>6.1}s] {message}", start.elapsed().as_secs_f64());
}

const PHASES: &[&str] = &[
    "secrets", "policies", "scale", "workload", "sign", "replicas",
];

struct Args {
    plan: Plan,
    json: Option<PathBuf>,
    phases: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut plan = Plan::full();
    let mut json = None;
    let mut rate_calls = None;
    let mut phases: Vec<String> = PHASES.iter().map(|p| (*p).to_owned()).collect();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => plan = Plan::quick(),
            "--json" => json = Some(PathBuf::from(args.next().context("--json FILE")?)),
            // Longer throughput runs, e.g. to profile them.
            "--rate-calls" => {
                rate_calls = Some(args.next().context("--rate-calls N")?.parse()?);
            }
            "--only" => {
                phases = args
                    .next()
                    .context("--only PHASE,...")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
                    anyhow::bail!("unknown phase {bad:?}; phases: {}", PHASES.join(", "));
                }
            }
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: bench [--quick] [--json FILE] [--only {}] [--rate-calls N]",
                PHASES.join(",")
            ),
        }
    }
    if let Some(calls) = rate_calls {
        plan.rate_calls = calls;
    }
    Ok(Args { plan, json, phases })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(baseline::SERVER_PROCESS_ARG) {
        return baseline::serve_as_process(std::env::args().skip(2)).await;
    }
    let Args { plan, json, phases } = args()?;
    progress(&format!("plan: {plan:?}"));
    let mut figures = Figures::default();
    let result = run(plan, &phases, &mut figures).await;
    if let Some(path) = &json {
        let time = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        tests::bench::write_json(
            path,
            &Report {
                time,
                quick: plan.quick,
                figures: &figures.list,
            },
        )
        .with_context(|| format!("writing {}", path.display()))?;
        progress(&format!(
            "{} figures written to {}",
            figures.list.len(),
            path.display()
        ));
    }
    result
}

async fn run(plan: Plan, phases: &[String], figures: &mut Figures) -> anyhow::Result<()> {
    let want = |phase: &str| phases.iter().any(|p| p == phase);
    if want("secrets") || want("policies") || want("scale") {
        secrets::run(plan, &want, figures).await?;
    }
    if want("workload") {
        workload::run(plan, figures).await?;
    }
    if want("sign") {
        sign::run(plan, figures)?;
    }
    if want("replicas") {
        replicas::run(plan, figures).await?;
    }
    Ok(())
}
