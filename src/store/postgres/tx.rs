//! [`PgTx`]: the domain's `Tx` port over one pooled PostgreSQL connection. The same
//! statements as the SQLite backend (`store/sqlite/`), in PostgreSQL's dialect.
//!
//! A write job runs in one READ COMMITTED transaction. `BEGIN` is not sent on its own:
//! it goes out pipelined with the job's first statement (one round trip saved per
//! write). Races between instances are decided by the database, not by luck:
//! - a rotation's write is conditional on the head it read (`advance_head`: the
//!   generation before, not revoked); of two rotations of one head, on any instances,
//!   the second's update finds the head moved, so its job runs again, reads the new
//!   head and answers with the grace rule (docs/contract.md "Refresh rotation"). Its
//!   other writes are conditional too (`revoke_session`) or harmless to repeat
//!   (`touch_session`), so reading a session takes no lock (a row lock is one more WAL
//!   record per refresh);
//! - a write job that reads a user by id or name holds the row (`FOR SHARE`), so a
//!   password change or a disable cannot commit between a login's check and its new
//!   session (the user read along with a session is not locked: a refresh opens no
//!   session, and a revocation of its session waits for its update, then applies);
//! - a write job that lists a user's live sessions (login's session limit, sign-out
//!   everywhere) first locks the user's row, so two logins cannot both see room for one
//!   more session;
//! - appends to the revocation log take a transaction-scoped advisory lock, so log
//!   numbers are assigned in commit order and a feed reader that resumes after number
//!   N can never miss a smaller number committed later.

use async_trait::async_trait;
use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::clock::Millis;
use crate::domain::model::{
    AccountToken, Actor, Event, EventQuery, NewEvent, Revocation, Session, StoredToken,
    TokenPurpose, User, UserEmail,
};
use crate::domain::model::{MfaFactor, PendingLogin};
use crate::domain::repository::{Result, SweepStep, Tx};
use crate::domain::{RevocationReason, Scope, TokenHash};
use crate::store::columns::{amr_of, amr_text, purpose_of, shown_actor};

/// The advisory-lock key serializing appends to the revocation log ("lk" "rv").
const REVOCATION_LOG_LOCK: i64 = 0x6c6b_7276;

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

pub struct PgTx<'c> {
    client: &'c ClientWrapper,
    /// A write job whose `BEGIN` has not gone out yet (it rides with the first statement).
    begin_pending: bool,
    /// A write job: sessions read are locked for the rest of it.
    writing: bool,
    /// The user read with the last session (one round trip for both); handed out by
    /// `user_by_id` until the job changes a user.
    user_read_with_session: Option<User>,
    pub(super) revoked: Vec<RevocationReason>,
    pub(super) logged: usize,
    pub(super) scrub: bool,
}

impl<'c> PgTx<'c> {
    /// A write job's transaction (`BEGIN` sent with its first statement).
    pub fn write(client: &'c ClientWrapper) -> Self {
        Self::new(client, true)
    }

    /// A write job inside a transaction its batch has already begun (`group`).
    pub fn within(client: &'c ClientWrapper) -> Self {
        let mut tx = Self::new(client, true);
        tx.begin_pending = false;
        tx
    }

    /// A read job: statements run on their own, each seeing every committed write.
    pub fn read(client: &'c ClientWrapper) -> Self {
        Self::new(client, false)
    }

    fn new(client: &'c ClientWrapper, writing: bool) -> Self {
        Self {
            client,
            begin_pending: writing,
            writing,
            user_read_with_session: None,
            revoked: Vec::new(),
            logged: 0,
            scrub: false,
        }
    }

    /// Whether a transaction is open (a write job that ran at least one statement).
    pub fn in_transaction(&self) -> bool {
        self.writing && !self.begin_pending
    }

    async fn rows(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let st = self.client.prepare_cached(sql).await?;
        if self.begin_pending {
            self.begin_pending = false;
            let (begun, rows) = tokio::join!(
                self.client
                    .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                self.client.query(&st, params)
            );
            begun?;
            return Ok(rows?);
        }
        Ok(self.client.query(&st, params).await?)
    }

    async fn opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }

    async fn one(&mut self, sql: &str, params: Params<'_>) -> Result<Row> {
        self.opt(sql, params)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a query that returns one row returned none"))
    }

    async fn exec(&mut self, sql: &str, params: Params<'_>) -> Result<u64> {
        let st = self.client.prepare_cached(sql).await?;
        if self.begin_pending {
            self.begin_pending = false;
            let (begun, n) = tokio::join!(
                self.client
                    .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                self.client.execute(&st, params)
            );
            begun?;
            return Ok(n?);
        }
        Ok(self.client.execute(&st, params).await?)
    }

    async fn lock_revocation_log(&mut self) -> Result<()> {
        self.exec("SELECT pg_advisory_xact_lock($1)", &[&REVOCATION_LOG_LOCK])
            .await?;
        Ok(())
    }
}

const USER_COLS: &str = "id, username, password_hash, roles, created_at, disabled_at";

const USER_COLS_OF_U: &str =
    "u.id, u.username, u.password_hash, u.roles, u.created_at, u.disabled_at";

fn user_from_row(r: &Row) -> Result<User> {
    user_from_row_at(r, 0)
}

/// A user from the columns starting at `at` (after a session's, in a join).
fn user_from_row_at(r: &Row, at: usize) -> Result<User> {
    let roles: String = r.try_get(at + 3)?;
    Ok(User {
        id: r.try_get(at)?,
        username: r.try_get(at + 1)?,
        password_hash: r.try_get(at + 2)?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        created_at: r.try_get(at + 4)?,
        disabled_at: r.try_get(at + 5)?,
    })
}

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
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
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

fn pending_login_from_row(r: &Row) -> Result<PendingLogin> {
    let scope: String = r.try_get(3)?;
    let audiences: String = r.try_get(4)?;
    let failures: i64 = r.try_get(9)?;
    Ok(PendingLogin {
        token_hash: hash_of(r.try_get(0)?)?,
        user_id: r.try_get(1)?,
        client_id: r.try_get(2)?,
        scope: Scope::parse(&scope).unwrap_or_default(),
        audiences: serde_json::from_str(&audiences).unwrap_or_default(),
        remember_me: r.try_get(5)?,
        password_fingerprint: hash_of(r.try_get(6)?)?,
        auth_time: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        browser: r.try_get(10)?,
    })
}

fn hash_of(bytes: Vec<u8>) -> Result<TokenHash> {
    TokenHash::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("a stored hash is not 32 bytes"))
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[async_trait(?Send)]
impl Tx for PgTx<'_> {
    async fn ping(&mut self) -> Result<()> {
        // Touches the hottest table, so a lock on it (a stall) fails the probe too.
        self.one(
            "SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1) s",
            &[],
        )
        .await?;
        Ok(())
    }

    async fn user_by_id(&mut self, id: &str) -> Result<Option<User>> {
        if let Some(user) = self.user_read_with_session.as_ref().filter(|u| u.id == id) {
            return Ok(Some(user.clone()));
        }
        // A write job holds the user's row (shared) until it commits, so a password
        // change or a disable cannot commit between its check and its write: a login
        // checked against the old password cannot open a session the change never
        // saw (ASVS v5 7.4.3), nor a refresh outlive a disable.
        let sql = if self.writing {
            format!("SELECT {USER_COLS} FROM users WHERE id = $1 FOR SHARE")
        } else {
            format!("SELECT {USER_COLS} FROM users WHERE id = $1")
        };
        self.opt(&sql, &[&id])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }
    async fn user_by_username_key(&mut self, key: &str) -> Result<Option<User>> {
        let sql = if self.writing {
            format!("SELECT {USER_COLS} FROM users WHERE username_key = $1 FOR SHARE")
        } else {
            format!("SELECT {USER_COLS} FROM users WHERE username_key = $1")
        };
        self.opt(&sql, &[&key])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }
    async fn all_users(&mut self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY created_at, id");
        self.rows(&sql, &[])
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }
    async fn insert_user(&mut self, user: &User, username_key: &str, skeleton: &str) -> Result<()> {
        self.user_read_with_session = None;
        let roles = serde_json::to_string(&user.roles)?;
        self.exec(
            "INSERT INTO users (id, username, username_key, username_skeleton, password_hash,
                 roles, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &user.id,
                &user.username,
                &username_key,
                &skeleton,
                &user.password_hash,
                &roles,
                &user.created_at,
            ],
        )
        .await?;
        Ok(())
    }
    async fn username_skeleton_taken(&mut self, skeleton: &str) -> Result<bool> {
        let r = self
            .one(
                "SELECT EXISTS(SELECT 1 FROM users WHERE username_skeleton = $1)",
                &[&skeleton],
            )
            .await?;
        Ok(r.try_get(0)?)
    }
    async fn set_password_hash(&mut self, user_id: &str, hash: &str) -> Result<()> {
        self.user_read_with_session = None;
        self.exec(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            &[&user_id, &hash],
        )
        .await?;
        Ok(())
    }
    async fn set_disabled(&mut self, user_id: &str, now: Millis) -> Result<bool> {
        self.user_read_with_session = None;
        Ok(self
            .exec(
                "UPDATE users SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
                &[&user_id, &now],
            )
            .await?
            > 0)
    }
    async fn delete_user(&mut self, user_id: &str, now: Millis) -> Result<bool> {
        self.user_read_with_session = None;
        // Erasure deletes the session rows, not the access tokens already issued: the
        // live sessions enter the log first (docs/contract.md "Revocation feed").
        self.lock_revocation_log().await?;
        let logged = self
            .exec(
                "INSERT INTO revocations (session_id, revoked_at)
                 SELECT id, $2 FROM sessions
                 WHERE user_id = $1 AND revoked_at IS NULL
                   AND idle_expires_at > $2 AND expires_at > $2
                 ORDER BY created_at, id",
                &[&user_id, &now],
            )
            .await?;
        self.exec("DELETE FROM events WHERE user_id = $1", &[&user_id])
            .await?;
        // The shared login-failure count is keyed by the name: personal data too.
        self.exec(
            "DELETE FROM login_failures
             WHERE key = 'a:' || (SELECT username_key FROM users WHERE id = $1)",
            &[&user_id],
        )
        .await?;
        self.exec(
            "UPDATE events SET actor_id = NULL, actor_ip = NULL, actor_user_agent = NULL
             WHERE actor_id = $1",
            &[&user_id],
        )
        .await?;
        let deleted = self
            .exec("DELETE FROM users WHERE id = $1", &[&user_id])
            .await?
            > 0;
        if deleted {
            self.logged += count(logged);
        }
        Ok(deleted)
    }
    async fn scrub_after_commit(&mut self) -> Result<()> {
        self.scrub = true;
        Ok(())
    }

    async fn session_by_id(&mut self, id: &str) -> Result<Option<Session>> {
        // Every caller of a session goes on to its user (a refresh, a Bearer request):
        // both come in one round trip. No row lock: every write a job makes to a
        // session it read is conditional on what it read (see the module comment).
        let sql = format!(
            "SELECT {SESSION_COLS_OF_S}, {USER_COLS_OF_U} FROM sessions s
             JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        );
        let Some(row) = self.opt(&sql, &[&id]).await? else {
            return Ok(None);
        };
        let session = session_from_row(&row)?;
        self.user_read_with_session = Some(user_from_row_at(&row, SESSION_COL_COUNT)?);
        Ok(Some(session))
    }
    async fn active_sessions_of_user(
        &mut self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<Session>> {
        if self.writing {
            self.exec(
                "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
                &[&user_id],
            )
            .await?;
        }
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL AND idle_expires_at > $2 AND expires_at > $2
             ORDER BY created_at, id"
        );
        self.rows(&sql, &[&user_id, &now])
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
                &s.id,
                &s.user_id,
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
                &s.id,
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
                    &s.id,
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
        id: &str,
        now: Millis,
        reason: RevocationReason,
    ) -> Result<bool> {
        // The sealed head is useless once the family is dead: wipe it in the same write.
        let n = self
            .exec(
                "UPDATE sessions SET revoked_at = $2, revoked_reason = $3, sealed_head = NULL
                 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now, &reason.as_str()],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        self.lock_revocation_log().await?;
        self.exec(
            "INSERT INTO revocations (session_id, revoked_at) VALUES ($1, $2)",
            &[&id, &now],
        )
        .await?;
        self.revoked.push(reason);
        self.logged += 1;
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
        after: i64,
        limit: u32,
        now: Millis,
        ended_before: Millis,
    ) -> Result<SweepStep> {
        // As in SQLite, a bounded range of the sessions per step, in the order of the
        // `n` column (PostgreSQL has no rowid), so each step stays small at any size.
        let offset = i64::from(limit.saturating_sub(1));
        let end: Option<i64> = self
            .opt(
                "SELECT n FROM sessions WHERE n > $1 ORDER BY n LIMIT 1 OFFSET $2",
                &[&after, &offset],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let upto = end.unwrap_or(i64::MAX);
        let tokens = self
            .exec(
                "DELETE FROM refresh_tokens WHERE session_id IN (
                   SELECT id FROM sessions WHERE n > $2 AND n <= $3
                     AND (revoked_at IS NOT NULL OR expires_at <= $1 OR idle_expires_at <= $1))",
                &[&now, &after, &upto],
            )
            .await?;
        let sessions = self
            .exec(
                "DELETE FROM sessions WHERE n > $2 AND n <= $3
                   AND COALESCE(revoked_at, LEAST(expires_at, idle_expires_at)) < $1",
                &[&ended_before, &after, &upto],
            )
            .await?;
        Ok(SweepStep {
            tokens: count(tokens),
            sessions: count(sessions),
            next: end,
        })
    }

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
                    session_id: r.try_get(1)?,
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
            session_id: r.try_get(1)?,
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
                &t.session_id,
                &t.generation,
                &t.issued_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn insert_event(&mut self, at: Millis, e: &NewEvent) -> Result<()> {
        let actor = e.actor.clone().unwrap_or_default();
        self.exec(
            "INSERT INTO events (at, kind, user_id, session_id, client_id, ip, user_agent, detail,
                 actor_id, actor_ip, actor_user_agent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &at,
                &e.kind.as_str(),
                &e.user_id,
                &e.session_id,
                &e.client_id,
                &e.ip,
                &e.user_agent,
                &e.detail,
                &actor.user_id,
                &actor.ip,
                &actor.user_agent,
            ],
        )
        .await?;
        tracing::info!(
            target: "latchkey::security",
            event = e.kind.as_str(),
            user_id = e.user_id.as_deref(),
            session_id = e.session_id.as_deref(),
            client_id = e.client_id.as_deref(),
            detail = e.detail.as_ref().map(|d| d.to_string()).as_deref(),
            "security event"
        );
        Ok(())
    }
    async fn events(&mut self, q: &EventQuery) -> Result<Vec<Event>> {
        let rows = self
            .rows(
                "SELECT id, at, kind, user_id, session_id, client_id, ip, user_agent, detail,
                     actor_id, actor_ip, actor_user_agent
                 FROM events
                 WHERE ($1::TEXT IS NULL OR user_id = $1) AND ($2::TEXT IS NULL OR kind = $2)
                   AND ($3::BIGINT IS NULL OR at >= $3) AND ($4::BIGINT IS NULL OR at < $4)
                   AND ($5::BIGINT IS NULL OR id < $5)
                 ORDER BY id DESC LIMIT $6",
                &[
                    &q.user_id,
                    &q.kind,
                    &q.since,
                    &q.until,
                    &q.before,
                    &i64::from(q.limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let detail: Option<serde_json::Value> = r.try_get(8)?;
                let actor = Actor {
                    user_id: r.try_get(9)?,
                    ip: r.try_get(10)?,
                    user_agent: r.try_get(11)?,
                };
                let actor = shown_actor(actor, detail.as_ref());
                Ok(Event {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    user_id: r.try_get(3)?,
                    session_id: r.try_get(4)?,
                    client_id: r.try_get(5)?,
                    ip: r.try_get(6)?,
                    user_agent: r.try_get(7)?,
                    detail,
                    actor,
                })
            })
            .collect()
    }
    async fn has_logged_in_before(&mut self, user_id: &str) -> Result<bool> {
        let r = self
            .one(
                "SELECT EXISTS (SELECT 1 FROM events
                   WHERE user_id = $1 AND kind = 'login_succeeded')",
                &[&user_id],
            )
            .await?;
        Ok(r.try_get(0)?)
    }
    async fn seen_device(
        &mut self,
        user_id: &str,
        since: Millis,
        network: &str,
        ua_family: &str,
    ) -> Result<bool> {
        let r = self
            .one(
                "SELECT EXISTS (SELECT 1 FROM events
                   WHERE user_id = $1 AND kind = 'login_succeeded' AND at >= $2
                     AND detail ->> 'network' = $3 AND detail ->> 'ua_family' = $4)",
                &[&user_id, &since, &network, &ua_family],
            )
            .await?;
        Ok(r.try_get(0)?)
    }
    async fn delete_events_before(&mut self, cutoff: Millis, limit: u32) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM events WHERE id IN (
                   SELECT id FROM (SELECT id, at FROM events ORDER BY id LIMIT $2) oldest
                   WHERE at < $1)",
                &[&cutoff, &i64::from(limit)],
            )
            .await?,
        ))
    }

    async fn email_of_user(&mut self, user_id: &str) -> Result<Option<UserEmail>> {
        let row = self
            .opt(
                "SELECT user_id, email, verified_at FROM user_emails WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
        row.map(|r| {
            Ok(UserEmail {
                user_id: r.try_get(0)?,
                email: r.try_get(1)?,
                verified_at: r.try_get(2)?,
            })
        })
        .transpose()
    }
    async fn user_by_verified_email(&mut self, email_key: &str) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {} FROM users u JOIN user_emails e ON e.user_id = u.id
             WHERE e.email_key = $1 AND e.verified_at IS NOT NULL",
            USER_COLS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.opt(&sql, &[&email_key])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }
    async fn lock_email_claims(&mut self, email_key: &str) -> Result<Vec<UserEmail>> {
        // Locked in one order, so two verifications of the address queue up instead of
        // deadlocking; the second then sees the first's commit (READ COMMITTED re-reads
        // a locked row once its lock is released).
        self.rows(
            "SELECT user_id, email, verified_at FROM user_emails
             WHERE email_key = $1 ORDER BY user_id FOR UPDATE",
            &[&email_key],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(UserEmail {
                user_id: r.try_get(0)?,
                email: r.try_get(1)?,
                verified_at: r.try_get(2)?,
            })
        })
        .collect()
    }
    async fn drop_unverified_claims(&mut self, email_key: &str, owner: &str) -> Result<usize> {
        self.exec(
            "DELETE FROM account_tokens
             WHERE purpose = $3 AND email_key = $1 AND user_id <> $2",
            &[&email_key, &owner, &TokenPurpose::Verify.as_str()],
        )
        .await?;
        Ok(count(
            self.exec(
                "DELETE FROM user_emails
                 WHERE email_key = $1 AND user_id <> $2 AND verified_at IS NULL",
                &[&email_key, &owner],
            )
            .await?,
        ))
    }
    async fn set_email(&mut self, email: &UserEmail, email_key: &str) -> Result<()> {
        self.exec(
            "INSERT INTO user_emails (user_id, email, email_key, verified_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET
                 email = excluded.email, email_key = excluded.email_key,
                 verified_at = excluded.verified_at",
            &[&email.user_id, &email.email, &email_key, &email.verified_at],
        )
        .await?;
        Ok(())
    }
    async fn mark_email_verified(
        &mut self,
        user_id: &str,
        email_key: &str,
        now: Millis,
    ) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE user_emails SET verified_at = COALESCE(verified_at, $3)
                 WHERE user_id = $1 AND email_key = $2",
                &[&user_id, &email_key, &now],
            )
            .await?
            > 0)
    }
    async fn insert_account_token(&mut self, t: &AccountToken) -> Result<()> {
        self.exec(
            "INSERT INTO account_tokens (token_hash, user_id, purpose, email_key, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &t.token_hash.as_slice(),
                &t.user_id,
                &t.purpose.as_str(),
                &t.email_key,
                &t.created_at,
                &t.expires_at,
            ],
        )
        .await?;
        Ok(())
    }
    async fn account_token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<AccountToken>> {
        let row = self
            .opt(
                "SELECT token_hash, user_id, purpose, email_key, created_at, expires_at
                 FROM account_tokens WHERE token_hash = $1",
                &[&hash.as_slice()],
            )
            .await?;
        row.map(|r| {
            let purpose: String = r.try_get(2)?;
            Ok(AccountToken {
                token_hash: hash_of(r.try_get(0)?)?,
                user_id: r.try_get(1)?,
                purpose: purpose_of(&purpose),
                email_key: r.try_get(3)?,
                created_at: r.try_get(4)?,
                expires_at: r.try_get(5)?,
            })
        })
        .transpose()
    }
    async fn delete_account_tokens(
        &mut self,
        user_id: &str,
        purpose: TokenPurpose,
    ) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2",
                &[&user_id, &purpose.as_str()],
            )
            .await?,
        ))
    }
    async fn count_account_tokens_since(
        &mut self,
        user_id: &str,
        purpose: TokenPurpose,
        since: Millis,
    ) -> Result<u32> {
        let r = self
            .one(
                "SELECT count(*) FROM account_tokens
                 WHERE user_id = $1 AND purpose = $2 AND created_at > $3",
                &[&user_id, &purpose.as_str(), &since],
            )
            .await?;
        let n: i64 = r.try_get(0)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
    async fn delete_account_tokens_expired_before(&mut self, cutoff: Millis) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM account_tokens WHERE expires_at < $1",
                &[&cutoff],
            )
            .await?,
        ))
    }

    // Second factor (docs/contract.md "Second factor").
    async fn mfa_factor(&mut self, user_id: &str) -> Result<Option<MfaFactor>> {
        let row = self
            .opt(
                "SELECT user_id, sealed_secret, created_at, confirmed_at, last_step
                 FROM mfa_factors WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
        row.map(|r| {
            Ok(MfaFactor {
                user_id: r.try_get(0)?,
                sealed_secret: r.try_get(1)?,
                created_at: r.try_get(2)?,
                confirmed_at: r.try_get(3)?,
                last_step: r.try_get(4)?,
            })
        })
        .transpose()
    }
    async fn put_mfa_factor(&mut self, f: &MfaFactor) -> Result<()> {
        self.exec(
            "INSERT INTO mfa_factors (user_id, sealed_secret, created_at, confirmed_at, last_step)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret,
                 created_at = excluded.created_at, confirmed_at = excluded.confirmed_at,
                 last_step = excluded.last_step",
            &[
                &f.user_id,
                &f.sealed_secret,
                &f.created_at,
                &f.confirmed_at,
                &f.last_step,
            ],
        )
        .await?;
        Ok(())
    }
    async fn advance_mfa_step(&mut self, user_id: &str, step: i64) -> Result<bool> {
        // RFC 6238 §5.2: a code is accepted once; the row's update decides between two
        // instances checking the same code at once.
        Ok(self
            .exec(
                "UPDATE mfa_factors SET last_step = $2
                 WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2)",
                &[&user_id, &step],
            )
            .await?
            == 1)
    }
    async fn delete_mfa_factor(&mut self, user_id: &str) -> Result<bool> {
        self.exec(
            "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        self.exec("DELETE FROM mfa_logins WHERE user_id = $1", &[&user_id])
            .await?;
        Ok(self
            .exec("DELETE FROM mfa_factors WHERE user_id = $1", &[&user_id])
            .await?
            == 1)
    }
    async fn replace_recovery_codes(&mut self, user_id: &str, hashes: &[TokenHash]) -> Result<()> {
        self.exec(
            "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        for h in hashes {
            self.exec(
                "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&user_id, &h.as_slice()],
            )
            .await?;
        }
        Ok(())
    }
    async fn consume_recovery_code(&mut self, user_id: &str, hash: &TokenHash) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM mfa_recovery_codes WHERE user_id = $1 AND code_hash = $2",
                &[&user_id, &hash.as_slice()],
            )
            .await?
            == 1)
    }
    async fn insert_mfa_login(&mut self, l: &PendingLogin) -> Result<()> {
        self.exec(
            "INSERT INTO mfa_logins (token_hash, user_id, client_id, scope, audiences, remember_me,
                 password_fingerprint, auth_time, expires_at, failures, browser)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &l.token_hash.as_slice(),
                &l.user_id,
                &l.client_id,
                &l.scope.to_claim(),
                &serde_json::to_string(&l.audiences)?,
                &l.remember_me,
                &l.password_fingerprint.as_slice(),
                &l.auth_time,
                &l.expires_at,
                &i64::from(l.failures),
                &l.browser,
            ],
        )
        .await?;
        Ok(())
    }
    async fn mfa_login_by_hash(&mut self, hash: &TokenHash) -> Result<Option<PendingLogin>> {
        self.opt(
            "SELECT token_hash, user_id, client_id, scope, audiences, remember_me,
                 password_fingerprint, auth_time, expires_at, failures, browser
             FROM mfa_logins WHERE token_hash = $1",
            &[&hash.as_slice()],
        )
        .await?
        .as_ref()
        .map(pending_login_from_row)
        .transpose()
    }
    async fn delete_mfa_login(&mut self, hash: &TokenHash) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM mfa_logins WHERE token_hash = $1",
                &[&hash.as_slice()],
            )
            .await?
            == 1)
    }
    async fn reserve_mfa_login_check(&mut self, hash: &TokenHash, max: u32) -> Result<Option<u32>> {
        // Under READ COMMITTED a second instance's UPDATE waits for this row's lock,
        // then re-reads `failures`: the `< max` is decided on the committed count.
        let row = self
            .opt(
                "UPDATE mfa_logins SET failures = failures + 1
                 WHERE token_hash = $1 AND failures < $2
                 RETURNING failures",
                &[&hash.as_slice(), &i64::from(max)],
            )
            .await?;
        let n: Option<i64> = row.map(|r| r.try_get(0)).transpose()?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }
    async fn mfa_code_failures_for_update(&mut self, user_id: &str) -> Result<Option<u32>> {
        let row = self
            .opt(
                "SELECT code_failures FROM mfa_factors
                 WHERE user_id = $1 AND confirmed_at IS NOT NULL FOR UPDATE",
                &[&user_id],
            )
            .await?;
        let n: Option<i64> = row.map(|r| r.try_get(0)).transpose()?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }
    async fn add_mfa_code_failure(&mut self, user_id: &str) -> Result<()> {
        self.exec(
            "UPDATE mfa_factors SET code_failures = code_failures + 1 WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        Ok(())
    }
    async fn reset_mfa_code_failures(&mut self, user_id: &str) -> Result<()> {
        self.exec(
            "UPDATE mfa_factors SET code_failures = 0 WHERE user_id = $1 AND code_failures <> 0",
            &[&user_id],
        )
        .await?;
        Ok(())
    }
    async fn delete_mfa_logins_expired_before(&mut self, cutoff: Millis) -> Result<usize> {
        Ok(count(
            self.exec("DELETE FROM mfa_logins WHERE expires_at < $1", &[&cutoff])
                .await?,
        ))
    }
}
