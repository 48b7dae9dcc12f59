//! The PKCS#11 key manager: keys generated inside a token (an HSM, or SoftHSM2), used there
//! and never exported.
//!
//! Each key is a pair of token objects with the label `<prefix><name>` and a random `CKA_ID`
//! shared by the two: an EC private key (P-256, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, may
//! only sign) and its public key, whose `CKA_EC_POINT` is the only key material the server
//! reads. Signing hashes with SHA-256 in the server and asks the token for `CKM_ECDSA` over
//! the digest (the mechanism every token has; `CKM_ECDSA_SHA256` is optional).
//!
//! A rename relabels the source objects first and destroys those of the destination after,
//! so a crash leaves at worst two keys under one label, never none: [`KeyManager::load`] with
//! the expected public key picks the right one and destroys the stale one.
//!
//! One logged-in read-write session serves every call, behind a mutex (a PKCS#11 session is
//! not safe to use from two threads at once); signing is rare (CA certificates, SVIDs,
//! JWT-SVIDs), so one session is enough.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::{CaKey, KeyManager, P256_POINT_LEN, PinSource, Pkcs11Config, check_expected};
use crate::ca::CaError;

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of a P-256 key.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn err(what: &str) -> impl FnOnce(cryptoki::error::Error) -> CaError + '_ {
    move |e| CaError::KeyManager(format!("PKCS#11: {what}: {e}"))
}

/// A private key found in the token: its handle, `CKA_ID` and public point.
struct Found {
    handle: ObjectHandle,
    id: Vec<u8>,
    point: Vec<u8>,
}

/// Keys in one PKCS#11 token.
pub struct Pkcs11KeyManager {
    session: Arc<Mutex<Session>>,
    token_label: String,
    prefix: String,
}

impl std::fmt::Debug for Pkcs11KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyManager")
            .field("token_label", &self.token_label)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Pkcs11KeyManager {
    /// Loads the module, finds the token by label, opens a session and logs in as the user.
    pub fn open(config: &Pkcs11Config) -> Result<Self, CaError> {
        let pin = read_pin(&config.pin)?;
        let module = config.module_path.display().to_string();
        let pkcs11 = Pkcs11::new(&config.module_path).map_err(|e| {
            CaError::KeyManager(format!("cannot load the PKCS#11 module {module}: {e}"))
        })?;
        pkcs11
            .initialize(CInitializeArgs::OsThreads)
            .map_err(err("initializing the module"))?;
        let slot = pkcs11
            .get_slots_with_initialized_token()
            .map_err(err("listing slots"))?
            .into_iter()
            .find(|slot| {
                pkcs11
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == config.token_label)
            })
            .ok_or_else(|| {
                CaError::KeyManager(format!(
                    "PKCS#11: no initialized token labelled {:?} in {module}",
                    config.token_label
                ))
            })?;
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(err("opening a session"))?;
        match session.login(UserType::User, Some(&AuthPin::new(pin.as_str().into()))) {
            Ok(()) => {}
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => {
                return Err(CaError::KeyManager(format!(
                    "PKCS#11: logging in to token {:?}: {e}",
                    config.token_label
                )));
            }
        }
        tracing::info!(module, token = %config.token_label, "PKCS#11 key manager ready");
        Ok(Pkcs11KeyManager {
            session: Arc::new(Mutex::new(session)),
            token_label: config.token_label.clone(),
            prefix: config.key_label_prefix.clone(),
        })
    }

    fn label(&self, name: &str) -> Vec<u8> {
        format!("{}{name}", self.prefix).into_bytes()
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every object (private and public keys) labelled for `name`.
    fn objects(session: &Session, label: &[u8]) -> Result<Vec<ObjectHandle>, CaError> {
        session
            .find_objects(&[Attribute::Token(true), Attribute::Label(label.to_vec())])
            .map_err(err("finding keys"))
    }

    /// The private keys labelled for `name`, each with its public point.
    fn keys(session: &Session, label: &[u8]) -> Result<Vec<Found>, CaError> {
        let private = session
            .find_objects(&[
                Attribute::Token(true),
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.to_vec()),
            ])
            .map_err(err("finding private keys"))?;
        let mut keys = Vec::with_capacity(private.len());
        for handle in private {
            let id = match session
                .get_attributes(handle, &[AttributeType::Id])
                .map_err(err("reading a key ID"))?
                .pop()
            {
                Some(Attribute::Id(id)) => id,
                _ => continue,
            };
            let public = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::Label(label.to_vec()),
                    Attribute::Id(id.clone()),
                ])
                .map_err(err("finding a public key"))?;
            let Some(public) = public.first() else {
                continue;
            };
            let point = ec_point(session, *public)?;
            keys.push(Found { handle, id, point });
        }
        Ok(keys)
    }

    fn key(&self, handle: ObjectHandle, point: Vec<u8>) -> Arc<dyn CaKey> {
        Arc::new(Pkcs11Key {
            session: self.session.clone(),
            handle,
            point,
        })
    }
}

/// Reads the PIN; the copy is wiped when dropped.
fn read_pin(source: &PinSource) -> Result<Zeroizing<String>, CaError> {
    let pin = match source {
        PinSource::Env(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
            CaError::KeyManager(format!(
                "PKCS#11: the user PIN is read from ${var}, which is not set"
            ))
        })?),
        PinSource::File(path) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                CaError::KeyManager(format!(
                    "PKCS#11: cannot read the PIN file {}: {e}",
                    path.display()
                ))
            })?);
            Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
        }
    };
    if pin.is_empty() {
        return Err(CaError::KeyManager("PKCS#11: the user PIN is empty".into()));
    }
    Ok(pin)
}

/// The uncompressed point of a public key object. `CKA_EC_POINT` is a DER OCTET STRING
/// holding the point (PKCS#11 2.40 §2.3.3); some tokens return the bare point.
fn ec_point(session: &Session, public: ObjectHandle) -> Result<Vec<u8>, CaError> {
    let value = match session
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(err("reading a public key"))?
        .pop()
    {
        Some(Attribute::EcPoint(value)) => value,
        _ => {
            return Err(CaError::KeyManager(
                "PKCS#11: a public key has no CKA_EC_POINT".into(),
            ));
        }
    };
    let point = match value.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == P256_POINT_LEN => rest,
        bare if bare.len() == P256_POINT_LEN => bare,
        _ => {
            return Err(CaError::KeyManager(
                "PKCS#11: a key is not an uncompressed P-256 point".into(),
            ));
        }
    };
    if point[0] != 0x04 {
        return Err(CaError::KeyManager(
            "PKCS#11: a key is not an uncompressed P-256 point".into(),
        ));
    }
    Ok(point.to_vec())
}

impl KeyManager for Pkcs11KeyManager {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn generate(&self, name: &str) -> Result<Arc<dyn CaKey>, CaError> {
        let label = self.label(name);
        let mut id = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| CaError::Crypto("system random number generator failed".into()))?;
        let common = [
            Attribute::Token(true),
            Attribute::Label(label.clone()),
            Attribute::Id(id.to_vec()),
            Attribute::KeyType(KeyType::EC),
        ];
        let mut public = common.to_vec();
        public.extend([
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Verify(true),
        ]);
        let mut private = common.to_vec();
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ]);
        let session = self.lock();
        let old = Self::objects(&session, &label)?;
        let (public, private) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(err("generating a P-256 key"))?;
        let point = ec_point(&session, public)?;
        // The new pair exists before the old one goes: never a moment without a key.
        for handle in old {
            session
                .destroy_object(handle)
                .map_err(err("destroying a replaced key"))?;
        }
        drop(session);
        Ok(self.key(private, point))
    }

    fn exists(&self, name: &str) -> Result<bool, CaError> {
        Ok(!Self::keys(&self.lock(), &self.label(name))?.is_empty())
    }

    fn load(&self, name: &str, expected: Option<&[u8]>) -> Result<Arc<dyn CaKey>, CaError> {
        let label = self.label(name);
        let session = self.lock();
        let keys = Self::keys(&session, &label)?;
        let shown = format!("PKCS#11 key {:?}", String::from_utf8_lossy(&label));
        let chosen = match expected {
            Some(point) => keys.iter().position(|k| k.point == point),
            None if keys.len() == 1 => Some(0),
            None => None,
        };
        let Some(chosen) = chosen else {
            return Err(CaError::Corrupt(match (keys.len(), expected) {
                (0, _) => format!("{shown} is not in token {:?}", self.token_label),
                (_, Some(_)) => format!("{shown} does not match its certificate or metadata"),
                (n, None) => format!("{n} keys are labelled {shown}"),
            }));
        };
        // A crash during a rename can leave a stale key under this label: it goes now.
        for (i, Found { id, .. }) in keys.iter().enumerate() {
            if i != chosen {
                tracing::warn!(key = %shown, "destroying a stale key left by an interrupted rotation");
                for handle in session
                    .find_objects(&[Attribute::Label(label.clone()), Attribute::Id(id.clone())])
                    .map_err(err("finding a stale key"))?
                {
                    session
                        .destroy_object(handle)
                        .map_err(err("destroying a stale key"))?;
                }
            }
        }
        drop(session);
        let found = keys.into_iter().nth(chosen).ok_or_else(|| {
            CaError::Corrupt(format!("{shown} vanished while it was being loaded"))
        })?;
        let key = self.key(found.handle, found.point);
        check_expected(&shown, key.as_ref(), expected)?;
        Ok(key)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), CaError> {
        let (from, to) = (self.label(from), self.label(to));
        let session = self.lock();
        let old = Self::objects(&session, &to)?;
        let moving = Self::objects(&session, &from)?;
        if moving.is_empty() {
            return Err(CaError::KeyManager(format!(
                "PKCS#11: no key labelled {:?} to move",
                String::from_utf8_lossy(&from)
            )));
        }
        for handle in moving {
            session
                .update_attributes(handle, &[Attribute::Label(to.clone())])
                .map_err(err("relabelling a key"))?;
        }
        for handle in old {
            session
                .destroy_object(handle)
                .map_err(err("destroying a replaced key"))?;
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), CaError> {
        let label = self.label(name);
        let session = self.lock();
        for handle in Self::objects(&session, &label)? {
            session
                .destroy_object(handle)
                .map_err(err("destroying a key"))?;
        }
        Ok(())
    }
}

/// A private key in the token, by handle, with the public point read when it was found.
struct Pkcs11Key {
    session: Arc<Mutex<Session>>,
    handle: ObjectHandle,
    point: Vec<u8>,
}

impl CaKey for Pkcs11Key {
    fn public_point(&self) -> &[u8] {
        &self.point
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, message);
        let session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let signature = session
            .sign(&Mechanism::Ecdsa, self.handle, digest.as_ref())
            .map_err(err("signing"))?;
        if signature.len() != 64 {
            return Err(CaError::KeyManager(format!(
                "PKCS#11: the token returned a {}-byte ECDSA P-256 signature, expected 64",
                signature.len()
            )));
        }
        Ok(signature)
    }
}
