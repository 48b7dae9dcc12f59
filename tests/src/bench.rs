//! The figures of the benchmark harness (`src/bin/bench`) and their JSON form, kept apart from
//! the harness so their names and shape can be tested without running it.
//!
//! Every figure compares a subject with a baseline measured in the same run and is reduced to
//! one ratio where higher is better and 1.0 is the baseline: for a time, `baseline / subject`;
//! for a rate, `subject / baseline`. A figure whose goal is a fixed budget (memory, a deadline)
//! takes the budget as its baseline. The names are stable, so runs can be compared over time.

use std::path::Path;

use serde::Serialize;

/// Whether a larger or a smaller subject is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times, memory: ratio = baseline / subject.
    Lower,
    /// Rates: ratio = subject / baseline.
    Higher,
}

/// A figure's stable name, what it measures, what it is measured against, and the goal of
/// issue 16 as a ratio (`None`: reported, no goal).
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub subject: &'static str,
    pub baseline: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub goal: Option<f64>,
}

const fn spec(
    name: &'static str,
    subject: &'static str,
    baseline: &'static str,
    unit: &'static str,
    better: Better,
    goal: Option<f64>,
) -> Spec {
    Spec {
        name,
        subject,
        baseline,
        unit,
        better,
        goal,
    }
}

use Better::{Higher, Lower};

/// Every figure the harness can report, in the order it reports them.
pub const SPECS: &[Spec] = &[
    spec(
        "read_keepalive_1c",
        "secret read, kept-alive mTLS, 1 client (mean)",
        "bare rustls+axum mTLS server in its own process, fixed body, same client",
        "us",
        Lower,
        Some(1.0 / 1.3),
    ),
    spec(
        "read_keepalive_1c_inproc",
        "secret read, kept-alive mTLS, 1 client (mean)",
        "the bare server in the load generator's process (no thread hand-off needed)",
        "us",
        Lower,
        None,
    ),
    spec(
        "read_keepalive_16c",
        "secret reads, kept-alive mTLS, 16 concurrent clients",
        "bare rustls+axum mTLS server in its own process, 16 concurrent clients",
        "req/s",
        Higher,
        Some(0.8),
    ),
    spec(
        "read_keepalive_16c_inproc",
        "secret reads, kept-alive mTLS, 16 concurrent clients",
        "the bare server in the load generator's process, 16 concurrent clients",
        "req/s",
        Higher,
        None,
    ),
    spec(
        "read_cpu_16c",
        "Nexus's CPU time per kept-alive read, 16 concurrent clients",
        "the bare server process's CPU time per read, same load",
        "us",
        Lower,
        None,
    ),
    spec(
        "read_new_conn",
        "secret read on a new connection (mean)",
        "bare rustls mTLS handshake + request, server in its own process",
        "us",
        Lower,
        Some(0.8),
    ),
    spec(
        "read_new_conn_inproc",
        "secret read on a new connection (mean)",
        "bare rustls mTLS handshake + request, server in the load generator's process",
        "us",
        Lower,
        None,
    ),
    spec(
        "write_1c",
        "durable secret put, 1 client (mean)",
        "raw SQLite insert, WAL + synchronous=FULL",
        "us",
        Lower,
        Some(1.0 / 1.5),
    ),
    spec(
        "write_16c",
        "durable secret puts, 16 concurrent clients",
        "raw SQLite, 16 writers, one insert per transaction, WAL + synchronous=FULL",
        "req/s",
        Higher,
        Some(2.0),
    ),
    spec(
        "audit_line",
        "one audit line (JSON, one write(2) to a file)",
        "the whole kept-alive secret read it records",
        "us",
        Lower,
        None,
    ),
    spec(
        "rotation_10k",
        "root key rotation over 10,000 secrets (API call to commit)",
        "raw SQLite rewriting one blob in as many rows, one transaction",
        "ms",
        Lower,
        None,
    ),
    spec(
        "start_to_first_read_ms",
        "Nexus start to first served read, keepers up",
        "spawn and reap `nexus --version`",
        "ms",
        Lower,
        None,
    ),
    spec(
        "policy_check_1000",
        "access check (Access::allows, in process) with 1,000 policies",
        "the same check with 1 policy",
        "ns",
        Lower,
        Some(0.7),
    ),
    spec(
        "policy_read_1000",
        "secret read by a policy-governed workload with 1,000 policies",
        "the same read with 1 policy",
        "us",
        Lower,
        None,
    ),
    spec(
        "policy_put_1000",
        "policy put with 1,000 policies (mean)",
        "policy put with 10 policies",
        "ms",
        Lower,
        Some(0.5),
    ),
    spec(
        "policy_delete_1000",
        "policy delete with 1,000 policies (mean)",
        "policy delete with 10 policies",
        "ms",
        Lower,
        Some(0.5),
    ),
    spec(
        "secrets_100k_rss_mib",
        "Nexus resident memory with 100,000 secrets, after a full list",
        "budget: 100 MiB",
        "MiB",
        Lower,
        Some(1.0),
    ),
    spec(
        "secrets_100k_list_ms",
        "superuser list of 100,000 secrets",
        "budget: 200 ms",
        "ms",
        Lower,
        Some(1.0),
    ),
    spec(
        "secrets_100k_read",
        "secret read with 100,000 secrets stored (mean)",
        "the same read with 10 secrets stored",
        "us",
        Lower,
        Some(0.9),
    ),
    spec(
        "secrets_100k_read_miss",
        "secret read that misses the read cache (after a write), 100,000 secrets stored (mean)",
        "the same with 10 secrets stored",
        "us",
        Lower,
        Some(0.9),
    ),
    spec(
        "workload_x509",
        "X509-SVID from the agent's cache: new stream on a kept channel, first message",
        "refused call without the security header, same channel",
        "us",
        Lower,
        Some(1.0 / 1.5),
    ),
    spec(
        "workload_jwt",
        "JWT-SVID (FetchJWTSVID) on a kept channel",
        "refused call without the security header, same channel",
        "us",
        Lower,
        None,
    ),
    spec(
        "workload_x509_new_conn",
        "X509-SVID with the spiffe crate, new connection each",
        "new connection + refused call",
        "us",
        Lower,
        None,
    ),
    spec(
        "svid_sign",
        "X509-SVIDs signed per second by the server CA (sign_csr, in process)",
        "raw ECDSA P-256 signatures per second (ring, same process)",
        "1/s",
        Higher,
        Some(0.5),
    ),
    spec(
        "entry_to_workload_ms",
        "new registration entry to the open Workload API stream (agent syncInterval 300ms)",
        "budget: 1000 ms",
        "ms",
        Lower,
        Some(1.0),
    ),
    spec(
        "replicas_read_per_cpu",
        "reads per Nexus CPU-second, 2 replicas on PostgreSQL, each pinned to its own core",
        "the same with 1 replica",
        "req/cpu-s",
        Higher,
        None,
    ),
    spec(
        "replicas_write_per_cpu",
        "durable writes per Nexus CPU-second, 2 replicas on PostgreSQL, each pinned",
        "the same with 1 replica",
        "req/cpu-s",
        Higher,
        None,
    ),
    spec(
        "replicas_read_16c",
        "reads/s, 16 clients, 2 replicas on PostgreSQL, each pinned to its own core",
        "the same with 1 replica",
        "req/s",
        Higher,
        None,
    ),
    spec(
        "replicas_write_16c",
        "durable writes/s, 16 clients, 2 replicas on PostgreSQL, each pinned",
        "the same with 1 replica",
        "req/s",
        Higher,
        None,
    ),
];

/// The spec of the figure named `name`.
pub fn spec_of(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// One measured figure, as written to the JSON file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub subject: f64,
    pub baseline: f64,
    pub unit: &'static str,
    pub ratio: f64,
}

/// Why a figure could not be recorded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FigureError {
    #[error("no figure is named {0:?}")]
    UnknownName(String),
    #[error("{name}: subject {subject} and baseline {baseline} must be finite and positive")]
    NotPositive {
        name: &'static str,
        subject: f64,
        baseline: f64,
    },
}

impl Figure {
    /// The figure `name` from its subject and baseline, in the unit of its spec.
    pub fn new(name: &str, subject: f64, baseline: f64) -> Result<Figure, FigureError> {
        let spec = spec_of(name).ok_or_else(|| FigureError::UnknownName(name.to_owned()))?;
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(subject) || !positive(baseline) {
            return Err(FigureError::NotPositive {
                name: spec.name,
                subject,
                baseline,
            });
        }
        let ratio = match spec.better {
            Better::Lower => baseline / subject,
            Better::Higher => subject / baseline,
        };
        Ok(Figure {
            name: spec.name,
            subject,
            baseline,
            unit: spec.unit,
            ratio,
        })
    }

    /// Its spec (every figure is built from one).
    pub fn spec(&self) -> &'static Spec {
        spec_of(self.name).expect("figures are only built from a spec")
    }

    /// Whether it meets its goal (`None`: it has none).
    pub fn goal_met(&self) -> Option<bool> {
        self.spec().goal.map(|goal| self.ratio >= goal)
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        let goal = match (self.spec().goal, self.goal_met()) {
            (Some(goal), Some(met)) => {
                format!("goal >= {goal:.2}: {}", if met { "met" } else { "NOT met" })
            }
            _ => "no goal".to_owned(),
        };
        format!(
            "{:<24} {:>12.1} vs {:>12.1} {:<9} ratio {:>6.2}  {goal}",
            self.name, self.subject, self.baseline, self.unit, self.ratio
        )
    }
}

/// The JSON document of a run: when, in which mode, and every figure.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// Unix seconds when the run ended.
    pub time: u64,
    /// Whether the run was `--quick` (smaller counts: not comparable with full runs).
    pub quick: bool,
    pub figures: &'a [Figure],
}

/// Writes `report` to `path` as pretty JSON.
pub fn write_json(path: &Path, report: &Report<'_>) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names issue 16 fixes; runs are compared by them.
    const STABLE: &[&str] = &[
        "read_keepalive_1c",
        "read_keepalive_16c",
        "read_new_conn",
        "write_1c",
        "write_16c",
        "policy_check_1000",
        "policy_put_1000",
        "secrets_100k_rss_mib",
        "secrets_100k_list_ms",
        "secrets_100k_read",
        "workload_x509",
        "svid_sign",
        "entry_to_workload_ms",
        "replicas_read_per_cpu",
    ];

    #[test]
    fn every_stable_name_has_a_spec_and_names_are_unique() {
        for name in STABLE {
            assert!(spec_of(name).is_some(), "{name} missing");
        }
        let mut names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SPECS.len(), "duplicate names");
        for s in SPECS {
            assert!(
                s.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                s.name
            );
            assert!(!s.unit.is_empty() && !s.subject.is_empty() && !s.baseline.is_empty());
        }
    }

    #[test]
    fn ratio_is_higher_when_better() {
        // A time half the baseline's and a rate twice the baseline's are both 2.0.
        let time = Figure::new("read_keepalive_1c", 50.0, 100.0).expect("figure");
        assert_eq!(time.ratio, 2.0);
        assert_eq!(time.unit, "us");
        let rate = Figure::new("read_keepalive_16c", 2000.0, 1000.0).expect("figure");
        assert_eq!(rate.ratio, 2.0);
        assert_eq!(rate.goal_met(), Some(true));
        let slow = Figure::new("write_1c", 300.0, 100.0).expect("figure");
        assert_eq!(slow.goal_met(), Some(false));
        assert_eq!(
            Figure::new("audit_line", 1.0, 1.0)
                .expect("figure")
                .goal_met(),
            None
        );
    }

    #[test]
    fn unknown_names_and_unmeasurable_values_are_refused() {
        assert_eq!(
            Figure::new("read_fast", 1.0, 1.0),
            Err(FigureError::UnknownName("read_fast".into()))
        );
        for (s, b) in [
            (0.0, 1.0),
            (1.0, 0.0),
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
        ] {
            assert!(matches!(
                Figure::new("write_1c", s, b),
                Err(FigureError::NotPositive { .. })
            ));
        }
    }

    #[test]
    fn json_records_have_exactly_the_five_fields() {
        let figures = vec![
            Figure::new("read_keepalive_1c", 243.0, 100.0).expect("figure"),
            Figure::new("svid_sign", 9000.0, 30000.0).expect("figure"),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bench.json");
        write_json(
            &path,
            &Report {
                time: 1,
                quick: true,
                figures: &figures,
            },
        )
        .expect("write");
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
        assert_eq!(doc["quick"], true);
        let records = doc["figures"].as_array().expect("figures array");
        assert_eq!(records.len(), 2);
        for record in records {
            let object = record.as_object().expect("record object");
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["baseline", "name", "ratio", "subject", "unit"]);
            for key in ["subject", "baseline", "ratio"] {
                assert!(object[key].as_f64().is_some_and(f64::is_finite), "{key}");
            }
        }
        assert_eq!(records[0]["name"], "read_keepalive_1c");
        assert_eq!(records[1]["unit"], "1/s");
        assert!((records[1]["ratio"].as_f64().expect("ratio") - 0.3).abs() < 1e-9);
    }
}
