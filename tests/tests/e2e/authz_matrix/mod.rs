//! The authorisation matrix as a test: every Nexus endpoint (`nexus::authz::TABLE`, from which
//! Nexus's router is built) and every keeper route (`keeper::authz::TABLE`, likewise) against
//! every kind of caller,
//! through real mTLS against the real binaries. Every cell is asserted: the exact HTTP status
//! and error code, or the TLS alert with which the server refused the handshake.
//!
//! The expected decisions are data, the tables just below: (route, action, caller) ->
//! outcome, plus one row per server saying whom its handshake lets through. An endpoint in
//! the lists without a row, or a row for an endpoint not in them, fails the test; on every
//! route that takes `?action=`, each action not listed for it must be a 400, as must a path
//! that is no route.
//!
//! Rows run top to bottom, each for every caller. Every caller works on its own secret
//! (`matrix/<caller>`, versions 1 and 2 written beforehand) and its own policy
//! (`matrix-<caller>`), so one caller's allowed writes never decide another's cell. After
//! the matrix the datastore and the keeper hold exactly what the allowed calls wrote, and
//! every answered request has its audit line with the caller and the decision.

mod callers;
mod requests;
mod run;
mod state;

use std::sync::Arc;
use std::time::Instant;

use nexus_api::routes::{self, Action};
use rustls::AlertDescription;
use serde_json::json;
use tests::certs;
use tests::mtls;
use tests::secrets::{KEEPER_ID, NEXUS_ID, SecretsStack};

use callers::{CALLERS, Caller::*, certificates};
use run::{Report, check_audit, check_unlisted, run_keeper_matrix, run_nexus_matrix};
use state::{check_state, fixtures, snapshot};

/// What one caller gets from one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 200, with the answer the endpoint promises (see `check_answer`).
    Ok,
    /// An error answer: the status and the `err` code.
    Http(u16, &'static str),
    /// The handshake is refused, with the alert of the server's handshake row.
    Tls,
}

const OK: Outcome = Outcome::Ok;
const DENY: Outcome = Outcome::Http(401, "access_unauthorized");
const BAD: Outcome = Outcome::Http(400, "api_bad_request");
const TLS: Outcome = Outcome::Tls;

const PASS: Option<AlertDescription> = None;
const UNKNOWN_CA: Option<AlertDescription> = Some(AlertDescription::UnknownCA);
const EXPIRED: Option<AlertDescription> = Some(AlertDescription::CertificateExpired);
const NO_CERT: Option<AlertDescription> = Some(AlertDescription::CertificateRequired);
/// spiffe-rustls's answer to a chain from a trust domain it holds no bundle for, and to an ID
/// its authoriser refuses.
const REFUSED: Option<AlertDescription> = Some(AlertDescription::HandshakeFailure);

/// Whom Nexus's handshake lets through (any SVID of its trust domain), and the alert it
/// refuses the others with.
#[rustfmt::skip]
const NEXUS_HANDSHAKE: [Option<AlertDescription>; 16] =
//   su    rec   rst   kpr   nex   lite  boot  grant ungr  look  | ftd      ftd-o    other-ca    self        expired  none
    [PASS, PASS, PASS, PASS, PASS, PASS, PASS, PASS, PASS, PASS,   REFUSED, REFUSED, UNKNOWN_CA, UNKNOWN_CA, EXPIRED, NO_CERT];

/// Every Nexus endpoint for every caller, in the order the rows run.
#[rustfmt::skip]
const NEXUS_MATRIX: [(&str, Action, [Outcome; 16]); 23] = [
//                                        su    rec   rst   kpr   nex   lite  boot  grant ungr  look   ftd  ftd-o oca  self exp  none
    (routes::SECRETS, Action::Put,       [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::SECRETS, Action::Get,       [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::SECRETS_METADATA, Action::Get,
                                         [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::SECRETS, Action::Delete,    [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::SECRETS, Action::Undelete,  [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::SECRETS, Action::Destroy,   [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    // Everyone may list; each sees only what it may read (`visible_paths`).
    (routes::SECRETS, Action::List,      [OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,    TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::SECRETS, Action::Patch,     [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::SECRETS_METADATA, Action::Put,
                                         [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    // Last of the secret rows: whoever may, deletes its secret whole.
    (routes::SECRETS_METADATA, Action::Delete,
                                         [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::POLICY, Action::Put,        [OK,   DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::POLICY, Action::Get,        [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::POLICY, Action::List,       [OK,   DENY, DENY, DENY, DENY, DENY, DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::POLICY, Action::Delete,     [OK,   DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::CIPHER_ENCRYPT, Action::Put,[OK,   DENY, DENY, DENY, DENY, OK,   DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::CIPHER_DECRYPT, Action::Put,[OK,   DENY, DENY, DENY, DENY, OK,   DENY, OK,   DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::RECOVER, Action::Put,       [DENY, OK,   DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    // The restore role is let in, and told that a Nexus that is not sealed needs no restore.
    (routes::RESTORE, Action::Put,       [DENY, DENY, BAD,  DENY, DENY, DENY, DENY, DENY, DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    // The superuser seals first, so every other caller is refused by a sealed Nexus; then
    // unseals, and the rows below run against a ready Nexus again.
    (routes::SEAL, Action::Put,          [OK,   DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::UNSEAL, Action::Put,        [OK,   DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::STATUS, Action::Put,        [OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,    TLS, TLS, TLS, TLS, TLS, TLS]),
    // The superuser rekeys to the same keepers, 3 of 3 (generation 1); the rest are refused
    // before anything changes.
    (routes::REKEY, Action::Put,         [OK,   DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
    // Last: the superuser's rotation changes the root key under everything above.
    (routes::ROTATE, Action::Put,        [OK,   DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY, DENY,  TLS, TLS, TLS, TLS, TLS, TLS]),
];

/// Whom a keeper's handshake lets through (Nexus only).
#[rustfmt::skip]
const KEEPER_HANDSHAKE: [Option<AlertDescription>; 16] =
//   su       rec      rst      kpr      nex   lite     boot     grant    ungr     look     | ftd      ftd-o    other-ca    self        expired  none
    [REFUSED, REFUSED, REFUSED, REFUSED, PASS, REFUSED, REFUSED, REFUSED, REFUSED, REFUSED,   REFUSED, REFUSED, UNKNOWN_CA, UNKNOWN_CA, EXPIRED, NO_CERT];

/// Every keeper route for every caller, in the order the rows run.
#[rustfmt::skip]
const KEEPER_MATRIX: [(&str, [Outcome; 16]); 4] = [
//                              su   rec  rst  kpr  nex  lite boot grnt ungr look  ftd  ftd-o oca self exp none
    (routes::KEEPER_HEALTH,     [TLS, TLS, TLS, TLS, OK,  TLS, TLS, TLS, TLS, TLS,  TLS, TLS, TLS, TLS, TLS, TLS]),
    (routes::KEEPER_SHARD,      [TLS, TLS, TLS, TLS, OK,  TLS, TLS, TLS, TLS, TLS,  TLS, TLS, TLS, TLS, TLS, TLS]),
    // Nexus gives the keeper back the shard it holds; everyone else tries another one.
    (routes::KEEPER_CONTRIBUTE, [TLS, TLS, TLS, TLS, OK,  TLS, TLS, TLS, TLS, TLS,  TLS, TLS, TLS, TLS, TLS, TLS]),
    // Nexus keeps the generation the keeper holds: nothing is forgotten.
    (routes::KEEPER_RETAIN,     [TLS, TLS, TLS, TLS, OK,  TLS, TLS, TLS, TLS, TLS,  TLS, TLS, TLS, TLS, TLS, TLS]),
];

// ---------------------------------------------------------------------------------------
// Running the tables
// ---------------------------------------------------------------------------------------

/// Every endpoint Nexus serves, from the authorisation table its router is built from; a
/// route that takes no `?action=` is written with [`Action::Put`] (its URL has no query).
fn endpoints() -> Vec<(&'static str, Action)> {
    nexus::authz::TABLE
        .iter()
        .map(|rule| (rule.route, rule.action.unwrap_or(Action::Put)))
        .collect()
}

/// The tables cover exactly the listed endpoints, and a cell says `TLS` exactly where the
/// server's handshake row refuses the caller.
fn check_tables() {
    let listed: Vec<String> = endpoints().iter().map(|(r, a)| a.url(r)).collect();
    let rows: Vec<String> = NEXUS_MATRIX.iter().map(|(r, a, _)| a.url(r)).collect();
    for endpoint in &listed {
        assert!(
            rows.contains(endpoint),
            "{endpoint} has no row in NEXUS_MATRIX: add one"
        );
    }
    for row in &rows {
        assert!(
            listed.contains(row),
            "NEXUS_MATRIX row {row} is not in nexus::authz::TABLE"
        );
    }
    assert_eq!(rows.len(), listed.len(), "one row per endpoint");
    let keeper_rows: Vec<&str> = KEEPER_MATRIX.iter().map(|(r, _)| *r).collect();
    let mut sorted_rows = keeper_rows.clone();
    sorted_rows.sort_unstable();
    let mut keeper_routes: Vec<&str> = keeper::authz::TABLE.iter().map(|r| r.route).collect();
    keeper_routes.sort_unstable();
    assert_eq!(
        sorted_rows, keeper_routes,
        "KEEPER_MATRIX rows are the routes of keeper::authz::TABLE"
    );

    let cells = NEXUS_MATRIX
        .iter()
        .map(|(r, a, cells)| (a.url(r), cells, &NEXUS_HANDSHAKE))
        .chain(
            KEEPER_MATRIX
                .iter()
                .map(|(r, cells)| ((*r).to_owned(), cells, &KEEPER_HANDSHAKE)),
        );
    for (row, cells, handshake) in cells {
        for caller in CALLERS {
            let i = caller.column();
            assert_eq!(
                cells[i] == TLS,
                handshake[i].is_some(),
                "{row} / {caller:?}: a cell is TLS exactly when the handshake row refuses"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_against_every_kind_of_caller() {
    tests::bin_dir();
    let started = Instant::now();
    check_tables();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = SecretsStack::start(dir.path(), 3).await;
    let certificates = certificates(&stack).await;
    let bundle = stack.server.bundle_der();
    let tls_to = |server: &str| -> Vec<Arc<rustls::ClientConfig>> {
        certificates
            .iter()
            .map(|svid| certs::client_tls(&bundle, svid.as_ref(), server))
            .collect()
    };
    let (nexus_tls, keeper_tls) = (tls_to(NEXUS_ID), tls_to(KEEPER_ID));
    let su = &nexus_tls[Superuser.column()];
    let fx = fixtures(&stack, su, &keeper_tls[Nexus.column()]).await;
    let before = snapshot(su, stack.nexus_port).await;
    println!("set up after {:?}", started.elapsed());

    let matrix_started = Instant::now();
    let mut report = Report::default();
    let header: String = CALLERS
        .iter()
        .map(|c| format!("{:>5}", &c.slug()[..4.min(c.slug().len())]))
        .collect();
    report.grid.push_str(&format!("{:<42}{header}\n", ""));
    run_keeper_matrix(stack.keeper_ports[0], &keeper_tls, &fx, &mut report).await;
    // Before the rotation at the end of the Nexus matrix re-seeds the keepers.
    let shard = mtls::post(
        &keeper_tls[Nexus.column()],
        stack.keeper_ports[0],
        routes::KEEPER_SHARD,
        "{}",
    )
    .await
    .expect("the keeper's shard")
    .json();
    assert!(
        shard["shard"] == json!(fx.shard),
        "the keeper's shard changed (a refused contribute was stored)"
    );
    run_nexus_matrix(stack.nexus_port, &nexus_tls, &fx, &mut report).await;
    check_unlisted(stack.nexus_port, su, &mut report).await;
    println!(
        "{} cells, {} requests in {:?}:\n{}",
        report.cells,
        report.requests,
        matrix_started.elapsed(),
        report.grid
    );
    assert!(
        report.mismatches.is_empty(),
        "{} cells differ from the table:\n{}\nnexus log:\n{}",
        report.mismatches.len(),
        report.mismatches.join("\n"),
        stack.nexus_log()
    );

    // Nothing a refused call sent was written; the allowed calls wrote exactly their part.
    check_state(&before, &snapshot(su, stack.nexus_port).await);
    check_audit(&stack, &report);
    println!(
        "authorisation matrix test done after {:?}",
        started.elapsed()
    );
}
