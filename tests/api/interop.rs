//! Access tokens verified by independent implementations through the served JWKS, not
//! by the code that signed them: Python PyJWT (`PyJWKClient`) and Node `jose`
//! (`createRemoteJWKSet`), for every algorithm (RFC 9068 §2.1 requires RS256; ES256 is
//! the default; EdDSA per RFC 8037). Each verifier is one long-running process, like a
//! resource server, so a key rotation exercises its JWKS cache and refetch on unknown kid.
//!
//! Then whole OAuth client libraries with no glue but configuration: Python Authlib
//! (`OAuth2Session`, its RFC 9068 validator, RFC 8414 metadata, introspection and
//! revocation) and Node oauth4webapi (discovery, refresh, `validateJwtAccessToken`,
//! introspection, revocation); and the verifier snippets of docs/resource-server-guide.md
//! for PyJWT, `jose` and Rust `jsonwebtoken`, run as printed.

use std::process::Stdio;
use std::time::Duration;

use latchkey::domain::Algorithm;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::helpers::{
    kid_of, spawn_app, spawn_app_with, TestApp, API_AUDIENCE, ISSUER, PASSWORD, RS_ID, RS_SECRET,
};

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
#[ignore = "needs Python and Node test packages: scripts/test runs it"]
async fn es256_tokens_verify_with_pyjwt_and_jose_across_a_rotation() {
    both_verifiers_follow_a_rotation(Algorithm::ES256).await;
}

#[tokio::test]
#[ignore = "needs Python and Node test packages: scripts/test runs it"]
async fn eddsa_tokens_verify_with_pyjwt_and_jose_across_a_rotation() {
    both_verifiers_follow_a_rotation(Algorithm::EdDSA).await;
}

#[tokio::test]
#[ignore = "needs Python and Node test packages: scripts/test runs it"]
async fn rfc9068_2_1_rs256_tokens_verify_with_pyjwt_and_jose_across_a_rotation() {
    both_verifiers_follow_a_rotation(Algorithm::RS256).await;
}

#[tokio::test]
#[ignore = "needs Python and Node test packages: scripts/test runs it"]
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

/// An https issuer, as strict clients (Authlib's metadata checks, oauth4webapi) require;
/// the test server itself listens on http://127.0.0.1, and the clients fetch the issuer's
/// paths from there.
const PUBLIC_ISSUER: &str = "https://auth.example.test";
/// A resource server whose secret has the characters form-encoding changes.
const ODD_RS_ID: &str = "odd-api";
const ODD_RS_SECRET: &str = "s3cret+with%25and&more=0123456789";

/// A server for whole-client tests: the https issuer, short access tokens (so a client
/// sees several expiries in seconds), resource servers for the API and the issuer, and
/// a clock that follows the wall clock (the clients read the real one).
async fn client_app(access_ttl_secs: u64) -> TestApp {
    let app = spawn_app_with(|s| {
        s.issuer = PUBLIC_ISSUER.into();
        s.access_token.ttl = latchkey::config::HumanDuration::secs(access_ttl_secs);
        let audiences = vec![API_AUDIENCE.to_owned(), PUBLIC_ISSUER.to_owned()];
        s.resource_servers[0].audiences = audiences.clone();
        s.resource_servers
            .push(latchkey::config::ResourceServerSettings {
                id: ODD_RS_ID.into(),
                secret: latchkey::secret::Secret::new(ODD_RS_SECRET.into()),
                audiences,
            });
    })
    .await;
    let clock = app.clock.clone();
    tokio::spawn(async move {
        loop {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            clock.catch_up(wall);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    app
}

/// Runs a client script to completion (at most 3 minutes); its `OK` lines.
async fn run_client(program: &str, args: &[&str]) -> Vec<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in 3 minutes"))
    .unwrap_or_else(|e| panic!("{program} runs (see scripts/test for its install): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {:?} failed:\n{stdout}\n{stderr}",
        args.first()
    );
    stdout
        .lines()
        .filter(|l| l.starts_with("OK "))
        .map(str::to_owned)
        .collect()
}

/// Authlib: RFC 8414 `validate()`, the RFC 9068 `JWTBearerTokenValidator` on tokens without `roles` or
/// `scope`, `OAuth2Session` refreshing by itself across three expiries with rotation,
/// and introspection and revocation as a resource server whose secret contains `+%&`
/// (HTTP Basic sent raw, and `client_secret_post`).
#[tokio::test]
#[ignore = "needs Python and Node test packages: scripts/test runs it"]
async fn authlib_refreshes_validates_introspects_and_revokes_with_no_glue() {
    let app = client_app(3).await;
    app.signup("alice", PASSWORD).await;
    let ok = run_client(
        "python3",
        &[
            &format!("{INTEROP}/authlib_client.py"),
            &app.base,
            "alice",
            PASSWORD,
            API_AUDIENCE,
            ODD_RS_ID,
            ODD_RS_SECRET,
        ],
    )
    .await;
    assert_eq!(ok.len(), 5, "{ok:#?}");
    assert!(
        ok.iter().any(|l| l.contains("across 3 expiries")),
        "{ok:#?}"
    );
}

/// oauth4webapi: discovery, the refresh grant as a public client, RFC 9068
/// `validateJwtAccessToken`, introspection by `client_secret_post` and
/// `client_secret_basic`, and revocation.
#[tokio::test]
#[ignore = "needs Python and Node test packages: scripts/test runs it"]
async fn oauth4webapi_discovers_refreshes_validates_introspects_and_revokes_with_no_glue() {
    let app = client_app(60).await;
    app.signup("alice", PASSWORD).await;
    let ok = run_client(
        "node",
        &[
            &format!("{INTEROP}/oauth4webapi_client.mjs"),
            &app.base,
            PUBLIC_ISSUER,
            "alice",
            PASSWORD,
            RS_ID,
            RS_SECRET,
        ],
    )
    .await;
    assert_eq!(ok.len(), 6, "{ok:#?}");
}

// The Rust verifier of docs/resource-server-guide.md, verbatim (a test checks the guide
// prints exactly this).
// guide-rust-verifier:start
/// Verifies a latchkey access token with the `jsonwebtoken` crate (9.x), which does not
/// check `typ`: an RFC 9068 verifier must, so do it first. The algorithm comes from the
/// JWKS entry, never from the token.
fn verify_access_token(
    token: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
    issuer: &str,
    audience: &str,
) -> Result<serde_json::Value, jsonwebtoken::errors::Error> {
    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::jwk::KeyAlgorithm;
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let header = decode_header(token)?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(ErrorKind::InvalidToken.into());
    }
    let kid = header.kid.ok_or(ErrorKind::InvalidToken)?;
    let jwk = jwks.find(&kid).ok_or(ErrorKind::InvalidToken)?;
    let alg = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)?;
    Ok(data.claims)
}
// guide-rust-verifier:end

/// The text between two marker lines of a file.
fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} missing"))
        + start.len();
    let to = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{end} missing"))
        + from;
    text[from..to].to_owned()
}

/// The fenced code block after `<!-- verifier:NAME -->` in the resource-server guide.
fn guide_snippet(name: &str) -> String {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/resource-server-guide.md"
    ))
    .unwrap();
    let after = between(
        &guide,
        &format!("<!-- verifier:{name} -->"),
        &format!("<!-- verifier:{name}:end -->"),
    );
    let code_start = after.find("```").expect("a fenced block");
    let code_start = code_start + after[code_start..].find('\n').unwrap() + 1;
    let code_end = after[code_start..].find("```").unwrap() + code_start;
    after[code_start..code_end].to_owned()
}

/// The resource-server guide's PyJWT, `jose` and Rust verifier snippets, run as printed,
/// accept latchkey's tokens of every algorithm and refuse another audience.
#[tokio::test]
#[ignore = "needs Python and Node test packages: scripts/test runs it"]
async fn the_resource_server_guide_verifier_snippets_work_as_printed_for_every_algorithm() {
    // The Rust one is the function above, letter for letter.
    let this =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/interop.rs"))
            .unwrap();
    let rust = between(
        &this,
        "// guide-rust-verifier:start\n",
        "// guide-rust-verifier:end",
    );
    assert_eq!(
        guide_snippet("rust").trim(),
        rust.trim(),
        "the guide and the test differ"
    );

    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("verify.py");
    std::fs::write(
        &py,
        format!(
            "import sys\nJWKS_URL, ISSUER, AUDIENCE = sys.argv[1:4]\n{}\n\
             for line in sys.stdin:\n    \
             try:\n        print('VERIFIED', verify(line.strip())['sub'], flush=True)\n    \
             except Exception as e:\n        print('REFUSED', type(e).__name__, flush=True)\n",
            guide_snippet("pyjwt")
        ),
    )
    .unwrap();
    // Next to tests/interop/node_modules, so `import 'jose'` resolves.
    let js = std::path::Path::new(INTEROP).join(".readme-verify.mjs");
    std::fs::write(
        &js,
        format!(
            "const [JWKS_URL, ISSUER, AUDIENCE] = process.argv.slice(2);\n{}\n\
             import {{ createInterface }} from 'node:readline';\n\
             for await (const line of createInterface({{ input: process.stdin }})) {{\n  \
             try {{ console.log('VERIFIED', (await verify(line.trim())).sub); }}\n  \
             catch (e) {{ console.log('REFUSED', e.code); }}\n}}\n",
            guide_snippet("jose")
        ),
    )
    .unwrap();

    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let app = spawn_app_with(|s| s.keys.algorithm = alg).await;
        let t = app.user_with_session("alice").await;
        let sub = crate::helpers::jwt_parts(&t.access).1["sub"]
            .as_str()
            .unwrap()
            .to_owned();
        let jwks_url = app.url("/.well-known/jwks.json");
        let jwks: jsonwebtoken::jwk::JwkSet = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        let claims = verify_access_token(&t.access, &jwks, ISSUER, ISSUER).expect("Rust verifies");
        assert_eq!(claims["sub"], sub.as_str(), "{alg:?}");
        assert!(verify_access_token(&t.access, &jwks, ISSUER, "https://other.example").is_err());
        for (program, script) in [("python3", &py), ("node", &js)] {
            let mut child = Command::new(program)
                .arg(script)
                .args([jwks_url.as_str(), ISSUER, ISSUER])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{}\n{}\n", t.access, "not.a.token").as_bytes())
                .await
                .unwrap();
            drop(stdin);
            let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{program} {alg:?}: {text}");
            assert_eq!(lines[0], format!("VERIFIED {sub}"), "{program} {alg:?}");
            assert!(lines[1].starts_with("REFUSED"), "{program} {alg:?}: {text}");
        }
    }
    let _ = std::fs::remove_file(&js);
}
