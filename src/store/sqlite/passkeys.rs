//! The passkey tables (migration 13): `passkeys` (webauthn-rs's credential JSON per
//! registered passkey) and `webauthn_ceremonies` (ceremonies in flight, by the SHA-256
//! hash of their token).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use crate::clock::Millis;
use crate::domain::passkeys::{Ceremony, StoredPasskey};
use crate::domain::repository::PasskeyRepo;
use crate::domain::{PasskeyId, TokenHash, UserId};
use crate::store::columns::{ceremony_kind_of, ceremony_mode_of};

use super::SqliteTx;

const PASSKEY_COLUMNS: &str =
    "id, user_id, credential_id, credential, name, created_at, last_used_at, counter";

fn passkey_from_row(r: &Row<'_>) -> rusqlite::Result<StoredPasskey> {
    Ok(StoredPasskey {
        id: PasskeyId::from_stored(r.get(0)?),
        user_id: UserId::from_stored(r.get(1)?),
        credential_id: r.get(2)?,
        credential: r.get(3)?,
        name: r.get(4)?,
        created_at: r.get(5)?,
        last_used_at: r.get(6)?,
        counter: r.get(7)?,
    })
}

#[async_trait(?Send)]
impl PasskeyRepo for SqliteTx<'_> {
    async fn insert_passkey(&mut self, p: &StoredPasskey) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO passkeys (id, user_id, credential_id, credential, name, created_at,
                     last_used_at, counter)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                p.id.as_str(),
                p.user_id.as_str(),
                p.credential_id,
                p.credential,
                p.name,
                p.created_at,
                p.last_used_at,
                p.counter
            ])?;
        Ok(())
    }

    async fn passkeys_of(&mut self, user_id: &UserId) -> anyhow::Result<Vec<StoredPasskey>> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = ?1 ORDER BY created_at, id"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([user_id.as_str()], passkey_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    async fn passkey_by_credential_id(
        &mut self,
        credential_id: &[u8],
    ) -> anyhow::Result<Option<StoredPasskey>> {
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([credential_id], passkey_from_row)
            .optional()?)
    }

    async fn rename_passkey(
        &mut self,
        user_id: &UserId,
        id: &PasskeyId,
        name: &str,
    ) -> anyhow::Result<bool> {
        let n = self
            .conn
            .prepare_cached("UPDATE passkeys SET name = ?3 WHERE id = ?1 AND user_id = ?2")?
            .execute(params![id.as_str(), user_id.as_str(), name])?;
        Ok(n == 1)
    }

    async fn delete_passkey(&mut self, user_id: &UserId, id: &PasskeyId) -> anyhow::Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM passkeys WHERE id = ?1 AND user_id = ?2")?
            .execute(params![id.as_str(), user_id.as_str()])?;
        Ok(n == 1)
    }

    async fn delete_passkeys_of(&mut self, user_id: &UserId) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM passkeys WHERE user_id = ?1")?
            .execute([user_id.as_str()])?)
    }

    async fn record_passkey_use(
        &mut self,
        id: &PasskeyId,
        credential: &str,
        counter: u32,
        at: Millis,
    ) -> anyhow::Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE passkeys SET credential = ?2, counter = ?3, last_used_at = ?4
                 WHERE id = ?1",
            )?
            .execute(params![id.as_str(), credential, counter, at])?;
        Ok(n == 1)
    }

    async fn insert_ceremony(&mut self, c: &Ceremony) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO webauthn_ceremonies (token_hash, kind, mode, user_id, state,
                     expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                c.token_hash.as_slice(),
                c.kind.as_str(),
                c.mode.as_str(),
                c.user_id.as_ref().map(UserId::as_str),
                c.state,
                c.expires_at
            ])?;
        Ok(())
    }

    async fn take_ceremony(&mut self, token_hash: &TokenHash) -> anyhow::Result<Option<Ceremony>> {
        let row = self
            .conn
            .prepare_cached(
                "DELETE FROM webauthn_ceremonies WHERE token_hash = ?1
                 RETURNING kind, mode, user_id, state, expires_at",
            )?
            .query_row([token_hash.as_slice()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Millis>(4)?,
                ))
            })
            .optional()?;
        row.map(|(kind, mode, user_id, state, expires_at)| {
            Ok(Ceremony {
                token_hash: *token_hash,
                kind: ceremony_kind_of(&kind)?,
                mode: ceremony_mode_of(&mode)?,
                user_id: user_id.map(UserId::from_stored),
                state,
                expires_at,
            })
        })
        .transpose()
    }

    async fn delete_ceremonies_expired_before(&mut self, cutoff: Millis) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM webauthn_ceremonies WHERE expires_at < ?1")?
            .execute([cutoff])?)
    }
}
