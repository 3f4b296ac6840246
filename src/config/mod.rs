//! Configuration: safe defaults, layered under one TOML file, layered under
//! `LATCHKEY_SECTION__KEY` environment variables (figment does the layering;
//! docs/contract.md "Configuration").
//!
//! Every key has a default so `latchkey serve` runs with no file at all. Unknown keys
//! are refused (`deny_unknown_fields`) so a typo never silently falls back to a default.
//!
//! Each section lives in its own file with its defaults and its own `validate`;
//! [`Settings::validate`] runs them in turn.

mod admin;
mod browser;
mod clients;
mod duration;
mod events;
mod identity_providers;
mod keys;
mod logging;
mod login;
mod mail;
mod mfa;
mod passkeys;
mod rate_limits;
mod revocations;
mod server;
mod session;
mod store;
mod tokens;
mod webhooks;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::Lifetimes;

pub use admin::AdminSettings;
pub use browser::BrowserSettings;
pub use clients::{AudienceSetting, ClientSettings, ResourceServerSettings};
pub use duration::HumanDuration;
pub use events::EventSettings;
pub use identity_providers::IdentityProviderSettings;
pub use keys::KeySettings;
pub use logging::{LogFormat, LogSettings};
pub use login::LoginSettings;
pub use mail::{MailSettings, MailTransport};
pub use mfa::MfaSettings;
pub use passkeys::{PasskeySettings, RelyingParty};
pub use rate_limits::{RateLimit, RateLimitSettings};
pub use revocations::RevocationSettings;
pub use server::{ForwardedHeader, ServerSettings, TlsSettings};
pub use session::SessionSettings;
pub use store::StoreSettings;
pub use tokens::{AccessTokenSettings, RefreshSettings};
pub use webhooks::{secret_key, WebhookEndpoint, WebhookSecrets, WebhookSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The issuer URL: the `iss` of every token and the metadata `issuer`, byte for byte.
    pub issuer: String,
    pub registration: Registration,
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub keys: KeySettings,
    pub access_token: AccessTokenSettings,
    pub refresh: RefreshSettings,
    pub session: SessionSettings,
    pub login: LoginSettings,
    pub rate_limits: RateLimitSettings,
    pub browser: BrowserSettings,
    pub clients: Vec<ClientSettings>,
    pub resource_servers: Vec<ResourceServerSettings>,
    pub events: EventSettings,
    pub revocations: RevocationSettings,
    pub log: LogSettings,
    pub mail: MailSettings,
    pub admin: AdminSettings,
    pub mfa: MfaSettings,
    pub passkeys: PasskeySettings,
    pub webhooks: WebhookSettings,
    pub identity_providers: Vec<IdentityProviderSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            registration: Registration::Open,
            server: ServerSettings::default(),
            store: StoreSettings::default(),
            keys: KeySettings::default(),
            access_token: AccessTokenSettings::default(),
            refresh: RefreshSettings::default(),
            session: SessionSettings::default(),
            login: LoginSettings::default(),
            rate_limits: RateLimitSettings::default(),
            browser: BrowserSettings::default(),
            clients: vec![ClientSettings::named("default")],
            resource_servers: Vec::new(),
            events: EventSettings::default(),
            revocations: RevocationSettings::default(),
            log: LogSettings::default(),
            mail: MailSettings::default(),
            admin: AdminSettings::default(),
            mfa: MfaSettings::default(),
            passkeys: PasskeySettings::default(),
            webhooks: WebhookSettings::default(),
            identity_providers: Vec::new(),
        }
    }
}

/// A configuration problem, reported as one line naming it.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Defaults → `file` (or `latchkey.toml` if present) → `LATCHKEY_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist or is not a file",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("latchkey.toml")),
        }
        figment = figment.merge(Env::prefixed("LATCHKEY_").split("__").ignore(&["config"]));
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError(describe_load_error(&e.to_string())))?;
        settings.validate()?;
        Ok(settings)
    }

    /// The first problem found, section by section. `store`, `keys`, `refresh`,
    /// `events` and `log` have no checks beyond their types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_issuer(&self.issuer)?;
        self.server.validate()?;
        self.browser.validate()?;
        clients::validate_clients(&self.clients)?;
        self.login.validate()?;
        self.rate_limits.validate()?;
        clients::validate_resource_servers(&self.resource_servers)?;
        self.session.validate()?;
        self.access_token.validate()?;
        self.revocations.validate()?;
        self.mail.validate()?;
        self.store.validate()?;
        self.admin.validate()?;
        self.mfa.validate()?;
        self.relying_party()?;
        self.webhooks.validate()?;
        identity_providers::validate_identity_providers(&self.identity_providers)?;
        self.validate_key_timing()?;
        Ok(())
    }

    /// RFC 7517 / OIDC Core §10.1.1 (docs/contract.md "Standards checklist" #13): a new
    /// key must be published at least one JWKS cache lifetime before it signs, or a
    /// verifier holding a cached JWKS meets a token from a key it does not know yet.
    fn validate_key_timing(&self) -> Result<(), ConfigError> {
        let (ahead, max_age) = (self.publish_ahead(), self.keys.jwks_max_age);
        if ahead.0 < max_age.0 {
            return Err(ConfigError(format!(
                "keys.publish_ahead ({}s) is shorter than keys.jwks_max_age ({}s): verifiers \
                 with a cached JWKS would see tokens from a key they do not have yet",
                ahead.as_secs(),
                max_age.as_secs()
            )));
        }
        Ok(())
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.bind_addr()
    }

    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.server.metrics_addr()
    }

    pub fn identity_provider(&self, id: &str) -> Option<&IdentityProviderSettings> {
        self.identity_providers.iter().find(|p| p.id == id)
    }

    pub fn client(&self, id: &str) -> Option<&ClientSettings> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// The audiences of `client`'s access tokens: its `audience`, or the issuer when it
    /// has none (docs/contract.md "Audiences").
    pub fn audiences_of(&self, client: &ClientSettings) -> Vec<String> {
        client
            .audience
            .as_ref()
            .map_or_else(|| vec![self.issuer.clone()], AudienceSetting::to_vec)
    }

    /// Every audience latchkey issues tokens for.
    pub fn issued_audiences(&self) -> std::collections::HashSet<String> {
        self.clients
            .iter()
            .flat_map(|c| self.audiences_of(c))
            .collect()
    }

    /// The longest access-token lifetime of any client.
    pub fn longest_access_ttl(&self) -> Duration {
        self.clients
            .iter()
            .filter_map(|c| c.access_token_ttl)
            .map(|d| d.0)
            .chain(std::iter::once(self.access_token.ttl.0))
            .max()
            .unwrap_or(self.access_token.ttl.0)
    }

    /// How long a revoked session stays in the revocation feed: the longest access-token
    /// lifetime plus the verification leeway. After that no access token of the session
    /// can still be accepted (docs/contract.md "Revocation feed").
    pub fn revocation_horizon(&self) -> Duration {
        self.longest_access_ttl() + self.access_token.leeway.0
    }

    /// How long a retired key stays published: every token it signed has expired and
    /// every cached JWKS has been refetched by then.
    pub fn retired_key_grace(&self) -> Duration {
        self.longest_access_ttl() + self.keys.jwks_max_age.0 + self.access_token.leeway.0
    }

    pub fn access_ttl(&self, client: &ClientSettings) -> HumanDuration {
        client.access_token_ttl.unwrap_or(self.access_token.ttl)
    }

    /// Idle and absolute lifetimes for a session of `client`, per its remember-me choice.
    pub fn lifetimes(&self, client: Option<&ClientSettings>, remember_me: bool) -> Lifetimes {
        let s = &self.session;
        let pick = |per_client: Option<HumanDuration>, global: HumanDuration| {
            per_client.unwrap_or(global).as_millis_i64()
        };
        if remember_me {
            Lifetimes {
                idle_ms: pick(client.and_then(|c| c.idle_timeout), s.idle_timeout),
                absolute_ms: pick(
                    client.and_then(|c| c.absolute_lifetime),
                    s.absolute_lifetime,
                ),
            }
        } else {
            Lifetimes {
                idle_ms: pick(
                    client.and_then(|c| c.idle_timeout_no_remember),
                    s.idle_timeout_no_remember,
                ),
                absolute_ms: pick(
                    client.and_then(|c| c.absolute_lifetime_no_remember),
                    s.absolute_lifetime_no_remember,
                ),
            }
        }
    }

    /// The WebAuthn relying party `[passkeys]` resolves to (its defaults come from the
    /// issuer and the clients); `None`: passkeys are off.
    pub fn relying_party(&self) -> Result<Option<RelyingParty>, ConfigError> {
        self.passkeys.relying_party(&self.issuer, &self.clients)
    }

    pub fn publish_ahead(&self) -> HumanDuration {
        self.keys
            .publish_ahead
            .unwrap_or(HumanDuration(self.keys.jwks_max_age.0 * 2))
    }
}

fn validate_issuer(issuer: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(issuer)
        .map_err(|e| ConfigError(format!("issuer {issuer:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        // RFC 8414 §2: the issuer is an https URL with no query or fragment.
        return Err(ConfigError(format!(
            "issuer {issuer:?} must be an http(s) URL without query or fragment"
        )));
    }
    Ok(())
}

/// A configuration error in one line, except a TOML syntax error, whose snippet of the
/// file with a caret under the mistake is what makes it findable.
fn describe_load_error(s: &str) -> String {
    if s.contains("TOML parse error") {
        return s.trim_end().to_owned();
    }
    one_line(s)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn issuer_with_query_is_refused() {
        let s = Settings {
            issuer: "https://auth.example.com/?x=1".into(),
            ..Settings::default()
        };
        assert!(s.validate().is_err());
    }
}
