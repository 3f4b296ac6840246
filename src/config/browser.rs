//! `[browser]`: browser (SPA) mode (docs/contract.md "Browser mode").

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Browser (SPA) mode: the refresh token travels only in this cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserSettings {
    /// The refresh cookie. Must start with `__Host-`, which makes browsers insist on
    /// `Secure`, `Path=/` and no `Domain`, so a sibling subdomain or a plain-http page
    /// cannot plant or overwrite it (RFC 6265bis §4.1.3.2).
    pub cookie_name: String,
    /// The device cookie (docs/contract.md "Login throttling"); `__Host-` too.
    pub device_cookie_name: String,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        Self {
            cookie_name: "__Host-lk_rt".into(),
            device_cookie_name: "__Host-lk_device".into(),
        }
    }
}

impl BrowserSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, name) in [
            ("cookie_name", &self.cookie_name),
            ("device_cookie_name", &self.device_cookie_name),
        ] {
            // RFC 6265 §4.1.1: a cookie name is a token.
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(ConfigError(format!(
                    "browser.{key} {name:?} is not a valid cookie name"
                )));
            }
            if !name.starts_with("__Host-") || name.len() == "__Host-".len() {
                return Err(ConfigError(format!(
                    "browser.{key} {name:?} must start with __Host- (RFC 6265bis §4.1.3.2: \
                     only then can no other site or subdomain set it)"
                )));
            }
        }
        if self.cookie_name == self.device_cookie_name {
            return Err(ConfigError(
                "browser.cookie_name and browser.device_cookie_name must differ".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6265bis_4_1_3_2_cookie_names_need_the_host_prefix() {
        assert!(BrowserSettings::default().validate().is_ok());
        for (rt, dev) in [
            ("lk_rt", "__Host-lk_device"),
            ("__Secure-lk_rt", "__Host-lk_device"),
            ("__Host-", "__Host-lk_device"),
            ("__Host-lk_rt", "lk_device"),
            ("__Host-x", "__Host-x"),
            ("__Host-a b", "__Host-lk_device"),
        ] {
            let s = BrowserSettings {
                cookie_name: rt.into(),
                device_cookie_name: dev.into(),
            };
            assert!(s.validate().is_err(), "{rt} / {dev}");
        }
    }
}
