//! Signing out: `POST /logout` with scope local, others or global.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{client_context, Authenticated};
use super::extract::OptionalJson;
use super::RouteTable;
use crate::error::ApiError;
use crate::service::revoke::{self, LogoutScope};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.post("/logout", logout);
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
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    revoke::logout(
        &state.store,
        state.now(),
        &auth,
        body.0.scope,
        client_context(&req),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
