//! `POST /signup`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::extract::JsonBody;
use super::RouteTable;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::accounts;
use crate::service::password_check::Gate;
use crate::service::recovery::Recovery;
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    // The rate limit is also what keeps the 409 for a taken name from being an
    // enumeration oracle.
    t.post("/signup", signup).rate_limited(Endpoint::Signup);
}

#[derive(Deserialize)]
pub struct SignupBody {
    username: String,
    password: String,
    /// Optional (docs/contract.md "Email and account recovery"); mailed a link to verify.
    #[serde(default, deserialize_with = "crate::routes::recovery::optional_string")]
    email: Option<String>,
}

async fn signup(
    state: web::Data<AppState>,
    body: JsonBody<SignupBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if let Some(email) = body.email.as_deref() {
        let (user, email) = crate::service::recovery::signup_with_email(
            &Recovery::of(&state),
            &body.username,
            body.password,
            email,
        )
        .await?;
        return Ok(HttpResponse::Created().json(json!({
            "id": user.id,
            "username": user.username,
            "created_at": rfc3339(user.created_at),
            "email": email.as_str(),
            "email_verified": false,
        })));
    }
    let user = accounts::signup(
        Gate::of(&state),
        &state.settings,
        &body.username,
        body.password,
    )
    .await?;
    Ok(HttpResponse::Created().json(json!({
        "id": user.id,
        "username": user.username,
        "created_at": rfc3339(user.created_at),
    })))
}
