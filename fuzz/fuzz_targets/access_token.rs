//! The strict access-token verifier on arbitrary text: never a panic, and nothing but a
//! token latchkey itself signed is ever accepted.
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use latchkey::clock::{Clock, SystemClock};
use latchkey::domain::Algorithm;
use latchkey::keys::Keys;
use latchkey::tokens::{Audience, TokenService};
use libfuzzer_sys::fuzz_target;

fn service() -> &'static TokenService {
    static SERVICE: OnceLock<(TokenService, tempfile::TempDir)> = OnceLock::new();
    &SERVICE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let keys = Keys::load_or_generate(
                dir.path(),
                Algorithm::ES256,
                std::time::Duration::from_secs(3600),
                SystemClock.now_millis(),
            )
            .unwrap();
            let service = TokenService::new(
                "https://auth.example.com".into(),
                HashSet::from(["latchkey".to_owned()]),
                30,
                Arc::new(keys),
                Arc::new(SystemClock),
            );
            (service, dir)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // A fresh key signed nothing the fuzzer could know: every input is refused.
        assert!(service().verify(text, Audience::Issued).is_err());
    }
});
