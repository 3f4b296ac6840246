//! RFC 7009 revocation, RFC 7662 introspection, logout scopes, and the CLI revoke.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, RS_ID, RS_SECRET};

#[tokio::test]
async fn rfc7009_2_2_revoke_answers_200_even_for_unknown_tokens() {
    let app = spawn_app().await;
    for token in ["nope", &"A".repeat(43), "eyJhbGciOiJub25lIn0.e30."] {
        let res = app.post_form("/oauth/revoke", &[("token", token)]).await;
        assert_eq!(res.status(), StatusCode::OK, "{token}");
    }
    let res = app
        .post_form("/oauth/revoke", &[("token_type_hint", "refresh_token")])
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_whole_session_at_once() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let t1 = app.rotate(&t0.refresh).await;
    assert_eq!(app.introspect(&t1.refresh).await["active"], true);
    // A wrong hint is ignored (RFC 7009 §2.1).
    let res = app
        .post_form(
            "/oauth/revoke",
            &[("token", &t1.refresh), ("token_type_hint", "access_token")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_error(
        app.refresh(&t1.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(app.introspect(&t1.refresh).await, json!({"active": false}));
    assert_eq!(app.introspect(&t1.access).await, json!({"active": false}));
    assert_error(
        app.get_bearer("/me", &t1.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn revoking_an_access_token_ends_its_session() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app
        .post_json("/oauth/revoke", &json!({"token": t.access}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_error(
        app.refresh(&t.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn rfc7662_2_1_introspection_requires_resource_server_credentials() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app
        .client
        .post(app.url("/oauth/introspect"))
        .form(&[("token", &t.access)])
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("www-authenticate").is_some());
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let res = app
        .client
        .post(app.url("/oauth/introspect"))
        .basic_auth(RS_ID, Some("wrong-secret-wrong-secret"))
        .form(&[("token", &t.access)])
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // A user's access token is not a resource-server credential.
    let res = app
        .client
        .post(app.url("/oauth/introspect"))
        .bearer_auth(&t.access)
        .form(&[("token", &t.access)])
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let _ = RS_SECRET;
}

#[tokio::test]
async fn rfc7662_2_2_active_tokens_describe_themselves_and_others_say_only_inactive() {
    let app = spawn_app().await;
    let t0 = app.user_with_session("alice").await;
    let a = app.introspect(&t0.access).await;
    assert_eq!(a["active"], true);
    assert_eq!(a["sid"], t0.session_id.as_str());
    assert_eq!(a["client_id"], "default");
    assert_eq!(a["username"], "alice");
    assert!(a["exp"].is_i64() && a["sub"].is_string());
    let r = app.introspect(&t0.refresh).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");
    let t1 = app.rotate(&t0.refresh).await;
    // A rotated token is no longer active (even inside the reuse interval).
    assert_eq!(app.introspect(&t0.refresh).await, json!({"active": false}));
    assert_eq!(app.introspect(&t1.refresh).await["active"], true);
    for junk in ["junk", "a.b.c", &"x".repeat(5000)] {
        assert_eq!(app.introspect(junk).await, json!({"active": false}));
    }
}

#[tokio::test]
async fn logout_local_ends_only_this_session() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    let res = app.post_bearer("/logout", &a.access, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.refresh(&a.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(app.introspect(&a.access).await, json!({"active": false}));
    app.rotate(&b.refresh).await;
}

#[tokio::test]
async fn logout_with_no_body_means_local() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let res = app
        .client
        .post(app.url("/logout"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.refresh(&a.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn logout_others_keeps_this_session_and_ends_the_rest() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    let c = app.login("alice").await;
    let bob = app.user_with_session("bob").await;
    let res = app
        .post_bearer("/logout", &a.access, &json!({"scope": "others"}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    app.rotate(&a.refresh).await;
    for t in [&b, &c] {
        assert_error(
            app.refresh(&t.refresh).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    app.rotate(&bob.refresh).await;
}

#[tokio::test]
async fn logout_global_ends_every_session_of_the_user_only() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    let bob = app.user_with_session("bob").await;
    let res = app
        .post_bearer("/logout", &b.access, &json!({"scope": "global"}))
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
    app.rotate(&bob.refresh).await;
}

#[tokio::test]
async fn logout_rejects_bad_scopes_and_missing_tokens() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let res = app
        .post_bearer("/logout", &a.access, &json!({"scope": "everything"}))
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    let res = app.post_json("/logout", &json!({})).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Nothing was ended by the bad requests.
    app.rotate(&a.refresh).await;
}

#[tokio::test]
async fn cli_sessions_revoke_ends_every_session_of_a_user_in_a_running_server() {
    let app = spawn_app().await;
    let a = app.user_with_session("alice").await;
    let b = app.login("alice").await;
    let out = app
        .cli(&["sessions", "revoke", "--user", "alice"], "")
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked 2 session(s)"));
    for t in [&a, &b] {
        assert_error(
            app.refresh(&t.refresh).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
        let v: Value = app.introspect(&t.access).await;
        assert_eq!(v, json!({"active": false}));
    }
}

#[tokio::test]
async fn rfc7662_2_2_an_access_token_past_exp_is_inactive_even_within_the_verifier_leeway() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    app.advance(std::time::Duration::from_secs(15 * 60 + 5));
    // Bearer routes still allow 30 s of clock skew; the issuer's own answer does not.
    assert_eq!(
        app.get_bearer("/me", &t.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.introspect(&t.access).await, json!({"active": false}));
}

#[tokio::test]
async fn rfc7662_2_1_introspection_without_credentials_is_401_whatever_the_body() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/oauth/introspect"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let res = app.post_raw("/oauth/introspect", "text/plain", "x").await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn rfc6749_3_2_a_json_body_with_a_repeated_member_is_invalid_request() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let body = format!(
        r#"{{"grant_type":"refresh_token","refresh_token":"{0}","refresh_token":"{0}"}}"#,
        t.refresh
    );
    let res = app.post_raw("/oauth/token", "application/json", body).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    app.rotate(&t.refresh).await;
}
