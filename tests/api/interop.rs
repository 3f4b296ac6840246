//! Access tokens verified by independent implementations through the served JWKS, not
//! by the code that signed them: Python PyJWT (`PyJWKClient`) and Node `jose`
//! (`createRemoteJWKSet`), for every algorithm (RFC 9068 §2.1 requires RS256; ES256 is
//! the default; EdDSA per RFC 8037). Each verifier is one long-running process, like a
//! resource server, so a key rotation exercises its JWKS cache and refetch on unknown kid.

use std::process::Stdio;
use std::time::Duration;

use latchkey::domain::Algorithm;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::helpers::{kid_of, spawn_app, spawn_app_with, TestApp, ISSUER};

const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// A third-party verifier process: one token per line in, one verdict per line out.
struct Verifier {
    name: &'static str,
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Verifier {
    async fn start(name: &'static str, base: &str, audience: &str) -> Self {
        let mut cmd = match name {
            "pyjwt" => {
                let mut c = Command::new("python3");
                c.arg(format!("{INTEROP}/verify_pyjwt.py"));
                c
            }
            "jose" => {
                let mut c = Command::new("node");
                c.arg(format!("{INTEROP}/verify_jose.mjs"))
                    // Let jose refetch at once on an unknown kid (its default cool-down
                    // is 30 s) so the rotation below needs no sleep.
                    .env("JOSE_COOLDOWN_MS", "0");
                c
            }
            _ => unreachable!(),
        };
        let mut child = cmd
            .args([base, audience])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} runs (see scripts/test for its install): {e}"));
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            name,
            _child: child,
            stdin,
            lines,
        }
    }

    async fn check(&mut self, token: &str) -> String {
        self.stdin
            .write_all(format!("{token}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{} answered nothing in 30 s", self.name))
            .unwrap()
            .unwrap_or_else(|| panic!("{} exited", self.name));
        line
    }

    async fn assert_verifies(&mut self, token: &str, kid: &str) {
        let verdict = self.check(token).await;
        assert!(
            verdict.starts_with("VERIFIED") && verdict.contains(kid),
            "{} should verify the token signed by {kid}: {verdict}",
            self.name
        );
    }
}

/// Both verifiers accept tokens of `alg`, then, after `keys rotate --now` by the CLI in
/// another process, accept tokens from the new key (refetching the JWKS on the unknown
/// kid) and still accept the old key's unexpired tokens.
async fn both_verifiers_follow_a_rotation(alg: Algorithm) {
    let app = spawn_app_with(|s| s.keys.algorithm = alg).await;
    let first = app.user_with_session("alice").await;
    let (header, _) = crate::helpers::jwt_parts(&first.access);
    assert_eq!(header["alg"], alg.as_str());
    let kid_a = kid_of(&first.access);

    let mut verifiers = vec![
        Verifier::start("pyjwt", &app.base, ISSUER).await,
        Verifier::start("jose", &app.base, ISSUER).await,
    ];
    for v in &mut verifiers {
        v.assert_verifies(&first.access, &kid_a).await;
    }

    let kid_b = rotate_now(&app).await;
    let second = app.login("alice").await;
    assert_eq!(kid_of(&second.access), kid_b, "the new key signs");
    for v in &mut verifiers {
        v.assert_verifies(&second.access, &kid_b).await;
        v.assert_verifies(&first.access, &kid_a).await;
    }
}

async fn rotate_now(app: &TestApp) -> String {
    let kid = app.keys_cli(&["rotate", "--now"]).await.trim().to_owned();
    app.wait_for_jwks(&kid, true).await;
    // The CLI stamped the rotation with the wall clock; the server's clock is manual.
    app.catch_up_with_wall_clock();
    kid
}

#[tokio::test]
async fn es256_tokens_verify_with_pyjwt_and_jose_across_a_rotation() {
    both_verifiers_follow_a_rotation(Algorithm::ES256).await;
}

#[tokio::test]
async fn eddsa_tokens_verify_with_pyjwt_and_jose_across_a_rotation() {
    both_verifiers_follow_a_rotation(Algorithm::EdDSA).await;
}

#[tokio::test]
async fn rfc9068_2_1_rs256_tokens_verify_with_pyjwt_and_jose_across_a_rotation() {
    both_verifiers_follow_a_rotation(Algorithm::RS256).await;
}

#[tokio::test]
async fn third_party_verifiers_refuse_a_tampered_token_and_a_wrong_audience() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let mut parts: Vec<String> = t.access.split('.').map(str::to_owned).collect();
    // Flip one character of the payload: the signature no longer matches.
    let mut payload = parts[1].clone().into_bytes();
    payload[10] = if payload[10] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(payload).unwrap();
    let tampered = parts.join(".");
    for name in ["pyjwt", "jose"] {
        let mut v = Verifier::start(name, &app.base, ISSUER).await;
        let verdict = v.check(&tampered).await;
        assert!(verdict.starts_with("REFUSED"), "{name}: {verdict}");
        let mut other = Verifier::start(name, &app.base, "someone-else").await;
        let verdict = other.check(&t.access).await;
        assert!(verdict.starts_with("REFUSED"), "{name}: {verdict}");
    }
}
