//! A webhook receiver for the tests: a local actix server that checks every delivery's
//! Standard Webhooks v1 signature with ring against the keys it is given, and answers a
//! status the test sets (0: hang, then 204).

use std::sync::atomic::AtomicU16;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use latchkey::config::{HumanDuration, Settings, WebhookEndpoint, WebhookSecrets};
use latchkey::secret::Secret;
use ring::hmac;
use serde_json::Value;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    /// For each of the receiver's keys: whether one of the `v1,` signatures is its HMAC.
    pub verified_by: Vec<bool>,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A webhook receiver on a random local port answering `status` (settable).
pub struct Receiver {
    pub url: String,
    pub status: Arc<AtomicU16>,
    pub got: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

/// `whsec_` + base64 of 32 random bytes, and the bytes.
pub fn new_secret() -> (String, Vec<u8>) {
    let key: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
    (format!("whsec_{b64}"), key)
}

/// Standard Webhooks "Verifying webhook authenticity": HMAC-SHA256 of
/// `id.timestamp.body`, compared in constant time (ring) with each `v1,` signature.
pub fn verifies(key: &[u8], id: &str, ts: &str, body: &[u8], header: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
    header.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|tag| hmac::verify(&key, &signed, &tag).is_ok())
    })
}

impl Receiver {
    pub async fn start(keys: Vec<Vec<u8>>) -> Receiver {
        let status = Arc::new(AtomicU16::new(204));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (status.clone(), got.clone());
        let server = HttpServer::new(move || {
            let (s, g, keys) = (s.clone(), g.clone(), keys.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (s, g, keys) = (s.clone(), g.clone(), keys.clone());
                async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let (id, ts, sig) = (
                        h("webhook-id"),
                        h("webhook-timestamp"),
                        h("webhook-signature"),
                    );
                    let verified_by = keys
                        .iter()
                        .map(|k| verifies(k, &id, &ts, &body, &sig))
                        .collect();
                    g.lock().unwrap().push(Received {
                        id,
                        timestamp: ts,
                        signature: sig,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        verified_by,
                        at: std::time::Instant::now(),
                    });
                    let mut code = s.load(Ordering::SeqCst);
                    if code == 0 {
                        // Hang past any timeout, then answer (as a stuck receiver would).
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        code = 204;
                    }
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                        .finish()
                }
            }))
        })
        .workers(2)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            status,
            got,
            handle,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until `pred` holds for what arrived.
    pub async fn wait_until(
        &self,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        for _ in 0..400 {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: the receiver has {:#?}", self.received());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let h = self.handle.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

/// An endpoint `id` to `url` with `secrets`, for `events`, and short retries.
pub fn subscribe(s: &mut Settings, id: &str, url: &str, secrets: &[&str], events: &[&str]) {
    s.webhooks.endpoints.push(WebhookEndpoint {
        id: id.into(),
        url: url.into(),
        secret: if secrets.len() == 1 {
            WebhookSecrets::One(Secret::new(secrets[0].into()))
        } else {
            WebhookSecrets::Many(secrets.iter().map(|x| Secret::new(x.to_string())).collect())
        },
        events: events.iter().map(|e| e.to_string()).collect(),
        timeout: None,
        max_age: None,
    });
    s.webhooks.retry_backoff = HumanDuration(Duration::from_millis(50));
    s.webhooks.timeout = HumanDuration(Duration::from_secs(2));
}
