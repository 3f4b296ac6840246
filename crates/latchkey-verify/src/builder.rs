//! [`VerifierBuilder`]: the verifier's settings, and `build`, which discovers the
//! issuer's metadata, fetches the keys and the feed, and starts following them.

use std::sync::Arc;
use std::time::Duration;

use crate::verifier::Inner;
use crate::{feed, jwks, FeedMode, Verifier};

/// Why [`VerifierBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("discovery failed: {0}")]
    Discovery(String),
    #[error("fetching the keys failed: {0}")]
    Jwks(String),
    #[error("fetching the revocation feed failed: {0}")]
    Feed(String),
}

/// What to do once the revocation feed is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStale {
    /// Refuse every token (`VerifyError::FeedStale`) until the feed is heard from.
    Refuse,
    /// Go on verifying without learning of new revocations.
    Accept,
}

pub struct VerifierBuilder {
    issuer: String,
    audiences: Vec<String>,
    leeway: Duration,
    credentials: Option<(String, String)>,
    feed: FeedMode,
    max_staleness: Duration,
    on_stale: OnStale,
    min_refetch_interval: Duration,
    http: Option<reqwest::Client>,
    metadata_url: Option<String>,
}

impl VerifierBuilder {
    /// The defaults (`Verifier::builder`).
    pub(crate) fn new(issuer: String) -> Self {
        Self {
            issuer,
            audiences: Vec::new(),
            leeway: Duration::from_secs(30),
            credentials: None,
            feed: FeedMode::Stream,
            max_staleness: Duration::from_secs(60),
            on_stale: OnStale::Refuse,
            min_refetch_interval: Duration::from_secs(10),
            http: None,
            metadata_url: None,
        }
    }

    /// An accepted audience; a token must carry at least one of them. At least one is
    /// required.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }

    /// Clock-skew allowance on `exp`, `nbf` and `iat` (default 30 s). Keep it at or
    /// below latchkey's `access_token.leeway`: the feed keeps an entry for the longest
    /// token lifetime plus that leeway.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The resource server's id and secret (latchkey's `resource_servers`), for the
    /// revocation feed. Without them the feed is off.
    pub fn resource_server(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials = Some((id.into(), secret.into()));
        self
    }

    /// How to follow the revocation feed (default: the stream).
    pub fn feed(mut self, mode: FeedMode) -> Self {
        self.feed = mode;
        self
    }

    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max;
        self
    }

    pub fn on_stale(mut self, on_stale: OnStale) -> Self {
        self.on_stale = on_stale;
        self
    }

    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// The HTTP client to use (e.g. with your TLS roots).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Where to read the metadata when it is not at the issuer (RFC 8414 §3:
    /// `{issuer}/.well-known/oauth-authorization-server`), e.g. inside a cluster. The
    /// metadata's `issuer` must still equal the configured one.
    pub fn metadata_url(mut self, url: impl Into<String>) -> Self {
        self.metadata_url = Some(url.into());
        self
    }

    /// Discovers the metadata, fetches the keys and the feed, and starts following
    /// them. Needs a Tokio runtime.
    pub async fn build(self) -> Result<Verifier, BuildError> {
        if self.audiences.is_empty() {
            return Err(BuildError::Config(
                "at least one audience is required".into(),
            ));
        }
        let http = match self.http {
            Some(c) => c,
            None => reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| BuildError::Config(e.to_string()))?,
        };
        let meta_url = self.metadata_url.unwrap_or_else(|| {
            format!(
                "{}/.well-known/oauth-authorization-server",
                self.issuer.trim_end_matches('/')
            )
        });
        let meta: serde_json::Value = http
            .get(&meta_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| BuildError::Discovery(e.to_string()))?
            .json()
            .await
            .map_err(|e| BuildError::Discovery(e.to_string()))?;
        // RFC 8414 §3.3: the metadata's issuer is the configured one, exactly.
        if meta["issuer"].as_str() != Some(self.issuer.as_str()) {
            return Err(BuildError::Discovery(format!(
                "the metadata's issuer {} is not {:?}",
                meta["issuer"], self.issuer
            )));
        }
        let jwks_uri = meta["jwks_uri"]
            .as_str()
            .ok_or_else(|| BuildError::Discovery("no jwks_uri".into()))?
            .to_owned();
        let keys = jwks::KeyCache::fetch(http.clone(), jwks_uri, self.min_refetch_interval)
            .await
            .map_err(BuildError::Jwks)?;
        let keys = Arc::new(keys);
        jwks::spawn_refresher(keys.clone());

        let revoked = Arc::new(feed::Revoked::new(self.leeway));
        match (&self.credentials, self.feed) {
            (Some(creds), mode) if mode != FeedMode::Off => {
                let endpoint = meta["latchkey_revocations_endpoint"]
                    .as_str()
                    .ok_or_else(|| {
                        BuildError::Discovery("no latchkey_revocations_endpoint".into())
                    })?
                    .to_owned();
                let follower = feed::Follower {
                    http: http.clone(),
                    endpoint,
                    credentials: creds.clone(),
                    revoked: revoked.clone(),
                };
                follower.poll_once().await.map_err(BuildError::Feed)?;
                follower.spawn(mode);
            }
            _ => revoked.never_stale(),
        }
        Ok(Verifier::new(Inner {
            issuer: self.issuer,
            audiences: self.audiences,
            leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(30),
            keys,
            revoked,
            max_staleness: self.max_staleness,
            on_stale: self.on_stale,
        }))
    }
}
