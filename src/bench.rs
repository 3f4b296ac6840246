//! Benchmark support, shared by the criterion benches (`benches/hot_path.rs`) and the
//! hidden `bench-*` commands that `bench/run` and `bench/scale` call:
//! - the store's in-process rotation limit (no HTTP), the ceiling the service's refresh
//!   figure is compared with in the same run;
//! - a generator that fills a database to scale (millions of sessions and tokens) fast,
//!   by writing rows directly in large unsynchronised transactions.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ring::digest;
use ring::rand::SystemRandom;
use rusqlite::{params, Connection};

use crate::clock::{Clock, Millis, SystemClock};
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::rotation::{self, RefreshOutcome, RefreshRequest};
use crate::domain::sessions::{self, ClientContext, LoginOutcome, NewSession};
use crate::domain::{Lifetimes, LimitPolicy};
use crate::domain::{RefreshToken, Username};
use crate::keys::Sealer;
use crate::store::Store;

const DAY_MS: i64 = 86_400_000;

/// `n` users with one live session each, and each session's head token.
pub async fn families(store: &Store, n: usize) -> anyhow::Result<Vec<RefreshToken>> {
    let now = SystemClock.now_millis();
    let mut heads = Vec::with_capacity(n);
    for i in 0..n {
        let name = Username::parse(&format!("bench{i}")).map_err(anyhow::Error::msg)?;
        let user = match store
            .write(move |c| accounts::create_user(c, now, &name, "x".into(), vec![]))
            .await?
        {
            SignupOutcome::Created(user) => user,
            SignupOutcome::Taken => anyhow::bail!("the store already has bench users"),
        };
        let req = NewSession {
            user_id: user.id,
            client_id: "default".into(),
            scope: String::new(),
            remember_me: true,
            lifetimes: Lifetimes {
                idle_ms: DAY_MS,
                absolute_ms: DAY_MS,
            },
            max_per_user: 10,
            limit_policy: LimitPolicy::EvictOldest,
            ctx: ClientContext::default(),
        };
        match store
            .write(move |c| sessions::create_session(c, now, &SystemRandom::new(), &req))
            .await?
        {
            LoginOutcome::Created(created) => heads.push(created.token),
            _ => anyhow::bail!("no session was created"),
        }
    }
    Ok(heads)
}

/// Rotates `head` through the writer, exactly as `/oauth/token` does; returns the new head.
pub async fn rotate(
    store: &Store,
    sealer: Arc<Sealer>,
    head: RefreshToken,
) -> anyhow::Result<RefreshToken> {
    let request = RefreshRequest {
        token: head,
        client_id: None,
        scope: None,
        reuse_interval_ms: 10_000,
        ctx: ClientContext::default(),
    };
    let now = SystemClock.now_millis();
    let outcome = store
        .write(move |c| {
            rotation::refresh(c, now, &SystemRandom::new(), &sealer, &request, |_| DAY_MS)
        })
        .await?;
    match outcome {
        RefreshOutcome::Rotated(g) => Ok(g.token),
        _ => anyhow::bail!("the head did not rotate"),
    }
}

/// The in-process refresh limit: one walker per head rotates its family back to back
/// for `duration` (as `bench/refresh.lua` does over HTTP); returns rotations per second.
pub async fn rotations_per_second(
    store: &Store,
    sealer: Arc<Sealer>,
    heads: Vec<RefreshToken>,
    duration: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let deadline = started + duration;
    let walkers: Vec<_> = heads
        .into_iter()
        .map(|mut head| {
            let (store, sealer) = (store.clone(), sealer.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    head = rotate(&store, sealer.clone(), head).await?;
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for w in walkers {
        total += w.await.context("a walker panicked")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// [`rotations_per_second`] for `walkers` new families in a temporary database (removed
/// afterwards, whatever the outcome): the figure `latchkey bench-store` prints.
pub async fn store_limit(walkers: usize, duration: Duration) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("latchkey-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let measured = async {
        let store = Store::open(&dir.join("bench.db"), 1)?;
        let sealer = Arc::new(Sealer::load_or_generate(&dir)?);
        let heads = families(&store, walkers).await?;
        rotations_per_second(&store, sealer, heads, duration).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

/// What [`fill`] writes.
#[derive(Debug, Clone, Copy)]
pub struct FillSpec {
    pub sessions: u64,
    pub tokens_per_session: u64,
    pub sessions_per_user: u64,
    /// A `token_refreshed` event for every rotation, as the service records.
    pub events: bool,
}

/// What [`fill`] wrote, and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Filled {
    pub users: u64,
    pub sessions: u64,
    pub tokens: u64,
    pub events: u64,
    pub elapsed: Duration,
}

/// Fills the database at `path` (created and migrated if needed) with live sessions of
/// `spec.tokens_per_session` generations each, spread over users. Token hashes are
/// SHA-256 of a counter and a per-run seed: uniformly spread like real ones, but with
/// no plaintext anywhere, so no filled family can be refreshed. Users share one real
/// argon2id hash, `password_hash`, so a benchmark may log in as them.
pub fn fill(path: &Path, spec: FillSpec, password_hash: &str) -> anyhow::Result<Filled> {
    let started = Instant::now();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut conn = Connection::open(path)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    // A bulk load: no journal and no fsync until the end, and a large page cache so the
    // random index inserts stay in memory.
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -2_000_000)?;
    crate::store::migrate(&mut conn)?;
    let now = SystemClock.now_millis();
    let seed = uuid::Uuid::new_v4();
    let mut filled = Filled {
        users: 0,
        sessions: 0,
        tokens: 0,
        events: 0,
        elapsed: Duration::ZERO,
    };
    const SESSIONS_PER_TRANSACTION: u64 = 50_000;
    let mut user_id = String::new();
    let mut next = 0u64;
    while next < spec.sessions {
        let end = (next + SESSIONS_PER_TRANSACTION).min(spec.sessions);
        let tx = conn.transaction()?;
        for s in next..end {
            if s % spec.sessions_per_user.max(1) == 0 {
                user_id = uuid::Uuid::new_v4().to_string();
                let name = format!("scale{}", filled.users);
                tx.prepare_cached(
                    "INSERT INTO users (id, username, username_key, password_hash, created_at)
                     VALUES (?1, ?2, ?2, ?3, ?4)",
                )?
                .execute(params![
                    user_id,
                    name,
                    password_hash,
                    now - 30 * DAY_MS
                ])?;
                filled.users += 1;
            }
            fill_session(&tx, &user_id, s, now, spec, seed.as_bytes(), &mut filled)?;
        }
        tx.commit()?;
        next = end;
    }
    // No ANALYZE: the service never runs it, so the planner sees what it would in production.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    drop(conn);
    // The service opens it with `synchronous=FULL`; make the load itself durable too.
    std::fs::File::open(path)?.sync_all()?;
    filled.elapsed = started.elapsed();
    Ok(filled)
}

fn fill_session(
    tx: &Connection,
    user_id: &str,
    index: u64,
    now: Millis,
    spec: FillSpec,
    seed: &[u8],
    filled: &mut Filled,
) -> anyhow::Result<()> {
    let session_id = uuid::Uuid::new_v4().to_string();
    let generations = spec.tokens_per_session.max(1);
    // Created about a day ago, rotated every ten minutes (less with many generations,
    // so that every head was issued in the past and the session is live).
    let created = now - DAY_MS + (index as i64 % 60_000);
    let rotated_every = (DAY_MS / 2 / generations as i64).min(600_000);
    let head = generations as i64 - 1;
    let head_issued = created + head * rotated_every;
    tx.prepare_cached(
        "INSERT INTO sessions (id, user_id, client_id, scope, remember_me, created_at,
             last_active_at, idle_expires_at, expires_at, ip, user_agent,
             head_generation, head_issued_at)
         VALUES (?1, ?2, 'default', '', 1, ?3, ?4, ?5, ?6, '198.51.100.7', 'scale/1', ?7, ?4)",
    )?
    .execute(params![
        session_id,
        user_id,
        created,
        head_issued,
        head_issued + 14 * DAY_MS,
        created + 30 * DAY_MS,
        head
    ])?;
    filled.sessions += 1;
    for generation in 0..generations as i64 {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(seed);
        ctx.update(&index.to_le_bytes());
        ctx.update(&generation.to_le_bytes());
        let issued = created + generation * rotated_every;
        tx.prepare_cached(
            "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            ctx.finish().as_ref(),
            session_id,
            generation,
            issued
        ])?;
        filled.tokens += 1;
        if spec.events {
            let kind = if generation == 0 {
                "login_succeeded"
            } else {
                "token_refreshed"
            };
            tx.prepare_cached(
                "INSERT INTO events (at, kind, user_id, session_id, client_id, ip, user_agent,
                     detail)
                 VALUES (?1, ?2, ?3, ?4, 'default', '198.51.100.7', 'scale/1', ?5)",
            )?
            .execute(params![
                issued,
                kind,
                user_id,
                session_id,
                format!("{{\"generation\":{generation},\"within_reuse_interval\":false}}")
            ])?;
            filled.events += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_writes_live_families_the_service_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scale.db");
        let spec = FillSpec {
            sessions: 120,
            tokens_per_session: 5,
            sessions_per_user: 10,
            events: true,
        };
        let filled = fill(&path, spec, "$argon2id$v=19$m=19456,t=2,p=1$x$y").unwrap();
        assert_eq!(
            (filled.users, filled.sessions, filled.tokens, filled.events),
            (12, 120, 600, 600)
        );
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let now = SystemClock.now_millis();
        let (live, max_head): (i64, i64) = conn
            .query_row(
                "SELECT count(*), max(head_generation) FROM sessions
                 WHERE revoked_at IS NULL AND idle_expires_at > ?1 AND expires_at > ?1",
                [now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((live, max_head), (120, 4));
        let distinct: i64 = conn
            .query_row(
                "SELECT count(DISTINCT token_hash) FROM refresh_tokens",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(distinct, 600);
    }

    #[test]
    fn fill_issues_every_token_in_the_past_however_many_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.db");
        let spec = FillSpec {
            sessions: 3,
            tokens_per_session: 500,
            sessions_per_user: 3,
            events: false,
        };
        fill(&path, spec, "h").unwrap();
        let now = SystemClock.now_millis();
        let (latest_token, latest_head): (i64, i64) = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT (SELECT max(issued_at) FROM refresh_tokens),
                        (SELECT max(head_issued_at) FROM sessions)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(latest_token <= now && latest_head <= now);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_in_process_limit_rotates_every_family_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db"), 1).unwrap();
        let sealer = Arc::new(Sealer::load_or_generate(dir.path()).unwrap());
        let heads = families(&store, 4).await.unwrap();
        let rate = rotations_per_second(&store, sealer, heads, Duration::from_millis(200))
            .await
            .unwrap();
        assert!(rate > 0.0);
        let generations: i64 = store
            .read(|c| {
                Ok(
                    c.query_row("SELECT min(head_generation) FROM sessions", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
            .unwrap();
        assert!(generations >= 1, "every walker rotated its own family");
    }
}
