//! `[[clients]]` and `[[resource_servers]]`: who may ask for tokens and who may
//! introspect them.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};
use crate::domain::ClientId;
use crate::secret::Secret;

/// `clients[].audience`: one audience or a list (docs/contract.md "Audiences").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AudienceSetting {
    One(String),
    Many(Vec<String>),
}

impl AudienceSetting {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            AudienceSetting::One(a) => vec![a.clone()],
            AudienceSetting::Many(list) => list.clone(),
        }
    }
}

impl From<&str> for AudienceSetting {
    fn from(a: &str) -> Self {
        AudienceSetting::One(a.to_owned())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub id: String,
    /// The `aud` of access tokens issued to this client: one or several audiences.
    /// Unset: the issuer, i.e. tokens for latchkey's own routes
    /// (`Settings::audiences_of`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<AudienceSetting>,
    /// Scopes this client may request; a request for anything else is refused.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Exact origins allowed for browser (cookie) mode and CORS.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Where `/oauth/authorize` may send this client's codes (docs/contract.md
    /// "Identity providers and the authorization endpoint"): exact https URLs,
    /// private-use schemes, or loopback `http://127.0.0.1` / `http://[::1]` matched with
    /// any port (RFC 8252 §7).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub access_token_ttl: Option<HumanDuration>,
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub absolute_lifetime: Option<HumanDuration>,
    #[serde(default)]
    pub idle_timeout_no_remember: Option<HumanDuration>,
    #[serde(default)]
    pub absolute_lifetime_no_remember: Option<HumanDuration>,
}

impl ClientSettings {
    pub fn named(id: &str) -> Self {
        Self {
            id: id.into(),
            audience: None,
            scopes: Vec::new(),
            allowed_origins: Vec::new(),
            redirect_uris: Vec::new(),
            access_token_ttl: None,
            idle_timeout: None,
            absolute_lifetime: None,
            idle_timeout_no_remember: None,
            absolute_lifetime_no_remember: None,
        }
    }

    /// This client on its own; `validate_clients` checks the list.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for origin in &self.allowed_origins {
            let ok = url::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.path() == "/"
                    && !origin.ends_with('/')
                    && u.query().is_none()
            });
            if !ok {
                return Err(ConfigError(format!(
                    "client {:?}: allowed origin {origin:?} must be scheme://host[:port] with no path",
                    self.id
                )));
            }
        }
        for uri in &self.redirect_uris {
            redirect_uri_kind(uri).map_err(|why| {
                ConfigError(format!(
                    "client {:?}: redirect URI {uri:?} {why} (RFC 8252 §7)",
                    self.id
                ))
            })?;
        }
        ClientId::parse(&self.id)
            .map_err(|e| ConfigError(format!("client id {:?}: {e}", self.id)))?;
        if let Some(audience) = &self.audience {
            validate_audiences(&format!("client {:?}", self.id), &audience.to_vec())?;
        }
        Ok(())
    }

    /// Whether `presented` is one of this client's redirect URIs: compared exactly
    /// (RFC 9700 §2.1), except that a loopback URI matches with any port (RFC 8252 §7.3:
    /// the app picks a free port when it runs).
    pub fn allows_redirect_uri(&self, presented: &str) -> bool {
        self.redirect_uris.iter().any(|registered| {
            registered == presented
                || (redirect_uri_kind(registered) == Ok(RedirectKind::Loopback)
                    && redirect_uri_kind(presented) == Ok(RedirectKind::Loopback)
                    && without_port(registered) == without_port(presented))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedirectKind {
    /// A claimed `https` URL (RFC 8252 §7.2).
    Https,
    /// A private-use scheme in reverse-domain form, e.g. `com.example.app:/cb` (§7.1).
    PrivateUse,
    /// `http://127.0.0.1` or `http://[::1]`, any port (§7.3); `localhost` is refused
    /// (§8.3: it may resolve elsewhere).
    Loopback,
}

fn redirect_uri_kind(uri: &str) -> Result<RedirectKind, &'static str> {
    let url = url::Url::parse(uri).map_err(|_| "is not an absolute URI")?;
    if url.fragment().is_some() || uri.contains('#') {
        // RFC 6749 §3.1.2: the redirection endpoint URI MUST NOT include a fragment.
        return Err("has a fragment");
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(RedirectKind::Https),
        "http" => match url.host_str() {
            Some("127.0.0.1" | "[::1]") => Ok(RedirectKind::Loopback),
            _ => Err("uses http on a host other than 127.0.0.1 or [::1]"),
        },
        "https" => Err("has no host"),
        scheme if scheme.contains('.') => Ok(RedirectKind::PrivateUse),
        "javascript" | "data" | "file" | "blob" => Err("uses a forbidden scheme"),
        _ => Err("must be https, loopback http or a reverse-domain private-use scheme"),
    }
}

fn without_port(uri: &str) -> Option<url::Url> {
    let mut url = url::Url::parse(uri).ok()?;
    url.set_port(None).ok()?;
    Some(url)
}

/// At least one client, each valid, no id twice.
pub(super) fn validate_clients(clients: &[ClientSettings]) -> Result<(), ConfigError> {
    if clients.is_empty() {
        return Err(ConfigError("at least one client must be configured".into()));
    }
    let mut ids = HashSet::new();
    for c in clients {
        c.validate()?;
        if !ids.insert(c.id.as_str()) {
            return Err(ConfigError(format!("client id {:?} is listed twice", c.id)));
        }
    }
    Ok(())
}

/// At least one audience, none empty, none twice.
fn validate_audiences(owner: &str, audiences: &[String]) -> Result<(), ConfigError> {
    if audiences.is_empty() {
        return Err(ConfigError(format!("{owner} lists no audience")));
    }
    let mut seen = HashSet::new();
    for a in audiences {
        if a.is_empty() {
            return Err(ConfigError(format!("{owner} has an empty audience")));
        }
        if !seen.insert(a) {
            return Err(ConfigError(format!("{owner} lists audience {a:?} twice")));
        }
    }
    Ok(())
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceServerSettings {
    pub id: String,
    pub secret: Secret<String>,
    /// Introspection tells this resource server only about access tokens whose `aud`
    /// includes one of these (docs/contract.md "Audiences").
    pub audiences: Vec<String>,
}

impl fmt::Debug for ResourceServerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServerSettings")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .field("audiences", &self.audiences)
            .finish()
    }
}

impl ResourceServerSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.is_empty() || self.secret.expose().len() < 16 {
            return Err(ConfigError(format!(
                "resource server {:?} needs an id and a secret of at least 16 characters",
                self.id
            )));
        }
        validate_audiences(
            &format!(
                "resource server {:?} (resource_servers[].audiences)",
                self.id
            ),
            &self.audiences,
        )
    }
}

/// Each resource server valid, no id twice (none at all is fine).
pub(super) fn validate_resource_servers(
    servers: &[ResourceServerSettings],
) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for rs in servers {
        rs.validate()?;
        if !ids.insert(rs.id.as_str()) {
            return Err(ConfigError(format!(
                "resource server {:?} is listed twice",
                rs.id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str]) -> ClientSettings {
        ClientSettings {
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            ..ClientSettings::named("app")
        }
    }

    #[test]
    fn rfc8252_7_redirect_uris_are_https_private_use_or_loopback_ip() {
        for ok in [
            "https://app.example.com/callback",
            "com.example.app:/oauth2redirect",
            "http://127.0.0.1/callback",
            "http://[::1]:8400/cb",
        ] {
            assert!(client(&[ok]).validate().is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost/callback",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "javascript:alert(1)",
            "myapp:/cb",
            "/relative",
        ] {
            assert!(client(&[bad]).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc8252_7_3_loopback_matches_any_port_everything_else_exactly() {
        let c = client(&["http://127.0.0.1/cb", "https://app.example.com/cb"]);
        assert!(c.allows_redirect_uri("http://127.0.0.1:51234/cb"));
        assert!(c.allows_redirect_uri("http://127.0.0.1/cb"));
        assert!(!c.allows_redirect_uri("http://127.0.0.1:51234/other"));
        assert!(!c.allows_redirect_uri("http://[::1]:51234/cb"));
        assert!(c.allows_redirect_uri("https://app.example.com/cb"));
        assert!(!c.allows_redirect_uri("https://app.example.com:444/cb"));
        assert!(!c.allows_redirect_uri("https://app.example.com/cb?x=1"));
    }
}
