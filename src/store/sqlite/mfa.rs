//! The second factor's tables (migration 10): `mfa_factors` (one row per user, the TOTP
//! secret sealed), `mfa_recovery_codes` and `mfa_logins` (SHA-256 hashes only).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use crate::clock::Millis;
use crate::domain::model::{MfaFactor, PendingLogin};
use crate::domain::repository::SecondFactorRepo;
use crate::domain::{Scope, TokenHash, UserId};

use super::SqliteTx;

fn hash_of(bytes: Vec<u8>) -> TokenHash {
    let mut out = [0u8; 32];
    if bytes.len() == 32 {
        out.copy_from_slice(&bytes);
    }
    out
}

fn login_from_row(r: &Row<'_>) -> rusqlite::Result<PendingLogin> {
    let scope: String = r.get(3)?;
    let audiences: String = r.get(4)?;
    Ok(PendingLogin {
        token_hash: hash_of(r.get(0)?),
        user_id: UserId::from_stored(r.get(1)?),
        client_id: r.get(2)?,
        scope: Scope::parse(&scope).unwrap_or_default(),
        audiences: serde_json::from_str(&audiences).unwrap_or_default(),
        remember_me: r.get(5)?,
        password_fingerprint: hash_of(r.get(6)?),
        auth_time: r.get(7)?,
        expires_at: r.get(8)?,
        failures: r.get(9)?,
        browser: r.get(10)?,
        idp: r.get(11)?,
    })
}

#[async_trait(?Send)]
impl SecondFactorRepo for SqliteTx<'_> {
    async fn mfa_factor(&mut self, user_id: &UserId) -> anyhow::Result<Option<MfaFactor>> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "SELECT user_id, sealed_secret, created_at, confirmed_at, last_step
             FROM mfa_factors WHERE user_id = ?1",
            )?
            .query_row([user_id.as_str()], |r| {
                Ok(MfaFactor {
                    user_id: UserId::from_stored(r.get(0)?),
                    sealed_secret: r.get(1)?,
                    created_at: r.get(2)?,
                    confirmed_at: r.get(3)?,
                    last_step: r.get(4)?,
                })
            })
            .optional()?)
    }

    async fn put_mfa_factor(&mut self, f: &MfaFactor) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
            "INSERT INTO mfa_factors (user_id, sealed_secret, created_at, confirmed_at, last_step)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret,
             created_at = excluded.created_at, confirmed_at = excluded.confirmed_at,
             last_step = excluded.last_step",
        )?
        .execute(params![
            f.user_id.as_str(),
            f.sealed_secret,
            f.created_at,
            f.confirmed_at,
            f.last_step
        ])?;
        Ok(())
    }

    async fn advance_mfa_step(&mut self, user_id: &UserId, step: i64) -> anyhow::Result<bool> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "UPDATE mfa_factors SET last_step = ?2
             WHERE user_id = ?1 AND (last_step IS NULL OR last_step < ?2)",
            )?
            .execute(params![user_id.as_str(), step])?
            == 1)
    }

    async fn delete_mfa_factor(&mut self, user_id: &UserId) -> anyhow::Result<bool> {
        let conn = self.conn;
        conn.prepare_cached("DELETE FROM mfa_recovery_codes WHERE user_id = ?1")?
            .execute([user_id.as_str()])?;
        conn.prepare_cached("DELETE FROM mfa_logins WHERE user_id = ?1")?
            .execute([user_id.as_str()])?;
        Ok(conn
            .prepare_cached("DELETE FROM mfa_factors WHERE user_id = ?1")?
            .execute([user_id.as_str()])?
            == 1)
    }

    async fn replace_recovery_codes(
        &mut self,
        user_id: &UserId,
        hashes: &[TokenHash],
    ) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached("DELETE FROM mfa_recovery_codes WHERE user_id = ?1")?
            .execute([user_id.as_str()])?;
        let mut insert = conn.prepare_cached(
            "INSERT OR IGNORE INTO mfa_recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
        )?;
        for h in hashes {
            insert.execute(params![user_id.as_str(), h.as_slice()])?;
        }
        Ok(())
    }

    async fn consume_recovery_code(
        &mut self,
        user_id: &UserId,
        hash: &TokenHash,
    ) -> anyhow::Result<bool> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached("DELETE FROM mfa_recovery_codes WHERE user_id = ?1 AND code_hash = ?2")?
            .execute(params![user_id.as_str(), hash.as_slice()])?
            == 1)
    }

    async fn insert_mfa_login(&mut self, l: &PendingLogin) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
            "INSERT INTO mfa_logins (token_hash, user_id, client_id, scope, audiences, remember_me,
             password_fingerprint, auth_time, expires_at, failures, browser, idp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            l.token_hash.as_slice(),
            l.user_id.as_str(),
            l.client_id,
            l.scope.to_claim(),
            serde_json::to_string(&l.audiences)?,
            l.remember_me,
            l.password_fingerprint.as_slice(),
            l.auth_time,
            l.expires_at,
            l.failures,
            l.browser,
            l.idp
        ])?;
        Ok(())
    }

    async fn mfa_login_by_hash(
        &mut self,
        hash: &TokenHash,
    ) -> anyhow::Result<Option<PendingLogin>> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "SELECT token_hash, user_id, client_id, scope, audiences, remember_me,
                 password_fingerprint, auth_time, expires_at, failures, browser, idp
             FROM mfa_logins WHERE token_hash = ?1",
            )?
            .query_row([hash.as_slice()], login_from_row)
            .optional()?)
    }

    async fn delete_mfa_login(&mut self, hash: &TokenHash) -> anyhow::Result<bool> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached("DELETE FROM mfa_logins WHERE token_hash = ?1")?
            .execute([hash.as_slice()])?
            == 1)
    }

    async fn reserve_mfa_login_check(
        &mut self,
        hash: &TokenHash,
        max: u32,
    ) -> anyhow::Result<Option<u32>> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "UPDATE mfa_logins SET failures = failures + 1
                 WHERE token_hash = ?1 AND failures < ?2 RETURNING failures",
            )?
            .query_row(params![hash.as_slice(), max], |r| r.get(0))
            .optional()?)
    }

    /// SQLite has one writer: the read alone is as good as a lock.
    async fn mfa_code_failures_for_update(
        &mut self,
        user_id: &UserId,
    ) -> anyhow::Result<Option<u32>> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "SELECT code_failures FROM mfa_factors
             WHERE user_id = ?1 AND confirmed_at IS NOT NULL",
            )?
            .query_row([user_id.as_str()], |r| r.get(0))
            .optional()?)
    }

    async fn add_mfa_code_failure(&mut self, user_id: &UserId) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
            "UPDATE mfa_factors SET code_failures = code_failures + 1 WHERE user_id = ?1",
        )?
        .execute([user_id.as_str()])?;
        Ok(())
    }

    async fn reset_mfa_code_failures(&mut self, user_id: &UserId) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
            "UPDATE mfa_factors SET code_failures = 0 WHERE user_id = ?1 AND code_failures <> 0",
        )?
        .execute([user_id.as_str()])?;
        Ok(())
    }

    async fn delete_mfa_logins_expired_before(&mut self, cutoff: Millis) -> anyhow::Result<usize> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached("DELETE FROM mfa_logins WHERE expires_at < ?1")?
            .execute([cutoff])?)
    }
}
