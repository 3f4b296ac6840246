//! Time-based one-time passwords (RFC 6238) and recovery codes: the values of the second
//! factor and their parsers (docs/contract.md "Second factor"). HMAC-SHA1 and the
//! dynamic truncation come from the `totp-rs` crate; this file only decides which time
//! steps a code may match and that a step is never accepted twice.

use std::fmt;

use ring::digest;
use ring::rand::SecureRandom;
use totp_rs::{Algorithm, Secret as Base32Secret, TOTP};

use crate::clock::Millis;
use crate::domain::TokenHash;

/// RFC 6238 §5.2: the recommended 30-second time step.
pub const STEP_SECS: u64 = 30;
/// Codes have six digits (RFC 4226 §5.3 minimum; what authenticator apps show).
pub const DIGITS: usize = 6;
/// RFC 6238 §5.2: at most one step of drift either way.
pub const DRIFT_STEPS: i64 = 1;
/// RFC 4226 §4 R6: the shared secret is at least 128 bits; 160 (the HMAC-SHA1 block
/// output) as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

/// A TOTP shared secret. Never printed; stored only sealed (`keys::Sealer`).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    /// 160 bits from the CSPRNG.
    pub fn generate(rng: &dyn SecureRandom) -> anyhow::Result<Self> {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rng.fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as `otpauth://` URIs carry it.
    pub fn base32(&self) -> String {
        match Base32Secret::Raw(self.0.clone()).to_encoded() {
            Base32Secret::Encoded(s) => s.trim_end_matches('=').to_owned(),
            Base32Secret::Raw(_) => unreachable!("to_encoded returns the encoded form"),
        }
    }

    fn totp(&self, digits: usize) -> TOTP {
        // RFC 6238 §1.2 / §4: HMAC-SHA1, T0 = 0, X = 30 s. The crate's own skew is not
        // used: `verify` walks the steps itself so it can refuse replays.
        TOTP::new_unchecked(Algorithm::SHA1, digits, 0, STEP_SECS, self.0.clone())
    }

    /// The code of time step `step` (RFC 6238 §4.2: T = floor(time / X)).
    pub fn code_at_step(&self, step: i64, digits: usize) -> String {
        let secs = u64::try_from(step).unwrap_or(0).saturating_mul(STEP_SECS);
        self.totp(digits).generate(secs)
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

/// The time step at `now` (RFC 6238 §4.2).
pub fn step_at(now: Millis) -> i64 {
    now.div_euclid(1000).div_euclid(STEP_SECS as i64)
}

/// A code as typed: exactly six ASCII digits (surrounding whitespace and one space in
/// the middle, as apps display `123 456`, are ignored). Anything else cannot be a code.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let joined: String = match s.split_once(' ') {
            Some((a, b)) if a.len() == 3 && b.len() == 3 => format!("{a}{b}"),
            Some(_) => return None,
            None => s.to_owned(),
        };
        (joined.len() == DIGITS && joined.bytes().all(|b| b.is_ascii_digit()))
            .then_some(Self(joined))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode([redacted])")
    }
}

/// The step `code` belongs to, if it is the code of the current step or one step either
/// side (RFC 6238 §5.2 drift) and that step is later than `last_used` (RFC 6238 §5.2:
/// "the verifier MUST NOT accept the second attempt of the same OTP"; refusing every
/// step up to the last used one also refuses an older code captured earlier). Every
/// candidate is compared, in constant time.
pub fn verify(
    secret: &TotpSecret,
    code: &TotpCode,
    now: Millis,
    last_used: Option<i64>,
) -> Option<i64> {
    use subtle::ConstantTimeEq;
    let current = step_at(now);
    let mut matched = None;
    for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
        let expected = secret.code_at_step(step, DIGITS);
        let equal: bool = expected.as_bytes().ct_eq(code.0.as_bytes()).into();
        if equal && last_used.is_none_or(|last| step > last) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// How many recovery codes an enrolment (or a regeneration) hands out.
pub const RECOVERY_CODES: usize = 10;
/// Characters of a recovery code: lower-case letters and digits without the easily
/// confused `i l o u` (Crockford's base32 alphabet), 5 bits each.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 16 characters: 80 bits, far beyond guessing within the login throttle (OWASP MFA
/// cheat sheet: recovery codes are single-use and random).
const RECOVERY_CHARS: usize = 16;

/// A single-use recovery code, shown as `xxxx-xxxx-xxxx-xxxx`. Stored only as its
/// SHA-256 (it carries 80 random bits, so a fast hash is enough, like account tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    pub fn generate(rng: &dyn SecureRandom) -> anyhow::Result<Self> {
        let mut bytes = [0u8; RECOVERY_CHARS];
        rng.fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        // 256 is a multiple of 32: taking the low five bits keeps every character
        // equally likely.
        let s = bytes
            .iter()
            .map(|b| RECOVERY_ALPHABET[usize::from(b & 31)] as char)
            .collect();
        Ok(Self(s))
    }

    /// As typed: case, hyphens and spaces do not matter; exactly 16 characters of the
    /// alphabet must remain.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 64 {
            return None;
        }
        let mut out = String::with_capacity(RECOVERY_CHARS);
        for c in s.chars() {
            match c {
                '-' | ' ' => {}
                c if c.is_ascii()
                    && RECOVERY_ALPHABET.contains(&(c.to_ascii_lowercase() as u8)) =>
                {
                    out.push(c.to_ascii_lowercase())
                }
                _ => return None,
            }
        }
        (out.len() == RECOVERY_CHARS).then_some(Self(out))
    }

    /// Grouped in fours for reading aloud and typing.
    pub fn display(&self) -> String {
        self.0
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("-")
    }

    pub fn hash(&self) -> TokenHash {
        let d = digest::digest(&digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6238 Appendix B, the SHA-1 rows: the 20-byte ASCII secret "1234567890…",
    /// eight digits, X = 30 s.
    #[test]
    fn rfc6238_appendix_b_sha1_test_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let vectors: [(i64, &str); 6] = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, code) in vectors {
            let step = time / STEP_SECS as i64;
            assert_eq!(secret.code_at_step(step, 8), code, "T = {time}");
            assert_eq!(step_at(time * 1000), step);
        }
    }

    #[test]
    fn rfc6238_5_2_one_step_of_drift_either_way_and_no_more() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let now: Millis = 1_234_567_890_000;
        let step = step_at(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = TotpCode::parse(&secret.code_at_step(step + offset, DIGITS)).unwrap();
            assert_eq!(
                verify(&secret, &code, now, None).is_some(),
                accepted,
                "{offset}"
            );
        }
    }

    #[test]
    fn rfc6238_5_2_a_step_at_or_before_the_last_used_one_is_refused() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let now: Millis = 1_234_567_890_000;
        let step = step_at(now);
        let code = TotpCode::parse(&secret.code_at_step(step, DIGITS)).unwrap();
        assert_eq!(verify(&secret, &code, now, Some(step - 1)), Some(step));
        assert_eq!(verify(&secret, &code, now, Some(step)), None);
        let older = TotpCode::parse(&secret.code_at_step(step - 1, DIGITS)).unwrap();
        assert_eq!(verify(&secret, &older, now, Some(step)), None);
    }

    #[test]
    fn secrets_are_160_bits_in_unpadded_base32_and_never_printed() {
        let rng = ring::rand::SystemRandom::new();
        let s = TotpSecret::generate(&rng).unwrap();
        assert_eq!(s.expose().len(), 20);
        assert_eq!(s.base32().len(), 32);
        assert!(!s.base32().contains('='));
        assert_eq!(format!("{s:?}"), "TotpSecret([redacted])");
    }

    #[test]
    fn recovery_codes_round_trip_through_their_display_form() {
        let rng = ring::rand::SystemRandom::new();
        let c = RecoveryCode::generate(&rng).unwrap();
        let shown = c.display();
        assert_eq!(shown.len(), 19);
        assert_eq!(RecoveryCode::parse(&shown), Some(c.clone()));
        assert_eq!(RecoveryCode::parse(&shown.to_uppercase()), Some(c.clone()));
        assert_eq!(
            RecoveryCode::parse(&shown.replace('-', "")),
            Some(c.clone())
        );
        assert!(!format!("{c:?}").contains(&shown));
    }

    proptest! {
        /// Only six digits (optionally split 3 + 3 by one space, padded by whitespace)
        /// parse as a code, and parsing never panics.
        #[test]
        fn totp_code_parser_accepts_exactly_six_digits(s in "\\PC{0,12}") {
            let parsed = TotpCode::parse(&s);
            let t = s.trim();
            let digits: String = t.chars().filter(|c| *c != ' ').collect();
            let shape_ok = digits.len() == 6
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (t.len() == 6 || (t.len() == 7 && t.as_bytes()[3] == b' '));
            prop_assert_eq!(parsed.is_some(), shape_ok);
            if let Some(c) = parsed {
                prop_assert_eq!(c.expose(), digits);
            }
        }

        #[test]
        fn totp_code_parser_accepts_every_six_digit_code(n in 0u32..1_000_000) {
            let s = format!("{n:06}");
            prop_assert_eq!(TotpCode::parse(&s).map(|c| c.expose().to_owned()), Some(s));
        }

        /// A recovery code parses iff 16 alphabet characters remain after dropping
        /// hyphens and spaces; the result is the lower-case form.
        #[test]
        fn recovery_code_parser_normalises_or_refuses(s in "[0-9a-zA-Z\\- ]{0,24}|\\PC{0,24}") {
            let parsed = RecoveryCode::parse(&s);
            let kept: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
            let ok = kept.len() == 16
                && kept.chars().all(|c| c.is_ascii()
                    && RECOVERY_ALPHABET.contains(&(c.to_ascii_lowercase() as u8)));
            prop_assert_eq!(parsed.is_some(), ok);
            if let Some(c) = parsed {
                prop_assert_eq!(c.display().replace('-', ""), kept.to_ascii_lowercase());
            }
        }

        #[test]
        fn generated_recovery_codes_always_parse_back(seed in any::<[u8; 16]>()) {
            let s: String = seed.iter().map(|b| RECOVERY_ALPHABET[usize::from(b & 31)] as char).collect();
            let c = RecoveryCode(s);
            prop_assert_eq!(RecoveryCode::parse(&c.display()), Some(c));
        }
    }
}
