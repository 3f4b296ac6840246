//! The access token verified by an independent implementation (Python PyJWT's
//! `PyJWKClient` against the served JWKS), not the code that signed it.

use std::process::Command;

use crate::helpers::spawn_app;

fn run_pyjwt(base: &str, token: &str, audience: &str) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/verify_pyjwt.py");
    let out = Command::new("python3")
        .args([script, base, token, audience])
        .output()
        .expect("python3 runs (install tests/requirements.txt)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn pyjwt_verifies_the_access_token_through_the_served_jwks() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let base = app.base.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || run_pyjwt(&base, &t.access, "latchkey"))
        .await
        .unwrap();
    assert!(ok, "PyJWT refused the token: {out}");
    assert!(out.contains("VERIFIED"), "{out}");
}

#[tokio::test]
async fn pyjwt_refuses_a_tampered_token_and_a_wrong_audience() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let mut parts: Vec<String> = t.access.split('.').map(str::to_owned).collect();
    // Flip one character of the payload: the signature no longer matches.
    let mut payload = parts[1].clone().into_bytes();
    payload[10] = if payload[10] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(payload).unwrap();
    let tampered = parts.join(".");
    let base = app.base.clone();
    let access = t.access.clone();
    let (tampered_ok, wrong_aud_ok) = tokio::task::spawn_blocking(move || {
        (
            run_pyjwt(&base, &tampered, "latchkey").0,
            run_pyjwt(&base, &access, "someone-else").0,
        )
    })
    .await
    .unwrap();
    assert!(!tampered_ok, "a tampered token must not verify");
    assert!(!wrong_aud_ok, "a wrong audience must not verify");
}
