//! The example SPA's passkeys in a real headless Chromium with the DevTools virtual
//! authenticator (`tests/interop/spa_passkeys.mjs`; docs/contract.md "Passkeys (WebAuthn
//! Level 3)"): a user signs up, adds a passkey, is refused a second one from the
//! password-only session (step-up, RFC 9470), signs out, signs in with the passkey and no
//! password, uses that sign-in for step-up (adds and removes a security key), then signs
//! in with the password and the passkey as the second step; and once more without the
//! password, and a new passkey, in a browser lacking WebAuthn's JSON methods. The "done when": a
//! user can live without a password end to end. A screenshot of the signed-in page with
//! its passkeys is saved to `tests/artifacts/spa-passkeys.png`.

use crate::helpers::{free_port, fresh_screenshot, run_browser_script};
use crate::helpers::{spawn_app_with, PASSWORD};

#[tokio::test]
#[ignore = "needs Chromium and Node: scripts/test runs it"]
async fn a_user_adds_a_passkey_in_the_spa_and_signs_in_with_it_without_a_password() {
    // WebAuthn needs a domain RP ID: the page and the API are both on localhost (one
    // site, so the SameSite=Strict refresh cookie flows), and the RP ID is "localhost".
    let spa_port = free_port();
    let origin = format!("http://localhost:{spa_port}");
    let app = spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![origin.clone()];
        s.passkeys.rp_id = Some("localhost".into());
        s.passkeys.origins = Some(vec![origin]);
    })
    .await;
    let api = app.base.replace("127.0.0.1", "localhost");
    let screenshot = fresh_screenshot("spa-passkeys.png");
    run_browser_script(
        "spa_passkeys.mjs",
        &[
            &api,
            &spa_port.to_string(),
            &screenshot,
            "spa-passkeys",
            PASSWORD,
        ],
    )
    .await;
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

    // Server side: three passkeys added (the laptop, the security key, the old browser's
    // key), one removed;
    // two passwordless logins (the second through the library's fallback conversion) and
    // one password-then-passkey login.
    assert_eq!(app.events_of("passkey_added").len(), 3);
    assert_eq!(app.events_of("passkey_removed").len(), 1);
    let count = |amr: &str| {
        app.sql().count(
            &format!("SELECT count(*) FROM sessions WHERE amr = '{amr}'"),
            &[],
        )
    };
    assert_eq!(count("hwk user mfa"), 2);
    assert_eq!(count("pwd hwk mfa"), 1);
    let passkeys = app.sql().count("SELECT count(*) FROM passkeys", &[]);
    assert_eq!(passkeys, 2, "the laptop's and the old browser's");
}
