//! The `identities` and `federation_states` tables (migration 15).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use crate::clock::Millis;
use crate::domain::model::{FederationState, Identity};
use crate::domain::repository::IdentityRepo;
use crate::domain::{IdentityId, TokenHash, UserId};

use super::SqliteTx;

/// The pending authorization request as JSON (a column of `federation_states`).
fn authorization_json(s: &FederationState) -> anyhow::Result<Option<String>> {
    Ok(s.authorization
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?)
}

const IDENTITY_COLS: &str =
    "id, user_id, provider, subject, email, email_verified, created_at, last_login_at";

fn identity_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Identity> {
    Ok(Identity {
        id: IdentityId::from_stored(r.get(0)?),
        user_id: UserId::from_stored(r.get(1)?),
        provider: r.get(2)?,
        subject: r.get(3)?,
        email: r.get(4)?,
        email_verified: r.get(5)?,
        created_at: r.get(6)?,
        last_login_at: r.get(7)?,
    })
}

#[async_trait(?Send)]
impl IdentityRepo for SqliteTx<'_> {
    async fn insert_identity(&mut self, i: &Identity) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO identities ({IDENTITY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                i.id.as_str(),
                i.user_id.as_str(),
                i.provider,
                i.subject,
                i.email,
                i.email_verified,
                i.created_at,
                i.last_login_at
            ])?;
        Ok(())
    }

    async fn identity_by_subject(
        &mut self,
        provider: &str,
        subject: &str,
    ) -> anyhow::Result<Option<Identity>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {IDENTITY_COLS} FROM identities WHERE provider = ?1 AND subject = ?2"
            ))?
            .query_row([provider, subject], identity_from_row)
            .optional()?)
    }

    async fn identities_of_user(&mut self, user_id: &UserId) -> anyhow::Result<Vec<Identity>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {IDENTITY_COLS} FROM identities WHERE user_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = st.query_map([user_id.as_str()], identity_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn record_identity_login(
        &mut self,
        id: &IdentityId,
        now: Millis,
        email: Option<&str>,
        email_verified: bool,
    ) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE identities SET last_login_at = ?2, email = ?3, email_verified = ?4
                 WHERE id = ?1",
            )?
            .execute(params![id.as_str(), now, email, email_verified])?;
        Ok(())
    }

    async fn delete_identity(&mut self, user_id: &UserId, id: &IdentityId) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM identities WHERE id = ?1 AND user_id = ?2")?
            .execute([id.as_str(), user_id.as_str()])?
            > 0)
    }

    async fn insert_federation_state(&mut self, s: &FederationState) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO federation_states (state_hash, provider, nonce, pkce_verifier,
                     client_id, return_to, link_user, expires_at, authorization_request)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                s.state_hash.as_slice(),
                s.provider,
                s.nonce,
                s.pkce_verifier,
                s.client_id,
                s.return_to,
                s.link_user.as_ref().map(UserId::as_str),
                s.expires_at,
                authorization_json(s)?
            ])?;
        Ok(())
    }

    async fn take_federation_state(
        &mut self,
        hash: &TokenHash,
    ) -> anyhow::Result<Option<FederationState>> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM federation_states WHERE state_hash = ?1
                 RETURNING provider, nonce, pkce_verifier, client_id, return_to, link_user,
                     expires_at, authorization_request",
            )?
            .query_row([hash.as_slice()], |r| {
                Ok(FederationState {
                    state_hash: *hash,
                    provider: r.get(0)?,
                    nonce: r.get(1)?,
                    pkce_verifier: r.get(2)?,
                    client_id: r.get(3)?,
                    return_to: r.get(4)?,
                    link_user: r.get::<_, Option<String>>(5)?.map(UserId::from_stored),
                    expires_at: r.get(6)?,
                    authorization: None,
                })
                .map(|s| (s, r.get::<_, Option<String>>(7)))
            })
            .optional()?
            .map(|(mut s, json)| {
                s.authorization = json?.as_deref().map(serde_json::from_str).transpose()?;
                anyhow::Ok(s)
            })
            .transpose()?)
    }

    async fn delete_federation_states_expired_before(
        &mut self,
        cutoff: Millis,
    ) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM federation_states WHERE expires_at < ?1")?
            .execute([cutoff])?)
    }
}
