//! Accounts: creation and lookup. Runs inside store jobs; no HTTP here.

use rusqlite::Connection;

use crate::clock::Millis;
use crate::domain::Username;
use crate::store::queries::{self, NewEvent, UserRow};

pub enum SignupOutcome {
    Created(UserRow),
    Taken,
}

/// Inserts a user unless the (case-insensitive) name is taken. `password_hash` is a PHC
/// string computed before the write, off the writer thread.
pub fn create_user(
    conn: &Connection,
    now: Millis,
    username: &Username,
    password_hash: String,
    roles: Vec<String>,
) -> anyhow::Result<SignupOutcome> {
    if queries::user_by_username_key(conn, &username.key())?.is_some() {
        return Ok(SignupOutcome::Taken);
    }
    let user = UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.as_str().to_owned(),
        password_hash,
        roles,
        created_at: now,
        disabled_at: None,
    };
    queries::insert_user(conn, &user, &username.key())?;
    queries::insert_event(
        conn,
        now,
        &NewEvent {
            kind: "user_created",
            user_id: Some(&user.id),
            ..Default::default()
        },
    )?;
    Ok(SignupOutcome::Created(user))
}

use crate::domain::sessions::{self, ClientContext};

/// Sets a new password hash and ends every other session of the user (OWASP Session
/// Management: renew sessions on privilege change; ASVS v5 7.4.3).
pub fn change_password(
    conn: &Connection,
    now: Millis,
    user_id: &str,
    keep_session: &str,
    client_id: Option<&str>,
    new_hash: &str,
    ctx: &ClientContext,
) -> anyhow::Result<usize> {
    queries::set_password_hash(conn, user_id, new_hash)?;
    let ended = sessions::revoke_all_of_user(
        conn,
        now,
        user_id,
        Some(keep_session),
        "password_change",
        ctx,
    )?;
    queries::insert_event(
        conn,
        now,
        &NewEvent {
            kind: "password_changed",
            user_id: Some(user_id),
            session_id: Some(keep_session),
            client_id,
            ip: ctx.ip.as_deref(),
            user_agent: ctx.user_agent.as_deref(),
            detail: Some(serde_json::json!({ "other_sessions_ended": ended })),
        },
    )?;
    Ok(ended)
}

/// Disables the account and ends all its sessions. `false` if there is no such user.
pub fn disable_user(
    conn: &Connection,
    now: Millis,
    user_id: &str,
    ctx: &ClientContext,
) -> anyhow::Result<bool> {
    if queries::user_by_id(conn, user_id)?.is_none() {
        return Ok(false);
    }
    if !queries::set_disabled(conn, user_id, now)? {
        return Ok(true); // already disabled: nothing to end, nothing to record
    }
    sessions::revoke_all_of_user(conn, now, user_id, None, "user_disabled", ctx)?;
    queries::insert_event(
        conn,
        now,
        &NewEvent {
            kind: "user_disabled",
            user_id: Some(user_id),
            ip: ctx.ip.as_deref(),
            user_agent: ctx.user_agent.as_deref(),
            ..Default::default()
        },
    )?;
    Ok(true)
}

/// GDPR erasure: the user row, its sessions and tokens (cascade) and its events are
/// deleted. An anonymous `user_deleted` event (no user id, no name) records that an
/// erasure happened. `false` if there is no such user.
pub fn delete_user(conn: &Connection, now: Millis, user_id: &str) -> anyhow::Result<bool> {
    if !queries::delete_user(conn, user_id)? {
        return Ok(false);
    }
    queries::insert_event(
        conn,
        now,
        &NewEvent {
            kind: "user_deleted",
            ..Default::default()
        },
    )?;
    Ok(true)
}
