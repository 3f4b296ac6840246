//! The example SPA (`examples/spa`) in a real headless Chromium (Debian's `chromium`,
//! driven by `playwright-core`; `tests/interop/spa.mjs` holds the browser-side checks):
//! login, an HttpOnly cookie JavaScript cannot read, silent refresh across a reload, two
//! tabs refreshing at once, a page from another site that can neither refresh nor log
//! out, and logout reaching the other tab. A screenshot of the signed-in page is saved
//! to `tests/artifacts/spa-signed-in.png`.

use std::process::Stdio;

use crate::browser::SPA_ORIGIN;
use crate::helpers::free_port;
use crate::helpers::{spawn_app_with, PASSWORD};

#[tokio::test]
#[ignore = "needs Node and Chromium: scripts/test runs it"]
async fn the_example_spa_works_in_a_real_browser_and_another_site_cannot_use_its_cookie() {
    let (spa_port, evil_port) = (free_port(), free_port());
    let spa_origin = format!("http://127.0.0.1:{spa_port}");
    let origin = spa_origin.clone();
    let app = spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![origin, SPA_ORIGIN.into()];
    })
    .await;
    app.signup("spa-user", PASSWORD).await;
    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/artifacts");
    std::fs::create_dir_all(artifacts).unwrap();
    let screenshot = format!("{artifacts}/spa-signed-in.png");
    let _ = std::fs::remove_file(&screenshot);

    let out = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/spa.mjs"
        ))
        .args([
            &app.base,
            &spa_port.to_string(),
            &evil_port.to_string(),
            &screenshot,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs (scripts/test installs tests/interop)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("ALL PASSED"),
        "{text}"
    );
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 1000,
        "screenshot saved"
    );

    // Server side: one session, ended by the SPA's logout; the other site's attempts
    // changed nothing (no other revocation, no reuse detected).
    let db = app.sql();
    let sessions = db.column("SELECT revoked_reason FROM sessions", &[]);
    assert_eq!(sessions, vec![Some("logout".to_owned())]);
    assert!(app.events_of("refresh_token_reuse_detected").is_empty());
    let rotations = db.count("SELECT max(head_generation) FROM sessions", &[]);
    assert!(
        rotations >= 4,
        "silent refreshes rotated the cookie ({rotations})"
    );
}
