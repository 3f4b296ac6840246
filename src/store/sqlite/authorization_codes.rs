//! The `authorization_codes` table (migration 16).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::clock::Millis;
use crate::domain::model::AuthorizationCode;
use crate::domain::repository::AuthorizationCodeRepo;
use crate::domain::{SessionId, TokenHash};

use super::SqliteTx;

#[async_trait(?Send)]
impl AuthorizationCodeRepo for SqliteTx<'_> {
    async fn insert_authorization_code(&mut self, c: &AuthorizationCode) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri,
                     code_challenge, session_id, sealed_refresh, used_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                c.code_hash.as_slice(),
                c.client_id,
                c.redirect_uri,
                c.code_challenge,
                c.session_id.as_str(),
                c.sealed_refresh,
                c.used_at,
                c.expires_at
            ])?;
        Ok(())
    }

    async fn use_authorization_code(
        &mut self,
        hash: &TokenHash,
        now: Millis,
    ) -> anyhow::Result<Option<AuthorizationCode>> {
        // One writer: the read and the update cannot interleave with another exchange.
        let found = self
            .conn
            .prepare_cached(
                "SELECT client_id, redirect_uri, code_challenge, session_id, sealed_refresh,
                     used_at, expires_at
                 FROM authorization_codes WHERE code_hash = ?1",
            )?
            .query_row([hash.as_slice()], |r| {
                Ok(AuthorizationCode {
                    code_hash: *hash,
                    client_id: r.get(0)?,
                    redirect_uri: r.get(1)?,
                    code_challenge: r.get(2)?,
                    session_id: SessionId::from_stored(r.get(3)?),
                    sealed_refresh: r.get(4)?,
                    used_at: r.get(5)?,
                    expires_at: r.get(6)?,
                })
            })
            .optional()?;
        if found.as_ref().is_some_and(|c| c.used_at.is_none()) {
            self.conn
                .prepare_cached(
                    "UPDATE authorization_codes SET used_at = ?2, sealed_refresh = NULL
                     WHERE code_hash = ?1",
                )?
                .execute(params![hash.as_slice(), now])?;
        }
        Ok(found)
    }

    async fn delete_authorization_codes_expired_before(
        &mut self,
        cutoff: Millis,
    ) -> anyhow::Result<Vec<SessionId>> {
        let mut stmt = self.conn.prepare_cached(
            "DELETE FROM authorization_codes WHERE expires_at < ?1
             RETURNING session_id, used_at IS NULL",
        )?;
        let deleted = stmt
            .query_map([cutoff], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(deleted
            .into_iter()
            .filter(|(_, unused)| *unused)
            .map(|(sid, _)| SessionId::from_stored(sid))
            .collect())
    }
}
