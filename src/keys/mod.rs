//! Signing keys: PKCS#8 PEM files in `keys.dir` plus `manifest.json` (kid, algorithm,
//! dates), parsed once into ring key pairs and kept in memory; the JWKS is serialized
//! once per key-set change, not per request.
//!
//! Lifecycle (RFC 7517; OIDC Core §10.1.1): a key is *staged* (published, not yet
//! signing) until `signs_from`, then *active*; the newest active key signs. A *retired*
//! key stops signing at once but stays published (and accepted) until the longest
//! access-token lifetime plus the JWKS cache time has passed.
//!
//! - `manifest`: the manifest, key states, and the lock every change is made under;
//! - `signing`: one parsed key and JWS signing;
//! - `keyset`: the keys in memory, rebuilt on reload and when a state change is due;
//! - `admin`: `latchkey keys generate|rotate|retire|import`;
//! - `pem`: key files (PKCS#8 PEM) and key generation;
//! - `sealer`: the AES-256-GCM key that seals refresh tokens;
//! - `device`: the HMAC key that signs device tokens (login throttling);
//! - `jwk`: public JWKs; `atomic_file`: crash-safe writes in `keys.dir`.

mod admin;
mod atomic_file;
mod device;
mod jwk;
mod keyset;
mod manifest;
mod pem;
mod sealer;
mod signing;

pub use self::pem::{generate_der, pkcs8_from_pem};
pub use admin::{generate, retire, rotate, Retired};
pub use device::{DeviceKey, DEVICE_TOKEN_TTL_SECS};
pub use jwk::Jwk;
pub use keyset::{KeySet, Keys};
pub use manifest::{read_manifest, with_locked_manifest, KeyEntry, KeyState, Manifest};
pub use sealer::Sealer;
pub use signing::SigningKey;
