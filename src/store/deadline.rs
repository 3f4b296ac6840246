//! Store jobs have deadlines (docs/contract.md "Refresh rotation": `store.deadline`).
//!
//! A client that gave up on a request during a database stall retries it; if the
//! abandoned job committed later, the retry would meet its effect (a refresh would find
//! its own token rotated long ago and be taken for a thief). So every job carries a
//! [`Ticket`]: the caller stops waiting at the deadline and answers 503, and a job that
//! has not started by then never starts. Once a job has started it runs to its commit
//! (bounded on PostgreSQL by `lock_timeout`/`statement_timeout`) and its caller waits for
//! it, so an answer always tells the truth about what was written.
//!
//! The deadline counts from the request's arrival: `log_request` (the outermost
//! middleware) runs each request inside [`from_arrival`]. Work outside a request
//! (housekeeping, the CLI) counts from the call.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StoreError;

tokio::task_local! {
    static ARRIVAL: Instant;
}

/// Runs `f` (a request's handling) with its deadlines counted from `arrival`.
pub async fn from_arrival<F: Future>(arrival: Instant, f: F) -> F::Output {
    ARRIVAL.scope(arrival, f).await
}

/// When the current request arrived; now, outside a request.
fn arrival() -> Instant {
    ARRIVAL.try_with(|a| *a).unwrap_or_else(|_| Instant::now())
}

const WAITING: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

/// Shared by a job and its caller: which of the two moved first decides whether the job
/// runs (it started in time) or is dropped (its caller gave up first).
#[derive(Clone, Debug)]
pub struct Ticket {
    deadline: Instant,
    state: Arc<AtomicU8>,
}

impl Ticket {
    /// A ticket for a job of the current request (or of now), `budget` after arrival.
    pub fn after_arrival(budget: Duration) -> Self {
        Self::until(arrival() + budget)
    }

    pub fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            state: Arc::new(AtomicU8::new(WAITING)),
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The job's side, before it touches the database (and before each rerun): whether
    /// it may go on. `false` once the deadline has passed or the caller has gone.
    pub fn begin(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        match self
            .state
            .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(now) => now == STARTED,
        }
    }

    /// Whether the job could still start (a look, changing nothing).
    pub fn is_live(&self) -> bool {
        Instant::now() < self.deadline && self.state.load(Ordering::Acquire) != ABANDONED
    }

    /// The caller's side, at the deadline: `true` if the job will never run (the caller
    /// answers 503); `false` if it already started (the caller waits for its outcome).
    fn abandon(&self) -> bool {
        match self
            .state
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(now) => now == ABANDONED,
        }
    }

    /// Awaits `job`'s answer until the deadline; past it, a job that has not started is
    /// given up (`StoreError::DeadlinePassed`) and one that has is waited for.
    pub async fn wait<R>(
        &self,
        job: impl Future<Output = Result<R, StoreError>>,
    ) -> Result<R, StoreError> {
        let mut job = std::pin::pin!(job);
        match tokio::time::timeout_at(self.deadline.into(), &mut job).await {
            Ok(answer) => answer,
            Err(_) if self.abandon() => Err(StoreError::DeadlinePassed),
            Err(_) => job.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_that_starts_in_time_cannot_be_abandoned() {
        let t = Ticket::until(Instant::now() + Duration::from_secs(60));
        assert!(t.begin());
        assert!(!t.abandon());
        assert!(
            t.begin(),
            "a started job may run again (a rerun) while time is left"
        );
    }

    #[test]
    fn an_abandoned_job_never_starts() {
        let t = Ticket::until(Instant::now() + Duration::from_secs(60));
        assert!(t.abandon());
        assert!(!t.begin());
    }

    #[test]
    fn a_job_past_its_deadline_never_starts() {
        let t = Ticket::until(Instant::now() - Duration::from_millis(1));
        assert!(!t.begin());
        assert!(t.abandon());
    }

    #[tokio::test]
    async fn the_caller_gives_up_at_the_deadline_on_a_job_that_never_started() {
        let t = Ticket::until(Instant::now() + Duration::from_millis(20));
        let answer: Result<(), _> = t.wait(std::future::pending()).await;
        assert!(matches!(answer, Err(StoreError::DeadlinePassed)));
        assert!(!t.begin());
    }

    #[tokio::test]
    async fn the_caller_waits_past_the_deadline_for_a_job_that_started() {
        let t = Ticket::until(Instant::now() + Duration::from_millis(20));
        assert!(t.begin());
        let answer = t
            .wait(async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Ok(7)
            })
            .await;
        assert_eq!(answer.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_request_counts_its_deadline_from_its_arrival() {
        let arrived = Instant::now() - Duration::from_secs(3);
        let t = from_arrival(arrived, async {
            Ticket::after_arrival(Duration::from_secs(5))
        })
        .await;
        assert_eq!(t.deadline(), arrived + Duration::from_secs(5));
    }
}
