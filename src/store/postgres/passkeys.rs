//! The passkey tables: `passkeys` (webauthn-rs's credential JSON per registered passkey)
//! and `webauthn_ceremonies` (ceremonies in flight, by the SHA-256 hash of their token).

use async_trait::async_trait;
use tokio_postgres::Row;

use crate::clock::Millis;
use crate::domain::passkeys::{Ceremony, StoredPasskey};
use crate::domain::repository::{PasskeyRepo, Result};
use crate::domain::{PasskeyId, TokenHash, UserId};
use crate::store::columns::{ceremony_kind_of, ceremony_mode_of};

use super::tx::count;
use super::PgTx;

const PASSKEY_COLUMNS: &str =
    "id, user_id, credential_id, credential, name, created_at, last_used_at, counter";

fn passkey_from_row(r: &Row) -> Result<StoredPasskey> {
    let counter: i64 = r.try_get(7)?;
    Ok(StoredPasskey {
        id: PasskeyId::from_stored(r.try_get(0)?),
        user_id: UserId::from_stored(r.try_get(1)?),
        credential_id: r.try_get(2)?,
        credential: r.try_get(3)?,
        name: r.try_get(4)?,
        created_at: r.try_get(5)?,
        last_used_at: r.try_get(6)?,
        counter: u32::try_from(counter)?,
    })
}

#[async_trait(?Send)]
impl PasskeyRepo for PgTx<'_> {
    async fn insert_passkey(&mut self, p: &StoredPasskey) -> Result<()> {
        self.exec(
            "INSERT INTO passkeys (id, user_id, credential_id, credential, name, created_at,
                 last_used_at, counter)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &p.id.as_str(),
                &p.user_id.as_str(),
                &p.credential_id,
                &p.credential,
                &p.name,
                &p.created_at,
                &p.last_used_at,
                &i64::from(p.counter),
            ],
        )
        .await?;
        Ok(())
    }

    async fn passkeys_of(&mut self, user_id: &UserId) -> Result<Vec<StoredPasskey>> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
        );
        self.rows(&sql, &[&user_id.as_str()])
            .await?
            .iter()
            .map(passkey_from_row)
            .collect()
    }

    async fn passkey_by_credential_id(
        &mut self,
        credential_id: &[u8],
    ) -> Result<Option<StoredPasskey>> {
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1");
        self.opt(&sql, &[&credential_id])
            .await?
            .as_ref()
            .map(passkey_from_row)
            .transpose()
    }

    async fn rename_passkey(
        &mut self,
        user_id: &UserId,
        id: &PasskeyId,
        name: &str,
    ) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE passkeys SET name = $3 WHERE id = $1 AND user_id = $2",
                &[&id.as_str(), &user_id.as_str(), &name],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_passkey(&mut self, user_id: &UserId, id: &PasskeyId) -> Result<bool> {
        let n = self
            .exec(
                "DELETE FROM passkeys WHERE id = $1 AND user_id = $2",
                &[&id.as_str(), &user_id.as_str()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_passkeys_of(&mut self, user_id: &UserId) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM passkeys WHERE user_id = $1",
                &[&user_id.as_str()],
            )
            .await?,
        ))
    }

    async fn record_passkey_use(
        &mut self,
        id: &PasskeyId,
        credential: &str,
        counter: u32,
        at: Millis,
    ) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE passkeys SET credential = $2, counter = $3, last_used_at = $4
                 WHERE id = $1",
                &[&id.as_str(), &credential, &i64::from(counter), &at],
            )
            .await?;
        Ok(n == 1)
    }

    async fn insert_ceremony(&mut self, c: &Ceremony) -> Result<()> {
        self.exec(
            "INSERT INTO webauthn_ceremonies (token_hash, kind, mode, user_id, state, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &c.token_hash.as_slice(),
                &c.kind.as_str(),
                &c.mode.as_str(),
                &c.user_id.as_ref().map(UserId::as_str),
                &c.state,
                &c.expires_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_ceremony(&mut self, token_hash: &TokenHash) -> Result<Option<Ceremony>> {
        let row = self
            .opt(
                "DELETE FROM webauthn_ceremonies WHERE token_hash = $1
                 RETURNING kind, mode, user_id, state, expires_at",
                &[&token_hash.as_slice()],
            )
            .await?;
        row.map(|r| {
            let kind: String = r.try_get(0)?;
            let mode: String = r.try_get(1)?;
            let user_id: Option<String> = r.try_get(2)?;
            Ok(Ceremony {
                token_hash: *token_hash,
                kind: ceremony_kind_of(&kind)?,
                mode: ceremony_mode_of(&mode)?,
                user_id: user_id.map(UserId::from_stored),
                state: r.try_get(3)?,
                expires_at: r.try_get(4)?,
            })
        })
        .transpose()
    }

    async fn delete_ceremonies_expired_before(&mut self, cutoff: Millis) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM webauthn_ceremonies WHERE expires_at < $1",
                &[&cutoff],
            )
            .await?,
        ))
    }
}
