//! Response helpers shared by the token-issuing routes.

use actix_web::http::header;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::clock::Millis;
use crate::config::ClientSettings;
use crate::domain::RefreshToken;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::queries::{SessionRow, UserRow};
use crate::tokens::MintRequest;

/// The token response of API.md (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub refresh_token_expires_in: u64,
    pub session_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// Mints an access token for `session` and builds the response body. `refresh` is
/// `None` in browser mode, where the refresh token travels only in the cookie.
pub fn token_response(
    state: &AppState,
    client: &ClientSettings,
    session: &SessionRow,
    user: &UserRow,
    scope: String,
    refresh: Option<&RefreshToken>,
    now: Millis,
) -> Result<TokenResponse, ApiError> {
    let ttl = state.settings.access_ttl(client).as_secs();
    // An access token never outlives its session.
    let session_left = u64::try_from((session.ends_at() - now) / 1000).unwrap_or(0);
    let minted = state
        .tokens
        .mint(MintRequest {
            user_id: &user.id,
            audience: &client.audience,
            client_id: &client.id,
            session_id: &session.id,
            scope: scope.clone(),
            roles: user.roles.clone(),
            ttl_secs: ttl.min(session_left.max(1)),
        })
        .map_err(ApiError::Internal)?;
    Ok(TokenResponse {
        access_token: minted.jwt,
        token_type: "Bearer",
        expires_in: minted.expires_in,
        refresh_token: refresh.map(|t| t.expose().to_owned()),
        refresh_token_expires_in: session_left,
        session_id: session.id.clone(),
        scope,
    })
}

/// 200 JSON with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub fn no_store_json(body: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}
