//! The `users` table.

use async_trait::async_trait;
use tokio_postgres::Row;

use crate::clock::Millis;
use crate::domain::model::User;
use crate::domain::repository::{Result, UserRepo};
use crate::domain::UserId;

use super::tx::count;
use super::PgTx;

pub(super) const USER_COLS: &str = "id, username, password_hash, roles, created_at, disabled_at";

pub(super) const USER_COLS_OF_U: &str =
    "u.id, u.username, u.password_hash, u.roles, u.created_at, u.disabled_at";

pub(super) fn user_from_row(r: &Row) -> Result<User> {
    user_from_row_at(r, 0)
}

/// A user from the columns starting at `at` (after a session's, in a join).
pub(super) fn user_from_row_at(r: &Row, at: usize) -> Result<User> {
    let roles: String = r.try_get(at + 3)?;
    Ok(User {
        id: UserId::from_stored(r.try_get(at)?),
        username: r.try_get(at + 1)?,
        password_hash: r.try_get(at + 2)?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        created_at: r.try_get(at + 4)?,
        disabled_at: r.try_get(at + 5)?,
    })
}

#[async_trait(?Send)]
impl UserRepo for PgTx<'_> {
    async fn user_by_id(&mut self, id: &UserId) -> Result<Option<User>> {
        if let Some(user) = self.user_read_with_session.as_ref().filter(|u| &u.id == id) {
            return Ok(Some(user.clone()));
        }
        // A write job holds the user's row (shared) until it commits, so a password
        // change or a disable cannot commit between its check and its write: a login
        // checked against the old password cannot open a session the change never
        // saw (ASVS v5 7.4.3), nor a refresh outlive a disable.
        let sql = if self.writing {
            format!("SELECT {USER_COLS} FROM users WHERE id = $1 FOR SHARE")
        } else {
            format!("SELECT {USER_COLS} FROM users WHERE id = $1")
        };
        self.opt(&sql, &[&id.as_str()])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_username_key(&mut self, key: &str) -> Result<Option<User>> {
        let sql = if self.writing {
            format!("SELECT {USER_COLS} FROM users WHERE username_key = $1 FOR SHARE")
        } else {
            format!("SELECT {USER_COLS} FROM users WHERE username_key = $1")
        };
        self.opt(&sql, &[&key])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn all_users(&mut self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY created_at, id");
        self.rows(&sql, &[])
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn insert_user(&mut self, user: &User, username_key: &str, skeleton: &str) -> Result<()> {
        self.user_read_with_session = None;
        let roles = serde_json::to_string(&user.roles)?;
        self.exec(
            "INSERT INTO users (id, username, username_key, username_skeleton, password_hash,
                 roles, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &user.id.as_str(),
                &user.username,
                &username_key,
                &skeleton,
                &user.password_hash,
                &roles,
                &user.created_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn username_skeleton_taken(&mut self, skeleton: &str) -> Result<bool> {
        let r = self
            .one(
                "SELECT EXISTS(SELECT 1 FROM users WHERE username_skeleton = $1)",
                &[&skeleton],
            )
            .await?;
        Ok(r.try_get(0)?)
    }

    async fn set_password_hash(&mut self, user_id: &UserId, hash: &str) -> Result<()> {
        self.user_read_with_session = None;
        self.exec(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            &[&user_id.as_str(), &hash],
        )
        .await?;
        Ok(())
    }

    async fn set_disabled(&mut self, user_id: &UserId, now: Millis) -> Result<bool> {
        self.user_read_with_session = None;
        Ok(self
            .exec(
                "UPDATE users SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
                &[&user_id.as_str(), &now],
            )
            .await?
            > 0)
    }

    async fn delete_user(&mut self, user_id: &UserId, now: Millis) -> Result<bool> {
        self.user_read_with_session = None;
        // Erasure deletes the session rows, not the access tokens already issued: the
        // live sessions enter the log first (docs/contract.md "Revocation feed").
        self.lock_revocation_log().await?;
        let logged = self
            .exec(
                "INSERT INTO revocations (session_id, revoked_at)
                 SELECT id, $2 FROM sessions
                 WHERE user_id = $1 AND revoked_at IS NULL
                   AND idle_expires_at > $2 AND expires_at > $2
                 ORDER BY created_at, id",
                &[&user_id.as_str(), &now],
            )
            .await?;
        self.exec(
            "DELETE FROM events WHERE user_id = $1",
            &[&user_id.as_str()],
        )
        .await?;
        // The shared login-failure count is keyed by the name: personal data too.
        self.exec(
            "DELETE FROM login_failures
             WHERE key = 'a:' || (SELECT username_key FROM users WHERE id = $1)",
            &[&user_id.as_str()],
        )
        .await?;
        self.exec(
            "UPDATE events SET actor_id = NULL, actor_ip = NULL, actor_user_agent = NULL
             WHERE actor_id = $1",
            &[&user_id.as_str()],
        )
        .await?;
        let deleted = self
            .exec("DELETE FROM users WHERE id = $1", &[&user_id.as_str()])
            .await?
            > 0;
        if deleted {
            self.after.logged += count(logged);
        }
        Ok(deleted)
    }

    async fn scrub_after_commit(&mut self) -> Result<()> {
        self.after.scrub = true;
        Ok(())
    }
}
