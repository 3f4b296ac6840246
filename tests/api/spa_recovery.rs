//! The example SPA's "forgot password" and "reset password" pages in a real headless
//! Chromium (`tests/interop/spa_recovery.mjs`): ask for a reset, read the mail from the
//! test's SMTP sink, follow the link, set a new password, sign in with it. A screenshot
//! of the reset page is saved to `tests/artifacts/spa-reset-password.png`.

use latchkey::secret::Secret;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{free_port, fresh_screenshot, run_browser_script};
use crate::helpers::{spawn_app_with, PASSWORD};
use crate::mail_sink::SmtpSink;

const NEW_PASSWORD: &str = "chosen in the browser 2026";

#[tokio::test]
#[ignore = "needs Node, Chromium and the SMTP sink: scripts/test runs it"]
async fn the_example_spa_resets_a_forgotten_password_from_the_mailed_link() {
    let sink = SmtpSink::start();
    let spa_port = free_port();
    let spa_origin = format!("http://127.0.0.1:{spa_port}");
    // The mailed link points at the SPA and tells it where the API is (`?api=`), so the
    // API's port is chosen before it starts.
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let encoded = url::form_urlencoded::byte_serialize(api.as_bytes()).collect::<String>();
    let reset_url = format!("{spa_origin}/?api={encoded}#reset-password&token={{token}}");
    let (origin, smtp) = (spa_origin.clone(), sink.url());
    let app = spawn_app_with(move |s| {
        s.server.bind = format!("127.0.0.1:{api_port}");
        s.clients[0].allowed_origins = vec![origin];
        s.mail.smtp_url = Some(Secret::new(smtp));
        s.mail.reset_url = Some(reset_url);
    })
    .await;
    assert_eq!(app.base, api);

    // A user with a verified address.
    let res = app
        .post_json(
            "/signup",
            &json!({"username": "spa-reset", "password": PASSWORD, "email": "spa@example.com"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let verify = sink.nth(1).await.token();
    let res = app
        .post_json("/email/verify", &json!({"token": verify}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let old = app.login("spa-reset").await;

    let screenshot = fresh_screenshot("spa-reset-password.png");
    run_browser_script(
        "spa_recovery.mjs",
        &[
            app.base.as_str(),
            &spa_port.to_string(),
            &sink.dir().to_string_lossy(),
            &screenshot,
            "spa-reset",
            PASSWORD,
            NEW_PASSWORD,
        ],
    )
    .await;
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 1000,
        "screenshot saved"
    );
    // Server side: the session from before the reset ended; the reset was recorded.
    assert_eq!(
        app.refresh(&old.refresh).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.events_of("password_reset").len(), 1);
}
