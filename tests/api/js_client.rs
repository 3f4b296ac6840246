//! `@latchkey/client` (`clients/js`) against a real latchkey: the token-mode tests under
//! `node --test` (`clients/js/test/*.test.mjs`), the package checks (types, the 10 KB
//! min+gzip budget, `npm pack` installed into a scratch project), and the cookie-mode
//! behaviour in headless Chromium (`clients/js/test/browser.mjs`: tabs sharing one
//! refresh, a hidden tab, sign-out reaching every tab, theft, an outage).
//!
//! Needs `node` and `clients/js/node_modules` (`scripts/test` runs `npm ci --prefix
//! clients/js`); a missing tool fails the test, it never skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey::clock::ManualClock;
use tokio::sync::OnceCell;

use crate::helpers::free_port;
use crate::helpers::spawn_app;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

/// Runs a command to the end; panics with its output unless it succeeded.
async fn run(cmd: &mut tokio::process::Command, what: &str) -> String {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); scripts/test installs node"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Builds `clients/js/dist` once per test binary (the tests that import it share it).
async fn built() {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            assert!(
                js_dir().join("node_modules/typescript").exists(),
                "clients/js/node_modules is missing: run `npm ci --prefix clients/js` (scripts/test does)"
            );
            run(
                tokio::process::Command::new("npm")
                    .args(["run", "--silent", "build"])
                    .current_dir(js_dir()),
                "npm run build",
            )
            .await;
        })
        .await;
}

/// Keeps a test server's manual clock on the wall clock: the client and its TOTP codes
/// read the real time.
fn follow_wall_clock(clock: Arc<ManualClock>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            clock.catch_up(now);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[tokio::test]
#[ignore = "needs Node and clients/js built: scripts/test runs it"]
async fn token_mode_passes_its_node_tests_against_a_real_server() {
    built().await;
    let app = spawn_app().await;
    let follow = follow_wall_clock(app.clock.clone());
    let started = Instant::now();
    let text = run(
        tokio::process::Command::new("node")
            .args([
                "--test",
                "--test-reporter=spec",
                "test/token.test.mjs",
                "test/passkeys.test.mjs",
            ])
            .env("LATCHKEY_URL", &app.base)
            .current_dir(js_dir()),
        "node --test (clients/js/test)",
    )
    .await;
    follow.abort();
    eprintln!("{text}\nnode --test took {:?}", started.elapsed());
    assert!(
        text.contains("fail 0") && !text.contains("pass 0"),
        "{text}"
    );
}

#[tokio::test]
#[ignore = "needs Node and clients/js installed: scripts/test runs it"]
async fn the_package_typechecks_fits_its_size_budget_and_installs_from_its_tarball() {
    built().await;
    let dir = js_dir();
    run(
        tokio::process::Command::new("npx")
            .args(["--no-install", "tsc", "--noEmit", "-p", "tsconfig.json"])
            .current_dir(&dir),
        "tsc --noEmit",
    )
    .await;

    // Size: the package bundled (index.js imports webauthn.js), esbuild --minify, then
    // gzip -9.
    let min = run(
        tokio::process::Command::new("npx")
            .args([
                "--no-install",
                "esbuild",
                "dist/index.js",
                "--bundle",
                "--format=esm",
                "--minify",
            ])
            .current_dir(&dir),
        "esbuild --minify",
    )
    .await;
    let gz = gzip9(min.as_bytes()).await;
    eprintln!(
        "@latchkey/client: {} bytes minified, {} bytes min+gzip",
        min.len(),
        gz.len()
    );
    assert!(gz.len() <= 10 * 1024, "over the 10 KB budget: {}", gz.len());

    // npm pack → a tarball a scratch project installs and imports.
    let scratch = tempfile::tempdir().unwrap();
    let packed = run(
        tokio::process::Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(scratch.path())
            .current_dir(&dir),
        "npm pack",
    )
    .await;
    let tarball = scratch.path().join(packed.lines().last().unwrap().trim());
    assert!(tarball.exists(), "{packed}");
    let project = scratch.path().join("app");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"scratch","private":true,"type":"module"}"#,
    )
    .unwrap();
    run(
        tokio::process::Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--offline",
                "--loglevel=error",
            ])
            .arg(&tarball)
            .current_dir(&project),
        "npm install TARBALL",
    )
    .await;
    let installed = project.join("node_modules/@latchkey/client");
    assert!(installed.join("dist/index.d.ts").exists());
    assert!(
        !installed.join("node_modules").exists(),
        "no runtime dependencies"
    );
    let out = run(
        tokio::process::Command::new("node")
            .args([
                "--input-type=module",
                "-e",
                "import { createClient, memoryStorage } from '@latchkey/client'; \
                 const c = createClient({ issuer: 'http://127.0.0.1:1', mode: 'token', storage: memoryStorage() }); \
                 console.log(typeof c.getAccessToken, typeof c.onAuthStateChange, c.session);",
            ])
            .current_dir(&project),
        "import @latchkey/client",
    )
    .await;
    assert_eq!(out.trim(), "function function null", "{out}");
}

/// gzip -9 of `bytes` through the system's gzip (no compression crate in the tests).
async fn gzip9(bytes: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("gzip")
        .arg("-9c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = tokio::spawn(async move {
        stdin.write_all(&input).await.unwrap();
    });
    let out = child.wait_with_output().await.unwrap();
    writer.await.unwrap();
    out.stdout
}

/// Cookie mode in headless Chromium: one tab then five for 20 s each (not the issue's
/// 60 s: with a 5 s token lifetime 20 s is four lifetimes, enough for the ratio, and the
/// suite's time is short), a hidden then frozen tab, a 15 s outage, theft, sign-in and
/// sign-out reaching every tab, and tabs without Web Locks (`clients/js/test/browser.mjs` starts latchkey itself, as a process it can
/// stop and restart on the same port and SQLite database, with a 5 s access-token
/// lifetime).
///
/// Run in the SQLite pass only: it tests the client's behaviour, which does not depend
/// on the backend (the refresh rules it relies on run on PostgreSQL in refresh.rs,
/// stall.rs and cluster.rs), and it is the suite's longest test (about 85 s of wall
/// time, most of it the two measurement phases and the outage).
#[tokio::test]
#[ignore = "needs Node, Chromium and clients/js built: scripts/test runs it"]
async fn cookie_mode_in_chromium_shares_one_refresh_across_tabs_and_survives_outages_and_theft() {
    if crate::db::postgres_run() {
        eprintln!("cookie-mode Chromium test: SQLite pass only (see the comment)");
        return;
    }
    assert!(
        Path::new(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
            .exists(),
        "chromium is missing (scripts/test installs Debian's chromium)"
    );
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop/node_modules/playwright-core")
            .exists(),
        "tests/interop/node_modules is missing: run `npm ci --prefix tests/interop`"
    );
    built().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let text = run(
        tokio::process::Command::new("node")
            .arg(js_dir().join("test/browser.mjs"))
            .arg(env!("CARGO_BIN_EXE_latchkey"))
            .arg(dir.path().join("server"))
            .arg(free_port().to_string())
            .arg(free_port().to_string())
            .arg("20"),
        "node clients/js/test/browser.mjs",
    )
    .await;
    eprintln!("{text}\nbrowser tests took {:?}", started.elapsed());
    assert!(text.contains("ALL PASSED"), "{text}");
}
