//! The kinds of caller (the tables' columns) and their certificates: real SVIDs from the
//! agent for the identities it may issue, forgeries for the rest.

use std::time::Duration;

use tests::certs::{self, Ca, Svid};
use tests::secrets::{KEEPER_ID, NEXUS_ID, SUPERUSER_ID, SecretsStack, TD};

/// Kinds of caller: the table's columns, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Caller {
    /// `.../spike/pilot/role/superuser`, a real SVID from the agent.
    Superuser,
    /// `.../spike/pilot/role/recover`
    Recover,
    /// `.../spike/pilot/role/restore`
    Restore,
    /// `.../spike/keeper`
    Keeper,
    /// `.../spike/nexus`
    Nexus,
    /// `.../spike/workload/role/lite` (SPIKE's cipher-only workloads)
    Lite,
    /// `.../spike/bootstrap`
    Bootstrap,
    /// `spiffe://example.org/app/granted`: a workload that policies grant its secret, policy
    /// read and list, and the cipher.
    Granted,
    /// `spiffe://example.org/app/ungranted`: a workload no policy names.
    Ungranted,
    /// `.../spike/pilot/role/superuser-x`: a real SVID whose ID only looks like the superuser.
    LookAlike,
    /// The superuser's path in `other.org`, from other.org's own CA.
    ForeignDomain,
    /// The superuser's path in `other.org`, signed by our own CA.
    ForeignIdOurCa,
    /// The superuser's ID, from a CA that is not in our bundle.
    OtherCa,
    /// The superuser's ID, self-signed.
    SelfSigned,
    /// The superuser's ID, signed by our CA, expired.
    Expired,
    /// No client certificate.
    NoCertificate,
}

use Caller::*;

/// The columns of every table.
pub const CALLERS: [Caller; 16] = [
    Superuser,
    Recover,
    Restore,
    Keeper,
    Nexus,
    Lite,
    Bootstrap,
    Granted,
    Ungranted,
    LookAlike,
    ForeignDomain,
    ForeignIdOurCa,
    OtherCa,
    SelfSigned,
    Expired,
    NoCertificate,
];

pub const OTHER_TD: &str = "other.org";
pub const FOREIGN_SUPERUSER: &str = "spiffe://other.org/spike/pilot/role/superuser";

impl Caller {
    pub fn slug(self) -> &'static str {
        match self {
            Superuser => "superuser",
            Recover => "recover",
            Restore => "restore",
            Keeper => "keeper",
            Nexus => "nexus",
            Lite => "lite",
            Bootstrap => "bootstrap",
            Granted => "granted",
            Ungranted => "ungranted",
            LookAlike => "look-alike",
            ForeignDomain => "foreign-domain",
            ForeignIdOurCa => "foreign-id-our-ca",
            OtherCa => "other-ca",
            SelfSigned => "self-signed",
            Expired => "expired",
            NoCertificate => "no-certificate",
        }
    }

    /// The SPIFFE ID of the real SVID the agent gives this caller (registered for the test
    /// binary); `None` for the forged and missing certificates.
    pub fn agent_id(self) -> Option<&'static str> {
        Some(match self {
            Superuser => SUPERUSER_ID,
            Recover => "spiffe://example.org/spike/pilot/role/recover",
            Restore => "spiffe://example.org/spike/pilot/role/restore",
            Keeper => KEEPER_ID,
            Nexus => NEXUS_ID,
            Lite => "spiffe://example.org/spike/workload/role/lite",
            Bootstrap => "spiffe://example.org/spike/bootstrap",
            Granted => "spiffe://example.org/app/granted",
            Ungranted => "spiffe://example.org/app/ungranted",
            LookAlike => "spiffe://example.org/spike/pilot/role/superuser-x",
            _ => return None,
        })
    }

    pub fn column(self) -> usize {
        CALLERS
            .iter()
            .position(|c| *c == self)
            .expect("every caller is a column")
    }

    pub fn secret_path(self) -> String {
        format!("matrix/{}", self.slug())
    }

    pub fn policy_name(self) -> String {
        format!("matrix-{}", self.slug())
    }
}

/// The paths a caller's `list` shows, besides the superuser's (who sees every path).
pub fn visible_paths(caller: Caller) -> Vec<String> {
    match caller {
        Granted => vec![Granted.secret_path()],
        _ => Vec::new(),
    }
}

/// Every caller's certificate, in column order (`None`: it presents none): real SVIDs from
/// the agent for the callers that have an `agent_id`, the forgeries made here.
pub async fn certificates(stack: &SecretsStack) -> Vec<Option<Svid>> {
    let me = std::env::current_exe().expect("test executable");
    let wanted: Vec<&str> = CALLERS.iter().filter_map(|c| c.agent_id()).collect();
    for id in &wanted {
        stack.register(&me, id);
    }
    let endpoint = stack.agent.endpoint();
    let svids = tests::wait_for(
        "an SVID for every registered caller",
        Duration::from_secs(30),
        || {
            let endpoint = endpoint.clone();
            let wanted = wanted.clone();
            async move {
                let context = spiffe::WorkloadApiClient::connect_to(endpoint)
                    .await
                    .ok()?
                    .fetch_x509_context()
                    .await
                    .ok()?;
                let svids = context.svids().to_vec();
                wanted
                    .iter()
                    .all(|id| svids.iter().any(|s| s.spiffe_id().to_string() == *id))
                    .then_some(svids)
            }
        },
    )
    .await;
    let our_ca = Ca::of_server(&stack.server);
    CALLERS
        .iter()
        .map(|&caller| match caller {
            ForeignDomain => Some(Ca::new(OTHER_TD).sign(FOREIGN_SUPERUSER)),
            ForeignIdOurCa => Some(our_ca.sign(FOREIGN_SUPERUSER)),
            OtherCa => Some(Ca::new(TD).sign(SUPERUSER_ID)),
            SelfSigned => Some(certs::self_signed(SUPERUSER_ID)),
            Expired => Some(our_ca.sign_expired(SUPERUSER_ID)),
            NoCertificate => None,
            registered => {
                let id = registered.agent_id().expect("a registered caller");
                let svid = svids
                    .iter()
                    .find(|s| s.spiffe_id().to_string() == id)
                    .expect("fetched above");
                Some(Svid::from_workload(svid))
            }
        })
        .collect()
}
