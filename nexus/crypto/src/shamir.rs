//! Shamir secret sharing of the root key over GF(256), via `vsss-rs`.
//!
//! Each of the 32 key bytes is shared with its own random polynomial of
//! degree `threshold - 1`; shard `i` holds the evaluations at `x = i`.
//! Coefficients come from ChaCha20 seeded with the root's `shamir-seed`
//! derived key, so splitting the same root key always yields the same shard
//! set (re-pushing shards to keepers never mixes two incompatible sets).

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use subtle::{Choice, ConstantTimeEq};
use vsss_rs::Gf256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{CryptoError, KEY_LEN, KeyCheck, Purpose, Result, RootKey};

/// One keeper's share of the root key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Shard {
    id: u8,
    value: [u8; KEY_LEN],
}

impl Shard {
    /// Builds a shard; `id` must be in `1..=255`.
    pub fn new(id: u8, value: [u8; KEY_LEN]) -> Result<Self> {
        if id == 0 {
            return Err(CryptoError::InvalidShardId);
        }
        Ok(Self { id, value })
    }

    /// The shard identifier (x coordinate), `1..=255`.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The raw share bytes (to transmit to a keeper).
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.value
    }
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

impl ConstantTimeEq for Shard {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.id.ct_eq(&other.id) & self.value.ct_eq(&other.value)
    }
}

impl PartialEq for Shard {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Shard {}

fn sharing_error(e: vsss_rs::Error) -> CryptoError {
    CryptoError::SecretSharing(e.to_string())
}

/// Splits `root` into `shares` shards, any `threshold` of which recover it.
///
/// Deterministic for a given root key. Requires
/// `2 <= threshold <= shares <= 255` (a threshold of 1 would hand every
/// keeper the root key in clear, so it is rejected).
pub fn split(root: &RootKey, threshold: u8, shares: u8) -> Result<Vec<Shard>> {
    if threshold < 2 || threshold > shares {
        return Err(CryptoError::InvalidShamirParams { threshold, shares });
    }
    let seed = Zeroizing::new(*root.derive(Purpose::ShamirSeed).expose_secret());
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let raw = Gf256::split_array(
        usize::from(threshold),
        usize::from(shares),
        root.expose_secret(),
        &mut rng,
    )
    .map_err(sharing_error)?;
    let raw: Vec<Zeroizing<Vec<u8>>> = raw.into_iter().map(Zeroizing::new).collect();

    let mut out = Vec::with_capacity(raw.len());
    for share in &raw {
        // vsss-rs layout: identifier byte followed by one byte per secret byte.
        let (&id, value) = share
            .split_first()
            .ok_or_else(|| CryptoError::SecretSharing("empty share".into()))?;
        let value: [u8; KEY_LEN] = value.try_into().map_err(|_| {
            CryptoError::SecretSharing(format!("unexpected share length {}", value.len()))
        })?;
        out.push(Shard::new(id, value)?);
    }
    if out.len() != usize::from(shares) {
        return Err(CryptoError::SecretSharing(format!(
            "expected {shares} shares, library produced {}",
            out.len()
        )));
    }
    Ok(out)
}

/// Recombines shards into the root key and verifies it against `check`.
///
/// Errors on fewer than `threshold` shards, identifier 0, duplicate
/// identifiers, and — if the result does not match `check` — with
/// [`CryptoError::WrongShares`].
pub fn combine(shards: &[Shard], threshold: u8, check: &KeyCheck) -> Result<RootKey> {
    if threshold < 2 {
        return Err(CryptoError::InvalidShamirParams {
            threshold,
            shares: u8::try_from(shards.len()).unwrap_or(u8::MAX),
        });
    }
    if shards.len() < usize::from(threshold) {
        return Err(CryptoError::NotEnoughShards {
            got: shards.len(),
            need: threshold,
        });
    }
    let mut seen = [false; 256];
    for shard in shards {
        if shard.id == 0 {
            return Err(CryptoError::InvalidShardId);
        }
        let slot = &mut seen[usize::from(shard.id)];
        if *slot {
            return Err(CryptoError::DuplicateShard(shard.id));
        }
        *slot = true;
    }

    let raw: Vec<Vec<u8>> = shards
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(1 + KEY_LEN);
            v.push(s.id);
            v.extend_from_slice(&s.value);
            v
        })
        .collect();
    let raw = Zeroizing::new(raw);
    let secret = Zeroizing::new(Gf256::combine_array(raw.as_slice()).map_err(sharing_error)?);
    let root = RootKey::try_from_slice(&secret)?;
    if !check.verify(&root) {
        return Err(CryptoError::WrongShares);
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn copy(s: &Shard) -> Shard {
        Shard {
            id: s.id,
            value: s.value,
        }
    }

    fn setup(t: u8, n: u8) -> Result<(RootKey, KeyCheck, Vec<Shard>)> {
        let root = RootKey::generate()?;
        let check = KeyCheck::compute(&root)?;
        let shards = split(&root, t, n)?;
        Ok((root, check, shards))
    }

    #[test]
    fn split_is_deterministic() -> Result<()> {
        let root = RootKey::generate()?;
        let a = split(&root, 3, 5)?;
        let b = split(&root, 3, 5)?;
        assert_eq!(a, b);
        let ids: Vec<u8> = a.iter().map(Shard::id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        // A different root key gives different shards.
        assert_ne!(a, split(&RootKey::generate()?, 3, 5)?);
        Ok(())
    }

    /// Known-answer test: guards against a dependency upgrade silently
    /// changing the shard set produced for an existing root key.
    #[test]
    fn split_known_answer() -> Result<()> {
        let root = RootKey::from_bytes(core::array::from_fn(|i| i as u8));
        let mut h = Sha256::new();
        for s in split(&root, 2, 3)? {
            h.update([s.id()]);
            h.update(s.expose_secret());
        }
        let digest: [u8; 32] = h.finalize().into();
        assert_eq!(hex::encode(digest), KAT_2_OF_3);
        Ok(())
    }
    const KAT_2_OF_3: &str = "65fc2af6b652ee689e1ed8a3a554a5dc1fb91327345a9dd020da1018108ac870";

    /// Multiplication in GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1.
    fn gf_mul(mut a: u8, mut b: u8) -> u8 {
        let mut r = 0u8;
        while b != 0 {
            if b & 1 == 1 {
                r ^= a;
            }
            let carry = a & 0x80 != 0;
            a <<= 1;
            if carry {
                a ^= 0x1b;
            }
            b >>= 1;
        }
        r
    }

    /// Independent check (not via vsss-rs) that shards are points on a line
    /// over GF(256) with the AES field polynomial: for x1 = 1, x2 = 2,
    /// s = (2*y1 + y2) / 3 and 3^-1 = 0xf6.
    #[test]
    fn shards_interpolate_independently() -> Result<()> {
        assert_eq!(gf_mul(3, 0xf6), 1);
        let root = RootKey::generate()?;
        let shards = split(&root, 2, 3)?;
        for (i, byte) in root.expose_secret().iter().enumerate() {
            let y1 = shards[0].value[i];
            let y2 = shards[1].value[i];
            assert_eq!(gf_mul(gf_mul(y1, 2) ^ y2, 0xf6), *byte);
        }
        Ok(())
    }

    #[test]
    fn any_two_of_three_recover() -> Result<()> {
        let (root, check, shards) = setup(2, 3)?;
        for i in 0..3 {
            for j in (i + 1)..3 {
                let subset = [copy(&shards[i]), copy(&shards[j])];
                assert_eq!(combine(&subset, 2, &check)?, root);
                let reversed = [copy(&shards[j]), copy(&shards[i])];
                assert_eq!(combine(&reversed, 2, &check)?, root);
            }
        }
        assert_eq!(combine(&shards, 2, &check)?, root);
        Ok(())
    }

    #[test]
    fn any_three_of_five_recover() -> Result<()> {
        let (root, check, shards) = setup(3, 5)?;
        for i in 0..5 {
            for j in (i + 1)..5 {
                for k in (j + 1)..5 {
                    let subset = [copy(&shards[i]), copy(&shards[j]), copy(&shards[k])];
                    assert_eq!(combine(&subset, 3, &check)?, root);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn max_shares() -> Result<()> {
        let (root, check, shards) = setup(3, 255)?;
        assert_eq!(shards.len(), 255);
        assert_eq!(shards[254].id(), 255);
        let subset = [copy(&shards[0]), copy(&shards[100]), copy(&shards[254])];
        assert_eq!(combine(&subset, 3, &check)?, root);
        Ok(())
    }

    #[test]
    fn invalid_params_rejected() -> Result<()> {
        let root = RootKey::generate()?;
        for (t, n) in [(0, 3), (1, 3), (4, 3), (2, 1), (0, 0)] {
            assert_eq!(
                split(&root, t, n).err(),
                Some(CryptoError::InvalidShamirParams {
                    threshold: t,
                    shares: n
                })
            );
        }
        assert!(split(&root, 2, 2).is_ok());
        assert!(split(&root, 255, 255).is_ok());
        Ok(())
    }

    #[test]
    fn duplicate_shard_rejected() -> Result<()> {
        let (_, check, shards) = setup(2, 3)?;
        let dup = [copy(&shards[0]), copy(&shards[0])];
        assert_eq!(
            combine(&dup, 2, &check).err(),
            Some(CryptoError::DuplicateShard(1))
        );
        // Same id, different value is also a duplicate.
        let mut other = copy(&shards[1]);
        other.id = shards[0].id;
        let dup = [copy(&shards[0]), other, copy(&shards[2])];
        assert_eq!(
            combine(&dup, 2, &check).err(),
            Some(CryptoError::DuplicateShard(1))
        );
        Ok(())
    }

    #[test]
    fn too_few_shards_rejected() -> Result<()> {
        let (_, check, shards) = setup(3, 5)?;
        let subset = [copy(&shards[0]), copy(&shards[1])];
        assert_eq!(
            combine(&subset, 3, &check).err(),
            Some(CryptoError::NotEnoughShards { got: 2, need: 3 })
        );
        assert_eq!(
            combine(&[], 3, &check).err(),
            Some(CryptoError::NotEnoughShards { got: 0, need: 3 })
        );
        Ok(())
    }

    #[test]
    fn zero_id_rejected() -> Result<()> {
        assert_eq!(
            Shard::new(0, [1; KEY_LEN]).err(),
            Some(CryptoError::InvalidShardId)
        );
        let (_, check, shards) = setup(2, 3)?;
        let bad = [
            Shard {
                id: 0,
                value: shards[0].value,
            },
            copy(&shards[1]),
        ];
        assert_eq!(
            combine(&bad, 2, &check).err(),
            Some(CryptoError::InvalidShardId)
        );
        Ok(())
    }

    #[test]
    fn corrupted_shard_detected() -> Result<()> {
        let (_, check, shards) = setup(2, 3)?;
        let mut value = *shards[1].expose_secret();
        value[5] ^= 0x10;
        let subset = [copy(&shards[0]), Shard::new(shards[1].id(), value)?];
        assert_eq!(
            combine(&subset, 2, &check).err(),
            Some(CryptoError::WrongShares)
        );
        Ok(())
    }

    #[test]
    fn shards_of_other_root_detected() -> Result<()> {
        let (_, check, _) = setup(2, 3)?;
        let (_, _, other) = setup(2, 3)?;
        assert_eq!(
            combine(&other[..2], 2, &check).err(),
            Some(CryptoError::WrongShares)
        );
        Ok(())
    }

    #[test]
    fn shard_debug_is_redacted() {
        let s = Shard {
            id: 7,
            value: [0xEE; KEY_LEN],
        };
        let d = format!("{s:?}");
        assert!(d.contains("[REDACTED]"), "{d}");
        assert!(
            !d.contains("238") && !d.to_lowercase().contains("ee"),
            "{d}"
        );
    }
}
