//! The second factor (docs/contract.md "Second factor"): the second step of a login
//! (`POST /login/mfa`; the browser one is in `browser.rs`) and the signed-in user's TOTP
//! factor under `/me/mfa/*`. Every route here checks a password or a code, so each draws
//! from the login bucket.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{origin, Authenticated};
use super::extract::JsonBody;
use super::responses::{name_caller, no_store_json};
use super::RouteTable;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::issue::Issuing;
use crate::service::mfa;
use crate::service::mfa_login::{self, SecondStep};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.post("/login/mfa", login_mfa)
        .rate_limited(Endpoint::Login);
    t.post("/me/mfa/totp", enrol).rate_limited(Endpoint::Login);
    t.post("/me/mfa/totp/confirm", confirm)
        .rate_limited(Endpoint::Login);
    t.delete("/me/mfa/totp", remove)
        .rate_limited(Endpoint::Login);
    t.post("/me/mfa/recovery-codes", regenerate)
        .rate_limited(Endpoint::Login);
}

/// The body of `/login/mfa` and `/browser/login/mfa`: the `mfa_token` and one of `code`,
/// `recovery_code`, or a passkey's `ceremony` and `credential`.
#[derive(Deserialize)]
pub struct SecondStepBody {
    pub mfa_token: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
    /// Apps: the `device_token` of an earlier login, as at `/login` (browser mode reads
    /// the device cookie and ignores this).
    #[serde(default)]
    pub device_token: Option<String>,
    /// A passkey instead of a code: the ceremony of `/login/mfa/passkey/start` and the
    /// authenticator's answer.
    #[serde(default)]
    pub ceremony: Option<String>,
    #[serde(default)]
    pub credential: Option<serde_json::Value>,
}

impl From<SecondStepBody> for SecondStep {
    fn from(b: SecondStepBody) -> Self {
        SecondStep {
            mfa_token: b.mfa_token,
            code: b.code,
            recovery_code: b.recovery_code,
            device_token: b.device_token,
            browser: false,
            ceremony: b.ceremony,
            credential: b.credential,
        }
    }
}

async fn login_mfa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<SecondStepBody>,
) -> Result<HttpResponse, ApiError> {
    let issued = mfa_login::finish_login(
        &Issuing::of(&state),
        body.into_inner().into(),
        origin(&req),
        &|_| Ok(()),
    )
    .await?;
    name_caller(&issued.session);
    Ok(no_store_json(&issued.body))
}

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

async fn enrol(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<PasswordBody>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let e = mfa::enrol(
        &Issuing::of(&state),
        &auth,
        body.into_inner().password,
        origin(&req),
    )
    .await?;
    Ok(no_store_json(&json!({
        "secret": e.secret.expose(),
        "otpauth_uri": e.otpauth_uri.expose(),
        "qr_svg": e.qr_svg.expose(),
    })))
}

#[derive(Deserialize)]
struct CodeBody {
    #[serde(default)]
    code: Option<String>,
}

async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<CodeBody>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let codes = mfa::confirm(
        &Issuing::of(&state),
        &auth,
        body.into_inner().code,
        origin(&req),
    )
    .await?;
    Ok(no_store_json(&json!({ "recovery_codes": codes })))
}

#[derive(Deserialize)]
struct RemoveBody {
    password: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<RemoveBody>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    mfa::remove(
        &Issuing::of(&state),
        &auth,
        b.password,
        (b.code, b.recovery_code),
        origin(&req),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn regenerate(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<CodeBody>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let code = body.into_inner().code;
    let codes =
        mfa::regenerate_recovery_codes(&Issuing::of(&state), &auth, code, origin(&req)).await?;
    Ok(no_store_json(&json!({ "recovery_codes": codes })))
}
