//! `/oauth/authorize` (RFC 6749 §4.1, RFC 7636, RFC 8252; docs/identity-providers-guide.md
//! "Native apps"). GET vets the request and shows latchkey's sign-in page; POST is that
//! page's form: the password, then the second factor if the account has one. A session
//! signed in here becomes a code at the app's redirect URI.
//!
//! CSRF (OWASP CSRF Prevention, double submit): the page sets `__Host-lk_csrf` and
//! carries the same value in the form; a post without both, equal, is refused.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SecureRandom;

use super::auth::origin;
use super::browser::single_cookie;
use super::extract::OAuthParams;
use super::signin_page::{self, Page, Step};
use super::RouteTable;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::authorize::{self, AuthorizeParams, Refusal, Request};
use crate::service::issue::{Issued, Issuing};
use crate::service::login::{self, Credentials};
use crate::service::mfa_login::{self, SecondStep};
use crate::service::passkey_login::{self, PasskeyLogin};
use crate::service::Error;
use crate::state::AppState;

const CSRF_COOKIE: &str = "__Host-lk_csrf";

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

pub(super) fn redirect(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

/// A refusal: a page for the user, or the error at the redirect URI.
pub(super) fn refused(r: Refusal) -> HttpResponse {
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

pub(super) fn new_csrf(state: &AppState) -> Result<String, ApiError> {
    let mut buf = [0u8; 32];
    state
        .rng
        .fill(&mut buf)
        .map_err(|_| ApiError::from(Error::internal(anyhow::anyhow!("randomness failed"))))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

pub(super) fn csrf_cookie(value: &str) -> Cookie<'static> {
    Cookie::build(CSRF_COOKIE, value.to_owned())
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .finish()
}

/// Whom the page signs in: the client, where its form may lead after the post (CSP
/// `form-action`: the app's redirect URI, or the browser's `return_to`), and that
/// `return_to` when the page is the second step of a browser's provider sign-in.
pub(super) struct For<'a> {
    pub client: &'a str,
    pub target: &'a str,
    pub return_to: Option<&'a str>,
}

impl<'a> For<'a> {
    fn app(request: &'a Request<'_>) -> Self {
        Self {
            client: &request.client.id,
            target: &request.redirect_uri,
            return_to: None,
        }
    }
}

/// The page at `step`, with the CSRF cookie (re)set to `csrf`.
pub(super) fn page(
    state: &AppState,
    status: StatusCode,
    who: &For<'_>,
    params: &AuthorizeParams,
    csrf: &str,
    step: Step<'_>,
    error: Option<&str>,
) -> HttpResponse {
    let passkeys = state.passkeys.is_some();
    let html = signin_page::render(&Page {
        client: who.client,
        return_to: who.return_to,
        params,
        csrf,
        error,
        step,
        providers: state
            .settings
            .identity_providers
            .iter()
            .map(|p| (p.id.as_str(), p.display_name()))
            .collect(),
        passkeys,
    });
    let mut res = signin_page::respond(status, html, Some(who.target), passkeys);
    let _ = res.add_cookie(&csrf_cookie(csrf));
    res
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

/// The cookie and the form's token are present and equal (constant time).
pub(super) fn csrf_ok(req: &HttpRequest, form: &OAuthParams) -> Option<String> {
    use subtle::ConstantTimeEq;
    let cookie = single_cookie(req, CSRF_COOKIE).ok().flatten()?;
    let field = form.get("csrf_token")?;
    bool::from(cookie.as_bytes().ct_eq(field.as_bytes())).then_some(cookie)
}

/// The passkey fields the page's script fills: the ceremony and the authenticator's
/// answer (JSON). `Err`: present but not JSON.
pub(super) fn passkey_answer(
    form: &OAuthParams,
) -> Result<Option<(String, serde_json::Value)>, Error> {
    let Some(ceremony) = form.get("passkey_ceremony").filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let credential = serde_json::from_str(form.get("passkey_credential").unwrap_or_default())
        .map_err(|_| Error::InvalidRequest("passkey_credential must be JSON".into()))?;
    Ok(Some((ceremony.to_owned(), credential)))
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
