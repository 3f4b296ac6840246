//! Signing keys: PKCS#8 PEM files in `keys.dir` plus `manifest.json` (kid, algorithm,
//! dates), parsed once into ring key pairs and kept in memory; the JWKS is serialized
//! once per key-set change, not per request.
//!
//! Lifecycle (RFC 7517; OIDC Core §10.1.1): a key is *staged* (published, not yet
//! signing) until `signs_from`, then *active*; the newest active key signs. A *retired*
//! key stops signing at once but stays published (and accepted for tokens issued before
//! its retirement) until the longest access-token lifetime plus the JWKS cache time has
//! passed. A *revoked* key (compromised) is gone at once: not published, not accepted.
//!
//! - `manifest`: the manifest, key states, and the lock every change is made under;
//! - `signing`: one parsed key and JWS signing;
//! - `keyset`: the keys in memory, rebuilt on reload and when a state change is due;
//! - `admin`: `latchkey keys generate|rotate|retire|revoke|import`;
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
pub use admin::{generate, retire, revoke, rotate, Retired, Revoked};
pub use device::{DeviceKey, DEVICE_TOKEN_TTL_SECS};
pub use jwk::Jwk;
pub use keyset::{KeySet, Keys};
pub use manifest::{read_manifest, with_locked_manifest, KeyEntry, KeyState, Manifest};
pub use sealer::Sealer;

/// Private key material in `dir` (`*.pem` signing keys and `refresh-seal.key`) that
/// group or others may read or write, with its mode. latchkey writes them 0600; a
/// copy, restore or `chmod` may have widened that.
pub fn loose_permissions(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut loose = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return loose;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.ends_with(".pem") || name == sealer::SEAL_KEY_FILE) {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                let mode = meta.permissions().mode() & 0o777;
                if meta.is_file() && mode & 0o077 != 0 {
                    loose.push((path, mode));
                }
            }
        }
        loose.sort();
    }
    #[cfg(not(unix))]
    let _ = dir;
    loose
}
pub use signing::{p256_s_is_low, SigningKey};
