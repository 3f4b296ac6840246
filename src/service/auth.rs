//! Who is calling: a Bearer access token checked by the strict verifier, then its
//! session and user checked live in the store (so logout takes effect at once on
//! latchkey's own routes, though offline resource servers only see it when the access
//! token expires).

use crate::domain::model::{Session, User};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tokens::{AccessClaims, Audience};

pub struct Authenticated {
    pub claims: AccessClaims,
    pub session: Session,
    pub user: User,
}

impl Authenticated {
    pub fn has_role(&self, role: &str) -> bool {
        self.user.roles.iter().any(|r| r == role)
    }
}

/// A caller of latchkey's self-service routes (`/me*`, `/logout`): the token's `aud`
/// must include the issuer (docs/contract.md "Audiences"), so a token minted for a
/// resource server cannot act on latchkey.
pub async fn authenticate(state: &AppState, bearer: &str) -> Result<Authenticated, ApiError> {
    authenticate_for(state, bearer, Audience::Issuer).await
}

async fn authenticate_for(
    state: &AppState,
    bearer: &str,
    audience: Audience<'_>,
) -> Result<Authenticated, ApiError> {
    let claims = state
        .tokens
        .verify(bearer, audience)
        .map_err(|e| ApiError::InvalidToken(e.to_string()))?;
    let now = state.now();
    let (sid, sub) = (claims.sid.clone(), claims.sub.clone());
    let found = state
        .store
        .read(async move |tx| Ok((tx.session_by_id(&sid).await?, tx.user_by_id(&sub).await?)))
        .await?;
    match found {
        (Some(session), Some(user))
            if session.is_active(now) && session.user_id == user.id && user.is_enabled() =>
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

/// An admin (`/admin/*`): the token's `aud` must be the issuer alone, so no token a
/// resource server has seen can act as an admin (401 otherwise), and the user must have
/// the `admin` role (403 otherwise).
pub async fn authenticate_admin(state: &AppState, bearer: &str) -> Result<Authenticated, ApiError> {
    let auth = authenticate_for(state, bearer, Audience::IssuerOnly).await?;
    if auth.has_role("admin") {
        Ok(auth)
    } else {
        Err(ApiError::Forbidden("this needs the admin role".into()))
    }
}
