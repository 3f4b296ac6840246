//! Hardening found by a black-box attack (issue 18): every password check throttled and
//! queued fairly, the client address behind proxies, device cookies instead of the
//! "known address" exemption, erasure down to the file bytes, RFC 8265 usernames, the
//! admin as a separate actor, cookie rules, body timeouts and error bodies everywhere.
//! Each test fails without its fix.

use std::io::{Read, Write};
use std::time::Duration;

use latchkey::config::{ForwardedHeader, HumanDuration, Settings};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, TestApp, PASSWORD};

const SPA_ORIGIN: &str = "http://localhost:5173";

fn behind_proxy(s: &mut Settings) {
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// No per-pair delays, so the limit under test is the only one that bites.
fn no_delays(s: &mut Settings) {
    s.login.failures_before_delay = 1000;
}

async fn login_from(app: &TestApp, ip: &str, username: &str, extra: Value) -> Response {
    let mut body = json!({"username": username, "password": PASSWORD});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    app.client
        .post(app.url("/login"))
        .header("X-Forwarded-For", ip)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn browser_post(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url(path))
        .header("Origin", SPA_ORIGIN)
        .header("X-Latchkey-CSRF", "1")
        .header("Sec-Fetch-Site", "same-site")
}

fn set_cookies(res: &Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value(res: &Response, name: &str) -> Option<String> {
    set_cookies(res).into_iter().find_map(|c| {
        c.strip_prefix(&format!("{name}="))
            .map(|rest| rest.split(';').next().unwrap().to_owned())
    })
}

// ---- 1. Every password check goes through the login throttle, events and queue ----

#[tokio::test]
async fn owasp_authentication_wrong_current_passwords_on_me_password_are_throttled_and_recorded() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        no_delays(s);
        s.login.max_failures_per_account_per_hour = 5;
    })
    .await;
    let t = app.user_with_session("alice").await;
    for i in 0..5 {
        let res = app
            .post_bearer(
                "/me/password",
                &t.access,
                &json!({"current_password": format!("guess number {i}"), "new_password": "a new passphrase"}),
            )
            .await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // The sixth guess is refused before any hashing, even the right password.
    let res = app
        .post_bearer(
            "/me/password",
            &t.access,
            &json!({"current_password": PASSWORD, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let failed = app.events_of("login_failed");
    assert_eq!(failed.len(), 5, "each wrong guess is a login_failed event");
    assert!(failed
        .iter()
        .all(|(user, detail)| user.is_some()
            && detail.as_deref().unwrap().contains("password_change")));
    assert_eq!(app.events_of("login_throttled").len(), 1);
    // The password did not change.
    assert_eq!(
        app.login_as("alice", json!({})).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn owasp_authentication_wrong_passwords_on_account_erasure_are_throttled_and_recorded() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        no_delays(s);
        s.login.max_failures_per_account_per_hour = 3;
    })
    .await;
    let t = app.user_with_session("alice").await;
    for _ in 0..3 {
        let res = app
            .delete_bearer(
                "/me",
                &t.access,
                Some(&json!({"password": "not it at all"})),
            )
            .await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let res = app
        .delete_bearer("/me", &t.access, Some(&json!({"password": PASSWORD})))
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let failed = app.events_of("login_failed");
    assert_eq!(failed.len(), 3);
    assert!(failed
        .iter()
        .all(|(_, d)| d.as_deref().unwrap().contains("erasure")));
    let users: i64 = app.sql().count("SELECT count(*) FROM users", &[]);
    assert_eq!(users, 1, "the account is still there");
}

#[tokio::test]
async fn owasp_authentication_one_account_takes_one_place_in_the_argon2_queue() {
    let app = spawn_app_with(|s| {
        // Only the fairness rule limits here: no throttling would refuse these.
        no_delays(s);
        s.login.max_failures_per_account_per_hour = 100_000;
        s.login.max_failures_per_ip_per_hour = 100_000;
    })
    .await;
    let t = app.user_with_session("mallory").await;
    app.signup("bob", PASSWORD).await;
    let guesses = (0..60).map(|i| {
        let (app, access) = (&app, t.access.clone());
        async move {
            app.post_bearer(
                "/me/password",
                &access,
                &json!({"current_password": format!("wrong guess {i}"), "new_password": "whatever you like"}),
            )
            .await
            .status()
        }
    });
    let bob = async { app.login_as("bob", json!({})).await.status() };
    let (statuses, bob) = tokio::join!(futures_util::future::join_all(guesses), bob);
    assert_eq!(bob, StatusCode::OK, "another user's login is served");
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + refused, 60, "{statuses:?}");
    // Without the rule all 60 are hashed; with it, one at a time and the rest refused
    // at once while one is queued.
    assert!(
        checked < 30,
        "{checked} of 60 concurrent guesses were hashed"
    );
}

// ---- 2. The client address behind trusted proxies ----

async fn session_ip_after_login(app: &TestApp, name: &str, header: (&str, &str)) -> String {
    let res = app
        .client
        .post(app.url("/login"))
        .header(header.0, header.1)
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let access = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let list: Vec<Value> = app
        .get_bearer("/me/sessions", &access)
        .await
        .json()
        .await
        .unwrap();
    list.iter().find(|s| s["current"] == true).unwrap()["ip"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn rfc7239_the_proxys_own_entry_decides_the_address_in_any_form_and_never_the_clients() {
    let app = spawn_app_with(behind_proxy).await;
    app.signup("alice", PASSWORD).await;
    for (xff, expected) in [
        ("6.6.6.6, 203.0.113.7:5555", "203.0.113.7"),
        ("6.6.6.6, [2001:db8::7]:443", "2001:db8::7"),
        ("6.6.6.6, 203.0.113.8", "203.0.113.8"),
        // The proxy could not tell: the attacker's own entry is not believed.
        ("6.6.6.6, unknown", "127.0.0.1"),
        ("6.6.6.6, _obfuscated", "127.0.0.1"),
    ] {
        let ip = session_ip_after_login(&app, "alice", ("X-Forwarded-For", xff)).await;
        assert_eq!(ip, expected, "X-Forwarded-For: {xff}");
    }
    // A Forwarded header is ignored while the proxies are configured for X-Forwarded-For.
    let ip = session_ip_after_login(&app, "alice", ("Forwarded", "for=6.6.6.6")).await;
    assert_eq!(ip, "127.0.0.1");

    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.server.forwarded_header = ForwardedHeader::Forwarded;
    })
    .await;
    app.signup("alice", PASSWORD).await;
    for (fwd, expected) in [
        (
            r#"for=6.6.6.6, for="[2001:db8::9]:4711";proto=https"#,
            "2001:db8::9",
        ),
        ("for=6.6.6.6, for=203.0.113.9:80", "203.0.113.9"),
        ("for=6.6.6.6, for=unknown", "127.0.0.1"),
    ] {
        let ip = session_ip_after_login(&app, "alice", ("Forwarded", fwd)).await;
        assert_eq!(ip, expected, "Forwarded: {fwd}");
    }
    let ip = session_ip_after_login(&app, "alice", ("X-Forwarded-For", "6.6.6.6")).await;
    assert_eq!(
        ip, "127.0.0.1",
        "X-Forwarded-For is ignored in Forwarded mode"
    );
}

#[tokio::test]
async fn rfc7239_an_unparseable_proxy_entry_cannot_be_used_to_escape_the_per_ip_limit() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        no_delays(s);
        s.login.max_failures_per_ip_per_hour = 2;
    })
    .await;
    for i in 0..2 {
        let res = app
            .client
            .post(app.url("/login"))
            .header("X-Forwarded-For", format!("6.6.6.{i}, unknown"))
            .json(&json!({"username": format!("user{i}"), "password": "wrong wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // A new spoofed left-most entry does not make a new address.
    let res = app
        .client
        .post(app.url("/login"))
        .header("X-Forwarded-For", "6.6.6.99, unknown")
        .json(&json!({"username": "user9", "password": "wrong wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

// ---- 3. Device cookies instead of the "known address" exemption ----

#[tokio::test]
async fn owasp_device_cookies_the_owners_device_gets_in_while_an_attack_locks_the_account() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        no_delays(s);
        s.login.max_failures_per_account_per_hour = 5;
    })
    .await;
    app.signup("alice", PASSWORD).await;
    app.signup("bob", PASSWORD).await;
    let res = login_from(&app, "198.51.100.7", "alice", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let device = body["device_token"]
        .as_str()
        .expect("a device token")
        .to_owned();
    let bobs: Value = login_from(&app, "198.51.100.8", "bob", json!({}))
        .await
        .json()
        .await
        .unwrap();
    // An attacker fills the account's hourly failures from addresses of their own.
    for i in 0..5 {
        let res = login_from(
            &app,
            &format!("203.0.113.{i}"),
            "alice",
            json!({"password": "guess guess"}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Untrusted clients are locked out, including one behind the owner's own address
    // (the "known address" exemption is gone) and one with someone else's device token.
    for (ip, extra) in [
        ("192.0.2.50", json!({})),
        ("198.51.100.7", json!({})),
        ("192.0.2.51", json!({"device_token": bobs["device_token"]})),
        ("192.0.2.52", json!({"device_token": format!("{device}x")})),
    ] {
        let res = login_from(&app, ip, "alice", extra.clone()).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{ip} {extra}");
    }
    // The owner, from a brand-new address, with the device token: in.
    let res = login_from(&app, "192.0.2.99", "alice", json!({"device_token": device})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let again: Value = res.json().await.unwrap();
    assert!(again["device_token"].is_string(), "a fresh device token");
}

#[tokio::test]
async fn owasp_device_cookies_a_trusted_device_that_keeps_failing_is_locked_out_itself() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        no_delays(s);
        s.login.max_failures_per_account_per_hour = 3;
    })
    .await;
    app.signup("alice", PASSWORD).await;
    let device = login_from(&app, "198.51.100.7", "alice", json!({}))
        .await
        .json::<Value>()
        .await
        .unwrap()["device_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let res = login_from(
            &app,
            "198.51.100.7",
            "alice",
            json!({"password": "not the one", "device_token": device}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // The device is locked out itself (OWASP: a device cookie on the lockout list is
    // rejected), even with the right password...
    let res = login_from(
        &app,
        "198.51.100.7",
        "alice",
        json!({"device_token": device}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // ...while its failures were its own: the account's untrusted clients still get in.
    let res = login_from(&app, "192.0.2.1", "alice", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn owasp_device_cookies_browser_login_sets_an_httponly_host_device_cookie_and_honours_it() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        no_delays(s);
        s.login.max_failures_per_account_per_hour = 2;
        s.clients[0].allowed_origins = vec![SPA_ORIGIN.into()];
    })
    .await;
    app.signup("alice", PASSWORD).await;
    let res = browser_post(&app, "/browser/login")
        .header("X-Forwarded-For", "198.51.100.7")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("__Host-lk_device="))
        .expect("a device cookie");
    let attrs = cookie.to_ascii_lowercase();
    for attr in [
        "httponly",
        "secure",
        "samesite=strict",
        "path=/",
        "max-age=31536000",
    ] {
        assert!(attrs.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!attrs.contains("domain="));
    let device = cookie_value(&res, "__Host-lk_device").unwrap();
    let body: Value = res.json().await.unwrap();
    assert!(
        body.get("device_token").is_none(),
        "not in the browser's body"
    );
    for i in 0..2 {
        login_from(
            &app,
            &format!("203.0.113.{i}"),
            "alice",
            json!({"password": "wrong wrong"}),
        )
        .await;
    }
    let res = browser_post(&app, "/browser/login")
        .header("X-Forwarded-For", "192.0.2.77")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "no device cookie"
    );
    let res = browser_post(&app, "/browser/login")
        .header("X-Forwarded-For", "192.0.2.77")
        .header("Cookie", format!("__Host-lk_device={device}"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "with the device cookie");
}

// ---- 4. Erasure leaves nothing in the files ----

fn file_contains(path: &std::path::Path, needle: &str) -> usize {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    bytes
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

#[tokio::test]
async fn gdpr_erasure_leaves_no_username_address_or_user_agent_in_the_database_or_its_wal() {
    let app = spawn_app_with(behind_proxy).await;
    let (name, ip, agent) = (
        "zelda-erasable",
        "198.51.100.213",
        "ErasureProbe/7.7 (unique-agent)",
    );
    assert_eq!(
        app.signup(name, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let send = |path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .header("X-Forwarded-For", ip)
            .header("User-Agent", agent)
            .json(&body)
            .send()
    };
    let tokens: Value = send("/login", json!({"username": name, "password": PASSWORD}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = send(
        "/login",
        json!({"username": name, "password": "a wrong one!"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        let res = app
            .client
            .post(app.url("/oauth/token"))
            .header("X-Forwarded-For", ip)
            .header("User-Agent", agent)
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .send()
            .await
            .unwrap();
        refresh = res.json::<Value>().await.unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let access = tokens["access_token"].as_str().unwrap();
    if app.on_postgres() {
        assert!(app.sql().dump().contains(agent), "the probe is stored");
    } else {
        let db = app.db_path();
        let before = file_contains(&db, agent) + file_contains(&db.with_extension("db-wal"), agent);
        assert!(before > 0, "the probe is in the files before erasure");
    }
    let res = app
        .client
        .delete(app.url("/me"))
        .bearer_auth(access)
        .header("X-Forwarded-For", ip)
        .header("User-Agent", agent)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // PostgreSQL: no row holds them (the tables are vacuumed after the erasure; its
    // write-ahead log is the operator's to expire: docs/operations.md). SQLite: not
    // even the file's free pages or the WAL.
    if app.on_postgres() {
        let dump = app.sql().dump();
        for needle in [name, ip, agent] {
            assert!(!dump.contains(needle), "{needle} is still stored");
        }
    }
    let db = app.db_path();
    let wal = db.with_extension("db-wal");
    for needle in [name, ip, agent] {
        if app.on_postgres() {
            break;
        }
        assert_eq!(
            file_contains(&db, needle),
            0,
            "{needle} is still in the database file"
        );
        assert_eq!(
            file_contains(&wal, needle),
            0,
            "{needle} is still in the WAL"
        );
    }
    let failed: i64 = app.sql().count(
        "SELECT count(*) FROM events WHERE kind = 'login_failed'",
        &[],
    );
    assert_eq!(failed, 0, "the erased account's failed logins went too");
}

// ---- 5. RFC 8265 usernames and UTS #39 confusables ----

#[tokio::test]
async fn rfc8265_usernames_that_spoof_an_existing_one_are_refused() {
    let app = spawn_app_with(|_| {}).await;
    assert_eq!(
        app.signup("alice", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.signup("\u{e9}mile", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    for (case, name, status) in [
        ("fullwidth", "ａｌｉｃｅ", StatusCode::CONFLICT),
        ("zero-width space", "alice\u{200b}", StatusCode::BAD_REQUEST),
        ("soft hyphen", "al\u{ad}ice", StatusCode::BAD_REQUEST),
        (
            "right-to-left override",
            "\u{202e}ecila",
            StatusCode::BAD_REQUEST,
        ),
        ("Cyrillic a", "\u{430}lice", StatusCode::CONFLICT),
        ("capital I for l", "aIice", StatusCode::CONFLICT),
        ("NFD of NFC", "e\u{301}mile", StatusCode::CONFLICT),
        ("upper case", "ALICE", StatusCode::CONFLICT),
    ] {
        let res = app.signup(name, PASSWORD).await;
        let code = if status == StatusCode::CONFLICT {
            "conflict"
        } else {
            "invalid_request"
        };
        let body = assert_error(res, status, code).await;
        assert!(
            !body.to_string().contains(name),
            "{case}: the name is not echoed"
        );
    }
    let users: i64 = app.sql().count("SELECT count(*) FROM users", &[]);
    assert_eq!(users, 2, "no look-alike account was created");
    // The same profile decides login and throttling: the fullwidth name is alice.
    let res = app.login_as("ａｌｉｃｅ", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    // An ordinary distinct name is still fine, and shown in its NFC display form.
    let res = app.signup("Zoë Smith", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app.signup("ｂｏｂ", PASSWORD).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["username"], "bob",
        "fullwidth is stored in its narrow form"
    );
}

// ---- 6. An admin acting on a user is a separate actor ----

#[tokio::test]
async fn owasp_logging_an_admins_address_never_appears_in_the_users_own_events() {
    let app = spawn_app_with(behind_proxy).await;
    let user = app.user_with_session("alice").await;
    let admin = app.admin().await;
    let alice_id = app
        .sql()
        .text("SELECT id FROM users WHERE username = 'alice'", &[]);
    let (admin_ip, admin_agent) = ("192.0.2.250", "AdminConsole/1.0");
    for req in [
        app.client
            .delete(app.url(&format!("/admin/users/{alice_id}/sessions"))),
        app.client
            .post(app.url(&format!("/admin/users/{alice_id}/disable"))),
    ] {
        let res = req
            .bearer_auth(&admin.access)
            .header("X-Forwarded-For", admin_ip)
            .header("User-Agent", admin_agent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    // What the user's events hold (their own view reads the same rows).
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let stored: Vec<Row> = app
        .sql()
        .rows(
            "SELECT kind, ip, user_agent, detail FROM events WHERE user_id = ?1",
            &[&alice_id],
        )
        .into_iter()
        .map(|mut r| (r.remove(0).unwrap(), r.remove(0), r.remove(0), r.remove(0)))
        .collect();
    let by_admin: Vec<_> = stored
        .iter()
        .filter(|(kind, ..)| kind == "session_revoked" || kind == "user_disabled")
        .collect();
    assert_eq!(by_admin.len(), 2, "{stored:?}");
    for (kind, ip, agent, detail) in by_admin {
        assert_eq!(ip, &None, "{kind}");
        assert_eq!(agent, &None, "{kind}");
        let detail: Value = serde_json::from_str(detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail["by"], "administrator", "{kind}: {detail}");
    }
    drop(user);
    // The admin view shows who did it.
    let events: Vec<Value> = app
        .get_bearer(
            &format!("/admin/events?user_id={alice_id}&type=user_disabled"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["actor"]["ip"], admin_ip);
    assert_eq!(events[0]["actor"]["user_agent"], admin_agent);
    assert_eq!(events[0]["ip"], Value::Null);
    assert!(events[0]["actor"]["user_id"].is_string());
}

#[tokio::test]
async fn owasp_logging_the_user_sees_revoked_by_an_administrator_and_no_actor() {
    let app = spawn_app_with(behind_proxy).await;
    let user = app.user_with_session("alice").await;
    let admin = app.admin().await;
    let alice_id = app
        .sql()
        .text("SELECT id FROM users WHERE username = 'alice'", &[]);
    // The admin ends every session but one the user opens afterwards, to read events.
    let res = app
        .client
        .delete(app.url(&format!("/admin/users/{alice_id}/sessions")))
        .bearer_auth(&admin.access)
        .header("X-Forwarded-For", "192.0.2.250")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    drop(user);
    let fresh = app.login("alice").await;
    let events: Vec<Value> = app
        .get_bearer("/me/events", &fresh.access)
        .await
        .json()
        .await
        .unwrap();
    let revoked = events
        .iter()
        .find(|e| e["type"] == "session_revoked")
        .unwrap();
    assert_eq!(revoked["detail"]["reason"], "admin");
    assert_eq!(revoked["detail"]["by"], "administrator");
    assert_eq!(revoked["ip"], Value::Null);
    assert!(events.iter().all(|e| e.get("actor").is_none()));
    assert!(!serde_json::to_string(&events)
        .unwrap()
        .contains("192.0.2.250"));
}

// ---- 7. /browser/login counts in the login bucket ----

#[tokio::test]
async fn owasp_authentication_browser_login_draws_from_the_login_rate_limit_too() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.rate_limits.login = latchkey::config::RateLimit::new(2, 2);
        s.clients[0].allowed_origins = vec![SPA_ORIGIN.into()];
    })
    .await;
    app.signup("alice", PASSWORD).await;
    for _ in 0..2 {
        let res = login_from(
            &app,
            "203.0.113.5",
            "alice",
            json!({"password": "x y z w v"}),
        )
        .await;
        assert_ne!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(
        login_from(&app, "203.0.113.5", "alice", json!({}))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let res = browser_post(&app, "/browser/login")
        .header("X-Forwarded-For", "203.0.113.5")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // So do the password re-checks.
    let res = app
        .client
        .post(app.url("/me/password"))
        .header("X-Forwarded-For", "203.0.113.5")
        .json(&json!({"current_password": "x", "new_password": "y"}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
}

// ---- 8. Cookies ----

#[test]
fn rfc6265bis_a_refresh_cookie_name_without_the_host_prefix_fails_check_config() {
    for (key, value) in [
        ("LATCHKEY_BROWSER__COOKIE_NAME", "lk_rt"),
        ("LATCHKEY_BROWSER__DEVICE_COOKIE_NAME", "__Secure-lk_device"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("check-config")
            .current_dir(dir.path())
            .env(key, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("__Host-"), "{stderr}");
    }
}

async fn browser_app() -> TestApp {
    spawn_app_with(|s| s.clients[0].allowed_origins = vec![SPA_ORIGIN.into()]).await
}

async fn browser_cookie(app: &TestApp) -> String {
    app.signup("alice", PASSWORD).await;
    let res = browser_post(app, "/browser/login")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    cookie_value(&res, "__Host-lk_rt").unwrap()
}

fn clears_refresh_cookie(res: &Response) -> bool {
    set_cookies(res)
        .iter()
        .any(|c| c.starts_with("__Host-lk_rt=;") && c.to_ascii_lowercase().contains("max-age=0"))
}

#[tokio::test]
async fn rfc6265bis_a_request_with_two_refresh_cookies_is_refused_and_the_cookie_cleared() {
    let app = browser_app().await;
    let victim = browser_cookie(&app).await;
    for path in ["/browser/refresh", "/browser/logout"] {
        let res = browser_post(&app, path)
            .header(
                "Cookie",
                format!("__Host-lk_rt=attacker; __Host-lk_rt={victim}"),
            )
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert!(
            clears_refresh_cookie(&res),
            "{path}: {:?}",
            set_cookies(&res)
        );
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Nothing happened to the victim's session.
    let res = browser_post(&app, "/browser/refresh")
        .header("Cookie", format!("__Host-lk_rt={victim}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn rfc6265bis_a_failed_browser_refresh_clears_the_dead_cookie() {
    let app = browser_app().await;
    let cookie = browser_cookie(&app).await;
    let res = browser_post(&app, "/browser/logout")
        .header("Cookie", format!("__Host-lk_rt={cookie}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for dead in [cookie.as_str(), "not-even-a-token"] {
        let res = browser_post(&app, "/browser/refresh")
            .header("Cookie", format!("__Host-lk_rt={dead}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert!(clears_refresh_cookie(&res), "{:?}", set_cookies(&res));
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
}

// ---- 9. The body has a deadline too ----

#[tokio::test]
async fn owasp_dos_a_body_trickled_byte_by_byte_gets_408_with_the_error_body_and_is_cut_off() {
    let app = spawn_app_with(|s| {
        s.server.client_timeout = HumanDuration(Duration::from_secs(1));
    })
    .await;
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let started = std::time::Instant::now();
    let response = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        conn.write_all(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        )
        .unwrap();
        let mut out = Vec::new();
        // One byte every 300 ms, for up to 8 s; stop once the server has answered.
        for _ in 0..26 {
            if conn.write_all(b" ").is_err() {
                break;
            }
            let mut buf = [0u8; 4096];
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut off after {:?}",
        started.elapsed()
    );
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"], "invalid_request");
}

// ---- 10. Small ones ----

#[tokio::test]
async fn owasp_session_management_web_content_caching_account_views_are_no_store() {
    let app = spawn_app_with(|_| {}).await;
    let t = app.user_with_session("alice").await;
    let admin = app.admin().await;
    for (path, token) in [
        ("/me", &t.access),
        ("/me/sessions", &t.access),
        ("/me/events", &t.access),
        ("/admin/events", &admin.access),
    ] {
        let res = app.get_bearer(path, token).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-store", "{path}");
    }
}

#[tokio::test]
async fn every_error_has_the_json_error_body_browser_413_and_a_refused_preflight_included() {
    let app = browser_app().await;
    let res = browser_post(&app, "/browser/login")
        .header("content-type", "application/json")
        .body(vec![b' '; 17 * 1024])
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    for (origin, method) in [("https://evil.example", "POST"), (SPA_ORIGIN, "PUT")] {
        let res = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/browser/refresh"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{origin} {method}");
        assert!(res.headers().get("access-control-allow-origin").is_none());
        assert!(res
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
        let status = res.status();
        let v: Value = res.json().await.expect("a JSON error body");
        assert!(v["error"].is_string(), "{status}: {v}");
        assert!(v["error_description"].is_string());
    }
}

#[tokio::test]
async fn fetch_cors_allow_credentials_is_sent_only_with_an_allowed_origin() {
    let app = browser_app().await;
    for origin in [None, Some("https://evil.example")] {
        let mut req = app.client.get(app.url("/healthz"));
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        let res = req.send().await.unwrap();
        assert!(
            res.headers()
                .get("access-control-allow-credentials")
                .is_none(),
            "{origin:?}"
        );
    }
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("Origin", SPA_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], SPA_ORIGIN);
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
}

#[tokio::test]
async fn rfc8259_4_browser_login_refuses_repeated_members_as_login_does() {
    let app = browser_app().await;
    app.signup("alice", PASSWORD).await;
    app.signup("mallory", PASSWORD).await;
    let body = format!(r#"{{"username":"mallory","password":"{PASSWORD}","username":"alice"}}"#);
    let res = app
        .post_raw("/login", "application/json", body.clone())
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    let res = browser_post(&app, "/browser/login")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn metrics_on_the_public_listener_log_a_warning_at_start() {
    // Listening beyond loopback (every address; the test still talks over loopback).
    let public = tempfile::tempdir().unwrap();
    let served = tokio::task::spawn_blocking({
        let path = public.path().to_owned();
        move || crate::helpers::Served::start_in(&path, &[("LATCHKEY_SERVER__BIND", "0.0.0.0:0")])
    })
    .await
    .unwrap();
    let logs = served.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"WARN\"") && l.contains("server.metrics_bind")),
        "{logs}"
    );
    let dir = tempfile::tempdir().unwrap();
    let separate = tokio::task::spawn_blocking({
        let path = dir.path().to_owned();
        move || {
            crate::helpers::Served::start_in(
                &path,
                &[("LATCHKEY_SERVER__METRICS_BIND", "127.0.0.1:0")],
            )
        }
    })
    .await
    .unwrap();
    assert!(!separate.logs().contains("server.metrics_bind (e.g."));
    // On loopback alone (development) /metrics is nobody else's to read: no warning, and
    // a first start with no configuration logs no WARN line at all.
    let local = tokio::task::spawn_blocking(crate::helpers::Served::start)
        .await
        .unwrap();
    let logs = local.logs();
    assert!(!logs.lines().any(|l| l.contains("\"WARN\"")), "{logs}");
}
