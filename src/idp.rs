//! The OpenID Connect side of identity providers (docs/identity-providers-guide.md):
//! discovery (cached, retried), the authorization request with state, nonce and PKCE
//! S256, and the code exchange with ID-token validation. All of it through the
//! `openidconnect` crate: the signature, `iss`, `aud`, `azp`, `exp` and `nonce` checks
//! are its (OIDC Core §3.1.3.7), not latchkey's.

use std::collections::HashMap;
use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use tokio::sync::Mutex;

use crate::clock::{to_datetime, SharedClock};
use crate::config::{IdentityProviderSettings, Settings};

/// How long a discovery document (and the JWKS read with it) is used before it is read
/// again: providers rotate their signing keys, announcing new ones ahead in the JWKS.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// After a failed discovery, how long before the next request tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Every call to a provider gives up after this.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in through a provider failed. The text is for the log; the browser sees
/// only the code (`#error=`).
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// Discovery or the token endpoint could not be reached or answered badly.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the code, or its ID token did not validate.
    #[error("the identity provider's answer was refused: {0}")]
    Rejected(String),
}

/// What the validated ID token says.
#[derive(Debug, Clone)]
pub struct VerifiedUser {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub preferred_username: Option<String>,
}

/// A prepared authorization request.
pub struct Authorization {
    pub url: String,
}

struct Cached {
    metadata: Option<CoreProviderMetadata>,
    fetched: std::time::Instant,
}

/// The configured providers, their discovery documents read on first use and cached.
/// Nothing is fetched at start, so a provider that is down never stops latchkey.
pub struct Providers {
    http: reqwest::Client,
    clock: SharedClock,
    /// latchkey's public URL, for the callback address.
    issuer: String,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Providers {
    pub fn new(settings: &Settings, clock: SharedClock) -> anyhow::Result<Self> {
        // No redirects: a provider's endpoints answer directly (SSRF guidance of the
        // openidconnect crate; RFC 9700 §4.11).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            clock,
            issuer: settings.issuer.trim_end_matches('/').to_owned(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// `/federate/{id}/callback` on latchkey's public URL: the redirect URI registered
    /// at the provider.
    pub fn callback_url(&self, provider: &IdentityProviderSettings) -> String {
        format!("{}/federate/{}/callback", self.issuer, provider.id)
    }

    async fn metadata(
        &self,
        p: &IdentityProviderSettings,
    ) -> Result<CoreProviderMetadata, IdpError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(&p.id) {
            let fresh = match &c.metadata {
                Some(_) => c.fetched.elapsed() < DISCOVERY_TTL,
                None => c.fetched.elapsed() < RETRY_AFTER_FAILURE,
            };
            if fresh {
                return c
                    .metadata
                    .clone()
                    .ok_or_else(|| IdpError::Unavailable("discovery failed moments ago".into()));
            }
        }
        let issuer =
            IssuerUrl::new(p.issuer.clone()).map_err(|e| IdpError::Unavailable(e.to_string()))?;
        let found = CoreProviderMetadata::discover_async(issuer, &self.http).await;
        let entry = Cached {
            metadata: found.as_ref().ok().cloned(),
            fetched: std::time::Instant::now(),
        };
        cache.insert(p.id.clone(), entry);
        found.map_err(|e| IdpError::Unavailable(format!("discovery: {e}")))
    }

    async fn client(
        &self,
        p: &IdentityProviderSettings,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        IdpError,
    > {
        let metadata = self.metadata(p).await?;
        let secret = p
            .client_secret()
            .map_err(|e| IdpError::Unavailable(e.to_string()))?
            .map(|s| ClientSecret::new(s.expose().clone()));
        let redirect = RedirectUrl::new(self.callback_url(p))
            .map_err(|e| IdpError::Unavailable(e.to_string()))?;
        Ok(
            CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(p.client_id.clone()),
                secret,
            )
            .set_redirect_uri(redirect),
        )
    }

    /// The provider's authorization URL for this state, nonce and PKCE verifier (S256).
    pub async fn authorization(
        &self,
        p: &IdentityProviderSettings,
        state: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Authorization, IdpError> {
        let client = self.client(p).await?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pkce_verifier.into(),
        ));
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in p.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.url();
        Ok(Authorization {
            url: url.to_string(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and validates the ID token: signature
    /// against the provider's JWKS, `iss`, `aud`, `exp` (by latchkey's clock) and `nonce`.
    pub async fn finish(
        &self,
        p: &IdentityProviderSettings,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedUser, IdpError> {
        let client = self.client(p).await?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| IdpError::Unavailable(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    IdpError::Rejected(format!("token endpoint: {}", r.error()))
                }
                other => IdpError::Unavailable(format!("token endpoint: {other}")),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| IdpError::Rejected("the token response has no ID token".into()))?;
        let clock = self.clock.clone();
        let verifier = client
            .id_token_verifier()
            .set_time_fn(move || to_datetime(clock.now_millis()));
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| IdpError::Rejected(format!("ID token: {e}")))?;
        Ok(VerifiedUser {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified().unwrap_or(false),
            preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
        })
    }
}
