//! Issuing tokens for a session: the access JWT and the token response
//! (docs/contract.md "Token response"; RFC 6749 §5.1).

use std::sync::Arc;

use ring::rand::SystemRandom;
use serde::Serialize;

use super::password_check::{self, Admitted, Attempt, Gate, Origin, Purpose};

use super::Error;
use crate::clock::Millis;
use crate::config::{ClientSettings, Settings};
use crate::domain::model::{Session, User};
use crate::domain::{RefreshToken, Scope, SessionId};
use crate::keys::{DeviceKey, Sealer};
use crate::state::AppState;
use crate::tokens::{MintRequest, TokenService};

/// What opening a session and issuing its tokens needs (a login, its second step, a
/// refresh), and managing the second factor whose secrets the same sealer protects:
/// the gate for password and code checks, the settings, the verifier that mints, the
/// sealer, device tokens and randomness.
#[derive(Clone, Copy)]
pub struct Issuing<'a> {
    pub gate: Gate<'a>,
    pub settings: &'a Arc<Settings>,
    pub tokens: &'a TokenService,
    pub sealer: &'a Arc<Sealer>,
    pub devices: &'a DeviceKey,
    pub rng: &'a Arc<SystemRandom>,
    /// The WebAuthn relying party; `None` when passkeys are off.
    pub passkeys: Option<&'a webauthn_rs::Webauthn>,
}

impl<'a> Issuing<'a> {
    pub fn of(state: &'a AppState) -> Self {
        Self {
            gate: Gate::of(state),
            settings: &state.settings,
            tokens: &state.tokens,
            sealer: &state.sealer,
            devices: &state.devices,
            rng: &state.rng,
            passkeys: state.passkeys.as_deref(),
        }
    }

    /// Admits one step of a login to the account `account_key` (a password, a second
    /// factor, a passkey) as a password check is admitted (docs/contract.md "Login
    /// throttling"): a throttled account or address gets 429, and a failure counts. A
    /// device token of this account from an earlier successful login makes the client
    /// trusted, so an attack from unknown devices never locks the account's known
    /// devices out (OWASP device cookies).
    pub async fn admit_login_step(
        &self,
        account_key: &str,
        device_token: Option<&str>,
        purpose: Purpose,
        client_id: &str,
        from: &Origin,
    ) -> Result<Admitted<'a>, super::Error> {
        let now = self.gate.now();
        let device = device_token.and_then(|t| self.devices.verify(t, account_key, now));
        password_check::admit(
            self.gate,
            Attempt {
                account_key: account_key.to_owned(),
                ip: from.ip,
                device,
                purpose,
                client_id: client_id.to_owned(),
                session_id: None,
                ctx: from.ctx.clone(),
            },
        )
        .await
    }
}

/// The token response body. `refresh_token` is taken out in browser mode, where the
/// refresh token travels only in the cookie.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub refresh_token_expires_in: u64,
    pub session_id: SessionId,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// Logins only: the device token to send back with the next login to this account
    /// (docs/contract.md "Login throttling"). Browser mode moves it into a cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// What a login or refresh hands out: the response body, the refresh token (for the
/// browser cookie) and the session it belongs to.
pub struct Issued {
    pub body: TokenResponse,
    pub refresh: RefreshToken,
    pub session: Session,
}

impl Issued {
    /// The body without the refresh token (browser mode), and the token for the cookie.
    pub fn for_browser(mut self) -> Self {
        self.body.refresh_token = None;
        self
    }
}

/// Mints an access token for `session` and builds the response around `refresh`. The
/// token's audiences: the client's, or the subset named by `resource` (RFC 8707; see
/// [`audiences_for`]).
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all, fields(user_id = %user.id, session_id = %session.id, client_id = %client.id))]
pub fn issue(
    tokens: &TokenService,
    settings: &Settings,
    client: &ClientSettings,
    session: Session,
    user: &User,
    scope: &Scope,
    audiences: Vec<String>,
    refresh: RefreshToken,
    now: Millis,
) -> Result<Issued, Error> {
    let ttl = settings.access_ttl(client).as_secs();
    // An access token never outlives its session.
    let session_left = u64::try_from((session.ends_at() - now) / 1000).unwrap_or(0);
    let scope = scope.to_claim();
    let minted = tokens
        .mint(MintRequest {
            user_id: user.id.as_str(),
            audiences,
            client_id: &client.id,
            session_id: session.id.as_str(),
            authenticated_at: session.auth_time,
            amr: session.amr.iter().map(|m| m.as_str().to_owned()).collect(),
            scope: scope.clone(),
            roles: user.roles.clone(),
            ttl_secs: ttl.min(session_left.max(1)),
        })
        .map_err(Error::Internal)?;
    let body = TokenResponse {
        access_token: minted.jwt,
        token_type: "Bearer",
        expires_in: minted.expires_in,
        refresh_token: Some(refresh.expose().to_owned()),
        refresh_token_expires_in: session_left,
        session_id: session.id.clone(),
        scope,
        device_token: None,
    };
    Ok(Issued {
        body,
        refresh,
        session,
    })
}

/// The audiences of an access token for `client`: all of its audiences, or, when the
/// request names `resource`s (RFC 8707 §2, repeatable), exactly those, each of which must
/// be one of the client's (docs/contract.md "Audiences"); anything else is 400
/// `invalid_target`. The narrowing applies to the access token of this response only:
/// the session may ask for any subset of the client's audiences at its next refresh.
pub fn audiences_for(
    settings: &Settings,
    client: &ClientSettings,
    resource: &[String],
) -> Result<Vec<String>, Error> {
    let allowed = settings.audiences_of(client);
    if resource.is_empty() {
        return Ok(allowed);
    }
    let mut narrowed: Vec<String> = Vec::with_capacity(resource.len());
    for r in resource {
        if !allowed.contains(r) {
            return Err(Error::InvalidTarget(
                "a requested resource is not an audience of this client".into(),
            ));
        }
        if !narrowed.contains(r) {
            narrowed.push(r.clone());
        }
    }
    Ok(narrowed)
}

/// The configured client a request names, or `default` when it names none.
pub fn resolve_client<'a>(
    settings: &'a Settings,
    client_id: Option<&str>,
) -> Result<&'a ClientSettings, Error> {
    let id = client_id.filter(|c| !c.is_empty()).unwrap_or("default");
    settings.client(id).ok_or(Error::UnknownClient)
}
