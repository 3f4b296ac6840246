//! What latchkey's sign-in page and its form share, wherever the page is shown
//! (`/oauth/authorize`, or a provider's callback asking for the second factor): the page
//! with its headers and CSRF cookie, the double-submit check (OWASP CSRF Prevention), the
//! passkey fields its script fills, and the no-store redirect that ends a sign-in.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SecureRandom;

use super::browser::single_cookie;
use super::extract::OAuthParams;
use super::signin_page::{self, Page, Step};
use crate::error::ApiError;
use crate::service::authorize::{AuthorizeParams, Request};
use crate::service::Error;
use crate::state::AppState;

const CSRF_COOKIE: &str = "__Host-lk_csrf";

/// 302 that nothing caches and that tells the next site nothing (its Location may carry
/// a code or a state).
pub(super) fn redirect(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
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
    pub(super) fn app(request: &'a Request<'_>) -> Self {
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

/// `return_to#error=<code>&error_description=…` (RFC 6749 §4.1.2.1 codes): a SPA reads
/// the fragment, which never reaches a server.
pub(super) fn error_location(return_to: &str, code: &str, description: &str) -> String {
    let fragment =
        serde_urlencoded::to_string([("error", code), ("error_description", description)])
            .unwrap_or_else(|_| format!("error={code}"));
    format!("{return_to}#{fragment}")
}
