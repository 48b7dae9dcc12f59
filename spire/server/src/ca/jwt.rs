//! The server's JWT signing key: an ECDSA P-256 key of its own (never the X.509 CA key), with a
//! random 32-character key ID and an expiry, kept in the data directory like the CA
//! (`jwt-key.pem`, PKCS#8, mode 0600; `jwt-key.json` holding `kid` and `not_after`). It is
//! created on first start, reused across restarts, and replaced by a new one once expired. Its
//! public key is published in the trust bundle (see `run::publish_authorities`).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use spiffe::{SpiffeId, TrustDomain};
use spire_proto::bundle_format;
use spire_proto::jwt_svid::{self, Claims};
use zeroize::Zeroizing;

use super::{CaError, rfc3339, single_pem, storage};

/// File name of the PEM (PKCS#8) JWT signing key inside the data directory.
pub const JWT_KEY_FILE: &str = "jwt-key.pem";

/// File name of the JWT key's metadata (key ID, expiry) inside the data directory.
pub const JWT_KEY_META_FILE: &str = "jwt-key.json";

/// Length of a key ID, as SPIRE's.
const KEY_ID_LEN: usize = 32;

const KEY_ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// What `jwt-key.json` holds.
#[derive(Serialize, Deserialize)]
struct KeyMeta {
    kid: String,
    not_after: i64,
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
    key: EcdsaKeyPair,
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
    /// Loads the JWT key from `data_dir`, or creates it (valid for `ttl`) when there is none or
    /// the stored one has expired. If only one of the two files exists, returns
    /// [`CaError::Corrupt`] rather than overwriting anything.
    pub fn load_or_create(
        data_dir: &Path,
        td: &TrustDomain,
        ttl: Duration,
    ) -> Result<JwtAuthority, CaError> {
        storage::ensure_private_dir(data_dir)?;
        let key_path = data_dir.join(JWT_KEY_FILE);
        let meta_path = data_dir.join(JWT_KEY_META_FILE);
        match (storage::exists(&key_path)?, storage::exists(&meta_path)?) {
            (true, true) => {
                let stored = Self::load(&key_path, &meta_path, td)?;
                if stored.not_after > super::now().unix_timestamp() {
                    return Ok(stored);
                }
                tracing::warn!(
                    key_id = %stored.key_id,
                    "the stored JWT signing key has expired; creating a new one"
                );
            }
            (false, false) => {}
            (present, _) => {
                let (found, missing) = if present {
                    (&key_path, &meta_path)
                } else {
                    (&meta_path, &key_path)
                };
                return Err(CaError::Corrupt(format!(
                    "{} exists but {} is missing; move it away to create a new JWT key",
                    found.display(),
                    missing.display()
                )));
            }
        }
        let (authority, pkcs8) = Self::generate(td, ttl)?;
        let block = pem::Pem::new("PRIVATE KEY", pkcs8.to_vec());
        let key_pem = Zeroizing::new(pem::encode(&block));
        zeroize::Zeroize::zeroize(&mut block.into_contents());
        storage::write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
        let meta = KeyMeta {
            kid: authority.key_id.clone(),
            not_after: authority.not_after,
        };
        let meta = serde_json::to_vec_pretty(&meta)
            .map_err(|e| CaError::Corrupt(format!("cannot encode JWT key metadata: {e}")))?;
        storage::write_atomic(&meta_path, &meta, 0o644)?;
        tracing::info!(
            key_id = %authority.key_id,
            not_after = authority.not_after,
            "created new JWT signing key"
        );
        Ok(authority)
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
        bundle_format::spki_from_p256_point(self.key.public_key().as_ref())
    }

    /// Signs a JWT-SVID for `spiffe_id` (in this trust domain) and `audience`, valid from now
    /// for `ttl`, capped at the key's expiry.
    pub fn sign(
        &self,
        spiffe_id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
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
        let token = jwt_svid::sign(&self.key, &self.key_id, &claims)
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        Ok(SignedJwtSvid {
            token,
            spiffe_id: spiffe_id.clone(),
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
        })
    }

    fn generate(
        td: &TrustDomain,
        ttl: Duration,
    ) -> Result<(JwtAuthority, Zeroizing<Vec<u8>>), CaError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| CaError::Crypto("cannot generate the JWT signing key".into()))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| CaError::Crypto("cannot load the new JWT signing key".into()))?;
        let ttl = i64::try_from(ttl.as_secs())
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| CaError::InvalidTtl("JWT key TTL must be at least 1s".into()))?;
        let authority = JwtAuthority {
            trust_domain: td.clone(),
            key_id: random_key_id(&rng)?,
            key,
            not_after: super::now().unix_timestamp().saturating_add(ttl),
        };
        Ok((authority, pkcs8))
    }

    fn load(key_path: &Path, meta_path: &Path, td: &TrustDomain) -> Result<JwtAuthority, CaError> {
        storage::warn_if_not_private(key_path);
        let key_pem = Zeroizing::new(storage::read_string(key_path)?);
        let pkcs8 = Zeroizing::new(single_pem(&key_pem, "PRIVATE KEY", key_path)?);
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| {
                CaError::Corrupt(format!(
                    "{} is not a PKCS#8 ECDSA P-256 key",
                    key_path.display()
                ))
            })?;
        let meta: KeyMeta = serde_json::from_str(&storage::read_string(meta_path)?)
            .map_err(|e| CaError::Corrupt(format!("{}: {e}", meta_path.display())))?;
        if !valid_key_id(&meta.kid) {
            return Err(CaError::Corrupt(format!(
                "{}: kid must be {KEY_ID_LEN} letters and digits",
                meta_path.display()
            )));
        }
        Ok(JwtAuthority {
            trust_domain: td.clone(),
            key_id: meta.kid,
            key,
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

    #[test]
    fn key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = JwtAuthority::load_or_create(dir.path(), &td(), Duration::from_secs(3600))
            .expect("create");
        assert!(valid_key_id(first.key_id()), "{}", first.key_id());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(JWT_KEY_FILE))
                .expect("key file")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = JwtAuthority::load_or_create(dir.path(), &td(), Duration::from_secs(3600))
            .expect("load");
        assert_eq!(again.key_id(), first.key_id());
        assert_eq!(again.not_after(), first.not_after());
        assert_eq!(again.public_key_spki(), first.public_key_spki());
        assert!(!format!("{again:?}").contains("key:"), "{again:?}");
    }

    #[test]
    fn one_missing_file_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        JwtAuthority::load_or_create(dir.path(), &td(), Duration::from_secs(3600)).expect("create");
        std::fs::remove_file(dir.path().join(JWT_KEY_META_FILE)).expect("rm");
        let err = JwtAuthority::load_or_create(dir.path(), &td(), Duration::from_secs(3600))
            .expect_err("corrupt");
        assert!(matches!(err, CaError::Corrupt(_)), "{err}");
    }

    #[test]
    fn tokens_validate_and_are_capped_at_the_key_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwt = JwtAuthority::load_or_create(dir.path(), &td(), Duration::from_secs(60))
            .expect("create");
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
