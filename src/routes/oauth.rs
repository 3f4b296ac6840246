//! The OAuth endpoints: token (refresh and authorization code grants), revocation (RFC 7009) and
//! introspection (RFC 7662).

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::auth::client_context;
use super::extract::OAuthParams;
use super::responses::{name_caller, no_store_json};
use super::RouteTable;
use crate::domain::{RevocationReason, Scope};
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::issue::Issuing;
use crate::service::refresh::{self, RefreshInput};
use crate::service::revoke::TokenLookup;
use crate::service::{authorize, introspect, revoke};
use crate::state::AppState;

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
    match grant_type {
        "refresh_token" => {}
        "authorization_code" => return authorization_code(&state, &req, &params).await,
        _ => return Err(ApiError::UnsupportedGrantType),
    }
    let input = RefreshInput {
        raw_token: params.require("refresh_token")?,
        // Omitted: the client the token was issued to (docs/contract.md "Refresh
        // rotation, reuse detection, revocation", client binding).
        client_id: params.get("client_id"),
        scope: params
            .get("scope")
            .map(Scope::parse)
            .transpose()
            .map_err(|e| ApiError::InvalidScope(e.into()))?,
        ctx: client_context(&req),
    };
    let resource = params.get_all("resource");
    let issued = refresh::refresh_for(&Issuing::of(&state), input, &resource).await?;
    name_caller(&issued.session);
    Ok(no_store_json(&issued.body))
}

/// RFC 6749 §4.1.3 with RFC 7636 §4.5: a code from `/oauth/authorize` and its verifier.
async fn authorization_code(
    state: &AppState,
    req: &HttpRequest,
    params: &OAuthParams,
) -> Result<HttpResponse, ApiError> {
    let exchange = authorize::Exchange {
        code: params.require("code")?,
        redirect_uri: params.require("redirect_uri")?,
        code_verifier: params.require("code_verifier")?,
        client_id: params.get("client_id"),
        ctx: client_context(req),
    };
    let issued = authorize::exchange(&Issuing::of(state), exchange).await?;
    name_caller(&issued.session);
    Ok(no_store_json(&issued.body))
}

/// RFC 7009: always 200; revokes the whole session of a refresh or access token. A
/// public client names itself with `client_id` (optional); a resource server
/// authenticates (HTTP Basic or `client_secret_post`) and may revoke only access tokens
/// meant for it.
async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let basic = basic_credentials(&req)?;
    let params = OAuthParams::from_request(&req, &mut payload.into_inner()).await?;
    let raw = params.require("token")?;
    // RFC 7009 §2.1: the hint is only a hint; a wrong one changes nothing.
    let ctx = client_context(&req);
    match caller(&params, basic)? {
        Some((presented, by_basic)) => {
            let rs = introspect::authenticate_resource_server(
                &state.settings.resource_servers,
                &presented,
            )
            .ok_or(ApiError::InvalidClient { basic: by_basic })?;
            let (tokens, store) = (&state.tokens, &state.store);
            revoke::revoke_for_resource_server(tokens, store, state.now(), rs, raw, ctx).await?;
        }
        None => {
            let client_id = params.get("client_id").map(str::to_owned);
            let reason = RevocationReason::Revoked;
            revoke::revoke_token(&TokenLookup::of(&state), raw, client_id, ctx, reason).await?;
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// RFC 7662, for configured resource servers: HTTP Basic (checked before the body is
/// read) or `client_id` + `client_secret` in the body (RFC 6749 §2.3.1).
async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let unauthorized = || ApiError::InvalidClient { basic: true };
    let basic = basic_credentials(&req)?;
    // RFC 7662 §2.1: with Basic, authenticate before looking at the body at all.
    if let Some(presented) = &basic {
        introspect::authenticate_resource_server(&state.settings.resource_servers, presented)
            .ok_or_else(unauthorized)?;
    }
    // Without credentials, an unreadable body is still "not authenticated" (401).
    let from_body = basic.is_none();
    let params = match OAuthParams::from_request(&req, &mut payload.into_inner()).await {
        Ok(p) => p,
        Err(_) if from_body => return Err(unauthorized()),
        Err(e) => return Err(e),
    };
    let (presented, _) = caller(&params, basic)?.ok_or_else(unauthorized)?;
    let rs = introspect::authenticate_resource_server(&state.settings.resource_servers, &presented)
        .ok_or_else(unauthorized)?;
    let token = params.require("token")?;
    let body = introspect::introspect(&state.tokens, &state.store, state.now(), rs, token).await?;
    Ok(no_store_json(&body))
}

/// The resource server a request authenticates as by HTTP Basic, for endpoints that take
/// no body (the revocation feed); 401 `invalid_client` otherwise.
pub(crate) fn authenticate_resource_server<'a>(
    state: &'a AppState,
    req: &HttpRequest,
) -> Result<&'a crate::config::ResourceServerSettings, ApiError> {
    let presented = basic_credentials(req)?.ok_or(ApiError::InvalidClient { basic: true })?;
    introspect::authenticate_resource_server(&state.settings.resource_servers, &presented)
        .ok_or(ApiError::InvalidClient { basic: true })
}

/// The credentials a request carries, and whether they came by HTTP Basic. RFC 6749
/// §2.3 has a client use one method per request; when a request sends both, HTTP Basic
/// is the one checked and a `client_secret` in the body is ignored.
fn caller(
    params: &OAuthParams,
    basic: Option<introspect::Presented>,
) -> Result<Option<(introspect::Presented, bool)>, ApiError> {
    match (basic, params.get("client_secret")) {
        (Some(b), _) => Ok(Some((b, true))),
        (None, Some(secret)) => {
            let id = params.get("client_id").unwrap_or_default();
            let pairs = vec![(id.to_owned(), secret.to_owned())];
            Ok(Some((introspect::Presented { pairs }, false)))
        }
        (None, None) => Ok(None),
    }
}

/// HTTP Basic credentials (RFC 7617), if the request has an `Authorization` header; a
/// header that is not well-formed Basic is 401. RFC 6749 §2.3.1 says id and secret are
/// form-urlencoded first, but many clients (Authlib, `requests`' `auth=`, `curl -u`)
/// send them raw, so both readings are offered; `+`, `%` and `&` in a secret then work
/// either way.
fn basic_credentials(req: &HttpRequest) -> Result<Option<introspect::Presented>, ApiError> {
    let unauthorized = ApiError::InvalidClient { basic: true };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidClient { basic: true })?;
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
    let form_decode = |s: &str| -> Option<String> {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let mut pairs = vec![(id.to_owned(), secret.to_owned())];
    if let (Some(i), Some(s)) = (form_decode(id), form_decode(secret)) {
        pairs.push((i, s));
    }
    Ok(Some(introspect::Presented { pairs }))
}
