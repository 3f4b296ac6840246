//! Listing and ending sessions: a user's own devices, and the operator's views (the
//! admin routes and `latchkey sessions`).

use super::Error;
use crate::clock::Millis;
use crate::domain::model::{ClientContext, Session};
use crate::domain::{revocation, RevocationReason, UserId};
use crate::store::Store;

/// The user's live sessions, oldest first.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn active_sessions(
    store: &Store,
    now: Millis,
    user_id: &UserId,
) -> Result<Vec<Session>, Error> {
    let id = user_id.clone();
    Ok(store
        .read(async move |tx| tx.active_sessions_of_user(&id, now).await)
        .await?)
}

/// An operator's view of a user's live sessions; `NotFound` if there is no such user.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn sessions_of_user(
    store: &Store,
    now: Millis,
    user_id: UserId,
) -> Result<Vec<Session>, Error> {
    store
        .read(async move |tx| {
            if tx.user_by_id(&user_id).await?.is_none() {
                return Ok(None);
            }
            Ok(Some(tx.active_sessions_of_user(&user_id, now).await?))
        })
        .await?
        .ok_or_else(no_such_user)
}

/// User-wide revocation by an operator; how many sessions ended.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn revoke_all_of_user(
    store: &Store,
    now: Millis,
    user_id: UserId,
    ctx: ClientContext,
) -> Result<usize, Error> {
    store
        .write(async move |tx| {
            if tx.user_by_id(&user_id).await?.is_none() {
                return Ok(None);
            }
            let reason = RevocationReason::Admin;
            Ok(Some(
                revocation::revoke_all_of_user(tx, now, &user_id, None, reason, &ctx).await?,
            ))
        })
        .await?
        .ok_or_else(no_such_user)
}

pub fn no_such_user() -> Error {
    Error::NotFound("no such user".into())
}
