//! Account recovery (docs/contract.md "Email and account recovery"): `POST
//! /password/forgot`, `/password/reset`, `/email/verify`, `/me/email` and
//! `/admin/users/{id}/password-reset`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{origin, Admin, Authenticated};
use super::RouteTable;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::recovery::{self, ForgotInput, Recovery};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.post("/password/forgot", forgot)
        .rate_limited(Endpoint::Recovery);
    t.post("/password/reset", reset)
        .rate_limited(Endpoint::Recovery);
    t.post("/email/verify", verify)
        .rate_limited(Endpoint::Recovery);
    t.post("/me/email", set_email).rate_limited(Endpoint::Login);
    t.post("/admin/users/{id}/password-reset", admin_reset);
}

/// The one answer to every well-formed `/password/forgot`, whatever the account.
pub const FORGOT_MESSAGE: &str = "if that account exists and has a verified email address, \
     a link to reset its password has been sent to it";

/// An optional string member: absent is `None`, but `null` (or any non-string) is
/// refused as the schema says (openapi.yaml), rather than read as absent.
pub fn optional_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

#[derive(Deserialize)]
pub struct ForgotBody {
    #[serde(default, deserialize_with = "optional_string")]
    username: Option<String>,
    #[serde(default, deserialize_with = "optional_string")]
    email: Option<String>,
}

async fn forgot(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ForgotBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let input = ForgotInput {
        username: b.username,
        email: b.email,
    };
    recovery::forgot_password(&Recovery::of(&state), input, origin(&req)).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("cache-control", "no-store"))
        .json(json!({ "status": "accepted", "message": FORGOT_MESSAGE })))
}

#[derive(Deserialize)]
pub struct ResetBody {
    token: String,
    new_password: String,
}

async fn reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ResetBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    recovery::reset_password(
        &Recovery::of(&state),
        &b.token,
        b.new_password,
        origin(&req),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct VerifyBody {
    token: String,
}

async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<VerifyBody>,
) -> Result<HttpResponse, ApiError> {
    recovery::verify_email(
        &Recovery::of(&state),
        &body.into_inner().token,
        origin(&req),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct SetEmailBody {
    email: String,
    password: String,
}

/// Needs the password; the new address starts unverified and is sent a link.
async fn set_email(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SetEmailBody>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let e = recovery::set_email(
        &Recovery::of(&state),
        &auth,
        &b.email,
        b.password,
        origin(&req),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(json!({
        "email": e.email,
        "email_verified": e.verified_at.is_some(),
    })))
}

async fn admin_reset(
    state: web::Data<AppState>,
    path: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let user_id = super::admin::user_in_path(&path)?;
    recovery::admin_reset(&Recovery::of(&state), user_id).await?;
    Ok(HttpResponse::Accepted().json(json!({ "status": "accepted" })))
}
