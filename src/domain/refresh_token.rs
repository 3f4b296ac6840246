use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// 32 bytes = 256 bits from the OS CSPRNG (RFC 9700 §4.14, ASVS v5 10.4.x; docs/contract.md "Standards checklist" #14).
const TOKEN_BYTES: usize = 32;
/// base64url without padding of 32 bytes.
const TOKEN_CHARS: usize = 43;

/// An opaque refresh token. Only its SHA-256 ([`RefreshToken::hash`]) is ever stored,
/// so a dump of the database alone yields no usable token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

pub type TokenHash = [u8; 32];

impl RefreshToken {
    pub fn generate(rng: &SystemRandom) -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; TOKEN_BYTES];
        rng.fill(&mut bytes)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts exactly the shape we issue; anything else cannot be one of ours.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.len() != TOKEN_CHARS {
            return Err("malformed refresh token");
        }
        match URL_SAFE_NO_PAD.decode(s) {
            Ok(b) if b.len() == TOKEN_BYTES => Ok(Self(s.to_owned())),
            _ => Err("malformed refresh token"),
        }
    }

    /// SHA-256 of the token. A fast hash is right here: the input is 256 random bits,
    /// so there is nothing to brute-force (unlike passwords).
    pub fn hash(&self) -> TokenHash {
        let d = digest::digest(&digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_are_43_base64url_chars_and_distinct() {
        let rng = SystemRandom::new();
        let a = RefreshToken::generate(&rng).unwrap();
        let b = RefreshToken::generate(&rng).unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(RefreshToken::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn debug_is_redacted() {
        let t = RefreshToken::generate(&SystemRandom::new()).unwrap();
        assert!(!format!("{t:?}").contains(t.expose()));
    }

    proptest! {
        #[test]
        fn parse_accepts_only_43_char_base64url(s in "\\PC{0,60}") {
            if let Ok(t) = RefreshToken::parse(&s) {
                prop_assert_eq!(t.expose().len(), 43);
                prop_assert!(t.expose().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }
    }
}
