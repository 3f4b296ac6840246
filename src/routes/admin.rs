//! Operator routes: need a Bearer token whose user has role `admin` (403 otherwise).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{authenticate, client_context, Authenticated};
use super::me::{event_json, page_limit, parse_time, session_json};
use super::RouteTable;
use crate::domain::{accounts, sessions};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::queries::{self, EventQuery};

pub fn configure(t: &mut RouteTable) {
    t.get("/admin/users/{id}/sessions", user_sessions);
    t.add(
        actix_web::http::Method::DELETE,
        "/admin/users/{id}/sessions",
        revoke_user_sessions,
    );
    t.post("/admin/users/{id}/disable", disable_user);
    t.get("/admin/events", events);
}

async fn require_admin(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Result<Authenticated, ApiError> {
    let auth = authenticate(state, req).await?;
    if auth.has_role("admin") {
        Ok(auth)
    } else {
        Err(ApiError::Forbidden("this needs the admin role".into()))
    }
}

fn no_such_user() -> ApiError {
    ApiError::NotFound("no such user".into())
}

async fn user_sessions(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req).await?;
    let (id, now) = (path.into_inner(), state.now());
    let list = state
        .store
        .read(move |conn| {
            if queries::user_by_id(conn, &id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(queries::active_sessions_of_user(conn, &id, now)?))
        })
        .await?
        .ok_or_else(no_such_user)?;
    let body: Vec<Value> = list.iter().map(|s| session_json(s, None)).collect();
    Ok(HttpResponse::Ok().json(body))
}

/// User-wide revocation.
async fn revoke_user_sessions(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req).await?;
    let (id, now, ctx) = (path.into_inner(), state.now(), client_context(&req));
    let found = state
        .store
        .write(move |conn| {
            if queries::user_by_id(conn, &id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(sessions::revoke_all_of_user(
                conn, now, &id, None, "admin", &ctx,
            )?))
        })
        .await?;
    if let Some(n) = found {
        state.metrics.revoked("admin", n);
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(no_such_user())
    }
}

async fn disable_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let admin = require_admin(&state, &req).await?;
    let (id, now, ctx) = (path.into_inner(), state.now(), client_context(&req));
    if admin.user.id == id {
        // An admin locking themselves out is a mistake, and the last admin doing it
        // would leave nobody to undo it from the API.
        return Err(ApiError::Conflict(
            "an admin cannot disable their own account".into(),
        ));
    }
    let found = state
        .store
        .write(move |conn| accounts::disable_user(conn, now, &id, &ctx))
        .await?;
    if found {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(no_such_user())
    }
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
async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<AdminEventsParams>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req).await?;
    let p = params.into_inner();
    let q = EventQuery {
        user_id: p.user_id,
        kind: p.kind,
        since: p
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?,
        until: p
            .until
            .as_deref()
            .map(|s| parse_time("until", s))
            .transpose()?,
        before: super::me::page_before(p.before)?,
        limit: page_limit(p.limit)?,
    };
    let events = state
        .store
        .read(move |conn| queries::events(conn, &q))
        .await?;
    Ok(HttpResponse::Ok().json(events.iter().map(event_json).collect::<Vec<_>>()))
}
