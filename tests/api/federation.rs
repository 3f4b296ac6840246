//! Identity providers in the browser (docs/identity-providers-guide.md), against the
//! fake provider of `fake_idp.rs`: the flow, linking (never on an unverified email),
//! `/me/identities`. The attacks (state, nonce, audience, issuer, expiry, provider down,
//! `return_to`) are in `federation_attacks.rs`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_idp::{Claims, FakeIdp};
use crate::helpers::{spawn_app, spawn_app_with, TestApp};

pub const APP: &str = "https://app.example";
pub const RETURN_TO: &str = "https://app.example/signed-in";

pub(crate) async fn app_with(idp: &FakeIdp) -> TestApp {
    let issuer = idp.issuer.clone();
    spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![APP.into()];
        s.identity_providers = vec![provider("corp", &issuer)];
    })
    .await
}

pub fn provider(id: &str, issuer: &str) -> latchkey::config::IdentityProviderSettings {
    latchkey::config::IdentityProviderSettings {
        id: id.into(),
        issuer: issuer.into(),
        client_id: "latchkey".into(),
        client_secret: Some(latchkey::secret::Secret::new("fake-secret".into())),
        client_secret_env: None,
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        display_name: Some("Corp".into()),
        link_by_verified_email: true,
    }
}

pub(crate) fn claims(sub: &str, email: &str, verified: bool) -> Claims {
    Claims {
        subject: sub.into(),
        email: Some(email.into()),
        email_verified: verified,
        ..Claims::default()
    }
}

/// One header's value.
pub(crate) fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The value a `Set-Cookie` gives `name`, if any.
pub fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|v| v.split(';').next().unwrap().to_owned())
        })
}

/// A sign-in started at latchkey: the provider's address and the state cookie.
pub struct Started {
    pub provider_url: String,
    pub state_cookie: String,
}

pub async fn start(app: &TestApp, idp: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/browser/federate/{idp}?{query}")))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn started(app: &TestApp) -> Started {
    let res = start(
        app,
        "corp",
        &format!("client_id=default&return_to={}", urlencode(RETURN_TO)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    Started {
        provider_url: header(&res, "location"),
        state_cookie: set_cookie(&res, "__Host-lk_fed").expect("the state cookie"),
    }
}

/// A browser-mode session of `username` (a password account): its refresh cookie.
pub(crate) async fn browser_session(app: &TestApp, username: &str, password: &str) -> String {
    let res = app
        .client
        .post(app.url("/browser/login"))
        .header("origin", APP)
        .header("x-latchkey-csrf", "1")
        .header("content-type", "application/json")
        .body(json!({"username": username, "password": password}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    set_cookie(&res, &app.settings.browser.cookie_name).unwrap()
}

/// `GET /browser/federate/corp?link=true` from the browser holding `refresh`, with the
/// `Sec-Fetch-Site` a browser would send, if any.
pub(crate) async fn start_link(
    app: &TestApp,
    refresh: &str,
    fetch_site: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .get(app.url(&format!(
            "/browser/federate/corp?client_id=default&link=true&return_to={}",
            urlencode(RETURN_TO)
        )))
        .header(
            "cookie",
            format!("{}={refresh}", app.settings.browser.cookie_name),
        );
    if let Some(site) = fetch_site {
        req = req.header("sec-fetch-site", site);
    }
    req.send().await.unwrap()
}

pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).unwrap()[2..].to_owned()
}

/// The fake provider's redirect back: latchkey's callback path and query (the issuer's
/// origin in `Location` is the configured one, not the test server's).
pub(crate) async fn provider_answer(app: &TestApp, started: &Started) -> String {
    let res = app.client.get(&started.provider_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = url::Url::parse(&header(&res, "location")).unwrap();
    format!("{}?{}", location.path(), location.query().unwrap())
}

pub(crate) async fn callback(
    app: &TestApp,
    path_and_query: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut req = app.client.get(app.url(path_and_query));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("__Host-lk_fed={c}"));
    }
    req.send().await.unwrap()
}

/// Where a callback sent the browser, and the refresh cookie it set.
pub(crate) fn landed(res: &reqwest::Response, app: &TestApp) -> (String, Option<String>) {
    assert_eq!(res.status(), StatusCode::FOUND, "the callback redirects");
    (
        header(res, "location"),
        set_cookie(res, &app.settings.browser.cookie_name).filter(|v| !v.is_empty()),
    )
}

/// The whole flow; returns the refresh cookie.
pub(crate) async fn sign_in(app: &TestApp) -> String {
    let s = started(app).await;
    let back = provider_answer(app, &s).await;
    let res = callback(app, &back, Some(&s.state_cookie)).await;
    let (location, refresh) = landed(&res, app);
    assert_eq!(location, RETURN_TO);
    refresh.expect("a refresh cookie")
}

/// `/browser/refresh` with the cookie, as the SPA at `APP` calls it: the access token.
pub(crate) async fn access_token(app: &TestApp, refresh_cookie: &str) -> String {
    let res = app
        .client
        .post(app.url("/browser/refresh"))
        .header("origin", APP)
        .header("x-latchkey-csrf", "1")
        .header("content-type", "application/json")
        .header(
            "cookie",
            format!("{}={refresh_cookie}", app.settings.browser.cookie_name),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The access token of the browser holding `refresh_cookie`, and its `/me`.
pub(crate) async fn me_of(app: &TestApp, refresh_cookie: &str) -> (String, Value) {
    let access = access_token(app, refresh_cookie).await;
    let me = app.get_bearer("/me", &access).await.json().await.unwrap();
    (access, me)
}

pub(crate) fn error_of(location: &str) -> String {
    let (base, fragment) = location.split_once('#').expect("a fragment");
    assert_eq!(base, RETURN_TO, "errors go to return_to");
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(fragment).unwrap();
    pairs.into_iter().find(|(k, _)| k == "error").unwrap().1
}

/// A callback that must fail at return_to with `code`, and start no session.
pub(crate) async fn refused(app: &TestApp, res: reqwest::Response, code: &str) {
    let (location, refresh) = landed(&res, app);
    assert_eq!(error_of(&location), code);
    assert!(refresh.is_none(), "no session");
    assert!(app.events_of("login_succeeded").is_empty());
}

#[tokio::test]
async fn a_provider_sign_in_creates_a_passwordless_account_with_amr_fed_and_signs_in_again() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    idp.will_say(Claims {
        preferred_username: Some("ann".into()),
        ..claims("sub-ann", "ann@example.com", true)
    });
    let refresh = sign_in(&app).await;
    let access = access_token(&app, &refresh).await;
    let (_, payload) = crate::helpers::jwt_parts(&access);
    assert_eq!(
        payload["amr"],
        json!(["fed"]),
        "RFC 8176 amr, docs/contract.md"
    );
    let me: Value = app.get_bearer("/me", &access).await.json().await.unwrap();
    assert_eq!(me["username"], "ann");
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(me["email_verified"], true, "the provider verified it");
    let linked = app.events_of("identity_linked");
    assert_eq!(linked.len(), 1);
    assert!(linked[0]
        .1
        .as_deref()
        .unwrap()
        .contains("\"by\":\"signup\""));
    let login = app.events_of("login_succeeded");
    assert!(login[0].1.as_deref().unwrap().contains("\"idp\":\"corp\""));

    // No password opens the account.
    let res = app
        .post_json("/login", &json!({"username": "ann", "password": ""}))
        .await;
    assert!(res.status().is_client_error());

    // Again: the same account, no second identity.
    let again = sign_in(&app).await;
    let (access2, me2) = me_of(&app, &again).await;
    assert_eq!(me2["id"], me["id"]);
    let ids: Value = app
        .get_bearer("/me/identities", &access2)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids["identities"].as_array().unwrap().len(), 1);
    assert_eq!(ids["identities"][0]["provider"], "corp");
    assert_eq!(ids["identities"][0]["display_name"], "Corp");
    idp.stop().await;
}

#[tokio::test]
async fn a_verified_email_links_to_the_account_holding_it_an_unverified_one_never_does() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    idp.will_say(claims("sub-1", "bea@example.com", true));
    let first = sign_in(&app).await;
    let owner: Value = me_of(&app, &first).await.1;

    // Another subject, same address, unverified at the provider: a new account.
    idp.will_say(claims("sub-2", "bea@example.com", false));
    let second = sign_in(&app).await;
    let other: Value = me_of(&app, &second).await.1;
    assert_ne!(
        other["id"], owner["id"],
        "no auto-link on an unverified email"
    );

    // A third subject with the address verified: linked to its owner.
    idp.will_say(claims("sub-3", "BEA@example.com", true));
    let third = sign_in(&app).await;
    let (access, joined) = me_of(&app, &third).await;
    assert_eq!(joined["id"], owner["id"]);
    let linked = app.events_of("identity_linked");
    assert!(linked[2]
        .1
        .as_deref()
        .unwrap()
        .contains("\"by\":\"verified_email\""));

    // Two identities now: one may go, the last may not (409).
    let ids: Value = app
        .get_bearer("/me/identities", &access)
        .await
        .json()
        .await
        .unwrap();
    let ids = ids["identities"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2);
    let del = |id: &Value| format!("/me/identities/{}", id["id"].as_str().unwrap());
    let res = app.delete_bearer(&del(&ids[0]), &access, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.delete_bearer(&del(&ids[1]), &access, None).await;
    crate::helpers::assert_error(res, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(app.events_of("identity_unlinked").len(), 1);
    let res = app
        .delete_bearer("/me/identities/not-an-id", &access, None)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    idp.stop().await;
}

#[tokio::test]
async fn a_password_account_links_a_provider_explicitly_and_may_then_unlink_it() {
    let idp = FakeIdp::start("latchkey").await;
    let app = app_with(&idp).await;
    // A browser session of a password account.
    app.signup("carl", "correct horse battery").await;
    let refresh = browser_session(&app, "carl", "correct horse battery").await;
    let res = start_link(&app, &refresh, None).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let s = Started {
        provider_url: header(&res, "location"),
        state_cookie: set_cookie(&res, "__Host-lk_fed").unwrap(),
    };
    idp.will_say(claims("sub-carl", "someone@example.com", false));
    let back = provider_answer(&app, &s).await;
    let res = callback(&app, &back, Some(&s.state_cookie)).await;
    let (location, new_session) = landed(&res, &app);
    assert_eq!(location, RETURN_TO);
    assert!(new_session.is_none(), "a link starts no session");
    let linked = app.events_of("identity_linked");
    assert!(linked[0].1.as_deref().unwrap().contains("\"by\":\"user\""));

    // The provider now signs carl in; carl has a password, so unlinking is allowed.
    let (access, me) = me_of(&app, &sign_in(&app).await).await;
    assert_eq!(me["username"], "carl");
    let ids: Value = app
        .get_bearer("/me/identities", &access)
        .await
        .json()
        .await
        .unwrap();
    let id = ids["identities"][0]["id"].as_str().unwrap().to_owned();
    let res = app
        .delete_bearer(&format!("/me/identities/{id}"), &access, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // Linking without a session is reported at return_to.
    let res = start(
        &app,
        "corp",
        &format!(
            "client_id=default&link=true&return_to={}",
            urlencode(RETURN_TO)
        ),
    )
    .await;
    assert_eq!(error_of(&header(&res, "location")), "login_required");
    idp.stop().await;
}

#[tokio::test]
async fn a_passwordless_account_keeps_its_last_way_in_be_it_an_identity_or_a_passkey() {
    use crate::passkey_kit;
    let idp = FakeIdp::start("latchkey").await;
    let issuer = idp.issuer.clone();
    let app = spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![APP.into()];
        s.identity_providers = vec![provider("corp", &issuer)];
        s.passkeys.rp_id = Some("localhost".into());
        s.passkeys.origins = Some(vec![passkey_kit::ORIGIN.into()]);
    })
    .await;
    idp.will_say(claims("sub-pat", "pat@example.com", true));
    let refresh = sign_in(&app).await;
    let access = access_token(&app, &refresh).await;
    let mut key = passkey_kit::register(&app, &access).await;
    let body = passkey_kit::sign_in(&app, &mut key).await;
    let access = body["access_token"].as_str().unwrap().to_owned();

    // The passkey is a way in: the only identity may go.
    let ids: Value = app
        .get_bearer("/me/identities", &access)
        .await
        .json()
        .await
        .unwrap();
    let identity = ids["identities"][0]["id"].as_str().unwrap().to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/me/identities/{identity}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // Now the passkey is the last way in: it stays (no password, no identity).
    let res = app
        .client
        .delete(app.url(&format!("/me/passkeys/{}", key.id)))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(res, StatusCode::CONFLICT, "conflict").await;
    let left: Value = app
        .get_bearer("/me/passkeys", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(left.as_array().unwrap().len(), 1);
    idp.stop().await;
}

#[tokio::test]
async fn the_provider_list_is_public_and_names_only_ids_and_display_names() {
    let app = spawn_app_with(|s| {
        s.clients[0].allowed_origins = vec![APP.into()];
        let mut bare = provider("gitlab", "https://gitlab.example");
        bare.display_name = None;
        s.identity_providers = vec![provider("corp", "https://corp.example"), bare];
    })
    .await;
    // No token; a SPA on an allowed origin reads it cross-origin (CORS).
    let res = app
        .client
        .get(app.url("/identity-providers"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "access-control-allow-origin"), APP);
    assert_eq!(header(&res, "cache-control"), "public, max-age=300");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"identity_providers": [
            {"id": "corp", "display_name": "Corp"},
            {"id": "gitlab", "display_name": "gitlab"},
        ]}),
        "in configuration order; no issuer, client id or secret"
    );
    let none: Value = spawn_app()
        .await
        .get("/identity-providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!({"identity_providers": []}));
}
