//! The `sessions` table, one row per refresh-token family carrying its head, and the
//! `refresh_tokens` table (SHA-256 hashes only).

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::clock::Millis;
use crate::domain::model::{Session, StoredToken};
use crate::domain::repository::{Result, SessionRepo, SweepStep};
use crate::domain::{RevocationReason, Scope, SessionId, TokenHash, UserId};
use crate::store::columns::{amr_of, amr_text};

use super::tx::{count, hash_of};
use super::users::{user_from_row_at, USER_COLS_OF_U};
use super::PgTx;

const SESSION_COLS: &str = "id, user_id, client_id, scope, remember_me, created_at, \
     last_active_at, idle_expires_at, expires_at, ip, user_agent, revoked_at, revoked_reason, \
     head_generation, head_issued_at, sealed_head, head_hash, amr, auth_time";

const SESSION_COLS_OF_S: &str = "s.id, s.user_id, s.client_id, s.scope, s.remember_me, \
     s.created_at, s.last_active_at, s.idle_expires_at, s.expires_at, s.ip, s.user_agent, \
     s.revoked_at, s.revoked_reason, s.head_generation, s.head_issued_at, s.sealed_head, \
     s.head_hash, s.amr, s.auth_time";
const SESSION_COL_COUNT: usize = 19;

fn session_from_row(r: &Row) -> Result<Session> {
    let scope: String = r.try_get(3)?;
    let reason: Option<String> = r.try_get(12)?;
    let head_hash: Option<Vec<u8>> = r.try_get(16)?;
    Ok(Session {
        id: SessionId::from_stored(r.try_get(0)?),
        user_id: UserId::from_stored(r.try_get(1)?),
        client_id: r.try_get(2)?,
        // Stored scopes were parsed when the session began.
        scope: Scope::parse(&scope).unwrap_or_default(),
        remember_me: r.try_get(4)?,
        created_at: r.try_get(5)?,
        last_active_at: r.try_get(6)?,
        idle_expires_at: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        ip: r.try_get(9)?,
        user_agent: r.try_get(10)?,
        revoked_at: r.try_get(11)?,
        // A reason this version does not know still leaves the session revoked.
        revoked_reason: reason.as_deref().and_then(RevocationReason::parse),
        head_generation: r.try_get(13)?,
        head_issued_at: r.try_get(14)?,
        sealed_head: r.try_get(15)?,
        head_hash: head_hash.and_then(|h| TokenHash::try_from(h.as_slice()).ok()),
        amr: amr_of(&r.try_get::<_, String>(17)?),
        auth_time: r
            .try_get::<_, Option<i64>>(18)?
            .map_or_else(|| r.try_get(5), Ok)?,
    })
}

#[async_trait(?Send)]
impl SessionRepo for PgTx<'_> {
    async fn session_by_id(&mut self, id: &SessionId) -> Result<Option<Session>> {
        // Every caller of a session goes on to its user (a refresh, a Bearer request):
        // both come in one round trip. No row lock: every write a job makes to a
        // session it read is conditional on what it read (see the module comment).
        let sql = format!(
            "SELECT {SESSION_COLS_OF_S}, {USER_COLS_OF_U} FROM sessions s
             JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        );
        let Some(row) = self.opt(&sql, &[&id.as_str()]).await? else {
            return Ok(None);
        };
        let session = session_from_row(&row)?;
        self.user_read_with_session = Some(user_from_row_at(&row, SESSION_COL_COUNT)?);
        Ok(Some(session))
    }

    async fn active_sessions_of_user(
        &mut self,
        user_id: &UserId,
        now: Millis,
    ) -> Result<Vec<Session>> {
        if self.writing {
            self.exec(
                "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
                &[&user_id.as_str()],
            )
            .await?;
        }
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL AND idle_expires_at > $2 AND expires_at > $2
             ORDER BY created_at, id"
        );
        self.rows(&sql, &[&user_id.as_str(), &now])
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    async fn count_active_sessions(&mut self, now: Millis) -> Result<i64> {
        let r = self
            .one(
                "SELECT count(*) FROM sessions
                 WHERE revoked_at IS NULL AND idle_expires_at > $1 AND expires_at > $1",
                &[&now],
            )
            .await?;
        Ok(r.try_get(0)?)
    }

    async fn insert_session(&mut self, s: &Session) -> Result<()> {
        let head_hash = s.head_hash.as_ref().map(|h| &h[..]);
        self.exec(
            "INSERT INTO sessions (id, user_id, client_id, scope, remember_me, created_at,
                 last_active_at, idle_expires_at, expires_at, ip, user_agent,
                 head_generation, head_issued_at, head_hash, amr, auth_time)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                &s.id.as_str(),
                &s.user_id.as_str(),
                &s.client_id,
                &s.scope.to_claim(),
                &s.remember_me,
                &s.created_at,
                &s.last_active_at,
                &s.idle_expires_at,
                &s.expires_at,
                &s.ip,
                &s.user_agent,
                &s.head_generation,
                &s.head_issued_at,
                &head_hash,
                &amr_text(&s.amr),
                &s.auth_time,
            ],
        )
        .await?;
        Ok(())
    }

    async fn touch_session(&mut self, s: &Session) -> Result<()> {
        self.exec(
            "UPDATE sessions SET last_active_at = $2, idle_expires_at = $3,
                 ip = COALESCE($4, ip), user_agent = COALESCE($5, user_agent)
             WHERE id = $1",
            &[
                &s.id.as_str(),
                &s.last_active_at,
                &s.idle_expires_at,
                &s.ip,
                &s.user_agent,
            ],
        )
        .await?;
        Ok(())
    }

    async fn advance_head(&mut self, s: &Session) -> Result<()> {
        let head_hash = s.head_hash.as_ref().map(|h| &h[..]);
        let n = self
            .exec(
                "UPDATE sessions SET last_active_at = $2, idle_expires_at = $3,
                     ip = COALESCE($4, ip), user_agent = COALESCE($5, user_agent),
                     head_generation = $6, head_issued_at = $7, sealed_head = $8, head_hash = $9
                 WHERE id = $1 AND head_generation = $6::BIGINT - 1 AND revoked_at IS NULL",
                &[
                    &s.id.as_str(),
                    &s.last_active_at,
                    &s.idle_expires_at,
                    &s.ip,
                    &s.user_agent,
                    &s.head_generation,
                    &s.head_issued_at,
                    &s.sealed_head,
                    &head_hash,
                ],
            )
            .await?;
        if n != 1 {
            // Another instance rotated (or revoked) this head since the job read it: the
            // job runs again, sees the new head, and gives the grace answer (or refuses).
            return Err(super::Conflict.into());
        }
        Ok(())
    }

    async fn revoke_session(
        &mut self,
        id: &SessionId,
        now: Millis,
        reason: RevocationReason,
    ) -> Result<bool> {
        // The sealed head is useless once the family is dead: wipe it in the same write.
        let n = self
            .exec(
                "UPDATE sessions SET revoked_at = $2, revoked_reason = $3, sealed_head = NULL
                 WHERE id = $1 AND revoked_at IS NULL",
                &[&id.as_str(), &now, &reason.as_str()],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        self.lock_revocation_log().await?;
        self.exec(
            "INSERT INTO revocations (session_id, revoked_at) VALUES ($1, $2)",
            &[&id.as_str(), &now],
        )
        .await?;
        self.after.revoked(reason);
        Ok(true)
    }

    async fn wipe_sealed_heads_before(&mut self, cutoff: Millis) -> Result<usize> {
        Ok(count(
            self.exec(
                "UPDATE sessions SET sealed_head = NULL
                 WHERE sealed_head IS NOT NULL AND head_issued_at < $1",
                &[&cutoff],
            )
            .await?,
        ))
    }

    async fn sweep_sessions(
        &mut self,
        after: &str,
        limit: u32,
        now: Millis,
        ended_before: Millis,
    ) -> Result<SweepStep> {
        // As in SQLite, a bounded range of the sessions per step in id order (the
        // primary key's index), so each step stays small at any size.
        let offset = i64::from(limit.saturating_sub(1));
        let end: Option<String> = self
            .opt(
                "SELECT id FROM sessions WHERE id > $1 ORDER BY id LIMIT 1 OFFSET $2",
                &[&after, &offset],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        // The step's range: up to and including `end`, or the rest of the table.
        let (range, bounds): (&str, Vec<&(dyn ToSql + Sync)>) = match &end {
            Some(upto) => ("id > $2 AND id <= $3", vec![&after, upto]),
            None => ("id > $2", vec![&after]),
        };
        let for_tokens: Vec<&(dyn ToSql + Sync)> = std::iter::once(&now as &(dyn ToSql + Sync))
            .chain(bounds.iter().copied())
            .collect();
        let for_sessions: Vec<&(dyn ToSql + Sync)> =
            std::iter::once(&ended_before as &(dyn ToSql + Sync))
                .chain(bounds.iter().copied())
                .collect();
        let tokens = self
            .exec(
                &format!(
                    "DELETE FROM refresh_tokens WHERE session_id IN (
                       SELECT id FROM sessions WHERE {range}
                         AND (revoked_at IS NOT NULL OR expires_at <= $1 OR idle_expires_at <= $1))"
                ),
                &for_tokens,
            )
            .await?;
        let sessions = self
            .exec(
                &format!(
                    "DELETE FROM sessions WHERE {range}
                       AND COALESCE(revoked_at, LEAST(expires_at, idle_expires_at)) < $1"
                ),
                &for_sessions,
            )
            .await?;
        Ok(SweepStep {
            tokens: count(tokens),
            sessions: count(sessions),
            next: end,
        })
    }

    async fn token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<StoredToken>> {
        let row = self
            .opt(
                "SELECT token_hash, session_id, generation, issued_at FROM refresh_tokens
                 WHERE token_hash = $1",
                &[&&hash[..]],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(StoredToken {
            token_hash: hash_of(r.try_get(0)?)?,
            session_id: SessionId::from_stored(r.try_get(1)?),
            generation: r.try_get(2)?,
            issued_at: r.try_get(3)?,
        }))
    }

    async fn insert_token(&mut self, t: &StoredToken) -> Result<()> {
        self.exec(
            "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
             VALUES ($1, $2, $3, $4)",
            &[
                &&t.token_hash[..],
                &t.session_id.as_str(),
                &t.generation,
                &t.issued_at,
            ],
        )
        .await?;
        Ok(())
    }
}
