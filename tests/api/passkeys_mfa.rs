//! A passkey as the second step after a password, as step-up (RFC 9470) and for
//! `admin.require_mfa`, and what the operator sees and resets (docs/contract.md
//! "Passkeys", "Second factor").

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, jwt_parts, spawn_app_with, TestApp, PASSWORD};
use crate::passkey_kit::{
    challenge_of, passkey_app, passkey_settings, register, sign_in, start_login, Challenge, ORIGIN,
};

/// `/login` for a user with a passkey: 401 `mfa_required`; returns the body.
async fn password_step(app: &TestApp, username: &str) -> Value {
    let res = app.login_as(username, json!({})).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "mfa_required").await
}

async fn start_second(app: &TestApp, mfa_token: &Value) -> Challenge {
    challenge_of(
        app.post_json(
            "/login/mfa/passkey/start",
            &json!({ "mfa_token": mfa_token }),
        )
        .await,
    )
    .await
}

async fn finish_second(
    app: &TestApp,
    mfa_token: &Value,
    ceremony: &str,
    credential: Value,
) -> Response {
    app.post_json(
        "/login/mfa",
        &json!({"mfa_token": mfa_token, "ceremony": ceremony, "credential": credential}),
    )
    .await
}

#[tokio::test]
async fn a_password_login_of_a_user_with_a_passkey_finishes_with_the_passkey() {
    let app = passkey_app().await;
    let t = app.user_with_session("alice").await;
    let mut alice = register(&app, &t.access).await;
    let first = password_step(&app, "alice").await;
    assert_eq!(first["mfa_methods"], json!(["passkey"]));
    let c = start_second(&app, &first["mfa_token"]).await;
    // Only this user's passkey is allowed.
    assert_eq!(c.options.allow_credentials.len(), 1);
    let credential = alice.assert(ORIGIN, c.options);
    let res = finish_second(&app, &first["mfa_token"], &c.ceremony, credential).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let claims = jwt_parts(body["access_token"].as_str().unwrap()).1;
    // RFC 8176 §2: a password, then a key held.
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "mfa"]));
}

#[tokio::test]
async fn a_user_with_totp_and_a_passkey_is_offered_both() {
    let app = passkey_app().await;
    let t = app.user_with_session("alice").await;
    let mut alice = register(&app, &t.access).await;
    // Enrolling TOTP is a step-up route now: the passkey login satisfies it.
    let stepped = sign_in(&app, &mut alice).await;
    app.enrol_totp("alice", stepped["access_token"].as_str().unwrap())
        .await;
    let res = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    let first = assert_error(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    assert_eq!(
        first["mfa_methods"],
        json!(["totp", "recovery_code", "passkey"])
    );
}

#[tokio::test]
async fn a_wrong_passkey_answer_at_the_second_step_counts_like_a_wrong_code() {
    let app = passkey_app().await;
    let t = app.user_with_session("alice").await;
    let mut alice = register(&app, &t.access).await;
    let first = password_step(&app, "alice").await;
    let c = start_second(&app, &first["mfa_token"]).await;
    let phished = alice.assert("http://localhost:9999", c.options);
    let res = finish_second(&app, &first["mfa_token"], &c.ceremony, phished).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let failed = app.events_of("mfa_failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0]
        .1
        .as_deref()
        .unwrap()
        .contains(r#""method":"passkey""#));
    // The mfa_token lives on (four more tries), with a new ceremony.
    let c = start_second(&app, &first["mfa_token"]).await;
    let credential = alice.assert(ORIGIN, c.options);
    let res = finish_second(&app, &first["mfa_token"], &c.ceremony, credential).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn another_users_second_factor_ceremony_is_refused() {
    let app = passkey_app().await;
    let a = app.user_with_session("alice").await;
    register(&app, &a.access).await;
    let b = app.user_with_session("bob").await;
    let mut bob = register(&app, &b.access).await;
    let alice_first = password_step(&app, "alice").await;
    let bob_first = password_step(&app, "bob").await;
    let c = start_second(&app, &bob_first["mfa_token"]).await;
    let credential = bob.assert(ORIGIN, c.options);
    let res = finish_second(&app, &alice_first["mfa_token"], &c.ceremony, credential).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_passkey_login_satisfies_step_up_for_removing_the_passkey() {
    let app = passkey_app().await;
    let t = app.user_with_session("alice").await;
    let mut alice = register(&app, &t.access).await;
    let body = sign_in(&app, &mut alice).await;
    let access = body["access_token"].as_str().unwrap();
    let removed = app
        .delete_bearer(&format!("/me/passkeys/{}", alice.id), access, None)
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.events_of("passkey_removed").len(), 1);
    // With no factor left, the password alone signs in again.
    assert_eq!(
        app.login_as("alice", json!({})).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_passkey_login_satisfies_admin_require_mfa_and_the_admin_sees_passkeys() {
    let app = spawn_app_with(|s| {
        passkey_settings(s);
        s.admin.require_mfa = true;
    })
    .await;
    let out = app
        .cli(
            &["users", "add", "root", "--role", "admin"],
            &format!("{PASSWORD}\n"),
        )
        .await;
    assert!(out.status.success());
    let first = app.login("root").await;
    let refused = app.get_bearer("/admin/events", &first.access).await;
    assert_error(
        refused,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    let mut root = register(&app, &first.access).await;
    let body = sign_in(&app, &mut root).await;
    let access = body["access_token"].as_str().unwrap();
    let res = app
        .get_bearer(&format!("/admin/users/{}/passkeys", root.user_id), access)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let listed: Value = res.json().await.unwrap();
    assert_eq!(listed[0]["id"], json!(root.id));
    assert!(listed[0]["last_used_at"].is_string());
    // Names and dates only: no credential material.
    let keys: Vec<&String> = listed[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["created_at", "id", "last_used_at", "name"]);
}

#[tokio::test]
async fn cli_reset_mfa_removes_every_passkey_and_records_it() {
    let app = passkey_app().await;
    let t = app.user_with_session("alice").await;
    let mut alice = register(&app, &t.access).await;
    let out = app.cli(&["users", "reset-mfa", "alice"], "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.sql().count("SELECT COUNT(*) FROM passkeys", &[]), 0);
    let removed = app.events_of("passkey_removed");
    assert_eq!(removed.len(), 1);
    assert!(removed[0]
        .1
        .as_deref()
        .unwrap()
        .contains(r#""by":"administrator""#));
    // The passkey no longer signs in; the password alone does.
    let c = start_login(&app).await;
    let res = app
        .post_json(
            "/login/passkey/finish",
            &json!({"ceremony": c.ceremony, "credential": alice.assert(ORIGIN, c.options)}),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(
        app.login_as("alice", json!({})).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_browser_login_finishes_with_a_passkey_only_at_the_browser_second_step() {
    let app = passkey_app().await;
    let t = app.user_with_session("alice").await;
    let mut alice = register(&app, &t.access).await;
    let browser = |path: &str| {
        app.client
            .post(app.url(path))
            .header("Origin", ORIGIN)
            .header("X-Latchkey-CSRF", "1")
    };
    let res = browser("/browser/login")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let first = assert_error(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    assert_eq!(first["mfa_methods"], json!(["passkey"]));
    let token = &first["mfa_token"];
    // The ceremony takes the pending login's mode: /login/mfa refuses it.
    let c = start_second(&app, token).await;
    let credential = alice.assert(ORIGIN, c.options);
    let res = finish_second(&app, token, &c.ceremony, credential).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let c = start_second(&app, token).await;
    let credential = alice.assert(ORIGIN, c.options);
    let res = browser("/browser/login/mfa")
        .json(&json!({"mfa_token": token, "ceremony": c.ceremony, "credential": credential}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("__Host-lk_rt=")));
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
}
