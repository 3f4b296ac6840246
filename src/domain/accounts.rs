//! Accounts: creation, password change, disabling and erasure. Each function runs
//! inside one store transaction; no HTTP here.

use crate::clock::Millis;
use crate::domain::model::{ClientContext, NewEvent, User};
use crate::domain::repository::Tx;
use crate::domain::revocation;
use crate::domain::{EventKind, RevocationReason, SessionId, UserId, Username};

pub enum SignupOutcome {
    Created(User),
    /// Another account has this name's key (RFC 8265 UsernameCaseMapped).
    Taken,
    /// Another account's name looks like this one (same UTS #39 skeleton).
    Confusable,
}

/// Inserts a user unless the name is taken or looks like a taken one (see
/// `domain/username.rs`). `password_hash` is a PHC string computed before the write,
/// off the writer thread.
pub async fn create_user(
    tx: &mut dyn Tx,
    now: Millis,
    username: &Username,
    password_hash: String,
    roles: Vec<String>,
) -> anyhow::Result<SignupOutcome> {
    if tx.user_by_username_key(&username.key()).await?.is_some() {
        return Ok(SignupOutcome::Taken);
    }
    if tx.username_skeleton_taken(&username.skeleton()).await? {
        return Ok(SignupOutcome::Confusable);
    }
    let user = User {
        id: UserId::new_random(),
        username: username.as_str().to_owned(),
        password_hash,
        roles,
        created_at: now,
        disabled_at: None,
    };
    tx.insert_user(&user, &username.key(), &username.skeleton())
        .await?;
    tx.insert_event(now, &NewEvent::new(EventKind::UserCreated).user(&user.id))
        .await?;
    Ok(SignupOutcome::Created(user))
}

/// Sets a new password hash and ends every other session of the user (OWASP Session
/// Management: renew sessions on privilege change; ASVS v5 7.4.3).
pub async fn change_password(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    keep_session: &SessionId,
    client_id: &str,
    new_hash: &str,
    ctx: &ClientContext,
) -> anyhow::Result<usize> {
    tx.set_password_hash(user_id, new_hash).await?;
    let ended = revocation::revoke_all_of_user(
        tx,
        now,
        user_id,
        Some(keep_session),
        RevocationReason::PasswordChange,
        ctx,
    )
    .await?;
    let event = NewEvent::new(EventKind::PasswordChanged)
        .user(user_id)
        .session(keep_session)
        .client(client_id)
        .from(ctx)
        .detail(serde_json::json!({ "other_sessions_ended": ended }));
    tx.insert_event(now, &event).await?;
    Ok(ended)
}

/// Disables the account and ends all its sessions. `false` if there is no such user.
pub async fn disable_user(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    ctx: &ClientContext,
) -> anyhow::Result<bool> {
    if tx.user_by_id(user_id).await?.is_none() {
        return Ok(false);
    }
    if !tx.set_disabled(user_id, now).await? {
        return Ok(true); // already disabled: nothing to end, nothing to record
    }
    revocation::revoke_all_of_user(tx, now, user_id, None, RevocationReason::UserDisabled, ctx)
        .await?;
    let event = NewEvent::new(EventKind::UserDisabled)
        .user(user_id)
        .from(ctx);
    tx.insert_event(now, &event).await?;
    Ok(true)
}

/// GDPR erasure: the user row, its sessions and tokens and its events are deleted (its
/// `login_failed` and `login_throttled` events among them), and the store's files are
/// scrubbed of them once this commits. An anonymous `user_deleted` event (no user id,
/// no name, no address) records that an erasure happened. `false` if there is no such
/// user.
pub async fn delete_user(tx: &mut dyn Tx, now: Millis, user_id: &UserId) -> anyhow::Result<bool> {
    if !tx.delete_user(user_id, now).await? {
        return Ok(false);
    }
    tx.scrub_after_commit().await?;
    tx.insert_event(now, &NewEvent::new(EventKind::UserDeleted))
        .await?;
    Ok(true)
}
