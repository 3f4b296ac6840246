//! The single writer: one thread that commits waiting writes together (group commit:
//! one transaction and one fsync for a batch). A job that fails rolls back only its own
//! savepoint; the rest of the batch commits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use rusqlite::Connection;

use super::{Completion, WriteJob};
use crate::store::{StoreObserver, WriterStats};

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
                let mut scrub = false;
                completions = batch
                    .into_iter()
                    .map(|job| {
                        let (completion, wants_scrub) = job(&conn);
                        scrub |= wants_scrub;
                        completion
                    })
                    .collect();
                match conn.execute_batch("COMMIT") {
                    Ok(()) => {
                        if scrub {
                            checkpoint_truncate(&conn);
                        }
                        Ok(())
                    }
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
            observe.batch_committed(completions.len(), started.elapsed());
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
