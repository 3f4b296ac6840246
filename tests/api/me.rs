use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn signup_login_me_happy_path() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app.get_bearer("/me", &t.access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["roles"], serde_json::json!([]));
    assert!(me["id"].is_string() && me["created_at"].is_string());
}

#[tokio::test]
async fn rfc6750_3_me_without_a_valid_bearer_is_401_with_a_challenge() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let mut tampered = t.access.clone();
    tampered.pop();
    tampered.push(if t.access.ends_with('A') { 'B' } else { 'A' });
    for token in [
        None,
        Some("garbage"),
        Some(tampered.as_str()),
        Some(t.refresh.as_str()),
    ] {
        let mut req = app.client.get(app.url("/me"));
        if let Some(tok) = token {
            req = req.bearer_auth(tok);
        }
        let res = req.send().await.unwrap();
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

#[tokio::test]
async fn an_expired_access_token_is_refused_after_the_leeway() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    // 15 min TTL + 30 s leeway.
    app.advance(std::time::Duration::from_secs(15 * 60 + 20));
    assert_eq!(
        app.get_bearer("/me", &t.access).await.status(),
        StatusCode::OK
    );
    app.advance(std::time::Duration::from_secs(15));
    assert_error(
        app.get_bearer("/me", &t.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}
