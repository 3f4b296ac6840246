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
    assert_eq!(app.introspect(&t1.access).await["active"], true);
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
    // Refresh tokens are latchkey's own business: never active to a resource server.
    assert_eq!(app.introspect(&t0.refresh).await, json!({"active": false}));
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

/// A resource server whose secret has the characters RFC 6749 §2.3.1's form-encoding
/// changes (`+`, `%`, `&`, also `=` and `:`), as some operators' generated secrets do.
const ODD_ID: &str = "odd-api";
const ODD_SECRET: &str = "a+b%2Fc&d=e:f 0123456789";

async fn odd_app() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|s| {
        s.resource_servers
            .push(latchkey::config::ResourceServerSettings {
                id: ODD_ID.into(),
                secret: latchkey::secret::Secret::new(ODD_SECRET.into()),
                audiences: vec![crate::helpers::API_AUDIENCE.into()],
            });
    })
    .await
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let raw = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn api_tokens(app: &crate::helpers::TestApp, user: &str) -> Value {
    app.signup(user, crate::helpers::PASSWORD).await;
    app.login_as(user, json!({"client_id": "mobile"}))
        .await
        .json()
        .await
        .unwrap()
}

/// RFC 6749 §2.3.1 says Basic credentials are form-encoded first; Authlib, `requests`'
/// `auth=` and `curl -u` send them raw. Both are accepted; anything else is 401.
#[tokio::test]
async fn rfc6749_2_3_1_introspection_takes_basic_credentials_raw_or_form_encoded() {
    let app = odd_app().await;
    let t = api_tokens(&app, "alice").await;
    let token = t["access_token"].as_str().unwrap();
    for (case, header) in [
        ("raw", basic(ODD_ID, ODD_SECRET)),
        (
            "form-encoded",
            basic(&form_encoded(ODD_ID), &form_encoded(ODD_SECRET)),
        ),
    ] {
        let res = app
            .client
            .post(app.url("/oauth/introspect"))
            .header("authorization", header)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{case}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["active"], true, "{case}");
    }
    for wrong in [
        basic(ODD_ID, "a+b%2Fc&d=e:f 012345678"),
        basic(ODD_ID, "a b/c&d=e:f 0123456789x"),
        basic(RS_ID, ODD_SECRET),
    ] {
        let res = app
            .client
            .post(app.url("/oauth/introspect"))
            .header("authorization", wrong)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
}

/// RFC 6749 §2.3.1 `client_secret_post` (openid-client v6's default) at introspection.
#[tokio::test]
async fn rfc6749_2_3_1_introspection_takes_client_secret_post() {
    let app = odd_app().await;
    let t = api_tokens(&app, "alice").await;
    let token = t["access_token"].as_str().unwrap();
    let res = app
        .post_form(
            "/oauth/introspect",
            &[
                ("token", token),
                ("client_id", ODD_ID),
                ("client_secret", ODD_SECRET),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["active"], true);
    let res = app
        .post_form(
            "/oauth/introspect",
            &[
                ("token", token),
                ("client_id", ODD_ID),
                ("client_secret", "not the secret at all"),
            ],
        )
        .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

/// RFC 7009 §2.1: a resource server authenticates (Basic raw or form-encoded, or
/// `client_secret_post`) and may revoke the access tokens meant for it; wrong
/// credentials are 401; refresh tokens (not issued to it) are left alone.
#[tokio::test]
async fn rfc7009_2_1_a_resource_server_revokes_its_audiences_access_tokens_with_either_method() {
    let app = odd_app().await;
    let by_basic = api_tokens(&app, "alice").await;
    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .header("authorization", basic(ODD_ID, ODD_SECRET))
        .form(&[("token", by_basic["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_error(
        app.refresh(by_basic["refresh_token"].as_str().unwrap())
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;

    let by_post = api_tokens(&app, "bob").await;
    let refresh = by_post["refresh_token"].as_str().unwrap();
    // A refresh token was not issued to the resource server: 200, nothing revoked.
    let res = app
        .post_form(
            "/oauth/revoke",
            &[
                ("token", refresh),
                ("client_id", ODD_ID),
                ("client_secret", ODD_SECRET),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated = app.rotate(refresh).await;
    let res = app
        .post_form(
            "/oauth/revoke",
            &[
                ("token", rotated.access.as_str()),
                ("client_id", ODD_ID),
                ("client_secret", ODD_SECRET),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_error(
        app.refresh(&rotated.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;

    // Wrong credentials: 401, and the token lives on.
    let carol = api_tokens(&app, "carol").await;
    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .header("authorization", basic(ODD_ID, "wrong-secret-wrong-secret"))
        .form(&[("token", carol["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(
        app.refresh(carol["refresh_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}
