//! Shamir shares of the root key (`nexus_crypto::{split, combine}`): shards come back from
//! keepers over the network and from operators' recovery files, and are combined as given.
//!
//! Input: threshold, share count, then bytes that either pick shards of a real split (one
//! byte per pick, a high bit flips a byte of that shard) or, after a 0xff marker, make up
//! arbitrary shards of 33 bytes each (id, value).
//!
//! Properties:
//! - `split` accepts exactly 2 ≤ threshold ≤ shares; any threshold of its shards (distinct)
//!   combine to the root key, fewer are refused as too few;
//! - a set holding a tampered shard never combines into another key: it is refused
//!   (`WrongShares`), or gives the root key when the tampering cancels out (more shards than
//!   the threshold, errors of equal weight); untampered shards are never refused;
//! - whatever shards are given, `combine` returns the root key or an error: the key check
//!   lets no other key through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_crypto::{CryptoError, KeyCheck, RootKey, Shard, combine, split};

fuzz_target!(|data: &[u8]| {
    let [threshold, shares, rest @ ..] = data else {
        return;
    };
    let (threshold, shares) = (*threshold, *shares);
    let root = RootKey::from_bytes([0x5a; 32]);
    let check = KeyCheck::compute(&root).expect("key check");

    if let Some(arbitrary) = rest.strip_prefix(&[0xff]) {
        let shards: Vec<Shard> = arbitrary
            .chunks_exact(33)
            .filter_map(|c| Shard::new(c[0], c[1..].try_into().expect("32 bytes")).ok())
            .collect();
        if let Ok(key) = combine(&shards, threshold, &check) {
            assert_eq!(key.expose_secret(), root.expose_secret());
        }
        return;
    }

    let Ok(all) = split(&root, threshold, shares) else {
        assert!(threshold < 2 || threshold > shares);
        return;
    };
    assert!(2 <= threshold && threshold <= shares);
    assert_eq!(all.len(), usize::from(shares));
    let mut picked: Vec<Shard> = Vec::new();
    let mut tampered = false;
    for pick in rest {
        let index = usize::from(pick & 0x7f) % all.len();
        let source = &all[index];
        if picked.iter().any(|s| s.id() == source.id()) {
            continue;
        }
        let mut value = *source.expose_secret();
        if pick & 0x80 != 0 {
            value[usize::from(*pick) % 32] ^= 0x01;
            tampered = true;
        }
        picked.push(Shard::new(source.id(), value).expect("ids of a split are non-zero"));
    }
    match combine(&picked, threshold, &check) {
        // Tampered shards can still give the root key when more than a threshold are given
        // and their errors cancel in the interpolation (two flips of the same bit on shards
        // of equal Lagrange weight): what matters is that no other key ever comes out.
        Ok(key) => assert_eq!(key.expose_secret(), root.expose_secret()),
        Err(CryptoError::NotEnoughShards { .. }) => {
            assert!(picked.len() < usize::from(threshold));
        }
        Err(CryptoError::WrongShares) => assert!(tampered, "good shards refused"),
        Err(e) => panic!("unexpected error for shards of a split: {e}"),
    }
});
