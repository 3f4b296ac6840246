//! The PostgreSQL backend (`store.url`): any number of latchkey instances share one
//! database (docs/contract.md "Scale-out on PostgreSQL", docs/architecture.md).
//!
//! - `tokio-postgres` over a `deadpool-postgres` pool that drops broken connections
//!   and opens new ones by itself, so service resumes when the database returns;
//!   prepared statements are cached per connection.
//! - Jobs run on the store's own threads (`executor`), each write in one transaction
//!   (`tx`) committed before `write` returns (`synchronous_commit` is left on).
//! - A write that loses a race the database detects (serialization failure, deadlock,
//!   a unique key another instance took first) is rerun from the start, up to a few
//!   times; the rerun sees the winner's commit and answers accordingly (a rotation race
//!   becomes the grace answer, a signup race a 409). Never a 500.
//! - A database that cannot be reached is `StoreError::Unavailable`: 503 with
//!   `Retry-After`, never a 500.

mod account_tokens;
mod authorization_codes;
mod emails;
mod events;
mod executor;
mod group;
mod identities;
mod key_blobs;
mod login_failures;
mod mfa;
mod passkeys;
mod revocations;
pub mod schema;
mod sessions;
mod tx;
mod users;
mod webhooks;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::oneshot;
use tokio_postgres::error::SqlState;

pub use key_blobs::PgBlobs;
pub use tx::PgTx;

use super::after_commit;
use super::deadline::Ticket;
use super::{StoreError, StoreObserver, WriterStats};
use crate::domain::repository::Tx;
use executor::Executor;

/// How many times a write that lost a race is run again before giving up.
const MAX_ATTEMPTS: u32 = 8;
/// How long a job waits for a pooled connection, and a new connection for the server.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A write whose precondition another transaction changed under it: run it again.
#[derive(Debug, thiserror::Error)]
#[error("a concurrent write changed the row; the job runs again")]
pub struct Conflict;

/// Group-commit lanes (`group`): writes waiting on a lane share one commit.
const LANES: usize = 4;

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    exec: Executor,
    lanes: Arc<Vec<tokio::sync::mpsc::UnboundedSender<Box<dyn group::GroupJob>>>>,
    next_lane: Arc<std::sync::atomic::AtomicUsize>,
    stats: Arc<WriterStats>,
    observer: Option<Arc<dyn StoreObserver>>,
    /// host:port/db, for messages (never the password).
    location: String,
}

impl PgStore {
    /// Connects, migrates (once, whatever the number of instances starting), and starts
    /// the pool of at most `max_connections`.
    /// `deadline` (`store.deadline`) bounds every statement and lock wait, so a job that
    /// started never holds its caller much past the deadline; `None` (`store copy`) sets
    /// no bound.
    pub fn open(
        url: &str,
        max_connections: usize,
        deadline: Option<Duration>,
        observer: Option<Arc<dyn StoreObserver>>,
    ) -> anyhow::Result<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| anyhow::anyhow!("store.url is not a valid PostgreSQL URL"))?;
        let location = describe(&config);
        let mut config = config;
        if config.get_application_name().is_none() {
            config.application_name("latchkey");
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        // Every acknowledged write is on disk, whatever the server's default says: a
        // rotation answered and then lost would strand the client's new token.
        let mut ours = "-c synchronous_commit=on".to_owned();
        if let Some(deadline) = deadline {
            // A lock held by someone else (a long transaction, `LOCK TABLE`) or a slow
            // statement ends the job at the deadline instead of stalling it for as long
            // as the database does (docs/architecture.md "Deadlines").
            let ms = deadline.as_millis().max(1);
            ours.push_str(&format!(" -c lock_timeout={ms} -c statement_timeout={ms}"));
        }
        let options = match config.get_options() {
            Some(given) => format!("{given} {ours}"),
            None => ours,
        };
        config.options(&options);
        let manager = Manager::from_config(
            config,
            tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .context("cannot build the PostgreSQL pool")?;
        let exec = Executor::start(1)?;
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..LANES {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            senders.push(tx);
            receivers.push(rx);
        }
        let store = Self {
            pool,
            exec,
            lanes: Arc::new(senders),
            next_lane: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            stats: Arc::new(WriterStats::default()),
            observer,
            location,
        };
        store.run_blocking(async |s: PgStore| {
            let mut conn = s.connection().await.map_err(|e| {
                anyhow::anyhow!("cannot connect to PostgreSQL at {}: {e}", s.location)
            })?;
            schema::migrate(&mut conn)
                .await
                .with_context(|| format!("cannot migrate the database at {}", s.location))?;
            Ok(())
        })?;
        for rx in receivers {
            // A lane's own handle has no lanes: when the last handle that can send to
            // the lanes is dropped, they end, and with them the pool and its connections.
            let lane_store = PgStore {
                lanes: Arc::new(Vec::new()),
                ..store.clone()
            };
            store
                .exec
                .spawn(move || async move { group::lane(lane_store, rx).await });
        }
        Ok(store)
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The signing and seal keys' sealed blobs, kept in this database.
    pub fn key_blobs(&self) -> PgBlobs {
        PgBlobs(self.clone())
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `f` on the store's threads from synchronous code (opening, the CLI, key
    /// storage) and waits for it. Must not be called from inside those threads.
    pub fn run_blocking<R: Send + 'static>(
        &self,
        f: impl AsyncFnOnce(PgStore) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let (reply, answer) = std::sync::mpsc::channel();
        let me = self.clone();
        if !self.exec.spawn(move || async move {
            let _ = reply.send(f(me).await);
        }) {
            anyhow::bail!("the store has stopped");
        }
        answer
            .recv()
            .map_err(|_| anyhow::anyhow!("the store has stopped"))?
    }

    /// Runs `f` on the store's threads and awaits it from anywhere (a `Send` future).
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl AsyncFnOnce(PgStore) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let (reply, answer) = oneshot::channel();
        let me = self.clone();
        if !self.exec.spawn(move || async move {
            let _ = reply.send(f(me).await);
        }) {
            anyhow::bail!("the store has stopped");
        }
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the store has stopped"))?
    }

    /// Takes the session advisory lock `key` on a connection of its own if no other
    /// session holds it; the lock lasts as long as the returned connection, which is
    /// closed (not returned to the pool) when dropped.
    pub async fn try_exclusive(&self, key: i64) -> anyhow::Result<Option<Exclusive>> {
        self.run(async move |s: PgStore| {
            let conn = s.connection().await?;
            let row = conn
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await?;
            let got: bool = row.try_get(0)?;
            Ok(got.then(|| Exclusive(Some(conn))))
        })
        .await
    }

    /// A pooled connection (must be awaited on the store's threads).
    pub async fn connection(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            tracing::warn!(error = %e, "PostgreSQL is unavailable");
            StoreError::Unavailable
        })
    }

    /// Runs `f` as one transaction (or inside one shared with other writes waiting at
    /// the same moment: `group`), on the store's threads; durable before it returns.
    pub async fn write<R, F>(&self, f: F, concurrent: bool, ticket: Ticket) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + Clone + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn group::GroupJob> = Box::new(group::Job {
            f,
            concurrent,
            ticket,
            result: None,
            reply,
        });
        let lane = self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        if self.lanes[lane].send(job).is_err() {
            return Err(StoreError::Stopped);
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// One write in its own transaction, rerun after a lost race (a batch's jobs come
    /// here when their batch could not commit). Each attempt starts only while `ticket`
    /// allows: a rerun past the deadline is dropped, its earlier attempts rolled back.
    pub(super) async fn run_write<R, F>(&self, f: F, ticket: &Ticket) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Clone,
    {
        let mut attempt = 1;
        loop {
            if !ticket.begin() {
                return Err(StoreError::DeadlinePassed);
            }
            let conn = self.connection().await?;
            let started = Instant::now();
            let mut tx = PgTx::write(&conn);
            let outcome = f.clone()(&mut tx).await;
            let opened = tx.in_transaction();
            let after = tx.after;
            let finished = match outcome {
                Ok(r) if opened => conn
                    .batch_execute("COMMIT")
                    .await
                    .map(|_| r)
                    .map_err(Into::into),
                Ok(r) => Ok(r),
                Err(e) => {
                    if opened && conn.batch_execute("ROLLBACK").await.is_err() {
                        // A connection in an unknown state never goes back to the pool.
                        let _ = Object::take(conn);
                        return Err(self.failed(e, attempt).unwrap_err());
                    }
                    Err(e)
                }
            };
            match finished {
                Ok(r) => {
                    after_commit::report(
                        self.observer.as_deref(),
                        &self.stats,
                        1,
                        started.elapsed(),
                        &after,
                    );
                    if after.scrub {
                        self.scrub(conn);
                    }
                    return Ok(r);
                }
                Err(e) => {
                    if conn.is_closed() {
                        let _ = Object::take(conn);
                    } else {
                        drop(conn);
                    }
                    match self.failed(e, attempt) {
                        Ok(()) => {
                            attempt += 1;
                            // A short, growing pause lets the winner finish.
                            tokio::time::sleep(Duration::from_millis(u64::from(attempt * attempt)))
                                .await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// `Ok(())` if the job should run again; otherwise the error to return.
    fn failed(&self, e: anyhow::Error, attempt: u32) -> Result<(), StoreError> {
        let retryable = e.chain().any(|c| c.is::<Conflict>())
            || db_code(&e).is_some_and(|code| {
                code == &SqlState::T_R_SERIALIZATION_FAILURE
                    || code == &SqlState::T_R_DEADLOCK_DETECTED
                    || code == &SqlState::UNIQUE_VIOLATION
            });
        if retryable && attempt < MAX_ATTEMPTS {
            return Ok(());
        }
        if connection_lost(&e) {
            tracing::warn!(error = %format!("{e:#}"), "PostgreSQL is unavailable");
            return Err(StoreError::Unavailable);
        }
        Err(classify(e))
    }

    /// Runs `f` read-only; it sees every write that has returned, on any instance.
    pub async fn read<R, F>(&self, f: F, ticket: Ticket) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let me = self.clone();
        if !self.exec.spawn(move || async move {
            if !ticket.begin() {
                let _ = reply.send(Err(StoreError::DeadlinePassed));
                return;
            }
            let result = match me.connection().await {
                Ok(conn) => {
                    let outcome = f(&mut PgTx::read(&conn)).await;
                    match outcome {
                        Ok(r) => Ok(r),
                        Err(e) if connection_lost(&e) => {
                            let _ = Object::take(conn);
                            Err(StoreError::Unavailable)
                        }
                        Err(e) => Err(classify(e)),
                    }
                }
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }) {
            return Err(StoreError::Stopped);
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Erasure: PostgreSQL keeps deleted rows in the table files until vacuum reclaims
    /// them. After a user's erasure commits, vacuum the tables that held their personal
    /// data, in the background (it cannot run inside a transaction, and the reply need
    /// not wait for it).
    pub(super) fn scrub(&self, conn: Object) {
        tokio::task::spawn_local(async move {
            // Vacuum may outlast `store.deadline`'s statement timeout; the connection
            // is closed afterwards rather than returned to the pool without it.
            let vacuum = async {
                conn.batch_execute("SET statement_timeout = 0").await?;
                conn.batch_execute("VACUUM users, user_emails, account_tokens, sessions, events")
                    .await
            };
            if let Err(e) = vacuum.await {
                tracing::warn!(error = %e, "vacuum after an erasure failed");
            }
            let _ = Object::take(conn);
        });
    }
}

/// A session advisory lock held by a connection of its own (`PgStore::try_exclusive`).
pub struct Exclusive(Option<Object>);

impl Drop for Exclusive {
    fn drop(&mut self) {
        // Closing the session releases its advisory locks.
        if let Some(conn) = self.0.take() {
            let _ = Object::take(conn);
        }
    }
}

/// A failed job's error: a client's NUL character (which only a client can send: no
/// stored text holds one) is the client's mistake, anything else the store's.
fn classify(e: anyhow::Error) -> StoreError {
    match db_code(&e) {
        Some(code) if code == &SqlState::CHARACTER_NOT_IN_REPERTOIRE => StoreError::InvalidText,
        // `lock_timeout` or `statement_timeout` (`store.deadline`) ended the job: it
        // rolled back, so the answer is the deadline's 503.
        Some(code)
            if code == &SqlState::LOCK_NOT_AVAILABLE || code == &SqlState::QUERY_CANCELED =>
        {
            tracing::warn!("a store job ran out of time waiting for the database");
            StoreError::DeadlinePassed
        }
        _ => StoreError::Failed(e),
    }
}

fn db_code(e: &anyhow::Error) -> Option<&SqlState> {
    e.chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .and_then(|pg| pg.code())
}

/// The connection broke or the server is going away (restart, shutdown, failover).
fn connection_lost(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| match c.downcast_ref::<tokio_postgres::Error>() {
            Some(pg) => {
                pg.is_closed()
                    || pg.code().is_some_and(|code| {
                        code == &SqlState::ADMIN_SHUTDOWN
                            || code == &SqlState::CRASH_SHUTDOWN
                            || code == &SqlState::CANNOT_CONNECT_NOW
                            || code.code().starts_with("08")
                    })
            }
            None => c.is::<std::io::Error>(),
        })
}

/// TLS to the database through rustls (ring), with the system's trusted roots; used
/// when the URL's `sslmode` asks for it (`prefer`, the default, tries it first).
fn tls() -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot configure TLS for PostgreSQL")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{host}:{port}/{db}")
}
