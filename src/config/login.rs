//! `[login]`: failed-login throttling per account and per address.

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSettings {
    /// Failed logins per account in any sliding hour before attempts get 429 (ASVS
    /// v4 2.2.1 asks for at most 100).
    pub max_failures_per_account_per_hour: u32,
    /// Failed logins per client IP (any account) per hour before attempts get 429.
    pub max_failures_per_ip_per_hour: u32,
    /// Failures from one address on one account before delays start.
    pub failures_before_delay: u32,
    /// The first delay; each further failure doubles it.
    pub first_delay: HumanDuration,
    /// The longest delay.
    pub max_delay: HumanDuration,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            max_failures_per_account_per_hour: 100,
            max_failures_per_ip_per_hour: 1000,
            failures_before_delay: 5,
            first_delay: HumanDuration::secs(1),
            max_delay: HumanDuration::secs(300),
        }
    }
}

impl LoginSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_failures_per_account_per_hour == 0 || self.max_failures_per_ip_per_hour == 0 {
            return Err(ConfigError(
                "login.max_failures_per_account_per_hour and login.max_failures_per_ip_per_hour must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
