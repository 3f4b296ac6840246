//! Audiences (RFC 9068 §4, RFC 8707; docs/contract.md "Audiences"): a token minted for a
//! resource server cannot act on latchkey itself, `/admin/*` needs the issuer as the
//! only audience, `resource` narrows a token's audiences to a subset of the client's,
//! and introspection tells a resource server only about tokens meant for it.

use latchkey::config::{AudienceSetting, ClientSettings, ResourceServerSettings};
use latchkey::secret::Secret;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, jwt_parts, spawn_app_with, TestApp, API_AUDIENCE, ISSUER, PASSWORD, RS_ID,
    RS_SECRET,
};

const PORTAL_ORIGIN: &str = "https://portal.example.com";
const BILLING_ID: &str = "billing-api";
const BILLING_SECRET: &str = "billing-api-secret-0123456789";
const BILLING_AUDIENCE: &str = "https://billing.example.com";

/// The test app plus a `portal` client whose tokens are for latchkey and two APIs, and
/// a second resource server that serves only billing.
async fn app() -> TestApp {
    spawn_app_with(|s| {
        let mut portal = ClientSettings::named("portal");
        portal.audience = Some(AudienceSetting::Many(vec![
            ISSUER.into(),
            API_AUDIENCE.into(),
            BILLING_AUDIENCE.into(),
        ]));
        portal.allowed_origins = vec![PORTAL_ORIGIN.into()];
        s.clients.push(portal);
        s.resource_servers.push(ResourceServerSettings {
            id: BILLING_ID.into(),
            secret: Secret::new(BILLING_SECRET.into()),
            audiences: vec![BILLING_AUDIENCE.into()],
        });
    })
    .await
}

async fn login(app: &TestApp, user: &str, extra: Value) -> Value {
    let res = app.login_as(user, extra).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn access(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_owned()
}

fn aud(token: &str) -> Value {
    jwt_parts(token).1["aud"].clone()
}

#[tokio::test]
async fn rfc9068_4_a_token_minted_for_a_resource_server_cannot_act_on_latchkey() {
    let app = app().await;
    let root = app.admin().await;
    let victim = app.user_with_session("victim").await;
    let victim_id = jwt_parts(&victim.access).1["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    // The admin's token for the API, as the API (or its logs) would hold it.
    let for_api = access(&login(&app, "root", json!({"client_id": "mobile"})).await);
    assert_eq!(aud(&for_api), API_AUDIENCE);
    for (method, path) in [
        ("GET", "/me".to_owned()),
        ("GET", "/me/sessions".to_owned()),
        ("GET", "/admin/events".to_owned()),
        ("POST", format!("/admin/users/{victim_id}/disable")),
        ("DELETE", format!("/admin/users/{victim_id}/sessions")),
        ("POST", "/logout".to_owned()),
    ] {
        let res = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth(&for_api)
            .json(&json!({"scope": "global"}))
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    // Nothing happened: the victim is enabled with a live session, the admin signed in.
    assert_eq!(
        app.get_bearer("/me", &victim.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_bearer("/admin/events", &root.access).await.status(),
        StatusCode::OK,
        "the default client's token (aud = the issuer) still works everywhere"
    );
    assert_eq!(aud(&root.access), ISSUER);
}

#[tokio::test]
async fn rfc9068_4_admin_routes_need_the_issuer_as_the_only_audience() {
    let app = app().await;
    app.admin().await;
    let wide = access(&login(&app, "root", json!({"client_id": "portal"})).await);
    assert_eq!(aud(&wide), json!([ISSUER, API_AUDIENCE, BILLING_AUDIENCE]));
    // The issuer is among its audiences: self-service works; admin does not.
    assert_eq!(app.get_bearer("/me", &wide).await.status(), StatusCode::OK);
    assert_error(
        app.get_bearer("/admin/events", &wide).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Narrowed to the issuer alone (RFC 8707), the same client's token may administer.
    let narrow = access(
        &login(
            &app,
            "root",
            json!({"client_id": "portal", "resource": ISSUER}),
        )
        .await,
    );
    assert_eq!(aud(&narrow), ISSUER);
    assert_eq!(
        app.get_bearer("/admin/events", &narrow).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn rfc8707_2_resource_narrows_login_and_refresh_tokens_to_a_subset_of_the_clients_audiences()
{
    let app = app().await;
    app.signup("alice", PASSWORD).await;
    // /login: one resource (a string) or several (an array).
    let body = login(
        &app,
        "alice",
        json!({"client_id": "portal", "resource": [BILLING_AUDIENCE, API_AUDIENCE]}),
    )
    .await;
    assert_eq!(aud(&access(&body)), json!([BILLING_AUDIENCE, API_AUDIENCE]));
    // /oauth/token: `resource` repeated in the form.
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let res = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("resource", ISSUER),
                ("resource", BILLING_AUDIENCE),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(aud(&access(&body)), json!([ISSUER, BILLING_AUDIENCE]));
    // Without `resource`, a refresh gives every audience of the client again.
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let plain = app.rotate(&refresh).await;
    assert_eq!(
        aud(&plain.access),
        json!([ISSUER, API_AUDIENCE, BILLING_AUDIENCE])
    );
    // /browser/login takes it too.
    let res = app
        .client
        .post(app.url("/browser/login"))
        .header("origin", PORTAL_ORIGIN)
        .header("x-latchkey-csrf", "1")
        .json(
            &json!({"username": "alice", "password": PASSWORD, "client_id": "portal",
                      "resource": API_AUDIENCE}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(aud(&access(&body)), API_AUDIENCE);
}

#[tokio::test]
async fn rfc8707_2_a_resource_outside_the_clients_audiences_is_invalid_target_and_changes_nothing()
{
    let app = app().await;
    app.signup("alice", PASSWORD).await;
    for resource in [json!("https://evil.example"), json!([API_AUDIENCE, ISSUER])] {
        // `mobile` has only the API: the issuer is not one of its audiences either.
        let res = app
            .login_as(
                "alice",
                json!({"client_id": "mobile", "resource": resource}),
            )
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_target").await;
    }
    let t = app
        .login_as("alice", json!({"client_id": "mobile"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let refresh = t["refresh_token"].as_str().unwrap();
    let res = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("resource", ISSUER),
            ],
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_target").await;
    // The token did not rotate: it is still the head, so well past the reuse interval it
    // rotates normally instead of counting as reuse.
    app.advance(std::time::Duration::from_secs(60));
    let next = app.rotate(refresh).await;
    assert_eq!(aud(&next.access), API_AUDIENCE);
}

#[tokio::test]
async fn rfc7662_introspection_answers_only_for_the_resource_servers_own_audiences() {
    let app = app().await;
    app.signup("alice", PASSWORD).await;
    let introspect = |id: &'static str, secret: &'static str, token: String| {
        let app = &app;
        async move {
            let res = app
                .client
                .post(app.url("/oauth/introspect"))
                .basic_auth(id, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    let for_api = login(&app, "alice", json!({"client_id": "mobile"})).await;
    let api_token = access(&for_api);
    let orders = introspect(RS_ID, RS_SECRET, api_token.clone()).await;
    assert_eq!(orders["active"], true);
    assert_eq!(orders["aud"], API_AUDIENCE);
    // Billing is not an audience of the token: nothing to tell.
    assert_eq!(
        introspect(BILLING_ID, BILLING_SECRET, api_token).await,
        json!({"active": false})
    );
    // A token for latchkey and billing: billing may ask about it.
    let portal = access(&login(&app, "alice", json!({"client_id": "portal"})).await);
    assert_eq!(
        introspect(BILLING_ID, BILLING_SECRET, portal).await["active"],
        true
    );
    // Never a refresh token, to anyone.
    let refresh = for_api["refresh_token"].as_str().unwrap().to_owned();
    for (id, secret) in [(RS_ID, RS_SECRET), (BILLING_ID, BILLING_SECRET)] {
        assert_eq!(
            introspect(id, secret, refresh.clone()).await,
            json!({"active": false})
        );
    }
}
