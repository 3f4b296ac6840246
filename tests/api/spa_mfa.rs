//! The example SPA's second factor in a real headless Chromium
//! (`tests/interop/spa_mfa.mjs`; docs/contract.md "Second factor"): enrol from the
//! signed-in page, sign out, sign in with a TOTP code the test computes, then with a
//! recovery code, which then no longer works. A screenshot of the page showing the
//! recovery codes is saved to `tests/artifacts/spa-mfa-enrolled.png`.

use latchkey::clock::Clock;

use crate::helpers::{free_port, fresh_screenshot, run_browser_script};
use crate::helpers::{spawn_app_with, PASSWORD};

#[tokio::test]
#[ignore = "needs Node and Chromium: scripts/test runs it"]
async fn the_example_spa_enrols_totp_and_signs_in_with_a_code_and_a_recovery_code() {
    let spa_port = free_port();
    let origin = format!("http://127.0.0.1:{spa_port}");
    let app = spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![origin];
    })
    .await;
    app.signup("spa-mfa", PASSWORD).await;
    let screenshot = fresh_screenshot("spa-mfa-enrolled.png");
    // The server's clock stands still while the browser works; the script computes
    // codes for it.
    let now = app.clock.now_millis();
    run_browser_script(
        "spa_mfa.mjs",
        &[
            &app.base,
            &spa_port.to_string(),
            &screenshot,
            "spa-mfa",
            PASSWORD,
            &now.to_string(),
        ],
    )
    .await;
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

    // Server side: the factor was enabled once, one recovery code spent, and the two
    // logins after enrolment carry the second factor.
    assert_eq!(app.events_of("mfa_enabled").len(), 1);
    assert_eq!(app.events_of("recovery_code_used").len(), 1);
    assert_eq!(app.events_of("mfa_failed").len(), 1);
    let with_otp = app
        .sql()
        .count("SELECT count(*) FROM sessions WHERE amr = 'pwd otp'", &[]);
    assert_eq!(with_otp, 2);
}
