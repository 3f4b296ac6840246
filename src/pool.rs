//! Bounded pools of dedicated threads for blocking work (argon2, SQLite reads), so it
//! never runs on the async workers. Each thread owns a context (a connection, say);
//! a full queue is refused at once rather than growing without bound.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Sender, TrySendError};
use tokio::sync::oneshot;

type Job<C> = Box<dyn FnOnce(&mut C) + Send>;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the {0} queue is full")]
    Full(&'static str),
    #[error("the {0} pool has stopped")]
    Stopped(&'static str),
    #[error("a {0} job panicked")]
    Panicked(&'static str),
}

pub struct WorkerPool<C> {
    name: &'static str,
    tx: Sender<Job<C>>,
    queued: Arc<AtomicUsize>,
}

impl<C> Clone for WorkerPool<C> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            tx: self.tx.clone(),
            queued: self.queued.clone(),
        }
    }
}

impl<C: 'static> WorkerPool<C> {
    /// Starts one thread per context; at most `capacity` jobs wait.
    pub fn start(name: &'static str, contexts: Vec<C>, capacity: usize) -> std::io::Result<Self>
    where
        C: Send,
    {
        Self::start_with(name, contexts, capacity, || {})
    }

    /// [`WorkerPool::start`], running `init` first on each new thread (to set its
    /// scheduling priority, say).
    pub fn start_with(
        name: &'static str,
        contexts: Vec<C>,
        capacity: usize,
        init: fn(),
    ) -> std::io::Result<Self>
    where
        C: Send,
    {
        let (tx, rx) = bounded::<Job<C>>(capacity);
        let queued = Arc::new(AtomicUsize::new(0));
        for (i, mut ctx) in contexts.into_iter().enumerate() {
            let rx = rx.clone();
            let queued = queued.clone();
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    init();
                    while let Ok(job) = rx.recv() {
                        queued.fetch_sub(1, Ordering::Relaxed);
                        job(&mut ctx);
                    }
                })?;
        }
        Ok(Self { name, tx, queued })
    }

    /// Jobs waiting for a thread (a gauge for metrics).
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub async fn run<R, F>(&self, f: F) -> Result<R, PoolError>
    where
        F: FnOnce(&mut C) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job<C> = Box::new(move |ctx: &mut C| {
            let out = catch_unwind(AssertUnwindSafe(|| f(ctx)));
            let _ = reply.send(out);
        });
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(PoolError::Full(self.name));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(PoolError::Stopped(self.name));
            }
        }
        match answer.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(PoolError::Panicked(self.name)),
            Err(_) => Err(PoolError::Stopped(self.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_pool_threads_with_their_context() {
        let pool = WorkerPool::start("t", vec![10u32, 10u32], 8).unwrap();
        let r = pool.run(|c| *c + 1).await.unwrap();
        assert_eq!(r, 11);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_dead_pool() {
        let pool = WorkerPool::start("t", vec![()], 8).unwrap();
        let r = pool.run(|_| -> u8 { panic!("boom") }).await;
        assert!(matches!(r, Err(PoolError::Panicked(_))));
        assert_eq!(pool.run(|_| 7).await.unwrap(), 7);
    }
}
