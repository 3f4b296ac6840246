//! The authorization code flow with PKCE for native apps (RFC 6749 §4.1, RFC 7636 S256
//! only, RFC 8252, OAuth 2.1; docs/identity-providers-guide.md "Native apps"): `check`
//! vets an authorization request, `grant` turns a session signed in on latchkey's page
//! into a code at the redirect URI, `exchange` turns the code into tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SecureRandom;

use super::issue::{Issued, Issuing};
use super::refresh::{self, RefreshInput};
use super::Error;
use crate::clock::Millis;
use crate::config::{ClientSettings, Settings};
use crate::domain::authorization_codes::{self, Presented, Redeemed};
use crate::domain::model::{AuthorizationCode, ClientContext, PendingAuthorization};
use crate::domain::{Scope, TokenHash};

/// A code lives this long (RFC 6749 §4.1.2 recommends at most 10 minutes; OAuth 2.1
/// and the contract: 60 s).
pub const CODE_TTL_MS: Millis = 60_000;

/// The request's parameters as sent (query or form).
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub idp: Option<String>,
}

impl Request<'_> {
    /// What a sign-in carries until its code is issued.
    pub fn pending(&self) -> PendingAuthorization {
        PendingAuthorization {
            client_id: self.client.id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            code_challenge: self.code_challenge.clone(),
            state: self.state.clone(),
            scope: self.scope.clone(),
        }
    }
}

/// A vetted authorization request.
pub struct Request<'a> {
    pub client: &'a ClientSettings,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub idp: Option<String>,
}

/// Why a request is refused.
#[derive(Debug)]
pub enum Refusal {
    /// The client or redirect URI cannot be trusted: shown to the user, never sent to
    /// the redirect URI (RFC 6749 §4.1.2.1, an open redirector otherwise).
    Show(String),
    /// `redirect_uri?error=…`: the location to send the browser to.
    Redirect(String),
}

/// `redirect_uri` with `pairs` and `iss` (RFC 9207: the app knows which server answers)
/// added to its query.
pub fn redirect_to(settings: &Settings, redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut query: Vec<(&str, &str)> = pairs.to_vec();
    query.push(("iss", settings.issuer.as_str()));
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{encoded}")
}

fn refuse(
    settings: &Settings,
    redirect_uri: &str,
    state: Option<&str>,
    code: &str,
    why: &str,
) -> Refusal {
    Refusal::Redirect(error_location(settings, redirect_uri, state, code, why))
}

fn error_location(
    settings: &Settings,
    redirect_uri: &str,
    state: Option<&str>,
    code: &str,
    why: &str,
) -> String {
    let mut pairs = vec![("error", code), ("error_description", why)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    redirect_to(settings, redirect_uri, &pairs)
}

/// A failure after the request was vetted (at a provider, say), at the app's
/// redirect URI with its state.
pub fn refusal_location(
    settings: &Settings,
    request: &PendingAuthorization,
    code: &str,
    why: &str,
) -> String {
    let state = request.state.as_deref();
    error_location(settings, &request.redirect_uri, state, code, why)
}

/// RFC 7636 §4.2: an S256 challenge is 43 base64url characters (32 bytes).
fn challenge_well_formed(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Vets an authorization request: client and redirect URI first (shown to the user if
/// wrong), then the rest (reported at the redirect URI).
pub fn check<'a>(settings: &'a Settings, p: &AuthorizeParams) -> Result<Request<'a>, Refusal> {
    let client_id = p.client_id.as_deref().filter(|c| !c.is_empty());
    let client = client_id
        .and_then(|id| settings.client(id))
        .ok_or_else(|| Refusal::Show("unknown or missing client_id".into()))?;
    let redirect_uri = p
        .redirect_uri
        .as_deref()
        .filter(|r| client.allows_redirect_uri(r))
        .ok_or_else(|| {
            Refusal::Show("redirect_uri is missing or not registered for this client".into())
        })?;
    let state = p.state.as_deref().filter(|s| !s.is_empty());
    if state.is_some_and(|s| s.len() > 512) {
        return Err(refuse(
            settings,
            redirect_uri,
            None,
            "invalid_request",
            "state is too long",
        ));
    }
    let fail = |code: &str, why: &str| refuse(settings, redirect_uri, state, code, why);
    if p.response_type.as_deref() != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    // RFC 7636 §4.4.1, OAuth 2.1: PKCE is required, and only S256 (never plain).
    let challenge = p.code_challenge.as_deref().ok_or_else(|| {
        fail(
            "invalid_request",
            "code_challenge is required (PKCE, RFC 7636)",
        )
    })?;
    if p.code_challenge_method.as_deref() != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if !challenge_well_formed(challenge) {
        return Err(fail(
            "invalid_request",
            "code_challenge must be 43 base64url characters (S256)",
        ));
    }
    if let Some(scope) = p.scope.as_deref() {
        let parsed = Scope::parse(scope).map_err(|e| fail("invalid_scope", e))?;
        if !parsed.allowed_by(&client.scopes) {
            return Err(fail(
                "invalid_scope",
                "the requested scope is not allowed for this client",
            ));
        }
    }
    if let Some(idp) = p.idp.as_deref() {
        if settings.identity_provider(idp).is_none() {
            return Err(fail("invalid_request", "no such identity provider"));
        }
    }
    Ok(Request {
        client,
        redirect_uri: redirect_uri.to_owned(),
        code_challenge: challenge.to_owned(),
        state: state.map(str::to_owned),
        scope: p.scope.clone(),
        idp: p.idp.clone(),
    })
}

fn code_hash(code: &str) -> TokenHash {
    let d = ring::digest::digest(&ring::digest::SHA256, code.as_bytes());
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// A session signed in for `request` becomes a single-use code (256 random bits, stored
/// as SHA-256) at the redirect URI. The session's refresh token waits in the code's row,
/// sealed, until the exchange rotates it.
#[tracing::instrument(skip_all, fields(client_id = %request.client_id, session_id = %issued.session.id))]
pub async fn grant(
    deps: &Issuing<'_>,
    request: &PendingAuthorization,
    issued: Issued,
) -> Result<String, Error> {
    let mut buf = [0u8; 32];
    deps.rng
        .fill(&mut buf)
        .map_err(|_| Error::internal(anyhow::anyhow!("the system's randomness failed")))?;
    let code = URL_SAFE_NO_PAD.encode(buf);
    let hash = code_hash(&code);
    let refresh = issued
        .body
        .refresh_token
        .as_deref()
        .ok_or_else(|| Error::internal(anyhow::anyhow!("a login without a refresh token")))?;
    let sealed = deps
        .sealer
        .seal(refresh.as_bytes(), &hash)
        .map_err(Error::Internal)?;
    let row = AuthorizationCode {
        code_hash: hash,
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        session_id: issued.session.id.clone(),
        sealed_refresh: Some(sealed),
        used_at: None,
        expires_at: deps.gate.now() + CODE_TTL_MS,
    };
    deps.gate
        .store
        .write(async move |tx| tx.insert_authorization_code(&row).await)
        .await?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = request.state.as_deref() {
        pairs.push(("state", s));
    }
    Ok(redirect_to(deps.settings, &request.redirect_uri, &pairs))
}

/// `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5).
pub struct Exchange<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
    pub client_id: Option<&'a str>,
    pub ctx: ClientContext,
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn verifier_well_formed(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The code, once, for the client, redirect URI and verifier it was issued for → the
/// token response of its session (the sealed refresh token, rotated).
#[tracing::instrument(skip_all)]
pub async fn exchange(deps: &Issuing<'_>, ex: Exchange<'_>) -> Result<Issued, Error> {
    // A public client names itself (RFC 6749 §4.1.3).
    let client_id = ex
        .client_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::InvalidRequest("client_id is required".into()))?;
    deps.settings
        .client(client_id)
        .ok_or(Error::UnknownClient)?;
    if !verifier_well_formed(ex.code_verifier) {
        return Err(Error::InvalidRequest(
            "code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1)".into(),
        ));
    }
    let hash = code_hash(ex.code);
    let presented = Presented {
        client_id: client_id.to_owned(),
        redirect_uri: ex.redirect_uri.to_owned(),
        code_verifier: ex.code_verifier.to_owned(),
    };
    let now = deps.gate.now();
    let ctx = ex.ctx.clone();
    let redeemed = deps
        .gate
        .store
        .write(async move |tx| authorization_codes::redeem(tx, now, &hash, &presented, &ctx).await)
        .await?;
    let sealed = match redeemed {
        Redeemed::Sealed(sealed) => sealed,
        Redeemed::Refused(why) => return Err(Error::InvalidGrant(why.into())),
    };
    let raw = deps
        .sealer
        .open(&sealed, &hash)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Error::internal(anyhow::anyhow!(
                "an authorization code's token does not open"
            ))
        })?;
    let input = RefreshInput {
        raw_token: &raw,
        client_id: Some(client_id),
        scope: None,
        ctx: ex.ctx,
    };
    refresh::refresh_for(deps, input, &[]).await
}
