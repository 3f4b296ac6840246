//! Login throttling and the second step of login under attack (docs/contract.md "Login
//! throttling", "Second factor", "Scale-out on PostgreSQL"; OWASP Authentication cheat
//! sheet, device cookies; NIST SP 800-63B §5.2.2). Every test runs on both backends; the
//! races across three instances are in `cluster.rs`.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, totp_code, TestApp, PASSWORD};

const SPA_ORIGIN: &str = "https://app.example.com";
const DEVICE_COOKIE: &str = "__Host-lk_device";

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

/// The `mfa_token` of an `mfa_required` answer.
async fn mfa_token(res: Response) -> String {
    let body = assert_error(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    body["mfa_token"].as_str().unwrap().to_owned()
}

/// The right password at `/login` from `ip` (with `extra` members), expecting
/// `mfa_required`.
async fn first_step(app: &TestApp, ip: &str, name: &str, extra: Value) -> String {
    let mut body = json!({"username": name, "password": PASSWORD});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    mfa_token(post_from(app, ip, "/login", &body).await).await
}

/// A user with a confirmed TOTP factor, and the device token of a finished login of
/// theirs from `ip` (the owner's device).
async fn enrolled_with_device(app: &TestApp, name: &str, ip: &str) -> String {
    let t = app.user_with_session(name).await;
    app.enrol_totp(name, &t.access).await;
    let token = first_step(app, ip, name, json!({})).await;
    let code = app.next_code(name);
    let res = post_from(
        app,
        ip,
        "/login/mfa",
        &json!({"mfa_token": token, "code": code}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["device_token"].as_str().unwrap().to_owned()
}

/// A code that is wrong now (ten steps ahead of the clock).
fn wrong_code(app: &TestApp, name: &str, n: i64) -> String {
    let secret = app.totp.lock().unwrap()[name].secret.clone();
    let step = latchkey::clock::Clock::now_millis(app.clock.as_ref()) / 1000 / 30;
    totp_code(&secret, step + 10 + n % 20)
}

fn count(app: &TestApp, kind: &str) -> usize {
    app.events_of(kind).len()
}

// ---- Issue 26 item 2: the second step honours the device token ----

/// OWASP device cookies: 100 wrong passwords from 25 addresses fill the account's
/// hourly limit; its owner, with the right password and the device token of an earlier
/// login, gets through `/login` and through `/login/mfa` too, with a code or a recovery
/// code, while the same second step without the device token is throttled.
#[tokio::test]
async fn owasp_device_cookies_an_attack_from_25_addresses_never_locks_the_known_device_out_of_login_mfa(
) {
    let app = spawn_app_with(behind_proxy).await;
    let device = enrolled_with_device(&app, "alice", "198.51.100.7").await;
    for i in 0..100 {
        let res = post_from(
            &app,
            &format!("203.0.113.{}", i % 25),
            "/login",
            &json!({"username": "alice", "password": "guess guess guess"}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let res = post_from(
        &app,
        "192.0.2.50",
        "/login",
        &json!({"username": "alice", "password": PASSWORD}),
    )
    .await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;

    let with_device = json!({"device_token": device});
    let token = first_step(&app, "198.51.100.9", "alice", with_device.clone()).await;
    let code = app.next_code("alice");
    // Without the device token the second step is an untrusted client's: throttled.
    let res = post_from(
        &app,
        "198.51.100.9",
        "/login/mfa",
        &json!({"mfa_token": token, "code": code}),
    )
    .await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    let res = post_from(
        &app,
        "198.51.100.9",
        "/login/mfa",
        &json!({"mfa_token": token, "code": code, "device_token": device}),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the code with the device token"
    );

    let recovery = app.totp.lock().unwrap()["alice"].recovery_codes[0].clone();
    let token = first_step(&app, "198.51.100.9", "alice", with_device).await;
    let res = post_from(
        &app,
        "198.51.100.9",
        "/login/mfa",
        &json!({"mfa_token": token, "recovery_code": recovery, "device_token": device}),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a recovery code with the device token"
    );
}

/// The same in browser mode: the device cookie carries the owner through
/// `/browser/login` and `/browser/login/mfa` while the account is under attack.
#[tokio::test]
async fn owasp_device_cookies_the_device_cookie_carries_the_owner_through_browser_login_mfa() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.login.max_failures_per_account_per_hour = 5;
        s.clients[0].allowed_origins = vec![SPA_ORIGIN.into()];
    })
    .await;
    let device = enrolled_with_device(&app, "alice", "198.51.100.7").await;
    for i in 0..5 {
        let res = post_from(
            &app,
            &format!("203.0.113.{i}"),
            "/login",
            &json!({"username": "alice", "password": "guess guess guess"}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let cookie = format!("{DEVICE_COOKIE}={device}");
    let creds = json!({"username": "alice", "password": PASSWORD});
    let res = browser_from(
        &app,
        "198.51.100.9",
        "/browser/login",
        &creds,
        Some(&cookie),
    )
    .await;
    let token = mfa_token(res).await;
    let step = json!({"mfa_token": token, "code": app.next_code("alice")});
    let res = browser_from(&app, "198.51.100.9", "/browser/login/mfa", &step, None).await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // A device token in the body counts for nothing in browser mode: only the cookie.
    let mut in_body = step.clone();
    in_body["device_token"] = json!(device);
    let res = browser_from(&app, "198.51.100.9", "/browser/login/mfa", &in_body, None).await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    let res = browser_from(
        &app,
        "198.51.100.9",
        "/browser/login/mfa",
        &step,
        Some(&cookie),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none() && body.get("device_token").is_none());
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

/// OWASP MFA cheat sheet: 5 wrong codes end an `mfa_token`, counted atomically: after 4,
/// three wrong codes at once make one more check between them, never a sixth.
#[tokio::test]
async fn five_wrong_codes_end_the_mfa_token_even_when_three_arrive_at_once_after_four() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.login.failures_before_delay = 1000;
    })
    .await;
    enrolled_with_device(&app, "alice", "198.51.100.7").await;
    let token = first_step(&app, "192.0.2.1", "alice", json!({})).await;
    for n in 0..4 {
        let body = json!({"mfa_token": token, "code": wrong_code(&app, "alice", n)});
        let res = post_from(&app, "192.0.2.1", "/login/mfa", &body).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let body = |n| json!({"mfa_token": token, "code": wrong_code(&app, "alice", n)});
    let (b4, b5, b6) = (body(4), body(5), body(6));
    let (a, b, c) = tokio::join!(
        post_from(&app, "192.0.2.2", "/login/mfa", &b4),
        post_from(&app, "192.0.2.3", "/login/mfa", &b5),
        post_from(&app, "192.0.2.4", "/login/mfa", &b6),
    );
    let statuses = [a.status(), b.status(), c.status()];
    assert!(
        !statuses.contains(&StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(count(&app, "mfa_failed"), 5, "{statuses:?}");
    let res = post_from(
        &app,
        "192.0.2.1",
        "/login/mfa",
        &json!({"mfa_token": token, "code": app.next_code("alice")}),
    )
    .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
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

// ---- Issue 26 item 11: at most 100 wrong codes in a row ----

/// `n` wrong codes from unknown devices, five per `mfa_token`.
async fn wrong_codes_in_a_row(app: &TestApp, name: &str, n: i64) {
    let mut token = String::new();
    for i in 0..n {
        if i % 5 == 0 {
            token = first_step(app, "203.0.113.1", name, json!({})).await;
        }
        let body = json!({"mfa_token": token, "code": wrong_code(app, name, i)});
        let res = post_from(app, "203.0.113.1", "/login/mfa", &body).await;
        assert!(
            res.status() == StatusCode::UNAUTHORIZED || res.status() == StatusCode::BAD_REQUEST,
            "wrong code {i}: {}",
            res.status()
        );
    }
}

/// NIST SP 800-63B §5.2.2: after 100 wrong codes in a row over all devices, a TOTP code
/// from a device that never signed in is not even checked (403, the `mfa_token` not
/// spent); a recovery code gets through, and so does the owner's known device (it is no
/// lockout of the owner); a right code starts the count again.
#[tokio::test]
async fn nist_800_63b_5_2_2_after_100_wrong_codes_in_a_row_only_a_known_device_or_a_recovery_code_proceeds(
) {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        // Only the consecutive cap is under test, not the hourly or per-address limits.
        s.login.max_failures_per_account_per_hour = 10_000;
        s.login.max_failures_per_ip_per_hour = 100_000;
        s.login.failures_before_delay = 100_000;
    })
    .await;
    let device = enrolled_with_device(&app, "alice", "198.51.100.7").await;
    wrong_codes_in_a_row(&app, "alice", 100).await;
    let failed = count(&app, "mfa_failed");

    // An unknown device, the right code: refused unchecked, the token still good.
    let token = first_step(&app, "192.0.2.1", "alice", json!({})).await;
    let code = app.next_code("alice");
    let res = post_from(
        &app,
        "192.0.2.1",
        "/login/mfa",
        &json!({"mfa_token": token, "code": code}),
    )
    .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(count(&app, "mfa_failed"), failed);
    // The known device: its codes are checked (a wrong one counts)...
    let with_device =
        |code: &str| json!({"mfa_token": token, "code": code, "device_token": device});
    let res = post_from(
        &app,
        "198.51.100.7",
        "/login/mfa",
        &with_device(&wrong_code(&app, "alice", 7)),
    )
    .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // ...and the right one gets in, on the same token.
    let res = post_from(&app, "198.51.100.7", "/login/mfa", &with_device(&code)).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The count started again: an unknown device's right code works.
    let token = first_step(&app, "192.0.2.1", "alice", json!({})).await;
    let res = post_from(
        &app,
        "192.0.2.1",
        "/login/mfa",
        &json!({"mfa_token": token, "code": app.next_code("alice")}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Again 100 in a row: a recovery code from an unknown device proceeds.
    wrong_codes_in_a_row(&app, "alice", 100).await;
    let token = first_step(&app, "192.0.2.1", "alice", json!({})).await;
    let code = app.next_code("alice");
    let res = post_from(
        &app,
        "192.0.2.1",
        "/login/mfa",
        &json!({"mfa_token": token, "code": code}),
    )
    .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let recovery = app.totp.lock().unwrap()["alice"].recovery_codes[0].clone();
    let res = post_from(
        &app,
        "192.0.2.1",
        "/login/mfa",
        &json!({"mfa_token": token, "recovery_code": recovery}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

// ---- Issue 26 item 12: an mfa_token finishes where its login started ----

/// OWASP Session Management / docs/contract.md "Browser mode": an `mfa_token` from
/// `/browser/login` is refused at `/login/mfa` (400 `invalid_grant`, no refresh token in
/// any body), and one from `/login` at `/browser/login/mfa`; refusals at the wrong
/// endpoint neither spend the token nor count as wrong codes, so even five of them
/// leave it good where it belongs.
#[tokio::test]
async fn an_mfa_token_finishes_only_at_the_second_step_of_the_endpoint_its_login_started_at() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.clients[0].allowed_origins = vec![SPA_ORIGIN.into()];
    })
    .await;
    enrolled_with_device(&app, "alice", "198.51.100.7").await;
    let creds = json!({"username": "alice", "password": PASSWORD});

    let res = browser_from(&app, "192.0.2.1", "/browser/login", &creds, None).await;
    let token = mfa_token(res).await;
    let code = app.next_code("alice");
    let step = json!({"mfa_token": token, "code": code});
    for _ in 0..5 {
        let res = post_from(&app, "192.0.2.1", "/login/mfa", &step).await;
        let body = assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
        assert!(body.get("refresh_token").is_none() && body.get("access_token").is_none());
    }
    assert_eq!(count(&app, "mfa_failed"), 0);
    let res = browser_from(&app, "192.0.2.1", "/browser/login/mfa", &step, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("__Host-lk_rt="));
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none() && body.get("device_token").is_none());

    let token = first_step(&app, "192.0.2.1", "alice", json!({})).await;
    let step = json!({"mfa_token": token, "code": app.next_code("alice")});
    for _ in 0..5 {
        let res = browser_from(&app, "192.0.2.1", "/browser/login/mfa", &step, None).await;
        assert!(res.headers().get("set-cookie").is_none());
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    let res = post_from(&app, "192.0.2.1", "/login/mfa", &step).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(body["refresh_token"].is_string());
    assert_eq!(count(&app, "mfa_failed"), 0);
}
