//! Replicas on PostgreSQL: reads and durable writes per second and per Nexus CPU-second with
//! two replicas, each pinned to its own core (`taskset`), against one replica pinned to one
//! core, in the same run. The CPU time counted is the Nexus processes' only (user + system);
//! PostgreSQL, the agent and the load generator share the machine's cores unpinned.

use sqlx::Connection;
use tests::secrets::{SUPERUSER_ID, SecretsStack, TD, values};

use crate::measure;
use crate::secrets::source_as;
use crate::{Figures, Plan, progress};

/// Throughput and CPU use of one configuration.
struct Run {
    reads: f64,
    writes: f64,
    reads_per_cpu: f64,
    writes_per_cpu: f64,
}

pub async fn run(plan: Plan, figures: &mut Figures) -> anyhow::Result<()> {
    let admin_url = std::env::var("SPIKE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    let mut runs = Vec::new();
    for replicas in [1, 2] {
        let database = format!("spike_bench_{}_{replicas}", std::process::id());
        sqlx::query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await?;
        let url = admin_url.rsplit_once('/').map_or_else(
            || format!("{admin_url}/{database}"),
            |(base, _)| format!("{base}/{database}"),
        );
        let result = measure_replicas(plan, &url, replicas).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        runs.push(result?);
    }
    let (one, two) = (&runs[0], &runs[1]);
    figures.record(
        "replicas_read_per_cpu",
        two.reads_per_cpu,
        one.reads_per_cpu,
    )?;
    figures.record(
        "replicas_write_per_cpu",
        two.writes_per_cpu,
        one.writes_per_cpu,
    )?;
    figures.record("replicas_read_16c", two.reads, one.reads)?;
    figures.record("replicas_write_16c", two.writes, one.writes)
}

async fn measure_replicas(plan: Plan, url: &str, replicas: usize) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    progress(&format!("PostgreSQL, {replicas} replica(s): starting..."));
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, Some(url)).await;
    stack.nexus_config = "rate_limit = 0\n".to_owned();
    let mut urls = stack.start_nexus_and_replicas(replicas - 1).await;
    urls.insert(0, stack.nexus_url());
    for url in &urls {
        stack.wait_ready_at(url).await;
    }
    let mut pids = vec![stack.nexus.as_ref().map(|p| p.pid()).unwrap_or_default()];
    pids.extend(stack.replicas.iter().map(|r| r.process.pid()));
    for (core, pid) in pids.iter().enumerate() {
        // Every thread of the process (-a), each replica on its own core.
        let status = std::process::Command::new("taskset")
            .args(["-a", "-pc", &core.to_string(), &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "taskset failed for pid {pid}");
    }
    stack.register(&std::env::current_exe()?, SUPERUSER_ID);
    let source = source_as(&stack, SUPERUSER_ID).await?;
    let clients: Vec<nexus_api::Client> = (0..plan.clients)
        .map(|i| nexus_api::Client::connect(source.clone(), &urls[i % urls.len()], TD))
        .collect::<Result<_, _>>()?;
    clients[0]
        .put_secret("tp/read", values(&[("v", &"r".repeat(32))]), None)
        .await?;
    for client in &clients {
        client.get_secret("tp/read", 0).await?;
    }
    let cpu = || -> anyhow::Result<f64> { pids.iter().map(|pid| measure::cpu_seconds(*pid)).sum() };
    let value = "w".repeat(32);
    progress(&format!("  writes, {} clients...", plan.clients));
    let before = cpu()?;
    let writes = measure::rate(plan.clients, plan.rate_calls, |c, i| {
        let (client, values) = (&clients[c], values(&[("v", &value)]));
        async move { Ok(clients_put(client, i, values).await?) }
    })
    .await?;
    let write_cpu = cpu()? - before;
    progress(&format!("  reads, {} clients...", plan.clients));
    let before = cpu()?;
    let reads = measure::rate(plan.clients, plan.rate_calls, |c, _| {
        let client = &clients[c];
        async move { Ok(client.get_secret("tp/read", 0).await?) }
    })
    .await?;
    let read_cpu = cpu()? - before;
    let calls = plan.rate_calls as f64;
    progress(&format!(
        "  {reads:.0} reads/s ({read_cpu:.2} CPU-s), {writes:.0} writes/s ({write_cpu:.2} CPU-s)"
    ));
    Ok(Run {
        reads,
        writes,
        reads_per_cpu: calls / read_cpu.max(0.01),
        writes_per_cpu: calls / write_cpu.max(0.01),
    })
}

async fn clients_put(
    client: &nexus_api::Client,
    i: usize,
    values: nexus_api::model::Values,
) -> Result<u64, nexus_api::ClientError> {
    client.put_secret(&format!("tp/w{i}"), values, None).await
}
