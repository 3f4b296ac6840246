//! The `user_emails` table: at most one address per user, verified by at most one.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{TokenPurpose, User, UserEmail};
use crate::domain::repository::{EmailRepo, Result};
use crate::domain::UserId;

use super::tx::count;
use super::users::{user_from_row, USER_COLS};
use super::PgTx;

#[async_trait(?Send)]
impl EmailRepo for PgTx<'_> {
    async fn email_of_user(&mut self, user_id: &UserId) -> Result<Option<UserEmail>> {
        let row = self
            .opt(
                "SELECT user_id, email, verified_at FROM user_emails WHERE user_id = $1",
                &[&user_id.as_str()],
            )
            .await?;
        row.map(|r| {
            Ok(UserEmail {
                user_id: UserId::from_stored(r.try_get(0)?),
                email: r.try_get(1)?,
                verified_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn user_by_verified_email(&mut self, email_key: &str) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {} FROM users u JOIN user_emails e ON e.user_id = u.id
             WHERE e.email_key = $1 AND e.verified_at IS NOT NULL",
            USER_COLS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.opt(&sql, &[&email_key])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn lock_email_claims(&mut self, email_key: &str) -> Result<Vec<UserEmail>> {
        // Locked in one order, so two verifications of the address queue up instead of
        // deadlocking; the second then sees the first's commit (READ COMMITTED re-reads
        // a locked row once its lock is released).
        self.rows(
            "SELECT user_id, email, verified_at FROM user_emails
             WHERE email_key = $1 ORDER BY user_id FOR UPDATE",
            &[&email_key],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(UserEmail {
                user_id: UserId::from_stored(r.try_get(0)?),
                email: r.try_get(1)?,
                verified_at: r.try_get(2)?,
            })
        })
        .collect()
    }

    async fn drop_unverified_claims(&mut self, email_key: &str, owner: &UserId) -> Result<usize> {
        self.exec(
            "DELETE FROM account_tokens
             WHERE purpose = $3 AND email_key = $1 AND user_id <> $2",
            &[&email_key, &owner.as_str(), &TokenPurpose::Verify.as_str()],
        )
        .await?;
        Ok(count(
            self.exec(
                "DELETE FROM user_emails
                 WHERE email_key = $1 AND user_id <> $2 AND verified_at IS NULL",
                &[&email_key, &owner.as_str()],
            )
            .await?,
        ))
    }

    async fn set_email(&mut self, email: &UserEmail, email_key: &str) -> Result<()> {
        self.exec(
            "INSERT INTO user_emails (user_id, email, email_key, verified_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET
                 email = excluded.email, email_key = excluded.email_key,
                 verified_at = excluded.verified_at",
            &[&email.user_id.as_str(), &email.email, &email_key, &email.verified_at],
        )
        .await?;
        Ok(())
    }

    async fn mark_email_verified(
        &mut self,
        user_id: &UserId,
        email_key: &str,
        now: Millis,
    ) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE user_emails SET verified_at = COALESCE(verified_at, $3)
                 WHERE user_id = $1 AND email_key = $2",
                &[&user_id.as_str(), &email_key, &now],
            )
            .await?
            > 0)
    }
}
