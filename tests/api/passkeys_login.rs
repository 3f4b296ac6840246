//! Signing in with a passkey alone (docs/contract.md "Passkeys"; WebAuthn Level 3 §7.2),
//! in JSON and browser mode, and the attacks on it: another origin, another RP ID, a
//! replayed assertion, a spent or expired ceremony, a ceremony finished in the other
//! mode, a cloned authenticator (counter regression), guessing (the login throttle),
//! and a ceremony finished by another instance.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, jwt_parts, spawn_app_with, spawn_instance, TestApp};
use crate::passkey_kit::{
    challenge_of, passkey_app, passkey_settings, register, start_login, Registered, ORIGIN,
};

async fn finish_login(app: &TestApp, ceremony: &str, credential: Value) -> Response {
    app.post_json(
        "/login/passkey/finish",
        &json!({"ceremony": ceremony, "credential": credential}),
    )
    .await
}

fn browser_post(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url(path))
        .header("Origin", ORIGIN)
        .header("X-Latchkey-CSRF", "1")
        .header("Sec-Fetch-Site", "same-site")
}

/// A user with a registered passkey (and a password session, which plays no part).
async fn alice_with_passkey(app: &TestApp) -> Registered {
    let t = app.user_with_session("alice").await;
    register(app, &t.access).await
}

fn amr_of(body: &Value) -> Value {
    jwt_parts(body["access_token"].as_str().unwrap()).1["amr"].clone()
}

#[tokio::test]
async fn a_user_signs_in_with_a_passkey_alone_and_the_token_says_hwk_user_mfa() {
    let app = passkey_app().await;
    let mut alice = alice_with_passkey(&app).await;
    let c = start_login(&app).await;
    assert_eq!(c.options.rp_id, "localhost");
    // Discoverable: nothing names the user first, so nothing enumerates accounts.
    assert!(c.options.allow_credentials.is_empty());
    let res = finish_login(&app, &c.ceremony, alice.assert(ORIGIN, c.options)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    // RFC 8176 §2.
    assert_eq!(amr_of(&body), json!(["hwk", "user", "mfa"]));
    assert!(body["refresh_token"].is_string());

    let events = app.sql().rows(
        "SELECT detail FROM events WHERE kind = 'login_succeeded' ORDER BY id DESC",
        &[],
    );
    let detail: Value = serde_json::from_str(events[0][0].as_deref().unwrap()).unwrap();
    assert_eq!(detail["method"], "passkey");
    let listed: Value = app
        .get_bearer("/me/passkeys", body["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");
}

#[tokio::test]
async fn browser_mode_passkey_sign_in_sets_the_refresh_cookie_and_checks_csrf() {
    let app = passkey_app().await;
    let mut alice = alice_with_passkey(&app).await;
    // OWASP CSRF cheat sheet: without the custom header the start is refused.
    let bare = app
        .client
        .post(app.url("/browser/login/passkey/start"))
        .header("Origin", ORIGIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(bare, StatusCode::FORBIDDEN, "forbidden").await;
    let c = challenge_of(
        browser_post(&app, "/browser/login/passkey/start")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let credential = alice.assert(ORIGIN, c.options);
    let body = json!({"ceremony": c.ceremony, "credential": credential});
    let cross_site = app
        .client
        .post(app.url("/browser/login/passkey/finish"))
        .header("Origin", ORIGIN)
        .header("X-Latchkey-CSRF", "1")
        .header("Sec-Fetch-Site", "cross-site")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(cross_site, StatusCode::FORBIDDEN, "forbidden").await;
    // Refused before anything was read: the ceremony still finishes.
    let res = browser_post(&app, "/browser/login/passkey/finish")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-lk_rt="))
        .expect("the refresh cookie is set");
    assert!(cookie.to_ascii_lowercase().contains("httponly"));
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(amr_of(&body), json!(["hwk", "user", "mfa"]));
}

#[tokio::test]
async fn a_ceremony_finishes_only_in_the_mode_it_started_in() {
    let app = passkey_app().await;
    let mut alice = alice_with_passkey(&app).await;
    let json_started = start_login(&app).await;
    let credential = alice.assert(ORIGIN, json_started.options);
    let res = browser_post(&app, "/browser/login/passkey/finish")
        .json(&json!({"ceremony": json_started.ceremony, "credential": credential}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;

    let browser_started = challenge_of(
        browser_post(&app, "/browser/login/passkey/start")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let credential = alice.assert(ORIGIN, browser_started.options);
    let res = finish_login(&app, &browser_started.ceremony, credential).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_replayed_assertion_is_refused_with_its_ceremony_or_another() {
    let app = passkey_app().await;
    let mut alice = alice_with_passkey(&app).await;
    let c = start_login(&app).await;
    let credential = alice.assert(ORIGIN, c.options);
    let first = finish_login(&app, &c.ceremony, credential.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    // The ceremony is spent.
    let again = finish_login(&app, &c.ceremony, credential.clone()).await;
    assert_error(again, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // A fresh ceremony has a fresh challenge the old assertion did not sign.
    let fresh = start_login(&app).await;
    let replayed = finish_login(&app, &fresh.ceremony, credential).await;
    assert_error(replayed, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_login_ceremony_expires_after_five_minutes() {
    let app = passkey_app().await;
    let mut alice = alice_with_passkey(&app).await;
    let c = start_login(&app).await;
    let credential = alice.assert(ORIGIN, c.options);
    app.advance(Duration::from_secs(5 * 60));
    let late = finish_login(&app, &c.ceremony, credential).await;
    assert_error(late, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn an_assertion_made_at_another_origin_is_refused() {
    let app = passkey_app().await;
    let mut alice = alice_with_passkey(&app).await;
    let c = start_login(&app).await;
    let phished = alice.assert("http://localhost:9999", c.options);
    let res = finish_login(&app, &c.ceremony, phished).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.events_of("login_failed").len(), 1);
}

#[tokio::test]
async fn an_assertion_signed_for_another_rp_id_is_refused() {
    let app = passkey_app().await;
    let mut alice = alice_with_passkey(&app).await;
    let c = start_login(&app).await;
    // WebAuthn Level 3 §7.2 step 15: the rpIdHash must be our RP ID's.
    let other = alice.assert_for(ORIGIN, c.options, Some("evil.example"));
    let res = finish_login(&app, &c.ceremony, other).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_counter_that_goes_back_is_refused_and_recorded_as_a_suspected_clone() {
    let app = passkey_app().await;
    let mut alice = alice_with_passkey(&app).await;
    let c = start_login(&app).await;
    let ok = finish_login(&app, &c.ceremony, alice.assert(ORIGIN, c.options)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    // Another copy of the key signed many times meanwhile: the stored counter is ahead
    // of this authenticator's (WebAuthn Level 3 §7.2 step 22).
    app.sql().exec("UPDATE passkeys SET counter = 1000", &[]);
    let c = start_login(&app).await;
    let res = finish_login(&app, &c.ceremony, alice.assert(ORIGIN, c.options)).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let suspected = app.sql().rows(
        "SELECT detail FROM events WHERE kind = 'passkey_clone_suspected'",
        &[],
    );
    assert_eq!(suspected.len(), 1);
    let detail: Value = serde_json::from_str(suspected[0][0].as_deref().unwrap()).unwrap();
    assert_eq!(detail["stored_counter"], 1000);
    assert_eq!(detail["passkey_id"], json!(alice.id));
}

#[tokio::test]
async fn failed_passkey_assertions_count_in_the_login_throttle() {
    let app = spawn_app_with(|s| {
        passkey_settings(s);
        s.login.max_failures_per_account_per_hour = 3;
    })
    .await;
    let mut alice = alice_with_passkey(&app).await;
    for _ in 0..3 {
        let c = start_login(&app).await;
        let bad = alice.assert("http://localhost:9999", c.options);
        let res = finish_login(&app, &c.ceremony, bad).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    // OWASP Authentication cheat sheet: the account is throttled, a right answer too.
    let c = start_login(&app).await;
    let good = alice.assert(ORIGIN, c.options);
    let res = finish_login(&app, &c.ceremony, good).await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
}

#[tokio::test]
async fn a_ceremony_started_on_one_instance_finishes_on_another() {
    let a = passkey_app().await;
    let b = spawn_instance(
        a.settings.clone(),
        a.clock.clone(),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let mut alice = alice_with_passkey(&a).await;
    let c = start_login(&a).await;
    let res = finish_login(&b, &c.ceremony, alice.assert(ORIGIN, c.options)).await;
    assert_eq!(res.status(), StatusCode::OK);
    // And only once: A cannot finish it again.
    let c2 = start_login(&b).await;
    let credential = alice.assert(ORIGIN, c2.options);
    assert_eq!(
        finish_login(&a, &c2.ceremony, credential.clone())
            .await
            .status(),
        StatusCode::OK
    );
    let again = finish_login(&b, &c2.ceremony, credential).await;
    assert_error(again, StatusCode::BAD_REQUEST, "invalid_grant").await;
}
