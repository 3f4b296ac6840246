//! Group commit for PostgreSQL, as the SQLite writer does it: every commit waits for
//! the write-ahead log to reach the disk (`synchronous_commit` stays on), and one flush
//! for many writes is the difference between a few thousand refreshes a second and
//! several times that (BENCHMARKS.md "PostgreSQL"). A few lanes each take whatever
//! writes are waiting (up to `MAX_BATCH`), run them one after another in one
//! transaction on one connection, and commit once; each caller hears back after that
//! commit.
//!
//! A batch in which any job fails, or which loses a race (another instance's write,
//! a deadlock), is rolled back whole, and its jobs run again one by one, each in its own
//! transaction with the usual reruns (`PgStore::run_write`): a job's result is only
//! ever returned from a transaction that committed, and one job's failure never costs
//! another its write.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use deadpool_postgres::Object;
use tokio::sync::{mpsc, oneshot};

use super::{PgStore, PgTx, StoreError};
use crate::domain::repository::Tx;
use crate::store::after_commit::{self, Committed};
use crate::store::deadline::Ticket;

/// Most writes one transaction carries.
pub const MAX_BATCH: usize = 64;

/// One caller's write, type-erased so that a lane can carry any.
pub trait GroupJob: Send {
    /// Runs (a copy of) the job inside the batch's transaction, keeping its result.
    fn run<'a>(
        &'a mut self,
        tx: &'a mut PgTx<'_>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;
    /// The batch committed: hand the kept result to the caller.
    fn committed(self: Box<Self>);
    /// The batch failed: run the job on its own (its own transaction and reruns).
    fn alone(self: Box<Self>, store: PgStore) -> Pin<Box<dyn Future<Output = ()>>>;
    /// The batch could not run at all (no connection): tell the caller.
    fn failed(self: Box<Self>, error: StoreError);
    /// Whether the job may run at the same time as others of its kind in the batch
    /// (`Store::write_conditional`).
    fn concurrent(&self) -> bool;
    /// Its deadline's ticket: a job runs only if it starts in time.
    fn ticket(&self) -> &Ticket;
}

pub struct Job<F, R> {
    pub f: F,
    pub concurrent: bool,
    pub ticket: Ticket,
    pub result: Option<R>,
    pub reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> GroupJob for Job<F, R>
where
    F: AsyncFnOnce(&mut dyn Tx) -> anyhow::Result<R> + Send + Clone + 'static,
    R: Send + 'static,
{
    fn run<'a>(
        &'a mut self,
        tx: &'a mut PgTx<'_>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>> {
        let f = self.f.clone();
        Box::pin(async move {
            let r = f(tx).await?;
            self.result = Some(r);
            Ok(())
        })
    }

    fn committed(self: Box<Self>) {
        let this = *self;
        if let Some(r) = this.result {
            let _ = this.reply.send(Ok(r));
        }
    }

    fn alone(self: Box<Self>, store: PgStore) -> Pin<Box<dyn Future<Output = ()>>> {
        let this = *self;
        Box::pin(async move {
            let _ = this.reply.send(store.run_write(this.f, &this.ticket).await);
        })
    }

    fn failed(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn concurrent(&self) -> bool {
        self.concurrent
    }

    fn ticket(&self) -> &Ticket {
        &self.ticket
    }
}

/// A lane: takes the writes waiting on `rx`, a batch at a time, until the store stops.
pub async fn lane(store: PgStore, mut rx: mpsc::UnboundedReceiver<Box<dyn GroupJob>>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&store, batch).await;
    }
}

async fn run_batch(store: &PgStore, batch: Vec<Box<dyn GroupJob>>) {
    // A job whose caller has given up, or whose deadline passed while it waited, never
    // writes (docs/architecture.md "Deadlines").
    let (mut batch, late): (Vec<_>, Vec<_>) = batch.into_iter().partition(|j| j.ticket().begin());
    for job in late {
        job.failed(StoreError::DeadlinePassed);
    }
    if batch.is_empty() {
        return;
    }
    if batch.len() == 1 {
        // Nothing to share a commit with: the single path (no copy of the job).
        let job = batch.pop().expect("one job");
        job.alone(store.clone()).await;
        return;
    }
    let conn = match store.connection().await {
        Ok(c) => c,
        Err(_) => {
            // `connection` fails only when the database cannot be reached.
            for job in batch {
                job.failed(StoreError::Unavailable);
            }
            return;
        }
    };
    let started = Instant::now();
    // Other writes first, one after another; then the conditional ones (refreshes) all
    // at once, their statements pipelined on the connection: a batch of them costs a
    // few round trips, not a few per job. They see the others' writes (one transaction).
    batch.sort_by_key(|job| job.concurrent());
    let split = batch
        .iter()
        .position(|job| job.concurrent())
        .unwrap_or(batch.len());
    let (sequential, concurrent) = batch.split_at_mut(split);
    let mut tx = PgTx::write(&conn);
    let mut ok = true;
    for job in sequential.iter_mut() {
        if job.run(&mut tx).await.is_err() {
            ok = false;
            break;
        }
    }
    let mut after = Committed::default();
    let mut opened = tx.in_transaction();
    if ok && !concurrent.is_empty() {
        if !opened {
            ok = conn.batch_execute("BEGIN").await.is_ok();
            opened = ok;
        }
        if ok {
            let mut txs: Vec<PgTx<'_>> = concurrent.iter().map(|_| PgTx::within(&conn)).collect();
            let outcomes = futures_util::future::join_all(
                concurrent
                    .iter_mut()
                    .zip(txs.iter_mut())
                    .map(|(job, t)| job.run(t)),
            )
            .await;
            ok = outcomes.iter().all(Result::is_ok);
            for t in txs {
                after.absorb(t.after);
            }
        }
    }
    after.absorb(tx.after);
    let committed = ok && (!opened || conn.batch_execute("COMMIT").await.is_ok());
    if !committed {
        let clean = !opened || conn.batch_execute("ROLLBACK").await.is_ok();
        if !clean || conn.is_closed() {
            let _ = Object::take(conn);
        } else {
            drop(conn);
        }
        // Each on its own: its own transaction, its own reruns, its own answer.
        for job in batch {
            tokio::task::spawn_local(job.alone(store.clone()));
        }
        return;
    }
    after_commit::report(
        store.observer.as_deref(),
        &store.stats,
        batch.len(),
        started.elapsed(),
        &after,
    );
    if after.scrub {
        store.scrub(conn);
    }
    for job in batch {
        job.committed();
    }
}
