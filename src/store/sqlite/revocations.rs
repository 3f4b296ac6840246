//! The `revocations` table: the log the revocation feed serves (docs/contract.md
//! "Revocation feed"). Appended in the same transaction as the revocation itself, so a
//! rolled-back revocation never reaches it.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use crate::clock::Millis;
use crate::domain::model::Revocation;
use crate::domain::repository::RevocationLog;
use crate::domain::{SessionId, UserId};

use super::SqliteTx;

/// Logs one revoked session.
pub(super) fn append(conn: &Connection, session_id: &SessionId, at: Millis) -> anyhow::Result<()> {
    conn.prepare_cached("INSERT INTO revocations (session_id, revoked_at) VALUES (?1, ?2)")?
        .execute(params![session_id.as_str(), at])?;
    Ok(())
}

/// Logs every session of `user_id` that is still live at `now` (erasure: the rows are
/// about to be deleted, their access tokens are not). Returns how many.
pub(super) fn append_live_sessions_of_user(
    conn: &Connection,
    user_id: &UserId,
    now: Millis,
) -> anyhow::Result<usize> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO revocations (session_id, revoked_at)
             SELECT id, ?2 FROM sessions
             WHERE user_id = ?1 AND revoked_at IS NULL
               AND idle_expires_at > ?2 AND expires_at > ?2
             ORDER BY created_at, id",
        )?
        .execute(params![user_id.as_str(), now])?)
}

#[async_trait(?Send)]
impl RevocationLog for SqliteTx<'_> {
    /// Up to `limit` entries numbered after `after` and revoked at or after `since`, in
    /// order.
    async fn revocations_after(
        &mut self,
        after: i64,
        since: Millis,
        limit: u32,
    ) -> anyhow::Result<Vec<Revocation>> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(
            "SELECT seq, session_id, revoked_at FROM revocations
         WHERE seq > ?1 AND revoked_at >= ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st
            .query_map(params![after, since, limit], |r| {
                Ok(Revocation {
                    seq: r.get(0)?,
                    session_id: SessionId::from_stored(r.get(1)?),
                    revoked_at: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Deletes up to `limit` entries revoked before `cutoff`; returns how many.
    async fn prune_revocations(&mut self, cutoff: Millis, limit: u32) -> anyhow::Result<usize> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "DELETE FROM revocations WHERE seq IN (
               SELECT seq FROM revocations WHERE revoked_at < ?1 LIMIT ?2)",
            )?
            .execute(params![cutoff, limit])?)
    }
}
