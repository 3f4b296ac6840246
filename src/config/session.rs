//! `[session]`: session lifetimes, the per-user cap and retention.

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};
use crate::domain::LimitPolicy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    pub idle_timeout: HumanDuration,
    pub absolute_lifetime: HumanDuration,
    pub idle_timeout_no_remember: HumanDuration,
    pub absolute_lifetime_no_remember: HumanDuration,
    pub max_per_user: u32,
    pub limit_policy: LimitPolicy,
    /// How long ended sessions stay visible to admins before housekeeping deletes them.
    pub retention: HumanDuration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: HumanDuration::secs(14 * 86_400),
            absolute_lifetime: HumanDuration::secs(30 * 86_400),
            idle_timeout_no_remember: HumanDuration::secs(30 * 60),
            absolute_lifetime_no_remember: HumanDuration::secs(12 * 3600),
            max_per_user: 50,
            limit_policy: LimitPolicy::EvictOldest,
            retention: HumanDuration::secs(30 * 86_400),
        }
    }
}

impl SessionSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_per_user == 0 {
            return Err(ConfigError(
                "session.max_per_user must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
