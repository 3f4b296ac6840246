//! The single writer: one thread that commits waiting writes together (group commit:
//! one transaction and one fsync for a batch). A job that fails rolls back only its own
//! savepoint; the rest of the batch commits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use rusqlite::Connection;

use super::checkpointer::Nudge;
use super::{Completion, WriteJob};
use crate::store::after_commit::{self, Committed};
use crate::store::{StoreError, StoreObserver, WriterStats};

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 256;

pub fn run_in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    // Prepared once and cached: these run twice per write (execute_batch would parse
    // them every time).
    let savepoint = |sql: &str| -> rusqlite::Result<()> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    savepoint("SAVEPOINT job")?;
    let outcome = match catch_unwind(AssertUnwindSafe(f)) {
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

/// Copies the WAL into the database and truncates it to nothing, so rows a job erased
/// (already zeroed by `secure_delete` in their new page images) leave no older page
/// image behind in the log. Runs between batches, outside any transaction; waits (busy
/// timeout) for readers still on an older snapshot. A checkpoint that cannot finish is
/// logged; the next erasure or SQLite's own checkpoints catch up.
fn checkpoint_truncate(conn: &Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    match result {
        Ok(0) => {}
        Ok(_) => tracing::warn!("the WAL checkpoint after an erasure was blocked by a reader"),
        Err(e) => tracing::error!(error = %e, "the WAL checkpoint after an erasure failed"),
    }
}

pub fn writer_loop(
    conn: Connection,
    rx: Receiver<WriteJob>,
    stats: Arc<WriterStats>,
    observer: Option<Arc<dyn StoreObserver>>,
    checkpoints: Nudge,
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
        let Some(batch) = begin(&conn, batch) else {
            continue;
        };
        let started = Instant::now();
        let mut after = Committed::default();
        let mut writes = 0;
        let completions: Vec<Completion> = batch
            .into_iter()
            .map(|job| {
                // A job whose caller has given up (or whose deadline passed while the
                // batch waited for the lock) never writes (docs/architecture.md
                // "Deadlines").
                let conn = if job.ticket.begin() {
                    Ok(&conn)
                } else {
                    Err(StoreError::DeadlinePassed)
                };
                let (completion, done) = (job.run)(conn);
                if let Some(done) = done {
                    after.absorb(done);
                    writes += 1;
                }
                completion
            })
            .collect();
        let committed = match conn.execute_batch("COMMIT") {
            Ok(()) => {
                if after.scrub {
                    checkpoint_truncate(&conn);
                }
                checkpoints.nudge();
                // Only what committed counts: not a batch that rolled back, nor jobs
                // that failed or were refused inside one that committed.
                if writes > 0 {
                    after_commit::report(
                        observer.as_deref(),
                        &stats,
                        writes,
                        started.elapsed(),
                        &after,
                    );
                }
                Ok(())
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let e = Arc::new(anyhow::Error::from(e).context("COMMIT failed"));
                tracing::error!(error = format!("{e:#}"), "write batch failed");
                Err(e)
            }
        };
        for c in completions {
            c(committed.clone());
        }
    }
}

/// Opens the batch's transaction. While another process holds the database's write
/// lock (a stuck writer), `BEGIN IMMEDIATE` waits out the busy timeout and is tried
/// again; jobs whose callers have given up meanwhile are answered and dropped. `None`:
/// no job is left to run, or the database refused (each job has its answer).
fn begin(conn: &Connection, mut batch: Vec<WriteJob>) -> Option<Vec<WriteJob>> {
    loop {
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => return Some(batch),
            Err(e) if is_busy(&e) => {
                let (live, gone): (Vec<_>, Vec<_>) =
                    batch.into_iter().partition(|job| job.ticket.is_live());
                for job in gone {
                    refuse(job, StoreError::DeadlinePassed);
                }
                if live.is_empty() {
                    return None;
                }
                tracing::warn!("the database is locked by another process; the writer waits");
                batch = live;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot begin a write transaction");
                for job in batch {
                    refuse(job, StoreError::Unavailable);
                }
                return None;
            }
        }
    }
}

fn refuse(job: WriteJob, why: StoreError) {
    let (completion, _) = (job.run)(Err(why));
    completion(Ok(()));
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
