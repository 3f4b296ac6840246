//! `[webhooks]`: security events delivered to the operator's systems, signed per the
//! Standard Webhooks specification (docs/webhooks-guide.md).
//!
//! Two shapes are read, because TOML cannot hold both a table array `[[webhooks]]` and a
//! table `[webhooks]`:
//! - the contract's: one `[[webhooks]]` table per endpoint (`id`, `url`, `secret`,
//!   `events`), where `timeout` and `max_age` may be set per endpoint;
//! - a table: `[[webhooks.endpoints]]` for the endpoints and the shared knobs beside them
//!   (`webhooks.timeout`, `webhooks.max_age`, …; environment `LATCHKEY_WEBHOOKS__TIMEOUT`).

use base64::Engine;
use serde::{de::Error as _, Deserialize, Deserializer, Serialize};

use super::{ConfigError, HumanDuration};
use crate::domain::EventKind;
use crate::secret::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[serde(remote = "Self")]
pub struct WebhookSettings {
    pub endpoints: Vec<WebhookEndpoint>,
    /// One delivery attempt's timeout (connect to last byte of the answer).
    pub timeout: HumanDuration,
    /// How long a delivery is retried; after that it is `failed`.
    pub max_age: HumanDuration,
    /// The first retry's ceiling; it doubles per attempt (full jitter), up to an hour.
    pub retry_backoff: HumanDuration,
    /// Delivered rows are deleted by housekeeping after this long.
    pub retention: HumanDuration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            timeout: HumanDuration::secs(10),
            max_age: HumanDuration::secs(24 * 3600),
            retry_backoff: HumanDuration::secs(5),
            retention: HumanDuration::secs(7 * 86_400),
        }
    }
}

impl Serialize for WebhookSettings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Self::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for WebhookSettings {
    /// A list is the contract's `[[webhooks]]`; a table is `[webhooks]` with
    /// `[[webhooks.endpoints]]`. Each is parsed on its own so a mistake in either gets
    /// its own precise message.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        if value.is_array() {
            let endpoints = serde_json::from_value(value).map_err(D::Error::custom)?;
            Ok(Self {
                endpoints,
                ..Self::default()
            })
        } else {
            Self::deserialize(value).map_err(D::Error::custom)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// Names the endpoint in admin routes, metrics and `latchkey webhooks test ID`.
    pub id: String,
    pub url: String,
    /// `whsec_` + base64 of at least 24 random bytes; a list while rotating: every
    /// secret signs each delivery.
    pub secret: WebhookSecrets,
    /// Event kinds (docs/contract.md "Security events"), or `["*"]` for all.
    pub events: Vec<String>,
    /// This endpoint's `webhooks.timeout` (the `[[webhooks]]` form has no shared table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// This endpoint's `webhooks.max_age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<HumanDuration>,
}

/// One secret, or several during a rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WebhookSecrets {
    One(Secret<String>),
    Many(Vec<Secret<String>>),
}

impl WebhookSecrets {
    pub fn all(&self) -> Vec<&Secret<String>> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v.iter().collect(),
        }
    }
}

/// The key bytes of a `whsec_…` secret (Standard Webhooks "Signature scheme").
pub fn secret_key(secret: &Secret<String>) -> Option<Vec<u8>> {
    let b64 = secret.expose().strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

impl WebhookEndpoint {
    /// Every kind, or the subscribed ones.
    pub fn wants_all(&self) -> bool {
        self.events.iter().any(|e| e == "*")
    }

    /// The subscription as the store keeps it: `*`, or ` kind kind ` (spaces around
    /// each, so a match is one `LIKE '% kind %'`).
    pub fn events_filter(&self) -> String {
        if self.wants_all() {
            "*".into()
        } else {
            format!(" {} ", self.events.join(" "))
        }
    }
}

impl WebhookSettings {
    pub fn endpoint(&self, id: &str) -> Option<&WebhookEndpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }

    /// One attempt's timeout at `endpoint`.
    pub fn timeout_of(&self, endpoint: &WebhookEndpoint) -> std::time::Duration {
        endpoint.timeout.unwrap_or(self.timeout).0
    }

    /// How long deliveries to the endpoint `id` are retried.
    pub fn max_age_of(&self, id: &str) -> HumanDuration {
        self.endpoint(id)
            .and_then(|e| e.max_age)
            .unwrap_or(self.max_age)
    }

    /// The longest attempt any endpoint may take (a claim's lease outlasts it).
    pub fn longest_timeout(&self) -> std::time::Duration {
        self.endpoints
            .iter()
            .map(|e| self.timeout_of(e))
            .fold(self.timeout.0, std::cmp::max)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: String| Err(ConfigError(s));
        if self.timeout.0.is_zero() || self.max_age.0.is_zero() || self.retry_backoff.0.is_zero() {
            return err(
                "webhooks.timeout, webhooks.max_age and webhooks.retry_backoff must be positive"
                    .into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.endpoints {
            if e.timeout.is_some_and(|t| t.0.is_zero()) || e.max_age.is_some_and(|t| t.0.is_zero())
            {
                return err(format!(
                    "webhook {:?}: timeout and max_age must be positive",
                    e.id
                ));
            }
            let valid_id = !e.id.is_empty()
                && e.id.len() <= 64
                && e.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                return err(format!(
                    "webhook endpoint id {:?} must be 1-64 letters, digits, '-' or '_'",
                    e.id
                ));
            }
            if !seen.insert(&e.id) {
                return err(format!("webhook endpoint id {:?} is used twice", e.id));
            }
            match url::Url::parse(&e.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                _ => {
                    return err(format!(
                        "webhook {:?}: url {:?} must be an http(s) URL",
                        e.id, e.url
                    ))
                }
            }
            let secrets = e.secret.all();
            if secrets.is_empty() {
                return err(format!("webhook {:?}: no secret", e.id));
            }
            for s in secrets {
                // Standard Webhooks: 24 to 64 random bytes. The value is never echoed.
                if secret_key(s).is_none_or(|k| k.len() < 24) {
                    return err(format!(
                        "webhook {:?}: each secret must be whsec_ followed by the base64 of at \
                         least 24 random bytes",
                        e.id
                    ));
                }
            }
            if e.events.is_empty() {
                return err(format!(
                    "webhook {:?}: events must list kinds or be [\"*\"]",
                    e.id
                ));
            }
            if !e.wants_all() {
                if let Some(bad) = e.events.iter().find(|k| EventKind::parse(k).is_none()) {
                    return err(format!(
                        "webhook {:?}: {bad:?} is not an event kind (docs/contract.md \
                         \"Security events\")",
                        e.id
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(secret: &str, events: &[&str]) -> WebhookSettings {
        WebhookSettings {
            endpoints: vec![WebhookEndpoint {
                id: "siem".into(),
                url: "https://siem.example/hook".into(),
                secret: WebhookSecrets::One(Secret::new(secret.into())),
                events: events.iter().map(|s| s.to_string()).collect(),
                timeout: None,
                max_age: None,
            }],
            ..Default::default()
        }
    }

    const GOOD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_good_endpoint_validates_and_bad_secrets_or_kinds_do_not() {
        endpoint(GOOD, &["*"]).validate().unwrap();
        endpoint(GOOD, &["new_device_login", "login_failed"])
            .validate()
            .unwrap();
        assert!(endpoint("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &["*"])
            .validate()
            .is_err());
        assert!(endpoint("whsec_c2hvcnQ=", &["*"]).validate().is_err());
        let e = endpoint(GOOD, &["login_exploded"]).validate().unwrap_err();
        assert!(e.to_string().contains("login_exploded"));
        assert!(
            !endpoint("whsec_c2hvcnQ=", &["*"])
                .validate()
                .unwrap_err()
                .to_string()
                .contains("c2hvcnQ"),
            "the secret is never echoed"
        );
    }

    /// Through the real loader: the defaults (a table) under the file.
    fn parse(toml: &str) -> Result<WebhookSettings, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.toml");
        std::fs::write(&path, toml).unwrap();
        super::super::Settings::load(Some(&path))
            .map(|s| s.webhooks)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_contracts_webhooks_table_array_is_read_with_per_endpoint_knobs() {
        let s = parse(&format!(
            r#"
            [[webhooks]]
            id = "siem"
            url = "https://siem.example/hook"
            secret = "{GOOD}"
            events = ["*"]
            timeout = "3s"
            max_age = "1h"

            [[webhooks]]
            id = "chat"
            url = "https://chat.example/hook"
            secret = ["{GOOD}", "{GOOD}"]
            events = ["new_device_login"]
            "#
        ))
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.timeout_of(&s.endpoints[0]).as_secs(), 3);
        assert_eq!(s.timeout_of(&s.endpoints[1]).as_secs(), 10, "the default");
        assert_eq!(s.max_age_of("siem").0.as_secs(), 3600);
        assert_eq!(s.max_age_of("chat").0.as_secs(), 24 * 3600);
        assert_eq!(s.longest_timeout().as_secs(), 10);
    }

    #[test]
    fn the_table_form_with_shared_knobs_is_read_and_typos_are_named() {
        let s = parse(&format!(
            r#"
            [webhooks]
            timeout = "4s"
            [[webhooks.endpoints]]
            id = "siem"
            url = "https://siem.example/hook"
            secret = "{GOOD}"
            events = ["*"]
            "#
        ))
        .unwrap();
        assert_eq!(s.timeout_of(&s.endpoints[0]).as_secs(), 4);
        let e = parse("[[webhooks]]\nid = \"x\"\nurl = \"https://a.example\"\nsecret = \"s\"\nevents = [\"*\"]\ntimout = \"3s\"\n").unwrap_err();
        assert!(e.contains("timout"), "{e}");
        let e = parse("[webhooks]\nmax_agee = \"3s\"\n").unwrap_err();
        assert!(e.contains("max_agee"), "{e}");
    }

    #[test]
    fn the_subscription_filter_brackets_each_kind_with_spaces() {
        assert_eq!(endpoint(GOOD, &["*"]).endpoints[0].events_filter(), "*");
        assert_eq!(
            endpoint(GOOD, &["logout", "login_failed"]).endpoints[0].events_filter(),
            " logout login_failed "
        );
    }
}
