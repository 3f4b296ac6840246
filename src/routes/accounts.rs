//! `POST /signup`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::rate_limit;
use super::RouteTable;
use crate::clock::rfc3339;
use crate::config::Registration;
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::{Password, PasswordError, Username};
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::startup::AppState;

pub fn configure(t: &mut RouteTable) {
    t.post("/signup", signup);
}

#[derive(Deserialize)]
pub struct SignupBody {
    username: String,
    password: String,
}

pub fn password_error(e: PasswordError) -> ApiError {
    ApiError::InvalidRequest(e.to_string())
}

async fn signup(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SignupBody>,
) -> Result<HttpResponse, ApiError> {
    // Also what keeps the 409 for a taken name from being an enumeration oracle.
    rate_limit(&state, &req, Endpoint::Signup)?;
    if state.settings.registration == Registration::Closed {
        return Err(ApiError::Forbidden("registration is closed".into()));
    }
    let body = body.into_inner();
    // Lengths are checked here, before any hashing.
    let username =
        Username::parse(&body.username).map_err(|e| ApiError::InvalidRequest(e.into()))?;
    let password = Password::parse(body.password).map_err(password_error)?;
    let hash = state.hasher.hash(password).await.map_err(hash_error)?;
    let now = state.now();
    let outcome = state
        .store
        .write(move |conn| accounts::create_user(conn, now, &username, hash, Vec::new()))
        .await?;
    match outcome {
        SignupOutcome::Created(user) => Ok(HttpResponse::Created().json(json!({
            "id": user.id,
            "username": user.username,
            "created_at": rfc3339(user.created_at),
        }))),
        SignupOutcome::Taken => Err(ApiError::Conflict("that username is taken".into())),
    }
}

pub fn hash_error(e: crate::passwords::HashError) -> ApiError {
    match e {
        crate::passwords::HashError::Pool(crate::pool::PoolError::Full(_)) => {
            ApiError::TooManyRequests {
                retry_after_secs: 1,
            }
        }
        other => ApiError::internal(other),
    }
}
