//! Policies at scale: an access check, a policy-governed read, and policy puts and deletes,
//! each with many policies against the same with few.

use std::hint::black_box;
use std::time::Instant;

use nexus::policy::access::Access;
use nexus_api::Client;
use nexus_api::model::PutPolicyRequest;
use policies::{Permission, Policy};
use tests::secrets::TD;

use crate::measure::{self, Stats};
use crate::secrets::APP_ID;
use crate::{Figures, Plan, progress};

/// A policy for someone else: it never matches the bench's workload.
fn other(i: usize) -> PutPolicyRequest {
    PutPolicyRequest {
        name: format!("bench-{i:05}"),
        spiffe_id_pattern: format!("spiffe://example\\.org/bench/other-{i}"),
        path_pattern: format!("bench/p{i}/.*"),
        permissions: vec!["read".into()],
    }
}

pub async fn run(
    plan: Plan,
    admin: &Client,
    app: &Client,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    check(plan, figures)?;
    admin
        .put_policy(&PutPolicyRequest {
            name: "bench-app".into(),
            spiffe_id_pattern: regex_escape(APP_ID),
            path_pattern: "bench/db".into(),
            permissions: vec!["read".into()],
        })
        .await?;
    for _ in 0..50 {
        app.get_secret("bench/db", 0).await?;
    }
    progress("reads by a policy-governed workload, 1 policy...");
    let read1 = measure::time(plan.reads, |_| async {
        Ok(app.get_secret("bench/db", 0).await?)
    })
    .await?;
    fill(plan, admin, 10).await?;
    let ops = if plan.quick { 10 } else { 20 };
    progress("policy puts and deletes with 10 policies...");
    let (put10, delete10) = put_delete(admin, ops).await?;
    progress(&format!(
        "  put {}\n           delete {}",
        put10.line(),
        delete10.line()
    ));
    progress(&format!("writing {} policies...", plan.policies));
    fill(plan, admin, plan.policies).await?;
    progress(&format!(
        "policy puts and deletes with {} policies...",
        plan.policies
    ));
    let (put_n, delete_n) = put_delete(admin, ops).await?;
    progress(&format!(
        "  put {}\n           delete {}",
        put_n.line(),
        delete_n.line()
    ));
    figures.record("policy_put_1000", put_n.mean_ms(), put10.mean_ms())?;
    figures.record("policy_delete_1000", delete_n.mean_ms(), delete10.mean_ms())?;
    let read_n = measure::time(plan.reads, |_| async {
        Ok(app.get_secret("bench/db", 0).await?)
    })
    .await?;
    figures.record("policy_read_1000", read_n.mean_us(), read1.mean_us())
}

/// A pattern matching exactly `text`.
fn regex_escape(text: &str) -> String {
    text.replace('.', "\\.")
}

/// Puts policies `bench-<i>` until there are `target` (the workload's own included), 16 at a
/// time.
async fn fill(plan: Plan, admin: &Client, target: usize) -> anyhow::Result<()> {
    let have = admin.list_policies(&Default::default()).await?.len();
    if have >= target {
        return Ok(());
    }
    let start = Instant::now();
    let step = ((target - have) / 10).max(1);
    measure::rate(plan.clients, target - have, |_, i| async move {
        admin.put_policy(&other(have + i)).await?;
        if i % step == 0 && i > 0 {
            progress(&format!("  {} of {target} policies", have + i));
        }
        Ok(())
    })
    .await?;
    progress(&format!("  {target} policies in {:.1?}", start.elapsed()));
    Ok(())
}

/// `ops` times: put a new policy, then delete it; each call timed.
async fn put_delete(admin: &Client, ops: usize) -> anyhow::Result<(Stats, Stats)> {
    let (mut puts, mut deletes) = (Vec::new(), Vec::new());
    for k in 0..ops {
        let mut probe = other(1_000_000 + k);
        probe.name = format!("probe-{k}");
        let start = Instant::now();
        admin.put_policy(&probe).await?;
        puts.push(start.elapsed());
        let start = Instant::now();
        admin.delete_policy(&probe.name).await?;
        deletes.push(start.elapsed());
    }
    Ok((Stats::new(puts), Stats::new(deletes)))
}

/// Nanoseconds per `Access::allows` for the bench's workload, whose policy comes last.
fn check_ns(policies: usize, calls: usize) -> anyhow::Result<f64> {
    let access = Access::new(TD)?;
    let mut set: Vec<Policy> = (1..policies)
        .map(|i| {
            let p = other(i);
            Policy::new(
                p.name,
                p.spiffe_id_pattern,
                p.path_pattern,
                [Permission::Read],
            )
        })
        .collect();
    set.push(Policy::new(
        "zz-app",
        regex_escape(APP_ID),
        "bench/db",
        [Permission::Read],
    ));
    access.install(1, set, true)?;
    let caller = spiffe::SpiffeId::new(APP_ID)?;
    anyhow::ensure!(
        access.allows(&caller, "bench/db", Permission::Read),
        "the check must grant"
    );
    let start = Instant::now();
    for _ in 0..calls {
        black_box(access.allows(black_box(&caller), black_box("bench/db"), Permission::Read));
    }
    Ok(start.elapsed().as_secs_f64() * 1e9 / calls as f64)
}

fn check(plan: Plan, figures: &mut Figures) -> anyhow::Result<()> {
    progress("access checks in process...");
    let calls = if plan.quick { 20_000 } else { 200_000 };
    let one = check_ns(1, calls)?;
    let many = check_ns(plan.policies, calls / 10)?;
    figures.record("policy_check_1000", many, one)
}
