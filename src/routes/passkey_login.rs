//! Signing in with a passkey (docs/contract.md "Passkeys"): without a password, in JSON
//! mode (`/login/passkey/start|finish`) and browser mode (`/browser/login/passkey/*`,
//! with `/browser/login`'s CSRF checks and refresh cookie), and the start of a passkey
//! as the second step (`/login/mfa/passkey/start`; `/login/mfa` finishes it). A start
//! stores a ceremony and a finish verifies a signature, so each draws from the login
//! bucket (the browser ones from the browser bucket too).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::origin;
use super::browser::{admit, device_cookie_of, origin_allowed_for, token_reply};
use super::extract::{JsonBody, OptionalJson, RawBody};
use super::responses::{name_caller, no_store_json};
use super::RouteTable;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::issue::{resolve_client, Issuing};
use crate::service::passkey_login::{self, PasskeyLogin};
use crate::service::passkeys::Started;
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.post("/login/passkey/start", start)
        .rate_limited(Endpoint::Login);
    t.post("/login/passkey/finish", finish)
        .rate_limited(Endpoint::Login);
    t.post("/browser/login/passkey/start", browser_start)
        .rate_limited(Endpoint::Browser)
        .rate_limited(Endpoint::Login);
    t.post("/browser/login/passkey/finish", browser_finish)
        .rate_limited(Endpoint::Browser)
        .rate_limited(Endpoint::Login);
    t.post("/login/mfa/passkey/start", second_factor_start)
        .rate_limited(Endpoint::Login);
}

/// `{ceremony, options}`: the options in their WebAuthn Level 3 JSON form, ready for
/// `PublicKeyCredential.parseRequestOptionsFromJSON`.
fn started<T: serde::Serialize>(s: Started<T>) -> HttpResponse {
    no_store_json(&json!({
        "ceremony": s.ceremony.expose(),
        "options": s.options,
    }))
}

#[derive(Deserialize, Default)]
struct StartBody {
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Deserialize)]
struct FinishBody {
    ceremony: String,
    credential: Value,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    remember_me: Option<bool>,
    /// Apps: the `device_token` of an earlier login (browser mode uses the cookie).
    #[serde(default)]
    device_token: Option<String>,
}

impl FinishBody {
    fn into_login(self, browser: bool) -> PasskeyLogin {
        PasskeyLogin {
            ceremony: self.ceremony,
            credential: self.credential,
            client_id: self.client_id,
            remember_me: self.remember_me,
            device_token: self.device_token,
            browser,
            scope: None,
        }
    }
}

/// The body may be empty: nothing is required to start.
async fn start(
    state: web::Data<AppState>,
    body: OptionalJson<StartBody>,
) -> Result<HttpResponse, ApiError> {
    let client_id = body.0.client_id;
    let s = passkey_login::start_login(&Issuing::of(&state), client_id.as_deref(), false).await?;
    Ok(started(s))
}

async fn finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<FinishBody>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner().into_login(false);
    let issued =
        passkey_login::finish_login(&Issuing::of(&state), input, origin(&req), &|_| Ok(())).await?;
    name_caller(&issued.session);
    Ok(no_store_json(&issued.body))
}

/// CSRF checks first, then the client must list the request's Origin.
async fn browser_start(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (request_origin, b): (_, StartBody) = admit(&state, &req, &body.0)?;
    let client_id = resolve_client(&state.settings, b.client_id.as_deref())?
        .id
        .clone();
    origin_allowed_for(&state, &client_id, &request_origin)?;
    let s = passkey_login::start_login(&Issuing::of(&state), Some(&client_id), true).await?;
    Ok(started(s))
}

/// As `/browser/login`: CSRF checks, the Origin on the client's list, the device token
/// from its cookie; the refresh token only in the cookie.
async fn browser_finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (request_origin, b): (_, FinishBody) = admit(&state, &req, &body.0)?;
    let mut input = b.into_login(true);
    input.device_token = device_cookie_of(&state, &req);
    let allowed = |client_id: &str| origin_allowed_for(&state, client_id, &request_origin);
    let issued =
        passkey_login::finish_login(&Issuing::of(&state), input, origin(&req), &allowed).await?;
    Ok(token_reply(&state, issued))
}

#[derive(Deserialize)]
struct SecondFactorBody {
    mfa_token: String,
}

async fn second_factor_start(
    state: web::Data<AppState>,
    body: JsonBody<SecondFactorBody>,
) -> Result<HttpResponse, ApiError> {
    let token = body.into_inner().mfa_token;
    let s = passkey_login::start_second_factor(&Issuing::of(&state), &token).await?;
    Ok(started(s))
}
