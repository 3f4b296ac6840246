//! Ending sessions on request: token revocation (RFC 7009), logout in its three scopes,
//! and a user ending one of their own sessions.

use std::sync::Arc;

use super::auth::Authenticated;
use super::Error;
use crate::clock::Millis;
use crate::domain::model::{ClientContext, NewEvent, Session};
use crate::domain::{revocation, rotation};
use crate::domain::{EventKind, RefreshToken, RevocationReason, SessionId};
use crate::keys::Sealer;
use crate::state::AppState;
use crate::store::Store;
use crate::tokens::{Audience, TokenService};

/// What finding the session behind a presented token needs: refresh tokens are looked
/// up sealed in the store, access tokens checked by the verifier.
#[derive(Clone, Copy)]
pub struct TokenLookup<'a> {
    pub store: &'a Store,
    pub sealer: &'a Arc<Sealer>,
    pub tokens: &'a TokenService,
    pub now: Millis,
}

impl<'a> TokenLookup<'a> {
    pub fn of(state: &'a AppState) -> Self {
        Self {
            store: &state.store,
            sealer: &state.sealer,
            tokens: &state.tokens,
            now: state.now(),
        }
    }
}

/// The session a refresh token belongs to, if it is one we issued (any generation).
#[tracing::instrument(skip_all)]
pub async fn session_of_refresh_token(
    store: &Store,
    sealer: &Arc<Sealer>,
    raw: &str,
) -> Result<Option<Session>, Error> {
    let Ok(token) = RefreshToken::parse(raw) else {
        return Ok(None);
    };
    let keys = sealer.clone();
    Ok(store
        .read(async move |tx| {
            let found = rotation::find(tx, keys.as_ref(), &token).await?;
            Ok(found.map(|f| f.session))
        })
        .await?)
}

/// Revokes the session behind `raw` (a refresh token or an access JWT), if there is one
/// and it belongs to `client_id` when that is given. Whether one was revoked.
#[tracing::instrument(skip_all)]
pub async fn revoke_token(
    lookup: &TokenLookup<'_>,
    raw: &str,
    client_id: Option<String>,
    ctx: ClientContext,
    reason: RevocationReason,
) -> Result<bool, Error> {
    let session_id = match RefreshToken::parse(raw) {
        Ok(_) => session_of_refresh_token(lookup.store, lookup.sealer, raw)
            .await?
            .map(|s| s.id),
        Err(_) => lookup
            .tokens
            .verify(raw, Audience::Issued)
            .ok()
            // A `sid` in a form we never issue names no session.
            .and_then(|c| SessionId::parse(&c.sid)),
    };
    let Some(session_id) = session_id else {
        return Ok(false);
    };
    let now = lookup.now;
    Ok(lookup
        .store
        .write(async move |tx| {
            let Some(session) = tx.session_by_id(&session_id).await? else {
                return Ok(false);
            };
            if client_id.as_deref().is_some_and(|c| c != session.client_id) {
                return Ok(false);
            }
            revocation::revoke(tx, now, &session, reason, &ctx).await
        })
        .await?)
}

/// Revocation by an authenticated resource server (RFC 7009 §2.1: a client may revoke
/// only tokens issued to it): an access token whose `aud` includes one of `rs`'s
/// audiences ends its session. Anything else (a refresh token, another audience's token)
/// is left alone and, like an unknown token, still answers 200. Whether one was revoked.
#[tracing::instrument(skip_all, fields(resource_server = %rs.id))]
pub async fn revoke_for_resource_server(
    tokens: &TokenService,
    store: &Store,
    now: Millis,
    rs: &crate::config::ResourceServerSettings,
    raw: &str,
    ctx: ClientContext,
) -> Result<bool, Error> {
    if RefreshToken::parse(raw).is_ok() {
        return Ok(false);
    }
    let Ok(claims) = tokens.verify(raw, Audience::AnyOf(&rs.audiences)) else {
        return Ok(false);
    };
    // A `sid` in a form we never issue names no session.
    let Some(sid) = SessionId::parse(&claims.sid) else {
        return Ok(false);
    };
    Ok(store
        .write(async move |tx| match tx.session_by_id(&sid).await? {
            Some(session) => {
                revocation::revoke(tx, now, &session, RevocationReason::Revoked, &ctx).await
            }
            None => Ok(false),
        })
        .await?)
}

/// Which of the caller's sessions `POST /logout` ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogoutScope {
    /// This session only.
    #[default]
    Local,
    /// Every session of the user but this one.
    Others,
    /// Every session of the user.
    Global,
}

impl LogoutScope {
    fn reason(self) -> RevocationReason {
        match self {
            LogoutScope::Local => RevocationReason::Logout,
            LogoutScope::Others => RevocationReason::LogoutOthers,
            LogoutScope::Global => RevocationReason::LogoutGlobal,
        }
    }

    fn ends(self, is_current: bool) -> bool {
        match self {
            LogoutScope::Local => is_current,
            LogoutScope::Others => !is_current,
            LogoutScope::Global => true,
        }
    }
}

/// Ends the caller's sessions that `scope` names and records a `logout` event.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id, scope = ?scope))]
pub async fn logout(
    store: &Store,
    now: Millis,
    auth: &Authenticated,
    scope: LogoutScope,
    ctx: ClientContext,
) -> Result<usize, Error> {
    let current = auth.session.clone();
    Ok(store
        .write(async move |tx| {
            let reason = scope.reason();
            let mut ended = 0;
            for s in tx.active_sessions_of_user(&current.user_id, now).await? {
                if scope.ends(s.id == current.id)
                    && revocation::revoke(tx, now, &s, reason, &ctx).await?
                {
                    ended += 1;
                }
            }
            let event = NewEvent::about_session(EventKind::Logout, &current, &ctx)
                .detail(serde_json::json!({ "scope": reason.as_str() }));
            tx.insert_event(now, &event).await?;
            Ok(ended)
        })
        .await?)
}

/// Ends one of the caller's own sessions. `NotFound` for anyone else's: someone else's
/// session is indistinguishable from no session.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id, ended = %session_id))]
pub async fn end_own_session(
    store: &Store,
    now: Millis,
    auth: &Authenticated,
    session_id: SessionId,
    ctx: ClientContext,
) -> Result<(), Error> {
    let user_id = auth.user.id.clone();
    let ended = store
        .write(async move |tx| match tx.session_by_id(&session_id).await? {
            Some(s) if s.user_id == user_id && s.is_active(now) => {
                revocation::revoke(tx, now, &s, RevocationReason::UserRevoked, &ctx).await
            }
            _ => Ok(false),
        })
        .await?;
    if ended {
        Ok(())
    } else {
        Err(no_such_session())
    }
}

pub fn no_such_session() -> Error {
    Error::NotFound("no such session".into())
}
