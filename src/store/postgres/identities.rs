//! The `identities` and `federation_states` tables (schema version 6).

use async_trait::async_trait;
use tokio_postgres::Row;

use crate::clock::Millis;
use crate::domain::model::{FederationState, Identity};
use crate::domain::repository::{IdentityRepo, Result};
use crate::domain::{IdentityId, TokenHash, UserId};

use super::tx::count;
use super::PgTx;

const IDENTITY_COLS: &str =
    "id, user_id, provider, subject, email, email_verified, created_at, last_login_at";

fn identity_from_row(r: &Row) -> Result<Identity> {
    Ok(Identity {
        id: IdentityId::from_stored(r.try_get(0)?),
        user_id: UserId::from_stored(r.try_get(1)?),
        provider: r.try_get(2)?,
        subject: r.try_get(3)?,
        email: r.try_get(4)?,
        email_verified: r.try_get(5)?,
        created_at: r.try_get(6)?,
        last_login_at: r.try_get(7)?,
    })
}

#[async_trait(?Send)]
impl IdentityRepo for PgTx<'_> {
    async fn insert_identity(&mut self, i: &Identity) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO identities ({IDENTITY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &i.id.as_str(),
                &i.user_id.as_str(),
                &i.provider,
                &i.subject,
                &i.email,
                &i.email_verified,
                &i.created_at,
                &i.last_login_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn identity_by_subject(
        &mut self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<Identity>> {
        let row = self
            .opt(
                &format!(
                    "SELECT {IDENTITY_COLS} FROM identities WHERE provider = $1 AND subject = $2"
                ),
                &[&provider, &subject],
            )
            .await?;
        row.as_ref().map(identity_from_row).transpose()
    }

    async fn identities_of_user(&mut self, user_id: &UserId) -> Result<Vec<Identity>> {
        self.rows(
            &format!(
                "SELECT {IDENTITY_COLS} FROM identities WHERE user_id = $1
                 ORDER BY created_at, id"
            ),
            &[&user_id.as_str()],
        )
        .await?
        .iter()
        .map(identity_from_row)
        .collect()
    }

    async fn record_identity_login(
        &mut self,
        id: &IdentityId,
        now: Millis,
        email: Option<&str>,
        email_verified: bool,
    ) -> Result<()> {
        self.exec(
            "UPDATE identities SET last_login_at = $2, email = $3, email_verified = $4
             WHERE id = $1",
            &[&id.as_str(), &now, &email, &email_verified],
        )
        .await?;
        Ok(())
    }

    async fn delete_identity(&mut self, user_id: &UserId, id: &IdentityId) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM identities WHERE id = $1 AND user_id = $2",
                &[&id.as_str(), &user_id.as_str()],
            )
            .await?
            > 0)
    }

    async fn insert_federation_state(&mut self, s: &FederationState) -> Result<()> {
        let authorization = s
            .authorization
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.exec(
            "INSERT INTO federation_states (state_hash, provider, nonce, pkce_verifier,
                 client_id, return_to, link_user, expires_at, authorization_request)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &s.state_hash.as_slice(),
                &s.provider,
                &s.nonce,
                &s.pkce_verifier,
                &s.client_id,
                &s.return_to,
                &s.link_user.as_ref().map(UserId::as_str),
                &s.expires_at,
                &authorization,
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_federation_state(&mut self, hash: &TokenHash) -> Result<Option<FederationState>> {
        // DELETE … RETURNING: of two callbacks racing with one state, one gets the row.
        let row = self
            .opt(
                "DELETE FROM federation_states WHERE state_hash = $1
                 RETURNING provider, nonce, pkce_verifier, client_id, return_to, link_user,
                     expires_at, authorization_request",
                &[&hash.as_slice()],
            )
            .await?;
        row.map(|r| {
            Ok(FederationState {
                state_hash: *hash,
                provider: r.try_get(0)?,
                nonce: r.try_get(1)?,
                pkce_verifier: r.try_get(2)?,
                client_id: r.try_get(3)?,
                return_to: r.try_get(4)?,
                link_user: r.try_get::<_, Option<String>>(5)?.map(UserId::from_stored),
                expires_at: r.try_get(6)?,
                authorization: r
                    .try_get::<_, Option<String>>(7)?
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()?,
            })
        })
        .transpose()
    }

    async fn delete_federation_states_expired_before(&mut self, cutoff: Millis) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM federation_states WHERE expires_at < $1",
                &[&cutoff],
            )
            .await?,
        ))
    }
}
