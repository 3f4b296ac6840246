//! Abuse resistance (OWASP Authentication and Password Storage cheat sheets; ASVS v4
//! 2.2.1, v5 6.2–6.3; RFC 6749 §3.2): login throttling that cannot be turned into a
//! lockout, per-IP request limits, no account enumeration, the password policy, and
//! hostile input.

use std::io::{Read, Write};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, TestApp, PASSWORD};

/// Requests as if from `ip`: the test server trusts 127.0.0.1 as a proxy.
async fn login_from(app: &TestApp, ip: &str, username: &str, password: &str) -> Response {
    app.client
        .post(app.url("/login"))
        .header("X-Forwarded-For", ip)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

fn behind_proxy(s: &mut latchkey::config::Settings) {
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

fn retry_after(res: &Response) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn status_and_bytes(res: Response) -> (StatusCode, Option<String>, Vec<u8>) {
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, res.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn asvs_2_2_1_the_n_plus_1th_failure_in_the_hour_is_429_and_the_window_decays() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.login.max_failures_per_account_per_hour = 5;
        s.login.failures_before_delay = 1000; // delays tested on their own below
    })
    .await;
    app.signup("alice", PASSWORD).await;
    for i in 0..5 {
        // From five addresses: the account limit counts them all.
        let res = login_from(&app, &format!("203.0.113.{i}"), "alice", "wrong wrong").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let res = login_from(&app, "203.0.113.9", "alice", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&res), 3600);
    let body = assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(!body.to_string().contains("alice"));
    assert_eq!(app.events_of("login_throttled").len(), 1);
    // Another refusal in the same episode records no second event.
    login_from(&app, "203.0.113.9", "alice", PASSWORD).await;
    assert_eq!(app.events_of("login_throttled").len(), 1);

    app.advance(Duration::from_secs(3601));
    let res = login_from(&app, "203.0.113.9", "alice", PASSWORD).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the limit decays after the hour"
    );
}

#[tokio::test]
async fn a_success_resets_the_accounts_counter() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.login.max_failures_per_account_per_hour = 3;
        s.login.failures_before_delay = 1000;
    })
    .await;
    app.signup("alice", PASSWORD).await;
    for _ in 0..2 {
        login_from(&app, "203.0.113.1", "alice", "wrong wrong").await;
    }
    assert_eq!(
        login_from(&app, "203.0.113.1", "alice", PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
    for _ in 0..3 {
        let res = login_from(&app, "203.0.113.1", "alice", "wrong wrong").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "counter was reset");
    }
}

// The owner's way past an attack on their account is a device token, not the address
// they used before (which an attacker behind the same NAT shares): see
// `hardening::owasp_device_cookies_the_owners_device_gets_in_while_an_attack_locks_the_account`.

#[tokio::test]
async fn delays_grow_for_one_address_on_one_account() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.login.failures_before_delay = 2;
        s.login.first_delay = latchkey::config::HumanDuration::secs(1);
    })
    .await;
    app.signup("alice", PASSWORD).await;
    for _ in 0..2 {
        login_from(&app, "203.0.113.1", "alice", "wrong wrong").await;
    }
    let mut waits = Vec::new();
    for _ in 0..4 {
        let res = login_from(&app, "203.0.113.1", "alice", "wrong wrong").await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait = retry_after(&res);
        waits.push(wait);
        app.advance(Duration::from_secs(wait));
        let res = login_from(&app, "203.0.113.1", "alice", "wrong wrong").await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "allowed once the delay passed"
        );
    }
    assert_eq!(waits, vec![1, 2, 4, 8]);
    // Another address is not delayed.
    assert_eq!(
        login_from(&app, "203.0.113.2", "alice", PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_per_ip_failure_limit_is_independent_of_accounts() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.login.max_failures_per_ip_per_hour = 3;
        s.login.failures_before_delay = 1000;
    })
    .await;
    app.signup("victim", PASSWORD).await;
    for i in 0..3 {
        let res = login_from(&app, "203.0.113.66", &format!("user{i}"), "wrong wrong").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = login_from(&app, "203.0.113.66", "victim", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&res) > 0);
    assert_eq!(
        login_from(&app, "203.0.113.67", "victim", PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn owasp_no_enumeration_failures_are_byte_identical_and_so_is_throttling() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.login.max_failures_per_account_per_hour = 2;
        s.login.failures_before_delay = 1000;
    })
    .await;
    app.signup("alice", PASSWORD).await;
    app.signup("dora", PASSWORD).await;
    let admin = app.admin().await;
    let dora_id = app
        .sql()
        .text("SELECT id FROM users WHERE username = 'dora'", &[]);
    let res = app
        .post_bearer(
            &format!("/admin/users/{dora_id}/disable"),
            &admin.access,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let wrong_password =
        status_and_bytes(login_from(&app, "203.0.113.1", "alice", "wrong wrong").await).await;
    let unknown_user =
        status_and_bytes(login_from(&app, "203.0.113.2", "nobody", "wrong wrong").await).await;
    let disabled_user =
        status_and_bytes(login_from(&app, "203.0.113.3", "dora", PASSWORD).await).await;
    assert_eq!(wrong_password.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_password, unknown_user,
        "unknown user vs wrong password"
    );
    assert_eq!(
        wrong_password, disabled_user,
        "disabled user vs wrong password"
    );

    // Throttling keys on the name asked for, existing or not: same 429, same body,
    // same Retry-After.
    login_from(&app, "203.0.113.1", "alice", "wrong wrong").await;
    login_from(&app, "203.0.113.2", "nobody", "wrong wrong").await;
    let throttled_real =
        status_and_bytes(login_from(&app, "203.0.113.4", "alice", "x y z w v").await).await;
    let throttled_unknown =
        status_and_bytes(login_from(&app, "203.0.113.4", "nobody", "x y z w v").await).await;
    assert_eq!(throttled_real.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        throttled_real, throttled_unknown,
        "throttled: existing vs unknown"
    );
}

#[tokio::test]
async fn per_ip_rate_limits_answer_429_with_retry_after_and_recover() {
    let two = latchkey::config::RateLimit::new(2, 2);
    let app = spawn_app_with(move |s| {
        behind_proxy(s);
        s.rate_limits.signup = two;
        s.rate_limits.login = two;
        s.rate_limits.token = two;
        s.rate_limits.revoke = two;
        s.rate_limits.introspect = two;
    })
    .await;
    let from = |ip: &'static str| {
        let app = &app;
        move |path: &'static str| {
            let req = app.client.post(app.url(path)).header("X-Forwarded-For", ip);
            match path {
                "/signup" | "/login" => req.json(&json!({"username": "u", "password": "p"})),
                _ => req
                    .basic_auth(crate::helpers::RS_ID, Some(crate::helpers::RS_SECRET))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", "x"),
                        ("token", "x"),
                    ]),
            }
        }
    };
    for path in [
        "/signup",
        "/login",
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
    ] {
        let a = from("203.0.113.1");
        for _ in 0..2 {
            let res = a(path).send().await.unwrap();
            assert_ne!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        }
        let res = a(path).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(
            retry_after(&res),
            30,
            "{path}: one request per 30 s at 2/min"
        );
        assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
        // Another address has its own allowance.
        let b = from("203.0.113.2");
        assert_ne!(
            b(path).send().await.unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    app.advance(Duration::from_secs(30));
    let res = from("203.0.113.1")("/signup").send().await.unwrap();
    assert_ne!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "recovers with time"
    );
}

#[tokio::test]
async fn asvs_6_2_password_policy_table() {
    let app = spawn_app_with(|_| {}).await;
    let cases: Vec<(&str, String, StatusCode)> = vec![
        ("7 characters", "abcdefg".into(), StatusCode::BAD_REQUEST),
        ("8 characters", "kq3-zv8w".into(), StatusCode::CREATED),
        (
            "common: password",
            "password".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "common, other case",
            "PassWord1".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "common: qwertyuiop",
            "qwertyuiop".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no composition rules: lowercase words",
            "purple monkey dishwasher".into(),
            StatusCode::CREATED,
        ),
        (
            "no composition rules: digits only",
            "58203916472".into(),
            StatusCode::CREATED,
        ),
        ("64 characters", "w".repeat(63) + "!", StatusCode::CREATED),
        ("1024 bytes", "é".repeat(512), StatusCode::CREATED),
        ("1025 bytes", "x".repeat(1025), StatusCode::BAD_REQUEST),
    ];
    for (i, (case, password, status)) in cases.into_iter().enumerate() {
        let res = app.signup(&format!("user{i}"), &password).await;
        assert_eq!(res.status(), status, "{case}");
        if status == StatusCode::BAD_REQUEST {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"], "invalid_request", "{case}");
            if !case.starts_with("common") {
                assert!(!body.to_string().contains(&password), "{case}: not echoed");
            }
        }
    }
    let common: Value = app
        .signup("someone", "iloveyou2")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        common["error_description"]
            .as_str()
            .unwrap()
            .contains("common"),
        "{common}"
    );
}

#[tokio::test]
async fn asvs_6_2_no_truncation_a_64_character_password_differing_in_its_last_character_fails() {
    let app = spawn_app_with(|_| {}).await;
    let password = format!(
        "{}A",
        "correct-horse-"
            .repeat(5)
            .chars()
            .take(63)
            .collect::<String>()
    );
    assert_eq!(password.chars().count(), 64);
    assert_eq!(
        app.signup("alice", &password).await.status(),
        StatusCode::CREATED
    );
    let mut other = password.clone();
    other.pop();
    other.push('B');
    let res = app
        .post_json("/login", &json!({"username": "alice", "password": other}))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Also at 1024 bytes: the last byte matters.
    let long = "y".repeat(1023) + "1";
    assert_eq!(app.signup("bob", &long).await.status(), StatusCode::CREATED);
    let wrong = "y".repeat(1023) + "2";
    let res = app
        .post_json("/login", &json!({"username": "bob", "password": wrong}))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_password_change_applies_the_policy_and_needs_the_current_one() {
    let app = spawn_app_with(|_| {}).await;
    let t = app.user_with_session("alice").await;
    let res = app
        .post_bearer(
            "/me/password",
            &t.access,
            &json!({"current_password": PASSWORD, "new_password": "password123"}),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    let res = app
        .post_bearer(
            "/me/password",
            &t.access,
            &json!({"current_password": "not the password", "new_password": "a fresh passphrase"}),
        )
        .await;
    assert!(res.status().is_client_error());
    // Nothing changed: the old password still works.
    assert_eq!(
        app.post_json(
            "/login",
            &json!({"username": "alice", "password": PASSWORD})
        )
        .await
        .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn hostile_bodies_get_a_clear_4xx_and_write_nothing() {
    let app = spawn_app_with(|_| {}).await;
    let deep = "[".repeat(5000) + &"]".repeat(5000);
    let nested = format!(r#"{{"username":"mallory","password":{deep}}}"#);
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode)> = vec![
        (
            "JSON nested 5000 deep",
            "application/json",
            nested.into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "invalid UTF-8 in JSON",
            "application/json",
            b"{\"username\":\"mal\xff\xfelory\",\"password\":\"correct horse battery\"}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "NUL bytes",
            "application/json",
            b"\0\0\0\0".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "17 KiB body",
            "application/json",
            vec![b' '; 17 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "XML",
            "application/xml",
            b"<a/>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (case, ct, body, status) in cases {
        let res = app
            .client
            .post(app.url("/signup"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{case}");
        let v: Value = res
            .json()
            .await
            .unwrap_or_else(|_| panic!("{case}: JSON error body"));
        assert!(v["error"].is_string(), "{case}");
    }
    let users: i64 = app.sql().count("SELECT count(*) FROM users", &[]);
    assert_eq!(users, 0, "no partial write");

    // Form bodies: invalid UTF-8 and repeated parameters (RFC 6749 §3.2).
    for (case, body) in [
        (
            "invalid UTF-8 form",
            b"grant_type=refresh_token&refresh_token=%ff%fe".to_vec(),
        ),
        (
            "repeated parameter",
            b"grant_type=refresh_token&refresh_token=a&refresh_token=b".to_vec(),
        ),
    ] {
        let res = app
            .post_raw("/oauth/token", "application/x-www-form-urlencoded", body)
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        let _ = case;
    }
}

#[tokio::test]
async fn huge_headers_get_431_and_the_server_keeps_serving() {
    let app = spawn_app_with(|_| {}).await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Junk", "j".repeat(20 * 1024))
        .send()
        .await;
    assert_error(
        res.unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "invalid_request",
    )
    .await;
    // Beyond actix's own 128 KiB buffer the connection is refused outright.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Junk", "j".repeat(256 * 1024))
        .send()
        .await;
    assert!(res.is_err() || res.unwrap().status().is_client_error());
    // A new connection (the refused one was closed) is served as usual.
    let fresh = reqwest::Client::new();
    let res = fresh.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_slow_client_gets_408_and_is_disconnected() {
    let app = spawn_app_with(|s| {
        // The shortest that is reliable: actix measures it against a clock it refreshes
        // every 500 ms.
        s.server.client_timeout = latchkey::config::HumanDuration(Duration::from_secs(1));
    })
    .await;
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let response = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Half a request head, then nothing (slowloris).
        conn.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = conn.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    // A prompt client on a new connection is served as usual.
    let fresh = reqwest::Client::new();
    let res = fresh.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
