//! Identity providers against a real OpenID provider: `oidc-provider` (npm,
//! OpenID-certified) with its development interactions, started by each test on
//! localhost (`tests/interop/oidc_provider.mjs`). The browser's part is played by hand:
//! redirects followed one by one, cookies kept per provider, the login and consent forms
//! submitted. The attacks are in `federation.rs`, against a provider that can lie.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::federation::{me_of, provider, set_cookie, start, urlencode, APP, RETURN_TO};
use crate::helpers::{spawn_app_with, TestApp};

/// latchkey's configured issuer: the provider redirects there (the test server's own
/// port is only known after it starts).
const CONFIGURED: &str = "http://127.0.0.1:8080";

pub(crate) struct Upstream {
    pub issuer: String,
    _child: tokio::process::Child,
    /// Kept open: the provider writes to stdout after its first line.
    _stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

async fn upstream() -> Upstream {
    upstream_redirecting_to(&format!("{CONFIGURED}/federate/oidc/callback"), 0).await
}

/// oidc-provider on `port` (0: any) with its one client `latchkey` (secret
/// `oidc-provider-test-secret`) allowed to redirect to `redirect_uri` only.
pub(crate) async fn upstream_redirecting_to(redirect_uri: &str, port: u16) -> Upstream {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/oidc_provider.mjs"
    );
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .arg(redirect_uri)
        .arg(port.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/test installs tests/interop)");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the provider's URL");
    let v: Value = serde_json::from_str(&line).unwrap();
    Upstream {
        issuer: v["issuer"].as_str().unwrap().to_owned(),
        _child: child,
        _stdout: lines,
    }
}

async fn app_for(up: &Upstream) -> TestApp {
    let issuer = up.issuer.clone();
    spawn_app_with(move |s| {
        s.clients[0].allowed_origins = vec![APP.into()];
        let mut p = provider("oidc", &issuer);
        p.client_secret = Some(latchkey::secret::Secret::new(
            "oidc-provider-test-secret".into(),
        ));
        s.identity_providers = vec![p];
    })
    .await
}

/// Signs in at latchkey through the provider as `account`; returns the refresh cookie.
async fn sign_in_as(app: &TestApp, account: &str) -> String {
    let res = start(
        app,
        "oidc",
        &format!("client_id=default&return_to={}", urlencode(RETURN_TO)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let state_cookie = set_cookie(&res, "__Host-lk_fed").unwrap();
    let mut url = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let mut jar: HashMap<String, String> = HashMap::new();
    let mut form: Option<Vec<(&str, String)>> = None;
    for _ in 0..20 {
        let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let req = match form.take() {
            Some(f) => app.client.post(url.clone()).form(&f),
            None => app.client.get(url.clone()),
        };
        let res = req
            .header("cookie", cookies.join("; "))
            .send()
            .await
            .unwrap();
        for c in res.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
        if res.status().is_redirection() {
            let next = url
                .join(res.headers()["location"].to_str().unwrap())
                .unwrap();
            if next.as_str().starts_with(CONFIGURED) {
                let back = format!("{}?{}", next.path(), next.query().unwrap());
                let res = app
                    .client
                    .get(app.url(&back))
                    .header("cookie", format!("__Host-lk_fed={state_cookie}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::FOUND);
                assert_eq!(res.headers()["location"], RETURN_TO, "signed in, no #error");
                return set_cookie(&res, &app.settings.browser.cookie_name).unwrap();
            }
            url = next;
            continue;
        }
        let status = res.status();
        let html = res.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{html}");
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a form");
        url = url.join(action).unwrap();
        form = Some(if html.contains("name=\"prompt\" value=\"login\"") {
            vec![
                ("prompt", "login".into()),
                ("login", account.into()),
                ("password", "any".into()),
            ]
        } else {
            vec![("prompt", "consent".into())]
        });
    }
    panic!("the provider never sent the browser back");
}

#[tokio::test]
#[ignore = "needs Node: scripts/test runs it"]
async fn oidc_provider_signs_a_user_up_and_in_again_through_its_login_and_consent_pages() {
    let up = upstream().await;
    let app = app_for(&up).await;
    let (_, first) = me_of(&app, &sign_in_as(&app, "ann").await).await;
    assert_eq!(first["username"], "ann");
    assert_eq!(first["email_verified"], true);
    let (access, again) = me_of(&app, &sign_in_as(&app, "ann").await).await;
    assert_eq!(again["id"], first["id"]);
    let ids: Value = app
        .get_bearer("/me/identities", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids["identities"].as_array().unwrap().len(), 1);
    assert_eq!(ids["identities"][0]["provider"], "oidc");
}

#[tokio::test]
#[ignore = "needs Node: scripts/test runs it"]
async fn oidc_provider_an_unverified_email_never_joins_the_account_that_verified_it() {
    let up = upstream().await;
    let app = app_for(&up).await;
    let (_, ann) = me_of(&app, &sign_in_as(&app, "ann").await).await;
    let (_, mallory) = me_of(&app, &sign_in_as(&app, "mallory").await).await;
    assert_ne!(mallory["id"], ann["id"]);
    assert_eq!(
        mallory["email"],
        Value::Null,
        "the address stays ann's alone"
    );
    let linked = app.events_of("identity_linked");
    assert!(linked
        .iter()
        .all(|(_, d)| d.as_deref().unwrap().contains("\"by\":\"signup\"")));
}
