//! Signing out: `POST /logout` with scope local, others or global.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{authenticate, client_context};
use super::extract::OptionalJson;
use super::RouteTable;
use crate::domain::sessions;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::queries::{self, NewEvent};

pub fn configure(t: &mut RouteTable) {
    t.post("/logout", logout);
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogoutScope {
    /// This session only.
    #[default]
    Local,
    /// Every session of the user but this one.
    Others,
    /// Every session of the user.
    Global,
}

#[derive(Debug, Default, Deserialize)]
pub struct LogoutBody {
    #[serde(default)]
    scope: LogoutScope,
}

async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: OptionalJson<LogoutBody>,
) -> Result<HttpResponse, ApiError> {
    let auth = authenticate(&state, &req).await?;
    let scope = body.0.scope;
    let ctx = client_context(&req);
    let now = state.now();
    let (user_id, current) = (auth.user.id.clone(), auth.session.id.clone());
    let client_id = auth.session.client_id.clone();
    let (reason, ended) = state
        .store
        .write(move |conn| {
            let mut ended = 0;
            let reason = match scope {
                LogoutScope::Local => "logout",
                LogoutScope::Others => "logout_others",
                LogoutScope::Global => "logout_global",
            };
            for s in queries::active_sessions_of_user(conn, &user_id, now)? {
                let is_current = s.id == current;
                let end = match scope {
                    LogoutScope::Local => is_current,
                    LogoutScope::Others => !is_current,
                    LogoutScope::Global => true,
                };
                if end && sessions::revoke(conn, now, &s, reason, &ctx)? {
                    ended += 1;
                }
            }
            queries::insert_event(
                conn,
                now,
                &NewEvent {
                    kind: "logout",
                    user_id: Some(&user_id),
                    session_id: Some(&current),
                    client_id: Some(&client_id),
                    ip: ctx.ip.as_deref(),
                    user_agent: ctx.user_agent.as_deref(),
                    detail: Some(serde_json::json!({ "scope": reason })),
                },
            )?;
            Ok((reason, ended))
        })
        .await?;
    state.metrics.revoked(reason, ended);
    Ok(HttpResponse::NoContent().finish())
}
