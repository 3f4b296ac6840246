//! A minimal OpenID provider for the attack tests: discovery, a JWKS with one ES256
//! key, an authorization endpoint that answers at once (no login page) and a token
//! endpoint that checks PKCE (RFC 7636 §4.6) and returns an ID token whose claims the
//! test chooses — including wrong ones (another audience or issuer, another nonce,
//! expired). The real provider (oidc-provider) is in `federation_oidc_provider.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// What the next ID token says. `None`: the right value.
#[derive(Clone, Default)]
pub struct Claims {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub preferred_username: Option<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub nonce: Option<String>,
    /// Seconds from now; default one hour.
    pub expires_in: Option<i64>,
}

struct Pending {
    nonce: String,
    challenge: String,
}

struct Inner {
    issuer: String,
    client_id: String,
    key_der: Vec<u8>,
    jwk: Value,
    next: Mutex<Claims>,
    codes: Mutex<HashMap<String, Pending>>,
}

pub struct FakeIdp {
    pub issuer: String,
    inner: Arc<Inner>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeIdp {
    pub async fn start(client_id: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "fake-1", "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let inner = Arc::new(Inner {
            issuer: issuer.clone(),
            client_id: client_id.into(),
            key_der: pkcs8.as_ref().to_vec(),
            jwk,
            next: Mutex::new(Claims::default()),
            codes: Mutex::new(HashMap::new()),
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery),
                )
                .route("/jwks", web::get().to(jwks))
                .route("/authorize", web::get().to(authorize))
                .route("/token", web::post().to(token))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            issuer,
            inner,
            handle,
        }
    }

    /// The claims of the ID tokens issued from now on.
    pub fn will_say(&self, claims: Claims) {
        *self.inner.next.lock().unwrap() = claims;
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn discovery(idp: web::Data<Inner>) -> HttpResponse {
    let i = &idp.issuer;
    HttpResponse::Ok().json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(idp: web::Data<Inner>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "keys": [idp.jwk] }))
}

/// Answers at once, as if the user had signed in and consented.
async fn authorize(idp: web::Data<Inner>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    let code = uuid::Uuid::new_v4().to_string();
    idp.codes.lock().unwrap().insert(
        code.clone(),
        Pending {
            nonce: q["nonce"].clone(),
            challenge: q["code_challenge"].clone(),
        },
    );
    let location = format!(
        "{}?code={code}&state={}",
        q["redirect_uri"],
        urlencode(&q["state"])
    );
    HttpResponse::Found()
        .insert_header(("Location", location))
        .finish()
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).unwrap()[2..].to_owned()
}

async fn token(idp: web::Data<Inner>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let Some(pending) = idp.codes.lock().unwrap().remove(&form["code"]) else {
        return HttpResponse::BadRequest().json(json!({ "error": "invalid_grant" }));
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    if URL_SAFE_NO_PAD.encode(digest.as_ref()) != pending.challenge {
        return HttpResponse::BadRequest().json(json!({ "error": "invalid_grant" }));
    }
    let c = idp.next.lock().unwrap().clone();
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": c.issuer.clone().unwrap_or_else(|| idp.issuer.clone()),
        "sub": c.subject,
        "aud": c.audience.clone().unwrap_or_else(|| idp.client_id.clone()),
        "iat": now,
        "exp": now + c.expires_in.unwrap_or(3600),
        "nonce": c.nonce.clone().unwrap_or(pending.nonce),
        "email_verified": c.email_verified,
    });
    if let Some(e) = &c.email {
        claims["email"] = e.as_str().into();
    }
    if let Some(u) = &c.preferred_username {
        claims["preferred_username"] = u.as_str().into();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("fake-1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_der(&idp.key_der);
    let id_token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    HttpResponse::Ok().json(json!({
        "access_token": "fake-access-token",
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token,
    }))
}
