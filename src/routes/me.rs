//! The signed-in user's own account: profile, sessions (devices), security events,
//! password change and erasure.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{client_context, origin, Authenticated};
use super::extract::JsonBody;
use super::responses::no_store_json;
use super::RouteTable;
use crate::clock::{rfc3339, Millis};
use crate::domain::model::{Event, EventQuery, Session};
use crate::domain::SessionId;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::events::{page_before, page_limit};
use crate::service::password_check::Gate;
use crate::service::{accounts, events, revoke, sessions};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/me", me);
    // Both check a password: they draw from the login bucket (docs/contract.md
    // "Login throttling").
    t.delete("/me", delete_me).rate_limited(Endpoint::Login);
    t.post("/me/password", change_password)
        .rate_limited(Endpoint::Login);
    t.get("/me/sessions", list_sessions);
    t.delete("/me/sessions/{id}", delete_session);
    t.get("/me/events", my_events);
}

async fn me(state: web::Data<AppState>, auth: Authenticated) -> Result<HttpResponse, ApiError> {
    // docs/contract.md "Email and account recovery": the address and whether it is verified.
    let email = crate::service::recovery::email_of(&state.store, &auth.user.id).await?;
    Ok(no_store_json(&json!({
        "id": auth.user.id,
        "username": auth.user.username,
        "roles": auth.user.roles,
        "created_at": rfc3339(auth.user.created_at),
        "email": email.as_ref().map(|e| e.email.as_str()),
        "email_verified": email.is_some_and(|e| e.verified_at.is_some()),
    })))
}

/// A session as users and admins see it. `current` only for the caller's own list.
pub fn session_json(s: &Session, current: Option<&SessionId>) -> Value {
    let mut v = json!({
        "id": s.id,
        "client_id": s.client_id,
        "created_at": rfc3339(s.created_at),
        "last_active_at": rfc3339(s.last_active_at),
        "idle_expires_at": rfc3339(s.idle_expires_at),
        "expires_at": rfc3339(s.expires_at),
        "ip": s.ip,
        "user_agent": s.user_agent,
        "remember_me": s.remember_me,
    });
    if let Some(c) = current {
        v["current"] = json!(&s.id == c);
    }
    v
}

/// Events as their user sees them: never who the administrator was, if one acted
/// (only `"by": "administrator"` in the detail).
pub fn events_json(events: &[Event]) -> Value {
    Value::Array(events.iter().map(event_json).collect())
}

/// Events as an admin sees them: with `actor` (`user_id`, `ip`, `user_agent`) where an
/// administrator or the operator's CLI acted on the user's account.
pub fn admin_events_json(events: &[Event]) -> Value {
    let list = events
        .iter()
        .map(|e| {
            let mut v = event_json(e);
            if let Some(a) = &e.actor {
                v["actor"] = json!({
                    "user_id": a.user_id,
                    "ip": a.ip,
                    "user_agent": a.user_agent,
                });
            }
            v
        })
        .collect();
    Value::Array(list)
}

fn event_json(e: &Event) -> Value {
    json!({
        "id": e.id,
        "type": e.kind,
        "at": rfc3339(e.at),
        "user_id": e.user_id,
        "session_id": e.session_id,
        "client_id": e.client_id,
        "ip": e.ip,
        "user_agent": e.user_agent,
        "detail": e.detail,
    })
}

async fn list_sessions(
    state: web::Data<AppState>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let list = sessions::active_sessions(&state.store, state.now(), &auth.user.id).await?;
    let body: Vec<Value> = list
        .iter()
        .map(|s| session_json(s, Some(&auth.session.id)))
        .collect();
    Ok(no_store_json(&body))
}

async fn delete_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    // An id in a form we never issue names no session.
    let session_id = SessionId::parse(&path).ok_or_else(revoke::no_such_session)?;
    revoke::end_own_session(
        &state.store,
        state.now(),
        &auth,
        session_id,
        client_context(&req),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
pub struct EventsParams {
    limit: Option<u32>,
    before: Option<i64>,
}

/// The caller's own events, newest first; page with `before=<id of the last one seen>`.
async fn my_events(
    state: web::Data<AppState>,
    params: web::Query<EventsParams>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let query = EventQuery {
        user_id: Some(auth.user.id.clone()),
        before: page_before(params.before)?,
        limit: page_limit(params.limit)?,
        ..Default::default()
    };
    Ok(no_store_json(&events_json(
        &events::list(&state.store, query).await?,
    )))
}

#[derive(Deserialize)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Needs the current password (ASVS v5 6.2.3); ends every other session.
async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<PasswordChange>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let from = origin(&req);
    accounts::change_password(
        Gate::of(&state),
        &state.settings.mfa,
        &auth,
        body.current_password,
        body.new_password,
        from,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct DeleteMe {
    password: String,
}

/// GDPR erasure: needs the password; removes the user, sessions, tokens and events.
async fn delete_me(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<DeleteMe>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    accounts::delete_account(
        Gate::of(&state),
        &state.settings.mfa,
        &auth,
        body.into_inner().password,
        origin(&req),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// RFC 3339 text to milliseconds, for query parameters.
pub fn parse_time(name: &str, s: &str) -> Result<Millis, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ApiError::InvalidRequest(format!("{name} must be an RFC 3339 time")))
}
