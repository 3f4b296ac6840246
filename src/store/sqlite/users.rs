//! The `users` table.

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::clock::Millis;
use crate::domain::model::User;

const USER_COLS: &str = "id, username, password_hash, roles, created_at, disabled_at";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    let roles: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        created_at: r.get(4)?,
        disabled_at: r.get(5)?,
    })
}

pub fn by_username_key(conn: &Connection, key: &str) -> anyhow::Result<Option<User>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users WHERE username_key = ?1"
    ))?;
    Ok(st.query_row([key], user_from_row).optional()?)
}

pub fn by_id(conn: &Connection, id: &str) -> anyhow::Result<Option<User>> {
    let mut st = conn.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?;
    Ok(st.query_row([id], user_from_row).optional()?)
}

pub fn all(conn: &Connection) -> anyhow::Result<Vec<User>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users ORDER BY created_at, id"
    ))?;
    let rows = st
        .query_map([], user_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn insert(
    conn: &Connection,
    user: &User,
    username_key: &str,
    skeleton: &str,
) -> anyhow::Result<()> {
    let roles = serde_json::to_string(&user.roles)?;
    conn.prepare_cached(
        "INSERT INTO users (id, username, username_key, username_skeleton, password_hash,
             roles, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        user.id,
        user.username,
        username_key,
        skeleton,
        user.password_hash,
        roles,
        user.created_at
    ])
    .context("insert user")?;
    Ok(())
}

/// Whether some user's name has this confusable skeleton (`users_by_skeleton`).
pub fn skeleton_taken(conn: &Connection, skeleton: &str) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE username_skeleton = ?1)")?
        .query_row([skeleton], |r| r.get(0))?)
}

pub fn set_password_hash(conn: &Connection, user_id: &str, hash: &str) -> anyhow::Result<()> {
    conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(params![user_id, hash])?;
    Ok(())
}

pub fn set_disabled(conn: &Connection, user_id: &str, now: Millis) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached("UPDATE users SET disabled_at = ?2 WHERE id = ?1 AND disabled_at IS NULL")?
        .execute(params![user_id, now])?
        > 0)
}

/// Deletes the user; sessions and tokens go with it (ON DELETE CASCADE), the user's
/// events are erased, and where they acted as an administrator on other users' events
/// their id, IP and user agent are wiped from those events' actor.
pub fn delete(conn: &Connection, user_id: &str) -> anyhow::Result<bool> {
    conn.prepare_cached("DELETE FROM events WHERE user_id = ?1")?
        .execute([user_id])?;
    conn.prepare_cached(
        "UPDATE events SET actor_id = NULL, actor_ip = NULL, actor_user_agent = NULL
         WHERE actor_id = ?1",
    )?
    .execute([user_id])?;
    Ok(conn
        .prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([user_id])?
        > 0)
}
