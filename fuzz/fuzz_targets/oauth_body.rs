//! The `/oauth/token`, `/oauth/revoke` and `/oauth/introspect` body parser (form and
//! JSON, duplicate detection, strict UTF-8): any input is a value or an `ApiError`
//! that maps to a 4xx, never a panic and never a 5xx.
#![no_main]

use latchkey::routes::extract::OAuthParams;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 5] = [
    "application/x-www-form-urlencoded",
    "application/json",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/merge-patch+json",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    if let Err(e) = OAuthParams::parse_raw(content_type, body) {
        let status = e.status();
        assert!((400..500).contains(&status), "{content_type}: {e} -> {status}");
    }
});
