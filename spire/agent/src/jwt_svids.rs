//! JWT-SVIDs on demand: the Workload API asks for a token for one entry and an audience set,
//! the server signs it (`NewJWTSVID` over the agent's mTLS link), and the token is cached per
//! (entry, SPIFFE ID, sorted audience set) and handed out again until half of its lifetime has
//! passed, as SPIRE's agent does. The cache holds at most [`MAX_CACHED`] tokens; when full it
//! first drops tokens due for renewal, then those expiring soonest.

use std::collections::HashMap;
use std::sync::Mutex;

use spire_proto::server as pb;

use crate::node::ServerLink;
use crate::svid::should_renew;
use identity::clock::Clock;

/// Most tokens kept (SPIRE's `jwt_svid_cache_max_size` default).
pub const MAX_CACHED: usize = 1000;

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum JwtSvidFetchError {
    /// The server refused the request as malformed (e.g. the audience).
    #[error("{0}")]
    Rejected(String),
    /// The server says the entry is no longer this agent's.
    #[error("{0}")]
    NotAuthorized(String),
    /// The server could not be reached or failed.
    #[error("cannot get a JWT-SVID from the server: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    entry_id: String,
    spiffe_id: String,
    audience: Vec<String>,
}

#[derive(Debug)]
struct Cached {
    token: String,
    issued_at: i64,
    expires_at: i64,
}

/// Signs and caches JWT-SVIDs.
pub struct JwtSvids {
    link: ServerLink,
    cache: TokenCache,
}

impl JwtSvids {
    /// A cache of at most [`MAX_CACHED`] tokens, signed over `link`.
    pub fn new(link: ServerLink) -> Self {
        JwtSvids {
            link,
            cache: TokenCache::new(MAX_CACHED),
        }
    }

    /// The clock tokens are judged by (the server link's).
    pub fn clock(&self) -> &Clock {
        &self.link.clock
    }

    /// A token for `entry` and `audience` (already checked by the caller): the cached one while
    /// less than half of its lifetime has passed, otherwise a new one from the server.
    pub async fn fetch(
        &self,
        entry: &pb::Entry,
        audience: &[String],
    ) -> Result<String, JwtSvidFetchError> {
        let key = cache_key(entry, audience);
        if let Some(token) = self.cache.get(&key, self.link.clock.unix_seconds()) {
            return Ok(token);
        }
        let response = self
            .link
            .client()
            .new_jwtsvid(pb::NewJwtSvidRequest {
                entry_id: entry.id.clone(),
                audience: key.audience.clone(),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument => {
                    JwtSvidFetchError::Rejected(status.message().into())
                }
                tonic::Code::PermissionDenied | tonic::Code::NotFound => {
                    JwtSvidFetchError::NotAuthorized(status.message().into())
                }
                _ => JwtSvidFetchError::Unavailable(status.message().into()),
            })?
            .into_inner();
        let svid = response.svid.ok_or_else(|| {
            JwtSvidFetchError::Unavailable("the server returned no JWT-SVID".into())
        })?;
        if svid.spiffe_id != entry.spiffe_id {
            return Err(JwtSvidFetchError::Unavailable(format!(
                "the server signed {} for an entry of {}",
                svid.spiffe_id, entry.spiffe_id
            )));
        }
        self.cache.insert(
            key,
            Cached {
                token: svid.token.clone(),
                issued_at: svid.issued_at,
                expires_at: svid.expires_at,
            },
            self.link.clock.unix_seconds(),
        );
        Ok(svid.token)
    }
}

/// The bounded map of tokens.
struct TokenCache {
    map: Mutex<HashMap<CacheKey, Cached>>,
    max: usize,
}

impl TokenCache {
    fn new(max: usize) -> Self {
        TokenCache {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Cached>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removals), so a poisoned lock is still usable.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &CacheKey, now: i64) -> Option<String> {
        let cache = self.lock();
        let cached = cache.get(key)?;
        (!should_renew(cached.issued_at, cached.expires_at, now)).then(|| cached.token.clone())
    }

    /// Adds a token at `now`; a full cache first drops what is due for renewal, then the
    /// tokens that expire soonest.
    fn insert(&self, key: CacheKey, value: Cached, now: i64) {
        let mut cache = self.lock();
        if cache.len() >= self.max && !cache.contains_key(&key) {
            cache.retain(|_, c| !should_renew(c.issued_at, c.expires_at, now));
            while cache.len() >= self.max {
                let Some(soonest) = cache
                    .iter()
                    .min_by_key(|(_, c)| c.expires_at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                cache.remove(&soonest);
            }
        }
        cache.insert(key, value);
    }
}

/// The cache key: the audience set, sorted and without duplicates, so `[b, a, a]` and `[a, b]`
/// share a token.
fn cache_key(entry: &pb::Entry, audience: &[String]) -> CacheKey {
    let mut audience = audience.to_vec();
    audience.sort();
    audience.dedup();
    CacheKey {
        entry_id: entry.id.clone(),
        spiffe_id: entry.spiffe_id.clone(),
        audience,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> pb::Entry {
        pb::Entry {
            id: id.into(),
            spiffe_id: format!("spiffe://example.org/{id}"),
            ..Default::default()
        }
    }

    fn token(name: &str, issued_at: i64, expires_at: i64) -> Cached {
        Cached {
            token: name.into(),
            issued_at,
            expires_at,
        }
    }

    #[test]
    fn audience_order_and_duplicates_share_a_key() {
        let e = entry("a");
        assert_eq!(
            cache_key(&e, &["b".into(), "a".into(), "a".into()]),
            cache_key(&e, &["a".into(), "b".into()])
        );
        assert_ne!(
            cache_key(&e, &["a".into()]),
            cache_key(&entry("b"), &["a".into()])
        );
    }

    #[test]
    fn tokens_are_reused_until_half_their_life() {
        let c = TokenCache::new(10);
        let key = cache_key(&entry("a"), &["db".into()]);
        c.insert(key.clone(), token("t1", 1000, 1100), 1000);
        assert_eq!(c.get(&key, 1049).as_deref(), Some("t1"));
        assert_eq!(c.get(&key, 1050), None, "renewed at half-life");
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = TokenCache::new(3);
        let now = 1_700_000_000;
        for (i, exp) in [(0, 500), (1, 300), (2, 400)] {
            let key = cache_key(&entry(&format!("e{i}")), &["db".into()]);
            c.insert(key, token(&format!("t{i}"), now, now + exp), now);
        }
        let newcomer = cache_key(&entry("e3"), &["db".into()]);
        c.insert(newcomer.clone(), token("t3", now, now + 600), now);
        assert_eq!(c.len(), 3);
        assert!(c.get(&newcomer, now).is_some());
        let soonest = cache_key(&entry("e1"), &["db".into()]);
        assert!(c.get(&soonest, now).is_none(), "the soonest to expire went");
    }
}
