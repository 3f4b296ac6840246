//! [`Verifier`]: checks a token as latchkey itself does (RFC 9068, RFC 8725), then its
//! session against the revocation feed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::{feed, jwks, unix_now, Claims, OnStale, VerifierBuilder};

/// Tokens longer than this are refused before any parsing (as latchkey does).
pub const MAX_TOKEN_BYTES: usize = 4096;

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

/// Verifies access tokens; cheap to clone (one shared state).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

/// What [`VerifierBuilder::build`] settles on.
pub(crate) struct Inner {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: i64,
    pub(crate) keys: Arc<jwks::KeyCache>,
    pub(crate) revoked: Arc<feed::Revoked>,
    pub(crate) max_staleness: Duration,
    pub(crate) on_stale: OnStale,
}

impl Verifier {
    pub fn builder(issuer: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder::new(issuer.into())
    }

    pub(crate) fn new(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
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
