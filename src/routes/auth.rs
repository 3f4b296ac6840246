//! Who is calling, for routes: the `Authenticated` and `Admin` extractors (Bearer
//! access token, checked by `service::auth`), and where the request came from.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use super::responses::name_caller;
use crate::config::ForwardedHeader;
use crate::domain::model::ClientContext;
use crate::error::ApiError;
pub use crate::service::auth::Authenticated;
use crate::service::auth::{authenticate, authenticate_admin};
use crate::state::AppState;

/// An authenticated caller with the `admin` role.
pub struct Admin(pub Authenticated);

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

fn bearer_and_state(req: &HttpRequest) -> Result<(String, web::Data<AppState>), ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no application state")))?;
    Ok((bearer_token(req)?.to_owned(), state))
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = bearer_and_state(req);
        Box::pin(async move {
            let (token, state) = found?;
            let auth = authenticate(&state.tokens, &state.store, state.now(), &token).await?;
            name_caller(&auth.session);
            Ok(auth)
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = bearer_and_state(req);
        Box::pin(async move {
            let (token, state) = found?;
            let auth = authenticate_admin(
                &state.tokens,
                &state.store,
                &state.settings,
                state.now(),
                &token,
            )
            .await?;
            name_caller(&auth.session);
            Ok(Admin(auth))
        })
    }
}

pub fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::InvalidToken("missing Bearer access token".into()))?
        .to_str()
        .map_err(|_| ApiError::InvalidToken("malformed Authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::InvalidToken("malformed Authorization header".into()))?;
    // RFC 6750 §2.1: the scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::InvalidToken(
            "expected a Bearer access token".into(),
        ));
    }
    Ok(token.trim())
}

/// The client's address: the peer, or, when the peer is one of
/// `server.trusted_proxies`, the right-most entry of `server.forwarded_header` that is
/// not itself a trusted proxy, and the peer if that entry is not an address (see
/// `client_addr`: left-most entries are client-controlled and never believed).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return peer;
    };
    let server = &state.settings.server;
    let is_trusted = |ip: &IpAddr| server.trusted_proxies.iter().any(|n| n.contains(ip));
    let name = match server.forwarded_header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    // A header line that is not text cannot be read, so it ends the walk like an
    // entry that is not an address.
    let lines = req
        .headers()
        .get_all(name)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    super::client_addr::client_ip(peer, is_trusted, server.forwarded_header, lines)
}

pub fn client_context(req: &HttpRequest) -> ClientContext {
    let ip = client_ip(req).map(|a| a.to_string());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    ClientContext {
        ip,
        user_agent,
        admin: None,
    }
}

/// Where a login attempt came from (events, sessions and throttling).
pub fn origin(req: &HttpRequest) -> crate::service::login::Origin {
    crate::service::login::Origin {
        ctx: client_context(req),
        ip: client_ip(req),
    }
}
