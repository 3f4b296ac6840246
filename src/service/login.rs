//! Signing in with a username and password (a first-party endpoint, not the OAuth
//! password grant, which RFC 9700 §2.4 forbids): throttling, the password check, and a
//! new session (refresh-token family).

use std::net::IpAddr;

use super::issue::{issue, resolve_client, Issued};
use crate::clock::Millis;
use crate::domain::model::{ClientContext, NewEvent};
use crate::domain::sessions::{self, LoginOutcome, NewSession};
use crate::domain::throttle::Verdict;
use crate::domain::{EventKind, Password, Scope, Username};
use crate::error::ApiError;
use crate::startup::AppState;

pub struct Credentials {
    pub username: String,
    pub password: String,
    pub client_id: Option<String>,
    pub remember_me: Option<bool>,
    pub scope: Option<String>,
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
    let remember_me = input.remember_me.unwrap_or(true);

    // Throttling is keyed by the name asked for, existing or not, and decided before
    // any lookup or hashing: a throttled attempt looks and takes the same for every name.
    let parsed_name = Username::parse(&input.username).ok();
    let account_key = parsed_name
        .as_ref()
        .map_or_else(|| input.username.to_lowercase(), |n| n.key());
    let now = state.now();
    refuse_if_throttled(state, &account_key, &client.id, &from, now).await?;

    // An unparseable name cannot exist; it still costs one (dummy) hash below.
    let user = match parsed_name {
        Some(name) => {
            let key = name.key();
            state
                .store
                .read(async move |tx| tx.user_by_username_key(&key).await)
                .await?
        }
        None => None,
    };
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let known_user_id = user.as_ref().map(|u| u.id.clone());
    let verified = state
        .hasher
        .verify(password, stored_hash)
        .await
        .map_err(super::accounts::hash_error)?;
    let Some(user) = user.filter(|u| verified && u.is_enabled()) else {
        // One generic failure for unknown user, wrong password and disabled account
        // (OWASP Authentication: no enumeration). The attempted name is not stored.
        state
            .throttle
            .record_failure(&account_key, from.ip, state.now());
        let mut event = NewEvent::new(EventKind::LoginFailed)
            .client(&client.id)
            .from(&from.ctx);
        event.user_id = known_user_id;
        record(state, event).await?;
        state.metrics.login("failure");
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
        checked_hash: Some(user.password_hash.clone()),
    };
    let (rng, keys) = (state.rng.clone(), state.sealer.clone());
    let outcome = state
        .store
        .write(async move |tx| sessions::create_session(tx, now, &rng, keys.as_ref(), &new).await)
        .await?;
    state.metrics.login(match &outcome {
        LoginOutcome::Created(_) => "success",
        LoginOutcome::UserUnavailable => "failure",
        LoginOutcome::LimitReached => "rejected",
    });
    match outcome {
        LoginOutcome::Created(c) => {
            state.throttle.record_success(&account_key, from.ip);
            let scope = c.session.scope.clone();
            issue(state, &client, c.session, &c.user, &scope, c.token, now)
        }
        LoginOutcome::UserUnavailable => Err(ApiError::InvalidCredentials),
        LoginOutcome::LimitReached => Err(ApiError::Conflict(format!(
            "this account already has the maximum of {} active sessions; sign out of one first",
            state.settings.session.max_per_user
        ))),
    }
}

/// 429 while the account or address is over its failure limit. OWASP's answer to
/// lockout as a denial of service: while only the account is over its limit, an address
/// it logged in from successfully in the last 30 days may still try (its own failures
/// are still delayed and counted).
async fn refuse_if_throttled(
    state: &AppState,
    account_key: &str,
    client_id: &str,
    from: &Origin,
    now: Millis,
) -> Result<(), ApiError> {
    let Verdict::Throttled {
        retry_after_secs,
        newly,
        account_only,
    } = state.throttle.check(account_key, from.ip, now)
    else {
        return Ok(());
    };
    let user_id = if account_only || newly {
        let key = account_key.to_owned();
        state
            .store
            .read(async move |tx| Ok(tx.user_by_username_key(&key).await?.map(|u| u.id)))
            .await?
    } else {
        None
    };
    if account_only {
        if let (Some(ip), Some(id)) = (from.ctx.ip.clone(), user_id.clone()) {
            let since = now - 30 * 24 * 3_600_000;
            let known = state
                .store
                .read(async move |tx| tx.logged_in_from(&id, &ip, since).await)
                .await?;
            if known {
                return Ok(());
            }
        }
    }
    if newly {
        // One `login_throttled` event per throttling episode (not per refused attempt,
        // which an attacker could use to flood the events table).
        let mut event = NewEvent::new(EventKind::LoginThrottled)
            .client(client_id)
            .from(&from.ctx);
        event.user_id = user_id;
        record(state, event).await?;
    }
    state.metrics.login("throttled");
    Err(ApiError::TooManyRequests { retry_after_secs })
}

/// Records one security event in its own write.
pub async fn record(state: &AppState, event: NewEvent) -> Result<(), ApiError> {
    let now = state.now();
    state
        .store
        .write(async move |tx| tx.insert_event(now, &event).await)
        .await?;
    Ok(())
}
