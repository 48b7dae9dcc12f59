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
