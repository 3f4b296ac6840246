use std::fmt;

/// A username: 1 to 256 bytes, no control characters, no leading or trailing white
/// space. Uniqueness is case-insensitive (see [`Username::key`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Username(String);

pub const USERNAME_MAX_BYTES: usize = 256;

impl Username {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("username must not be empty");
        }
        if s.len() > USERNAME_MAX_BYTES {
            return Err("username must be at most 256 bytes");
        }
        if s.chars().any(char::is_control) {
            return Err("username must not contain control characters");
        }
        if s.trim() != s {
            return Err("username must not start or end with white space");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for the uniqueness check, so `Alice` and `alice` are one account.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Username").field(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(Username::parse("alice").unwrap().as_str(), "alice");
        assert_eq!(Username::parse("Zoë Smith").unwrap().key(), "zoë smith");
    }

    #[test]
    fn refuses_empty_padded_control_and_overlong() {
        assert!(Username::parse("").is_err());
        assert!(Username::parse(" alice").is_err());
        assert!(Username::parse("al\nice").is_err());
        assert!(Username::parse(&"a".repeat(257)).is_err());
        assert!(Username::parse(&"a".repeat(256)).is_ok());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepted_values_keep_the_rules(s in ".{0,300}") {
            if let Ok(u) = Username::parse(&s) {
                prop_assert!(!u.as_str().is_empty() && u.as_str().len() <= USERNAME_MAX_BYTES);
                prop_assert!(!u.as_str().chars().any(char::is_control));
                prop_assert_eq!(u.as_str(), s.as_str());
            }
        }

        #[test]
        fn case_variants_share_a_key(s in "[a-zA-Z0-9]{1,40}") {
            let a = Username::parse(&s).unwrap();
            let b = Username::parse(&s.to_uppercase()).unwrap();
            prop_assert_eq!(a.key(), b.key());
        }
    }
}
