//! The SQLite backend: one writer thread that group-commits (`writer`), read-only
//! connections on a bounded pool, and the domain's repository traits over a connection
//! (`tx`, and one file per aggregate paired with `store/postgres/`).
//! Nothing here blocks an async worker. rusqlite appears nowhere outside this folder.

mod account_tokens;
mod authorization_codes;
mod bulk;
mod checkpointer;
mod emails;
mod events;
mod identities;
mod mfa;
pub mod migrations;
mod passkeys;
mod revocations;
mod sessions;
mod tx;
mod users;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{bounded, Sender, TrySendError};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

pub use bulk::BulkLoad;
use tx::run_now;
pub use tx::SqliteTx;

use super::after_commit::Committed;
use super::deadline::Ticket;
use super::{StoreError, StoreObserver, WriterStats};
use crate::domain::repository::Tx;
use crate::pool::WorkerPool;

/// Most writes waiting for the writer before new ones are refused with 503.
const WRITE_QUEUE: usize = 8192;

/// One caller's write, waiting for the writer. `run` gets the batch's connection and
/// returns what to tell its caller once the batch has committed (or failed), and what
/// the job leaves for after the commit (`None` if it failed: its savepoint rolled back);
/// or gets the reason it cannot run and answers at once.
struct WriteJob {
    ticket: Ticket,
    run: RunJob,
}
type RunJob =
    Box<dyn FnOnce(Result<&Connection, StoreError>) -> (Completion, Option<Committed>) + Send>;
type Completion = Box<dyn FnOnce(Result<(), Arc<anyhow::Error>>) + Send>;

#[derive(Clone)]
pub struct SqliteStore {
    writer: Sender<WriteJob>,
    readers: WorkerPool<Connection>,
    stats: Arc<WriterStats>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database, applies migrations, and starts the writer
    /// thread and `readers` read-only connections.
    pub fn open(
        path: &Path,
        readers: usize,
        observer: Option<Arc<dyn StoreObserver>>,
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
        let checkpoints = checkpointer::start(path, stats.clone())?;
        thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer::writer_loop(conn, rx, writer_stats, observer, checkpoints))?;
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

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Queues `f` for the writer and waits until its batch has committed. The job runs
    /// only if `ticket` lets it start (docs/architecture.md "Deadlines").
    pub async fn write<R, F>(&self, f: F, ticket: Ticket) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<R, StoreError>>();
        let run = Box::new(move |conn: Result<&Connection, StoreError>| {
            let conn = match conn {
                Ok(conn) => conn,
                Err(refused) => {
                    let _ = reply.send(Err(refused));
                    return (Box::new(|_| {}) as Completion, None);
                }
            };
            let mut tx = SqliteTx::new(conn);
            let outcome = writer::run_in_savepoint(conn, || run_now(f(&mut tx)));
            let after = outcome.is_ok().then(|| tx.into_committed());
            let completion: Completion =
                Box::new(move |committed: Result<(), Arc<anyhow::Error>>| {
                    let result = match (outcome, committed) {
                        (Ok(r), Ok(())) => Ok(r),
                        (Err(e), _) => Err(StoreError::Failed(e)),
                        (Ok(_), Err(e)) => {
                            Err(StoreError::Failed(anyhow::anyhow!("commit failed: {e:#}")))
                        }
                    };
                    let _ = reply.send(result);
                });
            (completion, after)
        });
        match self.writer.try_send(WriteJob { ticket, run }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Stopped),
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Runs `f` on a read-only connection; it sees every write that has returned.
    pub async fn read<R, F>(&self, f: F, ticket: Ticket) -> Result<R, StoreError>
    where
        F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.readers
            .run(move |conn: &mut Connection| {
                if !ticket.begin() {
                    return Err(StoreError::DeadlinePassed);
                }
                run_now(f(&mut SqliteTx::new(conn))).map_err(StoreError::Failed)
            })
            .await?
    }
}

/// Applies the schema migrations (the store does when it opens; a bulk loader that
/// writes through its own connection calls this first).
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    // A migration that rebuilds a parent table (version 18) must not cascade the
    // drop of the old table into its children: SQLite's recipe turns foreign keys off
    // around it (the pragma is a no-op inside the migrations' transaction), and the
    // migration checks them itself before it commits.
    let enforced: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = migrations::migrations().to_latest(conn);
    conn.pragma_update(None, "foreign_keys", enforced)?;
    Ok(migrated?)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers run beside the writer; FULL makes every commit durable (an fsync
    // of the WAL) before we answer; group commit pays that once per batch.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoints run on their own thread, off the commit path (checkpointer.rs); the
    // writer's autocheckpoint is only a safety net far above SQLite's default.
    conn.pragma_update(None, "wal_autocheckpoint", checkpointer::WRITER_SAFETY_NET)?;
    conn.pragma_update(None, "journal_size_limit", checkpointer::JOURNAL_SIZE_LIMIT)?;
    // Erasure (docs/contract.md "Endpoints", DELETE /me): deleted rows are overwritten
    // with zeros, not left in free space for a dump of the file to find.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// A migrated in-memory database and a `Tx` over it, for unit tests of the rules.
#[cfg(test)]
pub fn in_memory() -> Connection {
    let mut conn = Connection::open_in_memory().expect("in-memory SQLite");
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    migrate(&mut conn).expect("migrations");
    conn
}

#[cfg(test)]
pub fn run_test_job<T>(
    conn: &Connection,
    job: impl AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    run_now(job(&mut SqliteTx::new(conn)))
}
