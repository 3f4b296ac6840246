//! Passkeys on latchkey's sign-in page (`/oauth/authorize`; docs/identity-providers-guide.md
//! "Native apps"): one first-party script (CSP `script-src 'self'`) runs the ceremony and
//! posts its answer with the form's CSRF token; the page still works without it. The
//! Chromium run with a virtual authenticator is `tests/interop/signin_page_passkey.mjs`.

use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use reqwest::StatusCode;

use crate::authorize_kit::*;
use crate::helpers::{free_port, run_browser_script, TestApp, PASSWORD};

/// The page's origin is latchkey's, so the server listens where its passkey origin says:
/// `http://localhost:PORT` (WebAuthn needs a domain RP ID).
async fn passkey_app() -> (TestApp, String) {
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let o = origin.clone();
    let app = native_app_with(move |s| {
        s.server.bind = format!("127.0.0.1:{port}");
        s.passkeys.rp_id = Some("localhost".into());
        s.passkeys.origins = Some(vec![o]);
    })
    .await;
    (app, origin)
}

#[tokio::test]
async fn with_passkeys_the_page_loads_only_latchkeys_own_script_and_hides_the_button_without_it() {
    let (app, _) = passkey_app().await;
    let res = authorize(&app, &request(CLIENT, REDIRECT, &Pkce::new())).await;
    let csp = res.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    // Same origin only: no inline script, no eval, nothing third-party; the rest as strict.
    assert!(
        csp.starts_with("default-src 'none'; script-src 'self'; connect-src 'self';"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("base-uri 'none'"));
    let html = res.text().await.unwrap();
    assert!(html.contains("<script src=\"/oauth/authorize/signin.js\" defer></script>"));
    assert_eq!(html.matches("<script").count(), 1, "no inline script");
    assert!(html.contains("data-passkey=\"login\" hidden>"), "{html}");

    let script = app.get("/oauth/authorize/signin.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()[CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(script.headers()["x-content-type-options"], "nosniff");
    assert!(script
        .text()
        .await
        .unwrap()
        .contains("/login/passkey/start"));
}

#[tokio::test]
async fn a_forged_or_garbled_passkey_answer_shows_the_page_again_never_a_code_or_a_500() {
    let (app, _) = passkey_app().await;
    app.signup("alice", PASSWORD).await;
    let answers = [
        ("not-a-ceremony", "{\"id\":\"x\"}"),
        ("not-a-ceremony", "not json"),
    ];
    for (ceremony, credential) in answers {
        let page =
            Page::read(authorize(&app, &request(CLIENT, REDIRECT, &Pkce::new())).await).await;
        let res = page
            .submit(
                &app,
                &[
                    ("passkey_ceremony", ceremony),
                    ("passkey_credential", credential),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let html = res.text().await.unwrap();
        assert!(html.contains("That passkey was not accepted"), "{html}");
    }
    // Without the CSRF token the answer is not even looked at (OWASP CSRF Prevention).
    let page = Page::read(authorize(&app, &request(CLIENT, REDIRECT, &Pkce::new())).await).await;
    let mut forged = Page {
        fields: page.fields.clone(),
        html: String::new(),
        cookie: page.cookie.clone(),
    };
    forged.fields.retain(|(k, _)| k != "csrf_token");
    let res = forged
        .submit(
            &app,
            &[("passkey_ceremony", "c"), ("passkey_credential", "{}")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
#[ignore = "needs Node and Chromium: scripts/test runs it"]
async fn chromium_signs_in_on_the_page_with_a_passkey_alone_and_as_the_second_step() {
    let (app, origin) = passkey_app().await;
    app.signup("alice", PASSWORD).await;
    let port = free_port().to_string();
    run_browser_script(
        "signin_page_passkey.mjs",
        &[&origin, CLIENT, &port, "alice", PASSWORD],
    )
    .await;
    let count = |amr: &str| {
        app.sql().count(
            &format!("SELECT count(*) FROM sessions WHERE amr = '{amr}'"),
            &[],
        )
    };
    assert_eq!((count("hwk user mfa"), count("pwd hwk mfa")), (1, 1));
}
