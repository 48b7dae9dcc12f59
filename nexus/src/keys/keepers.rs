//! Talking to keepers: fetch the shard one holds, hand one its shard, tell one to forget
//! other generations' shards. Every call is mTLS with Nexus's SVID, and the keeper must
//! present a keeper SVID of our trust domain (or of a federated one listed for keepers,
//! `--keeper-trust-domains`).
//!
//! A [`Keepers`] is one generation of the keeper set: its URLs and the generation whose
//! shards it asks for and hands out (0, as SPIKE's keepers know it, until the first rekey).

use std::time::Duration;

use bytes::Bytes;
use identity::https_client::{HttpsClient, HttpsError};
use identity::workload::Trusted;
use nexus_api::model::{RetainRequest, ShardBody, ShardBodyError, ShardRequest};
use nexus_api::routes;
use nexus_crypto::Shard;
use policies::{Role, RoleDomains};
use spiffe::{SpiffeId, X509Source};
use zeroize::Zeroizing;

/// How long one keeper call may take. Short: a slow keeper must not hold up unsealing, which
/// needs only a threshold of them.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a keeper call failed.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// The keeper could not be reached or the handshake failed.
    #[error("keeper {id} ({url}): {source}")]
    Unreachable {
        /// Shard id (1-based position in the keeper list).
        id: u8,
        /// Keeper URL.
        url: String,
        /// Cause.
        source: HttpsError,
    },
    /// The keeper answered something unexpected.
    #[error("keeper {id} ({url}): {reason}")]
    Protocol {
        /// Shard id.
        id: u8,
        /// Keeper URL.
        url: String,
        /// What was wrong.
        reason: Unexpected,
    },
}

/// What a keeper answered that it should not have.
#[derive(Debug, thiserror::Error)]
pub enum Unexpected {
    /// An HTTP status other than success or "no shard".
    #[error("HTTP {0}")]
    Status(u16),
    /// A body that is not a shard body, or a shard of the wrong length.
    #[error("bad answer: {0}")]
    Body(ShardBodyError),
    /// A shard the crypto layer refuses.
    #[error(transparent)]
    Shard(nexus_crypto::CryptoError),
    /// The shard could not be encoded for the keeper.
    #[error("{0}")]
    Encode(serde_json::Error),
    /// The keeper refused the shard it was given.
    #[error("refused the shard: HTTP {0}")]
    Refused(u16),
}

/// One keeper: its URL and the id of the shard it holds.
#[derive(Debug, Clone)]
pub struct Keeper {
    /// Shard id, 1-based.
    pub id: u8,
    /// Base URL, `https://host:port`.
    pub url: String,
}

impl Keeper {
    /// This keeper answered (or would be sent) something it should not have.
    fn protocol(&self, reason: Unexpected) -> KeeperError {
        KeeperError::Protocol {
            id: self.id,
            url: self.url.clone(),
            reason,
        }
    }
}

/// One generation of the keeper set and an mTLS client for them.
#[derive(Debug, Clone)]
pub struct Keepers {
    keepers: Vec<Keeper>,
    generation: u64,
    http: HttpsClient,
}

fn numbered(urls: &[String]) -> Vec<Keeper> {
    urls.iter()
        .zip(1u8..)
        .map(|(url, id)| Keeper {
            id,
            url: url.trim_end_matches('/').to_owned(),
        })
        .collect()
}

impl Keepers {
    /// Keepers at `urls` (shard ids 1, 2, ... in order), reached with the SVID from `source`;
    /// a keeper's chain must lead to a `trusted` trust domain, and its ID be a keeper's where
    /// `roles` recognises keepers.
    pub fn new(
        urls: &[String],
        source: X509Source,
        trusted: Trusted,
        roles: RoleDomains,
    ) -> Result<Self, identity::IdentityError> {
        let is_keeper =
            move |peer: &SpiffeId| roles.role_of(&peer.to_string()) == Some(Role::Keeper);
        let tls = identity::workload::client_config(source, trusted, is_keeper)?;
        Ok(Keepers {
            keepers: numbered(urls),
            generation: 0,
            http: HttpsClient::new(tls, CALL_TIMEOUT),
        })
    }

    /// The keepers at `urls` (shard ids 1, 2, ... in order) as generation `generation`,
    /// reached with the same client.
    pub fn with_set(&self, urls: &[String], generation: u64) -> Keepers {
        Keepers {
            keepers: numbered(urls),
            generation,
            http: self.http.clone(),
        }
    }

    /// The keepers, in shard-id order.
    pub fn all(&self) -> &[Keeper] {
        &self.keepers
    }

    /// Their URLs, in shard-id order.
    pub fn urls(&self) -> Vec<String> {
        self.keepers.iter().map(|k| k.url.clone()).collect()
    }

    /// The generation whose shards these keepers hold.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Posts `request` as JSON to `route` of `keeper`: the answer's status and body.
    async fn post(
        &self,
        keeper: &Keeper,
        route: &str,
        request: &impl serde::Serialize,
    ) -> Result<(u16, Bytes), KeeperError> {
        // The serialised body is handed to the transport, which owns (and frees) it.
        let body =
            serde_json::to_vec(request).map_err(|e| keeper.protocol(Unexpected::Encode(e)))?;
        let url = format!("{}{route}", keeper.url);
        let unreachable = |source| KeeperError::Unreachable {
            id: keeper.id,
            url: keeper.url.clone(),
            source,
        };
        let uri = HttpsClient::parse_url(&url).map_err(unreachable)?;
        let (status, body) = self
            .http
            .post_json(uri, Bytes::from(body))
            .await
            .map_err(unreachable)?;
        Ok((status.as_u16(), body))
    }

    /// Posts `request` to `route` of `keeper`, which must answer 200; any other status is
    /// the error `refused` makes of it.
    async fn command(
        &self,
        keeper: &Keeper,
        route: &str,
        request: &impl serde::Serialize,
        refused: fn(u16) -> Unexpected,
    ) -> Result<(), KeeperError> {
        match self.post(keeper, route, request).await? {
            (200, _) => Ok(()),
            (status, _) => Err(keeper.protocol(refused(status))),
        }
    }

    /// The shard `keeper` holds; `None` if it holds none (it restarted).
    pub async fn fetch(&self, keeper: &Keeper) -> Result<Option<Shard>, KeeperError> {
        let protocol = |reason| keeper.protocol(reason);
        let request = ShardRequest {
            generation: self.generation,
        };
        let (status, body) = self.post(keeper, routes::KEEPER_SHARD, &request).await?;
        // SPIKE's keepers answer 400 (and older ones 404) when they hold no shard.
        if status == 400 || status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(protocol(Unexpected::Status(status)));
        }
        let body = Zeroizing::new(body.to_vec());
        // The keeper's own parser (`fuzz/`'s `shard_body` target).
        let value = ShardBody::parse(&body)
            .map_err(|e| protocol(Unexpected::Body(e)))?
            .value;
        if value.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        Shard::new(keeper.id, *value)
            .map(Some)
            .map_err(|e| protocol(Unexpected::Shard(e)))
    }

    /// Gives `keeper` its shard.
    pub async fn contribute(&self, keeper: &Keeper, shard: &Shard) -> Result<(), KeeperError> {
        let body = ShardBody {
            shard: shard.expose_secret().to_vec(),
            generation: self.generation,
        };
        self.command(
            keeper,
            routes::KEEPER_CONTRIBUTE,
            &body,
            Unexpected::Refused,
        )
        .await
    }

    /// Tells `keeper` to forget the shards of generations below this one (after a rekey: a
    /// keeper left out of the new set forgets all it holds), or with `exactly` of every
    /// generation but this one (a failed rekey's staged shard).
    pub async fn retain(&self, keeper: &Keeper, exactly: bool) -> Result<(), KeeperError> {
        let request = RetainRequest {
            generation: self.generation,
            exactly,
        };
        self.command(keeper, routes::KEEPER_RETAIN, &request, Unexpected::Status)
            .await
    }
}
