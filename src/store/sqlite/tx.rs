//! [`SqliteTx`]: the domain's `Tx` port over one SQLite connection, inside the writer's
//! batch transaction (writes) or on a read-only connection (reads). Each aggregate's
//! trait is implemented in the file of its tables (`users.rs`, `sessions.rs`, …, paired
//! with `store/postgres/`). SQLite answers synchronously, so every future here is
//! ready when first polled (see `run_now`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use rusqlite::Connection;

use crate::domain::repository::{Result, Tx};
use crate::store::after_commit::Committed;

pub struct SqliteTx<'c> {
    pub(super) conn: &'c Connection,
    /// What the writer reports once the job's batch has committed.
    pub(super) after: Committed,
}

impl<'c> SqliteTx<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            after: Committed::default(),
        }
    }

    /// What the job leaves for after the commit (`store::after_commit`).
    pub fn into_committed(self) -> Committed {
        self.after
    }
}

/// Runs a store job's future to completion on this thread. Every `SqliteTx` method is
/// ready at once, so a job is too; one that waits on anything else is a bug, reported
/// as an error rather than blocking the writer.
pub fn run_now<T>(job: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let mut job = pin!(job);
    match job.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(anyhow::anyhow!(
            "a store job waited on something outside the store"
        )),
    }
}

#[async_trait(?Send)]
impl Tx for SqliteTx<'_> {
    async fn ping(&mut self) -> Result<()> {
        self.conn.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1)",
            [],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(())
    }
}
