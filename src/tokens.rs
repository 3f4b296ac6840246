//! Access tokens: RFC 9068 JWTs signed with the active key, and the one strict verifier
//! every Bearer-protected route uses (RFC 8725 §3).

use std::collections::HashSet;
use std::sync::Arc;

use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::keys::Keys;

/// Tokens longer than this are refused before any parsing (RFC 8725 §3.x hygiene).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// RFC 9068 §2.2 claims plus `sid`, `scope` and `roles` (docs/contract.md "Access token").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sid: String,
    pub scope: String,
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

pub struct Minted {
    pub jwt: String,
    pub expires_in: u64,
    pub claims: AccessClaims,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token is too large")]
    TooLarge,
    #[error("the access token has the wrong type")]
    WrongType,
    #[error("the access token's signing key is unknown")]
    UnknownKey,
    #[error("the access token's header is not allowed")]
    ForbiddenHeader,
    #[error("the access token is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not yet valid")]
    NotYetValid,
}

pub struct TokenService {
    issuer: String,
    audiences: HashSet<String>,
    leeway_secs: i64,
    keys: Arc<Keys>,
    clock: SharedClock,
    rng: SystemRandom,
}

pub struct MintRequest<'a> {
    pub user_id: &'a str,
    pub audience: &'a str,
    pub client_id: &'a str,
    pub session_id: &'a str,
    pub scope: String,
    pub roles: Vec<String>,
    pub ttl_secs: u64,
}

impl TokenService {
    pub fn new(
        issuer: String,
        audiences: HashSet<String>,
        leeway_secs: i64,
        keys: Arc<Keys>,
        clock: SharedClock,
    ) -> Self {
        Self {
            issuer,
            audiences,
            leeway_secs,
            keys,
            clock,
            rng: SystemRandom::new(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn mint(&self, req: MintRequest<'_>) -> anyhow::Result<Minted> {
        let now = self.clock.now_millis() / 1000;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: req.user_id.to_owned(),
            aud: req.audience.to_owned(),
            client_id: req.client_id.to_owned(),
            iat: now,
            exp: now + i64::try_from(req.ttl_secs)?,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: req.session_id.to_owned(),
            scope: req.scope,
            roles: req.roles,
            nbf: None,
        };
        let key = self.keys.current(self.clock.now_millis()).signing.clone();
        let jwt = key.sign_jwt(&claims, &self.rng)?;
        Ok(Minted {
            jwt,
            expires_in: req.ttl_secs,
            claims,
        })
    }

    /// Verifies like a careful resource server: size cap, `typ`, a known `kid` whose key
    /// fixes the algorithm (the header's `alg` must match it, RFC 8725 §3.1), signature,
    /// exact `iss` and `aud`, and `exp`/`nbf`/`iat` against our clock with leeway.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        // RFC 9068 §4: typ must be at+jwt (media types compare case-insensitively).
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::WrongType);
        }
        // RFC 8725 §3.10: never fetch or trust keys named by the token itself.
        if header.jwk.is_some()
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(VerifyError::ForbiddenHeader);
        }
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        let set = self.keys.current(self.clock.now_millis());
        // A hostile kid only ever reaches this in-memory map lookup.
        let key = set.verifying_key(kid).ok_or(VerifyError::UnknownKey)?;
        let alg = match key.alg {
            crate::domain::Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            crate::domain::Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            crate::domain::Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        };
        if header.alg != alg {
            return Err(VerifyError::Invalid);
        }
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences.iter().collect::<Vec<_>>());
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time checks use our (injectable) clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map_err(|_| VerifyError::Invalid)?;
        let claims = data.claims;
        let now = self.clock.now_millis() / 1000;
        if claims.exp + self.leeway_secs <= now {
            return Err(VerifyError::Expired);
        }
        if claims.iat - self.leeway_secs > now
            || claims.nbf.is_some_and(|n| n - self.leeway_secs > now)
        {
            return Err(VerifyError::NotYetValid);
        }
        if claims.iss != self.issuer || !self.audiences.contains(&claims.aud) {
            return Err(VerifyError::Invalid);
        }
        Ok(claims)
    }
}
