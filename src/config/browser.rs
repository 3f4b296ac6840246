//! `[browser]`: browser (SPA) mode (docs/contract.md "Browser mode").

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Browser (SPA) mode: the refresh token travels only in this cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserSettings {
    /// `__Host-` makes browsers insist on `Secure`, `Path=/` and no `Domain`.
    pub cookie_name: String,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        Self {
            cookie_name: "__Host-lk_rt".into(),
        }
    }
}

impl BrowserSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.cookie_name;
        // RFC 6265 §4.1.1: a cookie name is a token.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(ConfigError(format!(
                "browser.cookie_name {name:?} is not a valid cookie name"
            )));
        }
        Ok(())
    }
}
