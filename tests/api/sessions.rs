//! Sessions people can see and control (OWASP ASVS v5 chapter 7; docs/contract.md "Standards checklist" #21).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, jwt_parts, spawn_app, spawn_app_with, PASSWORD};
use latchkey::config::HumanDuration;
use latchkey::domain::LimitPolicy;

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

async fn sessions(app: &crate::helpers::TestApp, access: &str) -> Vec<Value> {
    let res = app.get_bearer("/me/sessions", access).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn asvs_7_4_the_session_list_shows_each_device_and_which_is_current() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let laptop = app.login_with_agent("alice", CHROME).await;
    let phone = app.login_with_agent("alice", FIREFOX).await;
    let list = sessions(&app, &laptop.access).await;
    assert_eq!(list.len(), 2);
    for s in &list {
        for k in [
            "id",
            "client_id",
            "created_at",
            "last_active_at",
            "idle_expires_at",
            "expires_at",
            "ip",
            "user_agent",
            "remember_me",
            "current",
        ] {
            assert!(s.get(k).is_some(), "{k} in {s}");
        }
        let is_laptop = s["id"] == laptop.session_id.as_str();
        assert_eq!(s["current"], is_laptop);
        assert_eq!(s["user_agent"], if is_laptop { CHROME } else { FIREFOX });
        assert_eq!(s["ip"], "127.0.0.1");
    }
    let from_phone = sessions(&app, &phone.access).await;
    assert!(from_phone
        .iter()
        .any(|s| s["id"] == phone.session_id.as_str() && s["current"] == true));
}

#[tokio::test]
async fn revoking_another_device_kills_its_refresh_and_it_leaves_the_list() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    let res = app
        .delete_bearer(&format!("/me/sessions/{}", b.session_id), &a.access, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.refresh(&b.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let list = sessions(&app, &a.access).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], a.session_id.as_str());
    let reason = app.sql().text(
        "SELECT revoked_reason FROM sessions WHERE id = ?1",
        &[&b.session_id],
    );
    assert_eq!(reason, "user_revoked");
}

#[tokio::test]
async fn someone_elses_session_is_404_and_stays_alive() {
    let app = spawn_app().await;
    let alice = app.user_with_session("alice").await;
    let bob = app.user_with_session("bob").await;
    let res = app
        .delete_bearer(
            &format!("/me/sessions/{}", bob.session_id),
            &alice.access,
            None,
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .delete_bearer("/me/sessions/not-a-session", &alice.access, None)
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    app.rotate(&bob.refresh).await;
}

#[tokio::test]
async fn evict_oldest_revokes_the_oldest_session_at_the_limit() {
    let app = spawn_app_with(|s| s.session.max_per_user = 2).await;
    let first = app.user_with_session("alice").await;
    app.advance(Duration::from_secs(1));
    let second = app.login("alice").await;
    app.advance(Duration::from_secs(1));
    let third = app.login("alice").await;
    assert_error(
        app.refresh(&first.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    app.rotate(&second.refresh).await;
    let list = sessions(&app, &third.access).await;
    assert_eq!(list.len(), 2);
    let reason = app.sql().text(
        "SELECT revoked_reason FROM sessions WHERE id = ?1",
        &[&first.session_id],
    );
    assert_eq!(reason, "evicted");
}

#[tokio::test]
async fn reject_policy_refuses_a_login_over_the_limit_with_409() {
    let app = spawn_app_with(|s| {
        s.session.max_per_user = 2;
        s.session.limit_policy = LimitPolicy::Reject;
    })
    .await;
    let first = app.user_with_session("alice").await;
    let _second = app.login("alice").await;
    let body = assert_error(
        app.login_as("alice", json!({})).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("maximum of 2"));
    // Ending one session makes room.
    app.post_bearer("/logout", &first.access, &json!({})).await;
    assert_eq!(
        app.login_as("alice", json!({})).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn per_client_lifetimes_override_the_global_ones() {
    let app = spawn_app_with(|s| {
        let mobile = s.clients.iter_mut().find(|c| c.id == "mobile").unwrap();
        mobile.idle_timeout = Some(HumanDuration::secs(120));
        mobile.access_token_ttl = Some(HumanDuration::secs(60));
    })
    .await;
    app.signup("alice", PASSWORD).await;
    let res = app.login_as("alice", json!({"client_id": "mobile"})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], 60);
    assert_eq!(body["refresh_token_expires_in"], 120);
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );
    app.advance(Duration::from_secs(121));
    let rt = body["refresh_token"].as_str().unwrap();
    assert_error(
        app.refresh(rt).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_keeps_the_callers() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    let new = "a whole new passphrase";
    let wrong = app
        .post_bearer(
            "/me/password",
            &a.access,
            &json!({"current_password": "nope nope nope", "new_password": new}),
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let short = app
        .post_bearer(
            "/me/password",
            &a.access,
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_error(short, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Neither failure ended anything.
    let b = app.rotate(&b.refresh).await;
    let res = app
        .post_bearer(
            "/me/password",
            &a.access,
            &json!({"current_password": PASSWORD, "new_password": new}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.refresh(&b.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    app.rotate(&a.refresh).await;
    assert_error(
        app.login_as("alice", json!({})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let res = app
        .post_json("/login", &json!({"username": "alice", "password": new}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.events_of("password_changed").len(), 1);
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in_or_refresh_and_gets_the_generic_401() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let alice = app.user_with_session("alice").await;
    let (_, claims) = jwt_parts(&alice.access);
    let alice_id = claims["sub"].as_str().unwrap().to_owned();
    let res = app
        .post_bearer(
            &format!("/admin/users/{alice_id}/disable"),
            &admin.access,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.refresh(&alice.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_error(
        app.get_bearer("/me", &alice.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let disabled = app
        .login_as("alice", json!({}))
        .await
        .bytes()
        .await
        .unwrap();
    let unknown = app
        .post_json(
            "/login",
            &json!({"username": "nobody", "password": PASSWORD}),
        )
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        disabled, unknown,
        "disabled and unknown are indistinguishable"
    );
    assert_eq!(app.events_of("user_disabled").len(), 1);
}

#[tokio::test]
async fn cli_users_disable_and_list() {
    let app = spawn_app().await;
    let alice = app.user_with_session("alice").await;
    let out = app.cli(&["users", "disable", "alice"], "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_error(
        app.refresh(&alice.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let out = app.cli(&["users", "list"], "").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("alice") && l.contains("disabled")),
        "{text}"
    );
}

fn rows_mentioning(app: &crate::helpers::TestApp, user_id: &str) -> i64 {
    let db = app.sql();
    let mut n = 0;
    for sql in [
        "SELECT COUNT(*) FROM users WHERE id = ?1",
        "SELECT COUNT(*) FROM sessions WHERE user_id = ?1",
        "SELECT COUNT(*) FROM refresh_tokens t WHERE t.session_id IN (SELECT id FROM sessions WHERE user_id = ?1)",
        "SELECT COUNT(*) FROM events WHERE user_id = ?1 OR CAST(detail AS TEXT) LIKE '%' || ?1 || '%'",
    ] {
        n += db.count(sql, &[user_id]);
    }
    n
}

#[tokio::test]
async fn gdpr_erasure_leaves_no_row_for_the_user() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let _b = app.login("alice").await;
    app.rotate(&a.refresh).await;
    let bob = app.user_with_session("bob").await;
    let (_, claims) = jwt_parts(&a.access);
    let id = claims["sub"].as_str().unwrap().to_owned();
    assert!(rows_mentioning(&app, &id) > 0);
    let wrong = app
        .delete_bearer(
            "/me",
            &a.access,
            Some(&json!({"password": "not it at all"})),
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app
        .delete_bearer("/me", &a.access, Some(&json!({"password": PASSWORD})))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        rows_mentioning(&app, &id),
        0,
        "no row mentions the erased user"
    );
    let users: i64 = app
        .sql()
        .count("SELECT COUNT(*) FROM users WHERE username = 'alice'", &[]);
    assert_eq!(users, 0);
    assert_error(
        app.refresh(&a.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_error(
        app.get_bearer("/me", &a.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Other users are untouched, and the name is free again.
    app.rotate(&bob.refresh).await;
    assert_eq!(
        app.signup("alice", PASSWORD).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn admin_routes_need_the_admin_role() {
    let app = spawn_app().await;
    let alice = app.user_with_session("alice").await;
    let (_, claims) = jwt_parts(&alice.access);
    let id = claims["sub"].as_str().unwrap().to_owned();
    let sessions_path = format!("/admin/users/{id}/sessions");
    let disable_path = format!("/admin/users/{id}/disable");
    assert_error(
        app.get_bearer(&sessions_path, &alice.access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.delete_bearer(&sessions_path, &alice.access, None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.post_bearer(&disable_path, &alice.access, &json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.get_bearer("/admin/events", &alice.access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.get("/admin/events").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Nothing happened to alice.
    app.rotate(&alice.refresh).await;
}

#[tokio::test]
async fn admins_list_and_revoke_a_users_sessions_and_query_events() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    let (_, claims) = jwt_parts(&a.access);
    let id = claims["sub"].as_str().unwrap().to_owned();
    let list: Vec<Value> = app
        .get_bearer(&format!("/admin/users/{id}/sessions"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    let res = app
        .delete_bearer(&format!("/admin/users/{id}/sessions"), &admin.access, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for t in [&a, &b] {
        assert_error(
            app.refresh(&t.refresh).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    app.rotate(&admin.refresh).await;
    let missing = "00000000-0000-4000-8000-000000000000";
    let res = app
        .get_bearer(&format!("/admin/users/{missing}/sessions"), &admin.access)
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let revoked: Vec<Value> = app
        .get_bearer(
            &format!("/admin/events?user_id={id}&type=session_revoked"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(revoked.len(), 2);
    assert!(revoked
        .iter()
        .all(|e| e["detail"]["reason"] == "admin" && e["user_id"] == id.as_str()));
    let res = app
        .get_bearer("/admin/events?since=yesterday", &admin.access)
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn my_events_are_mine_newest_first_and_paginated() {
    let app = spawn_app_with(|s| s.events.record_refreshes = true).await;
    let a = app.user_with_session("alice").await;
    let _bob = app.user_with_session("bob").await;
    app.rotate(&a.refresh).await;
    app.post_json(
        "/login",
        &json!({"username": "alice", "password": "wrong password!"}),
    )
    .await;
    let all: Vec<Value> = app
        .get_bearer("/me/events", &a.access)
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "login_failed",
            "token_refreshed",
            "login_succeeded",
            "user_created"
        ]
    );
    let page1: Vec<Value> = app
        .get_bearer("/me/events?limit=2", &a.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page1.len(), 2);
    let cursor = page1[1]["id"].as_i64().unwrap();
    let page2: Vec<Value> = app
        .get_bearer(&format!("/me/events?limit=2&before={cursor}"), &a.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page2
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["login_succeeded", "user_created"]
    );
    let res = app.get_bearer("/me/events?limit=0", &a.access).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    let res = app.get_bearer("/me/events?limit=abc", &a.access).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

/// No token, access token or password ever lands in an event (docs/contract.md "Security events").
#[tokio::test]
async fn events_for_a_whole_flow_never_contain_a_token_or_password() {
    // Every refresh recorded as an event too, so refresh events are checked as well.
    let app = spawn_app_with(|s| s.events.record_refreshes = true).await;
    let t0 = app.user_with_session("alice").await;
    let t1 = app.rotate(&t0.refresh).await;
    app.advance(Duration::from_secs(11));
    app.refresh(&t0.refresh).await; // reuse
    let t2 = app.login("alice").await;
    app.post_json(
        "/login",
        &json!({"username": "alice", "password": "wrong-pass-123"}),
    )
    .await;
    app.post_bearer(
        "/me/password",
        &t2.access,
        &json!({"current_password": PASSWORD, "new_password": "another passphrase"}),
    )
    .await;
    app.post_bearer("/logout", &t2.access, &json!({"scope": "global"}))
        .await;
    let dump: String = app
        .sql()
        .rows("SELECT kind, detail, ip, user_agent FROM events", &[])
        .into_iter()
        .map(|r| r.into_iter().flatten().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    for kind in [
        "user_created",
        "login_succeeded",
        "token_refreshed",
        "refresh_token_reuse_detected",
        "session_revoked",
        "login_failed",
        "password_changed",
        "logout",
    ] {
        assert!(dump.contains(kind), "{kind} missing from events:\n{dump}");
    }
    for secret in [
        &t0.refresh,
        &t1.refresh,
        &t2.refresh,
        &t0.access,
        &t2.access,
    ] {
        assert!(!dump.contains(secret.as_str()), "a token is in the events");
    }
    for secret in [PASSWORD, "wrong-pass-123", "another passphrase"] {
        assert!(!dump.contains(secret), "a password is in the events");
    }
}

#[tokio::test]
async fn a_login_from_a_new_browser_family_records_new_device_login() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    app.login_with_agent("alice", CHROME).await;
    assert_eq!(
        app.events_of("new_device_login").len(),
        0,
        "the first login is not 'new'"
    );
    app.login_with_agent("alice", CHROME).await;
    assert_eq!(app.events_of("new_device_login").len(), 0);
    app.login_with_agent("alice", FIREFOX).await;
    assert_eq!(app.events_of("new_device_login").len(), 1);
    // 30 days later the known browser counts as new again.
    app.advance(Duration::from_secs(31 * 86_400));
    app.login_with_agent("alice", CHROME).await;
    assert_eq!(app.events_of("new_device_login").len(), 2);
}

#[tokio::test]
async fn a_refresh_from_another_user_agent_records_session_context_changed() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let t = app.login_with_agent("alice", CHROME).await;
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .header("user-agent", FIREFOX)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t.refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.events_of("session_context_changed").len(), 1);
    let list = sessions(&app, &t.access).await;
    assert_eq!(
        list[0]["user_agent"], FIREFOX,
        "metadata follows the refresh"
    );
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    for (trusted, expected) in [(false, "127.0.0.1"), (true, "203.0.113.9")] {
        let app = spawn_app_with(|s| {
            if trusted {
                s.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            }
        })
        .await;
        app.signup("alice", PASSWORD).await;
        let res = app
            .client
            .post(app.url("/login"))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        let list = sessions(&app, body["access_token"].as_str().unwrap()).await;
        assert_eq!(list[0]["ip"], expected, "trusted={trusted}");
    }
}

#[tokio::test]
async fn housekeeping_removes_dead_tokens_old_sessions_and_old_events_and_nothing_else() {
    let app = spawn_app_with(|s| {
        s.session.retention = HumanDuration::secs(3600);
        s.events.retention = HumanDuration::secs(7200);
    })
    .await;
    let live = app.user_with_session("alice").await;
    let dead = app.login("alice").await;
    app.rotate(&dead.refresh).await;
    app.post_bearer("/logout", &dead.access, &json!({})).await;
    let count = |sql: &str| -> i64 { app.sql().count(sql, &[]) };
    let c = latchkey::housekeeping::cleanup(&app.state).await.unwrap();
    assert_eq!(
        (c.tokens, c.sessions, c.events),
        (0, 0, 0),
        "located tokens leave no token rows (legacy rows: the sweep test below)"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM sessions"),
        2,
        "ended sessions stay for the retention period"
    );
    app.advance(Duration::from_secs(3601));
    let live = app.rotate(&live.refresh).await;
    let c = latchkey::housekeeping::cleanup(&app.state).await.unwrap();
    assert_eq!(c.sessions, 1);
    assert_eq!(count("SELECT COUNT(*) FROM sessions"), 1);
    app.advance(Duration::from_secs(3600));
    let events_before = count("SELECT COUNT(*) FROM events");
    let c = latchkey::housekeeping::cleanup(&app.state).await.unwrap();
    assert!(c.events > 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM events"),
        events_before - c.events as i64
    );
    // The live session still works.
    app.rotate(&live.refresh).await;
}

#[tokio::test]
async fn housekeeping_sweeps_thousands_of_sessions_in_bounded_writes_and_misses_none() {
    // More sessions than one sweep write covers (500), so the sweep must walk several
    // id ranges and still find every ended session, whatever range it falls in.
    let app = spawn_app_with(|s| s.session.retention = HumanDuration::secs(86_400)).await;
    let real = app.user_with_session("alice").await;
    let now = app.state.now();
    let user_id: String = app.sql().text("SELECT id FROM users", &[]);
    let (mut live, mut revoked, mut long_gone) = (0, 0, 0);
    let (mut sessions, mut tokens) = (Vec::new(), Vec::new());
    let long_ago = now - 3 * 86_400_000;
    // The token hashes: the database's own 32 random bytes, in its own dialect.
    let random32 = if app.on_postgres() {
        "decode(md5(random()::text) || md5(random()::text), 'hex')"
    } else {
        "randomblob(32)"
    };
    for i in 0..1_234i64 {
        // live, revoked just now, or ended two days ago (past the one-day retention)
        let (expires, revoked_at) = match i % 3 {
            0 => (now + 86_400_000, "NULL".to_owned()),
            1 => (now + 86_400_000, now.to_string()),
            _ => (now - 2 * 86_400_000, "NULL".to_owned()),
        };
        match i % 3 {
            0 => live += 1,
            1 => revoked += 1,
            _ => long_gone += 1,
        }
        sessions.push(format!(
            "('swept-{i}', '{user_id}', 'default', '', TRUE, {long_ago}, {long_ago}, \
             {expires}, {expires}, {revoked_at})"
        ));
        for generation in 0..2i64 {
            tokens.push(format!(
                "({random32}, 'swept-{i}', {generation}, {long_ago})"
            ));
        }
    }
    let db = app.sql();
    db.exec(
        &format!(
            "INSERT INTO sessions (id, user_id, client_id, scope, remember_me, created_at,
                 last_active_at, idle_expires_at, expires_at, revoked_at) VALUES {}",
            sessions.join(", ")
        ),
        &[],
    );
    db.exec(
        &format!(
            "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at) VALUES {}",
            tokens.join(", ")
        ),
        &[],
    );

    let c = latchkey::housekeeping::cleanup(&app.state).await.unwrap();
    assert_eq!(c.tokens, 2 * (revoked + long_gone));
    assert_eq!(c.sessions, long_gone);
    let count = |sql: &str| -> usize { app.sql().count(sql, &[]) as usize };
    assert_eq!(
        count("SELECT COUNT(*) FROM sessions WHERE id LIKE 'swept-%'"),
        live + revoked,
        "recently revoked sessions stay for the retention period"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM refresh_tokens WHERE session_id LIKE 'swept-%'"),
        2 * live
    );
    // A second pass finds nothing more, and the real session still refreshes.
    let again = latchkey::housekeeping::cleanup(&app.state).await.unwrap();
    assert_eq!((again.tokens, again.sessions), (0, 0));
    app.rotate(&real.refresh).await;
}

/// docs/contract.md "Security events": a refresh is recorded on its session (last
/// active time, address, user agent); an event only when the address or user agent
/// changes, or for every refresh with `events.record_refreshes = true`.
#[tokio::test]
async fn a_refresh_is_recorded_on_its_session_and_is_an_event_only_when_its_context_changes() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    app.advance(Duration::from_secs(60));
    let t1 = app.rotate(&t0.refresh).await;
    app.rotate(&t1.refresh).await;
    assert!(app.events_of("token_refreshed").is_empty());
    assert!(app.events_of("session_context_changed").is_empty());
    let list: Vec<Value> = app
        .get_bearer("/me/sessions", &t1.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        list[0]["last_active_at"].as_str().unwrap() > list[0]["created_at"].as_str().unwrap(),
        "the refresh moved the session's last active time: {list:?}"
    );
    assert_eq!(list[0]["ip"], "127.0.0.1");

    let recorded = spawn_app_with(|s| s.events.record_refreshes = true).await;
    let t0 = recorded.user_with_session("bob").await;
    recorded.rotate(&t0.refresh).await;
    assert_eq!(recorded.events_of("token_refreshed").len(), 1);
}

/// A NUL or other control character in an event filter or a user id in the path is the
/// client's mistake (400) on either backend, never a 500 (PostgreSQL cannot even compare
/// text holding a NUL; schemathesis found one).
#[tokio::test]
async fn control_characters_in_admin_filters_and_paths_are_400_not_500() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for path in [
        "/admin/events?type=login%00failed",
        "/admin/events?user_id=a%01b",
    ] {
        let res = app.get_bearer(path, &admin.access).await;
        crate::helpers::assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let res = app
        .post_bearer("/admin/users/a%00b/disable", &admin.access, &json!({}))
        .await;
    assert!(
        res.status() == StatusCode::BAD_REQUEST || res.status() == StatusCode::NOT_FOUND,
        "{}",
        res.status()
    );
}
