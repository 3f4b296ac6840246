//! Per-account (and per-device) login failures in the shared database: the
//! `SharedFailures` port of `domain::throttle`, so every instance counts the same
//! failures (table `login_failures`, bounded per key, swept by housekeeping).

use crate::clock::Millis;
use crate::domain::throttle::{Reservation, SharedFailures};

use super::PgStore;

/// The advisory-lock class of login-failure reservations ("lk" "lf"); the key within it
/// is the hash of the throttling key.
const FAILURES_LOCK_CLASS: i32 = 0x6c6b_6c66;

#[async_trait::async_trait]
impl SharedFailures for PgStore {
    async fn reserve(
        &self,
        key: &str,
        at: Millis,
        since: Millis,
        limit: u32,
    ) -> anyhow::Result<Reservation> {
        let key = key.to_owned();
        self.run(async move |s: PgStore| {
            let mut conn = s.connection().await?;
            let tx = conn.transaction().await?;
            // One key's reservations take turns (a transaction-scoped advisory lock in
            // a class of its own), so two instances never both see the last free place.
            let lock = tx
                .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .await?;
            tx.execute(&lock, &[&FAILURES_LOCK_CLASS, &key]).await?;
            let count = tx
                .prepare_cached(
                    "SELECT count(*), min(at) FROM login_failures WHERE key = $1 AND at >= $2",
                )
                .await?;
            let row = tx.query_one(&count, &[&key, &since]).await?;
            let n: i64 = row.try_get(0)?;
            if n >= i64::from(limit) {
                let oldest: Option<Millis> = row.try_get(1)?;
                tx.commit().await?;
                return Ok(Reservation::Full {
                    oldest: oldest.unwrap_or(at),
                });
            }
            let insert = tx
                .prepare_cached("INSERT INTO login_failures (key, at) VALUES ($1, $2)")
                .await?;
            // Older than the hour, or beyond the newest `limit`: no longer counted.
            let trim = tx
                .prepare_cached(
                    "DELETE FROM login_failures WHERE key = $1 AND (at < $2 OR ctid IN (
                       SELECT ctid FROM login_failures WHERE key = $1
                       ORDER BY at DESC OFFSET $3))",
                )
                .await?;
            tx.execute(&insert, &[&key, &at]).await?;
            tx.execute(&trim, &[&key, &since, &i64::from(limit.max(1))])
                .await?;
            tx.commit().await?;
            Ok(Reservation::Reserved)
        })
        .await
    }

    async fn release(&self, key: &str, at: Millis) -> anyhow::Result<()> {
        let key = key.to_owned();
        self.run(async move |s: PgStore| {
            let conn = s.connection().await?;
            // Any one row of the key at that time: rows carry nothing else to tell apart.
            let st = conn
                .prepare_cached(
                    "DELETE FROM login_failures WHERE ctid = (
                       SELECT ctid FROM login_failures WHERE key = $1 AND at = $2 LIMIT 1)",
                )
                .await?;
            conn.execute(&st, &[&key, &at]).await?;
            Ok(())
        })
        .await
    }

    async fn clear(&self, key: &str) -> anyhow::Result<()> {
        let key = key.to_owned();
        self.run(async move |s: PgStore| {
            let conn = s.connection().await?;
            let st = conn
                .prepare_cached("DELETE FROM login_failures WHERE key = $1")
                .await?;
            conn.execute(&st, &[&key]).await?;
            Ok(())
        })
        .await
    }

    async fn prune(&self, before: Millis, limit: u32) -> anyhow::Result<usize> {
        self.run(async move |s: PgStore| {
            let conn = s.connection().await?;
            let n = conn
                .execute(
                    "DELETE FROM login_failures WHERE ctid IN (
                       SELECT ctid FROM login_failures WHERE at < $1 LIMIT $2)",
                    &[&before, &i64::from(limit)],
                )
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
        .await
    }
}
