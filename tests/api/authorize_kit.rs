//! A native app played over HTTP (RFC 8252): PKCE, `/oauth/authorize`, latchkey's
//! sign-in page (its CSRF cookie and form token), the code at the loopback redirect,
//! and the token request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};

use crate::helpers::{spawn_app_with, TestApp, PASSWORD};

pub const CLIENT: &str = "native";
/// Registered without a port: RFC 8252 §7.3, any port matches.
pub const REGISTERED: &str = "http://127.0.0.1/callback";
/// The app's listener of the moment.
pub const REDIRECT: &str = "http://127.0.0.1:49152/callback";
pub const PRIVATE_USE: &str = "com.example.app:/oauth2redirect";

pub async fn native_app() -> TestApp {
    native_app_with(|_| {}).await
}

pub async fn native_app_with(configure: impl FnOnce(&mut latchkey::config::Settings)) -> TestApp {
    spawn_app_with(move |s| {
        let mut native = latchkey::config::ClientSettings::named(CLIENT);
        native.redirect_uris = vec![REGISTERED.into(), PRIVATE_USE.into()];
        s.clients.push(native);
        let mut other = latchkey::config::ClientSettings::named("other-app");
        other.redirect_uris = vec![REGISTERED.into()];
        s.clients.push(other);
        configure(s);
    })
    .await
}

/// A PKCE pair (RFC 7636 §4.1-4.2, S256).
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let mut raw = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).unwrap();
        let verifier = URL_SAFE_NO_PAD.encode(raw);
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        Self {
            challenge: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            verifier,
        }
    }
}

/// The authorization request's query for `client` and `redirect_uri`.
pub fn request(client: &str, redirect_uri: &str, pkce: &Pkce) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect_uri),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "af0ifjsldkj"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

pub fn with(mut q: Vec<(String, String)>, key: &str, value: Option<&str>) -> Vec<(String, String)> {
    q.retain(|(k, _)| k != key);
    if let Some(v) = value {
        q.push((key.to_owned(), v.to_owned()));
    }
    q
}

pub async fn authorize(app: &TestApp, query: &[(String, String)]) -> Response {
    app.client
        .get(app.url("/oauth/authorize"))
        .query(query)
        .send()
        .await
        .unwrap()
}

/// The sign-in page as the browser holds it: its hidden fields and the CSRF cookie.
pub struct Page {
    pub html: String,
    pub fields: Vec<(String, String)>,
    pub cookie: String,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    Some(&tag[start..start + tag[start..].find('"')?])
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Page {
    pub async fn read(res: Response) -> Self {
        let cookie = res
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("__Host-lk_csrf="))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .unwrap_or_default();
        let html = res.text().await.unwrap();
        // The first form's hidden fields (the sign-in form).
        let form = html.split("</form>").next().unwrap_or_default();
        let fields = form
            .split("<input type=\"hidden\"")
            .skip(1)
            .filter_map(|tag| {
                let tag = tag.split('>').next()?;
                Some((attr(tag, "name")?.to_owned(), unescape(attr(tag, "value")?)))
            })
            .collect();
        Self {
            html,
            fields,
            cookie,
        }
    }

    /// Posts the page's form with `extra` fields, as the browser would (the cookie too).
    pub async fn submit(&self, app: &TestApp, extra: &[(&str, &str)]) -> Response {
        let mut form = self.fields.clone();
        form.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        app.client
            .post(app.url("/oauth/authorize"))
            .header(COOKIE, &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

/// The query parameters of a redirect's Location.
pub fn location_query(res: &Response) -> (String, Vec<(String, String)>) {
    let location = res
        .headers()
        .get(LOCATION)
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned();
    let url = url::Url::parse(&location).unwrap();
    let pairs = url.query_pairs().into_owned().collect();
    (location, pairs)
}

pub fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The whole sign-in for `username` (password only): the code at `redirect_uri`.
pub async fn code_for(
    app: &TestApp,
    username: &str,
    client: &str,
    redirect_uri: &str,
    pkce: &Pkce,
) -> String {
    let page = Page::read(authorize(app, &request(client, redirect_uri, pkce)).await).await;
    let res = page
        .submit(app, &[("username", username), ("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), StatusCode::FOUND, "signed in");
    let (location, pairs) = location_query(&res);
    assert!(location.starts_with(redirect_uri), "{location}");
    param(&pairs, "code").expect("a code").to_owned()
}

pub async fn exchange(
    app: &TestApp,
    code: &str,
    client: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Response {
    app.post_form(
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("client_id", client),
        ],
    )
    .await
}
