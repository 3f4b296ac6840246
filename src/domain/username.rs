//! Usernames under RFC 8265 (PRECIS): what may be a name, the key that makes two names
//! one account, and the skeleton that makes two names look alike.
//!
//! - **Syntax** (RFC 8265 §3.1): `userpart *(%x20 userpart)`, each userpart made of
//!   code points of the PRECIS IdentifierClass (RFC 8264 §4.2). Controls, spaces other
//!   than the single separator, symbols, non-ASCII punctuation, compatibility forms and
//!   default-ignorable code points (zero-width space, soft hyphen, bidi controls such as
//!   U+202E) are refused; a right-to-left userpart must satisfy the Bidi Rule
//!   (RFC 5893 §2).
//! - **Display form** ([`Username::as_str`]): each userpart through the
//!   UsernameCasePreserved profile (RFC 8265 §3.4: fullwidth and halfwidth forms mapped
//!   to their narrow forms, NFC). What is stored as `username` and shown.
//! - **Key** ([`Username::key`]): each userpart through UsernameCaseMapped (RFC 8265
//!   §3.3: width mapping, lower case, NFC). Two names with one key are one account:
//!   `ＡＬＩＣＥ`, `Alice` and `alice`, or `émile` typed precomposed or decomposed. Login
//!   looks names up, and throttling counts failures, by this key.
//! - **Skeleton** ([`Username::skeleton`]): the UTS #39 §4 skeleton of the display form,
//!   lower-cased, then skeletonised again, so names that only *look* alike share one
//!   (Cyrillic `аlice` and `alice`, `aIice` with a capital I and `alice`). Signup
//!   refuses a name whose skeleton an existing account already has.

use std::fmt;

use precis_profiles::precis_core::profile::Profile;
use precis_profiles::precis_core::Error as PrecisError;
use precis_profiles::{UsernameCaseMapped, UsernameCasePreserved};

/// A username accepted by the RFC 8265 profile, in its display form.
#[derive(Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

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
        let mut display = String::with_capacity(s.len());
        let mut key = String::with_capacity(s.len());
        for (i, part) in s.split(' ').enumerate() {
            if part.is_empty() {
                return Err("username words must be separated by single spaces");
            }
            if i > 0 {
                display.push(' ');
                key.push(' ');
            }
            display.push_str(&enforce(&UsernameCasePreserved::new(), part)?);
            key.push_str(&enforce(&UsernameCaseMapped::new(), part)?);
        }
        Ok(Self { display, key })
    }

    /// The display form (RFC 8265 UsernameCasePreserved, per userpart).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The uniqueness key (RFC 8265 UsernameCaseMapped, per userpart): names with one
    /// key are one account.
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The confusable skeleton (UTS #39 §4) of this name; see the module comment.
    pub fn skeleton(&self) -> String {
        skeleton_of(&self.display)
    }

    /// The key a login or throttle uses for `raw`: the profile's key when `raw` is a
    /// valid name, otherwise its plain lower case (which can only match an account
    /// created before the profile applied, so such an account can still sign in).
    pub fn lookup_key(raw: &str) -> String {
        Self::parse(raw).map_or_else(|_| raw.to_lowercase(), |n| n.key)
    }

    /// [`lookup_key`](Self::lookup_key) for a name a client sent to sign in, refusing
    /// what no account's name has ever held: more than 256 bytes, or a control
    /// character (NUL among them, which PostgreSQL cannot store). Anything else, valid
    /// or not, gets a key, so unknown and malformed-but-plausible names fail alike.
    pub fn login_key(raw: &str) -> Result<String, &'static str> {
        if raw.len() > USERNAME_MAX_BYTES {
            return Err("username must be at most 256 bytes");
        }
        if raw.chars().any(char::is_control) {
            return Err("username must not contain control characters");
        }
        Ok(Self::lookup_key(raw))
    }
}

/// UTS #39 skeleton of the display form, folded to lower case and skeletonised again
/// (the skeleton of `A` is `A`, and of `I` is `l`: folding in between makes `Alice`,
/// `aIice` and `alice` one skeleton, while keeping skeleton(skeleton) stable).
pub fn skeleton_of(display: &str) -> String {
    let once: String = unicode_security::skeleton(display).collect();
    unicode_security::skeleton(&once.to_lowercase()).collect()
}

fn enforce(profile: &impl Profile, part: &str) -> Result<String, &'static str> {
    profile
        .enforce(part)
        .map(|c| c.into_owned())
        .map_err(|e| match e {
            PrecisError::BadCodepoint(_) => {
                "username contains a character that is not allowed in names (RFC 8265): \
                 invisible, formatting, symbol or compatibility characters"
            }
            PrecisError::Invalid => {
                "username mixes right-to-left and left-to-right text in a way RFC 5893 forbids"
            }
            PrecisError::Unexpected(_) => "username is not a valid name",
        })
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Username").field(&self.display).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn login_keys_refuse_control_characters_and_overlong_names_only() {
        assert!(Username::login_key("al\0ice").is_err());
        assert!(Username::login_key("alice\u{7f}").is_err());
        assert!(Username::login_key(&"a".repeat(257)).is_err());
        assert_eq!(Username::login_key("Alice").unwrap(), "alice");
        // Not a valid name, but not malformed either: a lookup like any other.
        assert_eq!(Username::login_key(" Bob").unwrap(), " bob");
    }

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(Username::parse("alice").unwrap().as_str(), "alice");
        assert_eq!(Username::parse("Zoë Smith").unwrap().key(), "zoë smith");
        assert_eq!(Username::parse("Zoë Smith").unwrap().as_str(), "Zoë Smith");
        assert_eq!(Username::parse("a.b-c_d@e").unwrap().key(), "a.b-c_d@e");
        assert_eq!(Username::parse("Łukasz").unwrap().key(), "łukasz");
    }

    #[test]
    fn refuses_empty_padded_control_and_overlong() {
        assert!(Username::parse("").is_err());
        assert!(Username::parse(" alice").is_err());
        assert!(Username::parse("al\nice").is_err());
        assert!(Username::parse("alice  smith").is_err());
        assert!(Username::parse(&"a".repeat(257)).is_err());
        assert!(Username::parse(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn rfc8265_3_3_width_case_and_normalisation_give_one_key() {
        let alice = Username::parse("alice").unwrap();
        for same in ["ａｌｉｃｅ", "ALICE", "Ａｌｉｃｅ"] {
            assert_eq!(Username::parse(same).unwrap().key(), alice.key(), "{same}");
        }
        // Fullwidth is shown narrow too (UsernameCasePreserved).
        assert_eq!(Username::parse("ＡＬＩＣＥ").unwrap().as_str(), "ALICE");
        let nfc = Username::parse("\u{e9}mile").unwrap();
        let nfd = Username::parse("e\u{301}mile").unwrap();
        assert_eq!(nfc.key(), nfd.key());
        assert_eq!(nfc.as_str(), nfd.as_str());
    }

    #[test]
    fn rfc8264_9_default_ignorable_bidi_control_and_space_code_points_are_refused() {
        for bad in [
            "alice\u{200b}",    // zero-width space
            "al\u{ad}ice",      // soft hyphen
            "\u{202e}ecila",    // right-to-left override
            "ali\u{200d}ce",    // zero-width joiner outside its context
            "alice\u{a0}smith", // no-break space
            "alice\u{3000}x",   // ideographic space
            "alice\u{2028}",    // line separator
            "\u{fe0f}alice",    // variation selector
            "alice\u{2060}",    // word joiner
            "al\u{2126}ce",     // ohm sign (a compatibility character)
            "bob\u{1f600}",     // a symbol
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn uts39_confusables_share_a_skeleton() {
        let alice = Username::parse("alice").unwrap().skeleton();
        // (`ALICE` has alice's key, so it is the same account whatever its skeleton.)
        for look_alike in [
            "\u{430}lice",
            "aIice",
            "Alice",
            "\u{410}lice",
            "al\u{456}ce",
        ] {
            assert_eq!(
                Username::parse(look_alike).unwrap().skeleton(),
                alice,
                "{look_alike:?}"
            );
        }
        assert_ne!(Username::parse("bob").unwrap().skeleton(), alice);
        assert_ne!(Username::parse("alicia").unwrap().skeleton(), alice);
    }

    #[test]
    fn names_from_before_the_profile_still_have_a_lookup_key() {
        assert_eq!(Username::lookup_key("ALICE"), "alice");
        assert_eq!(Username::lookup_key("Alice\u{200b}"), "alice\u{200b}");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepted_values_keep_the_rules(s in ".{0,300}") {
            if let Ok(u) = Username::parse(&s) {
                prop_assert!(!u.as_str().is_empty());
                prop_assert!(!u.as_str().chars().any(char::is_control));
                prop_assert_eq!(u.as_str().trim(), u.as_str());
                // The key is stable: parsing a key gives the same key back.
                if u.key().len() <= USERNAME_MAX_BYTES {
                    let again = Username::parse(&u.key()).unwrap();
                    prop_assert_eq!(again.key(), u.key());
                }
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
