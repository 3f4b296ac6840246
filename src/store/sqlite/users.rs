//! The `users` table.

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use crate::clock::Millis;
use crate::domain::model::User;
use crate::domain::repository::UserRepo;
use crate::domain::UserId;

use super::{revocations, SqliteTx};

const USER_COLS: &str = "id, username, password_hash, roles, created_at, disabled_at";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    let roles: String = r.get(3)?;
    Ok(User {
        id: UserId::from_stored(r.get(0)?),
        username: r.get(1)?,
        password_hash: r.get(2)?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        created_at: r.get(4)?,
        disabled_at: r.get(5)?,
    })
}

#[async_trait(?Send)]
impl UserRepo for SqliteTx<'_> {
    async fn user_by_username_key(&mut self, key: &str) -> anyhow::Result<Option<User>> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {USER_COLS} FROM users WHERE username_key = ?1"
        ))?;
        Ok(st.query_row([key], user_from_row).optional()?)
    }

    async fn user_by_id(&mut self, id: &UserId) -> anyhow::Result<Option<User>> {
        let conn = self.conn;
        let mut st =
            conn.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?;
        Ok(st.query_row([id.as_str()], user_from_row).optional()?)
    }

    async fn all_users(&mut self) -> anyhow::Result<Vec<User>> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {USER_COLS} FROM users ORDER BY created_at, id"
        ))?;
        let rows = st
            .query_map([], user_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    async fn insert_user(
        &mut self,
        user: &User,
        username_key: &str,
        skeleton: &str,
    ) -> anyhow::Result<()> {
        let conn = self.conn;
        let roles = serde_json::to_string(&user.roles)?;
        conn.prepare_cached(
            "INSERT INTO users (id, username, username_key, username_skeleton, password_hash,
             roles, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            user.id.as_str(),
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
    async fn username_skeleton_taken(&mut self, skeleton: &str) -> anyhow::Result<bool> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE username_skeleton = ?1)")?
            .query_row([skeleton], |r| r.get(0))?)
    }

    async fn set_password_hash(&mut self, user_id: &UserId, hash: &str) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
            .execute(params![user_id.as_str(), hash])?;
        Ok(())
    }

    async fn set_disabled(&mut self, user_id: &UserId, now: Millis) -> anyhow::Result<bool> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "UPDATE users SET disabled_at = ?2 WHERE id = ?1 AND disabled_at IS NULL",
            )?
            .execute(params![user_id.as_str(), now])?
            > 0)
    }

    /// Deletes the user; sessions and tokens go with it (ON DELETE CASCADE), the user's
    /// events are erased, and where they acted as an administrator on other users' events
    /// their id, IP and user agent are wiped from those events' actor.
    async fn delete_user(&mut self, user_id: &UserId, now: Millis) -> anyhow::Result<bool> {
        // Erasure deletes the session rows, not the access tokens already issued: the
        // live sessions enter the log first (docs/contract.md "Revocation feed").
        let logged = revocations::append_live_sessions_of_user(self.conn, user_id, now)?;
        let conn = self.conn;
        conn.prepare_cached("DELETE FROM events WHERE user_id = ?1")?
            .execute([user_id.as_str()])?;
        conn.prepare_cached(
            "UPDATE events SET actor_id = NULL, actor_ip = NULL, actor_user_agent = NULL
         WHERE actor_id = ?1",
        )?
        .execute([user_id.as_str()])?;
        let deleted = conn
            .prepare_cached("DELETE FROM users WHERE id = ?1")?
            .execute([user_id.as_str()])?
            > 0;
        if deleted {
            self.after.logged += logged;
        }
        Ok(deleted)
    }

    async fn scrub_after_commit(&mut self) -> anyhow::Result<()> {
        self.after.scrub = true;
        Ok(())
    }
}
