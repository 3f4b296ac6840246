//! `[admin]`: what the operator routes (`/admin/*`) ask of an administrator's token.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Every `/admin/*` route needs a step-up token: `otp` in `amr` and `auth_time`
    /// within `mfa.step_up_max_age` (RFC 9470; docs/contract.md "Second factor"). An
    /// administrator without a factor enrols one first (`POST /me/mfa/totp`).
    pub require_mfa: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { require_mfa: true }
    }
}

impl AdminSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
