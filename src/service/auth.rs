//! Who is calling: a Bearer access token checked by the strict verifier, then its
//! session and user checked live in the store (so logout takes effect at once on
//! latchkey's own routes, though offline resource servers only see it when the access
//! token expires).

use super::Error;
use crate::clock::Millis;
use crate::config::{MfaSettings, Settings};
use crate::domain::model::{Session, User};
use crate::domain::{AuthMethod, SessionId, UserId};
use crate::store::Store;
use crate::tokens::{AccessClaims, Audience, TokenService};

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
#[tracing::instrument(skip_all)]
pub async fn authenticate(
    tokens: &TokenService,
    store: &Store,
    now: Millis,
    bearer: &str,
) -> Result<Authenticated, Error> {
    authenticate_for(tokens, store, now, bearer, Audience::Issuer).await
}

async fn authenticate_for(
    tokens: &TokenService,
    store: &Store,
    now: Millis,
    bearer: &str,
    audience: Audience<'_>,
) -> Result<Authenticated, Error> {
    let claims = tokens
        .verify(bearer, audience)
        .map_err(|e| Error::Unauthenticated(e.to_string()))?;
    // Claims in a form we never issue name no session or user: as if not found.
    let (sid, sub) = (SessionId::parse(&claims.sid), UserId::parse(&claims.sub));
    let found = store
        .read(async move |tx| {
            let session = match &sid {
                Some(sid) => tx.session_by_id(sid).await?,
                None => None,
            };
            let user = match &sub {
                Some(sub) => tx.user_by_id(sub).await?,
                None => None,
            };
            Ok((session, user))
        })
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
        _ => Err(Error::Unauthenticated(
            "the access token's session has ended".into(),
        )),
    }
}

/// An admin (`/admin/*`): the token's `aud` must be the issuer alone, so no token a
/// resource server has seen can act as an admin (401 otherwise), and the user must have
/// the `admin` role (403 otherwise).
#[tracing::instrument(skip_all)]
pub async fn authenticate_admin(
    tokens: &TokenService,
    store: &Store,
    settings: &Settings,
    now: Millis,
    bearer: &str,
) -> Result<Authenticated, Error> {
    let auth = authenticate_for(tokens, store, now, bearer, Audience::IssuerOnly).await?;
    if !auth.has_role("admin") {
        return Err(Error::Forbidden("this needs the admin role".into()));
    }
    // docs/contract.md "Second factor": with `admin.require_mfa`, every admin route
    // needs a recent login with a second factor (RFC 9470).
    if settings.admin.require_mfa {
        require_step_up(&settings.mfa, &auth, now)?;
    }
    Ok(auth)
}

/// RFC 9470 step-up: the session's login must have used a second factor (`otp` or `mfa`
/// in `amr`, RFC 8176 §2: a TOTP code, or a user-verified passkey alone or after the
/// password) and happened within `mfa.step_up_max_age`; otherwise
/// 401 `insufficient_user_authentication` with the `max_age` (and, when the factor is
/// what is missing, `acr_values`) a client needs to ask the user to log in again. The
/// session's values are the ones its tokens carry (`amr`, `auth_time`).
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub fn require_step_up(mfa: &MfaSettings, auth: &Authenticated, now: Millis) -> Result<(), Error> {
    let max_age = mfa.step_up_max_age;
    let amr = &auth.session.amr;
    let has_otp = amr.contains(&AuthMethod::Otp) || amr.contains(&AuthMethod::Mfa);
    let age_ms = now - auth.session.auth_time;
    if has_otp && age_ms <= max_age.as_millis_i64() {
        return Ok(());
    }
    let description = if has_otp {
        "this needs a recent login: sign in again with your second factor"
    } else {
        "this needs a login with a second factor: sign in again with your code"
    };
    Err(Error::StepUpRequired {
        description: description.into(),
        max_age: max_age.as_secs(),
        needs_mfa: !has_otp,
    })
}

/// Step-up for a user with an active second factor (TOTP or a passkey); nothing for one
/// without (`/me/password`, `DELETE /me`, `/me/email`, `/me/mfa/*`, `/me/passkeys/*`).
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn require_step_up_if_enrolled(
    store: &Store,
    mfa: &MfaSettings,
    auth: &Authenticated,
    now: Millis,
) -> Result<(), Error> {
    let user_id = auth.user.id.clone();
    let enrolled = store
        .read(async move |tx| crate::domain::mfa::has_active_factor(tx, &user_id).await)
        .await?;
    if enrolled {
        require_step_up(mfa, auth, now)?;
    }
    Ok(())
}
