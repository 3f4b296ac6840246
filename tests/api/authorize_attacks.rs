//! Attacks on `/oauth/authorize` and the authorization code grant: a code reused, used
//! by another client, redirect URI or verifier, expired; redirect URIs that are not the
//! client's (never redirected to: RFC 6749 §4.1.2.1, RFC 9700 §4.1); PKCE missing or
//! plain; the sign-in form without its CSRF token.

use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::StatusCode;
use serde_json::Value;

use crate::authorize_kit::*;
use crate::helpers::{assert_error, PASSWORD};

#[tokio::test]
async fn a_code_used_twice_is_refused_and_the_tokens_of_its_first_use_are_revoked_rfc6749_4_1_2() {
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let pkce = Pkce::new();
    let code = code_for(&app, "alice", CLIENT, REDIRECT, &pkce).await;
    let first: Value = exchange(&app, &code, CLIENT, REDIRECT, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let again = exchange(&app, &code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_error(again, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let refresh = app.refresh(first["refresh_token"].as_str().unwrap()).await;
    assert_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let me = app
        .get_bearer("/me", first["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        me.status(),
        StatusCode::UNAUTHORIZED,
        "the session has ended"
    );
}

#[tokio::test]
async fn a_code_is_refused_to_another_client_another_redirect_uri_or_a_wrong_verifier_rfc7636_4_6()
{
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let other_port = "http://127.0.0.1:50000/callback";
    let wrong_verifier = Pkce::new().verifier;
    let cases: [(&str, &str, Option<&str>); 3] = [
        ("other-app", REDIRECT, None),
        (CLIENT, other_port, None),
        (CLIENT, REDIRECT, Some(wrong_verifier.as_str())),
    ];
    for (client, redirect_uri, verifier) in cases {
        let pkce = Pkce::new();
        let code = code_for(&app, "alice", CLIENT, REDIRECT, &pkce).await;
        let verifier = verifier.unwrap_or(&pkce.verifier);
        let res = exchange(&app, &code, client, redirect_uri, verifier).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
        // Burnt: not even the rightful request gets it now.
        let res = exchange(&app, &code, CLIENT, REDIRECT, &pkce.verifier).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
}

#[tokio::test]
async fn a_code_older_than_60_seconds_is_refused() {
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let pkce = Pkce::new();
    let code = code_for(&app, "alice", CLIENT, REDIRECT, &pkce).await;
    app.advance(Duration::from_secs(61));
    let res = exchange(&app, &code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_redirect_uri_that_is_not_the_clients_is_shown_an_error_never_redirected_to_rfc6749_4_1_2_1(
) {
    let app = native_app().await;
    let pkce = Pkce::new();
    for evil in [
        "https://evil.example/callback",
        "http://127.0.0.1/elsewhere",
        "http://127.0.0.1.evil.example/callback",
        "http://evil@127.0.0.1/callback",
        "http://localhost/callback",
        "http://127.0.0.1/callback/../../evil",
        "com.example.app:/oauth2redirect#frag",
        "//evil.example/callback",
        "",
    ] {
        let res = authorize(&app, &request(CLIENT, evil, &pkce)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{evil}");
        assert!(
            res.headers().get(LOCATION).is_none(),
            "{evil} redirected to"
        );
        let html = res.text().await.unwrap();
        assert!(html.contains("redirect_uri"), "{evil}: {html}");
        assert!(!html.contains("evil.example"), "the page does not echo it");
    }
    // A client other than the one that registered it, or none at all.
    for client in [Some("other-app-unknown"), None] {
        let q = with(request(CLIENT, REDIRECT, &pkce), "client_id", client);
        let res = authorize(&app, &q).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.headers().get(LOCATION).is_none());
    }
    // The default client has no redirect URIs at all.
    let res = authorize(&app, &request("default", REDIRECT, &pkce)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn missing_or_plain_pkce_and_other_response_types_go_back_as_errors_to_the_app() {
    let app = native_app().await;
    let pkce = Pkce::new();
    let base = request(CLIENT, REDIRECT, &pkce);
    let cases = [
        (
            with(base.clone(), "code_challenge", None),
            "invalid_request",
        ),
        (
            with(base.clone(), "code_challenge_method", None),
            "invalid_request",
        ),
        (
            with(base.clone(), "code_challenge_method", Some("plain")),
            "invalid_request",
        ),
        (
            with(base.clone(), "code_challenge", Some("short")),
            "invalid_request",
        ),
        (
            with(base.clone(), "response_type", Some("token")),
            "unsupported_response_type",
        ),
        (
            with(base.clone(), "response_type", None),
            "unsupported_response_type",
        ),
        (with(base.clone(), "scope", Some("admin")), "invalid_scope"),
        (with(base.clone(), "idp", Some("nope")), "invalid_request"),
    ];
    for (query, error) in cases {
        let res = authorize(&app, &query).await;
        assert_eq!(res.status(), StatusCode::FOUND, "{query:?}");
        let (location, pairs) = location_query(&res);
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(param(&pairs, "error"), Some(error), "{query:?}");
        assert_eq!(param(&pairs, "state"), Some("af0ifjsldkj"));
        assert!(param(&pairs, "code").is_none());
    }
    // The token request checks the verifier's form as well (RFC 7636 §4.1).
    let res = exchange(&app, "some-code", CLIENT, REDIRECT, "too-short").await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_sign_in_form_without_its_csrf_token_or_cookie_is_refused() {
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let page = Page::read(authorize(&app, &request(CLIENT, REDIRECT, &Pkce::new())).await).await;
    let creds = [("username", "alice"), ("password", PASSWORD)];

    let mut without_token = Page {
        fields: page.fields.clone(),
        html: String::new(),
        cookie: page.cookie.clone(),
    };
    without_token.fields.retain(|(k, _)| k != "csrf_token");
    let without_cookie = Page {
        fields: page.fields.clone(),
        html: String::new(),
        cookie: String::new(),
    };
    let other_cookie = Page {
        fields: page.fields.clone(),
        html: String::new(),
        cookie: "__Host-lk_csrf=forged-by-an-attacker".into(),
    };
    for forged in [without_token, without_cookie, other_cookie] {
        let res = forged.submit(&app, &creds).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.headers().get(LOCATION).is_none());
    }
    assert_eq!(page.submit(&app, &creds).await.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn request_values_carried_by_the_page_are_escaped_not_markup() {
    let app = native_app().await;
    let hostile = "\"><script>alert(1)</script><input name=\"password";
    let q = with(
        request(CLIENT, REDIRECT, &Pkce::new()),
        "state",
        Some(hostile),
    );
    let res = authorize(&app, &q).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = Page::read(res).await;
    assert!(!page.html.contains("<script>"), "{}", page.html);
    // The value survives the round trip unchanged.
    assert!(page
        .fields
        .iter()
        .any(|(k, v)| k == "state" && v == hostile));
}

#[tokio::test]
async fn housekeeping_ends_the_session_of_a_code_that_expired_unexchanged() {
    let app = native_app().await;
    app.signup("alice", PASSWORD).await;
    let kept = Pkce::new();
    let code = code_for(&app, "alice", CLIENT, REDIRECT, &kept).await;
    let tokens: Value = exchange(&app, &code, CLIENT, REDIRECT, &kept.verifier)
        .await
        .json()
        .await
        .unwrap();
    // The app never comes back for this one (it crashed, the user closed the browser):
    // nobody can ever get its session's tokens, which wait sealed in the code's row.
    let lost = Pkce::new();
    let abandoned = code_for(&app, "alice", CLIENT, REDIRECT, &lost).await;
    let live = "SELECT count(*) FROM sessions WHERE revoked_at IS NULL";
    assert_eq!(app.sql().count(live, &[]), 2);

    app.advance(Duration::from_secs(61));
    latchkey::housekeeping::cleanup(&app.state).await.unwrap();
    assert_eq!(
        app.sql().count(live, &[]),
        1,
        "the abandoned code's session ended"
    );
    let revoked = app.events_of("session_revoked");
    assert_eq!(revoked.len(), 1);
    assert!(revoked[0]
        .1
        .as_deref()
        .unwrap()
        .contains("\"reason\":\"revoked\""));
    let res = exchange(&app, &abandoned, CLIENT, REDIRECT, &lost.verifier).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // The exchanged code's session lives on.
    let refreshed = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
}
