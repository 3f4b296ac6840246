//! Per-account (and per-device) login failures in the shared database: the
//! `SharedFailures` port of `domain::throttle`, so every instance counts the same
//! failures (table `login_failures`, bounded per key, swept by housekeeping).

use crate::clock::Millis;
use crate::domain::throttle::SharedFailures;

use super::PgStore;

#[async_trait::async_trait]
impl SharedFailures for PgStore {
    async fn recent(&self, key: &str, since: Millis) -> anyhow::Result<(u32, Option<Millis>)> {
        let key = key.to_owned();
        self.run(async move |s: PgStore| {
            let conn = s.connection().await?;
            let st = conn
                .prepare_cached(
                    "SELECT count(*), min(at) FROM login_failures WHERE key = $1 AND at >= $2",
                )
                .await?;
            let row = conn.query_one(&st, &[&key, &since]).await?;
            let n: i64 = row.try_get(0)?;
            Ok((u32::try_from(n).unwrap_or(u32::MAX), row.try_get(1)?))
        })
        .await
    }

    async fn record(&self, key: &str, at: Millis, since: Millis, keep: u32) -> anyhow::Result<()> {
        let key = key.to_owned();
        self.run(async move |s: PgStore| {
            let conn = s.connection().await?;
            let insert = conn
                .prepare_cached("INSERT INTO login_failures (key, at) VALUES ($1, $2)")
                .await?;
            // Older than the hour, or beyond the newest `keep`: no longer counted.
            let trim = conn
                .prepare_cached(
                    "DELETE FROM login_failures WHERE key = $1 AND (at < $2 OR ctid IN (
                       SELECT ctid FROM login_failures WHERE key = $1
                       ORDER BY at DESC OFFSET $3))",
                )
                .await?;
            conn.execute(&insert, &[&key, &at]).await?;
            conn.execute(&trim, &[&key, &since, &i64::from(keep.max(1))])
                .await?;
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
