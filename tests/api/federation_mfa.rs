//! An account with a second factor signing in through an identity provider
//! (docs/identity-providers-guide.md "Second factor"): the provider alone does not open
//! it; the callback shows latchkey's sign-in page at its code step, and the sign-in ends
//! as it started: the browser's refresh cookie at `return_to`, or the app's code at its
//! redirect URI. The session's `amr` is `["fed","otp"]` (RFC 8176 §2).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::authorize_kit::*;
use crate::fake_idp::FakeIdp;
use crate::federation::{
    browser_session, callback, claims, error_of, header, provider, provider_answer, set_cookie,
    start_link, started, Started, APP, RETURN_TO,
};
use crate::helpers::{TestApp, PASSWORD};

async fn app_with(idp: &FakeIdp) -> TestApp {
    let issuer = idp.issuer.clone();
    native_app_with(move |s| {
        s.clients[0].allowed_origins = vec![APP.into()];
        s.identity_providers = vec![provider("corp", &issuer)];
    })
    .await
}

/// carl (a password account) links the provider from a browser session, then turns on
/// TOTP.
async fn carl_with_provider_and_totp(app: &TestApp, idp: &FakeIdp) {
    app.signup("carl", PASSWORD).await;
    let refresh = browser_session(app, "carl", PASSWORD).await;
    let res = start_link(app, &refresh, None).await;
    let s = Started {
        provider_url: header(&res, "location"),
        state_cookie: set_cookie(&res, "__Host-lk_fed").unwrap(),
    };
    idp.will_say(claims("sub-carl", "carl@example.com", true));
    let back = provider_answer(app, &s).await;
    let res = callback(app, &back, Some(&s.state_cookie)).await;
    assert_eq!(header(&res, "location"), RETURN_TO, "linked");
    let tokens = app.login("carl").await;
    app.enrol_totp("carl", &tokens.access).await;
}

fn amr_of_sessions(app: &TestApp, amr: &str) -> i64 {
    app.sql().count(
        &format!("SELECT count(*) FROM sessions WHERE amr = '{amr}'"),
        &[],
    )
}

#[tokio::test]
async fn a_browser_sign_in_through_a_provider_asks_for_the_accounts_code_then_sets_the_cookie() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    carl_with_provider_and_totp(&app, &idp).await;

    let s = started(&app).await;
    let back = provider_answer(&app, &s).await;
    let res = callback(&app, &back, Some(&s.state_cookie)).await;
    // The provider alone opens nothing: the page's code step, no session yet.
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookie(&res, &app.settings.browser.cookie_name).is_none());
    let page = Page::read(res).await;
    assert!(
        page.html.contains("Code from your authenticator app"),
        "{}",
        page.html
    );
    assert!(page
        .fields
        .iter()
        .any(|(k, v)| k == "return_to" && v == RETURN_TO));

    let wrong = page.submit(&app, &[("code", "000000")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let code = app.next_code("carl");
    let res = page.submit(&app, &[("code", code.as_str())]).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(header(&res, "location"), RETURN_TO);
    assert!(set_cookie(&res, &app.settings.browser.cookie_name).is_some_and(|c| !c.is_empty()));
    assert_eq!(amr_of_sessions(&app, "fed otp"), 1);
    let logins = app.events_of("login_succeeded");
    let last = logins.last().unwrap().1.as_deref().unwrap();
    assert!(last.contains("\"idp\":\"corp\""), "{last}");

    // The code step's form cannot be sent somewhere else (never an open redirect).
    let s = started(&app).await;
    let back = provider_answer(&app, &s).await;
    let page = Page::read(callback(&app, &back, Some(&s.state_cookie)).await).await;
    let mut elsewhere = Page {
        fields: page.fields.clone(),
        html: String::new(),
        cookie: page.cookie.clone(),
    };
    elsewhere.fields.retain(|(k, _)| k != "return_to");
    elsewhere
        .fields
        .push(("return_to".into(), "https://evil.example/".into()));
    let code = app.next_code("carl");
    let res = elsewhere.submit(&app, &[("code", code.as_str())]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());
    idp.stop().await;
}

#[tokio::test]
async fn a_native_app_through_a_provider_gets_its_code_only_after_the_accounts_code() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    carl_with_provider_and_totp(&app, &idp).await;

    let pkce = Pkce::new();
    let q = with(request(CLIENT, REDIRECT, &pkce), "idp", Some("corp"));
    let res = authorize(&app, &q).await;
    let s = Started {
        provider_url: header(&res, "location"),
        state_cookie: set_cookie(&res, "__Host-lk_fed").unwrap(),
    };
    let back = provider_answer(&app, &s).await;
    let res = callback(&app, &back, Some(&s.state_cookie)).await;
    assert_eq!(res.status(), StatusCode::OK, "the code step, not a code");
    let page = Page::read(res).await;
    let code = app.next_code("carl");
    let res = page.submit(&app, &[("code", code.as_str())]).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let (location, pairs) = location_query(&res);
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(param(&pairs, "state"), Some("af0ifjsldkj"));
    let tokens: Value = exchange(
        &app,
        param(&pairs, "code").unwrap(),
        CLIENT,
        REDIRECT,
        &pkce.verifier,
    )
    .await
    .json()
    .await
    .unwrap();
    let (_, claims) = crate::helpers::jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["fed", "otp"]));
    idp.stop().await;
}

#[tokio::test]
async fn a_verified_email_never_links_an_account_with_a_second_factor() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    let dora = app.user_with_session("dora").await;
    app.enrol_totp("dora", &dora.access).await;
    app.sql().exec(
        "INSERT INTO user_emails (user_id, email, email_key, verified_at) \
         SELECT id, 'dora@example.com', 'dora@example.com', 1 FROM users WHERE username = 'dora'",
        &[],
    );
    // The provider vouches for the same address: without the factor this would link
    // (federation.rs); with it, auto-linking would be a way around the factor.
    idp.will_say(claims("sub-dora", "dora@example.com", true));
    let s = started(&app).await;
    let back = provider_answer(&app, &s).await;
    let res = callback(&app, &back, Some(&s.state_cookie)).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(error_of(&header(&res, "location")), "access_denied");
    assert_eq!(app.sql().count("SELECT count(*) FROM identities", &[]), 0);
    idp.stop().await;
}
