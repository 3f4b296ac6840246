//! The `account_tokens` table: SHA-256 hashes of password-reset and email-verification
//! tokens, never the tokens.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::clock::Millis;
use crate::domain::model::{AccountToken, TokenPurpose};
use crate::domain::repository::AccountTokenRepo;
use crate::domain::{TokenHash, UserId};
use crate::store::columns::purpose_of;

use super::SqliteTx;

#[async_trait(?Send)]
impl AccountTokenRepo for SqliteTx<'_> {
    async fn insert_account_token(&mut self, t: &AccountToken) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, email_key, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        t.token_hash.as_slice(),
        t.user_id.as_str(),
        t.purpose.as_str(),
        t.email_key,
        t.created_at,
        t.expires_at
    ])?;
        Ok(())
    }

    async fn account_token_by_hash(
        &mut self,
        hash: &TokenHash,
    ) -> anyhow::Result<Option<AccountToken>> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(
            "SELECT token_hash, user_id, purpose, email_key, created_at, expires_at
         FROM account_tokens WHERE token_hash = ?1",
        )?;
        Ok(st
            .query_row([hash.as_slice()], |r| {
                let bytes: Vec<u8> = r.get(0)?;
                let mut token_hash = [0u8; 32];
                if bytes.len() == 32 {
                    token_hash.copy_from_slice(&bytes);
                }
                let purpose: String = r.get(2)?;
                Ok(AccountToken {
                    token_hash,
                    user_id: UserId::from_stored(r.get(1)?),
                    purpose: purpose_of(&purpose),
                    email_key: r.get(3)?,
                    created_at: r.get(4)?,
                    expires_at: r.get(5)?,
                })
            })
            .optional()?)
    }

    async fn delete_account_tokens(
        &mut self,
        user_id: &UserId,
        purpose: TokenPurpose,
    ) -> anyhow::Result<usize> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached("DELETE FROM account_tokens WHERE user_id = ?1 AND purpose = ?2")?
            .execute(params![user_id.as_str(), purpose.as_str()])?)
    }

    async fn count_account_tokens_since(
        &mut self,
        user_id: &UserId,
        purpose: TokenPurpose,
        since: Millis,
    ) -> anyhow::Result<u32> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "SELECT count(*) FROM account_tokens
             WHERE user_id = ?1 AND purpose = ?2 AND created_at > ?3",
            )?
            .query_row(params![user_id.as_str(), purpose.as_str(), since], |r| {
                r.get(0)
            })?)
    }

    async fn delete_account_tokens_expired_before(
        &mut self,
        cutoff: Millis,
    ) -> anyhow::Result<usize> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached("DELETE FROM account_tokens WHERE expires_at < ?1")?
            .execute([cutoff])?)
    }
}
