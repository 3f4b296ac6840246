//! The `account_tokens` table: single-use links mailed to users (SHA-256 hashes only).

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{AccountToken, TokenPurpose};
use crate::domain::repository::{AccountTokenRepo, Result};
use crate::domain::{TokenHash, UserId};
use crate::store::columns::purpose_of;

use super::tx::{count, hash_of};
use super::PgTx;

#[async_trait(?Send)]
impl AccountTokenRepo for PgTx<'_> {
    async fn insert_account_token(&mut self, t: &AccountToken) -> Result<()> {
        self.exec(
            "INSERT INTO account_tokens (token_hash, user_id, purpose, email_key, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &t.token_hash.as_slice(),
                &t.user_id.as_str(),
                &t.purpose.as_str(),
                &t.email_key,
                &t.created_at,
                &t.expires_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn account_token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<AccountToken>> {
        let row = self
            .opt(
                "SELECT token_hash, user_id, purpose, email_key, created_at, expires_at
                 FROM account_tokens WHERE token_hash = $1",
                &[&hash.as_slice()],
            )
            .await?;
        row.map(|r| {
            let purpose: String = r.try_get(2)?;
            Ok(AccountToken {
                token_hash: hash_of(r.try_get(0)?)?,
                user_id: UserId::from_stored(r.try_get(1)?),
                purpose: purpose_of(&purpose),
                email_key: r.try_get(3)?,
                created_at: r.try_get(4)?,
                expires_at: r.try_get(5)?,
            })
        })
        .transpose()
    }

    async fn delete_account_tokens(
        &mut self,
        user_id: &UserId,
        purpose: TokenPurpose,
    ) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2",
                &[&user_id.as_str(), &purpose.as_str()],
            )
            .await?,
        ))
    }

    async fn count_account_tokens_since(
        &mut self,
        user_id: &UserId,
        purpose: TokenPurpose,
        since: Millis,
    ) -> Result<u32> {
        let r = self
            .one(
                "SELECT count(*) FROM account_tokens
                 WHERE user_id = $1 AND purpose = $2 AND created_at > $3",
                &[&user_id.as_str(), &purpose.as_str(), &since],
            )
            .await?;
        let n: i64 = r.try_get(0)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn delete_account_tokens_expired_before(&mut self, cutoff: Millis) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM account_tokens WHERE expires_at < $1",
                &[&cutoff],
            )
            .await?,
        ))
    }
}
