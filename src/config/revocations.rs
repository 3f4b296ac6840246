//! `[revocations]`: the revocation feed for offline verifiers (docs/contract.md
//! "Revocation feed").

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationSettings {
    /// `Cache-Control: max-age` of `GET /revocations`.
    pub max_age: HumanDuration,
    /// Open `GET /revocations/stream` connections allowed per resource server; one more
    /// is refused with 429.
    pub max_streams_per_resource_server: usize,
    /// How often an idle stream sends a heartbeat comment.
    pub heartbeat: HumanDuration,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        Self {
            max_age: HumanDuration::secs(5),
            max_streams_per_resource_server: 8,
            heartbeat: HumanDuration::secs(15),
        }
    }
}

impl RevocationSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat.0.is_zero() {
            return Err(ConfigError("revocations.heartbeat must be positive".into()));
        }
        if self.max_streams_per_resource_server == 0 {
            return Err(ConfigError(
                "revocations.max_streams_per_resource_server must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
