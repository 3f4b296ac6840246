//! Where PostgreSQL jobs run. A store job's future is not `Send` (the domain's `Tx` port
//! is `?Send`, like SQLite's connections), yet callers await `Store::write` from
//! anywhere, `tokio::spawn`ed tasks included. So, like the SQLite writer thread, jobs
//! are handed to a few threads of our own, each a single-threaded tokio runtime with a
//! `LocalSet`; many jobs interleave on each while they wait on the database. The pool's
//! connection tasks live on these runtimes too, off the HTTP workers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use tokio::sync::mpsc;

type LocalJob = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

#[derive(Clone)]
pub struct Executor {
    lanes: Arc<Vec<mpsc::UnboundedSender<LocalJob>>>,
    next: Arc<AtomicUsize>,
}

impl Executor {
    pub fn start(threads: usize) -> anyhow::Result<Self> {
        let mut lanes = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, mut rx) = mpsc::unbounded_channel::<LocalJob>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            thread::Builder::new()
                .name(format!("pg-{i}"))
                .spawn(move || {
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&runtime, async move {
                        while let Some(job) = rx.recv().await {
                            tokio::task::spawn_local(job());
                        }
                    });
                })?;
            lanes.push(tx);
        }
        Ok(Self {
            lanes: Arc::new(lanes),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs `make()`'s future on one of the threads; `false` if they have stopped.
    pub fn spawn<F, Fut>(&self, make: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        let job: LocalJob = Box::new(move || Box::pin(make()));
        self.lanes[lane].send(job).is_ok()
    }
}
