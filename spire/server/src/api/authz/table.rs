//! The authorisation table: every gRPC method the server serves, and what its caller must
//! hold.
//!
//! | service | methods | requirement |
//! |---|---|---|
//! | `Agent` (mTLS) | `AttestAgent`, `AttestChallenge` | anyone: the attestation payload is the proof |
//! | `Agent` (mTLS) | `RenewAgent`, `SyncAuthorizedEntries`, `BatchNewX509SVID`, `NewJWTSVID` | an attested agent with its current SVID |
//! | `Admin` (socket) | every method | a caller of the admin socket |
//! | `Health` (socket) | `Check`, `Watch` | a caller of the admin socket |
//!
//! A method that is not listed is refused before any handler runs.

use spire_proto::server::admin_server::AdminServer;
use spire_proto::server::agent_server::AgentServer;

/// What a caller must hold to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone who reaches the agent API, with or without a certificate: node attestation,
    /// whose payload (a join token, a proof of possession) is the proof.
    Anyone,
    /// An attested agent, not banned, calling with its current agent SVID (SPIRE's agent
    /// authoriser).
    Agent,
    /// A local caller of the admin socket, whose file mode (0600 in a 0700 directory)
    /// decides who can connect.
    Admin,
}

/// One row of [`TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The gRPC service's full name (`spire.server.v1.Agent`).
    pub service: &'static str,
    /// The method, as the proto names it (`RenewAgent`).
    pub method: &'static str,
    /// What its caller must hold.
    pub requirement: Requirement,
}

/// The agent API's service name, as tonic routes it.
pub const AGENT: &str = <AgentServer<()> as tonic::server::NamedService>::NAME;
/// The admin API's service name.
pub const ADMIN: &str = <AdminServer<()> as tonic::server::NamedService>::NAME;
/// The health service on the admin socket (`spire-server healthcheck`).
pub const HEALTH: &str = "grpc.health.v1.Health";

const fn rule(service: &'static str, method: &'static str, requirement: Requirement) -> Rule {
    Rule {
        service,
        method,
        requirement,
    }
}

const fn admin(method: &'static str) -> Rule {
    rule(ADMIN, method, Requirement::Admin)
}

/// Every method the server serves, and what it requires. Nothing else is served.
pub const TABLE: &[Rule] = &[
    rule(AGENT, "AttestAgent", Requirement::Anyone),
    rule(AGENT, "AttestChallenge", Requirement::Anyone),
    rule(AGENT, "RenewAgent", Requirement::Agent),
    rule(AGENT, "SyncAuthorizedEntries", Requirement::Agent),
    rule(AGENT, "BatchNewX509SVID", Requirement::Agent),
    rule(AGENT, "NewJWTSVID", Requirement::Agent),
    admin("CreateEntry"),
    admin("UpdateEntry"),
    admin("DeleteEntry"),
    admin("GetEntry"),
    admin("ListEntries"),
    admin("CreateJoinToken"),
    admin("GetBundle"),
    admin("ListAgents"),
    admin("EvictAgent"),
    admin("MintX509Svid"),
    admin("MintJwtSvid"),
    admin("SetFederatedBundle"),
    admin("ListFederatedBundles"),
    admin("DeleteFederatedBundle"),
    admin("BanAgent"),
    admin("CountAgents"),
    admin("CountEntries"),
    admin("PurgeAgents"),
    admin("CreateFederationRelationship"),
    admin("UpdateFederationRelationship"),
    admin("DeleteFederationRelationship"),
    admin("ListFederationRelationships"),
    admin("RefreshBundle"),
    rule(HEALTH, "Check", Requirement::Admin),
    rule(HEALTH, "Watch", Requirement::Admin),
];

/// What the method at gRPC `path` (`/spire.server.v1.Agent/RenewAgent`) requires; `None` if
/// the table does not list it (and so it is not served).
pub fn requirement(path: &str) -> Option<Requirement> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    TABLE
        .iter()
        .find(|rule| rule.service == service && rule.method == method)
        .map(|rule| rule.requirement)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `rpc` names of `service` in a `.proto` file's text.
    fn proto_methods(proto: &str, service: &str) -> Vec<String> {
        let start = proto
            .find(&format!("service {service} {{"))
            .unwrap_or_else(|| panic!("service {service} in the proto"));
        let body = &proto[start..];
        let body = &body[..body.find('}').expect("end of the service")];
        body.lines()
            .filter_map(|line| line.trim().strip_prefix("rpc "))
            .map(|rest| rest[..rest.find('(').expect("rpc Name(")].trim().to_owned())
            .collect()
    }

    fn table_methods(service: &str) -> Vec<String> {
        TABLE
            .iter()
            .filter(|rule| rule.service == service)
            .map(|rule| rule.method.to_owned())
            .collect()
    }

    #[test]
    fn the_table_lists_every_method_of_the_generated_services_once() {
        let proto = include_str!("../../../../proto/proto/spire_server.proto");
        // Same names in the same order: a method added to the proto fails here until it is
        // classified, and a row for a method that does not exist fails too.
        assert_eq!(table_methods(AGENT), proto_methods(proto, "Agent"));
        assert_eq!(table_methods(ADMIN), proto_methods(proto, "Admin"));
        assert_eq!(AGENT, "spire.server.v1.Agent");
        assert_eq!(ADMIN, "spire.server.v1.Admin");
        assert_eq!(
            HEALTH,
            <tonic_health::pb::health_server::HealthServer<()> as tonic::server::NamedService>::NAME
        );
        for (i, rule) in TABLE.iter().enumerate() {
            assert!(
                !TABLE[..i]
                    .iter()
                    .any(|r| r.service == rule.service && r.method == rule.method),
                "{rule:?} is listed twice"
            );
        }
    }

    #[test]
    fn lookups_follow_the_table_and_refuse_what_it_does_not_list() {
        assert_eq!(
            requirement("/spire.server.v1.Agent/AttestAgent"),
            Some(Requirement::Anyone)
        );
        assert_eq!(
            requirement("/spire.server.v1.Agent/RenewAgent"),
            Some(Requirement::Agent)
        );
        assert_eq!(
            requirement("/spire.server.v1.Admin/BanAgent"),
            Some(Requirement::Admin)
        );
        assert_eq!(
            requirement("/grpc.health.v1.Health/Check"),
            Some(Requirement::Admin)
        );
        for unlisted in [
            "/spire.server.v1.Agent/Unlisted",
            "/spire.server.v1.Admin/RenewAgent",
            "/spire.server.v1.Agent/BanAgent",
            "/spire.server.v1.Agent/",
            "/spire.server.v1.Agent",
            "spire.server.v1.Agent/RenewAgent",
            "/SpiffeWorkloadAPI/FetchX509SVID",
            "/",
            "",
        ] {
            assert_eq!(requirement(unlisted), None, "{unlisted:?}");
        }
    }

    #[test]
    fn only_attestation_is_open_to_anyone() {
        let open: Vec<_> = TABLE
            .iter()
            .filter(|rule| rule.requirement == Requirement::Anyone)
            .map(|rule| rule.method)
            .collect();
        assert_eq!(open, ["AttestAgent", "AttestChallenge"]);
        assert!(
            TABLE
                .iter()
                .filter(|rule| rule.service != AGENT)
                .all(|rule| rule.requirement == Requirement::Admin),
            "everything beside the agent API is for the admin socket only"
        );
    }
}
