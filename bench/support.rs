//! Benchmark support shared by the `latchkey-bench` tool (`bench/latchkey-bench.rs`)
//! and the criterion benches (`benches/hot_path.rs`). It lives outside the product
//! library and uses only the library's public interface and the store's own
//! statements:
//! - the store's in-process rotation limit (no HTTP), the ceiling the service's refresh
//!   figure is compared with in the same run;
//! - a generator that fills a database to scale (millions of sessions and tokens) fast,
//!   through a bulk load (no journal, large transactions).
#![allow(dead_code)] // each including target uses part of it

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use latchkey::clock::{Clock, Millis, SystemClock};
use latchkey::domain::accounts::{self, SignupOutcome};
use latchkey::domain::model::{ClientContext, NewEvent, Session, StoredToken, User};
use latchkey::domain::repository::Tx;
use latchkey::domain::rotation::{self, RefreshOutcome, RefreshRequest};
use latchkey::domain::sessions::{self, LoginOutcome, NewSession};
use latchkey::domain::{
    EventKind, Lifetimes, LimitPolicy, RefreshToken, Scope, SessionId, TokenHash, UserId, Username,
};
use latchkey::keys::Sealer;
use latchkey::store::sqlite::BulkLoad;
use latchkey::store::Store;
use ring::digest;
use ring::rand::SystemRandom;

pub const DAY_MS: i64 = 86_400_000;

/// `n` users with one live session each, and each session's head token.
pub async fn families(
    store: &Store,
    keys: Arc<Sealer>,
    n: usize,
) -> anyhow::Result<Vec<RefreshToken>> {
    let now = SystemClock.now_millis();
    let mut heads = Vec::with_capacity(n);
    for i in 0..n {
        let name = Username::parse(&format!("bench{i}")).map_err(anyhow::Error::msg)?;
        let created = store
            .write(async move |tx| accounts::create_user(tx, now, &name, "x".into(), vec![]).await)
            .await?;
        let SignupOutcome::Created(user) = created else {
            anyhow::bail!("the store already has bench users");
        };
        let req = NewSession {
            user_id: user.id,
            client_id: "default".into(),
            scope: Scope::default(),
            remember_me: true,
            lifetimes: Lifetimes {
                idle_ms: DAY_MS,
                absolute_ms: DAY_MS,
            },
            max_per_user: 10,
            limit_policy: LimitPolicy::EvictOldest,
            ctx: ClientContext::default(),
            amr: vec![latchkey::domain::AuthMethod::Pwd],
            auth_time: None,
            idp: None,
        };
        let (rng, keys) = (SystemRandom::new(), keys.clone());
        match store
            .write(async move |tx| {
                sessions::create_session(tx, now, &rng, keys.as_ref(), &req).await
            })
            .await?
        {
            LoginOutcome::Created(created) => heads.push(created.token),
            _ => anyhow::bail!("no session was created"),
        }
    }
    Ok(heads)
}

/// Rotates `head` through the store, exactly as `/oauth/token` does; returns the new head.
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
        // As the service by default (events.record_refreshes = false).
        record_event: false,
        ctx: ClientContext::default(),
    };
    let now = SystemClock.now_millis();
    let rng = SystemRandom::new();
    let outcome = store
        .write(async move |tx| {
            rotation::refresh(tx, || now, &rng, sealer.as_ref(), &request, |_| DAY_MS).await
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
/// afterwards, whatever the outcome): the figure `latchkey-bench store` prints.
pub async fn store_limit(walkers: usize, duration: Duration) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("latchkey-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let measured = async {
        let store = Store::open(&dir.join("bench.db"), 1)?;
        let sealer = Arc::new(Sealer::load_or_generate(&dir)?);
        let heads = families(&store, sealer.clone(), walkers).await?;
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
    /// A login event per family (and, with `legacy_tokens`, a refresh event per later
    /// generation, as the service recorded before schema version 5).
    pub events: bool,
    /// Also write a token row per generation and leave `head_hash` empty: a database
    /// from before the located token format (schema version 5).
    pub legacy_tokens: bool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Filled {
    pub users: u64,
    pub sessions: u64,
    pub tokens: u64,
    pub events: u64,
    pub elapsed: Duration,
}

/// Fills the database at `path` with `spec.sessions` live sessions (families) whose
/// heads are at generation `spec.tokens_per_session - 1`. Token hashes are derived from
/// a random seed, with no plaintext anywhere, so no filled family can be refreshed. Users share
/// one real argon2id hash, `password_hash`, so a benchmark may log in as them.
pub fn fill(path: &Path, spec: FillSpec, password_hash: &str) -> anyhow::Result<Filled> {
    const SESSIONS_PER_TRANSACTION: u64 = 50_000;
    let started = Instant::now();
    let mut load = BulkLoad::open(path)?;
    let now = SystemClock.now_millis();
    let seed = *uuid::Uuid::new_v4().as_bytes();
    let mut filled = Filled::default();
    // Replaced by the first session's user (session 0 starts a user).
    let mut user_id = UserId::new_random();
    let mut next = 0u64;
    while next < spec.sessions {
        let end = (next + SESSIONS_PER_TRANSACTION).min(spec.sessions);
        let hash = password_hash.to_owned();
        let (mut f, mut uid) = (filled, user_id.clone());
        (filled, user_id) = load.batch(async move |tx| {
            for s in next..end {
                if s % spec.sessions_per_user.max(1) == 0 {
                    uid = UserId::new_random();
                    let name = format!("scale{}", f.users);
                    let user = User {
                        id: uid.clone(),
                        username: name.clone(),
                        password_hash: hash.clone(),
                        roles: Vec::new(),
                        created_at: now - 30 * DAY_MS,
                        disabled_at: None,
                    };
                    tx.insert_user(&user, &name, &name).await?;
                    f.users += 1;
                }
                fill_session(tx, &uid, s, now, spec, &seed, &mut f).await?;
            }
            Ok((f, uid))
        })?;
        next = end;
    }
    load.finish()?;
    filled.elapsed = started.elapsed();
    Ok(filled)
}

async fn fill_session(
    tx: &mut dyn Tx,
    user_id: &UserId,
    index: u64,
    now: Millis,
    spec: FillSpec,
    seed: &[u8],
    filled: &mut Filled,
) -> anyhow::Result<()> {
    let generations = spec.tokens_per_session.max(1) as i64;
    // Created about a day ago, rotated every ten minutes (less with many generations,
    // so that every head was issued in the past and the session is live).
    let created = now - DAY_MS + (index as i64 % 60_000);
    let rotated_every = (DAY_MS / 2 / generations).min(600_000);
    let head_issued = created + (generations - 1) * rotated_every;
    let session = Session {
        id: SessionId::new_random(),
        user_id: user_id.clone(),
        client_id: "default".into(),
        scope: Scope::default(),
        remember_me: true,
        created_at: created,
        last_active_at: head_issued,
        idle_expires_at: head_issued + 14 * DAY_MS,
        expires_at: created + 30 * DAY_MS,
        ip: Some("198.51.100.7".into()),
        user_agent: Some("scale/1".into()),
        revoked_at: None,
        revoked_reason: None,
        head_generation: generations - 1,
        head_issued_at: head_issued,
        head_hash: (!spec.legacy_tokens).then(|| seeded_hash(seed, index, generations - 1)),
        sealed_head: None,
        amr: vec![latchkey::domain::AuthMethod::Pwd],
        auth_time: created,
    };
    tx.insert_session(&session).await?;
    filled.sessions += 1;
    let context = ClientContext {
        ip: session.ip.clone(),
        user_agent: session.user_agent.clone(),
        admin: None,
    };
    for generation in 0..generations {
        let issued = created + generation * rotated_every;
        if spec.legacy_tokens {
            tx.insert_token(&StoredToken {
                token_hash: seeded_hash(seed, index, generation),
                session_id: session.id.clone(),
                generation,
                issued_at: issued,
            })
            .await?;
            filled.tokens += 1;
        }
        let kind = match generation {
            0 => EventKind::LoginSucceeded,
            _ if spec.legacy_tokens => EventKind::TokenRefreshed,
            _ => continue,
        };
        if spec.events {
            let event = NewEvent::about_session(kind, &session, &context).detail(
                serde_json::json!({"generation": generation, "within_reuse_interval": false}),
            );
            tx.insert_event(issued, &event).await?;
            filled.events += 1;
        }
    }
    Ok(())
}

/// A stand-in token hash: SHA-256 of the fill's random seed, the session's index and the
/// generation. No token exists for it.
fn seeded_hash(seed: &[u8], index: u64, generation: i64) -> TokenHash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(seed);
    ctx.update(&index.to_le_bytes());
    ctx.update(&generation.to_le_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
