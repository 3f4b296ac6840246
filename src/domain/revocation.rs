//! Ending sessions: the one place a session is revoked, with its event. Every path
//! (logout, `/oauth/revoke`, reuse detection, eviction, password change, disable,
//! admin and CLI) comes here; the store counts what it commits, by reason.

use crate::clock::Millis;
use crate::domain::model::{ClientContext, NewEvent, Session};
use crate::domain::repository::Tx;
use crate::domain::{EventKind, RevocationReason, SessionId, UserId};

/// Revokes a live session and records why. Returns whether it was live. The one place
/// a session is revoked: the store counts what it commits (metrics), by reason.
pub async fn revoke(
    tx: &mut dyn Tx,
    now: Millis,
    session: &Session,
    reason: RevocationReason,
    ctx: &ClientContext,
) -> anyhow::Result<bool> {
    let revoked = tx.revoke_session(&session.id, now, reason).await?;
    if revoked {
        let event = NewEvent::about_session(EventKind::SessionRevoked, session, ctx)
            .detail(serde_json::json!({ "reason": reason.as_str() }));
        tx.insert_event(now, &event).await?;
    }
    Ok(revoked)
}

/// Revokes every live session of `user_id` except `keep`; returns how many ended.
pub async fn revoke_all_of_user(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    keep: Option<&SessionId>,
    reason: RevocationReason,
    ctx: &ClientContext,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for s in tx.active_sessions_of_user(user_id, now).await? {
        if Some(&s.id) != keep && revoke(tx, now, &s, reason, ctx).await? {
            n += 1;
        }
    }
    Ok(n)
}
