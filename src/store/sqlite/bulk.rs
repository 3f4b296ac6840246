//! Loading many rows fast through the store's own statements: a connection of its own
//! with no journal and no fsync until [`BulkLoad::finish`], one transaction per batch.
//! For the scale benchmark's generator (`bench/`), never for a serving store.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::Connection;

use super::tx::{run_now, SqliteTx};
use crate::domain::repository::Tx;

pub struct BulkLoad {
    conn: Connection,
    path: PathBuf,
}

impl BulkLoad {
    /// Opens (creating and migrating) the database at `path` for a bulk load.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        // No journal and no fsync until the end, and a large page cache so the random
        // index inserts stay in memory.
        conn.pragma_update(None, "journal_mode", "OFF")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.pragma_update(None, "cache_size", -2_000_000)?;
        super::migrate(&mut conn)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Runs `job` as one transaction.
    pub fn batch<T>(
        &mut self,
        job: impl AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let tx = self.conn.transaction()?;
        let out = run_now(job(&mut SqliteTx::new(&tx)))?;
        tx.commit()?;
        Ok(out)
    }

    /// Puts the database back in WAL mode, as the service opens it, and makes the load
    /// durable. No ANALYZE: the service never runs it, so the planner sees what it would
    /// in production.
    pub fn finish(self) -> anyhow::Result<()> {
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        drop(self.conn);
        std::fs::File::open(&self.path)?.sync_all()?;
        Ok(())
    }
}
