//! Browser (SPA) mode (docs/contract.md "Browser mode"): the access token in the JSON body, the
//! refresh token only in an `HttpOnly; Secure; SameSite=Strict` `__Host-` cookie that
//! JavaScript never sees.
//!
//! CSRF defence, before anything is read from the store or changed (OWASP CSRF cheat
//! sheet: custom request header + Origin verification + Fetch Metadata):
//! `Sec-Fetch-Site: cross-site` is refused; `X-Latchkey-CSRF: 1` must be present (a
//! cross-site form or simple request cannot set it without a CORS preflight we refuse);
//! the body must be JSON; `Origin` must be present and one of the client's
//! `allowed_origins`. Every failure is 403 `forbidden`.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{client_context, origin};
use super::extract::{parse_object, RawBody};
use super::login::LoginBody;
use super::mfa::SecondStepBody;
use super::responses::name_caller;
use super::RouteTable;
use crate::domain::model::Session;
use crate::domain::{RefreshToken, RevocationReason, Scope};
use crate::error::ApiError;
use crate::keys::DEVICE_TOKEN_TTL_SECS;
use crate::ratelimit::Endpoint;
use crate::service::issue::{resolve_client, Issued, Issuing, TokenResponse};
use crate::service::refresh::{self, RefreshInput};
use crate::service::revoke::TokenLookup;
use crate::service::{self, login, mfa_login, revoke};
use crate::state::AppState;

/// Browsers cap cookie lifetimes at 400 days (RFC 6265bis §5.5).
const MAX_COOKIE_AGE_SECS: i64 = 400 * 24 * 3600;

pub fn configure(t: &mut RouteTable) {
    // It checks a password, so it also draws from the login bucket (docs/contract.md
    // "Login throttling"): the browser bucket alone would let it sidestep `/login`'s.
    t.post("/browser/login", login)
        .rate_limited(Endpoint::Browser)
        .rate_limited(Endpoint::Login);
    // The second step of a login that answered `mfa_required`: the same CSRF checks,
    // and a code check, so the login bucket too.
    t.post("/browser/login/mfa", login_mfa)
        .rate_limited(Endpoint::Browser)
        .rate_limited(Endpoint::Login);
    t.post("/browser/refresh", refresh)
        .rate_limited(Endpoint::Browser);
    t.post("/browser/logout", logout)
        .rate_limited(Endpoint::Browser);
}

fn forbidden(why: &str) -> service::Error {
    service::Error::Forbidden(format!("cross-site request refused: {why}"))
}

/// The checks that need no store: returns the request's `Origin`, which is one of some
/// client's `allowed_origins` (the caller then checks it against the session's client).
fn csrf_guard(state: &AppState, req: &HttpRequest) -> Result<String, ApiError> {
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Err(forbidden("Sec-Fetch-Site is cross-site").into());
    }
    if headers.get("x-latchkey-csrf").map(|v| v.as_bytes()) != Some(b"1") {
        return Err(forbidden("the X-Latchkey-CSRF: 1 header is missing").into());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON));
    if !json {
        return Err(forbidden("the body must be application/json").into());
    }
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| forbidden("the Origin header is missing"))?;
    let known = state
        .settings
        .clients
        .iter()
        .any(|c| c.allowed_origins.iter().any(|o| o == origin));
    if !known {
        return Err(forbidden("the Origin is not allowed").into());
    }
    Ok(origin.to_owned())
}

pub(super) fn origin_allowed_for(
    state: &AppState,
    client_id: &str,
    origin: &str,
) -> Result<(), service::Error> {
    let allowed = state
        .settings
        .client(client_id)
        .is_some_and(|c| c.allowed_origins.iter().any(|o| o == origin));
    if allowed {
        Ok(())
    } else {
        Err(forbidden("the Origin is not allowed for this client"))
    }
}

/// The body through the one JSON parser every endpoint uses ([`parse_object`]); an
/// empty body counts as `{}`.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    parse_object(body)
}

/// The value of the one cookie named `name`; `Err` when the request carries it more
/// than once (`Cookie: X=attacker; X=victim`: which one a server reads is a guess, so
/// none is read).
pub(super) fn single_cookie(req: &HttpRequest, name: &str) -> Result<Option<String>, ()> {
    let Ok(cookies) = req.cookies() else {
        return Ok(None);
    };
    let mut found = cookies.iter().filter(|c| c.name() == name);
    let first = found.next().map(|c| c.value().to_owned());
    if found.next().is_some() {
        return Err(());
    }
    Ok(first)
}

/// An error answer that also clears the refresh cookie (a dead or ambiguous cookie is
/// of no use to the browser, and would only be sent again).
fn clearing(state: &AppState, err: &ApiError) -> HttpResponse {
    let mut res = actix_web::ResponseError::error_response(err);
    if let Ok(v) = header::HeaderValue::from_str(&clearing_cookie(state).to_string()) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The refresh cookie's value, or the 400 (cookie cleared) for a request carrying more
/// than one.
fn refresh_cookie_of(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<String>, Box<HttpResponse>> {
    single_cookie(req, &state.settings.browser.cookie_name).map_err(|()| {
        Box::new(clearing(
            state,
            &ApiError::InvalidRequest("more than one refresh cookie was sent".into()),
        ))
    })
}

/// The device cookie: a long-lived `HttpOnly` `__Host-` cookie holding the device token
/// a successful login earned (docs/contract.md "Login throttling").
pub(super) fn device_cookie(state: &AppState, token: String) -> Cookie<'static> {
    Cookie::build(state.settings.browser.device_cookie_name.clone(), token)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(CookieDuration::seconds(DEVICE_TOKEN_TTL_SECS))
        .finish()
}

/// The device token of the device cookie; two device cookies are no device token at all.
pub(super) fn device_cookie_of(state: &AppState, req: &HttpRequest) -> Option<String> {
    single_cookie(req, &state.settings.browser.device_cookie_name).unwrap_or(None)
}

/// The refresh cookie: `__Host-` name, `HttpOnly; Secure; SameSite=Strict; Path=/`.
/// A remember-me session's cookie lives until the session's absolute end (at most 400
/// days); otherwise it has no Max-Age and ends with the browser.
pub(super) fn refresh_cookie(
    state: &AppState,
    token: &RefreshToken,
    session: &Session,
) -> Cookie<'static> {
    let mut cookie = cookie_with(state, token.expose().to_owned());
    if session.remember_me {
        let left = ((session.expires_at - state.now()) / 1000).clamp(0, MAX_COOKIE_AGE_SECS);
        cookie.set_max_age(CookieDuration::seconds(left));
    }
    cookie
}

fn clearing_cookie(state: &AppState) -> Cookie<'static> {
    let mut cookie = cookie_with(state, String::new());
    cookie.set_max_age(CookieDuration::ZERO);
    cookie
}

/// The attributes every refresh cookie carries.
fn cookie_with(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(state.settings.browser.cookie_name.clone(), value)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .finish()
}

/// What every `/browser/*` request goes through first (after its rate limit): the CSRF
/// checks (before anything else is read), then the JSON body. Returns the `Origin` and
/// body.
pub(super) fn admit<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(String, T), ApiError> {
    let origin = csrf_guard(state, req)?;
    Ok((origin, parse_json(body)?))
}

/// The token response without the refresh token, which goes only into the cookie (and
/// without the device token, which goes into the device cookie).
pub(super) fn token_reply(state: &AppState, issued: Issued) -> HttpResponse {
    name_caller(&issued.session);
    let cookie = refresh_cookie(state, &issued.refresh, &issued.session);
    let mut body: TokenResponse = issued.for_browser().body;
    let device = body.device_token.take().map(|t| device_cookie(state, t));
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .cookie(cookie);
    if let Some(device) = device {
        res.cookie(device);
    }
    res.json(&body)
}

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (request_origin, credentials): (_, LoginBody) = admit(&state, &req, &body.0)?;
    let client_id = resolve_client(&state.settings, credentials.client_id.as_deref())?
        .id
        .clone();
    origin_allowed_for(&state, &client_id, &request_origin)?;
    let mut credentials: login::Credentials = credentials.into();
    // The device token travels in its cookie here, never in the body.
    credentials.device_token = device_cookie_of(&state, &req);
    credentials.browser = true;
    let issued = login::login(&Issuing::of(&state), credentials, origin(&req)).await?;
    Ok(token_reply(&state, issued))
}

/// `/browser/login/mfa`: CSRF checks first, then the pending login's client must list
/// the request's Origin, then the code; the answer is `/browser/login`'s.
async fn login_mfa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (request_origin, step): (_, SecondStepBody) = admit(&state, &req, &body.0)?;
    let allowed = |client_id: &str| origin_allowed_for(&state, client_id, &request_origin);
    let mut step: mfa_login::SecondStep = step.into();
    // As at `/browser/login`: the device token comes from its cookie, never the body.
    step.device_token = device_cookie_of(&state, &req);
    step.browser = true;
    let issued =
        mfa_login::finish_login(&Issuing::of(&state), step, origin(&req), &allowed).await?;
    Ok(token_reply(&state, issued))
}

#[derive(Debug, Default, Deserialize)]
struct RefreshBody {
    #[serde(default)]
    scope: Option<String>,
}

/// The cookie's refresh token and its session, if the token is one we issued.
pub(super) async fn session_of_cookie(
    state: &AppState,
    raw: Option<String>,
) -> Result<Option<(String, Session)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let session = revoke::session_of_refresh_token(&state.store, &state.sealer, &raw).await?;
    Ok(session.map(|s| (raw, s)))
}

async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (origin, asked): (_, RefreshBody) = admit(&state, &req, &body.0)?;
    let scope = asked
        .scope
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(Scope::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidScope(e.into()))?;
    let raw = match refresh_cookie_of(&state, &req) {
        Ok(raw) => raw,
        Err(res) => return Ok(*res),
    };
    let Some((raw, session)) = session_of_cookie(&state, raw).await? else {
        let dead = ApiError::InvalidGrant("no valid refresh cookie; sign in again".into());
        return Ok(clearing(&state, &dead));
    };
    // The Origin must belong to the session's own client, checked before rotating.
    origin_allowed_for(&state, &session.client_id, &origin)?;
    let input = RefreshInput {
        raw_token: &raw,
        client_id: Some(&session.client_id),
        scope,
        ctx: client_context(&req),
    };
    match refresh::refresh(&Issuing::of(&state), input).await {
        Ok(issued) => Ok(token_reply(&state, issued)),
        // The cookie's token is dead (ended session, reuse, expiry): clear it.
        Err(e @ service::Error::InvalidGrant(_)) => Ok(clearing(&state, &e.into())),
        Err(e) => Err(e.into()),
    }
}

async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (origin, _): (_, serde_json::Map<String, serde_json::Value>) =
        admit(&state, &req, &body.0)?;
    let raw = match refresh_cookie_of(&state, &req) {
        Ok(raw) => raw,
        Err(res) => return Ok(*res),
    };
    if let Some((raw, session)) = session_of_cookie(&state, raw).await? {
        origin_allowed_for(&state, &session.client_id, &origin)?;
        let (client_id, ctx) = (Some(session.client_id.clone()), client_context(&req));
        revoke::revoke_token(
            &TokenLookup::of(&state),
            &raw,
            client_id,
            ctx,
            RevocationReason::Logout,
        )
        .await?;
    }
    // Cleared either way: a stale or unknown cookie is of no use to the browser.
    Ok(HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(clearing_cookie(&state))
        .finish())
}
