//! `[[identity_providers]]`: OpenID Connect providers users may sign in with
//! (docs/identity-providers-guide.md).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::secret::Secret;

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderSettings {
    /// The name in latchkey's URLs (`/browser/federate/{id}`) and in stored identities:
    /// changing it orphans the identities linked through it.
    pub id: String,
    /// The provider's issuer: discovery reads `{issuer}/.well-known/openid-configuration`
    /// and ID tokens must carry it as `iss`, byte for byte (OIDC Discovery §4.3).
    pub issuer: String,
    pub client_id: String,
    /// The client secret, or none for a public client (PKCE alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret<String>>,
    /// The name of an environment variable holding the client secret, so it can stay
    /// out of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// What a sign-in button shows; the id when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A first login whose email the provider says is verified joins the local account
    /// holding the same verified address (docs/identity-providers-guide.md "Linking").
    #[serde(default = "yes")]
    pub link_by_verified_email: bool,
}

impl IdentityProviderSettings {
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.id)
    }

    /// The client secret from the file or from the environment variable it names.
    pub fn client_secret(&self) -> Result<Option<Secret<String>>, ConfigError> {
        match (&self.client_secret, &self.client_secret_env) {
            (Some(_), Some(_)) => Err(ConfigError(format!(
                "identity provider {:?}: set client_secret or client_secret_env, not both",
                self.id
            ))),
            (Some(s), None) => Ok(Some(s.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
                _ => Err(ConfigError(format!(
                    "identity provider {:?}: environment variable {var} (client_secret_env) \
                     is not set",
                    self.id
                ))),
            },
            (None, None) => Ok(None),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let who = format!("identity provider {:?}", self.id);
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 32
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(ConfigError(format!(
                "{who}: id must be 1-32 characters of a-z, 0-9, - and _"
            )));
        }
        if !issuer_allowed(&self.issuer) {
            return Err(ConfigError(format!(
                "{who}: issuer {:?} must be an https URL without query or fragment \
                 (http only on a loopback address, for development)",
                self.issuer
            )));
        }
        if self.client_id.is_empty() {
            return Err(ConfigError(format!("{who}: client_id is empty")));
        }
        // OIDC Core §3.1.2.1: without `openid` the request is plain OAuth, no ID token.
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(ConfigError(format!("{who}: scopes must include openid")));
        }
        self.client_secret()?;
        Ok(())
    }
}

/// https, or http on a loopback host (a provider run beside latchkey in development and
/// the tests); no query or fragment (OIDC Discovery §4.3 compares it byte for byte).
fn issuer_allowed(issuer: &str) -> bool {
    let Ok(url) = url::Url::parse(issuer) else {
        return false;
    };
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    (url.scheme() == "https" || (url.scheme() == "http" && loopback))
        && url.query().is_none()
        && url.fragment().is_none()
}

/// Each provider valid, no id twice.
pub(super) fn validate_identity_providers(
    providers: &[IdentityProviderSettings],
) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for p in providers {
        p.validate()?;
        if !ids.insert(p.id.as_str()) {
            return Err(ConfigError(format!(
                "identity provider {:?} is listed twice",
                p.id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(issuer: &str) -> IdentityProviderSettings {
        IdentityProviderSettings {
            id: "corp".into(),
            issuer: issuer.into(),
            client_id: "latchkey".into(),
            client_secret: None,
            client_secret_env: None,
            scopes: default_scopes(),
            display_name: None,
            link_by_verified_email: true,
        }
    }

    #[test]
    fn issuers_are_https_or_loopback_http_without_query_or_fragment() {
        for ok in [
            "https://accounts.google.com",
            "https://login.example.com/realms/x",
            "http://127.0.0.1:4000",
            "http://localhost:4000/oidc",
        ] {
            assert!(provider(ok).validate().is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com",
            "https://idp.example.com/?a=1",
            "https://idp.example.com/#x",
            "idp.example.com",
        ] {
            assert!(provider(bad).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_url_safe_scopes_need_openid_and_one_secret_source() {
        let mut p = provider("https://idp.example.com");
        p.id = "Corp SSO".into();
        assert!(p.validate().is_err());
        let mut p = provider("https://idp.example.com");
        p.scopes = vec!["email".into()];
        assert!(p.validate().is_err());
        let mut p = provider("https://idp.example.com");
        p.client_secret = Some(Secret::new("s".into()));
        p.client_secret_env = Some("LATCHKEY_TEST_UNSET_SECRET_VARIABLE".into());
        assert!(p.validate().is_err());
        p.client_secret = None;
        assert!(p.validate().is_err(), "a named variable that is unset");
        let twice = [provider("https://a.example"), provider("https://b.example")];
        assert!(validate_identity_providers(&twice).is_err());
    }
}
