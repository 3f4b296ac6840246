//! Every SQL statement, once. Functions take a connection (the writer's transaction or
//! a reader) and use cached prepared statements.

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::clock::Millis;
use crate::domain::TokenHash;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub created_at: Millis,
    pub disabled_at: Option<Millis>,
}

const USER_COLS: &str = "id, username, password_hash, roles, created_at, disabled_at";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    let roles: String = r.get(3)?;
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        created_at: r.get(4)?,
        disabled_at: r.get(5)?,
    })
}

pub fn user_by_username_key(conn: &Connection, key: &str) -> anyhow::Result<Option<UserRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users WHERE username_key = ?1"
    ))?;
    Ok(st.query_row([key], user_from_row).optional()?)
}

pub fn user_by_id(conn: &Connection, id: &str) -> anyhow::Result<Option<UserRow>> {
    let mut st = conn.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?;
    Ok(st.query_row([id], user_from_row).optional()?)
}

pub fn insert_user(conn: &Connection, user: &UserRow, username_key: &str) -> anyhow::Result<()> {
    let roles = serde_json::to_string(&user.roles)?;
    conn.prepare_cached(
        "INSERT INTO users (id, username, username_key, password_hash, roles, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        user.id,
        user.username,
        username_key,
        user.password_hash,
        roles,
        user.created_at
    ])
    .context("insert user")?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub remember_me: bool,
    pub created_at: Millis,
    pub last_active_at: Millis,
    pub idle_expires_at: Millis,
    pub expires_at: Millis,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub revoked_at: Option<Millis>,
    pub revoked_reason: Option<String>,
    /// The generation of the family's head (its newest refresh token).
    pub head_generation: i64,
    /// When the head was issued, which is when its parent rotated.
    pub head_issued_at: Millis,
    /// The head sealed (AES-256-GCM) with its parent's hash as AAD, kept only during the
    /// reuse interval; see `domain::rotation`. Ciphertext, useless without the seal key.
    pub sealed_head: Option<Vec<u8>>,
}

impl SessionRow {
    /// Live at `now`: not revoked, and neither the idle nor the absolute limit passed.
    pub fn is_active(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.expires_at
    }

    /// When the session ends if nothing else happens.
    pub fn ends_at(&self) -> Millis {
        self.idle_expires_at.min(self.expires_at)
    }
}

const SESSION_COLS: &str = "id, user_id, client_id, scope, remember_me, created_at, \
     last_active_at, idle_expires_at, expires_at, ip, user_agent, revoked_at, revoked_reason, \
     head_generation, head_issued_at, sealed_head";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        client_id: r.get(2)?,
        scope: r.get(3)?,
        remember_me: r.get(4)?,
        created_at: r.get(5)?,
        last_active_at: r.get(6)?,
        idle_expires_at: r.get(7)?,
        expires_at: r.get(8)?,
        ip: r.get(9)?,
        user_agent: r.get(10)?,
        revoked_at: r.get(11)?,
        revoked_reason: r.get(12)?,
        head_generation: r.get(13)?,
        head_issued_at: r.get(14)?,
        sealed_head: r.get(15)?,
    })
}

pub fn insert_session(conn: &Connection, s: &SessionRow) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, user_id, client_id, scope, remember_me, created_at,
             last_active_at, idle_expires_at, expires_at, ip, user_agent,
             head_generation, head_issued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        s.id,
        s.user_id,
        s.client_id,
        s.scope,
        s.remember_me,
        s.created_at,
        s.last_active_at,
        s.idle_expires_at,
        s.expires_at,
        s.ip,
        s.user_agent,
        s.head_generation,
        s.head_issued_at
    ])
    .context("insert session")?;
    Ok(())
}

pub fn session_by_id(conn: &Connection, id: &str) -> anyhow::Result<Option<SessionRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"
    ))?;
    Ok(st.query_row([id], session_from_row).optional()?)
}

/// The user's sessions that are live at `now`, oldest first.
pub fn active_sessions_of_user(
    conn: &Connection,
    user_id: &str,
    now: Millis,
) -> anyhow::Result<Vec<SessionRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLS} FROM sessions
         WHERE user_id = ?1 AND revoked_at IS NULL AND idle_expires_at > ?2 AND expires_at > ?2
         ORDER BY created_at, id"
    ))?;
    let rows = st
        .query_map(params![user_id, now], session_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Whether `user_id` logged in successfully from `ip` since `since`.
pub fn logged_in_from(
    conn: &Connection,
    user_id: &str,
    ip: &str,
    since: Millis,
) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM events INDEXED BY events_logins_by_user
             WHERE user_id = ?1 AND at > ?3 AND kind = 'login_succeeded' AND ip = ?2)",
        )?
        .query_row(params![user_id, ip, since], |r| r.get(0))?)
}

/// Sessions neither revoked nor expired, across all users (the metrics gauge).
pub fn count_active_sessions(conn: &Connection, now: Millis) -> anyhow::Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM sessions
         WHERE revoked_at IS NULL AND idle_expires_at > ?1 AND expires_at > ?1",
        params![now],
        |r| r.get(0),
    )?)
}

/// Records activity: moves `last_active_at` and the idle expiry, never the absolute one.
pub fn touch_session(
    conn: &Connection,
    id: &str,
    now: Millis,
    idle_expires_at: Millis,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "UPDATE sessions SET last_active_at = ?2, idle_expires_at = ?3,
             ip = COALESCE(?4, ip), user_agent = COALESCE(?5, user_agent)
         WHERE id = ?1",
    )?
    .execute(params![id, now, idle_expires_at, ip, user_agent])?;
    Ok(())
}

/// A rotation: the family's head moves to `generation` (issued now, sealed on its parent
/// for the reuse interval) and the session records activity, in one row update. Only the
/// session row changes; the parent token row is never rewritten, so a rotation dirties
/// as few pages as it can (see BENCHMARKS.md). Fails unless the head was `generation - 1`.
pub fn advance_head(
    conn: &Connection,
    id: &str,
    now: Millis,
    idle_expires_at: Millis,
    ctx: (Option<&str>, Option<&str>),
    generation: i64,
    sealed_head: &[u8],
) -> anyhow::Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE sessions SET last_active_at = ?2, idle_expires_at = ?3,
                 ip = COALESCE(?4, ip), user_agent = COALESCE(?5, user_agent),
                 head_generation = ?6, head_issued_at = ?2, sealed_head = ?7
             WHERE id = ?1 AND head_generation = ?6 - 1",
        )?
        .execute(params![
            id,
            now,
            idle_expires_at,
            ctx.0,
            ctx.1,
            generation,
            sealed_head
        ])?;
    anyhow::ensure!(n == 1, "the head moved during the rotation");
    Ok(())
}

/// Revokes one session if still live; returns whether it did.
pub fn revoke_session(
    conn: &Connection,
    id: &str,
    now: Millis,
    reason: &str,
) -> anyhow::Result<bool> {
    // The sealed head is useless once the family is dead: wipe it in the same write.
    let n = conn
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3, sealed_head = NULL
             WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![id, now, reason])?;
    Ok(n > 0)
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub token_hash: Vec<u8>,
    pub session_id: String,
    pub generation: i64,
    pub issued_at: Millis,
}

const TOKEN_COLS: &str = "token_hash, session_id, generation, issued_at";

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        token_hash: r.get(0)?,
        session_id: r.get(1)?,
        generation: r.get(2)?,
        issued_at: r.get(3)?,
    })
}

pub fn token_by_hash(conn: &Connection, hash: &TokenHash) -> anyhow::Result<Option<TokenRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLS} FROM refresh_tokens WHERE token_hash = ?1"
    ))?;
    Ok(st.query_row([&hash[..]], token_from_row).optional()?)
}

pub fn insert_token(
    conn: &Connection,
    hash: &TokenHash,
    session_id: &str,
    generation: i64,
    issued_at: Millis,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![&hash[..], session_id, generation, issued_at])
    .context("insert refresh token")?;
    Ok(())
}

/// One security event. Never put a token or password in any field.
#[derive(Debug, Clone, Default)]
pub struct NewEvent<'a> {
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub detail: Option<serde_json::Value>,
}

pub fn insert_event(conn: &Connection, at: Millis, e: &NewEvent<'_>) -> anyhow::Result<()> {
    let detail = e.detail.as_ref().map(|d| d.to_string());
    conn.prepare_cached(
        "INSERT INTO events (at, kind, user_id, session_id, client_id, ip, user_agent, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        at,
        e.kind,
        e.user_id,
        e.session_id,
        e.client_id,
        e.ip,
        e.user_agent,
        detail
    ])?;
    // Security events also go to the log at info (never a token or password: events
    // hold neither). The detail (scope, reason) is included; IP and user agent are not.
    tracing::info!(
        target: "latchkey::security",
        event = e.kind,
        user_id = e.user_id,
        session_id = e.session_id,
        client_id = e.client_id,
        detail = detail.as_deref(),
        "security event"
    );
    Ok(())
}

/// Wipes sealed heads whose reuse interval ended before `cutoff`; returns how many.
pub fn wipe_sealed_rotated_before(conn: &Connection, cutoff: Millis) -> anyhow::Result<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE sessions SET sealed_head = NULL
             WHERE sealed_head IS NOT NULL AND head_issued_at < ?1",
        )?
        .execute([cutoff])?)
}

pub fn all_users(conn: &Connection) -> anyhow::Result<Vec<UserRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users ORDER BY created_at, id"
    ))?;
    let rows = st
        .query_map([], user_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn set_password_hash(conn: &Connection, user_id: &str, hash: &str) -> anyhow::Result<()> {
    conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(params![user_id, hash])?;
    Ok(())
}

pub fn set_disabled(conn: &Connection, user_id: &str, now: Millis) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached("UPDATE users SET disabled_at = ?2 WHERE id = ?1 AND disabled_at IS NULL")?
        .execute(params![user_id, now])?
        > 0)
}

/// Deletes the user; sessions and tokens go with it (ON DELETE CASCADE), and the
/// user's events are erased.
pub fn delete_user(conn: &Connection, user_id: &str) -> anyhow::Result<bool> {
    conn.prepare_cached("DELETE FROM events WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(conn
        .prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([user_id])?
        > 0)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: Millis,
    pub kind: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// Filters for reading events, newest first; `before` is an event id (the cursor).
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub user_id: Option<String>,
    pub kind: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub before: Option<i64>,
    pub limit: u32,
}

pub fn events(conn: &Connection, q: &EventQuery) -> anyhow::Result<Vec<EventRow>> {
    // With a user, a plain `user_id = ?1` lets SQLite read just that user's events
    // (events_by_user); `?1 IS NULL OR user_id = ?1` made it walk the whole table newest
    // first until it had found `limit` of them.
    let user_filter = if q.user_id.is_some() {
        "user_id = ?1"
    } else {
        "?1 IS NULL"
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT id, at, kind, user_id, session_id, client_id, ip, user_agent, detail FROM events
         WHERE {user_filter} AND (?2 IS NULL OR kind = ?2)
           AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
           AND (?5 IS NULL OR id < ?5)
         ORDER BY id DESC LIMIT ?6"
    ))?;
    let rows = st
        .query_map(
            params![q.user_id, q.kind, q.since, q.until, q.before, q.limit],
            |r| {
                let detail: Option<String> = r.get(8)?;
                Ok(EventRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    user_id: r.get(3)?,
                    session_id: r.get(4)?,
                    client_id: r.get(5)?,
                    ip: r.get(6)?,
                    user_agent: r.get(7)?,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Whether the user logged in from this network and browser family since `since`.
pub fn seen_device(
    conn: &Connection,
    user_id: &str,
    since: Millis,
    network: &str,
    ua_family: &str,
) -> anyhow::Result<bool> {
    let mut st = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM events INDEXED BY events_logins_by_user
           WHERE user_id = ?1 AND kind = 'login_succeeded' AND at >= ?2
             AND json_extract(detail, '$.network') = ?3
             AND json_extract(detail, '$.ua_family') = ?4)",
    )?;
    Ok(st.query_row(params![user_id, since, network, ua_family], |r| r.get(0))?)
}

pub fn has_logged_in_before(conn: &Connection, user_id: &str) -> anyhow::Result<bool> {
    let mut st = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM events INDEXED BY events_logins_by_user
           WHERE user_id = ?1 AND kind = 'login_succeeded')",
    )?;
    Ok(st.query_row([user_id], |r| r.get(0))?)
}

/// Housekeeping sweeps the sessions in rowid order, a bounded range per write, so each
/// write stays small at any table size and a whole pass reads every session once (a
/// `WHERE … LIMIT` delete rescans the table for every chunk: 3 s per chunk at 1M sessions).
/// Returns the rowid that closes the range of the next `limit` sessions after `after`, or
/// `None` when fewer remain (the range then runs to the end).
pub fn session_sweep_end(conn: &Connection, after: i64, limit: u32) -> anyhow::Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT rowid FROM sessions WHERE rowid > ?1 ORDER BY rowid LIMIT 1 OFFSET ?2",
        )?
        .query_row(params![after, limit.saturating_sub(1)], |r| r.get(0))
        .optional()?)
}

/// Deletes the tokens of the sessions in the rowid range (`after`, `upto`] that have ended
/// (revoked or expired): they can never be used again.
pub fn delete_tokens_of_ended_sessions(
    conn: &Connection,
    now: Millis,
    after: i64,
    upto: i64,
) -> anyhow::Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM refresh_tokens WHERE session_id IN (
               SELECT id FROM sessions WHERE rowid > ?2 AND rowid <= ?3
                 AND (revoked_at IS NOT NULL OR expires_at <= ?1 OR idle_expires_at <= ?1))",
        )?
        .execute(params![now, after, upto])?)
}

/// Deletes the sessions in the rowid range (`after`, `upto`] that ended before `cutoff`
/// (kept until then for the admin view).
pub fn delete_sessions_ended_before(
    conn: &Connection,
    cutoff: Millis,
    after: i64,
    upto: i64,
) -> anyhow::Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM sessions WHERE rowid > ?2 AND rowid <= ?3
               AND COALESCE(revoked_at, MIN(expires_at, idle_expires_at)) < ?1",
        )?
        .execute(params![cutoff, after, upto])?)
}

/// Deletes events older than `cutoff` among the oldest `limit` (events are appended in
/// time order, so the old ones are at the start); a short count means none are left.
/// Reads at most `limit` rows, where `WHERE at < ? LIMIT` read the whole table whenever
/// fewer than `limit` were old.
pub fn delete_events_before(
    conn: &Connection,
    cutoff: Millis,
    limit: u32,
) -> anyhow::Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM events WHERE id IN (
               SELECT id FROM (SELECT id, at FROM events ORDER BY id LIMIT ?2) WHERE at < ?1)",
        )?
        .execute(params![cutoff, limit])?)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    /// SQLite VM steps `f` takes, in hundreds.
    fn vm_work(conn: &Connection, f: impl FnOnce()) -> u64 {
        let steps = Arc::new(AtomicU64::new(0));
        let counted = steps.clone();
        conn.progress_handler(
            100,
            Some(move || {
                counted.fetch_add(1, Ordering::Relaxed);
                false
            }),
        );
        f();
        conn.progress_handler(100, None::<fn() -> bool>);
        steps.load(Ordering::Relaxed)
    }

    #[test]
    fn a_users_login_lookups_and_event_list_read_that_users_rows_not_the_whole_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        let tx = conn.transaction().unwrap();
        // 20,000 logins and refreshes of other users, then alice's one login.
        for i in 0..20_000i64 {
            let kind = if i % 2 == 0 {
                "login_succeeded"
            } else {
                "token_refreshed"
            };
            tx.execute(
                "INSERT INTO events (at, kind, user_id, ip, detail)
                 VALUES (?1, ?2, ?3, '198.51.100.7', '{\"network\":\"198.51.100.0/24\"}')",
                params![i, kind, format!("user{}", i % 5_000)],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO events (at, kind, user_id, ip, detail) VALUES (30000, 'login_succeeded',
                 'alice', '203.0.113.9', '{\"network\":\"203.0.113.0/24\",\"ua_family\":\"Firefox\"}')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();

        let mut answers = Vec::new();
        let work = vm_work(&conn, || {
            answers.push(has_logged_in_before(&conn, "alice").unwrap());
            answers.push(seen_device(&conn, "alice", 0, "203.0.113.0/24", "Firefox").unwrap());
            answers.push(logged_in_from(&conn, "alice", "203.0.113.9", 0).unwrap());
            answers.push(logged_in_from(&conn, "alice", "198.51.100.7", 0).unwrap());
            let q = EventQuery {
                user_id: Some("alice".into()),
                limit: 50,
                ..Default::default()
            };
            answers.push(events(&conn, &q).unwrap().len() == 1);
        });
        assert_eq!(answers, [true, true, true, false, true]);
        // A scan of the 20,000 rows takes hundreds of these units; an index lookup a few.
        assert!(
            work < 20,
            "{work} hundred VM steps: a query scanned the events table"
        );
    }
}
