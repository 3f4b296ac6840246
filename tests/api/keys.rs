//! Key rotation without breakage (RFC 7517; OIDC Core §10.1.1; docs/contract.md "Standards checklist" #13): a rotated
//! key is published before it signs, a retired key stays published until every token it
//! signed has expired and every cached JWKS has been refetched, and a running server picks
//! up `latchkey keys …` run by an operator in another process.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{kid_of, spawn_app_with, TestApp};

const PUBLISH_AHEAD: Duration = Duration::from_secs(60);

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.keys.publish_ahead = Some(latchkey::config::HumanDuration(PUBLISH_AHEAD));
        // A key is published at least one JWKS cache lifetime before it signs.
        s.keys.jwks_max_age = latchkey::config::HumanDuration(PUBLISH_AHEAD / 2);
    })
    .await
}

/// Longest access-token TTL + JWKS max-age + leeway: how long a retired key stays.
fn grace(app: &TestApp) -> Duration {
    app.settings.retired_key_grace()
}

#[tokio::test]
async fn a_key_rotated_by_the_cli_is_published_at_once_but_signs_only_after_publish_ahead() {
    let app = app().await;
    let before = app.user_with_session("alice").await;
    let kid_a = kid_of(&before.access);
    let etag_before = app.get("/.well-known/jwks.json").await.headers()["etag"].clone();

    let kid_b = app.keys_cli(&["rotate"]).await.trim().to_owned();
    assert_ne!(kid_a, kid_b);
    app.wait_for_jwks(&kid_b, true).await;
    app.catch_up_with_wall_clock();
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_ne!(
        jwks.headers()["etag"],
        etag_before,
        "a new key set has a new ETag"
    );

    // `keys list` (wall clock) shows B staged and A signing with its retirement due.
    let list = app.keys_cli(&["list"]).await;
    let line_of = |kid: &str| list.lines().find(|l| l.contains(kid)).unwrap().to_owned();
    assert!(line_of(&kid_a).starts_with("* "), "{list}");
    assert!(line_of(&kid_a).contains(" active "), "{list}");
    assert!(line_of(&kid_b).contains(" staged "), "{list}");

    // Within publish-ahead, A still signs: verifiers' caches learn B first.
    let during = app.login("alice").await;
    assert_eq!(kid_of(&during.access), kid_a);

    app.advance(PUBLISH_AHEAD + Duration::from_secs(1));
    let after = app.login("alice").await;
    assert_eq!(
        kid_of(&after.access),
        kid_b,
        "B signs once publish-ahead has passed"
    );
    assert_eq!(
        app.get_bearer("/me", &before.access).await.status(),
        StatusCode::OK,
        "A's tokens verify until their exp"
    );
    assert!(app.jwks_kids().await.contains(&kid_a));
    wait_until_listed_as(&app, &kid_a, "retired").await;
}

#[tokio::test]
async fn a_retired_key_leaves_the_jwks_only_after_the_longest_ttl_plus_jwks_max_age() {
    let app = app().await;
    let old = app.user_with_session("alice").await;
    let kid_a = kid_of(&old.access);
    let kid_b = app.keys_cli(&["generate"]).await.trim().to_owned();
    app.wait_for_jwks(&kid_b, true).await;
    app.catch_up_with_wall_clock();

    let out = app.keys_cli(&["retire", &kid_a]).await;
    assert!(out.contains("no longer signs"), "{out}");
    app.catch_up_with_wall_clock();
    // Retirement does not unpublish: wait for the reload to have happened, then check.
    wait_until_listed_as(&app, &kid_a, "retired").await;
    assert_eq!(
        kid_of(&app.login("alice").await.access),
        kid_b,
        "A stops signing at once"
    );
    assert!(app.jwks_kids().await.contains(&kid_a));
    assert_eq!(
        app.get_bearer("/me", &old.access).await.status(),
        StatusCode::OK
    );

    app.advance(grace(&app) - Duration::from_secs(5));
    assert!(
        app.jwks_kids().await.contains(&kid_a),
        "still inside the grace"
    );
    app.advance(Duration::from_secs(10));
    assert!(
        !app.jwks_kids().await.contains(&kid_a),
        "A drops out once the grace has passed"
    );
    let res = app.get_bearer("/me", &old.access).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn wait_until_listed_as(app: &TestApp, kid: &str, state: &str) {
    for _ in 0..200 {
        let set = app.state.keys.current(app.state.now());
        if set
            .entries
            .iter()
            .any(|(e, s)| e.kid == kid && s.as_str() == state)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{kid} never became {state} in the running server");
}

#[tokio::test]
async fn retiring_the_only_signing_key_is_refused_with_one_line_and_exit_code_2() {
    let app = app().await;
    let t = app.user_with_session("alice").await;
    let out = app.cli(&["keys", "retire", &kid_of(&t.access)], "").await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no key that signs now"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = app.cli(&["keys", "retire", "../../etc/passwd"], "").await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn a_corrupt_manifest_never_fails_a_request_and_the_next_good_one_is_picked_up() {
    let app = app().await;
    let t = app.user_with_session("alice").await;
    // Through the app's own key storage: the folder, or sealed rows in the database.
    let good = app.key_file("manifest.json");
    app.put_key_file("manifest.json", b"{\"keys\": [ half-written");
    tokio::time::sleep(Duration::from_millis(300)).await; // several reload ticks
    assert_eq!(
        app.get_bearer("/me", &t.access).await.status(),
        StatusCode::OK
    );
    let again = app.login("alice").await;
    assert_eq!(kid_of(&again.access), kid_of(&t.access));
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);

    app.put_key_file("manifest.json", &good);
    let kid_b = app
        .keys_cli(&["generate", "--alg", "EdDSA"])
        .await
        .trim()
        .to_owned();
    app.wait_for_jwks(&kid_b, true).await;
    let jwks = app.jwks().await;
    let b: &Value = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid_b.as_str())
        .unwrap();
    assert_eq!(b["kty"], "OKP");
    assert_eq!(b["crv"], "Ed25519");
    assert_eq!(b["alg"], "EdDSA");
}

#[tokio::test]
async fn an_imported_pkcs8_key_is_staged_like_a_rotation() {
    let app = app().await;
    let t = app.user_with_session("alice").await;
    // A PKCS#8 key from outside latchkey (here: written by ring in the test).
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
    let file = app.settings.keys.dir.parent().unwrap().join("imported.pem");
    std::fs::write(&file, pem).unwrap();
    let kid = app
        .keys_cli(&["import", file.to_str().unwrap(), "--alg", "EdDSA"])
        .await
        .trim()
        .to_owned();
    app.wait_for_jwks(&kid, true).await;
    app.catch_up_with_wall_clock();
    assert_eq!(
        kid_of(&app.login("alice").await.access),
        kid_of(&t.access),
        "an import is staged for publish-ahead"
    );
    app.advance(PUBLISH_AHEAD + Duration::from_secs(1));
    let after = app.login("alice").await;
    assert_eq!(kid_of(&after.access), kid);
    assert_eq!(crate::helpers::jwt_parts(&after.access).0["alg"], "EdDSA");

    let out = app
        .cli(
            &["keys", "import", file.to_str().unwrap(), "--alg", "ES256"],
            "",
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a key used with the wrong algorithm"
    );
}

#[tokio::test]
async fn no_request_fails_while_keys_are_rotated_and_retired_under_load() {
    let app = app().await;
    let t = app.user_with_session("alice").await;
    let kid_a = kid_of(&t.access);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url, token, stop) = (
            app.client.clone(),
            app.url("/me"),
            t.access.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
                if res.status() == StatusCode::OK {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    let mut minted = Vec::new();
    let kid_b = app.keys_cli(&["rotate", "--now"]).await.trim().to_owned();
    minted.push(app.login("alice").await.access);
    app.wait_for_jwks(&kid_b, true).await;
    app.catch_up_with_wall_clock();
    minted.push(app.login("alice").await.access);
    app.keys_cli(&["retire", &kid_a]).await;
    wait_until_listed_as(&app, &kid_a, "retired").await;
    minted.push(app.login("alice").await.access);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
        total += ok;
    }
    assert!(total > 0);
    for token in minted {
        assert_eq!(app.get_bearer("/me", &token).await.status(), StatusCode::OK);
    }
}

/// Every `keys` command checks the whole future schedule (RFC 7517; OIDC Core §10.1.1:
/// some key must sign at every moment). After `keys rotate`, retiring the staged key,
/// or the active one before the staged key signs, would leave no signer: refused, with
/// the manifest unchanged, and `keys list` and `check-config` keep working.
#[tokio::test]
async fn retiring_a_staged_key_or_its_predecessor_early_is_refused_because_no_key_would_sign_later()
{
    let app = app().await;
    let t = app.user_with_session("alice").await;
    let kid_a = kid_of(&t.access);
    let kid_b = app.keys_cli(&["rotate"]).await.trim().to_owned();
    let manifest = app.key_file("manifest.json");
    for (kid, when) in [
        (&kid_b, "no key that signs from"),
        (&kid_a, "no key that signs now"),
    ] {
        let out = app.cli(&["keys", "retire", kid], "").await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "retire {kid}: {err}");
        assert!(err.contains(when), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(
        app.key_file("manifest.json"),
        manifest,
        "a refused command leaves the manifest as it was"
    );
    let list = app.keys_cli(&["list"]).await;
    assert!(list.contains(&kid_b), "{list}");
    let out = app.cli(&["check-config"], "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `latchkey keys revoke KID` (a compromised key): out of the JWKS and its tokens
/// refused by the running server within `keys.reload_interval`, with no grace, unlike
/// retirement. Revoking the only key that signs is refused.
#[tokio::test]
async fn a_revoked_key_leaves_the_jwks_and_its_tokens_are_refused_at_once() {
    let app = app().await;
    let old = app.user_with_session("alice").await;
    let kid_a = kid_of(&old.access);
    let out = app.cli(&["keys", "revoke", &kid_a], "").await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "the only signer cannot be revoked"
    );

    let kid_b = app.keys_cli(&["rotate", "--now"]).await.trim().to_owned();
    app.wait_for_jwks(&kid_b, true).await;
    app.catch_up_with_wall_clock();
    // Retired, A would keep verifying its tokens for the grace; revoked, it stops.
    assert_eq!(
        app.get_bearer("/me", &old.access).await.status(),
        StatusCode::OK
    );
    let said = app.keys_cli(&["revoke", &kid_a]).await;
    assert!(said.contains("revoked"), "{said}");
    app.wait_for_jwks(&kid_a, false).await;
    let res = app.get_bearer("/me", &old.access).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.introspect(&old.access).await,
        serde_json::json!({"active": false})
    );
    // The session itself is fine: a refresh gets a token from the new key.
    let fresh = app.rotate(&old.refresh).await;
    assert_eq!(kid_of(&fresh.access), kid_b);
    wait_until_listed_as(&app, &kid_a, "revoked").await;
    let list = app.keys_cli(&["list"]).await;
    assert!(
        list.lines()
            .any(|l| l.contains(&kid_a) && l.contains(" revoked ")),
        "{list}"
    );
}

/// Runs the `latchkey` binary in `dir` (no configuration file there), as an operator would.
fn latchkey_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `latchkey keys init-kek FILE` (docs/contract.md "Command line"): 32 CSPRNG bytes in a
/// new file, mode 0600, and never over an existing file (exit 2, one line): replacing a
/// key-encryption key would lock away every key sealed under it.
#[cfg(unix)]
#[test]
fn init_kek_writes_32_private_bytes_and_never_overwrites_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    let out = latchkey_in(dir.path(), &["keys", "init-kek", kek.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let first = std::fs::read(&kek).unwrap();
    assert_eq!(first.len(), 32);
    let mode = std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(stderr.contains("keys.kek_file"), "{stderr}");

    // A second run refuses and leaves the file as it was.
    let again = latchkey_in(dir.path(), &["keys", "init-kek", kek.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("latchkey: ") && lines[0].contains("already exists"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&kek).unwrap(), first);

    // Each run draws fresh bytes; nothing else is written (no keys folder, no database).
    let other = dir.path().join("other");
    assert!(
        latchkey_in(dir.path(), &["keys", "init-kek", other.to_str().unwrap()])
            .status
            .success()
    );
    assert_ne!(std::fs::read(&other).unwrap(), first);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["kek", "other"]);
}

/// With SQLite the keys stay in `keys.dir`: `latchkey keys …` works on the folder alone
/// (no database file is made), and a `keys.kek_file` has no use there.
#[test]
fn with_sqlite_keys_commands_use_the_folder_and_never_open_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["keys", "generate"])
        .current_dir(dir.path())
        .env("LATCHKEY_KEYS__KEK_FILE", dir.path().join("no-such-kek"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(dir.path().join("keys").join(format!("{kid}.pem")).is_file());
    assert!(!dir.path().join("data").exists(), "no database was opened");
}
