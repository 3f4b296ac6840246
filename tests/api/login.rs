use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, jwt_parts, spawn_app, PASSWORD};

#[tokio::test]
async fn login_returns_the_token_response_with_no_store_headers() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let res = app.login_as("alice", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    // RFC 6749 §5.1: token responses must not be cached.
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["pragma"], "no-cache");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["refresh_token_expires_in"], 14 * 86400);
    assert!(uuid::Uuid::parse_str(body["session_id"].as_str().unwrap()).is_ok());
    let rt = body["refresh_token"].as_str().unwrap();
    assert!(rt.starts_with("lk1_"), "a located refresh token");
    assert_eq!(
        rt.len(),
        95,
        "lk1_ and base64url of 68 bytes (a 256-bit secret)"
    );
}

/// RFC 9068 §2.2 claims plus `sid`, `auth_time` and `amr` (RFC 8176 §2: `pwd`). A user
/// without roles and a login without scope carry no `roles` and no `scope` at all:
/// RFC 9068 validators such as Authlib's refuse `"roles": []` and `"scope": ""`.
#[tokio::test]
async fn rfc9068_2_access_token_has_exactly_the_api_claims_and_omits_empty_ones() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let (header, claims) = jwt_parts(&t.access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].is_string());
    let mut keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "amr",
            "aud",
            "auth_time",
            "client_id",
            "exp",
            "iat",
            "iss",
            "jti",
            "sid",
            "sub"
        ]
    );
    assert_eq!(claims["iss"], "http://127.0.0.1:8080");
    // The default client has no configured audience: its tokens are for latchkey
    // itself, whose audience is the issuer (docs/contract.md "Audiences").
    assert_eq!(claims["aud"], "http://127.0.0.1:8080");
    assert_eq!(claims["client_id"], "default");
    assert_eq!(claims["sid"], t.session_id.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(claims["amr"], json!(["pwd"]));
    // auth_time is the login's, and a refresh keeps it.
    assert_eq!(claims["auth_time"], claims["iat"]);
    app.advance(std::time::Duration::from_secs(120));
    let later = jwt_parts(&app.rotate(&t.refresh).await.access).1;
    assert_eq!(later["auth_time"], claims["auth_time"]);
    assert!(later["iat"].as_i64() > claims["iat"].as_i64());
}

#[tokio::test]
async fn each_login_starts_a_new_session_asvs_3_2_1_no_fixation() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    assert_ne!(a.session_id, b.session_id);
    assert_ne!(a.refresh, b.refresh);
    let (_, ca) = jwt_parts(&a.access);
    let (_, cb) = jwt_parts(&b.access);
    assert_ne!(ca["jti"], cb["jti"]);
}

#[tokio::test]
async fn a_client_gets_its_audience_and_an_allowed_scope() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let res = app
        .login_as(
            "alice",
            json!({"client_id": "mobile", "scope": "write read"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://api.example.com");
    assert_eq!(claims["client_id"], "mobile");
    assert_eq!(claims["scope"], "read write");
}

#[tokio::test]
async fn unknown_clients_and_disallowed_scopes_are_refused() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let res = app.login_as("alice", json!({"client_id": "nope"})).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let res = app
        .login_as("alice", json!({"client_id": "mobile", "scope": "admin"}))
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

/// OWASP Authentication cheat sheet: one generic failure, same status and body.
#[tokio::test]
async fn wrong_password_and_unknown_user_get_identical_responses() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let wrong = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": "not the password"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/login",
            &json!({"username": "mallory", "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let wrong = wrong.bytes().await.unwrap();
    let unknown = unknown.bytes().await.unwrap();
    assert_eq!(wrong, unknown, "byte-identical bodies");
    let v: Value = serde_json::from_slice(&wrong).unwrap();
    assert_eq!(v["error"], "invalid_credentials");
}

#[tokio::test]
async fn failed_logins_are_recorded_without_the_password() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    app.post_json(
        "/login",
        &json!({"username": "alice", "password": "guess-number-one"}),
    )
    .await;
    let mut row = app
        .sql()
        .rows(
            "SELECT kind, detail FROM events WHERE kind = 'login_failed'",
            &[],
        )
        .remove(0);
    let (kind, detail) = (row.remove(0).unwrap(), row.remove(0));
    assert_eq!(kind, "login_failed");
    assert!(!detail.unwrap_or_default().contains("guess-number-one"));
}

#[tokio::test]
async fn bad_login_requests_get_their_documented_4xx() {
    let app = spawn_app().await;
    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        (
            "bad JSON",
            "application/json",
            "{".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "missing username",
            "application/json",
            json!({"password": PASSWORD}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "remember_me not bool",
            "application/json",
            json!({"username":"a","password":PASSWORD,"remember_me":"yes"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "1025-byte password",
            "application/json",
            json!({"username":"a","password":"p".repeat(1025)}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "257-byte username",
            "application/json",
            json!({"username":"u".repeat(257),"password":PASSWORD}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "1 MB body",
            "application/json",
            json!({"username":"a","password":"p".repeat(1 << 20)}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "text/plain",
            "text/plain",
            "hello".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (name, ct, body, status, code) in cases {
        let res = app.post_raw("/login", ct, body).await;
        assert_eq!(res.status(), status, "case {name}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"], code, "case {name}");
    }
}

#[tokio::test]
async fn the_store_keeps_only_a_hash_of_the_refresh_token() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let db = app.sql();
    let row = db
        .rows("SELECT head_hash, head_generation FROM sessions", &[])
        .remove(0);
    let hash = hex::decode(row[0].as_deref().unwrap()).unwrap();
    let generation: i64 = row[1].as_deref().unwrap().parse().unwrap();
    assert_eq!(generation, 0, "the first token of a family is generation 0");
    let digest = ring::digest::digest(&ring::digest::SHA256, t.refresh.as_bytes());
    assert_eq!(hash, digest.as_ref(), "the head's SHA-256, nothing more");
    let rows = db.count("SELECT count(*) FROM refresh_tokens", &[]);
    assert_eq!(rows, 0, "located tokens keep no token rows");
    // Nothing in the files holds the token, as text or as the bytes it encodes.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let raw = URL_SAFE_NO_PAD
        .decode(t.refresh.strip_prefix("lk1_").unwrap())
        .unwrap();
    let secret = &raw[20..52];
    if db.is_postgres() {
        // Every row of every table, as PostgreSQL renders it (bytea in hex).
        let dump = db.dump();
        for needle in [t.refresh.clone(), hex::encode(secret)] {
            assert!(!dump.contains(&needle), "the token or its secret is stored");
        }
        return;
    }
    for suffix in ["", "-wal"] {
        let path = format!("{}{}", app.db_path().display(), suffix);
        if let Ok(bytes) = std::fs::read(&path) {
            for needle in [t.refresh.as_bytes(), secret] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "the token or its secret found in {path}"
                );
            }
        }
    }
}

/// docs/contract.md "Standards checklist" #21 (ASVS v5 7.4.3): other sessions end after a
/// password change, so no session opened with the old password may outlive it. Login
/// checks the password outside the store's writer; a change that commits between that
/// check and the session-creating write must make the write refuse, or the login opens a
/// session the change never saw. Many rounds, with the login started at offsets that
/// sweep across the change's own hashing, so some land in that window.
#[tokio::test]
async fn asvs_7_4_3_no_session_opened_with_the_old_password_survives_a_concurrent_change() {
    let app = crate::helpers::spawn_app_with(|s| {
        // Logins with a just-replaced password fail; keep throttling out of the race.
        s.login.failures_before_delay = 1_000;
    })
    .await;
    let changer = app.user_with_session("alice").await;
    let mut password = PASSWORD.to_owned();
    let (mut logged_in, mut survivors) = (0, 0);
    for round in 0..40u64 {
        let new = format!("{PASSWORD} round {round}");
        let change_body = json!({"current_password": password, "new_password": new});
        let change = app.post_bearer("/me/password", &changer.access, &change_body);
        let login = async {
            tokio::time::sleep(std::time::Duration::from_millis((round % 20) * 5)).await;
            app.post_json(
                "/login",
                &json!({"username": "alice", "password": password}),
            )
            .await
        };
        let (mut changed, login) = tokio::join!(change, login);
        // One password check per account at a time (the argon2 queue is shared fairly):
        // the change may find the login's check in its place and get 429; it retries.
        while changed.status() == StatusCode::TOO_MANY_REQUESTS {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            changed = app
                .post_bearer("/me/password", &changer.access, &change_body)
                .await;
        }
        assert_eq!(changed.status(), StatusCode::NO_CONTENT, "round {round}");
        if login.status() == StatusCode::OK {
            logged_in += 1;
            let body: Value = login.json().await.unwrap();
            let refresh = body["refresh_token"].as_str().unwrap();
            if app.refresh(refresh).await.status() == StatusCode::OK {
                survivors += 1;
            }
        } else {
            // 401 (old password, or the write saw the change), or 429 when the change's
            // check held the account's place in the argon2 queue.
            assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&login.status()),
                "round {round}: {}",
                login.status()
            );
        }
        password = new;
    }
    assert_eq!(
        survivors, 0,
        "{survivors} of {logged_in} sessions opened with the old password still refresh after the change"
    );
}
