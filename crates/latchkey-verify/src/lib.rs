//! Offline verification of latchkey access tokens for resource servers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), latchkey_verify::BuildError> {
//! use latchkey_verify::Verifier;
//! let verifier = Verifier::builder("https://auth.example.com")
//!     .audience("https://api.example.com")
//!     .resource_server("orders-api", "its secret")
//!     .build()
//!     .await?;
//! # let token = "";
//! match verifier.verify(token).await {
//!     Ok(claims) => println!("{} in session {}", claims.sub, claims.sid),
//!     Err(e) => println!("refused: {e}"),
//! }
//! # Ok(()) }
//! ```
//!
//! `build` discovers the issuer's RFC 8414 metadata, fetches its JWKS and the revocation
//! feed, then follows both in the background. `verify` never makes a request on the
//! happy path: it checks the token as latchkey itself does (RFC 9068, RFC 8725) and
//! refuses tokens whose session (`sid`) is in the feed.
//!
//! Fail-safe choices:
//! - latchkey unreachable: verification goes on with the cached keys (they are not
//!   dropped when a refetch fails), and the revocation set keeps what it knows.
//! - The feed is *stale* once nothing has been heard from it (no event, heartbeat, or
//!   successful poll) for [`VerifierBuilder::max_staleness`] (default 60 s); then
//!   [`OnStale::Refuse`] (the default) refuses every token with
//!   [`VerifyError::FeedStale`] and [`OnStale::Accept`] goes on without revocations.
//! - An unknown `kid` refetches the JWKS at most once per
//!   [`VerifierBuilder::min_refetch_interval`] (default 10 s), one fetch at a time, so a
//!   flood of made-up `kid`s costs latchkey one request per interval.

mod feed;
mod jwks;

#[cfg(feature = "actix")]
pub mod actix;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub use feed::FeedMode;

/// Tokens longer than this are refused before any parsing (as latchkey does).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The claims of a latchkey access token (RFC 9068 §2.2, plus `sid`, `scope`, `roles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub client_id: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// The session: what the revocation feed lists.
    pub sid: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
}

impl Claims {
    /// The space-separated `scope` claim, as a list.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

/// A route that needs step-up (docs/contract.md "Second factor and step-up") was called
/// with a token whose authentication is not recent or strong enough: answer 401 with
/// [`StepUpRequired::www_authenticate`] (RFC 9470 §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the access token's authentication is insufficient (a second factor within {max_age}s is required)")]
pub struct StepUpRequired {
    /// The largest `auth_time` age accepted, in seconds.
    pub max_age: u64,
}

impl StepUpRequired {
    /// The `WWW-Authenticate` value of RFC 9470 §3: error
    /// `insufficient_user_authentication` and the `max_age` the client must meet.
    pub fn www_authenticate(&self) -> String {
        format!(
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A second factor is required\", max_age=\"{}\"",
            self.max_age
        )
    }
}

impl Claims {
    /// RFC 9470 step-up, as latchkey's own step-up routes check it: `otp` in `amr`
    /// (RFC 8176) and `auth_time` no older than `max_age` (with no leeway).
    pub fn require_step_up(&self, max_age: Duration) -> Result<(), StepUpRequired> {
        let otp = self
            .amr
            .as_ref()
            .is_some_and(|amr| amr.iter().any(|m| m == "otp"));
        let max = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let recent = self
            .auth_time
            .is_some_and(|t| unix_now().saturating_sub(t) <= max);
        if otp && recent {
            Ok(())
        } else {
            Err(StepUpRequired {
                max_age: max_age.as_secs(),
            })
        }
    }
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(v) => v.iter().any(|a| a == aud),
        }
    }
}

/// Why a token was refused. Every variant but [`VerifyError::FeedStale`] is the
/// token's fault (401 `invalid_token`, RFC 6750 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the access token is too large")]
    TooLarge,
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token has the wrong type")]
    WrongType,
    #[error("the access token's header is not allowed")]
    ForbiddenHeader,
    #[error("the access token's signing key is unknown")]
    UnknownKey,
    #[error("the access token is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not yet valid")]
    NotYetValid,
    #[error("the access token's session has been revoked")]
    Revoked,
    /// The revocation feed has not been heard from for longer than allowed, and the
    /// verifier is configured to refuse then. Not the token's fault.
    #[error("the revocation feed is stale")]
    FeedStale,
}

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
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audiences: self.audiences,
                leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(30),
                keys,
                revoked,
                max_staleness: self.max_staleness,
                on_stale: self.on_stale,
            }),
        })
    }
}

/// Verifies access tokens; cheap to clone (one shared state).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audiences: Vec<String>,
    leeway: i64,
    keys: Arc<jwks::KeyCache>,
    revoked: Arc<feed::Revoked>,
    max_staleness: Duration,
    on_stale: OnStale,
}

impl Verifier {
    pub fn builder(issuer: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
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

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Verifies `token` (the Bearer value): size cap, `typ` at+jwt, no `jwk`/`jku`/
    /// `x5u`/`x5c`/`crit`, a known `kid` whose key fixes the algorithm, the signature,
    /// exact `iss`, an accepted `aud`, `exp`/`nbf`/`iat` with leeway, then the session
    /// against the revocation feed. May refetch the JWKS once for an unknown `kid`.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let i = &self.inner;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::TooLarge);
        }
        let (alg, kid) = check_header(token)?;
        let key = i.keys.key(&kid).await.ok_or(VerifyError::UnknownKey)?;
        // RFC 8725 §3.1: the key fixes the algorithm; the header must name the same.
        if alg != key.alg {
            return Err(VerifyError::Invalid);
        }
        let mut validation = jsonwebtoken::Validation::new(key.alg);
        validation.set_issuer(&[&i.issuer]);
        validation.set_audience(&i.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|_| VerifyError::Invalid)?
            .claims;
        let now = unix_now();
        if claims.exp + i.leeway <= now {
            return Err(VerifyError::Expired);
        }
        if claims.iat - i.leeway > now || claims.nbf.is_some_and(|n| n - i.leeway > now) {
            return Err(VerifyError::NotYetValid);
        }
        if claims.iss != i.issuer || !i.audiences.iter().any(|a| claims.aud.contains(a)) {
            return Err(VerifyError::Invalid);
        }
        if i.revoked.staleness() > i.max_staleness && i.on_stale == OnStale::Refuse {
            return Err(VerifyError::FeedStale);
        }
        if i.revoked.contains(&claims.sid) {
            return Err(VerifyError::Revoked);
        }
        Ok(claims)
    }

    /// How many revoked sessions the verifier holds.
    pub fn revoked_sessions(&self) -> usize {
        self.inner.revoked.len()
    }

    /// Whether `sid` is known to be revoked (the feed lookup `verify` does).
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.inner.revoked.contains(sid)
    }

    /// Time since the feed was last heard from.
    pub fn feed_staleness(&self) -> Duration {
        self.inner.revoked.staleness()
    }
}

/// The header checks that need no key: returns the header's `alg` and `kid`.
fn check_header(token: &str) -> Result<(jsonwebtoken::Algorithm, String), VerifyError> {
    let encoded = token.split('.').next().ok_or(VerifyError::Malformed)?;
    if token.split('.').count() != 3 {
        return Err(VerifyError::Malformed);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| VerifyError::Malformed)?;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&raw).map_err(|_| VerifyError::Malformed)?;
    // RFC 9068 §4: typ at+jwt (media types compare case-insensitively).
    let typ_ok = header.get("typ").and_then(|t| t.as_str()).is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(VerifyError::WrongType);
    }
    // RFC 8725 §3.10: never trust keys named by the token; RFC 7515 §4.1.11: latchkey
    // uses no critical extensions, so any `crit` is one we do not understand.
    if ["jwk", "jku", "x5u", "x5c", "crit"]
        .iter()
        .any(|k| header.contains_key(*k))
    {
        return Err(VerifyError::ForbiddenHeader);
    }
    let alg = match header.get("alg").and_then(|a| a.as_str()) {
        Some("ES256") => jsonwebtoken::Algorithm::ES256,
        Some("EdDSA") => jsonwebtoken::Algorithm::EdDSA,
        Some("RS256") => jsonwebtoken::Algorithm::RS256,
        _ => return Err(VerifyError::Invalid),
    };
    let kid = header
        .get("kid")
        .and_then(|k| k.as_str())
        .ok_or(VerifyError::UnknownKey)?;
    Ok((alg, kid.to_owned()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A `Mutex` that shrugs off poisoning (nothing here leaves state half-updated).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Instant` of "long ago", for staleness before anything was heard.
fn long_ago() -> Instant {
    Instant::now()
        .checked_sub(Duration::from_secs(86_400 * 365))
        .unwrap_or_else(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn step_up_needs_otp_within_max_age() {
        let claims = |amr: &[&str], auth_time: i64| Claims {
            iss: "i".into(),
            sub: "s".into(),
            aud: Audience::One("a".into()),
            client_id: "c".into(),
            iat: unix_now(),
            exp: unix_now() + 900,
            nbf: None,
            jti: "j".into(),
            sid: "sid".into(),
            scope: String::new(),
            roles: Vec::new(),
            auth_time: Some(auth_time),
            amr: Some(amr.iter().map(|m| (*m).to_owned()).collect()),
        };
        let max = Duration::from_secs(900);
        assert!(claims(&["pwd", "otp"], unix_now())
            .require_step_up(max)
            .is_ok());
        let err = claims(&["pwd"], unix_now())
            .require_step_up(max)
            .unwrap_err();
        assert_eq!(
            err.www_authenticate(),
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A second factor is required\", max_age=\"900\""
        );
        assert!(claims(&["pwd", "otp"], unix_now() - 901)
            .require_step_up(max)
            .is_err());
    }

    #[test]
    fn header_checks_refuse_what_latchkey_refuses_and_never_panic() {
        let ok = serde_json::json!({"typ": "at+jwt", "alg": "ES256", "kid": "k"});
        assert!(check_header(&format!("{}.e30.sig", b64(&ok))).is_ok());
        let cases = [
            (
                serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": "k"}),
                VerifyError::WrongType,
            ),
            (
                serde_json::json!({"typ": "at+jwt", "alg": "none", "kid": "k"}),
                VerifyError::Invalid,
            ),
            (
                serde_json::json!({"typ": "at+jwt", "alg": "HS256", "kid": "k"}),
                VerifyError::Invalid,
            ),
            (
                serde_json::json!({"typ": "at+jwt", "alg": "ES256", "kid": "k", "crit": ["x"]}),
                VerifyError::ForbiddenHeader,
            ),
            (
                serde_json::json!({"typ": "at+jwt", "alg": "ES256", "kid": "k", "jku": "https://x"}),
                VerifyError::ForbiddenHeader,
            ),
            (
                serde_json::json!({"typ": "at+jwt", "alg": "ES256"}),
                VerifyError::UnknownKey,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(
                check_header(&format!("{}.e30.sig", b64(&h))),
                Err(want),
                "{h}"
            );
        }
        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            "€.€.€",
            "e30",
            "e30.e30",
            "W10.e30.x",
        ] {
            assert!(check_header(junk).is_err(), "{junk}");
        }
    }
}
