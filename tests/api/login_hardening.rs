//! Login throttling and the second step of login under attack (docs/contract.md "Login
//! throttling", "Second factor", "Scale-out on PostgreSQL"; OWASP Authentication cheat
//! sheet, device cookies; NIST SP 800-63B §5.2.2). Every test runs on both backends; the
//! races across three instances are in `cluster.rs`.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, TestApp, PASSWORD};

const SPA_ORIGIN: &str = "https://app.example.com";

fn behind_proxy(s: &mut latchkey::config::Settings) {
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// `POST path` as if from `ip` (the test server trusts 127.0.0.1 as a proxy).
async fn post_from(app: &TestApp, ip: &str, path: &str, body: &Value) -> Response {
    app.client
        .post(app.url(path))
        .header("X-Forwarded-For", ip)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A browser request: the SPA's Origin and the CSRF header, and `cookie` if given.
async fn browser_from(
    app: &TestApp,
    ip: &str,
    path: &str,
    body: &Value,
    cookie: Option<&str>,
) -> Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header("X-Forwarded-For", ip)
        .header("origin", SPA_ORIGIN)
        .header("x-latchkey-csrf", "1")
        .json(body);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

fn count(app: &TestApp, kind: &str) -> usize {
    app.events_of(kind).len()
}

// ---- Issue 26 item 6: the limit is reserved before the check ----

/// ASVS v4 2.2.1: with 9 failures against a limit of 10, three attempts at once get one
/// password check between them, never more (the others 429); the account's failures
/// stay at the limit.
#[tokio::test]
async fn asvs_2_2_1_three_attempts_at_once_at_the_limit_get_one_password_check_between_them() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.login.max_failures_per_account_per_hour = 10;
        s.login.failures_before_delay = 1000;
    })
    .await;
    app.signup("alice", PASSWORD).await;
    let wrong = json!({"username": "alice", "password": "guess guess guess"});
    for i in 0..9 {
        let res = post_from(&app, &format!("203.0.113.{i}"), "/login", &wrong).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let (a, b, c) = tokio::join!(
        post_from(&app, "192.0.2.1", "/login", &wrong),
        post_from(&app, "192.0.2.2", "/login", &wrong),
        post_from(&app, "192.0.2.3", "/login", &wrong),
    );
    let statuses = [a.status(), b.status(), c.status()];
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(checked <= 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS));
    assert!(count(&app, "login_failed") <= 10);
}

// ---- Issue 26 item 7: text no name can hold ----

/// docs/contract.md "Scale-out on PostgreSQL": a NUL (or another control character) in
/// a username is 400 `invalid_request` at `/login`, `/browser/login`, `/signup` and
/// `/password/forgot`, before any store access (no event, no 503 on PostgreSQL, no 401
/// on SQLite).
#[tokio::test]
async fn rfc6749_5_2_a_nul_or_control_character_in_a_username_is_invalid_request_everywhere() {
    let app = spawn_app_with(|s| {
        s.clients[0].allowed_origins = vec![SPA_ORIGIN.into()];
    })
    .await;
    app.signup("alice", PASSWORD).await;
    let events = app.sql().count("SELECT count(*) FROM events", &[]);
    for name in [
        "alice\0",
        "\0",
        "al\u{0}ice",
        "alice\u{7}",
        "ali\u{1b}[0mce",
    ] {
        let creds = json!({"username": name, "password": PASSWORD});
        let res = app.post_json("/login", &creds).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        let res = browser_from(&app, "127.0.0.1", "/browser/login", &creds, None).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        let res = app.signup(name, PASSWORD).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        let res = app
            .post_json("/password/forgot", &json!({"username": name}))
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert_eq!(
        app.sql().count("SELECT count(*) FROM events", &[]),
        events,
        "nothing recorded"
    );
    // An unknown name is still the generic 401.
    let res = app
        .post_json(
            "/login",
            &json!({"username": "nobody here", "password": PASSWORD}),
        )
        .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}
