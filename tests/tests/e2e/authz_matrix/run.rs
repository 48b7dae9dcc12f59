//! Running the tables: every cell's requests, what came back compared with the table, the
//! grid that is printed, and the audit lines of the answered requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use nexus_api::routes::Action;
use rustls::AlertDescription;
use serde_json::{Value, json};
use tests::mtls::{self, Answer, Request};
use tests::secrets::SecretsStack;

use super::callers::{CALLERS, Caller, Caller::*};
use super::endpoints;
use super::requests::{
    Fixtures, check_answer, check_keeper_answer, keeper_requests, nexus_requests,
};
use super::{BAD, KEEPER_HANDSHAKE, KEEPER_MATRIX, NEXUS_HANDSHAKE, NEXUS_MATRIX, Outcome};

/// What a caller actually got.
#[derive(Debug, PartialEq, Eq)]
enum Observed {
    /// 200.
    Ok,
    /// An error answer: status and `err` code.
    Http(u16, String),
    /// The server refused the handshake with this alert.
    Refused(AlertDescription),
    /// Neither an answer nor an alert (a bug of the test or a server that hung up).
    Failed(String),
}

impl Observed {
    fn of(reply: &std::io::Result<Answer>) -> Observed {
        match reply {
            Ok(answer) if answer.status == 200 => Observed::Ok,
            Ok(answer) => {
                let code = serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|v| v["err"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("(no code) {}", answer.text()));
                Observed::Http(answer.status, code)
            }
            Err(error) => match mtls::alert(error) {
                Some(alert) => Observed::Refused(alert),
                None => Observed::Failed(error.to_string()),
            },
        }
    }

    fn matches(&self, expected: Outcome, handshake: Option<AlertDescription>) -> bool {
        match (self, expected) {
            (Observed::Ok, Outcome::Ok) => true,
            (Observed::Http(status, code), Outcome::Http(s, c)) => *status == s && code == c,
            (Observed::Refused(alert), Outcome::Tls) => handshake == Some(*alert),
            _ => false,
        }
    }
}

fn expected_text(expected: Outcome, handshake: Option<AlertDescription>) -> String {
    match expected {
        Outcome::Ok => "200".to_owned(),
        Outcome::Http(status, code) => format!("{status} {code}"),
        Outcome::Tls => format!("handshake refused with {handshake:?}"),
    }
}

/// What the matrix saw: the grid it prints, cells that differ from the table, and the
/// answered requests whose audit lines must exist.
#[derive(Default)]
pub struct Report {
    pub grid: String,
    pub mismatches: Vec<String>,
    pub answered: Vec<(Caller, String, u16, String)>,
    pub cells: usize,
    pub requests: usize,
}

impl Report {
    /// Records one request of cell (`row`, `caller`).
    pub fn record(
        &mut self,
        row: &str,
        caller: Caller,
        expected: Outcome,
        handshake: Option<AlertDescription>,
        reply: &std::io::Result<Answer>,
        check: impl FnOnce(&Answer) -> Result<(), String>,
    ) -> &'static str {
        self.requests += 1;
        let observed = Observed::of(reply);
        let mut problem = (!observed.matches(expected, handshake)).then(|| {
            format!(
                "expected {}, got {observed:?}",
                expected_text(expected, handshake)
            )
        });
        if let Ok(answer) = reply {
            if problem.is_none() && answer.status == 200 {
                problem = check(answer).err();
            }
            let id = answer.header("x-request-id").unwrap_or_default().to_owned();
            self.answered
                .push((caller, row.to_owned(), answer.status, id));
        }
        if let Some(problem) = problem {
            self.mismatches
                .push(format!("{row} as {caller:?}: {problem}"));
        }
        match observed {
            Observed::Ok => "200",
            Observed::Http(401, _) => "401",
            Observed::Http(400, _) => "400",
            Observed::Http(..) => "http?",
            Observed::Refused(_) => "tls",
            Observed::Failed(_) => "fail",
        }
    }

    pub fn row(&mut self, name: &str, cells: &[&str]) {
        self.cells += cells.len();
        self.grid.push_str(&format!("{name:<42}"));
        for cell in cells {
            self.grid.push_str(&format!("{cell:>5}"));
        }
        self.grid.push('\n');
    }
}

pub async fn run_keeper_matrix(
    port: u16,
    tls: &[Arc<rustls::ClientConfig>],
    fx: &Fixtures,
    report: &mut Report,
) {
    for (route, cells) in KEEPER_MATRIX {
        let mut seen = Vec::new();
        for caller in CALLERS {
            let i = caller.column();
            let mut cell = "";
            for request in keeper_requests(route, caller, fx) {
                let reply = mtls::send(&tls[i], port, &request).await;
                let row = format!("keeper {route}");
                cell = report.record(&row, caller, cells[i], KEEPER_HANDSHAKE[i], &reply, |a| {
                    check_keeper_answer(route, a, fx)
                });
            }
            seen.push(cell);
        }
        report.row(&format!("keeper {route}"), &seen);
    }
}

pub async fn run_nexus_matrix(
    port: u16,
    tls: &[Arc<rustls::ClientConfig>],
    fx: &Fixtures,
    report: &mut Report,
) {
    for (route, action, cells) in NEXUS_MATRIX {
        let row = action.url(route);
        let mut seen = Vec::new();
        for caller in CALLERS {
            let i = caller.column();
            let mut cell = "";
            for request in nexus_requests(route, action, caller, fx) {
                let reply = mtls::send(&tls[i], port, &request).await;
                cell = report.record(&row, caller, cells[i], NEXUS_HANDSHAKE[i], &reply, |a| {
                    check_answer(route, action, caller, &request, a)
                });
            }
            seen.push(cell);
        }
        report.row(&row, &seen);
    }
}

/// The router serves no more than the table: on every route, an action not listed for it is a
/// 400 (a route without actions takes none), as is a path that is no route.
pub async fn check_unlisted(port: u16, su: &Arc<rustls::ClientConfig>, report: &mut Report) {
    let mut targets = vec!["/v1/store/secretsx".to_owned(), "/v1/operator".to_owned()];
    let endpoints = endpoints();
    for (route, _) in &endpoints {
        let listed: Vec<Action> = endpoints
            .iter()
            .filter(|(r, _)| r == route)
            .map(|(_, a)| *a)
            .collect();
        targets.extend(
            Action::ALL
                .iter()
                .filter(|a| !listed.contains(a))
                .map(|a| a.url(route)),
        );
    }
    targets.sort();
    targets.dedup();
    for target in targets {
        let reply = mtls::send(su, port, &Request::post_json(target.clone(), &json!({}))).await;
        report.record(
            &format!("unlisted {target}"),
            Superuser,
            BAD,
            None,
            &reply,
            |_| Ok(()),
        );
    }
}

/// Every answered request has its audit line: the caller's ID, the route, the status, and
/// `deny` for a refusal.
pub fn check_audit(stack: &SecretsStack, report: &Report) {
    let audit = std::fs::read_to_string(stack.audit_log()).expect("audit log");
    let lines: BTreeMap<String, Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON audit line"))
        .map(|l| (l["request_id"].as_str().unwrap_or_default().to_owned(), l))
        .collect();
    for (caller, row, status, request_id) in &report.answered {
        if row.starts_with("keeper ") {
            continue;
        }
        let line = lines.get(request_id).unwrap_or_else(|| {
            panic!("{row} as {caller:?} ({status}) has no audit line {request_id:?}")
        });
        let id = caller
            .agent_id()
            .expect("only callers with a real SVID get answers");
        assert_eq!(line["caller"], id, "{line}");
        assert!(
            row.starts_with(line["route"].as_str().unwrap_or("?")) || row.starts_with("unlisted"),
            "{row}: {line}"
        );
        assert_eq!(line["status"], *status, "{line}");
        if *status == 401 {
            assert_eq!(line["decision"], "deny", "{line}");
        } else if *status == 200 {
            assert_ne!(line["decision"], "deny", "{line}");
        }
    }
}
