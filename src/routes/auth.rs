//! Bearer authentication for latchkey's own routes: the strict verifier, then a check
//! that the token's session and user are still live (logout takes effect at once here,
//! though offline resource servers only see it when the access token expires).

use actix_web::http::header;
use actix_web::{web, HttpRequest};

use crate::domain::sessions::ClientContext;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::queries::{self, SessionRow, UserRow};
use crate::tokens::AccessClaims;

pub struct Authenticated {
    pub claims: AccessClaims,
    pub session: SessionRow,
    pub user: UserRow,
}

impl Authenticated {
    pub fn has_role(&self, role: &str) -> bool {
        self.user.roles.iter().any(|r| r == role)
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

pub async fn authenticate(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Result<Authenticated, ApiError> {
    let token = bearer_token(req)?;
    let claims = state
        .tokens
        .verify(token)
        .map_err(|e| ApiError::InvalidToken(e.to_string()))?;
    let now = state.now();
    let (sid, sub) = (claims.sid.clone(), claims.sub.clone());
    let found = state
        .store
        .read(move |conn| {
            let session = queries::session_by_id(conn, &sid)?;
            let user = queries::user_by_id(conn, &sub)?;
            Ok((session, user))
        })
        .await?;
    match found {
        (Some(session), Some(user))
            if session.is_active(now)
                && session.user_id == user.id
                && user.disabled_at.is_none() =>
        {
            Ok(Authenticated {
                claims,
                session,
                user,
            })
        }
        _ => Err(ApiError::InvalidToken(
            "the access token's session has ended".into(),
        )),
    }
}

/// Where the request came from: the peer address, or, when the peer is one of
/// `server.trusted_proxies`, the right-most `X-Forwarded-For` address that is not itself
/// a trusted proxy (left-most entries are client-controlled and never believed alone).
/// Applies the per-IP request rate limit of `endpoint` (429 with `Retry-After`).
pub fn rate_limit(
    state: &AppState,
    req: &HttpRequest,
    endpoint: crate::ratelimit::Endpoint,
) -> Result<(), ApiError> {
    state.limits.check(endpoint, client_ip(req))
}

/// The client's address: the peer, or the right-most `X-Forwarded-For` address that is
/// not a trusted proxy when the peer is one.
pub fn client_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.settings.server.trusted_proxies.clone())
        .unwrap_or_default();
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut ip = peer;
    if peer.as_ref().is_some_and(is_trusted) {
        let forwarded: Vec<std::net::IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        if let Some(client) = forwarded.iter().rev().find(|a| !is_trusted(a)) {
            ip = Some(*client);
        }
    }
    ip
}

pub fn client_context(req: &HttpRequest) -> ClientContext {
    let ip = client_ip(req).map(|a| a.to_string());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    ClientContext { ip, user_agent }
}
