//! `POST /login`: first-party credential login (not the OAuth password grant, which
//! RFC 9700 §2.4 forbids). Starts a new session (refresh-token family).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::accounts::hash_error;
use super::auth::{client_context, client_ip, rate_limit};
use super::responses::{no_store_json, token_response};
use super::RouteTable;
use crate::config::ClientSettings;
use crate::domain::sessions::{self, ClientContext, LoginOutcome, NewSession};
use crate::domain::throttle::Verdict;
use crate::domain::{Password, PasswordError, Scope, Username};
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::startup::AppState;
use crate::store::queries::{self, NewEvent};

pub fn configure(t: &mut RouteTable) {
    t.post("/login", login);
}

#[derive(Deserialize)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub remember_me: Option<bool>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// The client a request names, or `default` when it names none.
pub fn resolve_client<'a>(
    state: &'a AppState,
    client_id: Option<&str>,
) -> Result<&'a ClientSettings, ApiError> {
    let id = client_id.filter(|c| !c.is_empty()).unwrap_or("default");
    state
        .settings
        .client(id)
        .ok_or(ApiError::InvalidClient { basic: false })
}

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req, Endpoint::Login)?;
    let ctx = client_context(&req);
    let (granted, _) =
        authenticate_and_start_session(&state, body.into_inner(), ctx, client_ip(&req)).await?;
    Ok(no_store_json(&granted))
}

/// Checks credentials and starts a session; shared by `/login` and `/browser/login`.
pub async fn authenticate_and_start_session(
    state: &web::Data<AppState>,
    body: LoginBody,
    ctx: ClientContext,
    ip: Option<std::net::IpAddr>,
) -> Result<(super::responses::TokenResponse, queries::SessionRow), ApiError> {
    // Cheap checks first: the byte caps come before any hashing (API.md).
    if body.username.len() > crate::domain::username::USERNAME_MAX_BYTES {
        return Err(ApiError::InvalidRequest(
            "username must be at most 256 bytes".into(),
        ));
    }
    let password = Password::parse_for_login(body.password)
        .map_err(|e: PasswordError| ApiError::InvalidRequest(e.to_string()))?;
    let client = resolve_client(state, body.client_id.as_deref())?.clone();
    let scope = Scope::parse(body.scope.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::InvalidScope(e.into()))?;
    if !scope.allowed_by(&client.scopes) {
        return Err(ApiError::InvalidScope(
            "the requested scope is not allowed for this client".into(),
        ));
    }
    let remember_me = body.remember_me.unwrap_or(true);

    // Throttling is keyed by the name asked for, existing or not, and decided before
    // any lookup or hashing: a throttled attempt looks and takes the same for every name.
    let parsed_name = Username::parse(&body.username).ok();
    let account_key = parsed_name
        .as_ref()
        .map_or_else(|| body.username.to_lowercase(), |n| n.key());
    let now = state.now();
    if let Verdict::Throttled {
        retry_after_secs,
        newly,
        account_only,
    } = state.throttle.check(&account_key, ip, now)
    {
        let known_address = account_only
            && ip.is_some()
            && logged_in_from_before(state, &account_key, ctx.ip.clone(), now).await?;
        if !known_address {
            if newly {
                record_throttled(state, &account_key, &client.id, &ctx).await?;
            }
            state.metrics.login("throttled");
            return Err(ApiError::TooManyRequests { retry_after_secs });
        }
    }

    // An unparseable name cannot exist; it still costs one (dummy) hash below.
    let user = match parsed_name {
        Some(name) => {
            let key = name.key();
            state
                .store
                .read(move |conn| queries::user_by_username_key(conn, &key))
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
        .map_err(hash_error)?;
    let usable = user.filter(|u| verified && u.disabled_at.is_none());

    let Some(user) = usable else {
        // One generic failure for unknown user, wrong password and disabled account
        // (OWASP Authentication: no enumeration). The attempted name is not stored.
        state.throttle.record_failure(&account_key, ip, state.now());
        record_login_failure(state, known_user_id, &client.id, &ctx).await?;
        state.metrics.login("failure");
        return Err(ApiError::InvalidCredentials);
    };

    let new = NewSession {
        user_id: user.id.clone(),
        client_id: client.id.clone(),
        scope: scope.to_claim(),
        remember_me,
        lifetimes: state.settings.lifetimes(Some(&client), remember_me),
        max_per_user: state.settings.session.max_per_user,
        limit_policy: state.settings.session.limit_policy,
        ctx,
    };
    let rng = state.rng.clone();
    let outcome = state
        .store
        .write(move |conn| sessions::create_session(conn, now, &rng, &new))
        .await?;
    if matches!(outcome, LoginOutcome::Created(_)) {
        state.throttle.record_success(&account_key, ip);
    }
    state.metrics.login(match &outcome {
        LoginOutcome::Created(_) => "success",
        LoginOutcome::UserUnavailable => "failure",
        LoginOutcome::LimitReached => "rejected",
    });
    match outcome {
        LoginOutcome::Created(c) => Ok((
            token_response(
                state,
                &client,
                &c.session,
                &c.user,
                c.session.scope.clone(),
                Some(&c.token),
                now,
            )?,
            c.session,
        )),
        LoginOutcome::UserUnavailable => Err(ApiError::InvalidCredentials),
        LoginOutcome::LimitReached => Err(ApiError::Conflict(format!(
            "this account already has the maximum of {} active sessions; sign out of one first",
            state.settings.session.max_per_user
        ))),
    }
}

/// OWASP's answer to lockout as a denial of service: while an account is over its
/// failure limit, an address the account logged in from successfully in the last 30
/// days may still try (its own failures are still delayed and counted).
async fn logged_in_from_before(
    state: &AppState,
    account_key: &str,
    ip: Option<String>,
    now: crate::clock::Millis,
) -> Result<bool, ApiError> {
    let Some(ip) = ip else { return Ok(false) };
    let key = account_key.to_owned();
    let since = now - 30 * 24 * 3_600_000;
    Ok(state
        .store
        .read(move |conn| {
            let Some(user) = queries::user_by_username_key(conn, &key)? else {
                return Ok(false);
            };
            queries::logged_in_from(conn, &user.id, &ip, since)
        })
        .await?)
}

/// One `login_throttled` event per throttling episode (not per refused attempt, which
/// an attacker could use to flood the events table).
async fn record_throttled(
    state: &AppState,
    account_key: &str,
    client_id: &str,
    ctx: &ClientContext,
) -> Result<(), ApiError> {
    let now = state.now();
    let (key, client_id, ctx) = (account_key.to_owned(), client_id.to_owned(), ctx.clone());
    state
        .store
        .write(move |conn| {
            let user_id = queries::user_by_username_key(conn, &key)?.map(|u| u.id);
            queries::insert_event(
                conn,
                now,
                &queries::NewEvent {
                    kind: "login_throttled",
                    user_id: user_id.as_deref(),
                    session_id: None,
                    client_id: Some(&client_id),
                    ip: ctx.ip.as_deref(),
                    user_agent: ctx.user_agent.as_deref(),
                    detail: None,
                },
            )
        })
        .await?;
    Ok(())
}

async fn record_login_failure(
    state: &AppState,
    user_id: Option<String>,
    client_id: &str,
    ctx: &ClientContext,
) -> Result<(), ApiError> {
    let now = state.now();
    let (client_id, ctx) = (client_id.to_owned(), ctx.clone());
    state
        .store
        .write(move |conn| {
            queries::insert_event(
                conn,
                now,
                &NewEvent {
                    kind: "login_failed",
                    user_id: user_id.as_deref(),
                    client_id: Some(&client_id),
                    ip: ctx.ip.as_deref(),
                    user_agent: ctx.user_agent.as_deref(),
                    ..Default::default()
                },
            )
        })
        .await?;
    Ok(())
}
