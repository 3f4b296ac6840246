//! The signed-in user's own account.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::authenticate;
use super::RouteTable;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::startup::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/me", me);
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
