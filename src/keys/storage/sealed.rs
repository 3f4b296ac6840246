//! [`SealedStorage`]: every value sealed with AES-256-GCM under the KEK before it
//! reaches the [`BlobStore`], and opened after.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};

use super::{check_name, BlobStore, KeyStorage};
use crate::keys::kek::Kek;

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

#[cfg(test)]
mod tests {
    use super::super::secret;
    use super::super::testing::sealed_with_blobs;
    use super::super::MemoryBlobs;
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
}
