//! Who this process is and how it reaches Nexus: the SVID from the Workload API, Nexus's
//! trust domain, and a [`nexus_api::Client`] that presents the one and checks the other.

use std::time::Duration;

use nexus_api::{Client, ClientError};

use crate::cli::{DEFAULT_NEXUS_URL, GlobalArgs};
use crate::error::{Call, Operation, PilotError, explain};

/// How long to wait for the first SVID.
pub const SVID_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to Nexus, with what error messages need to know about it.
#[derive(Debug)]
pub struct Session {
    client: Client,
    url: String,
    trust_domain: String,
    own_id: String,
}

impl Session {
    /// Fetches this process's SVID and sets up the client.
    pub async fn connect(global: &GlobalArgs) -> Result<Self, PilotError> {
        // An empty environment variable counts as unset.
        let endpoint = global
            .spiffe_endpoint_socket
            .as_deref()
            .filter(|s| !s.is_empty());
        // Without a socket there is nothing to wait for: say so now, not after the timeout.
        if let Some(cause) = missing_socket(endpoint) {
            return Err(PilotError::Identity(no_svid(endpoint, &cause)));
        }
        let source = identity::workload::x509_source(endpoint, SVID_TIMEOUT)
            .await
            .map_err(|e| PilotError::Identity(no_svid(endpoint, &e.to_string())))?;
        let own_id = identity::workload::own_id(&source)
            .map_err(|e| PilotError::Identity(no_svid(endpoint, &e.to_string())))?;
        let trust_domain =
            nexus_trust_domain(global.trust_domain.as_deref(), own_id.trust_domain_name());
        let own_id = own_id.to_string();
        let url = match global.nexus_url.as_str() {
            "" => DEFAULT_NEXUS_URL.to_owned(),
            url => url.to_owned(),
        };
        let client = Client::connect(source, &url, &trust_domain).map_err(|e| {
            let call = Call {
                op: Operation::Status,
                url: &url,
                trust_domain: &trust_domain,
                own_id: &own_id,
            };
            PilotError::Nexus(explain(&e, &call))
        })?;
        Ok(Session {
            client,
            url,
            trust_domain,
            own_id,
        })
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This process's SPIFFE ID.
    pub fn own_id(&self) -> &str {
        &self.own_id
    }

    /// Turns a failed call into the message for the user.
    pub fn fail<'a>(&'a self, op: Operation<'a>) -> impl FnOnce(ClientError) -> PilotError + 'a {
        move |error| {
            let call = Call {
                op,
                url: &self.url,
                trust_domain: &self.trust_domain,
                own_id: &self.own_id,
            };
            PilotError::Nexus(explain(&error, &call))
        }
    }
}

/// Nexus's trust domain: the flag or `SPIKE_TRUST_ROOT_NEXUS` if set, else our own. SPIKE
/// allows a comma-separated list; from one, ours wins if listed, else the first entry.
pub fn nexus_trust_domain(configured: Option<&str>, own: &str) -> String {
    let listed: Vec<&str> = configured
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|td| !td.is_empty())
        .collect();
    if listed.is_empty() || listed.contains(&own) {
        return own.to_owned();
    }
    listed[0].to_owned()
}

/// The Workload API endpoint in use (the flag, else `SPIFFE_ENDPOINT_SOCKET`).
fn endpoint_in_use(endpoint: Option<&str>) -> Option<String> {
    match endpoint {
        Some(socket) => Some(socket.to_owned()),
        None => std::env::var("SPIFFE_ENDPOINT_SOCKET")
            .ok()
            .filter(|s| !s.is_empty()),
    }
}

/// Why the Workload API cannot be there: no endpoint at all, or a `unix:` endpoint whose
/// socket does not exist. `None` when it may be.
fn missing_socket(endpoint: Option<&str>) -> Option<String> {
    let Some(endpoint) = endpoint_in_use(endpoint) else {
        return Some("no socket is configured".to_owned());
    };
    let path = endpoint.strip_prefix("unix:")?;
    let path = path.strip_prefix("//").unwrap_or(path);
    (!path.is_empty() && !std::path::Path::new(path).exists())
        .then(|| format!("there is no socket at {path}"))
}

/// The message when no SVID could be had.
fn no_svid(endpoint: Option<&str>, cause: &str) -> String {
    let socket = endpoint_in_use(endpoint)
        .unwrap_or_else(|| "(none: SPIFFE_ENDPOINT_SOCKET is not set)".to_owned());
    let uid = nix::unistd::getuid();
    let exe = std::env::current_exe()
        .map(|p| format!(" or unix:path:{}", p.display()))
        .unwrap_or_default();
    format!(
        "Cannot get this process's SVID from the SPIFFE Workload API at {socket}: {cause}. \
         The SPIRE agent must be running there (set --spiffe-endpoint-socket or SPIFFE_ENDPOINT_SOCKET), \
         and this program must be registered: an entry with unix selectors that match it, \
         such as unix:uid:{uid}{exe}."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_domain_defaults_to_our_own() {
        assert_eq!(nexus_trust_domain(None, "spike.ist"), "spike.ist");
        assert_eq!(nexus_trust_domain(Some(""), "spike.ist"), "spike.ist");
        assert_eq!(
            nexus_trust_domain(Some("other.org"), "spike.ist"),
            "other.org"
        );
        assert_eq!(
            nexus_trust_domain(Some("a.org, spike.ist"), "spike.ist"),
            "spike.ist"
        );
        assert_eq!(
            nexus_trust_domain(Some("a.org,b.org"), "spike.ist"),
            "a.org"
        );
    }

    #[test]
    fn a_missing_socket_is_found_before_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let there = format!("unix://{}", dir.path().display());
        assert_eq!(missing_socket(Some(&there)), None);
        let there = format!("unix:{}", dir.path().display());
        assert_eq!(missing_socket(Some(&there)), None);
        for gone in [
            "unix:///nonexistent/agent.sock",
            "unix:/nonexistent/agent.sock",
        ] {
            assert_eq!(
                missing_socket(Some(gone)).as_deref(),
                Some("there is no socket at /nonexistent/agent.sock")
            );
        }
        assert_eq!(missing_socket(Some("tcp://127.0.0.1:1")), None);
    }

    #[test]
    fn missing_svid_message_names_socket_and_registration() {
        let text = no_svid(Some("unix:///run/agent.sock"), "timed out");
        assert!(text.contains("unix:///run/agent.sock"), "{text}");
        assert!(text.contains("timed out"), "{text}");
        assert!(text.contains("agent must be running"), "{text}");
        assert!(text.contains("registered"), "{text}");
        assert!(text.contains("unix:uid:"), "{text}");
    }
}
