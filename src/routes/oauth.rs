//! The OAuth endpoints: token (refresh grant only), revocation (RFC 7009) and
//! introspection (RFC 7662).

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::auth::client_context;
use super::extract::OAuthParams;
use super::responses::no_store_json;
use super::RouteTable;
use crate::domain::{RevocationReason, Scope};
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::refresh::{self, RefreshInput};
use crate::service::{introspect, revoke};
use crate::startup::AppState;

pub fn configure(t: &mut RouteTable) {
    t.post("/oauth/token", token).rate_limited(Endpoint::Token);
    t.post("/oauth/revoke", revoke)
        .rate_limited(Endpoint::Revoke);
    t.post("/oauth/introspect", introspect)
        .rate_limited(Endpoint::Introspect);
}

async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: OAuthParams,
) -> Result<HttpResponse, ApiError> {
    let grant_type = params.require("grant_type")?;
    // RFC 9700 §2.4: no password grant; RFC 6749 §5.2: anything else is unsupported.
    if grant_type != "refresh_token" {
        return Err(ApiError::UnsupportedGrantType);
    }
    let input = RefreshInput {
        raw_token: params.require("refresh_token")?,
        client_id: params.get("client_id"),
        scope: params
            .get("scope")
            .map(Scope::parse)
            .transpose()
            .map_err(|e| ApiError::InvalidScope(e.into()))?,
        ctx: client_context(&req),
    };
    let issued = refresh::refresh(&state, input).await?;
    Ok(no_store_json(&issued.body))
}

/// RFC 7009: always 200; revokes the whole session of a refresh or access token.
async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: OAuthParams,
) -> Result<HttpResponse, ApiError> {
    let raw = params.require("token")?;
    // RFC 7009 §2.1: the hint is only a hint; a wrong one changes nothing.
    let client_id = params.get("client_id").map(str::to_owned);
    let reason = RevocationReason::Revoked;
    revoke::revoke_token(&state, raw, client_id, client_context(&req), reason).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// RFC 7662, for configured resource servers (HTTP Basic).
async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // RFC 7662 §2.1: authenticate before looking at the body at all.
    authenticate_resource_server(&state, &req)?;
    let params = OAuthParams::from_request(&req, &mut payload.into_inner()).await?;
    let body = introspect::introspect(&state, params.require("token")?).await?;
    Ok(no_store_json(&body))
}

pub(crate) fn authenticate_resource_server(
    state: &AppState,
    req: &HttpRequest,
) -> Result<(), ApiError> {
    let unauthorized = ApiError::InvalidClient { basic: true };
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::InvalidClient { basic: true })?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(unauthorized);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(unauthorized);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(ApiError::InvalidClient { basic: true })?;
    let Some((id, secret)) = decoded.split_once(':') else {
        return Err(unauthorized);
    };
    // RFC 6749 §2.3.1: id and secret are form-urlencoded inside Basic.
    let decode = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (decode(id), decode(secret));
    let ok = state.settings.resource_servers.iter().any(|rs| {
        rs.id == id && constant_time_eq(rs.secret.expose().as_bytes(), secret.as_bytes())
    });
    if ok {
        Ok(())
    } else {
        Err(unauthorized)
    }
}

/// Compares SHA-256 digests so neither length nor content leaks through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a);
    let db = ring::digest::digest(&ring::digest::SHA256, b);
    da.as_ref()
        .iter()
        .zip(db.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
