//! Storage behind one interface. The rules reach stored state only through the domain's
//! repository traits (`domain::repository`, one per aggregate, all of them together
//! `Tx`); a [`Store`] runs jobs over them, each job one transaction. Backends live in
//! their own folders (`sqlite/`, `postgres/`), each aggregate in a file of the same name
//! in both; nothing above `store` names one (docs/store.md).
//!
//! A job is an async closure over `&mut dyn Tx`: `store.write(async move |tx| …)`. With
//! SQLite it runs on the writer thread (writes, group-committed) or a reader thread;
//! with PostgreSQL on a pooled connection between BEGIN and COMMIT, alone or in a group
//! commit (`postgres/group.rs`). What a committed job leaves to report goes through
//! `after_commit`, the same for both. Jobs' futures are not `Send`; the closures are.

pub mod after_commit;
mod columns;
pub mod copy;
pub mod deadline;
pub mod postgres;
pub mod sqlite;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::StoreSettings;
use crate::domain::key_blobs::BlobStore;
use crate::domain::repository::Tx;
use crate::domain::RevocationReason;
use crate::pool::PoolError;
use deadline::Ticket;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is busy")]
    Busy,
    #[error("the store has stopped")]
    Stopped,
    /// The database cannot be reached (PostgreSQL down or restarting): 503.
    #[error("the database is unavailable")]
    Unavailable,
    /// The job could not start before its deadline (`store.deadline`): dropped before it
    /// wrote anything; 503 (`deadline`).
    #[error("the database did not answer in time")]
    DeadlinePassed,
    /// A client's text the database cannot hold (PostgreSQL refuses NUL characters,
    /// which SQLite keeps): 400, never 500.
    #[error("text with a NUL character")]
    InvalidText,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Full(_) => StoreError::Busy,
            PoolError::Stopped(_) => StoreError::Stopped,
            PoolError::Panicked(_) => StoreError::Failed(anyhow::anyhow!("{e}")),
        }
    }
}

/// Told what the store committed: for metrics and the revocation feed. Every call comes
/// after the commit (`after_commit::report`), so a job that failed or a batch that
/// rolled back is never counted.
pub trait StoreObserver: Send + Sync {
    /// A batch of `writes` jobs committed in `took` (BEGIN to COMMIT).
    fn batch_committed(&self, writes: usize, took: Duration);
    /// `n` sessions were revoked for `reason`. Every revocation goes through
    /// `SessionRepo::revoke_session`, so this counts every path (routes, CLI, reuse detection).
    fn sessions_revoked(&self, reason: RevocationReason, n: usize);
    /// `n` entries were appended to the revocation log (revocations and erasures): the
    /// feed wakes to read them (docs/contract.md "Revocation feed").
    fn revocations_logged(&self, _n: usize) {}
    /// `n` webhook deliveries were queued with their events: the sender wakes
    /// (docs/webhooks-guide.md).
    fn deliveries_queued(&self, _n: usize) {}
}

/// Several observers told the same things, in order.
pub struct Observers(pub Vec<Arc<dyn StoreObserver>>);

impl StoreObserver for Observers {
    fn batch_committed(&self, writes: usize, took: Duration) {
        self.0.iter().for_each(|o| o.batch_committed(writes, took));
    }
    fn sessions_revoked(&self, reason: RevocationReason, n: usize) {
        self.0.iter().for_each(|o| o.sessions_revoked(reason, n));
    }
    fn revocations_logged(&self, n: usize) {
        self.0.iter().for_each(|o| o.revocations_logged(n));
    }
    fn deliveries_queued(&self, n: usize) {
        self.0.iter().for_each(|o| o.deliveries_queued(n));
    }
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub writes: AtomicU64,
    pub commit_micros: AtomicU64,
    /// SQLite: WAL checkpoints run by the checkpointer thread, and their total time.
    pub checkpoints: AtomicU64,
    pub checkpoint_micros: AtomicU64,
}

/// The advisory-lock key of housekeeping ("lk" "hk").
const HOUSEKEEPING_LOCK: i64 = 0x6c6b_686b;

/// Held while this instance runs housekeeping (`Store::housekeeping_turn`).
pub struct HousekeepingTurn(#[allow(dead_code)] Option<postgres::Exclusive>);

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// How long a job may wait for the database, from its request's arrival.
    deadline: Duration,
}

/// `store.deadline`'s default, and the budget of stores opened without settings.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// How long `/readyz`'s probe may take before the store counts as stalled.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens the SQLite store at `path` with `readers` read connections.
    pub fn open(path: &Path, readers: usize) -> anyhow::Result<Self> {
        Self::open_observed(path, readers, None)
    }

    /// The store `settings` name: PostgreSQL when `store.url` is set, else the SQLite
    /// file. `readers` sizes SQLite's read pool (the CLI needs one).
    pub fn from_settings(
        settings: &crate::config::StoreSettings,
        readers: usize,
        observer: Option<Arc<dyn StoreObserver>>,
    ) -> anyhow::Result<Self> {
        let deadline = settings.deadline.0;
        let backend = match settings.postgres_url() {
            Some(url) => Backend::Postgres(postgres::PgStore::open(
                url,
                settings.max_connections,
                Some(deadline),
                observer,
            )?),
            None => Backend::Sqlite(sqlite::SqliteStore::open(
                settings.sqlite_path(),
                readers,
                observer,
            )?),
        };
        Ok(Self { backend, deadline })
    }

    /// Login failures counted across every instance sharing this store (PostgreSQL);
    /// `None` for SQLite, where one instance's memory is the whole count.
    pub fn shared_failures(&self) -> Option<Arc<dyn crate::domain::throttle::SharedFailures>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(Arc::new(p.clone())),
        }
    }

    /// Housekeeping's turn: with a shared store one instance at a time runs it (a
    /// PostgreSQL advisory lock, held until the returned guard drops); `None` if another
    /// instance is at it now. SQLite always has the turn.
    pub async fn housekeeping_turn(&self) -> anyhow::Result<Option<HousekeepingTurn>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(HousekeepingTurn(None))),
            Backend::Postgres(p) => Ok(p
                .try_exclusive(HOUSEKEEPING_LOCK)
                .await?
                .map(|held| HousekeepingTurn(Some(held)))),
        }
    }

    /// Whether many instances may share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// [`Store::open`], reporting commits to `observer`.
    pub fn open_observed(
        path: &Path,
        readers: usize,
        observer: Option<Arc<dyn StoreObserver>>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::SqliteStore::open(path, readers, observer)?),
            deadline: DEFAULT_DEADLINE,
        })
    }

    /// Where the database lives, for messages.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => s.path().display().to_string(),
            Backend::Postgres(p) => p.location().to_owned(),
        }
    }

    /// Where a database that holds the signing keys keeps them (sealed: the keys side
    /// seals before `put` and opens after `get`); `None` when the keys stay in the keys
    /// folder, as with SQLite. `keys::storage_for` decides from this.
    pub fn key_blobs(&self) -> Option<Arc<dyn BlobStore>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(Arc::new(p.key_blobs())),
        }
    }

    /// Whether a store opened with `settings` keeps the signing keys (its `key_blobs` is
    /// `Some`), known without opening it: `latchkey keys …` opens the database only then,
    /// so on SQLite those commands neither need nor create the database file.
    pub fn keeps_keys(settings: &StoreSettings) -> bool {
        settings.postgres_url().is_some()
    }

    pub fn stats(&self) -> &WriterStats {
        match &self.backend {
            Backend::Sqlite(s) => s.stats(),
            Backend::Postgres(p) => p.stats(),
        }
    }

    /// Runs `f` as one transaction. Its changes are durable before this returns. If `f`
    /// fails, none of its changes are kept.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + Clone + 'static,
        R: Send + 'static,
    {
        self.write_by(self.ticket(), f, false).await
    }

    /// [`Store::write`] for a job whose every write is conditional on what it read (a
    /// refresh: the head moves only from the generation it read, a revocation only of a
    /// live session), so that it may run at the same time as other such jobs in one
    /// shared transaction: if two collide, the condition fails, the batch rolls back and
    /// each runs again on its own (PostgreSQL's group commit, `store/postgres/group.rs`).
    /// A job that counts or checks and then inserts (a login) must use `write`.
    pub async fn write_conditional<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + Clone + 'static,
        R: Send + 'static,
    {
        self.write_by(self.ticket(), f, true).await
    }

    async fn write_by<R, F>(&self, ticket: Ticket, f: F, concurrent: bool) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + Clone + 'static,
        R: Send + 'static,
    {
        let job = async {
            match &self.backend {
                Backend::Sqlite(s) => s.write(f, ticket.clone()).await,
                Backend::Postgres(p) => p.write(f, concurrent, ticket.clone()).await,
            }
        };
        ticket.wait(job).await
    }

    /// Runs `f` read-only; it sees every write that has returned.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.read_by(self.ticket(), f).await
    }

    async fn read_by<R, F>(&self, ticket: Ticket, f: F) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let job = async {
            match &self.backend {
                Backend::Sqlite(s) => s.read(f, ticket.clone()).await,
                Backend::Postgres(p) => p.read(f, ticket.clone()).await,
            }
        };
        ticket.wait(job).await
    }

    /// A job's ticket: `store.deadline` after the current request's arrival.
    fn ticket(&self) -> Ticket {
        Ticket::after_arrival(self.deadline)
    }

    /// `/readyz`: whether a read and a write both complete within [`PROBE_DEADLINE`]. A
    /// stalled writer or a locked table fails it even while the connection is fine.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let by = Instant::now() + PROBE_DEADLINE;
        self.read_by(Ticket::until(by), async |tx| tx.ping().await)
            .await?;
        self.write_by(Ticket::until(by), async |_| Ok(()), false)
            .await
    }

    /// Waits until every write queued before this call has committed (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(async |_| Ok(())).await
    }
}
