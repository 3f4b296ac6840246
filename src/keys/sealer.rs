//! The refresh seal key: `refresh-seal.key` in the key storage (`keys.dir`, or sealed
//! under the KEK in a shared database), 32 random bytes generated on first start. It
//! seals each family's head for the reuse interval (AES-256-GCM), and a second key
//! derived from it (HKDF-SHA256, RFC 5869) tags located refresh tokens (HMAC-SHA256), so
//! the one key protects both and never enters the database unsealed.

use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, hkdf, hmac};

use super::storage::{secret, DirStorage, KeyStorage, SEAL_KEY_FILE};

/// Seals a family's newest refresh token on its parent for the reuse interval
/// (AES-256-GCM from ring under a key kept in the key storage, never in the database
/// unsealed).
/// See `domain::rotation` for why and what it protects against.
pub struct Sealer {
    key: aead::LessSafeKey,
    tag_key: hmac::Key,
    rng: SystemRandom,
}

/// HKDF `info` for the token-tag key: a new purpose gets a new label, never this key.
const TAG_KEY_INFO: &[u8] = b"latchkey refresh token tag v1";

impl Sealer {
    /// The seal key in the keys folder `dir` (tests and benchmarks; the server goes
    /// through [`Sealer::from_storage`]).
    pub fn load_or_generate(dir: &Path) -> anyhow::Result<Self> {
        Self::from_storage(&DirStorage::new(dir))
    }

    /// The seal key in `storage`, made on first use. May block (a database read).
    pub fn from_storage(storage: &dyn KeyStorage) -> anyhow::Result<Self> {
        let bytes = secret(storage, SEAL_KEY_FILE)?;
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &bytes)
            .map_err(|_| anyhow::anyhow!("the refresh seal key is not an AES-256 key"))?;
        let tag_key = hkdf::Salt::new(hkdf::HKDF_SHA256, b"latchkey")
            .extract(&bytes)
            .expand(&[TAG_KEY_INFO], hmac::HMAC_SHA256)
            .map_err(|_| anyhow::anyhow!("cannot derive the token-tag key"))?
            .into();
        Ok(Self {
            key: aead::LessSafeKey::new(unbound),
            tag_key,
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

/// Located refresh tokens carry the first 128 bits of an HMAC-SHA256 tag.
impl crate::domain::TokenTagger for Sealer {
    fn tag(&self, data: &[u8]) -> [u8; 16] {
        let tag = hmac::sign(&self.tag_key, data);
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }

    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        tag.len() == 16 && bool::from(self.tag(data).as_slice().ct_eq(tag))
    }
}

/// The rotation rules seal heads and tag tokens through this port (they never see the
/// key).
impl crate::domain::rotation::RefreshKeys for Sealer {
    fn seal(&self, plain: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
        Sealer::seal(self, plain, aad)
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        Sealer::open(self, sealed, aad)
    }
}

/// AAD prefix of a sealed TOTP secret: names the purpose, so a sealed secret never
/// opens as a refresh head (whose AAD is a 32-byte hash) or vice versa, and, with the
/// user id after it, never for another user (a row copied onto another account does not
/// open).
const TOTP_AAD_PREFIX: &[u8] = b"latchkey totp secret v1\0";

fn totp_aad(user_id: &str) -> Vec<u8> {
    let mut aad = TOTP_AAD_PREFIX.to_vec();
    aad.extend_from_slice(user_id.as_bytes());
    aad
}

/// The second factor's rules seal TOTP secrets through this port.
impl crate::domain::mfa::SecretSealer for Sealer {
    fn seal_totp(
        &self,
        user_id: &str,
        secret: &crate::domain::totp::TotpSecret,
    ) -> anyhow::Result<Vec<u8>> {
        self.seal(secret.expose(), &totp_aad(user_id))
    }

    fn open_totp(&self, user_id: &str, sealed: &[u8]) -> Option<crate::domain::totp::TotpSecret> {
        self.open(sealed, &totp_aad(user_id))
            .map(crate::domain::totp::TotpSecret::from_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_aad() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::load_or_generate(dir.path()).unwrap();
        let sealed = s.seal(b"token", b"parent").unwrap();
        assert_eq!(s.open(&sealed, b"parent").unwrap(), b"token");
        assert!(s.open(&sealed, b"other").is_none());
    }

    #[test]
    fn sealed_totp_secrets_open_only_for_their_user_and_purpose() {
        use crate::domain::mfa::SecretSealer;
        use crate::domain::totp::TotpSecret;
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::load_or_generate(dir.path()).unwrap();
        let secret = TotpSecret::from_bytes(vec![7; 20]);
        let sealed = s.seal_totp("user-a", &secret).unwrap();
        assert_eq!(s.open_totp("user-a", &sealed), Some(secret));
        assert!(s.open_totp("user-b", &sealed).is_none());
        // Not as a refresh head either (those are opened with a 32-byte hash as AAD).
        assert!(s.open(&sealed, &[0u8; 32]).is_none());
        assert!(s.open(&sealed, b"user-a").is_none());
    }
}
