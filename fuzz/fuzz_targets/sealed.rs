//! Sealed records (`nexus_crypto::Sealed` and the wrapped data keys and key checks built on
//! it), as Nexus reads them back from its datastore and the cipher routes read them from
//! callers.
//!
//! Properties: a record parses exactly when it starts with version 1 and holds at least a
//! nonce and a tag, and writes back byte for byte; under a key it was not sealed with (here:
//! a fixed key, with the input's own AAD) it never opens, and neither does a wrapped key or
//! a key check, so no datastore edit yields a plaintext or a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_crypto::{
    DataKey, KeyCheck, RootKey, SEALED_FORMAT_VERSION, Sealed, WrappedKey, open, unwrap,
};

fuzz_target!(|data: &[u8]| {
    let sealed = Sealed::from_bytes(data);
    assert_eq!(
        sealed.is_ok(),
        data.first() == Some(&SEALED_FORMAT_VERSION) && data.len() >= Sealed::MIN_LEN
    );
    assert_eq!(WrappedKey::from_bytes(data).is_ok(), sealed.is_ok());
    assert_eq!(KeyCheck::from_bytes(data).is_ok(), sealed.is_ok());
    let Ok(sealed) = sealed else {
        return;
    };
    assert_eq!(sealed.to_bytes(), data);
    let key = DataKey::from_bytes([0x11; 32]);
    let aad = &data[..data.len().min(16)];
    assert!(
        open(&key, aad, &sealed).is_err(),
        "a record opened unsealed"
    );
    let root = RootKey::from_bytes([0x22; 32]);
    let wrapped = WrappedKey::from_bytes(data).expect("parses as Sealed did");
    assert!(unwrap(&root, &wrapped, aad).is_err());
    assert_eq!(wrapped.to_bytes(), data);
    let check = KeyCheck::from_bytes(data).expect("parses as Sealed did");
    assert!(!check.verify(&root));
    assert_eq!(check.to_bytes(), data);
});
