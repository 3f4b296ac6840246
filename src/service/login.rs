//! Signing in with a username and password (a first-party endpoint, not the OAuth
//! password grant, which RFC 9700 §2.4 forbids): throttling, the password check, and a
//! new session (refresh-token family).

use std::net::IpAddr;

use super::issue::{audiences_for, issue, resolve_client, Issued};
use super::password_check::{self, Attempt, Purpose};
use crate::domain::model::ClientContext;
use crate::domain::sessions::{self, LoginOutcome, NewSession};
use crate::domain::{Password, Scope, Username};
use crate::error::ApiError;
use crate::state::AppState;

pub struct Credentials {
    pub username: String,
    pub password: String,
    pub client_id: Option<String>,
    pub remember_me: Option<bool>,
    pub scope: Option<String>,
    /// RFC 8707 resource indicators narrowing the access token's audiences.
    pub resource: Vec<String>,
    /// The device token of an earlier login to this account (OWASP device cookies):
    /// the body's `device_token`, or the browser's device cookie.
    pub device_token: Option<String>,
}

/// Where the attempt came from: for events and sessions (`ctx`) and throttling (`ip`).
pub struct Origin {
    pub ctx: ClientContext,
    pub ip: Option<IpAddr>,
}

/// Checks credentials and starts a session (`/login` and `/browser/login`).
pub async fn login(state: &AppState, input: Credentials, from: Origin) -> Result<Issued, ApiError> {
    // Cheap checks first: the byte caps come before any hashing (docs/contract.md
    // "Conventions").
    if input.username.len() > crate::domain::username::USERNAME_MAX_BYTES {
        return Err(ApiError::InvalidRequest(
            "username must be at most 256 bytes".into(),
        ));
    }
    let password = Password::parse_for_login(input.password)
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let client = resolve_client(state, input.client_id.as_deref())?.clone();
    let scope = Scope::parse(input.scope.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::InvalidScope(e.into()))?;
    if !scope.allowed_by(&client.scopes) {
        return Err(ApiError::InvalidScope(
            "the requested scope is not allowed for this client".into(),
        ));
    }
    let audiences = audiences_for(state, &client, &input.resource)?;
    let remember_me = input.remember_me.unwrap_or(true);

    // Throttling is keyed by the name asked for, existing or not, and decided before
    // any lookup or hashing: a throttled attempt looks and takes the same for every name.
    // A valid device token for this name (from an earlier successful login) makes this
    // a trusted client, exempt from the account-wide lockout (docs/contract.md
    // "Login throttling").
    let account_key = Username::lookup_key(&input.username);
    let now = state.now();
    let device = input
        .device_token
        .as_deref()
        .and_then(|t| state.devices.verify(t, &account_key, now));
    let admitted = password_check::admit(
        state,
        Attempt {
            account_key: account_key.clone(),
            ip: from.ip,
            device,
            purpose: Purpose::Login,
            client_id: client.id.clone(),
            session_id: None,
            ctx: from.ctx.clone(),
        },
    )
    .await?;

    let key = account_key.clone();
    let user = state
        .store
        .read(async move |tx| tx.user_by_username_key(&key).await)
        .await?;
    admitted.check(password, user.as_ref()).await?;
    let Some(user) = user else {
        return Err(ApiError::InvalidCredentials);
    };

    let new = NewSession {
        user_id: user.id.clone(),
        client_id: client.id.clone(),
        scope,
        remember_me,
        lifetimes: state.settings.lifetimes(Some(&client), remember_me),
        max_per_user: state.settings.session.max_per_user,
        limit_policy: state.settings.session.limit_policy,
        ctx: from.ctx,
    };
    let (rng, keys) = (state.rng.clone(), state.sealer.clone());
    // The hash that was verified: the write refuses if a password change replaced it.
    let verified_hash = user.password_hash.clone();
    let outcome = state
        .store
        .write(async move |tx| {
            sessions::create_login_session(tx, now, &rng, keys.as_ref(), &new, &verified_hash).await
        })
        .await?;
    state.metrics.login(match &outcome {
        LoginOutcome::Created(_) => "success",
        LoginOutcome::UserUnavailable => "failure",
        LoginOutcome::LimitReached => "rejected",
    });
    match outcome {
        LoginOutcome::Created(c) => {
            let scope = c.session.scope.clone();
            let mut issued = issue(
                state, &client, c.session, &c.user, &scope, audiences, c.token, now,
            )?;
            // A new device token with every successful login (OWASP device cookies).
            issued.body.device_token = Some(
                state
                    .devices
                    .issue(&account_key, now)
                    .map_err(ApiError::Internal)?,
            );
            Ok(issued)
        }
        LoginOutcome::UserUnavailable => Err(ApiError::InvalidCredentials),
        LoginOutcome::LimitReached => Err(ApiError::Conflict(format!(
            "this account already has the maximum of {} active sessions; sign out of one first",
            state.settings.session.max_per_user
        ))),
    }
}
