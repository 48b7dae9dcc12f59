//! Plain data types stored by the datastore. SPIFFE IDs and trust domains are plain strings
//! here: the API layer validates them before they reach the datastore.

/// A workload or node selector, such as `unix` / `uid:1000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Selector {
    /// The selector type (the attestor that produces it), e.g. `unix`.
    pub kind: String,
    /// The selector value, e.g. `uid:1000`.
    pub value: String,
}

impl Selector {
    /// Builds a selector from its type and value.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Selector {
        Selector {
            kind: kind.into(),
            value: value.into(),
        }
    }
}

/// A registration entry: workloads (or agents) under `parent_id` that match all `selectors`
/// receive SVIDs for `spiffe_id`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Unique entry ID, chosen by the caller.
    pub id: String,
    /// The SPIFFE ID issued to matching workloads.
    pub spiffe_id: String,
    /// The SPIFFE ID of the agent (or entry) that the workload must run under.
    pub parent_id: String,
    /// Selectors a workload must ALL match. Non-empty (validated by the caller); order is
    /// preserved.
    pub selectors: Vec<Selector>,
    /// X.509-SVID lifetime in seconds; 0 means the server default.
    pub x509_svid_ttl: i64,
    /// JWT-SVID lifetime in seconds; 0 means the server default.
    pub jwt_svid_ttl: i64,
    /// DNS SANs to include in X.509-SVIDs.
    pub dns_names: Vec<String>,
    /// Trust domains whose bundles are delivered with the SVID.
    pub federates_with: Vec<String>,
    /// Free-form hint for the workload to pick among several identities.
    pub hint: String,
    /// Whether the identity may call the admin API.
    pub admin: bool,
    /// Whether the identity may mint SVIDs for others (downstream server).
    pub downstream: bool,
    /// Incremented on every update; 0 after creation.
    pub revision_number: i64,
    /// Creation time, unix seconds (set by the datastore when 0).
    pub created_at: i64,
    /// Expiry time, unix seconds; 0 means never.
    pub expires_at: i64,
}

/// Restricts [`Datastore::list_entries`](super::Datastore::list_entries). Empty filter: all
/// entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryFilter {
    /// Only entries with exactly this SPIFFE ID.
    pub spiffe_id: Option<String>,
    /// Only entries with exactly this parent ID.
    pub parent_id: Option<String>,
    /// Only entries having ALL of these selectors (possibly among others).
    pub selectors: Vec<Selector>,
}

/// A single-use token an agent presents to attest with the `join_token` method.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinToken {
    /// The secret token value.
    pub token: String,
    /// Expiry, unix seconds.
    pub expires_at: i64,
}

/// An agent that has attested to the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttestedAgent {
    /// The agent's SPIFFE ID.
    pub spiffe_id: String,
    /// The node attestor that vouched for it (e.g. `join_token`).
    pub attestation_type: String,
    /// Serial number of the agent's current X.509-SVID.
    pub serial_number: String,
    /// Expiry of the agent's current X.509-SVID, unix seconds.
    pub expires_at: i64,
    /// Serial number of the SVID a renewal issued that the agent has not called with yet
    /// (empty if none). Its first call with it makes it current; see
    /// [`Datastore::activate_agent_svid`](super::Datastore::activate_agent_svid).
    pub new_serial_number: String,
    /// Expiry of that pending SVID, unix seconds (0 if none).
    pub new_expires_at: i64,
    /// Selectors produced by node attestation.
    pub selectors: Vec<Selector>,
    /// Whether the agent may attest again to renew its identity.
    pub can_reattest: bool,
    /// Banned agents are refused any further SVID.
    pub banned: bool,
}

/// The trust bundle of one trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bundle {
    /// The trust domain name, e.g. `example.org`.
    pub trust_domain: String,
    /// X.509 root certificates, DER.
    pub x509_authorities: Vec<Vec<u8>>,
    /// JWT signing keys.
    pub jwt_authorities: Vec<JwtKey>,
    /// Incremented by the datastore on every [`set_bundle`](super::Datastore::set_bundle).
    pub sequence_number: i64,
    /// Suggested refresh interval for consumers, seconds (0 = unspecified).
    pub refresh_hint: i64,
}

/// A JWT signing key in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JwtKey {
    /// The `kid` of the key.
    pub key_id: String,
    /// Public key, SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// Expiry, unix seconds (0 = none).
    pub expires_at: i64,
}

/// A federation relationship created at run time: where and how to fetch another trust
/// domain's bundle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Relationship {
    /// The other trust domain's name, e.g. `other.org`.
    pub trust_domain: String,
    /// `https://host[:port][/path]`.
    pub bundle_endpoint_url: String,
    /// `https_spiffe` or `https_web`.
    pub bundle_endpoint_profile: String,
    /// The endpoint's SPIFFE ID (`https_spiffe`); empty for `https_web`.
    pub endpoint_spiffe_id: String,
}
