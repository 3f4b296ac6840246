//! WAL checkpoints off the commit path.
//!
//! By default SQLite checkpoints inside `COMMIT`: the connection whose commit takes the
//! WAL past `wal_autocheckpoint` pages (1,000) copies every frame into the database file
//! and fsyncs it before its `COMMIT` returns. Here that connection is the single writer,
//! so every write waiting behind that batch waited for the checkpoint too: the
//! periodic stalls in BENCHMARKS.md "open loop, tail latency". Instead the writer only nudges this
//! thread after a commit, and the thread runs PASSIVE checkpoints on its own
//! connection; a passive checkpoint never takes the write lock, so commits go on
//! while it copies (<https://www.sqlite.org/wal.html#checkpointing>).
//!
//! The WAL stays bounded: a checkpoint starts at most `INTERVAL` after a commit, the
//! writer starts the log over once a checkpoint has caught up (and
//! `journal_size_limit` trims the file), and if this thread ever falls far behind, the
//! writer's own autocheckpoint at `WRITER_SAFETY_NET` pages still bounds it.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::Connection;

use crate::store::WriterStats;

/// Most one checkpoint per this interval: nudges that arrive meanwhile fold into the
/// next one, so a busy writer costs a few checkpoints per second, not one per commit.
const INTERVAL: Duration = Duration::from_millis(100);

/// The writer's own autocheckpoint, in pages: reached only if this thread cannot keep
/// up (a reader pinning an old snapshot), so the WAL stays bounded whatever happens.
pub const WRITER_SAFETY_NET: i64 = 20_000;

/// The size the WAL file is trimmed back to when the log starts over, in bytes.
pub const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The writer's handle: `nudge` after each commit.
pub struct Nudge(Sender<()>);

impl Nudge {
    /// Never blocks: one pending nudge is as good as many.
    pub fn nudge(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// Starts the checkpointer thread on its own connection to `path`. It stops when the
/// writer drops its `Nudge`.
pub fn start(path: &Path, stats: Arc<WriterStats>) -> anyhow::Result<Nudge> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the checkpointer on {}", path.display()))?;
    // A checkpoint waits for nobody: PASSIVE copies what it can and returns.
    conn.busy_timeout(Duration::from_millis(100))?;
    let (tx, rx) = bounded::<()>(1);
    thread::Builder::new()
        .name("db-checkpoint".into())
        .spawn(move || run(conn, rx, stats))
        .context("cannot start the checkpointer thread")?;
    Ok(Nudge(tx))
}

fn run(conn: Connection, nudges: Receiver<()>, stats: Arc<WriterStats>) {
    while nudges.recv().is_ok() {
        let started = Instant::now();
        match passive_checkpoint(&conn) {
            Ok(()) => {
                stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.checkpoint_micros.fetch_add(micros, Ordering::Relaxed);
            }
            // Busy (another checkpoint, or the database locked by another process): the
            // next nudge tries again; the writer's safety net bounds the WAL meanwhile.
            Err(e) => tracing::debug!(error = %e, "a passive WAL checkpoint did not run"),
        }
        thread::sleep(INTERVAL.saturating_sub(started.elapsed()));
    }
}

fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    // Returns (busy, frames in the log, frames copied); a log some reader still needs
    // is copied up to that reader's snapshot and finished by a later checkpoint.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::NewEvent;
    use crate::domain::EventKind;
    use crate::store::Store;

    #[test]
    fn the_writer_connection_leaves_checkpoints_to_this_thread() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        super::super::configure(&conn).unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages, WRITER_SAFETY_NET);
    }

    #[tokio::test]
    async fn the_checkpointer_copies_committed_writes_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path, 1).unwrap();
        // Enough writes for several thousand WAL frames: far past SQLite's default
        // autocheckpoint (1,000 pages), which the writer no longer runs.
        for round in 0..60 {
            let writes = (0..50).map(|i| {
                store.write(async move |tx| {
                    let mut event = NewEvent::new(EventKind::LoginFailed);
                    event.user_agent = Some(format!("{round}-{i}-{}", "x".repeat(2000)));
                    tx.insert_event(round * 100 + i, &event).await
                })
            });
            for w in futures_util::future::join_all(writes).await {
                w.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(INTERVAL * 3).await;
        let checkpoints = store.stats().checkpoints.load(Ordering::Relaxed);
        assert!(checkpoints > 0, "the checkpointer ran");
        // About 6 MB of events: only a checkpoint moves pages from the WAL into the
        // database file, and the writer's own would start only at 20,000 pages (80 MB).
        let db = std::fs::metadata(&path).unwrap().len();
        assert!(
            db > 5_000_000,
            "the database file holds the writes: {db} bytes"
        );
    }
}
