//! `[access_token]` and `[refresh]`: token lifetimes and the rotation grace window.

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessTokenSettings {
    pub ttl: HumanDuration,
    /// Clock-skew allowance when verifying `exp`, `nbf` and `iat`.
    pub leeway: HumanDuration,
}

impl Default for AccessTokenSettings {
    fn default() -> Self {
        Self {
            ttl: HumanDuration::secs(15 * 60),
            leeway: HumanDuration::secs(30),
        }
    }
}

impl AccessTokenSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl.0.is_zero() {
            return Err(ConfigError("access_token.ttl must be positive".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshSettings {
    /// Grace window in which the head's parent returns the same head (lost responses,
    /// concurrent tabs) instead of counting as reuse.
    pub reuse_interval: HumanDuration,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        Self {
            reuse_interval: HumanDuration::secs(10),
        }
    }
}
