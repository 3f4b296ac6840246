//! The newtype parsers every request goes through: never a panic, and what parses keeps
//! its documented limits.
#![no_main]

use latchkey::domain::{ClientId, Password, RefreshToken, Scope, Username};
use libfuzzer_sys::fuzz_target;

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
    if RefreshToken::parse(text).is_ok() {
        assert_eq!(text.len(), 43);
    }
    let _ = Scope::parse(text);
    let _ = ClientId::parse(text);
});
