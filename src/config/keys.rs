//! `[keys]`: the signing-key folder (or, with a database that keeps the keys, the
//! key-encryption key), JWKS caching and key rotation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::HumanDuration;
use crate::domain::Algorithm;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    pub dir: PathBuf,
    /// The key-encryption key (32 raw random bytes, mode 0600; `latchkey keys init-kek
    /// FILE` writes one) under which a database that keeps the keys (PostgreSQL) seals
    /// them. Read when the store keeps keys, and checked then (`keys::Kek::load`): the
    /// file may not exist yet when the configuration is loaded, since `init-kek` runs
    /// with it. Unused with SQLite, whose keys stay in `dir`.
    pub kek_file: Option<PathBuf>,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age: HumanDuration,
    /// How long a staged key is published before it signs (default 2 × `jwks_max_age`).
    pub publish_ahead: Option<HumanDuration>,
    /// Algorithm of the key generated on first start and by `keys rotate`.
    pub algorithm: Algorithm,
    /// How often a running server re-reads `manifest.json` to pick up `latchkey keys`
    /// changes made by another process (SIGHUP re-reads at once).
    pub reload_interval: HumanDuration,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./keys"),
            kek_file: None,
            jwks_max_age: HumanDuration::secs(300),
            publish_ahead: None,
            algorithm: Algorithm::ES256,
            reload_interval: HumanDuration::secs(10),
        }
    }
}
