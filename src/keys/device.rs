//! The device token key: `device-token.key` in the key storage, 32 random bytes for
//! HMAC-SHA256, generated on first start (beside `refresh-seal.key`: a file in
//! `keys.dir`, or sealed under the KEK in a shared database).
//!
//! A device token (OWASP "Slow Down Online Guessing Attacks with Device Cookies") is
//! what a successful login hands the client so its next logins to the same account count
//! as a trusted client's (`domain::throttle`). It is
//! `base64url(version ‖ issued_at ‖ id ‖ HMAC(key, account key ‖ issued_at ‖ id))`:
//! bound to the account's name key, so it is worth nothing for another account; no
//! name in it, so it carries no personal data; verifiable without a database read, so
//! checking it costs the same for every name.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::storage::{secret, DirStorage, KeyStorage, DEVICE_KEY_FILE};
use crate::clock::Millis;
use crate::domain::throttle::DeviceId;

const VERSION: u8 = 1;
const TOKEN_BYTES: usize = 1 + 8 + 16 + 32;
/// How long a device token stays valid: a year, which is also its cookie's `Max-Age`
/// (under the 400-day cap of RFC 6265bis §5.5).
pub const DEVICE_TOKEN_TTL_SECS: i64 = 365 * 24 * 3600;

pub struct DeviceKey {
    key: hmac::Key,
    rng: SystemRandom,
}

impl DeviceKey {
    /// The key in the keys folder `dir` (tests; the server goes through
    /// [`DeviceKey::from_storage`]).
    pub fn load_or_generate(dir: &Path) -> anyhow::Result<Self> {
        Self::from_storage(&DirStorage::new(dir))
    }

    /// The key in `storage`, made on first use. May block (a database read).
    pub fn from_storage(storage: &dyn KeyStorage) -> anyhow::Result<Self> {
        let bytes = secret(storage, DEVICE_KEY_FILE)?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            rng: SystemRandom::new(),
        })
    }

    fn signed(account_key: &str, body: &[u8]) -> Vec<u8> {
        let mut msg = b"latchkey device token\0".to_vec();
        msg.extend_from_slice(account_key.as_bytes());
        msg.push(0);
        msg.extend_from_slice(body);
        msg
    }

    /// A new device token for the account whose name key is `account_key`.
    pub fn issue(&self, account_key: &str, now: Millis) -> anyhow::Result<String> {
        let mut id = [0u8; 16];
        self.rng
            .fill(&mut id)
            .map_err(|_| anyhow::anyhow!("CSPRNG failed"))?;
        let mut out = Vec::with_capacity(TOKEN_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&(now / 1000).to_be_bytes());
        out.extend_from_slice(&id);
        let tag = hmac::sign(&self.key, &Self::signed(account_key, &out));
        out.extend_from_slice(tag.as_ref());
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The device's id when `token` is a device token this key issued for
    /// `account_key` within the last [`DEVICE_TOKEN_TTL_SECS`]; the tag is compared in
    /// constant time (ring).
    pub fn verify(&self, token: &str, account_key: &str, now: Millis) -> Option<DeviceId> {
        if token.len() > 128 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() != TOKEN_BYTES || raw[0] != VERSION {
            return None;
        }
        let (body, tag) = raw.split_at(1 + 8 + 16);
        hmac::verify(&self.key, &Self::signed(account_key, body), tag).ok()?;
        let issued = i64::from_be_bytes(body[1..9].try_into().ok()?);
        let age = now / 1000 - issued;
        if !(0..=DEVICE_TOKEN_TTL_SECS).contains(&age) {
            return None;
        }
        Some(DeviceId(body[9..25].try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owasp_device_cookies_tokens_verify_only_for_their_account_and_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::load_or_generate(dir.path()).unwrap();
        let now = 1_700_000_000_000;
        let token = key.issue("alice", now).unwrap();
        let id = key.verify(&token, "alice", now).expect("valid");
        assert_eq!(key.verify(&token, "alice", now + 1000), Some(id));
        assert_eq!(key.verify(&token, "bob", now), None, "another account");
        let later = now + (DEVICE_TOKEN_TTL_SECS + 1) * 1000;
        assert_eq!(key.verify(&token, "alice", later), None, "expired");
        let mut forged = URL_SAFE_NO_PAD.decode(&token).unwrap();
        forged[12] ^= 1;
        assert_eq!(
            key.verify(&URL_SAFE_NO_PAD.encode(forged), "alice", now),
            None
        );
        assert_eq!(key.verify("not a token", "alice", now), None);
        // The key survives a restart; another folder's key does not accept it.
        let again = DeviceKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(again.verify(&token, "alice", now), Some(id));
        let other = DeviceKey::load_or_generate(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(other.verify(&token, "alice", now), None);
        assert_ne!(
            key.issue("alice", now).unwrap(),
            token,
            "a fresh id each time"
        );
    }
}
