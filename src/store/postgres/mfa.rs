//! The second factor's tables: `mfa_factors` (the TOTP secret sealed),
//! `mfa_recovery_codes` and `mfa_logins` (SHA-256 hashes only).

use async_trait::async_trait;
use tokio_postgres::Row;

use crate::clock::Millis;
use crate::domain::model::{MfaFactor, PendingLogin};
use crate::domain::repository::{Result, SecondFactorRepo};
use crate::domain::{Scope, TokenHash, UserId};

use super::tx::{count, hash_of};
use super::PgTx;

fn pending_login_from_row(r: &Row) -> Result<PendingLogin> {
    let scope: String = r.try_get(3)?;
    let audiences: String = r.try_get(4)?;
    let failures: i64 = r.try_get(9)?;
    Ok(PendingLogin {
        token_hash: hash_of(r.try_get(0)?)?,
        user_id: UserId::from_stored(r.try_get(1)?),
        client_id: r.try_get(2)?,
        scope: Scope::parse(&scope).unwrap_or_default(),
        audiences: serde_json::from_str(&audiences).unwrap_or_default(),
        remember_me: r.try_get(5)?,
        password_fingerprint: hash_of(r.try_get(6)?)?,
        auth_time: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        browser: r.try_get(10)?,
        idp: r.try_get(11)?,
    })
}

#[async_trait(?Send)]
impl SecondFactorRepo for PgTx<'_> {
    async fn mfa_factor(&mut self, user_id: &UserId) -> Result<Option<MfaFactor>> {
        let row = self
            .opt(
                "SELECT user_id, sealed_secret, created_at, confirmed_at, last_step
                 FROM mfa_factors WHERE user_id = $1",
                &[&user_id.as_str()],
            )
            .await?;
        row.map(|r| {
            Ok(MfaFactor {
                user_id: UserId::from_stored(r.try_get(0)?),
                sealed_secret: r.try_get(1)?,
                created_at: r.try_get(2)?,
                confirmed_at: r.try_get(3)?,
                last_step: r.try_get(4)?,
            })
        })
        .transpose()
    }

    async fn put_mfa_factor(&mut self, f: &MfaFactor) -> Result<()> {
        self.exec(
            "INSERT INTO mfa_factors (user_id, sealed_secret, created_at, confirmed_at, last_step)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret,
                 created_at = excluded.created_at, confirmed_at = excluded.confirmed_at,
                 last_step = excluded.last_step",
            &[
                &f.user_id.as_str(),
                &f.sealed_secret,
                &f.created_at,
                &f.confirmed_at,
                &f.last_step,
            ],
        )
        .await?;
        Ok(())
    }

    async fn advance_mfa_step(&mut self, user_id: &UserId, step: i64) -> Result<bool> {
        // RFC 6238 §5.2: a code is accepted once; the row's update decides between two
        // instances checking the same code at once.
        Ok(self
            .exec(
                "UPDATE mfa_factors SET last_step = $2
                 WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2)",
                &[&user_id.as_str(), &step],
            )
            .await?
            == 1)
    }

    async fn delete_mfa_factor(&mut self, user_id: &UserId) -> Result<bool> {
        self.exec(
            "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
            &[&user_id.as_str()],
        )
        .await?;
        self.exec(
            "DELETE FROM mfa_logins WHERE user_id = $1",
            &[&user_id.as_str()],
        )
        .await?;
        Ok(self
            .exec(
                "DELETE FROM mfa_factors WHERE user_id = $1",
                &[&user_id.as_str()],
            )
            .await?
            == 1)
    }

    async fn replace_recovery_codes(
        &mut self,
        user_id: &UserId,
        hashes: &[TokenHash],
    ) -> Result<()> {
        self.exec(
            "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
            &[&user_id.as_str()],
        )
        .await?;
        for h in hashes {
            self.exec(
                "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&user_id.as_str(), &h.as_slice()],
            )
            .await?;
        }
        Ok(())
    }

    async fn consume_recovery_code(&mut self, user_id: &UserId, hash: &TokenHash) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM mfa_recovery_codes WHERE user_id = $1 AND code_hash = $2",
                &[&user_id.as_str(), &hash.as_slice()],
            )
            .await?
            == 1)
    }

    async fn insert_mfa_login(&mut self, l: &PendingLogin) -> Result<()> {
        self.exec(
            "INSERT INTO mfa_logins (token_hash, user_id, client_id, scope, audiences, remember_me,
                 password_fingerprint, auth_time, expires_at, failures, browser, idp)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &l.token_hash.as_slice(),
                &l.user_id.as_str(),
                &l.client_id,
                &l.scope.to_claim(),
                &serde_json::to_string(&l.audiences)?,
                &l.remember_me,
                &l.password_fingerprint.as_slice(),
                &l.auth_time,
                &l.expires_at,
                &i64::from(l.failures),
                &l.browser,
                &l.idp,
            ],
        )
        .await?;
        Ok(())
    }

    async fn mfa_login_by_hash(&mut self, hash: &TokenHash) -> Result<Option<PendingLogin>> {
        self.opt(
            "SELECT token_hash, user_id, client_id, scope, audiences, remember_me,
                 password_fingerprint, auth_time, expires_at, failures, browser, idp
             FROM mfa_logins WHERE token_hash = $1",
            &[&hash.as_slice()],
        )
        .await?
        .as_ref()
        .map(pending_login_from_row)
        .transpose()
    }

    async fn delete_mfa_login(&mut self, hash: &TokenHash) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM mfa_logins WHERE token_hash = $1",
                &[&hash.as_slice()],
            )
            .await?
            == 1)
    }

    async fn reserve_mfa_login_check(&mut self, hash: &TokenHash, max: u32) -> Result<Option<u32>> {
        // Under READ COMMITTED a second instance's UPDATE waits for this row's lock,
        // then re-reads `failures`: the `< max` is decided on the committed count.
        let row = self
            .opt(
                "UPDATE mfa_logins SET failures = failures + 1
                 WHERE token_hash = $1 AND failures < $2
                 RETURNING failures",
                &[&hash.as_slice(), &i64::from(max)],
            )
            .await?;
        let n: Option<i64> = row.map(|r| r.try_get(0)).transpose()?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn mfa_code_failures_for_update(&mut self, user_id: &UserId) -> Result<Option<u32>> {
        let row = self
            .opt(
                "SELECT code_failures FROM mfa_factors
                 WHERE user_id = $1 AND confirmed_at IS NOT NULL FOR UPDATE",
                &[&user_id.as_str()],
            )
            .await?;
        let n: Option<i64> = row.map(|r| r.try_get(0)).transpose()?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn add_mfa_code_failure(&mut self, user_id: &UserId) -> Result<()> {
        self.exec(
            "UPDATE mfa_factors SET code_failures = code_failures + 1 WHERE user_id = $1",
            &[&user_id.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn reset_mfa_code_failures(&mut self, user_id: &UserId) -> Result<()> {
        self.exec(
            "UPDATE mfa_factors SET code_failures = 0 WHERE user_id = $1 AND code_failures <> 0",
            &[&user_id.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn delete_mfa_logins_expired_before(&mut self, cutoff: Millis) -> Result<usize> {
        Ok(count(
            self.exec("DELETE FROM mfa_logins WHERE expires_at < $1", &[&cutoff])
                .await?,
        ))
    }
}
