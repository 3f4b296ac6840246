//! `[mfa]`: the second factor and step-up (docs/contract.md "Second factor").

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaSettings {
    /// How recent the login behind a token must be for a step-up route (RFC 9470 §3
    /// `max_age`): password changes, erasure, factor changes, and `/admin/*` while
    /// `admin.require_mfa` is on.
    pub step_up_max_age: HumanDuration,
}

impl Default for MfaSettings {
    fn default() -> Self {
        Self {
            step_up_max_age: HumanDuration::secs(15 * 60),
        }
    }
}

impl MfaSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.step_up_max_age.0.is_zero() {
            return Err(ConfigError("mfa.step_up_max_age must be positive".into()));
        }
        Ok(())
    }
}
