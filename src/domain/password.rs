use crate::secret::Secret;

/// Byte cap checked before any hashing, so a huge password costs nothing (docs/contract.md "Conventions").
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// ASVS v5 6.2.1: at least 8 characters.
pub const PASSWORD_MIN_CHARS: usize = 8;

/// A password for a new account or a password change: 8+ characters, at most 1024
/// bytes, no composition rules, never truncated (ASVS v5 6.2.1–6.2.5). Never printed.
#[derive(Clone)]
pub struct Password(Secret<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password must be at most 1024 bytes")]
    TooLong,
    #[error("password must be at least 8 characters")]
    TooShort,
    #[error("this password is one of the most common passwords; choose another (several unrelated words make a strong one)")]
    TooCommon,
}

/// The 10,000 most common passwords (lower-cased, most common first): the head of the
/// list Django ships (Royce Williams' 20,000 most common, BSD-3-Clause). ASVS v5 6.2.4.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// Whether `candidate` is on the common list (compared lower-cased, so `Password1` is
/// as weak as `password1`). The set is immutable data built once on first use.
pub fn is_common(candidate: &str) -> bool {
    static SET: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    let set = SET.get_or_init(|| COMMON_PASSWORDS.lines().collect());
    set.contains(candidate.to_lowercase().as_str())
}

impl Password {
    /// Applies the full policy (for signup and password change).
    pub fn parse(s: String) -> Result<Self, PasswordError> {
        let candidate = Self::parse_for_login(s)?;
        if candidate.0.expose().chars().count() < PASSWORD_MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if is_common(candidate.0.expose()) {
            return Err(PasswordError::TooCommon);
        }
        Ok(candidate)
    }

    /// Only the length cap: a login attempt with a short password is simply wrong, and
    /// answering it differently would tell an attacker about the policy, not the account.
    pub fn parse_for_login(s: String) -> Result<Self, PasswordError> {
        if s.len() > PASSWORD_MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(Secret::new(s)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn asvs_6_2_1_needs_eight_characters_not_bytes() {
        assert_eq!(
            Password::parse("1234567".into()).unwrap_err(),
            PasswordError::TooShort
        );
        assert!(Password::parse("q7w3x9z2".into()).is_ok());
        // Eight characters, more bytes: counts as eight.
        assert!(Password::parse("ééééàààà".into()).is_ok());
    }

    #[test]
    fn asvs_6_2_9_at_least_64_characters_are_allowed_and_1024_bytes_cap() {
        assert!(Password::parse("x".repeat(64)).is_ok());
        assert!(Password::parse("x".repeat(1024)).is_ok());
        assert_eq!(
            Password::parse("x".repeat(1025)).unwrap_err(),
            PasswordError::TooLong
        );
    }

    #[test]
    fn asvs_6_2_4_the_10000_most_common_passwords_are_refused_in_any_case() {
        assert_eq!(COMMON_PASSWORDS.lines().count(), 10_000);
        for common in [
            "password",
            "Password",
            "PASSWORD1",
            "12345678",
            "iloveyou",
            "qwertyuiop",
        ] {
            assert_eq!(
                Password::parse(common.into()).unwrap_err(),
                PasswordError::TooCommon,
                "{common}"
            );
        }
        // The last entry of the list is in; a passphrase is not.
        let last = COMMON_PASSWORDS.lines().last().unwrap();
        assert!(is_common(last));
        assert!(Password::parse("correct horse battery staple".into()).is_ok());
        // Login never applies the policy: an old common password still logs in.
        assert!(Password::parse_for_login("password".into()).is_ok());
    }

    #[test]
    fn asvs_6_2_5_no_composition_rules() {
        for ok in [
            "alllowercase",
            "ALLUPPERCASE",
            "5820163947",
            "        spaces",
            "ñandú ñandú",
        ] {
            assert!(Password::parse(ok.into()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn debug_does_not_print_the_password() {
        let p = Password::parse("correct horse battery".into()).unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }

    proptest! {
        #[test]
        fn parse_never_truncates(s in ".{0,200}") {
            if let Ok(p) = Password::parse(s.clone()) {
                prop_assert_eq!(p.expose(), s.as_str());
                prop_assert!(s.chars().count() >= PASSWORD_MIN_CHARS);
            }
        }
    }
}
