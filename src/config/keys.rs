//! `[keys]`: the signing-key folder, JWKS caching and key rotation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::HumanDuration;
use crate::domain::Algorithm;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    pub dir: PathBuf,
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
            jwks_max_age: HumanDuration::secs(300),
            publish_ahead: None,
            algorithm: Algorithm::ES256,
            reload_interval: HumanDuration::secs(10),
        }
    }
}
