use std::collections::BTreeSet;

/// An OAuth scope (RFC 6749 §3.3): space-separated tokens of `%x21 / %x23-5B / %x5D-7E`,
/// kept as a sorted set so comparisons and the `scope` claim are canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.len() > 1024 {
            return Err("scope must be at most 1024 bytes");
        }
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err("scope tokens use printable ASCII without '\"' or '\\'");
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn allowed_by(&self, allowed: &[String]) -> bool {
        self.0.iter().all(|s| allowed.iter().any(|a| a == s))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Space-separated, as in the `scope` claim and parameter.
    pub fn to_claim(&self) -> String {
        self.0
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc6749_3_3_scope_is_a_space_separated_set() {
        let s = Scope::parse("write read  read").unwrap();
        assert_eq!(s.to_claim(), "read write");
        assert!(Scope::parse("").unwrap().is_empty());
        assert!(Scope::parse("bad\"quote").is_err());
        assert!(Scope::parse("back\\slash").is_err());
    }

    #[test]
    fn narrowing_is_a_subset() {
        let wide = Scope::parse("a b c").unwrap();
        assert!(Scope::parse("a c").unwrap().is_subset_of(&wide));
        assert!(!Scope::parse("a d").unwrap().is_subset_of(&wide));
    }

    proptest! {
        #[test]
        fn to_claim_round_trips(s in "[!#-\\[\\]-~ ]{0,100}") {
            let a = Scope::parse(&s).unwrap();
            let b = Scope::parse(&a.to_claim()).unwrap();
            prop_assert_eq!(a, b);
        }
    }
}
