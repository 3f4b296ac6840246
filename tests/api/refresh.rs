//! Rotation, the reuse interval and reuse detection (docs/contract.md "Refresh rotation, reuse detection, revocation";
//! RFC 9700 §4.14.2; RFC 6749 §6, §10.4).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, jwt_parts, spawn_app, spawn_app_with, TestApp, PASSWORD};

fn sha256(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// The one session's head generation and head hash.
fn head_of_only_session(app: &TestApp) -> (i64, Vec<u8>) {
    let row = app
        .sql()
        .rows("SELECT head_generation, head_hash FROM sessions", &[])
        .remove(0);
    (
        row[0].as_deref().unwrap().parse().unwrap(),
        hex::decode(row[1].as_deref().unwrap()).unwrap(),
    )
}

fn revoked_reason(app: &TestApp, session_id: &str) -> Option<String> {
    app.sql().value(
        "SELECT revoked_reason FROM sessions WHERE id = ?1",
        &[session_id],
    )
}

fn reuse_events(app: &TestApp, session_id: &str) -> i64 {
    app.sql().count(
        "SELECT COUNT(*) FROM events WHERE kind = 'refresh_token_reuse_detected' AND session_id = ?1",
        &[session_id],
    )
}

#[tokio::test]
async fn rfc9700_4_14_2_each_refresh_issues_a_new_token_and_keeps_the_session() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let t1 = app.rotate(&t0.refresh).await;
    assert_ne!(t1.refresh, t0.refresh);
    assert_eq!(t1.session_id, t0.session_id);
    let (_, c) = jwt_parts(&t1.access);
    assert_eq!(c["sid"], t0.session_id.as_str());
    // The new token is the head (generation 1), and only its hash is kept, on the
    // session row; the presented one is its parent.
    let (head, hash): (i64, Vec<u8>) = head_of_only_session(&app);
    assert_eq!(head, 1);
    assert_eq!(hash, sha256(&t1.refresh));
}

#[tokio::test]
async fn a_chain_of_100_rotations_then_any_old_token_kills_the_family_head_included() {
    let app = spawn_app().await;
    let first = app.user_with_session("alice").await;
    let mut chain = vec![first.refresh.clone()];
    for _ in 0..100 {
        let next = app.rotate(chain.last().unwrap()).await;
        chain.push(next.refresh);
    }
    assert_eq!(
        chain.iter().collect::<HashSet<_>>().len(),
        101,
        "all distinct"
    );
    let head = chain.last().unwrap().clone();
    // Past the interval every earlier token, the head's parent included, is reuse.
    app.advance(Duration::from_secs(11));
    let res = app.refresh(&chain[37]).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(
        revoked_reason(&app, &first.session_id).as_deref(),
        Some("reuse")
    );
    assert_eq!(reuse_events(&app, &first.session_id), 1);
    // Every token of the family is dead now, head included.
    for old in &chain {
        assert_error(
            app.refresh(old).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    assert_error(
        app.refresh(&head).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

/// Each position of an old token counts as reuse on its own: generation 0, a middle
/// one, and the head's parent after the interval.
#[tokio::test]
async fn replaying_a_rotated_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    for (replay_index, wait) in [(0usize, 0u64), (1, 0), (2, 11)] {
        let t = app.login("alice").await;
        let mut chain = vec![t.refresh.clone()];
        for _ in 0..3 {
            let n = app.rotate(chain.last().unwrap()).await;
            chain.push(n.refresh);
        }
        app.advance(Duration::from_secs(wait));
        let res = app.refresh(&chain[replay_index]).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
        assert_eq!(
            revoked_reason(&app, &t.session_id).as_deref(),
            Some("reuse")
        );
        assert_error(
            app.refresh(&chain[3]).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
}

#[tokio::test]
async fn the_heads_parent_within_the_interval_returns_the_byte_identical_head() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let t1 = app.rotate(&t0.refresh).await;
    app.advance(Duration::from_secs(9));
    let again = app.rotate(&t0.refresh).await;
    assert_eq!(again.refresh, t1.refresh, "the same head, byte for byte");
    assert_ne!(again.access, t1.access, "a fresh access token");
    assert_eq!(again.session_id, t1.session_id);
    // No fork: still exactly one head, at generation 1.
    let heads = app
        .sql()
        .column("SELECT head_generation FROM sessions", &[]);
    assert_eq!(heads, vec![Some("1".to_owned())]);
    // The head still rotates normally.
    let t2 = app.rotate(&t1.refresh).await;
    assert_ne!(t2.refresh, t1.refresh);
}

#[tokio::test]
async fn the_heads_parent_after_the_interval_is_reuse() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let t1 = app.rotate(&t0.refresh).await;
    app.advance(Duration::from_millis(10_001));
    assert_error(
        app.refresh(&t0.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_error(
        app.refresh(&t1.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(reuse_events(&app, &t0.session_id), 1);
}

#[tokio::test]
async fn the_grandparent_within_the_interval_is_reuse() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let t1 = app.rotate(&t0.refresh).await;
    let _t2 = app.rotate(&t1.refresh).await;
    assert_error(
        app.refresh(&t0.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        revoked_reason(&app, &t0.session_id).as_deref(),
        Some("reuse")
    );
}

#[tokio::test]
async fn fifty_concurrent_refreshes_with_the_same_head_all_get_the_same_new_token() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let responses = join_all((0..50).map(|_| app.refresh(&t0.refresh))).await;
    let mut tokens = HashSet::new();
    for res in responses {
        assert_eq!(res.status(), StatusCode::OK, "no 5xx, no reuse");
        let body: Value = res.json().await.unwrap();
        tokens.insert(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 1, "one new head for all 50");
    let (head, hash): (i64, Vec<u8>) = head_of_only_session(&app);
    let the_head = tokens.iter().next().unwrap();
    assert_eq!(
        (head, hash),
        (1, sha256(the_head)),
        "one head at generation 1, no fork"
    );
}

#[tokio::test]
async fn reuse_detection_leaves_the_users_other_sessions_working() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    let _a1 = app.rotate(&a.refresh).await;
    app.advance(Duration::from_secs(11));
    assert_error(
        app.refresh(&a.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let b1 = app.rotate(&b.refresh).await;
    assert_eq!(b1.session_id, b.session_id);
}

#[tokio::test]
async fn rfc6749_10_4_a_token_presented_by_another_client_is_invalid_grant() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &t.refresh),
                ("client_id", "mobile"),
            ],
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Presenting it as the right client still works and nothing was revoked.
    let res = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &t.refresh),
                ("client_id", "default"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn rfc6749_6_refresh_may_narrow_scope_and_the_rotated_token_keeps_the_original() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let res = app
        .login_as(
            "alice",
            json!({"client_id": "mobile", "scope": "read write"}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let narrowed = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(narrowed.status(), StatusCode::OK);
    let body: Value = narrowed.json().await.unwrap();
    assert_eq!(
        jwt_parts(body["access_token"].as_str().unwrap()).1["scope"],
        "read"
    );
    let rt2 = body["refresh_token"].as_str().unwrap().to_owned();
    let plain = app.rotate(&rt2).await;
    assert_eq!(jwt_parts(&plain.access).1["scope"], "read write");
    let wider = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &plain.refresh),
                ("scope", "read admin"),
            ],
        )
        .await;
    assert_error(wider, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

#[tokio::test]
async fn asvs_10_4_8_rotation_moves_the_idle_expiry_but_never_the_absolute_one() {
    let app = spawn_app_with(|s| {
        s.session.idle_timeout = latchkey::config::HumanDuration::secs(60);
        s.session.absolute_lifetime = latchkey::config::HumanDuration::secs(150);
    })
    .await;
    let mut t = app.user_with_session("alice").await;
    for _ in 0..2 {
        app.advance(Duration::from_secs(50));
        t = app.rotate(&t.refresh).await;
    }
    assert!(t.body["refresh_token_expires_in"].as_u64().unwrap() <= 60);
    app.advance(Duration::from_secs(51)); // 151 s after login: past the absolute lifetime
    assert_error(
        app.refresh(&t.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn an_idle_session_ends_after_the_idle_timeout() {
    let app = spawn_app_with(|s| {
        s.session.idle_timeout = latchkey::config::HumanDuration::secs(60);
    })
    .await;
    let t = app.user_with_session("alice").await;
    app.advance(Duration::from_secs(61));
    assert_error(
        app.refresh(&t.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(app.introspect(&t.refresh).await, json!({"active": false}));
}

#[tokio::test]
async fn remember_me_false_uses_the_shorter_lifetimes() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let res = app.login_as("alice", json!({"remember_me": false})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["refresh_token_expires_in"], 30 * 60);
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    app.advance(Duration::from_secs(31 * 60));
    assert_error(
        app.refresh(&rt).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn rfc6749_5_2_token_endpoint_errors() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "password grant",
            "grant_type=password&username=alice&password=x".into(),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "unknown grant",
            "grant_type=magic".into(),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "no grant_type",
            format!("refresh_token={}", t.refresh),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "empty grant_type",
            format!("grant_type=&refresh_token={}", t.refresh),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "no refresh_token",
            "grant_type=refresh_token".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "repeated parameter",
            format!(
                "grant_type=refresh_token&refresh_token={0}&refresh_token={0}",
                t.refresh
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "garbage token",
            "grant_type=refresh_token&refresh_token=nope".into(),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "unknown well-formed token",
            format!("grant_type=refresh_token&refresh_token={}", "A".repeat(43)),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "unknown client",
            format!(
                "grant_type=refresh_token&refresh_token={}&client_id=nope",
                t.refresh
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ];
    for (name, body, status, code) in cases {
        let res = app
            .post_raw("/oauth/token", "application/x-www-form-urlencoded", body)
            .await;
        assert_eq!(res.status(), status, "case {name}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"], code, "case {name}");
    }
    // None of those consumed the token.
    app.rotate(&t.refresh).await;
}

#[tokio::test]
async fn rfc6749_3_2_the_token_endpoint_is_post_only_and_takes_json_too() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app
        .client
        .get(app.url("/oauth/token"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "invalid_request").await;
    let res = app
        .post_json(
            "/oauth/token",
            &json!({"grant_type": "refresh_token", "refresh_token": t.refresh, "extra": "ignored"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["pragma"], "no-cache");
    let res = app
        .post_raw("/oauth/token", "text/plain", "grant_type=refresh_token")
        .await;
    assert_error(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn each_rotation_replaces_the_sealed_head_so_only_the_heads_parent_can_replay() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let t1 = app.rotate(&t0.refresh).await;
    let t2 = app.rotate(&t1.refresh).await;
    app.advance(Duration::from_secs(1));
    // Only the current head (generation 2) is sealed, for its parent t1 to replay.
    assert_eq!(app.rotate(&t1.refresh).await.refresh, t2.refresh);
    let sealed = app.sql().column(
        "SELECT head_generation FROM sessions WHERE sealed_head IS NOT NULL",
        &[],
    );
    assert_eq!(sealed, vec![Some("2".to_owned())]);
}

#[tokio::test]
async fn housekeeping_wipes_sealed_heads_once_the_interval_has_passed() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let _t1 = app.rotate(&t0.refresh).await;
    let sealed = |app: &TestApp| -> i64 {
        app.sql().count(
            "SELECT COUNT(*) FROM sessions WHERE sealed_head IS NOT NULL",
            &[],
        )
    };
    assert_eq!(
        latchkey::housekeeping::wipe_expired_seals(&app.state)
            .await
            .unwrap(),
        0
    );
    assert_eq!(sealed(&app), 1, "kept during the interval");
    app.advance(Duration::from_secs(11));
    assert_eq!(
        latchkey::housekeeping::wipe_expired_seals(&app.state)
            .await
            .unwrap(),
        1
    );
    assert_eq!(sealed(&app), 0);
    // Past the interval the parent is reuse anyway.
    assert_error(
        app.refresh(&t0.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

/// A located token (`lk1_` ‖ base64url(session ‖ generation ‖ secret ‖ tag)) for `sid`
/// and `generation`, with a random secret and a random tag: what anyone who knows a
/// session id (every access token's `sid`) can build without latchkey's key.
fn forged_token(sid: &str, generation: u32) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut bytes = uuid::Uuid::parse_str(sid).unwrap().as_bytes().to_vec();
    bytes.extend_from_slice(&generation.to_be_bytes());
    bytes.extend((0..48).map(|i: u8| i.wrapping_mul(37)));
    format!("lk1_{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[tokio::test]
async fn an_old_generation_forged_from_the_session_id_is_invalid_grant_and_revokes_nothing() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let t1 = app.rotate(&t0.refresh).await;
    let t2 = app.rotate(&t1.refresh).await;
    app.advance(Duration::from_secs(11));
    for generation in [0, 1, 2, 3, 99] {
        let forged = forged_token(&t0.session_id, generation);
        assert_eq!(
            forged.len(),
            t2.refresh.len(),
            "the same shape as a real token"
        );
        let res = app.refresh(&forged).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
        let res = app
            .post_form("/oauth/revoke", &[("token", forged.as_str())])
            .await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "RFC 7009 §2.2: 200 for any token"
        );
    }
    assert_eq!(revoked_reason(&app, &t0.session_id), None, "not revoked");
    assert_eq!(reuse_events(&app, &t0.session_id), 0);
    app.rotate(&t2.refresh).await;
}

#[tokio::test]
async fn malformed_truncated_wrong_version_and_oversized_refresh_tokens_are_invalid_grant() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    assert!(
        t.refresh.starts_with("lk1_"),
        "new tokens use the located format"
    );
    let cases = [
        ("truncated", t.refresh[..t.refresh.len() - 1].to_owned()),
        ("one character more", format!("{}A", t.refresh)),
        ("wrong version", t.refresh.replacen("lk1_", "lk2_", 1)),
        (
            "not base64url",
            t.refresh.replacen('A', "+", 1).replacen('a', "/", 1),
        ),
        ("oversized", "A".repeat(4000)),
        (
            "an unknown session",
            forged_token(&uuid::Uuid::new_v4().to_string(), 0),
        ),
    ];
    for (name, token) in cases {
        let res = app.refresh(&token).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{name}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant", "{name}");
    }
    app.rotate(&t.refresh).await;
}

/// RFC 6749 §6, §10.4 (docs/contract.md "Refresh rotation, reuse detection,
/// revocation"): clients are public, so a refresh token is bound to the client it was
/// issued to. A request naming no client acts as that client (not as `default`), one
/// naming another client is `invalid_grant`; docs/how-it-works.md and openapi.yaml say
/// exactly that.
#[tokio::test]
async fn rfc6749_10_4_an_omitted_client_id_means_the_client_the_token_was_issued_to() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let body: Value = app
        .login_as("alice", json!({"client_id": "mobile"}))
        .await
        .json()
        .await
        .unwrap();
    let refreshed = app.rotate(body["refresh_token"].as_str().unwrap()).await;
    let (_, claims) = jwt_parts(&refreshed.access);
    assert_eq!(claims["client_id"], "mobile", "not the default client");
    assert_eq!(claims["aud"], crate::helpers::API_AUDIENCE);
    let res = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refreshed.refresh),
                ("client_id", "default"),
            ],
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // The documents agree with the behaviour.
    let root = env!("CARGO_MANIFEST_DIR");
    let guide = std::fs::read_to_string(format!("{root}/docs/how-it-works.md")).unwrap();
    let spec = std::fs::read_to_string(format!("{root}/openapi.yaml")).unwrap();
    for (name, text) in [("docs/how-it-works.md", &guide), ("openapi.yaml", &spec)] {
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            !flat.contains("omitted `client_id` means the client `default`;")
                && !flat.contains("`client_id` omitted means the client named `default`;"),
            "{name} still says an omitted client_id always means `default`"
        );
        assert!(
            flat.contains("the client the token was issued to"),
            "{name} does not say what an omitted client_id means on /oauth/token"
        );
    }
}
