use crate::secret::Secret;

/// Byte cap checked before any hashing, so a huge password costs nothing (API.md).
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
}

impl Password {
    /// Applies the full policy (for signup and password change).
    pub fn parse(s: String) -> Result<Self, PasswordError> {
        let candidate = Self::parse_for_login(s)?;
        if candidate.0.expose().chars().count() < PASSWORD_MIN_CHARS {
            return Err(PasswordError::TooShort);
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
        assert!(Password::parse("12345678".into()).is_ok());
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
