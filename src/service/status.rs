//! The instance's own health: readiness for `/readyz` and the gauges `/metrics` reads
//! at scrape time.

use std::sync::atomic::Ordering;

use super::Error;
use crate::clock::Millis;
use crate::keys::{KeyState, Keys};
use crate::metrics::Metrics;
use crate::passwords::PasswordHasher;
use crate::store::Store;

/// How long the active-sessions count (a table scan) is reused between scrapes.
const ACTIVE_SESSIONS_REFRESH_MS: i64 = 15_000;

/// What readiness depends on.
pub struct Readiness {
    /// The store completed a read and a write in time.
    pub store: bool,
    /// A signing key is active.
    pub signing_key: bool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.store && self.signing_key
    }
}

/// A stalled writer or a locked table is not ready, though the connection is fine.
#[tracing::instrument(skip_all)]
pub async fn readiness(store: &Store, keys: &Keys, now: Millis) -> Readiness {
    let store = store.probe().await.is_ok();
    let signing_key = keys
        .current(now)
        .entries
        .iter()
        .any(|(_, s)| *s == KeyState::Active);
    Readiness { store, signing_key }
}

/// What the scrape-time gauges read.
pub struct Observed<'a> {
    pub metrics: &'a Metrics,
    pub store: &'a Store,
    pub keys: &'a Keys,
    pub hasher: &'a PasswordHasher,
}

/// Brings the scrape-time gauges up to date (the active-sessions count at most every
/// 15 s) and renders every metric in the Prometheus text format.
#[tracing::instrument(skip_all)]
pub async fn metrics_text(o: Observed<'_>, now: Millis) -> Result<String, Error> {
    let m = o.metrics;
    let last = m.active_sessions_counted_at.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= ACTIVE_SESSIONS_REFRESH_MS || now < last {
        m.active_sessions_counted_at.store(now, Ordering::Relaxed);
        let active = o
            .store
            .read(async move |tx| tx.count_active_sessions(now).await)
            .await?;
        m.active_sessions.set(active);
    }
    let keys = o.keys.current(now);
    if let Some((entry, _)) = keys.entries.iter().find(|(e, _)| e.kid == keys.signing.kid) {
        let age_ms = now.saturating_sub(entry.signs_from.timestamp_millis());
        m.signing_key_age.set(age_ms.max(0) as f64 / 1000.0);
    }
    m.argon2_queue_depth
        .set(i64::try_from(o.hasher.queue_depth()).unwrap_or(i64::MAX));
    // The outbox is shared by every instance: each reports the same depth and age.
    let (pending, oldest) = o
        .store
        .read(async move |tx| tx.webhook_queue().await)
        .await?;
    m.webhook_queue_depth.set(pending);
    let age_ms = oldest.map_or(0, |at| now.saturating_sub(at).max(0));
    m.webhook_oldest_pending.set(age_ms as f64 / 1000.0);
    m.render().map_err(Error::Internal)
}
