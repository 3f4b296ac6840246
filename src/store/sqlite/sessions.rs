//! The `sessions` table, one row per refresh-token family carrying its head, and the
//! `refresh_tokens` table: SHA-256 hashes only, never a token.

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use crate::clock::Millis;
use crate::domain::model::{Session, StoredToken};
use crate::domain::repository::SessionRepo;
use crate::domain::repository::SweepStep;
use crate::domain::{RevocationReason, Scope, SessionId, TokenHash, UserId};
use crate::store::columns::{amr_of, amr_text};

use super::{revocations, SqliteTx};

const SESSION_COLS: &str = "id, user_id, client_id, scope, remember_me, created_at, \
     last_active_at, idle_expires_at, expires_at, ip, user_agent, revoked_at, revoked_reason, \
     head_generation, head_issued_at, sealed_head, head_hash, amr, auth_time";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    let scope: String = r.get(3)?;
    let reason: Option<String> = r.get(12)?;
    Ok(Session {
        id: SessionId::from_stored(r.get(0)?),
        user_id: UserId::from_stored(r.get(1)?),
        client_id: r.get(2)?,
        // Stored scopes were parsed when the session began.
        scope: Scope::parse(&scope).unwrap_or_default(),
        remember_me: r.get(4)?,
        created_at: r.get(5)?,
        last_active_at: r.get(6)?,
        idle_expires_at: r.get(7)?,
        expires_at: r.get(8)?,
        ip: r.get(9)?,
        user_agent: r.get(10)?,
        revoked_at: r.get(11)?,
        // A reason this version does not know still leaves the session revoked.
        revoked_reason: reason.as_deref().and_then(RevocationReason::parse),
        head_generation: r.get(13)?,
        head_issued_at: r.get(14)?,
        sealed_head: r.get(15)?,
        head_hash: r
            .get::<_, Option<Vec<u8>>>(16)?
            .and_then(|h| TokenHash::try_from(h.as_slice()).ok()),
        amr: amr_of(&r.get::<_, String>(17)?),
        // Sessions from before migration 10 authenticated when they were created.
        auth_time: r.get::<_, Option<i64>>(18)?.unwrap_or(r.get(5)?),
    })
}

#[async_trait(?Send)]
impl SessionRepo for SqliteTx<'_> {
    async fn insert_session(&mut self, s: &Session) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
            "INSERT INTO sessions (id, user_id, client_id, scope, remember_me, created_at,
             last_active_at, idle_expires_at, expires_at, ip, user_agent,
             head_generation, head_issued_at, head_hash, amr, auth_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            s.id.as_str(),
            s.user_id.as_str(),
            s.client_id,
            s.scope.to_claim(),
            s.remember_me,
            s.created_at,
            s.last_active_at,
            s.idle_expires_at,
            s.expires_at,
            s.ip,
            s.user_agent,
            s.head_generation,
            s.head_issued_at,
            s.head_hash.as_ref().map(|h| &h[..]),
            amr_text(&s.amr),
            s.auth_time
        ])
        .context("insert session")?;
        Ok(())
    }

    async fn session_by_id(&mut self, id: &SessionId) -> anyhow::Result<Option<Session>> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"
        ))?;
        Ok(st.query_row([id.as_str()], session_from_row).optional()?)
    }

    /// The user's sessions that are live at `now`, oldest first.
    async fn active_sessions_of_user(
        &mut self,
        user_id: &UserId,
        now: Millis,
    ) -> anyhow::Result<Vec<Session>> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {SESSION_COLS} FROM sessions
         WHERE user_id = ?1 AND revoked_at IS NULL AND idle_expires_at > ?2 AND expires_at > ?2
         ORDER BY created_at, id"
        ))?;
        let rows = st
            .query_map(params![user_id.as_str(), now], session_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Sessions neither revoked nor expired, across all users (the metrics gauge).
    async fn count_active_sessions(&mut self, now: Millis) -> anyhow::Result<i64> {
        let conn = self.conn;
        Ok(conn.query_row(
            "SELECT count(*) FROM sessions
         WHERE revoked_at IS NULL AND idle_expires_at > ?1 AND expires_at > ?1",
            params![now],
            |r| r.get(0),
        )?)
    }

    /// Records activity: moves `last_active_at` and the idle expiry, never the absolute one.
    async fn touch_session(&mut self, s: &Session) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
            "UPDATE sessions SET last_active_at = ?2, idle_expires_at = ?3,
             ip = COALESCE(?4, ip), user_agent = COALESCE(?5, user_agent)
         WHERE id = ?1",
        )?
        .execute(params![
            s.id.as_str(),
            s.last_active_at,
            s.idle_expires_at,
            s.ip,
            s.user_agent
        ])?;
        Ok(())
    }

    /// A rotation: the family's head moves to `head_generation` (its hash, and its copy
    /// sealed on its parent for the reuse interval) and the session records activity, in
    /// one row update: the only row a rotation writes. Fails unless the head was one
    /// generation behind.
    async fn advance_head(&mut self, s: &Session) -> anyhow::Result<()> {
        let conn = self.conn;
        let n = conn
            .prepare_cached(
                "UPDATE sessions SET last_active_at = ?2, idle_expires_at = ?3,
                 ip = COALESCE(?4, ip), user_agent = COALESCE(?5, user_agent),
                 head_generation = ?6, head_issued_at = ?7, sealed_head = ?8, head_hash = ?9
             WHERE id = ?1 AND head_generation = ?6 - 1 AND revoked_at IS NULL",
            )?
            .execute(params![
                s.id.as_str(),
                s.last_active_at,
                s.idle_expires_at,
                s.ip,
                s.user_agent,
                s.head_generation,
                s.head_issued_at,
                s.sealed_head,
                s.head_hash.as_ref().map(|h| &h[..])
            ])?;
        // The single writer already read the head in this transaction; the condition
        // matches PostgreSQL's so both backends refuse to advance a revoked session.
        anyhow::ensure!(
            n == 1,
            "the head moved (or the session ended) during the rotation"
        );
        Ok(())
    }

    /// Revokes one session if still live; returns whether it did.
    async fn revoke_session(
        &mut self,
        id: &SessionId,
        now: Millis,
        reason: RevocationReason,
    ) -> anyhow::Result<bool> {
        let conn = self.conn;
        // The sealed head is useless once the family is dead: wipe it in the same write.
        let n = conn
            .prepare_cached(
                "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3, sealed_head = NULL
             WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![id.as_str(), now, reason.as_str()])?;
        if n > 0 {
            // In the same transaction: a rolled-back revocation never reaches the log.
            revocations::append(conn, id, now)?;
            self.after.revoked(reason);
        }
        Ok(n > 0)
    }

    /// Wipes sealed heads whose reuse interval ended before `cutoff`; returns how many.
    async fn wipe_sealed_heads_before(&mut self, cutoff: Millis) -> anyhow::Result<usize> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "UPDATE sessions SET sealed_head = NULL
             WHERE sealed_head IS NOT NULL AND head_issued_at < ?1",
            )?
            .execute([cutoff])?)
    }

    /// Housekeeping sweeps the sessions in id order (the primary key), a bounded range
    /// per write, so each write stays small at any table size and a whole pass reads
    /// every session once (a
    /// `WHERE … LIMIT` delete rescans the table for every chunk: 3 s per chunk at 1M
    /// sessions). In the range (`after`, end of the next `limit` sessions], it deletes the
    /// tokens of ended sessions (they can never be used again), then the sessions that
    /// ended before `ended_before` (kept until then for the admin view).
    async fn sweep_sessions(
        &mut self,
        after: &str,
        limit: u32,
        now: Millis,
        ended_before: Millis,
    ) -> anyhow::Result<SweepStep> {
        let conn = self.conn;
        let end: Option<String> = conn
            .prepare_cached("SELECT id FROM sessions WHERE id > ?1 ORDER BY id LIMIT 1 OFFSET ?2")?
            .query_row(params![after, limit.saturating_sub(1)], |r| r.get(0))
            .optional()?;
        // The step's range: up to and including `end`, or the rest of the table. Two
        // statements rather than `?3 IS NULL OR id <= ?3`, which would keep SQLite from
        // bounding the index range, so every step would read to the end.
        let (range, bounds): (&str, Vec<&dyn rusqlite::ToSql>) = match &end {
            Some(upto) => ("id > ?2 AND id <= ?3", vec![&after, upto]),
            None => ("id > ?2", vec![&after]),
        };
        let for_tokens: Vec<&dyn rusqlite::ToSql> = std::iter::once(&now as &dyn rusqlite::ToSql)
            .chain(bounds.iter().copied())
            .collect();
        let for_sessions: Vec<&dyn rusqlite::ToSql> =
            std::iter::once(&ended_before as &dyn rusqlite::ToSql)
                .chain(bounds.iter().copied())
                .collect();
        // Tokens first: a session deleted here takes its tokens with it (cascade).
        let tokens = conn
            .prepare_cached(&format!(
                "DELETE FROM refresh_tokens WHERE session_id IN (
               SELECT id FROM sessions WHERE {range}
                 AND (revoked_at IS NOT NULL OR expires_at <= ?1 OR idle_expires_at <= ?1))"
            ))?
            .execute(for_tokens.as_slice())?;
        let sessions = conn
            .prepare_cached(&format!(
                "DELETE FROM sessions WHERE {range}
               AND COALESCE(revoked_at, MIN(expires_at, idle_expires_at)) < ?1"
            ))?
            .execute(for_sessions.as_slice())?;
        Ok(SweepStep {
            tokens,
            sessions,
            next: end,
        })
    }

    async fn token_by_hash(&mut self, hash: &TokenHash) -> anyhow::Result<Option<StoredToken>> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(
            "SELECT token_hash, session_id, generation, issued_at FROM refresh_tokens
         WHERE token_hash = ?1",
        )?;
        let row = st
            .query_row([&hash[..]], |r| {
                let bytes: Vec<u8> = r.get(0)?;
                Ok((bytes, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((bytes, session_id, generation, issued_at)): Option<(
            Vec<u8>,
            String,
            i64,
            Millis,
        )> = row
        else {
            return Ok(None);
        };
        let token_hash =
            TokenHash::try_from(bytes.as_slice()).context("a stored hash is not 32 bytes")?;
        Ok(Some(StoredToken {
            token_hash,
            session_id: SessionId::from_stored(session_id),
            generation,
            issued_at,
        }))
    }

    /// `UNIQUE (session_id, generation)` refuses a second token of one generation: a fork.
    async fn insert_token(&mut self, t: &StoredToken) -> anyhow::Result<()> {
        let conn = self.conn;
        conn.prepare_cached(
            "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
         VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            &t.token_hash[..],
            t.session_id.as_str(),
            t.generation,
            t.issued_at
        ])
        .context("insert refresh token")?;
        Ok(())
    }
}
