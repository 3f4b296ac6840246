//! The key set in memory: `Keys` holds the key storage, the parsed keys and the set in force;
//! `KeySet` is one snapshot of it (signing key, published keys, pre-serialized JWKS and
//! its ETag), rebuilt when the manifest changes or a key's state is due to change.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::bail;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use super::manifest::{read_manifest_bytes, with_locked_manifest, KeyEntry, KeyState, Manifest};
use super::pem::{generate_key, load_key_file};
use super::storage::{DirStorage, KeyStorage};
use super::{Jwk, SigningKey};
use crate::clock::Millis;
use crate::domain::Algorithm;

/// The keys in force at one moment, with the JWKS pre-serialized.
pub struct KeySet {
    pub signing: Arc<SigningKey>,
    by_kid: HashMap<String, Arc<SigningKey>>,
    /// When each published key retired (or is due to), in ms.
    retired_at: HashMap<String, Millis>,
    pub jwks: Vec<u8>,
    pub etag: String,
    pub entries: Vec<(KeyEntry, KeyState)>,
    /// This set is exact until this moment (the next staged→active, active→retired or
    /// retired→expired change); `Keys::current` rebuilds it after that.
    valid_until: AtomicI64,
}

impl KeySet {
    /// A key that may verify tokens (published: staged, active or retired-in-grace).
    pub fn verifying_key(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.by_kid.get(kid)
    }

    /// When `kid` stopped (or is due to stop) signing. A token that says it was issued
    /// after that was not signed by latchkey while the key was in service.
    pub fn retired_at(&self, kid: &str) -> Option<Millis> {
        self.retired_at.get(kid).copied()
    }

    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = self.by_kid.values().map(|k| k.alg.as_str()).collect();
        algs.sort_unstable();
        algs.dedup();
        algs
    }
}

/// The key storage (a folder or the shared database) and the parsed keys in memory.
///
/// Several instances may share the storage: the manifest is the only state, every change
/// to it is made under the storage's lock and written atomically, and each instance
/// re-reads it (`reload`, run periodically and on SIGHUP) and derives states from the
/// clock. Only `open`, `load_or_generate` and `reload` read the storage (they may block:
/// async code runs them on a blocking thread); `current` works from memory.
pub struct Keys {
    storage: Arc<dyn KeyStorage>,
    retired_grace: chrono::Duration,
    parsed: RwLock<HashMap<String, Arc<SigningKey>>>,
    current: RwLock<Arc<KeySet>>,
    /// The manifest bytes and parse the current set was built from.
    manifest: Mutex<(Vec<u8>, Manifest)>,
}

impl Keys {
    /// Loads the keys folder `dir`, generating a first key of `alg` if it has none
    /// (tests and tools; the server goes through [`Keys::open`]).
    pub fn load_or_generate(
        dir: &Path,
        alg: Algorithm,
        retired_grace: std::time::Duration,
        now: Millis,
    ) -> anyhow::Result<Self> {
        Self::open(Arc::new(DirStorage::new(dir)), alg, retired_grace, now)
    }

    /// Loads the keys in `storage`, generating a first key of `alg` if it has none.
    pub fn open(
        storage: Arc<dyn KeyStorage>,
        alg: Algorithm,
        retired_grace: std::time::Duration,
        now: Millis,
    ) -> anyhow::Result<Self> {
        let retired_grace = chrono::Duration::from_std(retired_grace)?;
        let now_dt = crate::clock::to_datetime(now);
        let generated = with_locked_manifest(storage.as_ref(), |manifest| {
            if !manifest.keys.is_empty() {
                return Ok(None);
            }
            let entry = generate_key(storage.as_ref(), alg, now_dt, now_dt)?;
            manifest.keys.push(entry.clone());
            Ok(Some(entry))
        })?;
        if let Some(entry) = generated {
            tracing::info!(kid = %entry.kid, alg = alg.as_str(), storage = %storage.describe(), "generated the first signing key");
        }
        let (bytes, manifest) = read_manifest_bytes(storage.as_ref())?;
        let keys = Self {
            storage,
            retired_grace,
            parsed: RwLock::new(HashMap::new()),
            current: RwLock::new(Arc::new(placeholder_set())),
            manifest: Mutex::new((bytes, Manifest::default())),
        };
        let set = keys.build(&manifest, now, Load::FromStorage)?;
        keys.install(set);
        keys.manifest.lock().unwrap_or_else(|p| p.into_inner()).1 = manifest;
        Ok(keys)
    }

    /// Where the keys live.
    pub fn storage(&self) -> &Arc<dyn KeyStorage> {
        &self.storage
    }

    pub fn retired_grace(&self) -> chrono::Duration {
        self.retired_grace
    }

    /// The key set in force at `now`. Time-driven changes (a staged key starting to sign,
    /// a retired key leaving the JWKS) take effect exactly when due, with no timer.
    pub fn current(&self, now: Millis) -> Arc<KeySet> {
        let set = self.snapshot();
        if now < set.valid_until.load(Ordering::Relaxed) {
            return set;
        }
        let guard = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        let set = self.snapshot();
        if now < set.valid_until.load(Ordering::Relaxed) {
            return set;
        }
        // Every key this manifest publishes was parsed when the manifest was loaded, so
        // a request never waits for the storage (a database round trip).
        match self.build(&guard.1, now, Load::ParsedOnly) {
            Ok(new) => self.install(new),
            Err(e) => {
                // Keep serving the last good set; try again in a second, not per request.
                tracing::error!(error = %format!("{e:#}"), "cannot rebuild the signing key set; keeping the previous one");
                set.valid_until.store(now + 1000, Ordering::Relaxed);
                set
            }
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn install(&self, set: KeySet) -> Arc<KeySet> {
        let set = Arc::new(set);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = set.clone();
        set
    }

    /// Re-reads the manifest; rebuilds the set if it changed. A manifest that does not
    /// parse or names a bad key leaves the current set in place (and is reported), so a
    /// reload never fails a request. Returns whether anything changed.
    pub fn reload(&self, now: Millis) -> anyhow::Result<bool> {
        let (bytes, manifest) = read_manifest_bytes(self.storage.as_ref())?;
        let mut guard = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0 == bytes {
            return Ok(false);
        }
        let set = self.build(&manifest, now, Load::FromStorage)?;
        self.install(set);
        *guard = (bytes, manifest);
        Ok(true)
    }

    fn build(&self, manifest: &Manifest, now: Millis, load: Load) -> anyhow::Result<KeySet> {
        let now_dt = crate::clock::to_datetime(now);
        let mut by_kid = HashMap::new();
        let mut retired_at = HashMap::new();
        let mut signing: Option<(DateTime<Utc>, Arc<SigningKey>)> = None;
        let mut entries = Vec::new();
        let mut jwks_keys = Vec::new();
        let mut valid_until: Option<DateTime<Utc>> = None;
        for entry in &manifest.keys {
            let state = entry.state(now_dt, self.retired_grace);
            entries.push((entry.clone(), state));
            if let Some(t) = entry.next_transition(now_dt, self.retired_grace) {
                valid_until = Some(valid_until.map_or(t, |v| v.min(t)));
            }
            if matches!(state, KeyState::Expired | KeyState::Revoked) {
                continue;
            }
            if let Some(r) = entry.retired_at {
                retired_at.insert(entry.kid.clone(), r.timestamp_millis());
            }
            let key = self.parsed_key(entry, load)?;
            // The newest active key signs; older active ones still verify.
            if state == KeyState::Active
                && signing
                    .as_ref()
                    .is_none_or(|(from, _)| entry.signs_from >= *from)
            {
                signing = Some((entry.signs_from, key.clone()));
            }
            jwks_keys.push(key.jwk.clone());
            by_kid.insert(entry.kid.clone(), key);
        }
        let Some((_, signing)) = signing else {
            bail!(
                "no active signing key in {} (run `latchkey keys generate`)",
                self.storage.describe()
            );
        };
        let (jwks, etag) = serialize_jwks(&jwks_keys)?;
        Ok(KeySet {
            signing,
            by_kid,
            retired_at,
            jwks,
            etag,
            entries,
            valid_until: AtomicI64::new(valid_until.map_or(i64::MAX, |t| t.timestamp_millis())),
        })
    }

    fn parsed_key(&self, entry: &KeyEntry, load: Load) -> anyhow::Result<Arc<SigningKey>> {
        if let Some(k) = self
            .parsed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&entry.kid)
        {
            return Ok(k.clone());
        }
        if load == Load::ParsedOnly {
            bail!(
                "key {} is not loaded yet (the next reload loads it)",
                entry.kid
            );
        }
        let key = Arc::new(load_key_file(self.storage.as_ref(), entry)?);
        self.parsed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.kid.clone(), key.clone());
        Ok(key)
    }
}

/// Whether building a key set may read key files from the storage.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    FromStorage,
    ParsedOnly,
}

fn placeholder_set() -> KeySet {
    // Only ever visible before the first rebuild, which happens in the constructor.
    let rng = SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("ring generates Ed25519 keys");
    let key = SigningKey::from_pkcs8(None, Algorithm::EdDSA, doc.as_ref())
        .expect("a freshly generated key parses");
    KeySet {
        signing: Arc::new(key),
        by_kid: HashMap::new(),
        retired_at: HashMap::new(),
        jwks: b"{\"keys\":[]}".to_vec(),
        etag: "\"empty\"".into(),
        entries: Vec::new(),
        valid_until: AtomicI64::new(i64::MIN),
    }
}

/// The JWKS document (RFC 7517 §5) and its strong ETag (the first 128 bits of its SHA-256).
fn serialize_jwks(keys: &[Jwk]) -> anyhow::Result<(Vec<u8>, String)> {
    let jwks = serde_json::to_vec(&serde_json::json!({ "keys": keys }))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &jwks);
    let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]));
    Ok((jwks, etag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::manifest::MANIFEST;

    fn open(storage: &Arc<dyn KeyStorage>, now: Millis) -> Keys {
        Keys::open(
            storage.clone(),
            Algorithm::ES256,
            std::time::Duration::from_secs(60),
            now,
        )
        .unwrap()
    }

    fn generated_keys_reload_with_the_same_kid(storage: Arc<dyn KeyStorage>) {
        let now = Utc::now().timestamp_millis();
        let kid = open(&storage, now).current(now).signing.kid.clone();
        assert_eq!(open(&storage, now).current(now).signing.kid, kid);
        assert!(storage.read(&format!("{kid}.pem")).unwrap().is_some());
    }

    fn a_manifest_that_does_not_parse_leaves_the_previous_key_set_serving(
        storage: Arc<dyn KeyStorage>,
    ) {
        let t0 = 1_800_000_000_000;
        let keys = open(&storage, t0);
        let kid = keys.current(t0).signing.kid.clone();
        storage.write(MANIFEST, b"{not json", false).unwrap();
        let err = keys.reload(t0).unwrap_err().to_string();
        assert!(err.contains("malformed key manifest"), "{err}");
        assert_eq!(keys.current(t0).signing.kid, kid);
    }

    /// A staged key becoming active, or a retired one leaving the JWKS, changes the set
    /// in `current` without reading the storage.
    fn time_driven_changes_never_read_the_storage(storage: Arc<dyn KeyStorage>) {
        let t0 = 1_800_000_000_000;
        let keys = open(&storage, t0);
        let (b, _) = crate::keys::rotate(
            storage.as_ref(),
            Algorithm::ES256,
            None,
            crate::clock::to_datetime(t0),
            chrono::Duration::minutes(10),
            chrono::Duration::minutes(1),
        )
        .unwrap();
        assert!(keys.reload(t0).unwrap());
        // Make every key unreadable: `current` must not need them.
        let manifest = crate::keys::read_manifest(storage.as_ref()).unwrap();
        for k in &manifest.keys {
            storage.write(&k.file, b"gone", true).unwrap();
        }
        assert_eq!(keys.current(t0 + 10 * 60_000).signing.kid, b.kid);
    }

    over_both_storages!(
        generated_keys_reload_with_the_same_kid,
        a_manifest_that_does_not_parse_leaves_the_previous_key_set_serving,
        time_driven_changes_never_read_the_storage,
    );

    #[cfg(unix)]
    #[test]
    fn generated_private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now().timestamp_millis();
        let keys = Keys::load_or_generate(
            dir.path(),
            Algorithm::ES256,
            std::time::Duration::from_secs(60),
            now,
        )
        .unwrap();
        let kid = keys.current(now).signing.kid.clone();
        let mode = std::fs::metadata(dir.path().join(format!("{kid}.pem")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
