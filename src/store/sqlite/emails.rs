//! The `user_emails` table: at most one address per user. Any number of accounts may
//! claim an address unverified; at most one has it verified (a unique index over the
//! verified rows' keys, migration 12).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::clock::Millis;
use crate::domain::model::{TokenPurpose, User, UserEmail};
use crate::domain::repository::{EmailRepo, UserRepo};
use crate::domain::UserId;

use super::SqliteTx;

fn email_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserEmail> {
    Ok(UserEmail {
        user_id: UserId::from_stored(r.get(0)?),
        email: r.get(1)?,
        verified_at: r.get(2)?,
    })
}

#[async_trait(?Send)]
impl EmailRepo for SqliteTx<'_> {
    async fn email_of_user(&mut self, user_id: &UserId) -> anyhow::Result<Option<UserEmail>> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(
            "SELECT user_id, email, verified_at FROM user_emails WHERE user_id = ?1",
        )?;
        Ok(st
            .query_row([user_id.as_str()], email_from_row)
            .optional()?)
    }

    async fn user_by_verified_email(&mut self, email_key: &str) -> anyhow::Result<Option<User>> {
        let conn = self.conn;
        let id: Option<String> = conn
            .prepare_cached(
                "SELECT user_id FROM user_emails WHERE email_key = ?1 AND verified_at IS NOT NULL",
            )?
            .query_row([email_key], |r| r.get(0))
            .optional()?;
        match id {
            Some(id) => self.user_by_id(&UserId::from_stored(id)).await,
            None => Ok(None),
        }
    }

    async fn lock_email_claims(&mut self, email_key: &str) -> anyhow::Result<Vec<UserEmail>> {
        // The single writer already runs write jobs one after the other.
        let conn = self.conn;
        let mut st = conn.prepare_cached(
        "SELECT user_id, email, verified_at FROM user_emails WHERE email_key = ?1 ORDER BY user_id",
    )?;
        let rows = st.query_map([email_key], email_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn drop_unverified_claims(
        &mut self,
        email_key: &str,
        owner: &UserId,
    ) -> anyhow::Result<usize> {
        let conn = self.conn;
        conn.prepare_cached(
            "DELETE FROM account_tokens
         WHERE purpose = ?3 AND email_key = ?1 AND user_id <> ?2",
        )?
        .execute(params![
            email_key,
            owner.as_str(),
            TokenPurpose::Verify.as_str()
        ])?;
        Ok(conn
            .prepare_cached(
                "DELETE FROM user_emails
             WHERE email_key = ?1 AND user_id <> ?2 AND verified_at IS NULL",
            )?
            .execute(params![email_key, owner.as_str()])?)
    }

    async fn set_email(&mut self, email: &UserEmail, email_key: &str) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
        "INSERT INTO user_emails (user_id, email, email_key, verified_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO UPDATE SET
             email = excluded.email, email_key = excluded.email_key,
             verified_at = excluded.verified_at",
    )?
    .execute(params![
        email.user_id.as_str(),
        email.email,
        email_key,
        email.verified_at
    ])?;
        Ok(())
    }

    async fn mark_email_verified(
        &mut self,
        user_id: &UserId,
        email_key: &str,
        now: Millis,
    ) -> anyhow::Result<bool> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "UPDATE user_emails SET verified_at = coalesce(verified_at, ?3)
             WHERE user_id = ?1 AND email_key = ?2",
            )?
            .execute(params![user_id.as_str(), email_key, now])?
            > 0)
    }
}
