//! Where key material lives. Everything in `keys` that reads or writes a key, the
//! manifest or a secret goes through [`KeyStorage`], so the same code serves both
//! deployments:
//!
//! - [`DirStorage`]: the keys folder (`keys.dir`, SQLite deployments): one file per name,
//!   written atomically (a synced temporary file renamed over the target), private
//!   material mode 0600, changes under an exclusive lock on `.lock`.
//! - [`SealedStorage`]: the shared database (PostgreSQL). Every value is sealed with
//!   AES-256-GCM under the key-encryption key ([`Kek`], `keys.kek_file`, never in the
//!   database) and handed to a [`BlobStore`] as ciphertext. The associated data is a fixed
//!   label and the value's name, so a row copied over another (an old manifest over the
//!   new one, one key's row under another kid) does not open.
//!
//! Every call may block (a file system or database round trip): code on an async runtime
//! runs them through `tokio::task::spawn_blocking`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};

use super::atomic_file::write_atomically;
use super::kek::Kek;
pub use crate::domain::key_blobs::BlobStore;

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

/// The keys folder: one file per name in `dir`.
pub struct DirStorage {
    dir: PathBuf,
}

impl DirStorage {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The refresh seal key's name (`keys::Sealer`).
pub(super) const SEAL_KEY_FILE: &str = "refresh-seal.key";
/// The device token key's name (`keys::DeviceKey`).
pub(super) const DEVICE_KEY_FILE: &str = "device-token.key";

/// Files whose mode [`DirStorage::loose_permissions`] checks: private key material.
fn is_private(name: &str) -> bool {
    name.ends_with(".pem") || name == SEAL_KEY_FILE || name == DEVICE_KEY_FILE
}

impl KeyStorage for DirStorage {
    fn describe(&self) -> String {
        format!("keys folder {}", self.dir.display())
    }

    fn locate(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        check_name(name)?;
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn write(&self, name: &str, bytes: &[u8], private: bool) -> anyhow::Result<()> {
        check_name(name)?;
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        write_atomically(
            &self.dir.join(name),
            bytes,
            if private { 0o600 } else { 0o644 },
        )
    }

    /// An exclusive `flock` on `dir/.lock`, released when the file closes.
    fn with_lock(&self, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let lock_path = self.dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        f()
        // The lock is released when `lock` drops.
    }

    fn loose_permissions(&self) -> Vec<(String, u32)> {
        let mut loose = Vec::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let Ok(entries) = fs::read_dir(&self.dir) else {
                return loose;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !is_private(&name.to_string_lossy()) {
                    continue;
                }
                if let Ok(meta) = entry.metadata() {
                    let mode = meta.permissions().mode() & 0o777;
                    if meta.is_file() && mode & 0o077 != 0 {
                        loose.push((entry.path().display().to_string(), mode));
                    }
                }
            }
            loose.sort();
        }
        loose
    }
}

/// The first byte of every sealed value: the format (nonce ‖ ciphertext ‖ tag under the
/// KEK, AAD below). A later format (another KEK scheme) gets another number.
const SEALED_V1: u8 = 1;
/// The associated data's fixed part; the value's name follows it. A new use of the KEK
/// gets a new label, never this one.
const AAD_LABEL: &[u8] = b"latchkey key storage v1\0";

/// Key material sealed under the KEK in a [`BlobStore`] (the shared database).
pub struct SealedStorage {
    key: aead::LessSafeKey,
    kek_file: PathBuf,
    blobs: Arc<dyn BlobStore>,
    rng: SystemRandom,
}

impl SealedStorage {
    pub fn new(kek: Kek, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            key: kek.aead_key(),
            kek_file: kek.path().to_owned(),
            blobs,
            rng: SystemRandom::new(),
        }
    }

    fn aad(name: &str) -> Vec<u8> {
        let mut aad = AAD_LABEL.to_vec();
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    /// `1 ‖ nonce (96 random bits) ‖ AES-256-GCM(KEK, plain, AAD = label ‖ name) ‖ tag`.
    fn seal(&self, name: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow!("CSPRNG failed"))?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(Self::aad(name)),
                &mut buf,
            )
            .map_err(|_| anyhow!("sealing {name} failed"))?;
        let mut out = Vec::with_capacity(1 + nonce.len() + buf.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(&self, name: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        let refused = || {
            anyhow!(
                "the key-encryption key in {} does not open the keys in the database \
                 ({name} was sealed under another key-encryption key, or altered)",
                self.kek_file.display()
            )
        };
        let Some((&SEALED_V1, rest)) = sealed.split_first() else {
            bail!("{name} in the database is not a sealed value this latchkey knows");
        };
        if rest.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(refused());
        }
        let (nonce, ct) = rest.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, aead::Aad::from(Self::aad(name)), &mut buf)
            .map_err(|_| refused())?;
        Ok(plain.to_vec())
    }
}

impl KeyStorage for SealedStorage {
    fn describe(&self) -> String {
        "the database".into()
    }

    fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        check_name(name)?;
        match self.blobs.get(name)? {
            Some(sealed) => self.open(name, &sealed).map(Some),
            None => Ok(None),
        }
    }

    /// Every value is sealed, public or not: the manifest too, so the database alone
    /// does not even say which keys exist.
    fn write(&self, name: &str, bytes: &[u8], _private: bool) -> anyhow::Result<()> {
        check_name(name)?;
        let sealed = self.seal(name, bytes)?;
        self.blobs.put(name, &sealed)
    }

    fn with_lock(&self, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.blobs.with_lock(f)
    }
}

/// A [`BlobStore`] in memory, for tests: what a database would hold, in one process.
#[derive(Default)]
pub struct MemoryBlobs {
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    lock: Mutex<()>,
}

impl MemoryBlobs {
    /// Every blob, by name (what `store copy` writes into the database).
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<_> = self
            .blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort();
        all
    }
}

impl BlobStore for MemoryBlobs {
    fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned())
    }

    fn put(&self, name: &str, sealed: &[u8]) -> anyhow::Result<()> {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), sealed.to_vec());
        Ok(())
    }

    fn with_lock(&self, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }
}

/// Test storages: the keys suites run over both.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

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
    fn sealed_values_round_trip_and_the_blob_store_sees_only_ciphertext() {
        let (storage, blobs) = sealed_with_blobs();
        assert_eq!(storage.read("manifest.json").unwrap(), None);
        storage
            .write("manifest.json", b"{\"keys\":[]}", false)
            .unwrap();
        storage.write("k1.pem", b"PRIVATE KEY k1", true).unwrap();
        assert_eq!(
            storage.read("manifest.json").unwrap().unwrap(),
            b"{\"keys\":[]}"
        );
        assert_eq!(storage.read("k1.pem").unwrap().unwrap(), b"PRIVATE KEY k1");
        let raw = blobs.get("k1.pem").unwrap().unwrap();
        assert_eq!(raw[0], SEALED_V1);
        assert!(!raw.windows(11).any(|w| w == b"PRIVATE KEY"));
        // A replacement replaces.
        storage.write("k1.pem", b"another", true).unwrap();
        assert_eq!(storage.read("k1.pem").unwrap().unwrap(), b"another");
        assert_eq!(storage.describe(), "the database");
        assert!(storage.loose_permissions().is_empty());
    }

    #[test]
    fn another_kek_is_refused_with_one_clear_line_naming_its_file() {
        let blobs = Arc::new(MemoryBlobs::default());
        let right = SealedStorage::new(Kek::random_for_tests(), blobs.clone());
        right.write("refresh-seal.key", &[7; 32], true).unwrap();
        let wrong = SealedStorage::new(
            Kek::from_bytes([9; 32], PathBuf::from("/etc/latchkey/kek")),
            blobs,
        );
        let err = format!("{:#}", wrong.read("refresh-seal.key").unwrap_err());
        assert_eq!(
            err,
            "the key-encryption key in /etc/latchkey/kek does not open the keys in the \
             database (refresh-seal.key was sealed under another key-encryption key, or \
             altered)"
        );
        assert!(!err.contains('\n'));
        // The secret helper reports it too instead of making a new secret over it.
        let err = secret(&wrong, "refresh-seal.key").unwrap_err().to_string();
        assert!(
            err.contains("does not open the keys in the database"),
            "{err}"
        );
    }

    #[test]
    fn a_blob_moved_to_another_name_is_refused() {
        let (storage, blobs) = sealed_with_blobs();
        storage.write("old.pem", b"old key", true).unwrap();
        storage.write("new.pem", b"new key", true).unwrap();
        storage.write("manifest.json", b"v1", false).unwrap();
        let v1 = blobs.get("manifest.json").unwrap().unwrap();
        storage.write("manifest.json", b"v2", false).unwrap();
        // Swapping two rows: each opens only under its own name.
        let old = blobs.get("old.pem").unwrap().unwrap();
        blobs.put("new.pem", &old).unwrap();
        let err = storage.read("new.pem").unwrap_err().to_string();
        assert!(
            err.contains("does not open") && err.contains("new.pem"),
            "{err}"
        );
        // Copying a key row over the manifest: refused too.
        blobs.put("manifest.json", &old).unwrap();
        assert!(storage.read("manifest.json").is_err());
        // (Putting back an older value of the same name is a rollback the AAD cannot
        // see: the database's own access control is what prevents it.)
        blobs.put("manifest.json", &v1).unwrap();
        assert_eq!(storage.read("manifest.json").unwrap().unwrap(), b"v1");
    }

    #[test]
    fn tampered_or_truncated_ciphertext_is_refused() {
        let (storage, blobs) = sealed_with_blobs();
        storage
            .write("k.pem", b"secret key material", true)
            .unwrap();
        let sealed = blobs.get("k.pem").unwrap().unwrap();
        for i in [1, 1 + aead::NONCE_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            blobs.put("k.pem", &bad).unwrap();
            let err = storage.read("k.pem").unwrap_err().to_string();
            assert!(err.contains("does not open"), "byte {i}: {err}");
        }
        for len in [0, 1, 12, 28] {
            blobs.put("k.pem", &sealed[..len]).unwrap();
            assert!(storage.read("k.pem").is_err(), "{len} bytes");
        }
        let mut other_version = sealed.clone();
        other_version[0] = 2;
        blobs.put("k.pem", &other_version).unwrap();
        let err = storage.read("k.pem").unwrap_err().to_string();
        assert!(err.contains("not a sealed value"), "{err}");
    }

    #[test]
    fn every_write_draws_a_fresh_nonce() {
        let (storage, blobs) = sealed_with_blobs();
        storage.write("a", b"same", false).unwrap();
        let first = blobs.get("a").unwrap().unwrap();
        storage.write("a", b"same", false).unwrap();
        let second = blobs.get("a").unwrap().unwrap();
        assert_ne!(
            first[1..1 + aead::NONCE_LEN],
            second[1..1 + aead::NONCE_LEN]
        );
        assert_ne!(first, second);
    }

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

    #[cfg(unix)]
    #[test]
    fn the_folder_keeps_its_file_names_modes_and_lock_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let storage = DirStorage::new(&dir);
        assert_eq!(storage.describe(), format!("keys folder {}", dir.display()));
        locked(&storage, || {
            storage.write("manifest.json", b"{}", false)?;
            storage.write("k.pem", b"pem", true)
        })
        .unwrap();
        let mode = |n: &str| fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("manifest.json"), 0o644);
        assert_eq!(mode("k.pem"), 0o600);
        assert!(dir.join(".lock").exists());
        assert_eq!(fs::read(dir.join("k.pem")).unwrap(), b"pem");
        assert!(storage.loose_permissions().is_empty());
        fs::set_permissions(dir.join("k.pem"), fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            storage.loose_permissions(),
            vec![(dir.join("k.pem").display().to_string(), 0o640)]
        );
    }
}
