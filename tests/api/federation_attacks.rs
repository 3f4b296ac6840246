//! Attacks on the browser flow through an identity provider (docs/identity-providers-guide.md),
//! against the fake provider of `fake_idp.rs`: the state missing, mismatched, unbound,
//! reused or expired (RFC 6749 §10.12); ID tokens with another nonce, audience or
//! issuer, or expired (OIDC Core §3.1.3.7); the provider down; open redirects through
//! `return_to`; a cross-site link; registration closed. Each must end in `#error=` or a
//! 4xx error body, never a session and never a 500.

use std::time::Duration;

use reqwest::StatusCode;

use crate::fake_idp::{Claims, FakeIdp};
use crate::federation::{
    app_with, browser_session, callback, claims, error_of, header, landed, provider,
    provider_answer, refused, start, start_link, started, urlencode, APP, RETURN_TO,
};
use crate::helpers::spawn_app_with;

#[tokio::test]
async fn rfc6749_10_12_the_state_must_be_present_bound_to_this_browser_and_used_once() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    idp.will_say(claims("sub-x", "x@example.com", true));

    // Missing: nothing to go back to, the error body.
    let res = callback(&app, "/federate/corp/callback?code=abc", None).await;
    assert!(res.headers().get("location").is_none());
    crate::helpers::assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Unknown: no sign-in in progress with that state.
    let res = callback(
        &app,
        "/federate/corp/callback?code=abc&state=forged",
        Some("forged"),
    )
    .await;
    crate::helpers::assert_error(res, StatusCode::NOT_FOUND, "not_found").await;

    // No state cookie: the callback came to another browser (login CSRF).
    let s = started(&app).await;
    let back = provider_answer(&app, &s).await;
    refused(&app, callback(&app, &back, None).await, "access_denied").await;

    // The cookie of another sign-in.
    let (a, b) = (started(&app).await, started(&app).await);
    let back_a = provider_answer(&app, &a).await;
    refused(
        &app,
        callback(&app, &back_a, Some(&b.state_cookie)).await,
        "access_denied",
    )
    .await;

    // Used once: the same callback again is unknown.
    let s = started(&app).await;
    let back = provider_answer(&app, &s).await;
    let res = callback(&app, &back, Some(&s.state_cookie)).await;
    assert!(landed(&res, &app).1.is_some());
    let res = callback(&app, &back, Some(&s.state_cookie)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "used once");
    assert_eq!(app.events_of("login_succeeded").len(), 1);

    // Expired after 10 minutes.
    let s = started(&app).await;
    let back = provider_answer(&app, &s).await;
    app.advance(Duration::from_secs(601));
    let res = callback(&app, &back, Some(&s.state_cookie)).await;
    assert_eq!(error_of(&landed(&res, &app).0), "invalid_request");
    idp.stop().await;
}

#[tokio::test]
async fn oidc_core_3_1_3_7_id_tokens_with_another_nonce_audience_or_issuer_or_expired_are_refused()
{
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    let base = claims("sub-y", "y@example.com", true);
    for bad in [
        Claims {
            nonce: Some("a-replayed-nonce".into()),
            ..base.clone()
        },
        Claims {
            audience: Some("another-client".into()),
            ..base.clone()
        },
        Claims {
            issuer: Some("https://evil.example".into()),
            ..base.clone()
        },
        Claims {
            expires_in: Some(-600),
            ..base.clone()
        },
    ] {
        idp.will_say(bad);
        let s = started(&app).await;
        let back = provider_answer(&app, &s).await;
        refused(
            &app,
            callback(&app, &back, Some(&s.state_cookie)).await,
            "access_denied",
        )
        .await;
    }
    // Expiry by latchkey's clock: a token valid for a minute, checked an hour later.
    idp.will_say(Claims {
        expires_in: Some(60),
        ..base.clone()
    });
    let s = started(&app).await;
    let back = provider_answer(&app, &s).await;
    app.advance(Duration::from_secs(300));
    refused(
        &app,
        callback(&app, &back, Some(&s.state_cookie)).await,
        "access_denied",
    )
    .await;
    assert!(app.events_of("identity_linked").is_empty());
    idp.stop().await;
}

#[tokio::test]
async fn a_provider_that_is_down_neither_stops_startup_nor_gives_a_500() {
    // Nothing listens on the provider's port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let app = spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![APP.into()];
        s.identity_providers = vec![provider("down", &issuer)];
    })
    .await;
    let res = start(
        &app,
        "down",
        &format!("client_id=default&return_to={}", urlencode(RETURN_TO)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        error_of(&header(&res, "location")),
        "temporarily_unavailable"
    );
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn return_to_off_the_clients_origins_is_a_400_never_an_open_redirect() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    for return_to in [
        "https://evil.example/",
        "https://app.example@evil.example/",
        "https://app.example.evil.example/",
        "http://app.example/",
        "//evil.example/",
        "javascript:alert(1)",
        "https://app.example/#x",
    ] {
        let res = start(
            &app,
            "corp",
            &format!("client_id=default&return_to={}", urlencode(return_to)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{return_to}");
        assert!(res.headers().get("location").is_none(), "{return_to}");
    }
    let res = start(&app, "corp", "client_id=default").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = start(
        &app,
        "nope",
        &format!("client_id=default&return_to={}", urlencode(RETURN_TO)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "no such provider");
    let res = start(
        &app,
        "corp",
        &format!("client_id=mobile&return_to={}", urlencode(RETURN_TO)),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "not the mobile client's origin"
    );
    idp.stop().await;
}

#[tokio::test]
async fn with_registration_closed_an_unknown_provider_user_gets_no_account() {
    let idp = FakeIdp::start("latchkey").await;
    let issuer = idp.issuer.clone();
    let app = spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![APP.into()];
        s.identity_providers = vec![provider("corp", &issuer)];
        s.registration = latchkey::config::Registration::Closed;
    })
    .await;
    idp.will_say(claims("sub-z", "z@example.com", true));
    let s = started(&app).await;
    let back = provider_answer(&app, &s).await;
    refused(
        &app,
        callback(&app, &back, Some(&s.state_cookie)).await,
        "access_denied",
    )
    .await;
    assert!(app.events_of("user_created").is_empty());
    idp.stop().await;
}

#[tokio::test]
async fn a_link_started_by_a_cross_site_navigation_is_refused() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    app.signup("dora", "correct horse battery").await;
    let refresh = browser_session(&app, "dora", "correct horse battery").await;
    let link = |site: &'static str| start_link(&app, &refresh, Some(site));
    // Fetch Metadata: another site's page cannot start a link for this session.
    let res = link("cross-site").await;
    assert_eq!(error_of(&header(&res, "location")), "login_required");
    let res = link("same-site").await;
    assert!(
        header(&res, "location").starts_with(&idp.issuer),
        "to the provider"
    );
    idp.stop().await;
}
