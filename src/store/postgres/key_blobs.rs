//! Key material in the database (`key_blobs`): the `BlobStore` behind the sealed key
//! storage (`keys::storage`). It only ever sees ciphertext; the KEK stays with the
//! instances. Called from blocking threads (key loads, reloads, the CLI), so each call
//! hands a job to the store's threads and waits.

use crate::domain::key_blobs::BlobStore;

use super::PgStore;

/// The session advisory lock every key change is made under ("lk" "ky"): two
/// `latchkey keys …` commands, or two instances generating the first key, on any
/// machines, take turns.
const KEYS_LOCK: i64 = 0x6c6b_6b79;

pub struct PgBlobs(pub(super) PgStore);

impl BlobStore for PgBlobs {
    fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.0.run_blocking(async move |s: PgStore| {
            let conn = s.connection().await?;
            let row = conn
                .query_opt("SELECT sealed FROM key_blobs WHERE name = $1", &[&name])
                .await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }

    fn put(&self, name: &str, sealed: &[u8]) -> anyhow::Result<()> {
        let (name, sealed) = (name.to_owned(), sealed.to_vec());
        self.0.run_blocking(async move |s: PgStore| {
            let conn = s.connection().await?;
            let now = chrono::Utc::now().timestamp_millis();
            conn.execute(
                "INSERT INTO key_blobs (name, sealed, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed,
                     updated_at = excluded.updated_at",
                &[&name, &sealed, &now],
            )
            .await?;
            Ok(())
        })
    }

    fn with_lock(&self, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
        // The lock lives on a connection of its own, held for the whole change; `f`'s
        // reads and writes use other connections and never wait on it.
        let conn = self.0.run_blocking(async |s: PgStore| {
            let conn = s.connection().await?;
            conn.execute("SELECT pg_advisory_lock($1)", &[&KEYS_LOCK])
                .await?;
            Ok(conn)
        })?;
        let guard = Unlock(Some(conn));
        let out = f();
        guard.release(&self.0);
        out
    }
}

/// Releases the key lock; if `f` panicked, closes the connection instead (PostgreSQL
/// drops a session's advisory locks with it), so the pool never hands out a
/// connection still holding the lock.
struct Unlock(Option<deadpool_postgres::Object>);

impl Unlock {
    fn release(mut self, store: &PgStore) {
        if let Some(conn) = self.0.take() {
            let unlocked = store.run_blocking(async move |_| {
                conn.execute("SELECT pg_advisory_unlock($1)", &[&KEYS_LOCK])
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let _ = deadpool_postgres::Object::take(conn);
                        anyhow::Error::from(e)
                    })
            });
            if let Err(e) = unlocked {
                tracing::warn!(error = %e, "cannot release the key lock; its connection is closed");
            }
        }
    }
}

impl Drop for Unlock {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            let _ = deadpool_postgres::Object::take(conn);
        }
    }
}
