//! The signed-in user's own account: profile, sessions (devices), security events,
//! password change and erasure.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::accounts::{hash_error, password_error};
use super::auth::{authenticate, client_context};
use super::RouteTable;
use crate::clock::{rfc3339, Millis};
use crate::domain::{accounts, sessions, Password};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::queries::{self, EventQuery, EventRow, SessionRow};

pub fn configure(t: &mut RouteTable) {
    t.get("/me", me);
    t.add(actix_web::http::Method::DELETE, "/me", delete_me);
    t.post("/me/password", change_password);
    t.get("/me/sessions", list_sessions);
    t.add(
        actix_web::http::Method::DELETE,
        "/me/sessions/{id}",
        delete_session,
    );
    t.get("/me/events", my_events);
}

async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let auth = authenticate(&state, &req).await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": auth.user.id,
        "username": auth.user.username,
        "roles": auth.user.roles,
        "created_at": rfc3339(auth.user.created_at),
    })))
}

/// A session as users and admins see it. `current` only for the caller's own list.
pub fn session_json(s: &SessionRow, current: Option<&str>) -> Value {
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
        v["current"] = json!(s.id == c);
    }
    v
}

pub fn event_json(e: &EventRow) -> Value {
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
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let auth = authenticate(&state, &req).await?;
    let now = state.now();
    let user_id = auth.user.id.clone();
    let list = state
        .store
        .read(move |conn| queries::active_sessions_of_user(conn, &user_id, now))
        .await?;
    let body: Vec<Value> = list
        .iter()
        .map(|s| session_json(s, Some(&auth.session.id)))
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

async fn delete_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let auth = authenticate(&state, &req).await?;
    let id = path.into_inner();
    let (now, ctx, user_id) = (state.now(), client_context(&req), auth.user.id.clone());
    let ended = state
        .store
        .write(move |conn| match queries::session_by_id(conn, &id)? {
            // Someone else's session is indistinguishable from no session.
            Some(s) if s.user_id == user_id && s.is_active(now) => {
                sessions::revoke(conn, now, &s, "user_revoked", &ctx)
            }
            _ => Ok(false),
        })
        .await?;
    if ended {
        state.metrics.revoked("user_revoked", 1);
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no such session".into()))
    }
}

#[derive(Debug, Deserialize)]
pub struct EventsParams {
    limit: Option<u32>,
    before: Option<i64>,
}

/// `before` is an event id (ids start at 1).
pub fn page_before(before: Option<i64>) -> Result<Option<i64>, ApiError> {
    match before {
        Some(b) if b < 1 => Err(ApiError::InvalidRequest(
            "before must be an event id (1 or more)".into(),
        )),
        b => Ok(b),
    }
}

pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(50) {
        n @ 1..=200 => Ok(n),
        _ => Err(ApiError::InvalidRequest(
            "limit must be between 1 and 200".into(),
        )),
    }
}

/// The caller's own events, newest first; page with `before=<id of the last one seen>`.
async fn my_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<EventsParams>,
) -> Result<HttpResponse, ApiError> {
    let auth = authenticate(&state, &req).await?;
    let q = EventQuery {
        user_id: Some(auth.user.id.clone()),
        before: page_before(params.before)?,
        limit: page_limit(params.limit)?,
        ..Default::default()
    };
    let events = state
        .store
        .read(move |conn| queries::events(conn, &q))
        .await?;
    Ok(HttpResponse::Ok().json(events.iter().map(event_json).collect::<Vec<_>>()))
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
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let auth = authenticate(&state, &req).await?;
    let body = body.into_inner();
    let current = Password::parse_for_login(body.current_password).map_err(password_error)?;
    let new = Password::parse(body.new_password).map_err(password_error)?;
    let ok = state
        .hasher
        .verify(current, Some(auth.user.password_hash.clone()))
        .await
        .map_err(hash_error)?;
    if !ok {
        return Err(ApiError::InvalidCredentials);
    }
    let hash = state.hasher.hash(new).await.map_err(hash_error)?;
    let (now, ctx) = (state.now(), client_context(&req));
    let (user_id, keep) = (auth.user.id.clone(), auth.session.id.clone());
    let client_id = auth.session.client_id.clone();
    state
        .store
        .write(move |conn| {
            accounts::change_password(conn, now, &user_id, &keep, Some(&client_id), &hash, &ctx)
        })
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
    body: web::Json<DeleteMe>,
) -> Result<HttpResponse, ApiError> {
    let auth = authenticate(&state, &req).await?;
    let password = Password::parse_for_login(body.into_inner().password).map_err(password_error)?;
    let ok = state
        .hasher
        .verify(password, Some(auth.user.password_hash.clone()))
        .await
        .map_err(hash_error)?;
    if !ok {
        return Err(ApiError::InvalidCredentials);
    }
    let (now, user_id) = (state.now(), auth.user.id.clone());
    state
        .store
        .write(move |conn| accounts::delete_user(conn, now, &user_id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// RFC 3339 text to milliseconds, for query parameters.
pub fn parse_time(name: &str, s: &str) -> Result<Millis, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ApiError::InvalidRequest(format!("{name} must be an RFC 3339 time")))
}
