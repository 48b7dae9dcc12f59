//! The server's JWT signing key: an ECDSA P-256 key of its own (never the X.509 CA key), with a
//! random 32-character key ID and a lifetime. The private key lives in the key manager like the
//! CA's ([`super::keys`]: `jwt-key.pem`, or an object in a PKCS#11 token); `jwt-key.json` in
//! the data directory holds `kid`, `not_before`, `not_after` and the public key. The authority
//! manager ([`super::Authorities`]) creates, loads and rotates it; its public key is published
//! in the trust bundle.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use spiffe::{SpiffeId, TrustDomain};
use spire_proto::bundle_format;
use spire_proto::jwt_svid::{self, Claims};

use super::keys::{CaKey, KeyManager};
use super::{CaError, rfc3339, storage};

/// Length of a key ID, as SPIRE's.
const KEY_ID_LEN: usize = 32;

const KEY_ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// What `jwt-key.json` holds.
#[derive(Serialize, Deserialize)]
struct KeyMeta {
    kid: String,
    /// Absent in files written before key rotation existed.
    #[serde(default)]
    not_before: Option<i64>,
    not_after: i64,
    /// The uncompressed public point, base64; absent in files written before key managers.
    /// A PKCS#11 key manager needs it to tell the key from a stale one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

/// A signed JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedJwtSvid {
    /// The compact JWS.
    pub token: String,
    /// The SPIFFE ID in `sub`.
    pub spiffe_id: SpiffeId,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

/// The JWT signing authority.
pub struct JwtAuthority {
    trust_domain: TrustDomain,
    key_id: String,
    key: Arc<dyn CaKey>,
    not_before: i64,
    not_after: i64,
}

impl fmt::Debug for JwtAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthority")
            .field("trust_domain", &self.trust_domain.as_str())
            .field("key_id", &self.key_id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl JwtAuthority {
    /// Creates a JWT authority over a new `key`, valid from `now` for `ttl`.
    pub(crate) fn generate(
        td: &TrustDomain,
        key: Arc<dyn CaKey>,
        ttl: Duration,
        now: i64,
    ) -> Result<JwtAuthority, CaError> {
        let rng = ring::rand::SystemRandom::new();
        let ttl = i64::try_from(ttl.as_secs())
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| CaError::InvalidTtl("JWT key TTL must be at least 1s".into()))?;
        Ok(JwtAuthority {
            trust_domain: td.clone(),
            key_id: random_key_id(&rng)?,
            key,
            not_before: now,
            not_after: now.saturating_add(ttl),
        })
    }

    /// Writes the metadata atomically (the key is already in the key manager: the order the
    /// authority manager relies on to tell an interrupted preparation from an interrupted
    /// activation).
    pub(crate) fn store(&self, meta_path: &Path) -> Result<(), CaError> {
        let meta = KeyMeta {
            kid: self.key_id.clone(),
            not_before: Some(self.not_before),
            not_after: self.not_after,
            public_key: Some(BASE64.encode(self.key.public_point())),
        };
        let meta = serde_json::to_vec_pretty(&meta)
            .map_err(|e| CaError::Corrupt(format!("cannot encode JWT key metadata: {e}")))?;
        storage::write_atomic(meta_path, &meta, 0o644)
    }

    /// When the key was created, Unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// The key ID (`kid`) tokens carry and the bundle publishes.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// When the key expires, Unix seconds. No token outlives it.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The public key as SubjectPublicKeyInfo DER, as bundles carry it.
    pub fn public_key_spki(&self) -> Vec<u8> {
        bundle_format::spki_from_p256_point(self.key.public_point())
    }

    /// Signs a JWT-SVID for `spiffe_id` (in this trust domain) and `audience`, valid from now
    /// for `ttl`, capped at the key's expiry.
    pub fn sign(
        &self,
        spiffe_id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
    ) -> Result<SignedJwtSvid, CaError> {
        self.sign_as(spiffe_id, audience, ttl, None)
    }

    /// [`JwtAuthority::sign`] with an `iss` claim when `issuer` is given.
    pub fn sign_as(
        &self,
        spiffe_id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
        issuer: Option<&str>,
    ) -> Result<SignedJwtSvid, CaError> {
        if !spiffe_id.is_member_of(&self.trust_domain) {
            return Err(CaError::WrongTrustDomain {
                spiffe_id: spiffe_id.to_string(),
                expected: self.trust_domain.to_string(),
            });
        }
        jwt_svid::check_audience(audience).map_err(|e| CaError::InvalidAudience(e.to_string()))?;
        let now = super::now().unix_timestamp();
        if now >= self.not_after {
            return Err(CaError::CaExpired {
                expired_at: time::OffsetDateTime::from_unix_timestamp(self.not_after)
                    .map(rfc3339)
                    .unwrap_or_else(|_| self.not_after.to_string()),
            });
        }
        let ttl = i64::try_from(ttl.as_secs())
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| CaError::InvalidTtl("JWT-SVID TTL must be at least 1s".into()))?;
        let claims = Claims {
            subject: spiffe_id.clone(),
            audience: audience.to_vec(),
            issued_at: now,
            expires_at: now.saturating_add(ttl).min(self.not_after),
        };
        let token = jwt_svid::sign_with(&self.key_id, &claims, issuer, |input| {
            self.key.sign(input).map_err(|e| {
                tracing::error!(error = %e, "the key manager failed to sign a JWT-SVID");
            })
        })
        .map_err(|e| CaError::Crypto(e.to_string()))?;
        Ok(SignedJwtSvid {
            token,
            spiffe_id: spiffe_id.clone(),
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
        })
    }

    /// Loads stored metadata and its key `key_name` from `keys` (which must match the public
    /// key recorded, when one is). Keys stored before `not_before` was recorded count as
    /// created `ttl` before they expire. Whether it has expired is for the caller to decide.
    pub(crate) fn load(
        keys: &dyn KeyManager,
        key_name: &str,
        meta_path: &Path,
        td: &TrustDomain,
        ttl: Duration,
    ) -> Result<JwtAuthority, CaError> {
        let meta: KeyMeta = serde_json::from_str(&storage::read_string(meta_path)?)
            .map_err(|e| CaError::Corrupt(format!("{}: {e}", meta_path.display())))?;
        if !valid_key_id(&meta.kid) {
            return Err(CaError::Corrupt(format!(
                "{}: kid must be {KEY_ID_LEN} letters and digits",
                meta_path.display()
            )));
        }
        let expected = meta
            .public_key
            .as_deref()
            .map(|b64| BASE64.decode(b64))
            .transpose()
            .map_err(|e| CaError::Corrupt(format!("{}: public_key: {e}", meta_path.display())))?;
        let key = keys.load(key_name, expected.as_deref())?;
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        Ok(JwtAuthority {
            trust_domain: td.clone(),
            key_id: meta.kid,
            key,
            not_before: meta
                .not_before
                .unwrap_or_else(|| meta.not_after.saturating_sub(ttl)),
            not_after: meta.not_after,
        })
    }
}

/// 32 characters from `[a-zA-Z0-9]`, uniformly (rejection sampling), as SPIRE's key IDs.
fn random_key_id(rng: &dyn SecureRandom) -> Result<String, CaError> {
    // The largest multiple of 62 that fits in a byte; bytes at or above it are redrawn.
    const LIMIT: u8 = 248;
    let mut id = String::with_capacity(KEY_ID_LEN);
    while id.len() < KEY_ID_LEN {
        let mut bytes = [0u8; 64];
        rng.fill(&mut bytes)
            .map_err(|_| CaError::Crypto("system random number generator failed".into()))?;
        for b in bytes.into_iter().filter(|b| *b < LIMIT) {
            if id.len() == KEY_ID_LEN {
                break;
            }
            id.push(char::from(
                KEY_ID_ALPHABET[usize::from(b) % KEY_ID_ALPHABET.len()],
            ));
        }
    }
    Ok(id)
}

fn valid_key_id(kid: &str) -> bool {
    kid.len() == KEY_ID_LEN && kid.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").expect("td")
    }

    fn now() -> i64 {
        super::super::now().unix_timestamp()
    }

    fn generate(keys: &dyn KeyManager, ttl: Duration) -> JwtAuthority {
        let key = keys.generate("k").expect("key");
        JwtAuthority::generate(&td(), key, ttl, now()).expect("create")
    }

    #[test]
    fn stored_key_loads_back_identical() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = super::super::keys::disk::DiskKeyManager::new(dir.path());
        let meta = dir.path().join("k.json");
        let ttl = Duration::from_secs(3600);
        let first = generate(&keys, ttl);
        assert!(valid_key_id(first.key_id()), "{}", first.key_id());
        first.store(&meta).expect("store");
        let again = JwtAuthority::load(&keys, "k", &meta, &td(), ttl).expect("load");
        assert_eq!(again.key_id(), first.key_id());
        assert_eq!(again.not_before(), first.not_before());
        assert_eq!(again.not_after(), first.not_after());
        assert_eq!(again.public_key_spki(), first.public_key_spki());
        assert!(!format!("{again:?}").contains("key:"), "{again:?}");
        assert!(!format!("{again:?}").contains("pkcs8"), "{again:?}");
    }

    #[test]
    fn metadata_without_not_before_counts_back_from_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = super::super::keys::disk::DiskKeyManager::new(dir.path());
        let meta = dir.path().join("k.json");
        let ttl = Duration::from_secs(3600);
        let first = generate(&keys, ttl);
        first.store(&meta).expect("store");
        let legacy = format!(
            r#"{{"kid":"{}","not_after":{}}}"#,
            first.key_id(),
            first.not_after()
        );
        std::fs::write(&meta, legacy).expect("write");
        let loaded = JwtAuthority::load(&keys, "k", &meta, &td(), ttl).expect("load");
        assert_eq!(loaded.not_before(), first.not_after() - 3600);
    }

    #[test]
    fn tokens_validate_and_are_capped_at_the_key_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = super::super::keys::disk::DiskKeyManager::new(dir.path());
        let jwt = generate(&keys, Duration::from_secs(60));
        let id = SpiffeId::new("spiffe://example.org/app").expect("id");
        let signed = jwt
            .sign(&id, &["db".into()], Duration::from_secs(3600))
            .expect("sign");
        assert_eq!(
            signed.expires_at,
            jwt.not_after(),
            "capped at the key expiry"
        );
        let spki = jwt.public_key_spki();
        let kid = jwt.key_id().to_owned();
        let ok = jwt_svid::validate(&signed.token, "db", signed.issued_at, |_, k| {
            (k == kid).then(|| spki.clone())
        })
        .expect("valid");
        assert_eq!(ok.spiffe_id, id);

        let other = SpiffeId::new("spiffe://other.org/app").expect("id");
        assert!(matches!(
            jwt.sign(&other, &["db".into()], Duration::from_secs(60)),
            Err(CaError::WrongTrustDomain { .. })
        ));
        assert!(matches!(
            jwt.sign(&id, &[], Duration::from_secs(60)),
            Err(CaError::InvalidAudience(_))
        ));
    }
}
