//! `/oauth/authorize` (RFC 6749 §4.1, RFC 7636, RFC 8252; docs/identity-providers-guide.md
//! "Native apps"). GET vets the request and shows latchkey's sign-in page; POST is that
//! page's form: the password, then the second factor if the account has one. A session
//! signed in here becomes a code at the app's redirect URI.
//!
//! CSRF (OWASP CSRF Prevention, double submit): the page sets `__Host-lk_csrf` and
//! carries the same value in the form; a post without both, equal, is refused.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::origin;
use super::extract::OAuthParams;
use super::signin_form::{csrf_cookie, csrf_ok, new_csrf, page, passkey_answer, redirect, For};
use super::signin_page::{self, Step};
use super::RouteTable;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::authorize::{self, AuthorizeParams, Refusal};
use crate::service::issue::{Issued, Issuing};
use crate::service::login::{self, Credentials};
use crate::service::mfa_login::{self, SecondStep};
use crate::service::passkey_login::{self, PasskeyLogin};
use crate::service::Error;
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/oauth/authorize", start)
        .rate_limited(Endpoint::Browser);
    // The page's form checks a password (and a code): the login bucket too.
    t.post("/oauth/authorize", submit)
        .rate_limited(Endpoint::Browser)
        .rate_limited(Endpoint::Login);
    t.get(signin_page::SCRIPT_PATH, script);
}

/// The page's one script (`script-src 'self'`): static, so cacheable.
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(signin_page::SCRIPT)
}

/// A refusal: a page for the user, or the error at the redirect URI.
fn refused(r: Refusal) -> HttpResponse {
    match r {
        Refusal::Show(why) => signin_page::respond(
            StatusCode::BAD_REQUEST,
            signin_page::message("This sign-in link is not valid", &why),
            None,
            false,
        ),
        Refusal::Redirect(location) => redirect(&location),
    }
}

async fn start(
    state: web::Data<AppState>,
    params: web::Query<AuthorizeParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let request = match authorize::check(&state.settings, &params) {
        Ok(r) => r,
        Err(r) => return Ok(refused(r)),
    };
    if let Some(idp) = request.idp.as_deref() {
        return super::federation::start_for_app(&state, idp, &request).await;
    }
    let csrf = new_csrf(&state)?;
    let step = Step::Password { username: "" };
    Ok(page(
        &state,
        StatusCode::OK,
        &For::app(&request),
        &params,
        &csrf,
        step,
        None,
    ))
}

fn params_of(form: &OAuthParams) -> AuthorizeParams {
    let get = |n: &str| form.get(n).map(str::to_owned);
    AuthorizeParams {
        response_type: get("response_type"),
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        state: get("state"),
        scope: get("scope"),
        idp: None,
    }
}

async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: OAuthParams,
) -> Result<HttpResponse, ApiError> {
    let Some(csrf) = csrf_ok(&req, &form) else {
        return Ok(signin_page::respond(
            StatusCode::FORBIDDEN,
            signin_page::message(
                "This form has expired",
                "Go back to the app and start signing in again.",
            ),
            None,
            false,
        ));
    };
    // The second step of a browser's sign-in through a provider: no authorization
    // request, a `return_to` instead.
    if let (None, Some(return_to)) = (form.get("response_type"), form.get("return_to")) {
        return super::federated_step::submit(&state, &req, &form, return_to, &csrf).await;
    }
    let params = params_of(&form);
    let request = match authorize::check(&state.settings, &params) {
        Ok(r) => r,
        Err(r) => return Ok(refused(r)),
    };
    let deps = Issuing::of(&state);
    let who = For::app(&request);
    let show =
        |status, step, error: &str| page(&state, status, &who, &params, &csrf, step, Some(error));
    let passkey = passkey_answer(&form);
    let outcome = if let Some(mfa_token) = form.get("mfa_token") {
        let methods = form.get("mfa_methods").unwrap_or("totp");
        let again = Step::Code { mfa_token, methods };
        let again_at = |status, error: &str| {
            let step = Step::Code { mfa_token, methods };
            show(status, step, error)
        };
        let (ceremony, credential) = match passkey {
            Ok(Some((c, v))) => (Some(c), Some(v)),
            Ok(None) => (None, None),
            Err(_) => {
                let error = "That passkey was not accepted. Try again.";
                return Ok(show(StatusCode::UNAUTHORIZED, again, error));
            }
        };
        let by_passkey = ceremony.is_some();
        let step = SecondStep {
            mfa_token: mfa_token.to_owned(),
            code: form.get("code").map(str::to_owned),
            recovery_code: None,
            device_token: None,
            browser: false,
            ceremony,
            credential,
        };
        let client_id = request.client.id.clone();
        let same_client = move |c: &str| {
            if c == client_id {
                Ok(())
            } else {
                Err(Error::InvalidGrant(
                    "this login is for another client".into(),
                ))
            }
        };
        match mfa_login::finish_login(&deps, step, origin(&req), &same_client).await {
            Err(Error::InvalidGrant(_) | Error::InvalidRequest(_)) if by_passkey => {
                let error = "That passkey was not accepted. Try again.";
                return Ok(again_at(StatusCode::UNAUTHORIZED, error));
            }
            Err(Error::WrongCode) | Err(Error::InvalidRequest(_)) => {
                let error = "That code is not right. Try the current one.";
                return Ok(again_at(StatusCode::UNAUTHORIZED, error));
            }
            Err(Error::RateLimited { .. }) => {
                let error = "Too many attempts. Try again later.";
                return Ok(again_at(StatusCode::TOO_MANY_REQUESTS, error));
            }
            Err(Error::InvalidGrant(_)) => {
                let step = Step::Password { username: "" };
                return Ok(show(
                    StatusCode::UNAUTHORIZED,
                    step,
                    "This sign-in has expired. Start again.",
                ));
            }
            other => other,
        }
    } else if let Some(answer) = passkey.transpose() {
        // Passwordless: the discoverable ceremony the script ran (RFC 8176 amr hwk user mfa).
        let refused = |status| {
            let step = Step::Password { username: "" };
            show(status, step, "That passkey was not accepted. Try again.")
        };
        let Ok((ceremony, credential)) = answer else {
            return Ok(refused(StatusCode::UNAUTHORIZED));
        };
        let input = PasskeyLogin {
            ceremony,
            credential,
            client_id: Some(request.client.id.clone()),
            remember_me: Some(true),
            device_token: None,
            browser: false,
            scope: request.scope.clone(),
        };
        match passkey_login::finish_login(&deps, input, origin(&req), &|_| Ok(())).await {
            Err(Error::InvalidGrant(_) | Error::InvalidRequest(_)) => {
                return Ok(refused(StatusCode::UNAUTHORIZED));
            }
            Err(Error::RateLimited { .. }) => {
                return Ok(refused(StatusCode::TOO_MANY_REQUESTS));
            }
            other => other,
        }
    } else {
        let username = form.get("username").unwrap_or_default();
        let credentials = Credentials {
            username: username.to_owned(),
            password: form.get("password").unwrap_or_default().to_owned(),
            client_id: Some(request.client.id.clone()),
            remember_me: Some(true),
            scope: request.scope.clone(),
            resource: Vec::new(),
            device_token: None,
            browser: false,
        };
        match login::login(&deps, credentials, origin(&req)).await {
            Err(Error::SecondFactorRequired { mfa_token, methods }) => {
                let methods = methods.join(" ");
                let step = Step::Code {
                    mfa_token: mfa_token.expose(),
                    methods: &methods,
                };
                let ask = if methods.contains("totp") {
                    "Enter the code from your authenticator app."
                } else {
                    "Confirm with your passkey."
                };
                return Ok(show(StatusCode::OK, step, ask));
            }
            // One message for a wrong password and an unknown name (OWASP Authentication
            // Cheat Sheet); the attempt counted in the login throttle.
            Err(Error::InvalidCredentials) | Err(Error::InvalidRequest(_)) => {
                let step = Step::Password { username };
                return Ok(show(
                    StatusCode::UNAUTHORIZED,
                    step,
                    "Invalid username or password.",
                ));
            }
            Err(Error::RateLimited { .. }) => {
                let step = Step::Password { username };
                return Ok(show(
                    StatusCode::TOO_MANY_REQUESTS,
                    step,
                    "Too many attempts. Try again later.",
                ));
            }
            other => other,
        }
    };
    let issued: Issued = outcome?;
    let location = authorize::grant(&deps, &request.pending(), issued).await?;
    // The CSRF cookie has done its work.
    let mut res = redirect(&location);
    let mut gone = csrf_cookie("");
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    Ok(res)
}
