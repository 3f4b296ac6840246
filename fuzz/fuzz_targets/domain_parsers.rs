//! The newtype parsers every request goes through: never a panic, and what parses keeps
//! its documented limits.
#![no_main]

use latchkey::domain::{ClientId, Password, RefreshToken, Scope, Username};
use libfuzzer_sys::fuzz_target;

/// A fixed key: fuzzed input cannot carry its tag.
struct Tagger;

impl latchkey::domain::TokenTagger for Tagger {
    fn tag(&self, data: &[u8]) -> [u8; 16] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"fuzz");
        ring::hmac::sign(&key, data).as_ref()[..16].try_into().unwrap()
    }
    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        self.tag(data).as_slice() == tag
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if Username::parse(text).is_ok() {
        assert!(text.len() <= 256);
    }
    if let Ok(p) = Password::parse(text.to_owned()) {
        assert!(text.len() <= 1024 && text.chars().count() >= 8);
        assert_eq!(p.expose(), text, "never truncated");
    }
    // Legacy (43) or located (`lk1_…`, 95): never anything else, and a located token
    // with a made-up tag is refused before any lookup.
    if let Ok(t) = RefreshToken::parse(text) {
        assert!(text.len() == 43 || text.len() == latchkey::domain::LOCATED_TOKEN_CHARS);
        assert!(t.locate(&Tagger).is_err() || t.locate(&Tagger) == Ok(None));
    }
    let _ = Scope::parse(text);
    let _ = ClientId::parse(text);
});
