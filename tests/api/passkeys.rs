//! Passkeys (docs/contract.md "Passkeys"): adding, listing, renaming and removing them,
//! with a software authenticator (webauthn-authenticator-rs's soft passkey) in place of
//! a browser and a security key.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_rs_proto::PublicKeyCredentialCreationOptions;

use crate::helpers::{assert_error, spawn_app, TestApp};
use crate::passkey_kit::{create, passkey_app as app, soft_passkey as authenticator, ORIGIN};

/// `POST /me/passkeys/register/start`: the ceremony token and the creation options.
async fn start(app: &TestApp, access: &str) -> (String, PublicKeyCredentialCreationOptions) {
    let res = app
        .post_bearer("/me/passkeys/register/start", access, &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let options = serde_json::from_value(body["options"].clone()).expect("creation options");
    (body["ceremony"].as_str().unwrap().to_owned(), options)
}

async fn finish(
    app: &TestApp,
    access: &str,
    ceremony: &str,
    credential: Value,
) -> reqwest::Response {
    app.post_bearer(
        "/me/passkeys/register/finish",
        access,
        &json!({"ceremony": ceremony, "credential": credential, "name": "Laptop"}),
    )
    .await
}

#[tokio::test]
async fn a_user_adds_a_passkey_lists_and_renames_it_and_removing_it_needs_step_up() {
    let app = app().await;
    let t = app.user_with_session("alice").await;
    let mut key = authenticator();
    let (ceremony, options) = start(&app, &t.access).await;
    assert_eq!(options.rp.id, "localhost");
    let res = finish(
        &app,
        &t.access,
        &ceremony,
        create(&mut key, ORIGIN, options),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let added: Value = res.json().await.unwrap();
    assert_eq!(added["name"], "Laptop");
    let id = added["id"].as_str().unwrap().to_owned();

    let listed: Value = app
        .get_bearer("/me/passkeys", &t.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([added]));

    let renamed = app
        .client
        .patch(app.url(&format!("/me/passkeys/{id}")))
        .bearer_auth(&t.access)
        .json(&json!({"name": "Work laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(
        renamed.json::<Value>().await.unwrap()["name"],
        "Work laptop"
    );

    assert_eq!(app.events_of("passkey_added").len(), 1);

    // The passkey is now a factor: removing it is a step-up route (RFC 9470), and a
    // login with the password alone is not enough.
    let path = format!("/me/passkeys/{id}");
    let refused = app.delete_bearer(&path, &t.access, None).await;
    assert_error(
        refused,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    assert!(app.events_of("passkey_removed").is_empty());
}

#[tokio::test]
async fn an_answer_made_for_another_origin_is_refused() {
    let app = app().await;
    let t = app.user_with_session("alice").await;
    let (ceremony, options) = start(&app, &t.access).await;
    let elsewhere = create(&mut authenticator(), "http://localhost:9999", options);
    let res = finish(&app, &t.access, &ceremony, elsewhere).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let listed: Value = app
        .get_bearer("/me/passkeys", &t.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn a_registration_ceremony_finishes_once() {
    let app = app().await;
    let t = app.user_with_session("alice").await;
    let (ceremony, options) = start(&app, &t.access).await;
    let answer = create(&mut authenticator(), ORIGIN, options);
    let first = finish(&app, &t.access, &ceremony, answer.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let replayed = finish(&app, &t.access, &ceremony, answer).await;
    assert_error(replayed, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_registration_ceremony_expires_after_five_minutes() {
    let app = app().await;
    let t = app.user_with_session("alice").await;
    let (ceremony, options) = start(&app, &t.access).await;
    let answer = create(&mut authenticator(), ORIGIN, options);
    app.advance(Duration::from_secs(5 * 60));
    let late = finish(&app, &t.access, &ceremony, answer).await;
    assert_error(late, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn another_users_ceremony_cannot_be_finished() {
    let app = app().await;
    let alice = app.user_with_session("alice").await;
    let bob = app.user_with_session("bob").await;
    let (ceremony, options) = start(&app, &alice.access).await;
    let answer = create(&mut authenticator(), ORIGIN, options);
    let res = finish(&app, &bob.access, &ceremony, answer).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn passkeys_are_off_when_the_issuer_is_an_ip_address_and_no_rp_id_is_set() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app
        .post_bearer("/me/passkeys/register/start", &t.access, &json!({}))
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}
