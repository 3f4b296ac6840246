//! `[rate_limits]`: per-IP request rate limits.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// One per-IP request rate limit: a sustained rate and a burst (GCRA).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }
}

/// Per-IP request rate limits (429 with `Retry-After` beyond them). IPv6 clients are
/// counted by their /64.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub signup: RateLimit,
    pub login: RateLimit,
    pub token: RateLimit,
    pub revoke: RateLimit,
    pub introspect: RateLimit,
    pub browser: RateLimit,
    /// `/password/forgot`, `/password/reset`, `/email/verify`.
    pub recovery: RateLimit,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            signup: RateLimit::new(10, 10),
            login: RateLimit::new(60, 30),
            token: RateLimit::new(300, 60),
            revoke: RateLimit::new(120, 30),
            introspect: RateLimit::new(3000, 500),
            browser: RateLimit::new(300, 60),
            recovery: RateLimit::new(10, 5),
        }
    }
}

impl RateLimitSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, limit) in [
            ("signup", self.signup),
            ("login", self.login),
            ("token", self.token),
            ("revoke", self.revoke),
            ("introspect", self.introspect),
            ("browser", self.browser),
            ("recovery", self.recovery),
        ] {
            if limit.per_minute == 0 || limit.burst == 0 {
                return Err(ConfigError(format!(
                    "rate_limits.{name}: per_minute and burst must be at least 1"
                )));
            }
        }
        Ok(())
    }
}
