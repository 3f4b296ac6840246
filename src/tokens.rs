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

/// RFC 9068 §2.2 claims plus `sid`, `auth_time`, `amr`, `scope` and `roles`
/// (docs/contract.md "Access token"). Empty `scope`, `roles` and `amr` are left out of
/// the token rather than sent as `""` or `[]`, which RFC 9068 validators such as
/// Authlib's refuse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    /// RFC 7519 §4.1.3: one audience is sent as a string, several as an array; both are
    /// read.
    #[serde(with = "one_or_many")]
    pub aud: Vec<String>,
    pub client_id: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sid: String,
    /// When the user authenticated (the login that started the session), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// RFC 8176 authentication methods of that login.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// `aud` as a string when there is one value, an array otherwise (RFC 7519 §4.1.3).
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        match v {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}

/// Whose tokens a verification accepts, by `aud` (docs/contract.md "Audiences").
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// latchkey's self-service routes: the issuer must be among the audiences.
    Issuer,
    /// `/admin/*`: the issuer must be the only audience, so no token a resource server
    /// has seen can act as an admin on latchkey.
    IssuerOnly,
    /// A resource server's introspection: one of its audiences must be present.
    AnyOf(&'a [String]),
    /// Any token latchkey issues (revocation): one of the configured clients' audiences.
    Issued,
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
    #[error("the access token is not meant for this service")]
    WrongAudience,
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
    pub audiences: Vec<String>,
    pub client_id: &'a str,
    pub session_id: &'a str,
    /// When the session's login checked the password (ms): `auth_time`.
    pub authenticated_at: crate::clock::Millis,
    /// RFC 8176 methods of that login: `["pwd"]`, or `["pwd","otp"]` after a second
    /// factor.
    pub amr: Vec<String>,
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
            aud: req.audiences,
            client_id: req.client_id.to_owned(),
            iat: now,
            exp: now + i64::try_from(req.ttl_secs)?,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: req.session_id.to_owned(),
            auth_time: Some(req.authenticated_at / 1000),
            amr: req.amr,
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

    /// Verifies like a careful resource server: size cap, `typ`, no `crit` (RFC 7515
    /// §4.1.11: latchkey understands no extension, so a token that demands one is
    /// refused), a known `kid` whose key fixes the algorithm (the header's `alg` must match
    /// it, RFC 8725 §3.1), signature (ES256: low S only, so one token has one encoding),
    /// exact `iss`, `aud` per `audience`, `exp`/`nbf`/`iat` against our clock with
    /// leeway, and an `iat` no later than the key's retirement.
    pub fn verify(&self, token: &str, audience: Audience<'_>) -> Result<AccessClaims, VerifyError> {
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
        // RFC 7515 §4.1.11: `crit` names extensions the recipient must understand; we
        // understand none (jsonwebtoken's header type drops the member, so look at the
        // JSON itself).
        if raw_header_has(token, "crit") {
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
        // ECDSA signatures are malleable: (r, s) and (r, n − s) both verify. latchkey signs
        // with low S only and refuses the high-S twin, so a token has one valid string.
        if alg == jsonwebtoken::Algorithm::ES256 && !signature_has_low_s(token) {
            return Err(VerifyError::Invalid);
        }
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The audience rule is applied below; time checks use our (injectable) clock.
        validation.validate_aud = false;
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
        // A retired key signed nothing after its retirement; a token claiming otherwise
        // was forged with a key that left service (docs/contract.md "Access token").
        if set
            .retired_at(kid)
            .is_some_and(|r| claims.iat.saturating_mul(1000) > r)
        {
            return Err(VerifyError::Invalid);
        }
        if claims.iss != self.issuer {
            return Err(VerifyError::Invalid);
        }
        let has = |a: &str| claims.aud.iter().any(|x| x == a);
        let audience_ok = match audience {
            Audience::Issuer => has(&self.issuer),
            Audience::IssuerOnly => claims.aud.len() == 1 && has(&self.issuer),
            Audience::AnyOf(wanted) => wanted.iter().any(|a| has(a)),
            Audience::Issued => claims.aud.iter().any(|a| self.audiences.contains(a)),
        };
        if !audience_ok {
            return Err(VerifyError::WrongAudience);
        }
        Ok(claims)
    }
}

/// Whether the JOSE header (the first segment) has member `name`.
fn raw_header_has(token: &str, name: &str) -> bool {
    use base64::Engine;
    let Some(first) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b).ok())
        .is_none_or(|m| m.contains_key(name))
}

/// An ES256 JWS signature (RFC 7518 §3.4: R ‖ S, 32 bytes each) whose S is at most n/2.
fn signature_has_low_s(token: &str) -> bool {
    use base64::Engine;
    let Some(sig) = token.rsplit('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .is_ok_and(|sig| sig.len() == 64 && crate::keys::p256_s_is_low(&sig[32..]))
}
