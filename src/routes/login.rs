//! `POST /login`: first-party credential login (not the OAuth password grant, which
//! RFC 9700 §2.4 forbids). Starts a new session (refresh-token family).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::accounts::hash_error;
use super::auth::client_context;
use super::responses::{no_store_json, token_response};
use super::RouteTable;
use crate::config::ClientSettings;
use crate::domain::sessions::{self, ClientContext, LoginOutcome, NewSession};
use crate::domain::{Password, PasswordError, Scope, Username};
use crate::error::ApiError;
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
    let ctx = client_context(&req);
    let granted = authenticate_and_start_session(&state, body.into_inner(), ctx).await?;
    Ok(no_store_json(&granted))
}

/// Checks credentials and starts a session; shared by `/login` and `/browser/login`.
pub async fn authenticate_and_start_session(
    state: &web::Data<AppState>,
    body: LoginBody,
    ctx: ClientContext,
) -> Result<super::responses::TokenResponse, ApiError> {
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

    // An unparseable name cannot exist; it still costs one (dummy) hash below.
    let user = match Username::parse(&body.username) {
        Ok(name) => {
            let key = name.key();
            state
                .store
                .read(move |conn| queries::user_by_username_key(conn, &key))
                .await?
        }
        Err(_) => None,
    };
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let known_user_id = user.as_ref().map(|u| u.id.clone());
    let verified = state
        .hasher
        .verify(password, stored_hash)
        .await
        .map_err(hash_error)?;
    let usable = user.filter(|u| verified && u.disabled_at.is_none());
    let now = state.now();

    let Some(user) = usable else {
        // One generic failure for unknown user, wrong password and disabled account
        // (OWASP Authentication: no enumeration). The attempted name is not stored.
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
    state.metrics.login(match &outcome {
        LoginOutcome::Created(_) => "success",
        LoginOutcome::UserUnavailable => "failure",
        LoginOutcome::LimitReached => "rejected",
    });
    match outcome {
        LoginOutcome::Created(c) => token_response(
            state,
            &client,
            &c.session,
            &c.user,
            c.session.scope.clone(),
            Some(&c.token),
            now,
        ),
        LoginOutcome::UserUnavailable => Err(ApiError::InvalidCredentials),
        LoginOutcome::LimitReached => Err(ApiError::Conflict(format!(
            "this account already has the maximum of {} active sessions; sign out of one first",
            state.settings.session.max_per_user
        ))),
    }
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
