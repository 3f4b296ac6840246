//! The `authorization_codes` table (schema version 7).

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::AuthorizationCode;
use crate::domain::repository::{AuthorizationCodeRepo, Result};
use crate::domain::{SessionId, TokenHash};

use super::PgTx;

#[async_trait(?Send)]
impl AuthorizationCodeRepo for PgTx<'_> {
    async fn insert_authorization_code(&mut self, c: &AuthorizationCode) -> Result<()> {
        self.exec(
            "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri,
                 code_challenge, session_id, sealed_refresh, used_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &c.code_hash.as_slice(),
                &c.client_id,
                &c.redirect_uri,
                &c.code_challenge,
                &c.session_id.as_str(),
                &c.sealed_refresh,
                &c.used_at,
                &c.expires_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn use_authorization_code(
        &mut self,
        hash: &TokenHash,
        now: Millis,
    ) -> Result<Option<AuthorizationCode>> {
        // FOR UPDATE: of two exchanges racing with one code, the second waits and then
        // sees it used.
        let Some(r) = self
            .opt(
                "SELECT client_id, redirect_uri, code_challenge, session_id, sealed_refresh,
                     used_at, expires_at
                 FROM authorization_codes WHERE code_hash = $1 FOR UPDATE",
                &[&hash.as_slice()],
            )
            .await?
        else {
            return Ok(None);
        };
        let found = AuthorizationCode {
            code_hash: *hash,
            client_id: r.try_get(0)?,
            redirect_uri: r.try_get(1)?,
            code_challenge: r.try_get(2)?,
            session_id: SessionId::from_stored(r.try_get(3)?),
            sealed_refresh: r.try_get(4)?,
            used_at: r.try_get(5)?,
            expires_at: r.try_get(6)?,
        };
        if found.used_at.is_none() {
            self.exec(
                "UPDATE authorization_codes SET used_at = $2, sealed_refresh = NULL
                 WHERE code_hash = $1",
                &[&hash.as_slice(), &now],
            )
            .await?;
        }
        Ok(Some(found))
    }

    async fn delete_authorization_codes_expired_before(
        &mut self,
        cutoff: Millis,
    ) -> Result<Vec<SessionId>> {
        let rows = self
            .rows(
                "DELETE FROM authorization_codes WHERE expires_at < $1
                 RETURNING session_id, used_at IS NULL",
                &[&cutoff],
            )
            .await?;
        let mut unused = Vec::new();
        for r in rows {
            if r.try_get::<_, bool>(1)? {
                unused.push(SessionId::from_stored(r.try_get(0)?));
            }
        }
        Ok(unused)
    }
}
