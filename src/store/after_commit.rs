//! What a write job leaves to do once its transaction has committed, and the one place
//! that reports it (both backends, single writes and group commits alike). A job that
//! failed, or a batch that rolled back, is never reported: its `Committed` is dropped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{StoreObserver, WriterStats};
use crate::domain::RevocationReason;

/// Collected by a backend's `Tx` while the job runs.
#[derive(Debug, Default)]
pub struct Committed {
    /// Sessions the job revoked, by reason (`SessionRepo::revoke_session`).
    pub revoked: Vec<RevocationReason>,
    /// Entries the job appended to the revocation log (revocations and erasures).
    pub logged: usize,
    /// The job erased personal data: the backend scrubs its files after the commit
    /// (`UserRepo::scrub_after_commit`).
    pub scrub: bool,
    /// Webhook deliveries the job queued (its events' outbox rows): the sender wakes.
    pub deliveries: usize,
}

impl Committed {
    /// A session revoked: counted by reason, and one entry in the log.
    pub fn revoked(&mut self, reason: RevocationReason) {
        self.revoked.push(reason);
        self.logged += 1;
    }

    /// Adds another job's to this one (jobs sharing one commit).
    pub fn absorb(&mut self, other: Committed) {
        self.revoked.extend(other.revoked);
        self.logged += other.logged;
        self.scrub |= other.scrub;
        self.deliveries += other.deliveries;
    }
}

/// A commit of `writes` jobs that took `took`: counted in `stats`, and told to the
/// observer with everything the jobs collected. Call only after COMMIT succeeded.
pub fn report(
    observer: Option<&dyn StoreObserver>,
    stats: &WriterStats,
    writes: usize,
    took: Duration,
    committed: &Committed,
) {
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.writes.fetch_add(writes as u64, Ordering::Relaxed);
    stats
        .commit_micros
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    let Some(o) = observer else { return };
    o.batch_committed(writes, took);
    for reason in &committed.revoked {
        o.sessions_revoked(*reason, 1);
    }
    if committed.logged > 0 {
        o.revocations_logged(committed.logged);
    }
    if committed.deliveries > 0 {
        o.deliveries_queued(committed.deliveries);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::domain::model::{Session, User};
    use crate::domain::{AuthMethod, Scope, SessionId, UserId};
    use crate::store::Store;

    /// What the observer heard: batch sizes, revocations, log entries.
    #[derive(Default)]
    struct Heard(Mutex<(Vec<usize>, usize, usize)>);

    impl StoreObserver for Heard {
        fn batch_committed(&self, writes: usize, _took: Duration) {
            self.0.lock().unwrap().0.push(writes);
        }
        fn sessions_revoked(&self, _reason: RevocationReason, n: usize) {
            self.0.lock().unwrap().1 += n;
        }
        fn revocations_logged(&self, n: usize) {
            self.0.lock().unwrap().2 += n;
        }
    }

    fn session(id: &SessionId, user_id: &UserId) -> Session {
        Session {
            id: id.clone(),
            user_id: user_id.clone(),
            client_id: "c".into(),
            scope: Scope::default(),
            remember_me: false,
            created_at: 1,
            last_active_at: 1,
            idle_expires_at: i64::MAX,
            expires_at: i64::MAX,
            ip: None,
            user_agent: None,
            revoked_at: None,
            revoked_reason: None,
            head_generation: 0,
            head_issued_at: 1,
            head_hash: None,
            sealed_head: None,
            amr: vec![AuthMethod::Pwd],
            auth_time: 1,
        }
    }

    #[tokio::test]
    async fn a_write_that_fails_after_revoking_is_neither_counted_nor_reported() {
        let dir = tempfile::tempdir().unwrap();
        let heard = Arc::new(Heard::default());
        let store = Store::open_observed(&dir.path().join("s.db"), 1, Some(heard.clone())).unwrap();
        let (uid, sid) = (UserId::new_random(), SessionId::new_random());
        let (u, s) = (uid.clone(), sid.clone());
        store
            .write(async move |tx| {
                let user = User {
                    id: u.clone(),
                    username: "u".into(),
                    password_hash: "h".into(),
                    roles: vec![],
                    created_at: 1,
                    disabled_at: None,
                };
                tx.insert_user(&user, "u", "u").await?;
                tx.insert_session(&session(&s, &u)).await
            })
            .await
            .unwrap();
        let batches_before = store.stats().batches.load(Ordering::Relaxed);

        let s = sid.clone();
        let failed = store
            .write(async move |tx| {
                let revoked = tx.revoke_session(&s, 2, RevocationReason::Admin).await?;
                anyhow::ensure!(revoked, "the session was live");
                Err::<(), _>(anyhow::anyhow!("the job fails after its revocation"))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            *heard.0.lock().unwrap(),
            (vec![1], 0, 0),
            "nothing reported"
        );
        assert_eq!(
            store.stats().batches.load(Ordering::Relaxed),
            batches_before,
            "a batch whose only job rolled back is not counted"
        );

        let revoked = store
            .write(async move |tx| tx.revoke_session(&sid, 3, RevocationReason::Admin).await)
            .await
            .unwrap();
        assert!(revoked, "the failed job's revocation rolled back");
        assert_eq!(*heard.0.lock().unwrap(), (vec![1, 1], 1, 1));
    }
}
