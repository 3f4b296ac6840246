//! Signing keys: PKCS#8 PEM files in `keys.dir` plus `manifest.json` (kid, algorithm,
//! dates), parsed once into ring key pairs and kept in memory; the JWKS is serialized
//! once per key-set change, not per request.
//!
//! Lifecycle (RFC 7517; OIDC Core §10.1.1): a key is *staged* (published, not yet
//! signing) until `signs_from`, then *active*; the newest active key signs. A *retired*
//! key stops signing at once but stays published (and accepted) until the longest
//! access-token lifetime plus the JWKS cache time has passed.

mod jwk;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::domain::Algorithm;

pub use jwk::Jwk;

const MANIFEST: &str = "manifest.json";
const SEAL_KEY_FILE: &str = "refresh-seal.key";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    pub kid: String,
    pub alg: Algorithm,
    pub file: String,
    pub created_at: DateTime<Utc>,
    pub signs_from: DateTime<Utc>,
    #[serde(default)]
    pub retired_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Staged,
    Active,
    Retired,
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Staged => "staged",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
        }
    }
}

impl KeyEntry {
    /// `retired_grace`: how long a retired key stays published (longest token TTL +
    /// JWKS max-age). `retired_at` may lie in the future: `keys rotate` schedules the old
    /// key's retirement for the moment the new one starts signing.
    pub fn state(&self, now: DateTime<Utc>, retired_grace: chrono::Duration) -> KeyState {
        match self.retired_at {
            Some(r) if now >= r + retired_grace => KeyState::Expired,
            Some(r) if now >= r => KeyState::Retired,
            _ if now < self.signs_from => KeyState::Staged,
            _ => KeyState::Active,
        }
    }

    /// When this key leaves the JWKS (RFC 7517; OIDC Core §10.1.1: only after every token
    /// it signed has expired and every cached JWKS has been refetched).
    pub fn unpublished_at(&self, retired_grace: chrono::Duration) -> Option<DateTime<Utc>> {
        self.retired_at.map(|r| r + retired_grace)
    }

    /// The next moment after `now` at which this key's state changes.
    fn next_transition(
        &self,
        now: DateTime<Utc>,
        retired_grace: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        [
            Some(self.signs_from),
            self.retired_at,
            self.unpublished_at(retired_grace),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub keys: Vec<KeyEntry>,
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// One parsed key: the ring key pair that signs, and the public half that verifies.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    signer: Signer,
    pub jwk: Jwk,
    pub decoding: jsonwebtoken::DecodingKey,
    /// `base64url({"alg":…,"typ":"at+jwt","kid":…})`, computed once.
    header_b64: String,
}

impl SigningKey {
    pub fn from_pkcs8(kid_hint: Option<&str>, alg: Algorithm, der: &[u8]) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let (signer, jwk) = match alg {
            Algorithm::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                    .map_err(|e| anyhow::anyhow!("not a P-256 PKCS#8 key: {e}"))?;
                let jwk = Jwk::p256(kp.public_key().as_ref())?;
                (Signer::Ecdsa(kp), jwk)
            }
            Algorithm::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
                let jwk = Jwk::ed25519(kp.public_key().as_ref())?;
                (Signer::Ed25519(kp), jwk)
            }
            Algorithm::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(der)
                    .map_err(|e| anyhow::anyhow!("not an RSA PKCS#8 key: {e}"))?;
                if kp.public().modulus_len() < 256 {
                    bail!("RSA keys must be at least 2048 bits");
                }
                let c: ring::rsa::PublicKeyComponents<Vec<u8>> = kp.public().into();
                let jwk = Jwk::rsa(&c.n, &c.e);
                (Signer::Rsa(kp), jwk)
            }
        };
        let kid = jwk.thumbprint();
        if let Some(hint) = kid_hint {
            if hint != kid {
                bail!("key file does not match kid {hint} in the manifest");
            }
        }
        let jwk = jwk.with_kid(&kid, alg);
        let decoding = jwk.decoding_key()?;
        let header = serde_json::json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": kid});
        let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        Ok(Self {
            kid,
            alg,
            signer,
            jwk,
            decoding,
            header_b64,
        })
    }

    /// Signs `claims` as a compact JWS with this key's cached header.
    pub fn sign_jwt(&self, claims: &impl Serialize, rng: &SystemRandom) -> anyhow::Result<String> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let mut jwt = String::with_capacity(self.header_b64.len() + payload.len() + 400);
        jwt.push_str(&self.header_b64);
        jwt.push('.');
        jwt.push_str(&payload);
        let sig = match &self.signer {
            Signer::Ecdsa(kp) => kp
                .sign(rng, jwt.as_bytes())
                .map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?
                .as_ref()
                .to_vec(),
            Signer::Ed25519(kp) => kp.sign(jwt.as_bytes()).as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, rng, jwt.as_bytes(), &mut sig)
                    .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
                sig
            }
        };
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jwt)
    }
}

/// The keys in force at one moment, with the JWKS pre-serialized.
pub struct KeySet {
    pub signing: Arc<SigningKey>,
    by_kid: HashMap<String, Arc<SigningKey>>,
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

    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = self.by_kid.values().map(|k| k.alg.as_str()).collect();
        algs.sort_unstable();
        algs.dedup();
        algs
    }
}

/// The key folder: files on disk and the parsed keys in memory.
///
/// Several instances may share the folder: the manifest is the only state, every change
/// to it is made under a file lock and written atomically, and each instance re-reads it
/// (`reload`, run periodically and on SIGHUP) and derives states from the clock.
pub struct Keys {
    dir: PathBuf,
    retired_grace: chrono::Duration,
    parsed: RwLock<HashMap<String, Arc<SigningKey>>>,
    current: RwLock<Arc<KeySet>>,
    /// The manifest bytes and parse the current set was built from.
    manifest: Mutex<(Vec<u8>, Manifest)>,
}

impl Keys {
    /// Loads the folder, generating a first key of `alg` if it has none.
    pub fn load_or_generate(
        dir: &Path,
        alg: Algorithm,
        retired_grace: std::time::Duration,
        now: Millis,
    ) -> anyhow::Result<Self> {
        let retired_grace = chrono::Duration::from_std(retired_grace)?;
        let now_dt = crate::clock::to_datetime(now);
        let generated = with_locked_manifest(dir, |manifest| {
            if !manifest.keys.is_empty() {
                return Ok(None);
            }
            let entry = generate_key(dir, alg, now_dt, now_dt)?;
            manifest.keys.push(entry.clone());
            Ok(Some(entry))
        })?;
        if let Some(entry) = generated {
            tracing::info!(kid = %entry.kid, alg = alg.as_str(), dir = %dir.display(), "generated the first signing key");
        }
        let (bytes, manifest) = read_manifest_bytes(dir)?;
        let keys = Self {
            dir: dir.to_owned(),
            retired_grace,
            parsed: RwLock::new(HashMap::new()),
            current: RwLock::new(Arc::new(placeholder_set())),
            manifest: Mutex::new((bytes, Manifest::default())),
        };
        let set = keys.build(&manifest, now)?;
        keys.install(set);
        keys.manifest.lock().unwrap_or_else(|p| p.into_inner()).1 = manifest;
        Ok(keys)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
        match self.build(&guard.1, now) {
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
        let (bytes, manifest) = read_manifest_bytes(&self.dir)?;
        let mut guard = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0 == bytes {
            return Ok(false);
        }
        let set = self.build(&manifest, now)?;
        self.install(set);
        *guard = (bytes, manifest);
        Ok(true)
    }

    fn build(&self, manifest: &Manifest, now: Millis) -> anyhow::Result<KeySet> {
        let now_dt = crate::clock::to_datetime(now);
        let mut by_kid = HashMap::new();
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
            if state == KeyState::Expired {
                continue;
            }
            let key = self.parsed_key(entry)?;
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
                self.dir.display()
            );
        };
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": jwks_keys }))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &jwks);
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]));
        Ok(KeySet {
            signing,
            by_kid,
            jwks,
            etag,
            entries,
            valid_until: AtomicI64::new(valid_until.map_or(i64::MAX, |t| t.timestamp_millis())),
        })
    }

    fn parsed_key(&self, entry: &KeyEntry) -> anyhow::Result<Arc<SigningKey>> {
        if let Some(k) = self
            .parsed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&entry.kid)
        {
            return Ok(k.clone());
        }
        let key = Arc::new(load_key_file(&self.dir, entry)?);
        self.parsed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.kid.clone(), key.clone());
        Ok(key)
    }
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
        jwks: b"{\"keys\":[]}".to_vec(),
        etag: "\"empty\"".into(),
        entries: Vec::new(),
        valid_until: AtomicI64::new(i64::MIN),
    }
}

pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    Ok(read_manifest_bytes(dir)?.1)
}

fn read_manifest_bytes(dir: &Path) -> anyhow::Result<(Vec<u8>, Manifest)> {
    let path = dir.join(MANIFEST);
    match fs::read(&path) {
        Ok(bytes) => {
            let manifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("malformed key manifest {}", path.display()))?;
            Ok((bytes, manifest))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), Manifest::default())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(manifest)?;
    write_atomically(&dir.join(MANIFEST), &bytes, 0o644)
}

/// Runs `change` on the manifest under an exclusive lock on `keys/.lock`, then writes it
/// back atomically (rename) if `change` succeeded, so two `latchkey keys …` commands or
/// two first starts never lose each other's keys and a reader never sees half a file.
pub fn with_locked_manifest<T>(
    dir: &Path,
    change: impl FnOnce(&mut Manifest) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock_path = dir.join(".lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let (before, mut manifest) = read_manifest_bytes(dir)?;
    let out = change(&mut manifest)?;
    let after = serde_json::to_vec_pretty(&manifest)?;
    if after != before && !(before.is_empty() && manifest.keys.is_empty()) {
        write_manifest(dir, &manifest)?;
    }
    Ok(out)
    // The lock is released when `lock` drops.
}

/// `latchkey keys rotate`: stages a new key that is published at once and signs from
/// `now + publish_ahead`, and schedules every key still signing to retire at that same
/// moment. Verifiers that refresh their JWKS within `publish_ahead` (the default is twice
/// the JWKS max-age) know the new key before they see a token signed with it
/// (RFC 7517; OIDC Core §10.1.1).
pub fn rotate(
    dir: &Path,
    alg: Algorithm,
    der: Option<Vec<u8>>,
    now: DateTime<Utc>,
    publish_ahead: chrono::Duration,
) -> anyhow::Result<(KeyEntry, Vec<String>)> {
    let der = match der {
        Some(der) => der,
        None => generate_der(alg)?,
    };
    let signs_from = now + publish_ahead;
    with_locked_manifest(dir, |manifest| {
        let entry = add_key(dir, alg, &der, now, signs_from)?;
        if manifest.keys.iter().any(|k| k.kid == entry.kid) {
            bail!("key {} is already in the manifest", entry.kid);
        }
        let mut retiring = Vec::new();
        for old in &mut manifest.keys {
            if old.retired_at.is_none_or(|r| r > signs_from) {
                old.retired_at = Some(signs_from);
                retiring.push(old.kid.clone());
            }
        }
        manifest.keys.push(entry.clone());
        Ok((entry, retiring))
    })
}

/// What `latchkey keys retire KID` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Retired {
    /// Stopped signing now; stays published until the given time.
    Now(DateTime<Utc>),
    /// It was already retired (at the given time); nothing changed.
    Already(DateTime<Utc>),
}

/// Stops `kid` signing at once. It stays published (and verifies) until every token it
/// signed has expired and every cached JWKS has been refetched. Refuses to leave the
/// service with no key to sign with.
pub fn retire(
    dir: &Path,
    kid: &str,
    now: DateTime<Utc>,
    retired_grace: chrono::Duration,
) -> anyhow::Result<Retired> {
    with_locked_manifest(dir, |manifest| {
        let Some(i) = manifest.keys.iter().position(|k| k.kid == kid) else {
            bail!("no key with kid {kid:?} (see `latchkey keys list`)");
        };
        if let Some(r) = manifest.keys[i].retired_at.filter(|r| *r <= now) {
            return Ok(Retired::Already(r));
        }
        let another_signs = manifest
            .keys
            .iter()
            .enumerate()
            .any(|(j, k)| j != i && k.state(now, retired_grace) == KeyState::Active);
        if !another_signs {
            bail!(
                "{kid} is the only key that can sign; run `latchkey keys rotate` and retire it \
                 once the new key signs (or `latchkey keys rotate --now` if it is compromised)"
            );
        }
        manifest.keys[i].retired_at = Some(now);
        Ok(Retired::Now(now + retired_grace))
    })
}

/// `latchkey keys generate`: a new key that signs at once (the newest active key signs).
pub fn generate(dir: &Path, alg: Algorithm, now: DateTime<Utc>) -> anyhow::Result<KeyEntry> {
    with_locked_manifest(dir, |manifest| {
        let entry = generate_key(dir, alg, now, now)?;
        manifest.keys.push(entry.clone());
        Ok(entry)
    })
}

/// Reads a PKCS#8 `PRIVATE KEY` PEM (as `openssl genpkey` writes) for `latchkey keys import`.
pub fn pkcs8_from_pem(text: &str) -> anyhow::Result<Vec<u8>> {
    let pem = pem::parse(text.as_bytes()).context("the file is not PEM")?;
    match pem.tag() {
        "PRIVATE KEY" => Ok(pem.contents().to_vec()),
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" => bail!(
            "the key is in the legacy {} format; convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`",
            pem.tag()
        ),
        other => bail!("expected a PKCS#8 PRIVATE KEY, found {other}"),
    }
}

fn load_key_file(dir: &Path, entry: &KeyEntry) -> anyhow::Result<SigningKey> {
    // The file name comes from our own manifest, never from a token header.
    if entry.file.contains(['/', '\\']) || entry.file.starts_with('.') {
        bail!(
            "key file name {:?} in the manifest is not a plain file name",
            entry.file
        );
    }
    let path = dir.join(&entry.file);
    let text = fs::read_to_string(&path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let pem = pem::parse(text.as_bytes())
        .with_context(|| format!("key file {} is not PEM", path.display()))?;
    if pem.tag() != "PRIVATE KEY" {
        bail!("key file {} is not a PKCS#8 PRIVATE KEY", path.display());
    }
    SigningKey::from_pkcs8(Some(&entry.kid), entry.alg, pem.contents())
        .with_context(|| format!("key file {}", path.display()))
}

/// Generates a key of `alg`, writes it as PKCS#8 PEM with mode 0600, returns its entry.
fn generate_key(
    dir: &Path,
    alg: Algorithm,
    now: DateTime<Utc>,
    signs_from: DateTime<Utc>,
) -> anyhow::Result<KeyEntry> {
    let der = generate_der(alg)?;
    add_key(dir, alg, &der, now, signs_from)
}

/// A fresh PKCS#8 private key. ES256 and Ed25519 come from ring; ring cannot generate RSA
/// keys, so RS256 keys (2048-bit) come from the RustCrypto `rsa` crate and are then
/// loaded into ring, which does all signing.
pub fn generate_der(alg: Algorithm) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    Ok(match alg {
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| anyhow::anyhow!("RSA key generation failed: {e}"))?;
            key.to_pkcs8_der()
                .map_err(|e| anyhow::anyhow!("cannot encode the RSA key: {e}"))?
                .as_bytes()
                .to_vec()
        }
    })
}

/// Stores a PKCS#8 key in the folder (file only; the caller updates the manifest).
fn add_key(
    dir: &Path,
    alg: Algorithm,
    der: &[u8],
    now: DateTime<Utc>,
    signs_from: DateTime<Utc>,
) -> anyhow::Result<KeyEntry> {
    let key = SigningKey::from_pkcs8(None, alg, der)?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = format!("{}.pem", key.kid);
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()));
    write_atomically(&dir.join(&file), pem.as_bytes(), 0o600)?;
    Ok(KeyEntry {
        kid: key.kid,
        alg,
        file,
        created_at: now,
        signs_from,
        retired_at: None,
    })
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Seals a family's newest refresh token on its parent for the reuse interval
/// (AES-256-GCM from ring under a key kept in `keys.dir`, never in the database).
/// See `domain::rotation` for why and what it protects against.
pub struct Sealer {
    key: aead::LessSafeKey,
    rng: SystemRandom,
}

impl Sealer {
    pub fn load_or_generate(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(SEAL_KEY_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let mut b = vec![0u8; 32];
                SystemRandom::new()
                    .fill(&mut b)
                    .map_err(|_| anyhow::anyhow!("CSPRNG failed"))?;
                write_atomically(&path, &b, 0o600)?;
                b
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &bytes)
            .map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes", path.display()))?;
        Ok(Self {
            key: aead::LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// nonce ‖ ciphertext ‖ tag, bound to `aad` (the parent's hash).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("CSPRNG failed"))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < aead::NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, aead::Aad::from(aad), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_reload_with_the_same_kid_and_private_files_are_0600() {
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
        let again = Keys::load_or_generate(
            dir.path(),
            Algorithm::ES256,
            std::time::Duration::from_secs(60),
            now,
        )
        .unwrap();
        assert_eq!(again.current(now).signing.kid, kid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(format!("{kid}.pem")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn sealed_values_open_only_with_the_same_aad() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::load_or_generate(dir.path()).unwrap();
        let sealed = s.seal(b"token", b"parent").unwrap();
        assert_eq!(s.open(&sealed, b"parent").unwrap(), b"token");
        assert!(s.open(&sealed, b"other").is_none());
    }

    #[test]
    fn ed25519_keys_sign_jwts_with_the_cached_header() {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = SigningKey::from_pkcs8(None, Algorithm::EdDSA, doc.as_ref()).unwrap();
        let jwt = key.sign_jwt(&serde_json::json!({"a": 1}), &rng).unwrap();
        assert_eq!(jwt.split('.').count(), 3);
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
    }

    fn at(ms: i64) -> DateTime<Utc> {
        crate::clock::to_datetime(ms)
    }

    const MIN: i64 = 60_000;

    #[test]
    fn a_rotated_key_is_published_at_once_and_signs_only_after_publish_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000;
        let grace = std::time::Duration::from_secs(20 * 60);
        let keys = Keys::load_or_generate(dir.path(), Algorithm::ES256, grace, t0).unwrap();
        let a = keys.current(t0).signing.kid.clone();
        let (b, retiring) = rotate(
            dir.path(),
            Algorithm::EdDSA,
            None,
            at(t0),
            chrono::Duration::minutes(10),
        )
        .unwrap();
        assert_eq!(retiring, vec![a.clone()]);
        assert!(keys.reload(t0).unwrap());
        let set = keys.current(t0);
        assert_eq!(
            set.signing.kid, a,
            "A signs until B's publish-ahead has passed"
        );
        assert!(
            set.verifying_key(&b.kid).is_some(),
            "B is published at once"
        );
        let just_before = keys.current(t0 + 10 * MIN - 1);
        assert_eq!(just_before.signing.kid, a);
        let after = keys.current(t0 + 10 * MIN);
        assert_eq!(after.signing.kid, b.kid);
        assert!(
            after.verifying_key(&a).is_some(),
            "A still verifies while retired"
        );
        // A leaves the JWKS only once the grace (longest TTL + JWKS max-age) has passed.
        assert!(keys.current(t0 + 30 * MIN - 1).verifying_key(&a).is_some());
        let later = keys.current(t0 + 30 * MIN);
        assert!(later.verifying_key(&a).is_none());
        assert!(!String::from_utf8_lossy(&later.jwks).contains(&a));
    }

    #[test]
    fn retiring_the_only_signing_key_is_refused_and_retiring_another_stops_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000;
        let grace = chrono::Duration::minutes(20);
        let keys =
            Keys::load_or_generate(dir.path(), Algorithm::ES256, grace.to_std().unwrap(), t0)
                .unwrap();
        let a = keys.current(t0).signing.kid.clone();
        let err = retire(dir.path(), &a, at(t0), grace).unwrap_err();
        assert!(err.to_string().contains("only key that can sign"), "{err}");
        let b = generate(dir.path(), Algorithm::ES256, at(t0 + 1)).unwrap();
        keys.reload(t0 + 1).unwrap();
        assert_eq!(keys.current(t0 + 1).signing.kid, b.kid);
        assert_eq!(
            retire(dir.path(), &a, at(t0 + 2), grace).unwrap(),
            Retired::Now(at(t0 + 2) + grace)
        );
        assert_eq!(
            retire(dir.path(), &a, at(t0 + 3), grace).unwrap(),
            Retired::Already(at(t0 + 2))
        );
        keys.reload(t0 + 3).unwrap();
        let states: Vec<KeyState> = keys.current(t0 + 3).entries.iter().map(|e| e.1).collect();
        assert_eq!(states, vec![KeyState::Retired, KeyState::Active]);
        assert!(retire(dir.path(), "no-such-kid", at(t0), grace).is_err());
    }

    #[test]
    fn a_manifest_that_does_not_parse_leaves_the_previous_key_set_serving() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000;
        let keys = Keys::load_or_generate(
            dir.path(),
            Algorithm::ES256,
            std::time::Duration::from_secs(60),
            t0,
        )
        .unwrap();
        let kid = keys.current(t0).signing.kid.clone();
        fs::write(dir.path().join(MANIFEST), b"{not json").unwrap();
        assert!(keys.reload(t0).is_err());
        assert_eq!(keys.current(t0).signing.kid, kid);
    }

    #[test]
    fn rsa_keys_are_generated_as_2048_bit_pkcs8_that_ring_signs_with() {
        let der = generate_der(Algorithm::RS256).unwrap();
        let key = SigningKey::from_pkcs8(None, Algorithm::RS256, &der).unwrap();
        let jwt = key
            .sign_jwt(&serde_json::json!({"a": 1}), &SystemRandom::new())
            .unwrap();
        let n = URL_SAFE_NO_PAD.decode(key.jwk.n.as_ref().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        assert_eq!(key.jwk.e.as_deref(), Some("AQAB"));
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&jwt, &key.decoding, &v).unwrap();
    }

    #[test]
    fn legacy_pem_formats_are_refused_with_the_conversion_command() {
        let err = pkcs8_from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
    }
}
