//! Timing helpers: latency samples, concurrent throughput, and what a process uses (resident
//! memory, CPU time) read from `/proc`.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Latency samples, sorted.
pub struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Stats { samples }
    }

    pub fn mean(&self) -> Duration {
        self.samples.iter().sum::<Duration>() / self.samples.len().max(1) as u32
    }

    pub fn mean_us(&self) -> f64 {
        self.mean().as_secs_f64() * 1e6
    }

    pub fn mean_ms(&self) -> f64 {
        self.mean().as_secs_f64() * 1e3
    }

    fn pct(&self, p: f64) -> Duration {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples.get(i).copied().unwrap_or_default()
    }

    /// Mean, median and 99th percentile, for the progress output.
    pub fn line(&self) -> String {
        format!(
            "mean {:>9.1?}  p50 {:>9.1?}  p99 {:>9.1?}  (n={})",
            self.mean(),
            self.pct(0.5),
            self.pct(0.99),
            self.samples.len()
        )
    }
}

/// Runs `f(0..n)` one after the other and times each call.
pub async fn time<F, Fut, T>(n: usize, mut f: F) -> anyhow::Result<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        f(i).await?;
        samples.push(start.elapsed());
    }
    Ok(Stats::new(samples))
}

/// Calls per second when `clients` tasks share `total` calls: client `c` makes calls
/// `c, c + clients, ...`, each through `f(c, i)`, one after the other.
pub async fn rate<F, Fut, T>(clients: usize, total: usize, f: F) -> anyhow::Result<f64>
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    let tasks = (0..clients).map(|c| {
        let f = &f;
        async move {
            for i in (c..total).step_by(clients) {
                f(c, i).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    for result in futures::future::join_all(tasks).await {
        result?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Times `kinds` kinds of call against each other: `rounds` rounds, each making
/// `n / rounds` calls of every kind through `f(kind, i)`, one kind after the other, in an
/// order that rotates from round to round. A figure compares a subject with its floor in the
/// same run; on a shared machine the speed of everything drifts over seconds, and taking
/// both in turns shares the drift between them instead of giving it to whichever ran
/// later. Returns the samples of each kind, in kind order.
pub async fn time_in_turns<F, Fut>(
    kinds: usize,
    n: usize,
    rounds: usize,
    mut f: F,
) -> anyhow::Result<Vec<Stats>>
where
    F: FnMut(usize, usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let per_round = n.div_ceil(rounds.max(1));
    let mut samples = vec![Vec::with_capacity(n); kinds];
    for round in 0..rounds.max(1) {
        for turn in 0..kinds {
            let kind = (round + turn) % kinds;
            for i in 0..per_round {
                let start = Instant::now();
                f(kind, round * per_round + i).await?;
                samples[kind].push(start.elapsed());
            }
        }
    }
    Ok(samples.into_iter().map(Stats::new).collect())
}

/// What [`rate_in_turns`] measured of one kind of call.
pub struct Turns {
    /// Calls per second: the kind's calls over its turns' time.
    pub rate: f64,
    /// Calls made.
    pub calls: usize,
    /// How much the kind's counter grew over its turns.
    pub counted: f64,
}

/// Calls per second of `kinds` kinds of call, taken in turns as [`time_in_turns`] does:
/// `rounds` rounds in each of which `clients` tasks share `total / rounds` calls of one kind
/// (`f(kind, c, i)`, as [`rate`], `i` counting on across rounds), then of the next.
/// `counter(kind)` is read before and after each of the kind's turns (a process's CPU
/// seconds, say; 0 for nothing). Returns each kind's figures, in kind order.
pub async fn rate_in_turns<F, Fut, C>(
    kinds: usize,
    clients: usize,
    total: usize,
    rounds: usize,
    f: F,
    counter: C,
) -> anyhow::Result<Vec<Turns>>
where
    F: Fn(usize, usize, usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
    C: Fn(usize) -> anyhow::Result<f64>,
{
    let rounds = rounds.max(1);
    let per_round = total.div_ceil(rounds);
    let mut busy = vec![Duration::ZERO; kinds];
    let mut counted = vec![0.0; kinds];
    for round in 0..rounds {
        for turn in 0..kinds {
            let kind = (round + turn) % kinds;
            let before = counter(kind)?;
            let start = Instant::now();
            let first = round * per_round;
            rate(clients, per_round, |c, i| f(kind, c, first + i)).await?;
            busy[kind] += start.elapsed();
            counted[kind] += counter(kind)? - before;
        }
    }
    let calls = per_round * rounds;
    Ok(busy
        .into_iter()
        .zip(counted)
        .map(|(time, counted)| Turns {
            rate: calls as f64 / time.as_secs_f64(),
            calls,
            counted,
        })
        .collect())
}

/// Resident memory of process `pid`, MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

/// User + system CPU time process `pid` has used so far (all its threads), seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .context("malformed /proc/<pid>/stat")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: f64 = fields
        .get(11..13)
        .context("short /proc/<pid>/stat")?
        .iter()
        .map(|f| f.parse::<f64>())
        .sum::<Result<f64, _>>()?;
    Ok(ticks / clock_ticks()?)
}

fn clock_ticks() -> anyhow::Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}
