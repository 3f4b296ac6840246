//! Where key material lives. Everything in `keys` that reads or writes a key, the
//! manifest or a secret goes through [`KeyStorage`], so the same code serves both
//! deployments:
//!
//! - [`DirStorage`]: the keys folder (`keys.dir`, SQLite deployments): one file per name,
//!   written atomically (a synced temporary file renamed over the target), private
//!   material mode 0600, changes under an exclusive lock on `.lock`.
//! - [`SealedStorage`]: the shared database (PostgreSQL). Every value is sealed with
//!   AES-256-GCM under the key-encryption key ([`Kek`](super::Kek), `keys.kek_file`,
//!   never in the database) and handed to a [`BlobStore`] as ciphertext. The associated
//!   data is a fixed label and the value's name, so a row copied over another (an old
//!   manifest over the new one, one key's row under another kid) does not open.
//!
//! Every call may block (a file system or database round trip): code on an async runtime
//! runs them through `tokio::task::spawn_blocking`.
//!
//! - `dir`: [`DirStorage`], the keys folder;
//! - `sealed`: [`SealedStorage`], sealing and opening under the KEK;
//! - `memory`: [`MemoryBlobs`], a [`BlobStore`] held in memory.

mod dir;
mod memory;
mod sealed;

use anyhow::{anyhow, bail};
use ring::rand::{SecureRandom, SystemRandom};

pub use crate::domain::key_blobs::BlobStore;
pub use dir::DirStorage;
pub use memory::MemoryBlobs;
pub use sealed::SealedStorage;

/// Where key material lives: the keys folder (SQLite deployments) or sealed rows in the
/// shared database.
pub trait KeyStorage: Send + Sync + 'static {
    /// For messages ("keys folder ./keys", "the database").
    fn describe(&self) -> String;
    /// How messages name one value: its path in a folder, "NAME in the database".
    fn locate(&self, name: &str) -> String {
        format!("{name} in {}", self.describe())
    }
    /// The value stored under `name`, `None` if there is none.
    fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Replaces `name` atomically. `private`: key material (files 0600).
    fn write(&self, name: &str, bytes: &[u8], private: bool) -> anyhow::Result<()>;
    /// Runs `f` holding a lock exclusive across processes and machines (manifest
    /// read-modify-write). Not reentrant: `f` reads and writes but never locks again.
    /// [`locked`] is the form that returns a value.
    fn with_lock(&self, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()>;
    /// Stored private key material that group or others may read or write, with its
    /// mode: a copy, restore or `chmod` may have widened a folder's 0600. Nothing for a
    /// database (its values are sealed).
    fn loose_permissions(&self) -> Vec<(String, u32)> {
        Vec::new()
    }
}

/// [`KeyStorage::with_lock`] for a change that returns a value.
pub fn locked<T>(
    storage: &dyn KeyStorage,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut f = Some(f);
    let mut out = None;
    storage.with_lock(&mut || {
        if let Some(f) = f.take() {
            out = Some(f()?);
        }
        Ok(())
    })?;
    out.ok_or_else(|| anyhow!("{} did not run the change", storage.describe()))
}

/// Names are plain file names (`manifest.json`, `<kid>.pem`, `refresh-seal.key`): never
/// a path, never a dot file (the lock and temporary files are not key material).
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name.starts_with('.') {
        bail!("{name:?} is not a plain key name");
    }
    Ok(())
}

/// The 32 random bytes stored under `name` (`refresh-seal.key`, `device-token.key`),
/// made from the OS CSPRNG on first use. Made under the storage's lock, re-reading
/// first, so two instances starting together on one database agree on one secret.
pub(super) fn secret(storage: &dyn KeyStorage, name: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = match storage.read(name)? {
        Some(bytes) => bytes,
        None => locked(storage, || {
            if let Some(bytes) = storage.read(name)? {
                return Ok(bytes);
            }
            let mut bytes = vec![0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| anyhow!("CSPRNG failed"))?;
            storage.write(name, &bytes, true)?;
            Ok(bytes)
        })?,
    };
    bytes
        .try_into()
        .map_err(|_| anyhow!("{} must hold exactly 32 bytes", storage.locate(name)))
}

/// The refresh seal key's name (`keys::Sealer`).
pub(super) const SEAL_KEY_FILE: &str = "refresh-seal.key";
/// The device token key's name (`keys::DeviceKey`).
pub(super) const DEVICE_KEY_FILE: &str = "device-token.key";

/// Test storages: the keys suites run over both.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use super::*;
    use crate::keys::kek::Kek;

    /// A keys folder in a fresh temporary directory (kept alive by the second value).
    pub(crate) fn dir() -> (Arc<dyn KeyStorage>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        (Arc::new(DirStorage::new(tmp.path())), tmp)
    }

    /// Sealed storage over fresh in-memory blobs, under a random KEK.
    pub(crate) fn sealed() -> (Arc<dyn KeyStorage>, tempfile::TempDir) {
        let (storage, _) = sealed_with_blobs();
        (storage, tempfile::tempdir().unwrap())
    }

    pub(crate) fn sealed_with_blobs() -> (Arc<dyn KeyStorage>, Arc<MemoryBlobs>) {
        let blobs = Arc::new(MemoryBlobs::default());
        (
            Arc::new(SealedStorage::new(Kek::random_for_tests(), blobs.clone())),
            blobs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::sealed_with_blobs;
    use super::*;

    #[test]
    fn names_are_plain_names_in_both_storages() {
        let (sealed, _) = sealed_with_blobs();
        let tmp = tempfile::tempdir().unwrap();
        let dir = DirStorage::new(tmp.path());
        for storage in [&dir as &dyn KeyStorage, sealed.as_ref()] {
            for bad in ["", "../x", "a/b", ".lock", "a\\b"] {
                assert!(storage.read(bad).is_err(), "{bad:?}");
                assert!(storage.write(bad, b"x", true).is_err(), "{bad:?}");
            }
        }
    }

    #[test]
    fn a_secret_is_made_once_and_kept() {
        for (storage, _tmp) in [testing::dir(), testing::sealed()] {
            let a = secret(storage.as_ref(), "refresh-seal.key").unwrap();
            let b = secret(storage.as_ref(), "refresh-seal.key").unwrap();
            assert_eq!(a, b);
            storage.write("short.key", &[1; 31], true).unwrap();
            let err = secret(storage.as_ref(), "short.key")
                .unwrap_err()
                .to_string();
            assert!(err.contains("must hold exactly 32 bytes"), "{err}");
        }
    }
}
