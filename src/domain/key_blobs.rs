//! The port through which sealed key material reaches a shared database. It lives in the
//! domain, beside `repository::Tx`, so that `keys` (which seals and opens the blobs) and
//! `store` (whose database keeps them) both depend on it and not on each other.

/// Raw (already sealed) blobs by name, with a cross-process lock: the database implements
/// it (`Store::key_blobs`). `keys::SealedStorage` seals every value before `put` and
/// opens it after `get`, so an implementation only ever sees ciphertext.
///
/// Every call may block (a database round trip): callers on an async runtime run them
/// through `tokio::task::spawn_blocking`.
pub trait BlobStore: Send + Sync + 'static {
    /// The blob stored under `name`, or `None` if there is none.
    fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Stores `sealed` under `name`, replacing any previous blob, atomically: a concurrent
    /// `get` sees the old blob or the new one, never a mix.
    fn put(&self, name: &str, sealed: &[u8]) -> anyhow::Result<()>;
    /// Runs `f` holding a lock exclusive across processes and machines (every `latchkey
    /// keys` change is a read-modify-write of the manifest under it). `f` calls `get` and
    /// `put` on this same store, so they must not wait for the lock. It is never taken
    /// again from inside `f` (need not be reentrant).
    fn with_lock(&self, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()>;
}
