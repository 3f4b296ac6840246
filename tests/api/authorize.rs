//! The native flow (RFC 8252, RFC 7636, RFC 6749 §4.1; docs/identity-providers-guide.md
//! "Native apps") scripted over HTTP: authorize → latchkey's sign-in page → a code at a
//! loopback redirect → tokens; the page itself (accessible, CSP, no framing), a wrong
//! password, and the second factor. The attacks are in `authorize_attacks.rs`.

use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, X_FRAME_OPTIONS};
use reqwest::StatusCode;
use serde_json::Value;

use crate::authorize_kit::*;
use crate::helpers::PASSWORD;

#[tokio::test]
async fn a_native_app_signs_in_through_the_page_and_gets_tokens_for_its_code_rfc8252() {
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let pkce = Pkce::new();

    let res = authorize(&app, &request(CLIENT, REDIRECT, &pkce)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = Page::read(res).await;
    assert!(
        page.cookie.starts_with("__Host-lk_csrf="),
        "the CSRF cookie"
    );
    let res = page
        .submit(&app, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let (location, pairs) = location_query(&res);
    // RFC 8252 §7.3: the loopback port the app asked for, though none was registered.
    assert!(
        location.starts_with("http://127.0.0.1:49152/callback?"),
        "{location}"
    );
    assert_eq!(
        param(&pairs, "state"),
        Some("af0ifjsldkj"),
        "state comes back"
    );
    // RFC 9207: the response names its issuer.
    assert_eq!(param(&pairs, "iss"), Some(app.settings.issuer.as_str()));
    let code = param(&pairs, "code").unwrap();

    let res = exchange(&app, code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let me: Value = app.get_bearer("/me", access).await.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    // The refresh token is live and rotates as any other.
    let refreshed = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_private_use_scheme_redirect_gets_its_code_too_rfc8252_7_1() {
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let pkce = Pkce::new();
    let code = code_for(&app, "alice", CLIENT, PRIVATE_USE, &pkce).await;
    let res = exchange(&app, &code, CLIENT, PRIVATE_USE, &pkce.verifier).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_sign_in_page_is_labelled_runs_no_script_and_cannot_be_framed() {
    let app = native_app().await;
    let res = authorize(&app, &request(CLIENT, REDIRECT, &Pkce::new())).await;
    let csp = res.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(res.headers()[X_FRAME_OPTIONS], "DENY");
    assert_eq!(res.headers()["cache-control"], "no-store");
    // No script or style at all; framing refused (OWASP Clickjacking Defense).
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    // The form may reach the loopback app after the sign-in's redirect.
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:*"),
        "{csp}"
    );
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let html = res.text().await.unwrap();
    assert!(html.contains("<html lang=\"en\">"));
    assert!(!html.contains("<script"));
    for id in ["username", "password"] {
        assert!(
            html.contains(&format!("<label for=\"{id}\">")),
            "{id} has a label"
        );
        assert!(html.contains(&format!("id=\"{id}\"")));
    }
    // Focus order: the name first, then the password, then the button.
    let (u, p, b) = (
        html.find("id=\"username\"").unwrap(),
        html.find("id=\"password\"").unwrap(),
        html.find("<button").unwrap(),
    );
    assert!(u < p && p < b);
}

#[tokio::test]
async fn a_wrong_password_shows_the_page_again_with_one_generic_error_and_counts_in_the_throttle() {
    let app = native_app_with(|s| s.login.max_failures_per_account_per_hour = 2).await;
    app.signup("alice", PASSWORD).await;
    let page = Page::read(authorize(&app, &request(CLIENT, REDIRECT, &Pkce::new())).await).await;
    for (name, password) in [("alice", "wrong password 1"), ("nobody", PASSWORD)] {
        let res = page
            .submit(&app, &[("username", name), ("password", password)])
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().get(LOCATION).is_none());
        let again = Page::read(res).await;
        assert!(again.html.contains("role=\"alert\""));
        assert!(
            again.html.contains("Invalid username or password."),
            "one message for both"
        );
    }
    let res = page
        .submit(
            &app,
            &[("username", "alice"), ("password", "wrong password 2")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Two failures for alice: the right password now waits like any other attempt.
    let res = page
        .submit(&app, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn an_account_with_totp_gives_its_code_on_the_page_before_the_app_gets_a_code() {
    let app = native_app().await;
    let t = app.user_with_session("alice").await;
    app.enrol_totp("alice", &t.access).await;
    let pkce = Pkce::new();
    let page = Page::read(authorize(&app, &request(CLIENT, REDIRECT, &pkce)).await).await;
    let res = page
        .submit(&app, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), StatusCode::OK, "the code step");
    let step = Page::read(res).await;
    assert!(step.html.contains("<label for=\"code\">"));
    assert!(step.fields.iter().any(|(k, _)| k == "mfa_token"));

    let res = step.submit(&app, &[("code", "000000")]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a wrong code");
    assert!(res.headers().get(LOCATION).is_none());

    let code = app.next_code("alice");
    let res = step.submit(&app, &[("code", &code)]).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let (_, pairs) = location_query(&res);
    let res = exchange(
        &app,
        param(&pairs, "code").unwrap(),
        CLIENT,
        REDIRECT,
        &pkce.verifier,
    )
    .await;
    let tokens: Value = res.json().await.unwrap();
    let (_, claims) = crate::helpers::jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
}

/// `idp` named (or a provider button on the page): the sign-in happens at the provider
/// and the app still gets a code at its redirect URI, bound to its PKCE challenge.
#[tokio::test]
async fn a_native_app_signs_in_through_an_identity_provider_and_gets_its_code_with_its_scope() {
    use crate::fake_idp::FakeIdp;
    use crate::federation::{
        callback, claims, header, provider, provider_answer, set_cookie, Started,
    };
    let idp = FakeIdp::start("latchkey").await;
    let issuer = idp.issuer.clone();
    let app = native_app_with(move |s| {
        s.identity_providers = vec![provider("corp", &issuer)];
        let native = s.clients.iter_mut().find(|c| c.id == CLIENT).unwrap();
        native.scopes = vec!["read".into(), "write".into()];
    })
    .await;
    idp.will_say(claims("sub-1", "dana@example.com", true));
    let pkce = Pkce::new();

    // The page offers the provider, as a new request naming it.
    let page = Page::read(authorize(&app, &request(CLIENT, REDIRECT, &pkce)).await).await;
    assert!(
        page.html
            .contains("name=\"idp\" value=\"corp\">Corp</button>"),
        "{}",
        page.html
    );

    // RFC 6749 §3.3: the scope asked for (and allowed) is the federated session's.
    let q = with(request(CLIENT, REDIRECT, &pkce), "idp", Some("corp"));
    let q = with(q, "scope", Some("read"));
    let res = authorize(&app, &q).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let started = Started {
        provider_url: header(&res, "location"),
        state_cookie: set_cookie(&res, "__Host-lk_fed").expect("the state cookie"),
    };
    let back = provider_answer(&app, &started).await;
    let res = callback(&app, &back, Some(&started.state_cookie)).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let (location, pairs) = location_query(&res);
    assert!(location.starts_with(REDIRECT), "{location}");
    assert!(
        set_cookie(&res, &app.settings.browser.cookie_name).is_none(),
        "no browser session"
    );
    assert_eq!(param(&pairs, "state"), Some("af0ifjsldkj"));
    let code = param(&pairs, "code").expect("a code");
    let tokens: Value = exchange(&app, code, CLIENT, REDIRECT, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let (_, claims) = crate::helpers::jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], serde_json::json!(["fed"]));
    assert_eq!(claims["scope"], "read");
    assert_eq!(tokens["scope"], "read");

    // A refusal at the provider comes back to the app as an error, with its state.
    let res = authorize(&app, &q).await;
    let started = Started {
        provider_url: header(&res, "location"),
        state_cookie: set_cookie(&res, "__Host-lk_fed").unwrap(),
    };
    let back = provider_answer(&app, &started).await;
    let res = callback(&app, &back, None).await;
    let (location, pairs) = location_query(&res);
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(
        param(&pairs, "error"),
        Some("access_denied"),
        "not started in this browser"
    );
    assert_eq!(param(&pairs, "state"), Some("af0ifjsldkj"));
    idp.stop().await;
}

/// openid-client (npm, OpenID-certified RP library) as a native app: discovery,
/// `buildAuthorizationUrl` with PKCE, the page, `authorizationCodeGrant`, a refresh.
#[tokio::test]
#[ignore = "needs Node: scripts/test runs it"]
async fn openid_client_completes_the_native_flow_with_pkce() {
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let out = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/openid_client_native.mjs"
        ))
        .args([
            &app.base,
            &app.settings.issuer,
            CLIENT,
            "http://127.0.0.1:51004/callback",
            "alice",
            PASSWORD,
        ])
        .output()
        .await
        .expect("node runs (see scripts/test for its install)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("OK ")).count(),
        5,
        "{stdout}"
    );
}

/// Chromium as the app's system browser: the page by its labels and focus order, a
/// wrong password, then the redirect to a loopback port (allowed by the page's CSP
/// `form-action`) and the code exchanged.
#[tokio::test]
#[ignore = "needs Node and Chromium: scripts/test runs it"]
async fn chromium_signs_in_on_the_page_and_the_app_gets_its_code_at_a_loopback_port() {
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let port = crate::helpers::free_port().to_string();
    crate::helpers::run_browser_script(
        "signin_page.mjs",
        &[&app.base, CLIENT, &port, "alice", PASSWORD],
    )
    .await;
}

/// examples/native-app/index.mjs as printed in its usage: it listens on a loopback port,
/// the "browser" (this test, over HTTP) signs in on the page and follows the redirect to
/// it, and the example exchanges the code and reads /me.
#[tokio::test]
#[ignore = "needs Node: scripts/test runs it"]
async fn the_native_app_example_signs_in_through_the_page() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let mut child = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/native-app/index.mjs"
        ))
        .env("LATCHKEY_URL", &app.base)
        .env("LATCHKEY_CLIENT", CLIENT)
        .env("LATCHKEY_OPEN", "print")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let open = lines
        .next_line()
        .await
        .unwrap()
        .expect("the address to open");
    let url = open.strip_prefix("OPEN ").expect("OPEN <url>");
    let page = Page::read(app.client.get(url).send().await.unwrap()).await;
    let res = page
        .submit(&app, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    let (location, _) = location_query(&res);
    let landed = app.client.get(&location).send().await.unwrap();
    assert_eq!(
        landed.status(),
        StatusCode::OK,
        "the example's listener answered"
    );
    let last = lines
        .next_line()
        .await
        .unwrap()
        .expect("the example's result");
    assert_eq!(last, "SIGNED IN alice");
    assert!(child.wait().await.unwrap().success());
}
