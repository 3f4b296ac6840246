//! The OAuth endpoints: token (refresh grant only), revocation (RFC 7009) and
//! introspection (RFC 7662).

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::auth::{client_context, rate_limit};
use super::extract::OAuthParams;
use super::responses::{no_store_json, token_response, TokenResponse};
use super::RouteTable;
use crate::config::ClientSettings;
use crate::domain::rotation::{self, RefreshOutcome, RefreshRequest};
use crate::domain::sessions::{self, ClientContext};
use crate::domain::{RefreshToken, Scope};
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::startup::AppState;
use crate::store::queries::{self, SessionRow};

pub fn configure(t: &mut RouteTable) {
    t.post("/oauth/token", token);
    t.post("/oauth/revoke", revoke);
    t.post("/oauth/introspect", introspect);
}

async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: OAuthParams,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req, Endpoint::Token)?;
    let grant_type = params.require("grant_type")?;
    // RFC 9700 §2.4: no password grant; RFC 6749 §5.2: anything else is unsupported.
    if grant_type != "refresh_token" {
        return Err(ApiError::UnsupportedGrantType);
    }
    let raw = params.require("refresh_token")?;
    let scope = params
        .get("scope")
        .map(Scope::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidScope(e.into()))?;
    let body = refresh_grant(
        &state,
        raw,
        params.get("client_id"),
        scope,
        client_context(&req),
        true,
    )
    .await?
    .0;
    Ok(no_store_json(&body))
}

/// Runs the refresh grant; shared by `/oauth/token` and `/browser/refresh`.
/// Returns the response body and the session's end (for the browser cookie).
pub async fn refresh_grant(
    state: &web::Data<AppState>,
    raw_token: &str,
    client_id: Option<&str>,
    scope: Option<Scope>,
    ctx: ClientContext,
    refresh_in_body: bool,
) -> Result<(TokenResponse, RefreshToken, SessionRow), ApiError> {
    let Ok(token) = RefreshToken::parse(raw_token) else {
        return Err(ApiError::InvalidGrant(
            "the refresh token is invalid".into(),
        ));
    };
    if let Some(id) = client_id {
        if state.settings.client(id).is_none() {
            return Err(ApiError::InvalidClient { basic: false });
        }
    }
    let request = RefreshRequest {
        token,
        client_id: client_id.map(str::to_owned),
        scope,
        reuse_interval_ms: state.settings.refresh.reuse_interval.as_millis_i64(),
        ctx,
    };
    let (now, rng, sealer, settings) = (
        state.now(),
        state.rng.clone(),
        state.sealer.clone(),
        state.settings.clone(),
    );
    let outcome = state
        .store
        .write(move |conn| {
            rotation::refresh(conn, now, &rng, &sealer, &request, |s| {
                settings
                    .lifetimes(settings.client(&s.client_id), s.remember_me)
                    .idle_ms
            })
        })
        .await?;
    state.metrics.refresh(match &outcome {
        RefreshOutcome::Rotated(_) => "rotated",
        RefreshOutcome::Replayed(_) => "replayed",
        RefreshOutcome::Rejected(_) => "rejected",
        RefreshOutcome::ReuseDetected => "reuse_detected",
    });
    let granted = match outcome {
        RefreshOutcome::Rotated(g) | RefreshOutcome::Replayed(g) => g,
        RefreshOutcome::Rejected(rotation::Rejection::ScopeTooWide) => {
            return Err(ApiError::InvalidScope(
                rotation::Rejection::ScopeTooWide.description().into(),
            ))
        }
        RefreshOutcome::Rejected(r) => return Err(ApiError::InvalidGrant(r.description().into())),
        RefreshOutcome::ReuseDetected => {
            tracing::warn!("refresh token reuse detected; session revoked");
            state.metrics.revoked("reuse", 1);
            return Err(ApiError::InvalidGrant(
                rotation::Rejection::SessionEnded.description().into(),
            ));
        }
    };
    let client: ClientSettings = state
        .settings
        .client(&granted.session.client_id)
        .cloned()
        .ok_or_else(|| ApiError::InvalidGrant("the client no longer exists".into()))?;
    let body = token_response(
        state,
        &client,
        &granted.session,
        &granted.user,
        granted.scope.clone(),
        refresh_in_body.then_some(&granted.token),
        now,
    )?;
    Ok((body, granted.token, granted.session))
}

/// RFC 7009: always 200; revokes the whole session of a refresh or access token.
async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: OAuthParams,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req, Endpoint::Revoke)?;
    let raw = params.require("token")?;
    // RFC 7009 §2.1: the hint is only a hint; a wrong one changes nothing.
    let client_id = params.get("client_id").map(str::to_owned);
    let ctx = client_context(&req);
    revoke_token(&state, raw, client_id, ctx, "revoked").await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// Revokes the session behind `raw` (refresh token or access JWT), if there is one.
pub async fn revoke_token(
    state: &web::Data<AppState>,
    raw: &str,
    client_id: Option<String>,
    ctx: ClientContext,
    reason: &'static str,
) -> Result<bool, ApiError> {
    let session_id = match RefreshToken::parse(raw) {
        Ok(t) => {
            let hash = t.hash();
            state
                .store
                .read(move |conn| Ok(queries::token_by_hash(conn, &hash)?.map(|r| r.session_id)))
                .await?
        }
        Err(_) => state.tokens.verify(raw).ok().map(|c| c.sid),
    };
    let Some(session_id) = session_id else {
        return Ok(false);
    };
    let now = state.now();
    let revoked = state
        .store
        .write(move |conn| {
            let Some(session) = queries::session_by_id(conn, &session_id)? else {
                return Ok(false);
            };
            if client_id.as_deref().is_some_and(|c| c != session.client_id) {
                return Ok(false);
            }
            sessions::revoke(conn, now, &session, reason, &ctx)
        })
        .await?;
    if revoked {
        state.metrics.revoked(reason, 1);
    }
    Ok(revoked)
}

/// RFC 7662: authenticated by a configured resource server (HTTP Basic); answers from
/// the store, so a revocation shows at once. Anything not active is `{"active":false}`
/// and nothing else (RFC 7662 §2.2).
async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req, Endpoint::Introspect)?;
    // RFC 7662 §2.1: authenticate before looking at the body at all.
    authenticate_resource_server(&state, &req)?;
    let params = OAuthParams::from_request(&req, &mut payload.into_inner()).await?;
    let raw = params.require("token")?;
    let now = state.now();
    let inactive = || no_store_json(&json!({"active": false}));

    if let Ok(t) = RefreshToken::parse(raw) {
        let hash = t.hash();
        let found = state
            .store
            .read(move |conn| {
                let Some(row) = queries::token_by_hash(conn, &hash)? else {
                    return Ok(None);
                };
                let session = queries::session_by_id(conn, &row.session_id)?;
                let user = match &session {
                    Some(s) => queries::user_by_id(conn, &s.user_id)?,
                    None => None,
                };
                Ok(Some((row, session, user)))
            })
            .await?;
        return Ok(match found {
            Some((row, Some(s), Some(u)))
                if row.generation == s.head_generation
                    && s.is_active(now)
                    && u.disabled_at.is_none() =>
            {
                no_store_json(&json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "iss": state.settings.issuer,
                    "sub": s.user_id,
                    "username": u.username,
                    "sid": s.id,
                    "client_id": s.client_id,
                    "scope": s.scope,
                    "iat": row.issued_at / 1000,
                    "exp": s.ends_at() / 1000,
                }))
            }
            _ => inactive(),
        });
    }

    // The issuer is the authority on expiry: no leeway here (RFC 7662 §2.2).
    let Ok(claims) = state.tokens.verify(raw) else {
        return Ok(inactive());
    };
    if claims.exp <= now / 1000 {
        return Ok(inactive());
    }
    let (sid, sub) = (claims.sid.clone(), claims.sub.clone());
    let live = state
        .store
        .read(move |conn| {
            let s = queries::session_by_id(conn, &sid)?;
            let u = queries::user_by_id(conn, &sub)?;
            Ok(match (s, u) {
                (Some(s), Some(u)) if s.is_active(now) && u.disabled_at.is_none() => Some(u),
                _ => None,
            })
        })
        .await?;
    let Some(user) = live else {
        return Ok(inactive());
    };
    let mut body = serde_json::to_value(&claims).map_err(ApiError::internal)?;
    if let Value::Object(m) = &mut body {
        m.insert("active".into(), json!(true));
        m.insert("token_type".into(), json!("Bearer"));
        m.insert("username".into(), json!(user.username));
    }
    Ok(no_store_json(&body))
}

fn authenticate_resource_server(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
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
