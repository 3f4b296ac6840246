//! Signing keys: PKCS#8 PEM keys plus `manifest.json` (kid, algorithm, dates) in the
//! key storage (files in `keys.dir`, or sealed rows in a shared database), parsed once
//! into ring key pairs and kept in memory; the JWKS is serialized once per key-set
//! change, not per request.
//!
//! Lifecycle (RFC 7517; OIDC Core §10.1.1): a key is *staged* (published, not yet
//! signing) until `signs_from`, then *active*; the newest active key signs. A *retired*
//! key stops signing at once but stays published (and accepted for tokens issued before
//! its retirement) until the longest access-token lifetime plus the JWKS cache time has
//! passed. A *revoked* key (compromised) is gone at once: not published, not accepted.
//!
//! - `storage`: where key material lives (`KeyStorage`): the keys folder (`DirStorage`)
//!   or a database's blobs sealed under the key-encryption key (`SealedStorage`);
//!   [`storage_for`] picks one;
//! - `kek`: the key-encryption key (`keys.kek_file`) and `latchkey keys init-kek`;
//! - `manifest`: the manifest, key states, and the lock every change is made under;
//! - `signing`: one parsed key and JWS signing;
//! - `keyset`: the keys in memory, rebuilt on reload and when a state change is due;
//! - `admin`: `latchkey keys generate|rotate|retire|revoke|import`;
//! - `pem`: key files (PKCS#8 PEM) and key generation;
//! - `sealer`: the AES-256-GCM key that seals refresh tokens;
//! - `device`: the HMAC key that signs device tokens (login throttling);
//! - `jwk`: public JWKs; `atomic_file`: crash-safe writes in `keys.dir`.
//!
//! Reading or writing the storage may block (a database round trip): async code calls
//! these through `tokio::task::spawn_blocking`. Serving a request never does
//! (`Keys::current` works from memory).

/// Runs each named test case (a `fn(Arc<dyn KeyStorage>)`) over the keys folder and
/// over sealed storage, as `dir_storage::CASE` and `sealed_storage::CASE`.
#[cfg(test)]
macro_rules! over_both_storages {
    ($($case:ident),* $(,)?) => {
        mod dir_storage {
            $(#[test]
            fn $case() {
                let (storage, _tmp) = crate::keys::storage::testing::dir();
                super::$case(storage);
            })*
        }
        mod sealed_storage {
            $(#[test]
            fn $case() {
                let (storage, _tmp) = crate::keys::storage::testing::sealed();
                super::$case(storage);
            })*
        }
    };
}

mod admin;
mod atomic_file;
mod device;
mod jwk;
mod kek;
mod keyset;
mod manifest;
mod pem;
mod sealer;
mod signing;
mod storage;

use std::sync::Arc;

pub use self::pem::{generate_der, pkcs8_from_pem};
pub use admin::{copy_all, generate, retire, revoke, rotate, Retired, Revoked};
pub use device::{DeviceKey, DEVICE_TOKEN_TTL_SECS};
pub use jwk::Jwk;
pub use kek::{init_kek_file, Kek, KEK_LEN};
pub use keyset::{KeySet, Keys};
pub use manifest::{read_manifest, with_locked_manifest, KeyEntry, KeyState, Manifest, MANIFEST};
pub use sealer::Sealer;
pub use signing::{p256_s_is_low, SigningKey};
pub use storage::{locked, BlobStore, DirStorage, KeyStorage, MemoryBlobs, SealedStorage};

use crate::config::{ConfigError, Settings};
use crate::store::Store;

/// The key storage every part of latchkey uses (the server, `check-config`, every
/// `latchkey keys` command): sealed in the database when `store` keeps keys
/// (`Store::key_blobs`), which needs `keys.kek_file`; otherwise the keys folder
/// `keys.dir`. Reads the KEK file; opens nothing else.
pub fn storage_for(settings: &Settings, store: &Store) -> anyhow::Result<Arc<dyn KeyStorage>> {
    match store.key_blobs() {
        Some(blobs) => {
            let Some(path) = &settings.keys.kek_file else {
                return Err(ConfigError(format!(
                    "keys.kek_file is not set: the store ({}) keeps the signing keys in the \
                     database, sealed under a key-encryption key read from that file \
                     (`latchkey keys init-kek FILE` writes one)",
                    store.location()
                ))
                .into());
            };
            Ok(Arc::new(SealedStorage::new(Kek::load(path)?, blobs)))
        }
        None => Ok(folder_storage(settings)),
    }
}

/// The keys folder `keys.dir`: the storage of a store that keeps no keys (SQLite).
/// `keys.kek_file` has no use there and is ignored.
pub fn folder_storage(settings: &Settings) -> Arc<dyn KeyStorage> {
    if let Some(kek) = &settings.keys.kek_file {
        tracing::warn!(
            kek_file = %kek.display(),
            dir = %settings.keys.dir.display(),
            "keys.kek_file is set but this store keeps the keys in keys.dir; the file is not read"
        );
    }
    Arc::new(DirStorage::new(&settings.keys.dir))
}
