//! The `revocations` table: the log the revocation feed serves (docs/contract.md
//! "Revocation feed"), appended by revocations and erasures in their own transaction.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::Revocation;
use crate::domain::repository::{Result, RevocationLog};
use crate::domain::SessionId;

use super::tx::count;
use super::PgTx;

#[async_trait(?Send)]
impl RevocationLog for PgTx<'_> {
    async fn revocations_after(
        &mut self,
        after: i64,
        since: Millis,
        limit: u32,
    ) -> Result<Vec<Revocation>> {
        let rows = self
            .rows(
                "SELECT seq, session_id, revoked_at FROM revocations
                 WHERE seq > $1 AND revoked_at >= $2 ORDER BY seq LIMIT $3",
                &[&after, &since, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Revocation {
                    seq: r.try_get(0)?,
                    session_id: SessionId::from_stored(r.try_get(1)?),
                    revoked_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn prune_revocations(&mut self, cutoff: Millis, limit: u32) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM revocations WHERE seq IN (
                   SELECT seq FROM revocations WHERE revoked_at < $1 LIMIT $2)",
                &[&cutoff, &i64::from(limit)],
            )
            .await?,
        ))
    }
}
