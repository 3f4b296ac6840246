//! The second factor after an identity provider (docs/identity-providers-guide.md
//! "Second factor"): the provider's callback shows latchkey's sign-in page at its code
//! step (the TOTP code, or a passkey) instead of starting a session, and the page's post
//! finishes the sign-in as it started. An app's authorization request carries its fields
//! in the form and is finished by `/oauth/authorize` as any code step is; a browser's
//! sign-in carries its `return_to` and is finished here: the refresh cookie and a 302
//! to `return_to`, or `return_to#error=…`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use super::auth::origin;
use super::browser::{device_cookie, device_cookie_of, refresh_cookie};
use super::extract::OAuthParams;
use super::signin_form::{self as page_routes, For};
use super::signin_page::{self, Step};
use crate::error::ApiError;
use crate::service::authorize::AuthorizeParams;
use crate::service::federation::{return_to_allowed, ReportTo};
use crate::service::issue::{resolve_client, Issuing};
use crate::service::mfa_login::{self, SecondStep};
use crate::service::Error;
use crate::state::AppState;

const ASK_CODE: &str = "Enter the code from your authenticator app.";
const ASK_PASSKEY: &str = "Confirm with your passkey.";

/// What the page's form carries for the flow: the app's authorization request, or only
/// the client (with `return_to` beside it).
fn params_for(to: &ReportTo) -> AuthorizeParams {
    match &to.authorization {
        Some(p) => AuthorizeParams {
            response_type: Some("code".into()),
            client_id: Some(p.client_id.clone()),
            redirect_uri: Some(p.redirect_uri.clone()),
            code_challenge: Some(p.code_challenge.clone()),
            code_challenge_method: Some("S256".into()),
            state: p.state.clone(),
            scope: p.scope.clone(),
            idp: None,
        },
        None => AuthorizeParams {
            client_id: Some(to.client_id.clone()),
            ..AuthorizeParams::default()
        },
    }
}

/// The callback's answer for an account with a second factor: the page's code step
/// (200), with a new CSRF cookie.
pub(super) fn page(
    state: &AppState,
    mfa_token: &str,
    methods: &str,
    to: &ReportTo,
) -> Result<HttpResponse, ApiError> {
    let csrf = page_routes::new_csrf(state)?;
    let params = params_for(to);
    let who = match &to.authorization {
        Some(p) => For {
            client: &p.client_id,
            target: &p.redirect_uri,
            return_to: None,
        },
        None => For {
            client: &to.client_id,
            target: &to.return_to,
            return_to: Some(&to.return_to),
        },
    };
    let step = Step::Code { mfa_token, methods };
    let ask = if methods.split(' ').any(|m| m == "totp") {
        ASK_CODE
    } else {
        ASK_PASSKEY
    };
    Ok(page_routes::page(
        state,
        StatusCode::OK,
        &who,
        &params,
        &csrf,
        step,
        Some(ask),
    ))
}

/// The post of a browser's code step: the client and `return_to` vetted again (never an
/// open redirect), then the second step in browser mode.
pub(super) async fn submit(
    state: &AppState,
    req: &HttpRequest,
    form: &OAuthParams,
    return_to: &str,
    csrf: &str,
) -> Result<HttpResponse, ApiError> {
    let not_valid = |why: &str| {
        signin_page::respond(
            StatusCode::BAD_REQUEST,
            signin_page::message("This sign-in link is not valid", why),
            None,
            false,
        )
    };
    let Ok(client) = resolve_client(&state.settings, form.get("client_id")) else {
        return Ok(not_valid("unknown client"));
    };
    if !return_to_allowed(client, return_to) {
        return Ok(not_valid("return_to is not one of the client's addresses"));
    }
    let Some(mfa_token) = form.get("mfa_token") else {
        return Ok(not_valid("the second step's token is missing"));
    };
    let methods = form.get("mfa_methods").unwrap_or("totp");
    let params = AuthorizeParams {
        client_id: Some(client.id.clone()),
        ..AuthorizeParams::default()
    };
    let who = For {
        client: &client.id,
        target: return_to,
        return_to: Some(return_to),
    };
    let again = |status, error: &str| {
        let step = Step::Code { mfa_token, methods };
        page_routes::page(state, status, &who, &params, csrf, step, Some(error))
    };
    let (ceremony, credential) = match page_routes::passkey_answer(form) {
        Ok(Some((c, v))) => (Some(c), Some(v)),
        Ok(None) => (None, None),
        Err(_) => {
            let error = "That passkey was not accepted. Try again.";
            return Ok(again(StatusCode::UNAUTHORIZED, error));
        }
    };
    let by_passkey = ceremony.is_some();
    let step = SecondStep {
        mfa_token: mfa_token.to_owned(),
        code: form.get("code").map(str::to_owned),
        recovery_code: None,
        device_token: device_cookie_of(state, req),
        browser: true,
        ceremony,
        credential,
    };
    let client_id = client.id.clone();
    let same_client = move |c: &str| {
        if c == client_id {
            Ok(())
        } else {
            Err(Error::InvalidGrant(
                "this sign-in is for another client".into(),
            ))
        }
    };
    let deps = Issuing::of(state);
    let issued = match mfa_login::finish_login(&deps, step, origin(req), &same_client).await {
        Ok(issued) => issued,
        Err(Error::InvalidGrant(_) | Error::InvalidRequest(_)) if by_passkey => {
            let error = "That passkey was not accepted. Try again.";
            return Ok(again(StatusCode::UNAUTHORIZED, error));
        }
        Err(Error::WrongCode | Error::InvalidRequest(_)) => {
            let error = "That code is not right. Try the current one.";
            return Ok(again(StatusCode::UNAUTHORIZED, error));
        }
        Err(Error::RateLimited { .. }) => {
            let error = "Too many attempts. Try again later.";
            return Ok(again(StatusCode::TOO_MANY_REQUESTS, error));
        }
        // Expired, used, or too many wrong codes: the SPA hears it as it hears any
        // failed provider sign-in.
        Err(e @ (Error::InvalidGrant(_) | Error::Forbidden(_))) => {
            let to = page_routes::error_location(return_to, "access_denied", &e.to_string());
            return Ok(page_routes::redirect(&to));
        }
        Err(e) => return Err(e.into()),
    };
    super::responses::name_caller(&issued.session);
    let mut res = page_routes::redirect(return_to);
    let _ = res.add_cookie(&refresh_cookie(state, &issued.refresh, &issued.session));
    if let Some(device) = issued.body.device_token.clone() {
        let _ = res.add_cookie(&device_cookie(state, device));
    }
    let mut gone = page_routes::csrf_cookie("");
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    Ok(res)
}
