//! The `user_emails` table: at most one address per user. Any number of accounts may
//! claim an address unverified; at most one has it verified (a unique index over the
//! verified rows' keys, migration 12).

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::Millis;
use crate::domain::model::{TokenPurpose, User, UserEmail};

pub fn of_user(conn: &Connection, user_id: &str) -> anyhow::Result<Option<UserEmail>> {
    let mut st = conn
        .prepare_cached("SELECT user_id, email, verified_at FROM user_emails WHERE user_id = ?1")?;
    Ok(st.query_row([user_id], email_from_row).optional()?)
}

fn email_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserEmail> {
    Ok(UserEmail {
        user_id: r.get(0)?,
        email: r.get(1)?,
        verified_at: r.get(2)?,
    })
}

pub fn verified_owner(conn: &Connection, email_key: &str) -> anyhow::Result<Option<User>> {
    let id: Option<String> = conn
        .prepare_cached(
            "SELECT user_id FROM user_emails WHERE email_key = ?1 AND verified_at IS NOT NULL",
        )?
        .query_row([email_key], |r| r.get(0))
        .optional()?;
    match id {
        Some(id) => super::users::by_id(conn, &id),
        None => Ok(None),
    }
}

pub fn claims(conn: &Connection, email_key: &str) -> anyhow::Result<Vec<UserEmail>> {
    let mut st = conn.prepare_cached(
        "SELECT user_id, email, verified_at FROM user_emails WHERE email_key = ?1 ORDER BY user_id",
    )?;
    let rows = st.query_map([email_key], email_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn drop_unverified_claims(
    conn: &Connection,
    email_key: &str,
    owner: &str,
) -> anyhow::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM account_tokens
         WHERE purpose = ?3 AND email_key = ?1 AND user_id <> ?2",
    )?
    .execute(params![email_key, owner, TokenPurpose::Verify.as_str()])?;
    Ok(conn
        .prepare_cached(
            "DELETE FROM user_emails
             WHERE email_key = ?1 AND user_id <> ?2 AND verified_at IS NULL",
        )?
        .execute(params![email_key, owner])?)
}

pub fn set(conn: &Connection, email: &UserEmail, email_key: &str) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO user_emails (user_id, email, email_key, verified_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO UPDATE SET
             email = excluded.email, email_key = excluded.email_key,
             verified_at = excluded.verified_at",
    )?
    .execute(params![
        email.user_id,
        email.email,
        email_key,
        email.verified_at
    ])?;
    Ok(())
}

pub fn mark_verified(
    conn: &Connection,
    user_id: &str,
    email_key: &str,
    now: Millis,
) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE user_emails SET verified_at = coalesce(verified_at, ?3)
             WHERE user_id = ?1 AND email_key = ?2",
        )?
        .execute(params![user_id, email_key, now])?
        > 0)
}
