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
use std::sync::{Arc, RwLock};

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
use crate::config::Algorithm;

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
    /// JWKS max-age).
    pub fn state(&self, now: DateTime<Utc>, retired_grace: chrono::Duration) -> KeyState {
        match self.retired_at {
            Some(r) if now >= r + retired_grace => KeyState::Expired,
            Some(_) => KeyState::Retired,
            None if now < self.signs_from => KeyState::Staged,
            None => KeyState::Active,
        }
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
pub struct Keys {
    dir: PathBuf,
    retired_grace: chrono::Duration,
    parsed: RwLock<HashMap<String, Arc<SigningKey>>>,
    current: RwLock<Arc<KeySet>>,
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
        let mut manifest = read_manifest(dir)?;
        if manifest.keys.is_empty() {
            let now_dt = crate::clock::to_datetime(now);
            let entry = generate_key(dir, alg, now_dt, now_dt)?;
            tracing::info!(kid = %entry.kid, alg = alg.as_str(), dir = %dir.display(), "generated the first signing key");
            manifest.keys.push(entry);
            write_manifest(dir, &manifest)?;
        }
        let keys = Self {
            dir: dir.to_owned(),
            retired_grace,
            parsed: RwLock::new(HashMap::new()),
            current: RwLock::new(Arc::new(placeholder_set())),
        };
        keys.rebuild(&manifest, now)?;
        Ok(keys)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the manifest and rebuilds the key set for `now`.
    pub fn reload(&self, now: Millis) -> anyhow::Result<()> {
        let manifest = read_manifest(&self.dir)?;
        self.rebuild(&manifest, now)
    }

    fn rebuild(&self, manifest: &Manifest, now: Millis) -> anyhow::Result<()> {
        let now_dt = crate::clock::to_datetime(now);
        let mut by_kid = HashMap::new();
        let mut signing: Option<(DateTime<Utc>, Arc<SigningKey>)> = None;
        let mut entries = Vec::new();
        let mut jwks_keys = Vec::new();
        for entry in &manifest.keys {
            let state = entry.state(now_dt, self.retired_grace);
            entries.push((entry.clone(), state));
            if state == KeyState::Expired {
                continue;
            }
            let key = self.parsed_key(entry)?;
            if state == KeyState::Active
                && signing
                    .as_ref()
                    .is_none_or(|(from, _)| entry.signs_from > *from)
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
        let set = KeySet {
            signing,
            by_kid,
            jwks,
            etag,
            entries,
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
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
    }
}

pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("malformed key manifest {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn write_manifest(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(manifest)?;
    write_atomically(&dir.join(MANIFEST), &bytes, 0o644)
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
pub fn generate_key(
    dir: &Path,
    alg: Algorithm,
    now: DateTime<Utc>,
    signs_from: DateTime<Utc>,
) -> anyhow::Result<KeyEntry> {
    let rng = SystemRandom::new();
    let der: Vec<u8> = match alg {
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 => bail!(
            "latchkey cannot generate RSA keys itself; create one with \
             `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem` \
             and add it with `latchkey keys import rsa.pem --alg RS256`"
        ),
    };
    add_key(dir, alg, &der, now, signs_from)
}

/// Stores a PKCS#8 key in the folder (file only; the caller updates the manifest).
pub fn add_key(
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
        let kid = keys.current().signing.kid.clone();
        let again = Keys::load_or_generate(
            dir.path(),
            Algorithm::ES256,
            std::time::Duration::from_secs(60),
            now,
        )
        .unwrap();
        assert_eq!(again.current().signing.kid, kid);
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
}
