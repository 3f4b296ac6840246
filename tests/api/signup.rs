use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, PASSWORD};
use latchkey::config::Registration;

#[tokio::test]
async fn signup_returns_201_with_id_username_and_creation_time() {
    let app = spawn_app().await;
    let res = app.signup("alice", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "alice");
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    let created = body["created_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'));
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());
}

#[tokio::test]
async fn signing_up_a_taken_name_is_409_conflict_even_in_another_case() {
    let app = spawn_app().await;
    assert_eq!(
        app.signup("alice", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    assert_error(
        app.signup("alice", PASSWORD).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert_error(
        app.signup("ALICE", PASSWORD).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let n: i64 = app.sql().count("SELECT COUNT(*) FROM users", &[]);
    assert_eq!(n, 1, "no partial write");
}

#[tokio::test]
async fn closed_registration_is_403_forbidden() {
    let app = spawn_app_with(|s| s.registration = Registration::Closed).await;
    assert_error(
        app.signup("alice", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn owasp_password_storage_hashes_are_argon2id_with_the_recommended_parameters() {
    let app = spawn_app().await;
    app.signup("alice", PASSWORD).await;
    let hash: String = app.sql().text("SELECT password_hash FROM users", &[]);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(PASSWORD));
}

/// A table of bad signup requests: each gets its documented status and error body, and
/// nothing is written.
#[tokio::test]
async fn bad_signup_requests_get_their_documented_4xx_and_write_nothing() {
    let app = spawn_app().await;
    let huge_password = "x".repeat(1024 * 1024);
    let long_password = "x".repeat(1025);
    let long_name = "n".repeat(257);
    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        (
            "bad JSON",
            "application/json",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "empty body",
            "application/json",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "JSON array",
            "application/json",
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "missing password",
            "application/json",
            r#"{"username":"bob"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "wrong types",
            "application/json",
            r#"{"username":1,"password":true}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "null username",
            "application/json",
            r#"{"username":null,"password":"correct horse"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "short password",
            "application/json",
            json!({"username":"bob","password":"short"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "1025-byte password",
            "application/json",
            json!({"username":"bob","password":long_password}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "257-byte username",
            "application/json",
            json!({"username":long_name,"password":PASSWORD}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "empty username",
            "application/json",
            json!({"username":"","password":PASSWORD}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "control character",
            "application/json",
            json!({"username":"bo\u{0}b","password":PASSWORD}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "1 MB password",
            "application/json",
            json!({"username":"bob","password":huge_password}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "text/plain",
            "text/plain",
            json!({"username":"bob","password":PASSWORD}).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "form body",
            "application/x-www-form-urlencoded",
            "username=bob&password=correct+horse".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (name, ct, body, status, code) in cases {
        let res = app.post_raw("/signup", ct, body).await;
        assert_eq!(res.status(), status, "case {name}");
        let v: Value = res
            .json()
            .await
            .unwrap_or_else(|_| panic!("case {name}: JSON error body"));
        assert_eq!(v["error"], code, "case {name}: {v}");
        assert!(v["error_description"].is_string(), "case {name}");
    }
    let n: i64 = app.sql().count("SELECT COUNT(*) FROM users", &[]);
    assert_eq!(n, 0, "no bad request wrote a user");
}

#[tokio::test]
async fn error_descriptions_never_echo_the_submitted_password() {
    let app = spawn_app().await;
    let res = app
        .post_raw(
            "/signup",
            "application/json",
            r#"{"username":"bob","password":"s3cret-value-xyz","remember_me":"s3cret-value-xyz"}"#,
        )
        .await;
    let text = res.text().await.unwrap();
    assert!(!text.contains("s3cret-value-xyz"), "{text}");
}

#[tokio::test]
async fn cli_users_add_reads_the_password_from_stdin_and_grants_roles() {
    let app = spawn_app().await;
    let out = app
        .cli(
            &["users", "add", "root", "--role", "admin"],
            &format!("{PASSWORD}\n"),
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let t = app.login("root").await;
    let (_, claims) = crate::helpers::jwt_parts(&t.access);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["roles"], json!(["admin"]));
}
