//! The bounds of the server's listeners: each one's [`Limits`] preset, and the
//! `[server.limits.<listener>]` tables of the config file that override them key by key
//! (`max_handshakes = 512`, `handshake_timeout = "3s"`; `docs/reliability.md` lists them).

use common_net::{Limits, LimitsFile};
use serde::Deserialize;

use crate::config::ConfigError;

/// `[server.limits]`: one optional table per listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    agent_api: Option<LimitsFile>,
    bundle_endpoint: Option<LimitsFile>,
    admin_socket: Option<LimitsFile>,
    metrics: Option<LimitsFile>,
    oidc_discovery: Option<LimitsFile>,
}

/// The limits of every listener of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The agent API (mTLS; agents attest without a certificate, so anonymous connections
    /// count per IP address).
    pub agent_api: Limits,
    /// The SPIFFE bundle endpoint (TLS without client certificates, per IP address).
    pub bundle_endpoint: Limits,
    /// The admin socket (per UID and PID).
    pub admin: Limits,
    /// The metrics endpoint (per IP address).
    pub metrics: Limits,
    /// OIDC discovery (anonymous relying parties, or the proxy in front: per IP address).
    pub oidc_discovery: Limits,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            agent_api: Limits::TLS_API,
            bundle_endpoint: Limits::TLS_API,
            admin: Limits::ADMIN_SOCKET,
            metrics: Limits::METRICS,
            oidc_discovery: Limits::TLS_API,
        }
    }
}

impl FileLimits {
    /// The presets with this section's tables laid over them.
    pub(crate) fn resolve(&self) -> Result<ServerLimits, ConfigError> {
        let defaults = ServerLimits::default();
        let over = |key: &'static str, table: &Option<LimitsFile>, preset: Limits| {
            LimitsFile::resolve(table.as_ref(), preset).map_err(|e| ConfigError::Invalid {
                key,
                message: e.to_string(),
            })
        };
        Ok(ServerLimits {
            agent_api: over("limits.agent_api", &self.agent_api, defaults.agent_api)?,
            bundle_endpoint: over(
                "limits.bundle_endpoint",
                &self.bundle_endpoint,
                defaults.bundle_endpoint,
            )?,
            admin: over("limits.admin_socket", &self.admin_socket, defaults.admin)?,
            metrics: over("limits.metrics", &self.metrics, defaults.metrics)?,
            oidc_discovery: over(
                "limits.oidc_discovery",
                &self.oidc_discovery,
                defaults.oidc_discovery,
            )?,
        })
    }
}
