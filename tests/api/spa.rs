//! The example SPA (`examples/spa`) in a real headless Chromium (Debian's `chromium`,
//! driven by `playwright-core`; `tests/interop/spa.mjs` holds the browser-side checks):
//! login, an HttpOnly cookie JavaScript cannot read, silent refresh across a reload, two
//! tabs refreshing at once, a page from another site that can neither refresh nor log
//! out, and logout reaching the other tab. A screenshot of the signed-in page is saved
//! to `tests/artifacts/spa-signed-in.png`. `tests/interop/spa_signup.mjs` adds sign-up
//! through the page and an anonymous first load that logs no console error.

use crate::browser::SPA_ORIGIN;
use crate::helpers::{free_port, fresh_screenshot, run_browser_script};
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
    let screenshot = fresh_screenshot("spa-signed-in.png");

    run_browser_script(
        "spa.mjs",
        &[
            &app.base,
            &spa_port.to_string(),
            &evil_port.to_string(),
            &screenshot,
        ],
    )
    .await;
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

/// Not being signed in is a normal state: the page knows (from its own marker cookie)
/// that there is no session, so it sends no refresh that would fail, and Chromium logs
/// no console error for a 401/400 it never saw. A sign-in, a reload and a sign-out show
/// the marker follows the session.
#[tokio::test]
#[ignore = "needs Node and Chromium: scripts/test runs it"]
async fn an_anonymous_first_load_of_the_example_spa_logs_no_console_error() {
    let spa_port = free_port();
    let origin = format!("http://127.0.0.1:{spa_port}");
    let app = spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![origin];
    })
    .await;
    app.signup("spa-anon", PASSWORD).await;
    run_browser_script(
        "spa_signup.mjs",
        &[
            "anonymous",
            &app.base,
            &spa_port.to_string(),
            "spa-anon",
            PASSWORD,
        ],
    )
    .await;
    let sessions = app.sql().column("SELECT revoked_reason FROM sessions", &[]);
    assert_eq!(sessions, vec![Some("logout".to_owned())]);
}

/// POST /signup from the page's sign-up form, then a browser sign-in with the same
/// password; the same name a second time is refused (409) and the page says so.
#[tokio::test]
#[ignore = "needs Node and Chromium: scripts/test runs it"]
async fn a_visitor_signs_up_through_the_example_spa_and_lands_signed_in() {
    let spa_port = free_port();
    let origin = format!("http://127.0.0.1:{spa_port}");
    let app = spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![origin];
    })
    .await;
    run_browser_script(
        "spa_signup.mjs",
        &[
            "signup",
            &app.base,
            &spa_port.to_string(),
            "spa-newcomer",
            PASSWORD,
        ],
    )
    .await;
    let db = app.sql();
    assert_eq!(
        db.count(
            "SELECT count(*) FROM users WHERE username = 'spa-newcomer'",
            &[]
        ),
        1
    );
    assert_eq!(app.events_of("user_created").len(), 1);
    let sessions = db.column("SELECT revoked_reason FROM sessions", &[]);
    assert_eq!(
        sessions,
        vec![Some("logout".to_owned())],
        "one browser session, ended by the page's sign-out"
    );
}
