//! Refresh tokens: opaque to clients, never stored (only a SHA-256 of the whole text),
//! and never printed.
//!
//! Two shapes are accepted (docs/architecture.md "Refresh-token format"):
//! - **located** (`lk1_…`, issued since schema version 5): the session's id and the
//!   generation in the clear, 256 bits of CSPRNG secret, and a 128-bit HMAC-SHA256 tag
//!   over all of it under a key in `keys.dir`. A refresh finds its session by primary
//!   key and compares the whole token's hash with the head's; the tag lets an *old*
//!   generation be recognised as one latchkey issued (so presenting it is reuse) without
//!   keeping its hash, while nobody who only knows a session id (every access token's
//!   `sid`) can make one;
//! - **legacy** (43 base64url characters, 256 random bits): issued before version 5,
//!   found through the `refresh_tokens` hash table until its family rotates.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// 32 bytes = 256 bits from the OS CSPRNG (RFC 9700 §4.14, ASVS v5 10.4.x;
/// docs/contract.md "Standards checklist" #14).
const SECRET_BYTES: usize = 32;
/// base64url without padding of 32 bytes: the legacy shape.
const LEGACY_CHARS: usize = 43;
const LOCATED_PREFIX: &str = "lk1_";
/// session id (16) ‖ generation (4, big-endian) ‖ secret (32) ‖ tag (16).
const LOCATOR_BYTES: usize = 16 + 4;
const TAG_BYTES: usize = 16;
const LOCATED_BYTES: usize = LOCATOR_BYTES + SECRET_BYTES + TAG_BYTES;
/// The located shape's length: prefix + base64url of 68 bytes.
pub const LOCATED_CHARS: usize = LOCATED_PREFIX.len() + (LOCATED_BYTES * 4).div_ceil(3);

pub type TokenHash = [u8; 32];

/// Computes and checks the tag of located tokens (HMAC-SHA256 under a key in
/// `keys.dir`, truncated to 128 bits); the rules never see the key.
pub trait TokenTagger: Send + Sync {
    fn tag(&self, data: &[u8]) -> [u8; TAG_BYTES];
    /// Constant-time check that `tag` is this key's tag of `data`.
    fn verify(&self, data: &[u8], tag: &[u8]) -> bool;
}

/// An opaque refresh token. Only its SHA-256 ([`RefreshToken::hash`]) is ever stored,
/// so a dump of the database alone yields no usable token.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

/// Where a located token says it belongs; trustworthy only after
/// [`RefreshToken::locate`] checked its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locator {
    pub session_id: uuid::Uuid,
    pub generation: i64,
}

impl RefreshToken {
    /// A legacy-shape token: 256 random bits. Only for tests and tools that need a
    /// token latchkey never issued; the service issues [`RefreshToken::issue`]d ones.
    pub fn generate(rng: &SystemRandom) -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; SECRET_BYTES];
        rng.fill(&mut bytes)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A new located token for `generation` of session `session_id`.
    pub fn issue(
        rng: &SystemRandom,
        tagger: &dyn TokenTagger,
        session_id: uuid::Uuid,
        generation: i64,
    ) -> anyhow::Result<Self> {
        let generation = u32::try_from(generation)
            .map_err(|_| anyhow::anyhow!("a family has rotated 2^32 times"))?;
        let mut bytes = Vec::with_capacity(LOCATED_BYTES);
        bytes.extend_from_slice(session_id.as_bytes());
        bytes.extend_from_slice(&generation.to_be_bytes());
        let mut secret = [0u8; SECRET_BYTES];
        rng.fill(&mut secret)
            .map_err(|_| anyhow::anyhow!("CSPRNG failed"))?;
        bytes.extend_from_slice(&secret);
        let tag = tagger.tag(&bytes);
        bytes.extend_from_slice(&tag);
        Ok(Self(format!(
            "{LOCATED_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// Accepts exactly the shapes we issue; anything else cannot be one of ours. Checks
    /// length first, so an oversized input costs nothing.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        const MALFORMED: &str = "malformed refresh token";
        let decoded = match s.len() {
            LEGACY_CHARS => URL_SAFE_NO_PAD
                .decode(s)
                .ok()
                .filter(|b| b.len() == SECRET_BYTES),
            LOCATED_CHARS => s
                .strip_prefix(LOCATED_PREFIX)
                .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
                .filter(|b| b.len() == LOCATED_BYTES),
            _ => None,
        };
        decoded.map(|_| Self(s.to_owned())).ok_or(MALFORMED)
    }

    /// For a located token whose tag `tagger` accepts: the session and generation it
    /// belongs to. `None` for a legacy token (`Ok(None)`) — and `Err` for a located one
    /// whose tag is wrong, which latchkey never issued. No store access either way, so
    /// a forged token costs the same whether or not its session exists.
    pub fn locate(&self, tagger: &dyn TokenTagger) -> Result<Option<Locator>, Forged> {
        let Some(body) = self.0.strip_prefix(LOCATED_PREFIX) else {
            return Ok(None);
        };
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| Forged)?;
        let (signed, tag) = bytes.split_at(LOCATED_BYTES - TAG_BYTES);
        if !tagger.verify(signed, tag) {
            return Err(Forged);
        }
        let session_id = uuid::Uuid::from_slice(&signed[..16]).map_err(|_| Forged)?;
        let generation = u32::from_be_bytes(signed[16..20].try_into().map_err(|_| Forged)?);
        Ok(Some(Locator {
            session_id,
            generation: i64::from(generation),
        }))
    }

    /// SHA-256 of the whole token. A fast hash is right here: the input carries 256
    /// random bits, so there is nothing to brute-force (unlike passwords).
    pub fn hash(&self) -> TokenHash {
        let d = digest::digest(&digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// Whether this token's hash is `stored`, compared in constant time.
    pub fn matches(&self, stored: &TokenHash) -> bool {
        use subtle::ConstantTimeEq;
        self.hash().ct_eq(stored).into()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A located token whose tag does not verify: not one latchkey issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forged;

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::*;

    /// HMAC-SHA256 from ring under a fixed test key.
    pub struct TestTagger(ring::hmac::Key);

    impl TestTagger {
        pub fn new(seed: u8) -> Self {
            Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[seed; 32]))
        }
    }

    impl TokenTagger for TestTagger {
        fn tag(&self, data: &[u8]) -> [u8; TAG_BYTES] {
            let t = ring::hmac::sign(&self.0, data);
            t.as_ref()[..TAG_BYTES].try_into().unwrap()
        }
        fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
            use subtle::ConstantTimeEq;
            tag.len() == TAG_BYTES && bool::from(self.tag(data).ct_eq(tag))
        }
    }

    #[test]
    fn issued_tokens_carry_their_session_and_generation_and_are_distinct() {
        let (rng, tagger) = (SystemRandom::new(), TestTagger::new(1));
        let sid = uuid::Uuid::new_v4();
        let a = RefreshToken::issue(&rng, &tagger, sid, 7).unwrap();
        let b = RefreshToken::issue(&rng, &tagger, sid, 7).unwrap();
        assert_eq!(a.expose().len(), LOCATED_CHARS);
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
        assert!(a.matches(&a.hash()) && !a.matches(&b.hash()));
        let parsed = RefreshToken::parse(a.expose()).unwrap();
        let at = parsed.locate(&tagger).unwrap().unwrap();
        assert_eq!((at.session_id, at.generation), (sid, 7));
    }

    #[test]
    fn a_tag_from_another_key_or_an_edited_locator_is_forged() {
        let rng = SystemRandom::new();
        let sid = uuid::Uuid::new_v4();
        let t = RefreshToken::issue(&rng, &TestTagger::new(1), sid, 3).unwrap();
        assert_eq!(t.locate(&TestTagger::new(2)), Err(Forged));
        // Flip one bit of the generation: the tag no longer matches.
        let mut bytes = URL_SAFE_NO_PAD
            .decode(t.expose().strip_prefix(LOCATED_PREFIX).unwrap())
            .unwrap();
        bytes[19] ^= 1;
        let edited = format!("{LOCATED_PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes));
        let edited = RefreshToken::parse(&edited).unwrap();
        assert_eq!(edited.locate(&TestTagger::new(1)), Err(Forged));
    }

    #[test]
    fn legacy_tokens_still_parse_and_locate_to_nothing() {
        let t = RefreshToken::generate(&SystemRandom::new()).unwrap();
        assert_eq!(t.expose().len(), LEGACY_CHARS);
        let parsed = RefreshToken::parse(t.expose()).unwrap();
        assert_eq!(parsed.locate(&TestTagger::new(1)), Ok(None));
    }

    #[test]
    fn debug_is_redacted() {
        let t = RefreshToken::generate(&SystemRandom::new()).unwrap();
        assert!(!format!("{t:?}").contains(t.expose()));
    }

    #[test]
    fn truncated_oversized_and_wrong_version_tokens_do_not_parse() {
        let t = RefreshToken::issue(
            &SystemRandom::new(),
            &TestTagger::new(1),
            uuid::Uuid::new_v4(),
            0,
        )
        .unwrap();
        let text = t.expose();
        assert!(RefreshToken::parse(&text[..text.len() - 1]).is_err());
        assert!(RefreshToken::parse(&format!("{text}A")).is_err());
        assert!(RefreshToken::parse(&text.replacen("lk1_", "lk2_", 1)).is_err());
        assert!(RefreshToken::parse(&"A".repeat(100_000)).is_err());
    }

    proptest! {
        #[test]
        fn parse_accepts_only_the_two_issued_shapes(s in "\\PC{0,100}") {
            if let Ok(t) = RefreshToken::parse(&s) {
                let len = t.expose().len();
                prop_assert!(len == LEGACY_CHARS || len == LOCATED_CHARS);
                prop_assert!(t.expose().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }

        #[test]
        fn random_located_tokens_are_forged(body in "[A-Za-z0-9_-]{91}") {
            if let Ok(t) = RefreshToken::parse(&format!("lk1_{body}")) {
                prop_assert_eq!(t.locate(&TestTagger::new(1)), Err(Forged));
            }
        }
    }
}
