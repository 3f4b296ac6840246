//! Browser (SPA) mode over HTTP: the refresh cookie's attributes, CSRF refusals that
//! change nothing (OWASP CSRF cheat sheet), and CORS for exactly the listed origins.
//! `spa.rs` drives the same endpoints from a real Chromium.

use std::time::Duration;

use latchkey::config::ClientSettings;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, TestApp, PASSWORD};

pub const SPA_ORIGIN: &str = "http://localhost:5173";
const OTHER_CLIENT_ORIGIN: &str = "http://localhost:6000";
const EVIL_ORIGIN: &str = "https://evil.example";
const COOKIE: &str = "__Host-lk_rt";

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.clients[0].allowed_origins = vec![SPA_ORIGIN.into()];
        let mut other = ClientSettings::named("admin-console");
        other.allowed_origins = vec![OTHER_CLIENT_ORIGIN.into()];
        s.clients.push(other);
    })
    .await
}

fn browser_post(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::RequestBuilder {
    let mut req = app
        .client
        .post(app.url(path))
        .header("Origin", SPA_ORIGIN)
        .header("X-Latchkey-CSRF", "1")
        .header("Sec-Fetch-Site", "same-site");
    if let Some(c) = cookie {
        req = req.header("Cookie", format!("{COOKIE}={c}"));
    }
    req
}

/// The `__Host-lk_rt` Set-Cookie header, split into (value, attributes lower-cased).
fn set_cookie(res: &Response) -> (String, Vec<String>) {
    let raw = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{COOKIE}=")))
        .expect("a refresh cookie is set");
    let mut parts = raw.split(';').map(str::trim);
    let value = parts.next().unwrap()[COOKIE.len() + 1..].to_owned();
    (value, parts.map(str::to_ascii_lowercase).collect())
}

async fn browser_refresh(app: &TestApp, cookie: &str) -> Response {
    browser_post(app, "/browser/refresh", Some(cookie))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

async fn browser_login(app: &TestApp, remember_me: bool) -> (Response, String) {
    let res = browser_post(app, "/browser/login", None)
        .json(&json!({"username": "alice", "password": PASSWORD, "remember_me": remember_me}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (value, _) = set_cookie(&res);
    (res, value)
}

#[tokio::test]
async fn browser_login_puts_the_refresh_token_only_in_a_host_prefixed_httponly_cookie() {
    let app = app().await;
    app.signup("alice", PASSWORD).await;
    let (res, value) = browser_login(&app, true).await;
    let (_, attrs) = set_cookie(&res);
    for attr in ["httponly", "secure", "samesite=strict", "path=/"] {
        assert!(attrs.iter().any(|a| a == attr), "{attr} in {attrs:?}");
    }
    assert!(
        !attrs.iter().any(|a| a.starts_with("domain")),
        "__Host- forbids Domain"
    );
    // Max-Age is the session's absolute lifetime (30 days), well under 400 days.
    assert!(attrs.iter().any(|a| a == "max-age=2592000"), "{attrs:?}");
    assert_eq!(res.headers()["access-control-allow-origin"], SPA_ORIGIN);
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    assert!(res.headers()["vary"].to_str().unwrap().contains("Origin"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(!body.to_string().contains(&value));
    assert!(body["access_token"].is_string());
    assert!(
        value.starts_with("lk1_") && value.len() == 95,
        "a located refresh token"
    );
    // The cookie holds a real refresh token of the session in the body.
    let t = app
        .get_bearer("/me", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(t.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_remember_me_the_cookie_has_no_max_age_and_dies_with_the_browser() {
    let app = app().await;
    app.signup("alice", PASSWORD).await;
    let (res, _) = browser_login(&app, false).await;
    let (_, attrs) = set_cookie(&res);
    assert!(
        !attrs
            .iter()
            .any(|a| a.starts_with("max-age") || a.starts_with("expires")),
        "{attrs:?}"
    );
}

#[tokio::test]
async fn browser_refresh_rotates_the_cookie_with_the_same_grace_and_reuse_rules() {
    let app = app().await;
    app.signup("alice", PASSWORD).await;
    let (_, first) = browser_login(&app, true).await;
    let res = browser_refresh(&app, &first).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (second, attrs) = set_cookie(&res);
    assert_ne!(first, second);
    assert!(attrs.iter().any(|a| a == "httponly"));
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert!(body["access_token"].is_string());

    // Two tabs: the parent inside the reuse interval gets the same head.
    let res = browser_refresh(&app, &first).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(set_cookie(&res).0, second);

    // After the interval the parent is reuse: the whole session ends.
    app.advance(Duration::from_secs(11));
    let res = browser_refresh(&app, &first).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let res = browser_refresh(&app, &second).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.events_of("refresh_token_reuse_detected").len(), 1);
}

#[tokio::test]
async fn browser_logout_revokes_the_session_and_clears_the_cookie() {
    let app = app().await;
    app.signup("alice", PASSWORD).await;
    let (_, cookie) = browser_login(&app, true).await;
    let res = browser_post(&app, "/browser/logout", Some(&cookie))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (value, attrs) = set_cookie(&res);
    assert_eq!(value, "");
    assert!(attrs.iter().any(|a| a == "max-age=0"), "{attrs:?}");
    let res = browser_refresh(&app, &cookie).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let revoked: i64 = app.sql().count(
        "SELECT count(*) FROM sessions WHERE revoked_reason = 'logout'",
        &[],
    );
    assert_eq!(revoked, 1);
}

/// Everything the store holds that a browser request could change.
fn store_snapshot(app: &TestApp) -> (i64, i64, i64, Option<i64>) {
    let db = app.sql();
    let count = |sql: &str| db.count(sql, &[]);
    (
        count("SELECT count(*) FROM sessions"),
        count("SELECT count(*) FROM refresh_tokens"),
        count("SELECT count(*) FROM events"),
        db.value("SELECT max(last_active_at) FROM sessions", &[])
            .map(|v| v.parse().unwrap()),
    )
}

#[tokio::test]
async fn owasp_csrf_every_variant_is_403_before_any_state_change() {
    let app = app().await;
    app.signup("alice", PASSWORD).await;
    let (_, cookie) = browser_login(&app, true).await;
    let before = store_snapshot(&app);
    let login_body = json!({"username": "alice", "password": PASSWORD}).to_string();
    // (case, headers, content type, body)
    type Variant<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, String);
    let variants: Vec<Variant> = vec![
        (
            "no Origin",
            vec![("X-Latchkey-CSRF", "1")],
            "application/json",
            login_body.clone(),
        ),
        (
            "foreign Origin",
            vec![("Origin", EVIL_ORIGIN), ("X-Latchkey-CSRF", "1")],
            "application/json",
            login_body.clone(),
        ),
        (
            "Origin of another client",
            vec![("Origin", OTHER_CLIENT_ORIGIN), ("X-Latchkey-CSRF", "1")],
            "application/json",
            login_body.clone(),
        ),
        (
            "no CSRF header",
            vec![("Origin", SPA_ORIGIN)],
            "application/json",
            login_body.clone(),
        ),
        (
            "CSRF header not 1",
            vec![("Origin", SPA_ORIGIN), ("X-Latchkey-CSRF", "true")],
            "application/json",
            login_body.clone(),
        ),
        (
            "text/plain body",
            vec![("Origin", SPA_ORIGIN), ("X-Latchkey-CSRF", "1")],
            "text/plain",
            login_body.clone(),
        ),
        (
            "form body",
            vec![("Origin", SPA_ORIGIN), ("X-Latchkey-CSRF", "1")],
            "application/x-www-form-urlencoded",
            format!("username=alice&password={}", PASSWORD.replace(' ', "+")),
        ),
        (
            "Sec-Fetch-Site cross-site",
            vec![
                ("Origin", SPA_ORIGIN),
                ("X-Latchkey-CSRF", "1"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            "application/json",
            login_body.clone(),
        ),
    ];
    for path in ["/browser/login", "/browser/refresh", "/browser/logout"] {
        for (case, headers, content_type, body) in &variants {
            if *case == "Origin of another client" && path == "/browser/login" {
                // At login the client is named in the body; tested below.
                continue;
            }
            let mut req = app
                .client
                .post(app.url(path))
                .header("content-type", *content_type)
                .header("Cookie", format!("{COOKIE}={cookie}"))
                .body(body.clone());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let res = req.send().await.unwrap();
            assert!(res.headers().get("set-cookie").is_none(), "{path} {case}");
            assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
            assert_eq!(
                store_snapshot(&app),
                before,
                "{path} {case}: nothing changed"
            );
        }
    }
    // A login naming the other client from the SPA's origin.
    let res = browser_post(&app, "/browser/login", None)
        .json(&json!({"username": "alice", "password": PASSWORD, "client_id": "admin-console"}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(store_snapshot(&app), before);
    // The cookie still works: none of the refusals touched it.
    let res = browser_refresh(&app, &cookie).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn cors_preflight_allows_exactly_the_listed_origins_with_credentials_and_never_star() {
    let app = app().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/browser/refresh"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,x-latchkey-csrf",
            )
            .send()
    };
    let res = preflight(SPA_ORIGIN).await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], SPA_ORIGIN);
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-latchkey-csrf"), "{allowed}");
    assert!(res.headers()["vary"].to_str().unwrap().contains("Origin"));

    let res = preflight(EVIL_ORIGIN).await.unwrap();
    for h in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-headers",
        "access-control-allow-methods",
    ] {
        assert!(res.headers().get(h).is_none(), "{h} for a foreign origin");
    }
    // A simple request from a foreign origin gets no CORS headers either.
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("Origin", EVIL_ORIGIN)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}
