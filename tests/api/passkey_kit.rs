//! A software passkey for the passkey tests: webauthn-authenticator-rs's soft passkey,
//! driven as its backend (`AuthenticatorBackend`), so a test can also answer as a
//! dishonest client would (another origin, another RP ID).
//!
//! The soft passkey 0.5 keeps no resident keys: it refuses `requireResidentKey` and
//! finds its key only through `allowCredentials`, and it returns no user handle. The
//! shim below does what a resident-key authenticator does instead (docs/passkeys-design.md
//! "Decisions"): it clears `requireResidentKey` after checking the server asked for it,
//! names the credential it registered when the server named none (a discoverable
//! login), and adds the user handle, which is not signed (WebAuthn Level 3 §6.3.3), so
//! the server cannot tell the difference.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use url::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::AuthenticatorBackend;
use webauthn_rs::prelude::Uuid;
use webauthn_rs_proto::{PublicKeyCredentialCreationOptions, PublicKeyCredentialRequestOptions};

use crate::helpers::{jwt_parts, spawn_app_with, TestApp};

pub const ORIGIN: &str = "http://localhost:5173";
const TIMEOUT_MS: u32 = 60_000;

/// An app with passkeys on: RP ID `localhost`, the SPA's origin, which is also the
/// default client's allowed origin (browser mode).
pub async fn passkey_app() -> TestApp {
    spawn_app_with(passkey_settings).await
}

pub fn passkey_settings(s: &mut latchkey::config::Settings) {
    s.passkeys.rp_id = Some("localhost".into());
    s.passkeys.origins = Some(vec![ORIGIN.into()]);
    s.clients[0].allowed_origins = vec![ORIGIN.into()];
}

/// A soft passkey that reports user verification (as a platform authenticator with a
/// PIN or biometric would).
pub fn soft_passkey() -> SoftPasskey {
    SoftPasskey::new(true)
}

/// The authenticator's answer to creation `options`, made at `origin`.
pub fn create(
    key: &mut SoftPasskey,
    origin: &str,
    mut options: PublicKeyCredentialCreationOptions,
) -> Value {
    let selection = options.authenticator_selection.as_mut().unwrap();
    assert!(
        selection.require_resident_key,
        "a discoverable credential is asked for"
    );
    selection.require_resident_key = false;
    let answer = key
        .perform_register(Url::parse(origin).unwrap(), options, TIMEOUT_MS)
        .expect("the soft passkey registers");
    serde_json::to_value(answer).unwrap()
}

/// A passkey registered to a signed-in user.
pub struct Registered {
    pub key: SoftPasskey,
    /// The credential id, base64url.
    pub credential_id: String,
    pub user_id: String,
    /// latchkey's id of the passkey (`/me/passkeys/{id}`).
    pub id: String,
}

/// Registers a new soft passkey to the user whose access token is `access`.
pub async fn register(app: &TestApp, access: &str) -> Registered {
    let res = app
        .post_bearer("/me/passkeys/register/start", access, &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let options = serde_json::from_value(body["options"].clone()).unwrap();
    let mut key = soft_passkey();
    let answer = create(&mut key, ORIGIN, options);
    let credential_id = answer["id"].as_str().unwrap().to_owned();
    let res = app
        .post_bearer(
            "/me/passkeys/register/finish",
            access,
            &json!({"ceremony": body["ceremony"], "credential": answer}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let added: Value = res.json().await.unwrap();
    Registered {
        key,
        credential_id,
        user_id: jwt_parts(access).1["sub"].as_str().unwrap().to_owned(),
        id: added["id"].as_str().unwrap().to_owned(),
    }
}

/// What a ceremony start answered: the ceremony token and the request options.
pub struct Challenge {
    pub ceremony: String,
    pub options: PublicKeyCredentialRequestOptions,
}

pub async fn challenge_of(res: reqwest::Response) -> Challenge {
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    Challenge {
        ceremony: body["ceremony"].as_str().unwrap().to_owned(),
        options: serde_json::from_value(body["options"].clone()).expect("request options"),
    }
}

/// `POST /login/passkey/start` in JSON mode, with no body (nothing is required).
pub async fn start_login(app: &TestApp) -> Challenge {
    challenge_of(
        app.client
            .post(app.url("/login/passkey/start"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A passwordless login with `key` (JSON mode): its token response.
pub async fn sign_in(app: &TestApp, key: &mut Registered) -> Value {
    let c = start_login(app).await;
    let res = app
        .post_json(
            "/login/passkey/finish",
            &json!({"ceremony": c.ceremony, "credential": key.assert(ORIGIN, c.options)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

impl Registered {
    /// The assertion answering `options` at `origin`, as a resident-key authenticator
    /// makes it (see the module comment).
    pub fn assert(&mut self, origin: &str, options: PublicKeyCredentialRequestOptions) -> Value {
        self.assert_for(origin, options, None)
    }

    /// [`assert`](Self::assert), signed for `rp_id` instead of the RP ID the options
    /// name: what a phishing site's relying party would get.
    pub fn assert_for(
        &mut self,
        origin: &str,
        mut options: PublicKeyCredentialRequestOptions,
        rp_id: Option<&str>,
    ) -> Value {
        if options.allow_credentials.is_empty() {
            options.allow_credentials = vec![serde_json::from_value(
                json!({"type": "public-key", "id": self.credential_id}),
            )
            .unwrap()];
        }
        if let Some(rp_id) = rp_id {
            options.rp_id = rp_id.to_owned();
        }
        let answer = self
            .key
            .perform_auth(Url::parse(origin).unwrap(), options, TIMEOUT_MS)
            .expect("the soft passkey signs");
        let mut answer = serde_json::to_value(answer).unwrap();
        let handle = Uuid::parse_str(&self.user_id).unwrap();
        answer["response"]["userHandle"] = json!(URL_SAFE_NO_PAD.encode(handle.as_bytes()));
        answer
    }
}
