//! `[passkeys]`: the WebAuthn relying party (docs/contract.md "Passkeys").

use serde::{Deserialize, Serialize};

use super::{ClientSettings, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeySettings {
    /// The RP ID passkeys are bound to (WebAuthn Level 3 §5.1.2); default the issuer's host.
    pub rp_id: Option<String>,
    /// The name authenticators show beside the account.
    pub rp_name: String,
    /// Origins a ceremony may come from; default the issuer's origin and every client's
    /// `allowed_origins`.
    pub origins: Option<Vec<String>>,
}

impl Default for PasskeySettings {
    fn default() -> Self {
        Self {
            rp_id: None,
            rp_name: "latchkey".into(),
            origins: None,
        }
    }
}

/// The relying party that `[passkeys]` resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    pub rp_id: String,
    pub rp_name: String,
    pub origins: Vec<url::Url>,
    /// Default origins the default RP ID does not cover (e.g. a SPA on `localhost` with
    /// the issuer on `127.0.0.1`): left out rather than failing a configuration that never
    /// mentions passkeys; `check-config` names them.
    pub left_out: Vec<String>,
}

impl PasskeySettings {
    /// Resolves the defaults; `None` when passkeys are off: the default RP ID is the
    /// issuer's host and that is an IP address, which WebAuthn does not allow. An `rp_id` or `origins` given explicitly must cover every
    /// origin (an RP ID that is not a registrable suffix of an origin's host makes every
    /// ceremony from there fail in the browser, WebAuthn Level 3 §5.1.3 step 7).
    pub fn relying_party(
        &self,
        issuer: &str,
        clients: &[ClientSettings],
    ) -> Result<Option<RelyingParty>, ConfigError> {
        let issuer = url::Url::parse(issuer)
            .map_err(|e| ConfigError(format!("issuer {issuer:?} is not a URL: {e}")))?;
        let rp_id = match &self.rp_id {
            Some(id) => id.clone(),
            None => issuer.host_str().unwrap_or_default().to_owned(),
        };
        if rp_id.parse::<std::net::IpAddr>().is_ok() || rp_id.starts_with('[') {
            if self.rp_id.is_some() {
                return Err(ConfigError(format!(
                    "passkeys.rp_id {rp_id:?} must be a domain name, not an IP address"
                )));
            }
            return Ok(None);
        }
        if self.rp_name.trim().is_empty() {
            return Err(ConfigError("passkeys.rp_name must not be empty".into()));
        }
        let explicit = self.rp_id.is_some() || self.origins.is_some();
        let listed = match &self.origins {
            Some(origins) => origins.clone(),
            None => std::iter::once(issuer.origin().ascii_serialization())
                .chain(clients.iter().flat_map(|c| c.allowed_origins.clone()))
                .collect(),
        };
        let mut origins = Vec::new();
        let mut left_out = Vec::new();
        for origin in listed {
            let url = parse_origin(&origin)?;
            if origins.contains(&url) {
                continue;
            }
            if is_registrable_suffix(&rp_id, url.host_str().unwrap_or_default()) {
                origins.push(url);
            } else if explicit {
                return Err(ConfigError(format!(
                    "passkeys.rp_id {rp_id:?} is not a registrable suffix of the host of \
                     origin {origin:?}"
                )));
            } else {
                left_out.push(origin);
            }
        }
        if origins.is_empty() {
            return Err(ConfigError("passkeys.origins must not be empty".into()));
        }
        Ok(Some(RelyingParty {
            rp_id,
            rp_name: self.rp_name.clone(),
            origins,
            left_out,
        }))
    }
}

fn parse_origin(origin: &str) -> Result<url::Url, ConfigError> {
    url::Url::parse(origin)
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && !origin.ends_with('/')
                && u.query().is_none()
                && u.fragment().is_none()
        })
        .ok_or_else(|| {
            ConfigError(format!(
                "passkeys origin {origin:?} must be scheme://host[:port] only"
            ))
        })
}

/// HTML's "is a registrable domain suffix of or is equal to", which WebAuthn uses for the
/// RP ID: the host itself, or (for a domain host, not an IP address) a parent domain of it
/// at a label boundary that is not a bare top-level label. Without a public-suffix list, a multi-label
/// public suffix (`co.uk`) is not caught here; browsers refuse it anyway.
fn is_registrable_suffix(rp_id: &str, host: &str) -> bool {
    if rp_id.is_empty() || rp_id != rp_id.to_ascii_lowercase() {
        return false;
    }
    if rp_id == host {
        return true;
    }
    // An IP address has no parent domain: only the address itself is its RP ID.
    let is_ip = host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
    let parent = host
        .strip_suffix(rp_id)
        .is_some_and(|rest| rest.ends_with('.'));
    parent && !is_ip && rp_id.contains('.') && !rp_id.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_with_origin(origin: &str) -> ClientSettings {
        let mut c = ClientSettings::named("spa");
        c.allowed_origins = vec![origin.into()];
        c
    }

    #[test]
    fn defaults_take_the_issuer_host_and_origin() {
        let rp = PasskeySettings::default()
            .relying_party("https://auth.example.com", &[])
            .unwrap()
            .unwrap();
        assert_eq!(rp.rp_id, "auth.example.com");
        assert_eq!(rp.rp_name, "latchkey");
        assert_eq!(rp.origins[0].as_str(), "https://auth.example.com/");
    }

    #[test]
    fn a_parent_domain_covers_the_issuer_and_every_client_origin() {
        let s = PasskeySettings {
            rp_id: Some("example.com".into()),
            ..PasskeySettings::default()
        };
        let rp = s
            .relying_party(
                "https://auth.example.com",
                &[client_with_origin("https://app.example.com")],
            )
            .unwrap()
            .unwrap();
        assert_eq!(rp.origins.len(), 2);
    }

    #[test]
    fn an_rp_id_that_is_not_a_suffix_of_an_origin_is_refused() {
        let s = PasskeySettings {
            rp_id: Some("example.com".into()),
            ..PasskeySettings::default()
        };
        let e = s
            .relying_party(
                "https://auth.example.com",
                &[client_with_origin("https://app.example.org")],
            )
            .unwrap_err();
        assert!(e.0.contains("app.example.org"), "{e}");
    }

    #[test]
    fn a_suffix_that_is_not_at_a_label_boundary_is_refused() {
        assert!(!is_registrable_suffix("ample.com", "example.com"));
        assert!(is_registrable_suffix("example.com", "a.b.example.com"));
    }

    #[test]
    fn a_top_level_label_or_an_ip_parent_is_never_an_rp_id() {
        assert!(!is_registrable_suffix("com", "example.com"));
        assert!(!is_registrable_suffix("0.1", "127.0.0.1"));
        assert!(is_registrable_suffix("127.0.0.1", "127.0.0.1"));
        assert!(is_registrable_suffix("localhost", "localhost"));
    }

    #[test]
    fn explicit_origins_are_checked_even_with_the_default_rp_id() {
        let s = PasskeySettings {
            origins: Some(vec!["https://other.example.net".into()]),
            ..PasskeySettings::default()
        };
        assert!(s.relying_party("https://auth.example.com", &[]).is_err());
    }

    #[test]
    fn default_origins_the_default_rp_id_does_not_cover_are_left_out_not_refused() {
        let rp = PasskeySettings::default()
            .relying_party(
                "http://auth.localhost:8080",
                &[client_with_origin("http://localhost:5173")],
            )
            .unwrap()
            .unwrap();
        assert_eq!(rp.origins.len(), 1);
        assert_eq!(rp.left_out, vec!["http://localhost:5173".to_string()]);
    }

    #[test]
    fn an_issuer_on_an_ip_address_leaves_passkeys_off_unless_an_rp_id_is_set() {
        let off = PasskeySettings::default().relying_party("http://127.0.0.1:8080", &[]);
        assert_eq!(off.unwrap(), None);
        let ip = PasskeySettings {
            rp_id: Some("127.0.0.1".into()),
            ..PasskeySettings::default()
        };
        assert!(ip.relying_party("http://127.0.0.1:8080", &[]).is_err());
    }

    #[test]
    fn an_origin_with_a_path_is_refused() {
        let s = PasskeySettings {
            origins: Some(vec!["https://auth.example.com/app".into()]),
            ..PasskeySettings::default()
        };
        assert!(s.relying_party("https://auth.example.com", &[]).is_err());
    }
}
