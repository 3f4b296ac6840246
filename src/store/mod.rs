//! SQLite storage: one writer thread that commits waiting writes together (group
//! commit: one transaction and one fsync for a batch), plus read-only connections on a
//! bounded pool. Nothing here blocks an async worker.

pub mod queries;
mod schema;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::pool::{PoolError, WorkerPool};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;
/// Most writes waiting for the writer before new ones are refused with 503.
const WRITE_QUEUE: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is busy")]
    Busy,
    #[error("the store has stopped")]
    Stopped,
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

/// Runs one write inside the batch transaction; returns what to tell its caller once the
/// batch has committed (or failed).
type WriteJob = Box<dyn FnOnce(&Connection) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<(), Arc<anyhow::Error>>) + Send>;

/// Told the size and BEGIN→COMMIT time of every batch (metrics).
pub type BatchObserver = Arc<dyn Fn(usize, Duration) + Send + Sync>;

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub writes: AtomicU64,
    pub commit_micros: AtomicU64,
}

#[derive(Clone)]
pub struct Store {
    writer: Sender<WriteJob>,
    readers: WorkerPool<Connection>,
    stats: Arc<WriterStats>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database, applies migrations, and starts the writer
    /// thread and `readers` read-only connections.
    pub fn open(path: &Path, readers: usize) -> anyhow::Result<Self> {
        Self::open_observed(path, readers, None)
    }

    /// [`Store::open`], reporting every batch to `observer`.
    pub fn open_observed(
        path: &Path,
        readers: usize,
        observer: Option<BatchObserver>,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
        }
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        configure(&conn).context("cannot configure the database")?;
        migrate(&mut conn)
            .with_context(|| format!("cannot migrate the database {}", path.display()))?;

        let mut contexts = Vec::new();
        for _ in 0..readers.max(1) {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("cannot open a reader on {}", path.display()))?;
            r.busy_timeout(Duration::from_secs(5))?;
            r.set_prepared_statement_cache_capacity(64);
            contexts.push(r);
        }
        let readers = WorkerPool::start("db-read", contexts, 4096)?;

        let (tx, rx) = bounded::<WriteJob>(WRITE_QUEUE);
        let stats = Arc::new(WriterStats::default());
        let writer_stats = stats.clone();
        thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer_loop(conn, rx, writer_stats, observer))?;
        Ok(Self {
            writer: tx,
            readers,
            stats,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until every write queued before this call has committed (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Runs `f` in the writer's transaction. Its changes are durable (fsync'd) before this
    /// returns. If `f` fails, its own changes are rolled back and the batch goes on.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<R, StoreError>>();
        let job: WriteJob = Box::new(move |conn: &Connection| {
            let outcome = run_in_savepoint(conn, f);
            Box::new(move |committed: Result<(), Arc<anyhow::Error>>| {
                let result = match (outcome, committed) {
                    (Ok(r), Ok(())) => Ok(r),
                    (Err(e), _) => Err(StoreError::Failed(e)),
                    (Ok(_), Err(e)) => {
                        Err(StoreError::Failed(anyhow::anyhow!("commit failed: {e:#}")))
                    }
                };
                let _ = reply.send(result);
            })
        });
        match self.writer.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Stopped),
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Runs `f` on a read-only connection; it sees every write that has returned.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.readers
            .run(move |conn: &mut Connection| f(conn))
            .await?
            .map_err(StoreError::Failed)
    }
}

/// Applies the schema migrations (the store does when it opens; a bulk loader that
/// writes through its own connection calls this first).
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    Ok(schema::migrations().to_latest(conn)?)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers run beside the writer; FULL makes every commit durable (an fsync
    // of the WAL) before we answer; group commit pays that once per batch.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

fn run_in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    // Prepared once and cached: these run twice per write (execute_batch would parse
    // them every time).
    let savepoint = |sql: &str| -> rusqlite::Result<()> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    savepoint("SAVEPOINT job")?;
    let outcome = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("a write job panicked")),
    };
    match outcome {
        Ok(r) => {
            savepoint("RELEASE job")?;
            Ok(r)
        }
        Err(e) => {
            savepoint("ROLLBACK TO job")?;
            savepoint("RELEASE job")?;
            Err(e)
        }
    }
}

fn writer_loop(
    conn: Connection,
    rx: Receiver<WriteJob>,
    stats: Arc<WriterStats>,
    observer: Option<BatchObserver>,
) {
    // Block for the first write; take whatever else is already waiting. A lone write is
    // never delayed by a timer, and under load batches grow by themselves.
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let completions: Vec<Completion>;
        let committed = match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                completions = batch.into_iter().map(|job| job(&conn)).collect();
                match conn.execute_batch("COMMIT") {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        Err(Arc::new(anyhow::Error::from(e).context("COMMIT failed")))
                    }
                }
            }
            Err(e) => {
                let err = Arc::new(anyhow::Error::from(e).context("BEGIN failed"));
                completions = batch
                    .into_iter()
                    .map(|_job| -> Completion { Box::new(|_| {}) })
                    .collect();
                Err(err)
            }
        };
        if let Err(e) = &committed {
            tracing::error!(error = format!("{e:#}"), "write batch failed");
        }
        if let Some(observe) = &observer {
            observe(completions.len(), started.elapsed());
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(completions.len() as u64, Ordering::Relaxed);
        stats
            .commit_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        for c in completions {
            c(committed.clone());
        }
    }
}
