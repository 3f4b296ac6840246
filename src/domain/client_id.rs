/// An OAuth client identifier: 1–64 characters of `A-Z a-z 0-9 - _ . :`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() || s.len() > 64 {
            return Err("client_id must be 1 to 64 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err("client_id may use letters, digits, '-', '_', '.' and ':' only");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_typical_ids_and_refuses_odd_ones() {
        assert!(ClientId::parse("default").is_ok());
        assert!(ClientId::parse("spa.example:v2").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("a b").is_err());
        assert!(ClientId::parse("../etc").is_err());
        assert!(ClientId::parse(&"a".repeat(65)).is_err());
    }

    proptest! {
        #[test]
        fn accepted_ids_use_only_the_safe_alphabet(s in "\\PC{0,80}") {
            if let Ok(c) = ClientId::parse(&s) {
                prop_assert!(c.as_str().bytes().all(|b| b.is_ascii_graphic()));
                prop_assert!(!c.as_str().is_empty() && c.as_str().len() <= 64);
            }
        }
    }
}
