//! Operator routes: a Bearer token whose user has role `admin` (403 otherwise).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{client_context, Admin};
use super::me::{admin_events_json, parse_time, session_json};
use super::passkeys::passkey_json;
use super::responses::no_store_json;
use super::RouteTable;
use crate::domain::model::{ClientContext, EventQuery};
use crate::domain::UserId;
use crate::error::ApiError;
use crate::service::events::{page_before, page_limit};
use crate::service::{accounts, events, passkeys, sessions};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/admin/users/{id}/sessions", user_sessions);
    t.delete("/admin/users/{id}/sessions", revoke_user_sessions);
    t.post("/admin/users/{id}/disable", disable_user);
    t.get("/admin/users/{id}/passkeys", user_passkeys);
    t.get("/admin/events", list_events);
}

async fn user_sessions(
    state: web::Data<AppState>,
    path: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_in_path(&path)?;
    let list = sessions::sessions_of_user(&state.store, state.now(), user_id).await?;
    let body: Vec<Value> = list.iter().map(|s| session_json(s, None)).collect();
    Ok(no_store_json(&body))
}

/// The user's passkeys (docs/contract.md "Passkeys"): names and dates only.
async fn user_passkeys(
    state: web::Data<AppState>,
    path: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_in_path(&path)?;
    let list = passkeys::of_user(&state.store, user_id).await?;
    let body: Vec<Value> = list.iter().map(passkey_json).collect();
    Ok(no_store_json(&body))
}

/// User-wide revocation.
async fn revoke_user_sessions(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Admin(admin): Admin,
) -> Result<HttpResponse, ApiError> {
    // The admin's own address and user agent go into the events' actor, not the
    // user's fields (docs/contract.md "Security events").
    let user_id = user_in_path(&path)?;
    let ctx = ClientContext::administrator(&admin.user.id, client_context(&req));
    sessions::revoke_all_of_user(&state.store, state.now(), user_id, ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn disable_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Admin(admin): Admin,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_in_path(&path)?;
    let ctx = ClientContext::administrator(&admin.user.id, client_context(&req));
    accounts::disable_user(&state.store, state.now(), &admin, user_id, ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The user named by `/admin/users/{id}/…`; an id in a form we never issue names no
/// user (404, as for an unknown one).
pub(super) fn user_in_path(id: &str) -> Result<UserId, ApiError> {
    Ok(UserId::parse(id).ok_or_else(sessions::no_such_user)?)
}

#[derive(Debug, Deserialize)]
pub struct AdminEventsParams {
    user_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// Events by user, type and time, newest first.
async fn list_events(
    state: web::Data<AppState>,
    params: web::Query<AdminEventsParams>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let p = params.into_inner();
    let time = |name, v: Option<String>| v.as_deref().map(|s| parse_time(name, s)).transpose();
    // Ids and event types are printable: a control character (a NUL, say) can match
    // nothing, and one backend (PostgreSQL) cannot even compare it. 400 on both.
    for (name, value) in [("user_id", &p.user_id), ("type", &p.kind)] {
        if value
            .as_deref()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            return Err(ApiError::InvalidRequest(format!(
                "{name} must not contain control characters"
            )));
        }
    }
    let query = EventQuery {
        user_id: None,
        kind: p.kind,
        since: time("since", p.since)?,
        until: time("until", p.until)?,
        before: page_before(p.before)?,
        limit: page_limit(p.limit)?,
    };
    let query = match p.user_id.as_deref().map(UserId::parse) {
        None => query,
        Some(Some(user_id)) => EventQuery {
            user_id: Some(user_id),
            ..query
        },
        // An id in a form we never issue matches no event.
        Some(None) => return Ok(no_store_json(&admin_events_json(&[]))),
    };
    Ok(no_store_json(&admin_events_json(
        &events::list(&state.store, query).await?,
    )))
}
