//! Email addresses and the single-use secrets mailed to them (docs/contract.md "Email
//! and account recovery").

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;
use ring::rand::SecureRandom;

use crate::domain::TokenHash;

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets, so
/// an address is at most 254; the local part at most 64 (§4.5.3.1.1).
pub const EMAIL_MAX_BYTES: usize = 254;
const LOCAL_MAX_BYTES: usize = 64;

/// An email address in the one form latchkey stores and compares: surrounding white
/// space trimmed, the domain lower-cased. [`Email::key`] (the whole address
/// lower-cased) is what uniqueness and look-ups use, everywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        if s.is_empty() {
            return Err("email must not be empty");
        }
        if s.len() > EMAIL_MAX_BYTES {
            return Err("email must be at most 254 bytes");
        }
        if s.chars().any(|c| {
            c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';' | '"')
        }) {
            return Err("email must be a plain address such as name@example.com");
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err("email must be a plain address such as name@example.com");
        };
        if local.is_empty() || local.len() > LOCAL_MAX_BYTES || local.contains('@') {
            return Err("email must be a plain address such as name@example.com");
        }
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if !domain.contains('.') || !labels_ok {
            return Err("email must be a plain address such as name@example.com");
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive form: unique across users, and what look-ups compare.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Email").field(&self.0).finish()
    }
}

/// 32 random bytes, base64url without padding.
pub const SECRET_CHARS: usize = 43;

/// A password-reset or email-verification secret: 256 bits from the CSPRNG (OWASP
/// Forgot Password cheat sheet, "URL tokens"), mailed once; only its SHA-256 is stored.
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountSecret(String);

impl AccountSecret {
    pub fn generate(rng: &dyn SecureRandom) -> anyhow::Result<Self> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The shape only: 43 base64url characters. Anything else cannot have been issued.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == SECRET_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD.decode(s).is_ok_and(|b| b.len() == 32);
        ok.then(|| Self(s.to_owned()))
    }

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

impl fmt::Debug for AccountSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalise_one_way() {
        let e = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice.Smith@example.com");
        assert_eq!(e.key(), "alice.smith@example.com");
        assert_eq!(
            Email::parse("ALICE.smith@example.com").unwrap().key(),
            e.key()
        );
    }

    #[test]
    fn refuses_what_is_not_a_plain_address() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@localhost",
            "a b@example.com",
            "alice@exa mple.com",
            "Alice <alice@example.com>",
            "alice@example.com,bob@example.com",
            "alice@-example.com",
            "alice@example..com",
            "a\r\nBcc: x@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn secrets_are_256_bits_and_only_their_shape_parses() {
        let rng = ring::rand::SystemRandom::new();
        let a = AccountSecret::generate(&rng).unwrap();
        let b = AccountSecret::generate(&rng).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), SECRET_CHARS);
        assert_eq!(AccountSecret::parse(a.expose()), Some(a.clone()));
        assert!(AccountSecret::parse("short").is_none());
        assert!(AccountSecret::parse(&"!".repeat(43)).is_none());
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
