//! Every event kind reaches a `["*"]` subscriber, each delivery verified by the
//! Standard Webhooks reference library (PyPI `standardwebhooks`,
//! tests/interop/webhook_receiver.py; npm `standardwebhooks`,
//! tests/interop/webhook_receiver.mjs for rotation and forgery). Every kind is triggered for real, through HTTP or
//! the CLI as an operator would; the email ones need the SMTP sink (aiosmtpd).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::domain::EventKind;
use latchkey::secret::Secret;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_idp::FakeIdp;
use crate::federation;
use crate::helpers::*;
use crate::mail_sink::SmtpSink;
use crate::passkey_kit;
use crate::webhook_receiver::{new_secret, subscribe, Receiver};

/// A reference-library receiver (Python or Node): one JSON line per request it verified
/// (or not).
struct RefReceiver {
    child: Child,
    url: String,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl RefReceiver {
    fn start(secrets: &[&str]) -> RefReceiver {
        Self::start_with("python3", "webhook_receiver.py", secrets)
    }

    fn start_node(secrets: &[&str]) -> RefReceiver {
        Self::start_with("node", "webhook_receiver.mjs", secrets)
    }

    fn start_with(program: &str, script: &str, secrets: &[&str]) -> RefReceiver {
        let script = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(program)
            .arg(script)
            .args(secrets)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} runs (scripts/test installs standardwebhooks): {e}")
            });
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut port = String::new();
        out.read_line(&mut port).unwrap();
        let port: u16 = port.trim().parse().expect("the receiver prints its port");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        RefReceiver {
            child,
            url: format!("http://127.0.0.1:{port}/hook"),
            lines,
        }
    }

    fn types(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|l| l["type"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for RefReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn cli_ok(app: &TestApp, args: &[&str]) -> String {
    app.catch_up_with_wall_clock();
    let out = app.cli(args, "").await;
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
#[ignore = "needs Python (standardwebhooks, aiosmtpd): scripts/test runs it"]
async fn every_event_kind_reaches_a_star_subscriber_and_verifies_with_the_reference_library() {
    let (secret, _) = new_secret();
    let (gone_secret, gone_key) = new_secret();
    let py = RefReceiver::start(&[&secret]);
    let gone = Receiver::start(vec![gone_key]).await;
    gone.status.store(410, Ordering::SeqCst);
    let sink = SmtpSink::start();
    let idp = FakeIdp::start("latchkey").await;
    let issuer = &idp.issuer;
    let app = spawn_app_with(|s| {
        subscribe(s, "all", &py.url, &[&secret], &["*"]);
        // Answers 410 to its first delivery: `webhook_disabled`.
        subscribe(s, "gone", &gone.url, &[&gone_secret], &["user_created"]);
        s.events.record_refreshes = true;
        s.login.max_failures_per_account_per_hour = 3;
        s.login.failures_before_delay = 1000;
        s.admin.require_mfa = false;
        s.mail.smtp_url = Some(Secret::new(sink.url()));
        s.mail.from = "Latchkey Test <no-reply@latchkey.test>".into();
        passkey_kit::passkey_settings(s);
        // identity_linked / identity_unlinked: a provider, returning to its SPA.
        s.identity_providers = vec![federation::provider("corp", issuer)];
        s.clients[0].allowed_origins.push(federation::APP.into());
    })
    .await;

    // passkey_added; a passkey login; passkey_clone_suspected (the stored counter ahead
    // of the authenticator's); passkey_removed (step-up met by the passkey login).
    let t = app.user_with_session("erin").await;
    let mut key = passkey_kit::register(&app, &t.access).await;
    let by_passkey = passkey_kit::sign_in(&app, &mut key).await;
    app.sql().exec("UPDATE passkeys SET counter = 1000", &[]);
    let c = passkey_kit::start_login(&app).await;
    let res = app
        .post_json(
            "/login/passkey/finish",
            &json!({"ceremony": c.ceremony, "credential": key.assert(passkey_kit::ORIGIN, c.options)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app
        .client
        .delete(app.url(&format!("/me/passkeys/{}", key.id)))
        .bearer_auth(by_passkey["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // user_created, login_succeeded, new_device_login (another browser family).
    let t = app.user_with_session("alice").await;
    app.login_with_agent(
        "alice",
        "Mozilla/5.0 (Macintosh) Version/17.0 Safari/605.1.15",
    )
    .await;
    // token_refreshed (events.record_refreshes), session_context_changed (another agent).
    let t = app.rotate(&t.refresh).await;
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0",
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // refresh_token_reuse_detected and session_revoked: the rotated token again, after
    // the reuse interval.
    app.advance(Duration::from_secs(11));
    let res = app.refresh(&t.refresh).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // email_changed, email_verified.
    let t = app.login("alice").await;
    let res = app
        .post_bearer(
            "/me/email",
            &t.access,
            &json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail = sink.nth(1).await;
    let res = app
        .post_json("/email/verify", &json!({"token": mail.token()}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // identity_linked (the provider's verified address is alice's), identity_unlinked
    // (she still has her password).
    idp.will_say(federation::claims("sub-alice", "alice@example.com", true));
    federation::sign_in(&app).await;
    let ids: Value = app
        .get_bearer("/me/identities", &t.access)
        .await
        .json()
        .await
        .unwrap();
    let identity = ids["identities"][0]["id"].as_str().unwrap().to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/me/identities/{identity}")))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    idp.stop().await;

    // mfa_enabled, mfa_failed, recovery_code_used, recovery_codes_regenerated,
    // mfa_disabled (the operator's reset).
    let enrolled = app.enrol_totp("alice", &t.access).await;
    let challenge: Value = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": challenge["mfa_token"], "code": "000000"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": challenge["mfa_token"],
                    "recovery_code": enrolled.recovery_codes[0]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = app.login("alice").await;
    let res = app
        .post_bearer(
            "/me/mfa/recovery-codes",
            &fresh.access,
            &json!({"code": app.next_code("alice")}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    cli_ok(&app, &["users", "reset-mfa", "alice"]).await;
    app.totp.lock().unwrap().remove("alice");

    // logout, password_changed.
    let t = app.login("alice").await;
    let other = app.login("alice").await;
    app.post_bearer("/logout", &other.access, &json!({})).await;
    let res = app
        .post_bearer(
            "/me/password",
            &t.access,
            &json!({"current_password": PASSWORD, "new_password": "another fine passphrase"}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());

    // password_reset_requested (the operator's link), password_reset.
    let out = cli_ok(&app, &["users", "reset-password", "alice"]).await;
    let token = out
        .split("#token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a reset link")
        .to_owned();
    let res = app
        .post_json(
            "/password/reset",
            &json!({"token": token, "new_password": "a third fine passphrase"}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());

    // login_failed three times, then login_throttled.
    app.signup("bob", PASSWORD).await;
    for _ in 0..4 {
        app.post_json(
            "/login",
            &json!({"username": "bob", "password": "wrong guess!"}),
        )
        .await;
    }

    // user_disabled, user_deleted (the operator's CLI).
    app.signup("dave", PASSWORD).await;
    app.signup("carol", PASSWORD).await;
    cli_ok(&app, &["users", "disable", "dave"]).await;
    cli_ok(&app, &["users", "delete", "carol"]).await;

    // webhook_disabled: the `gone` endpoint answered 410 to its first delivery.
    gone.wait_until("the 410", |g| !g.is_empty()).await;

    let wanted: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    for _ in 0..400 {
        let types = py.types();
        if wanted.iter().all(|w| types.iter().any(|t| t == w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let types = py.types();
    let missing: Vec<_> = wanted
        .iter()
        .filter(|w| !types.iter().any(|t| t == *w))
        .collect();
    assert!(missing.is_empty(), "kinds never delivered: {missing:?}");
    let lines = py.lines.lock().unwrap().clone();
    assert!(
        lines.iter().all(|l| l["verified_by"] == json!([true])),
        "every delivery verifies with the reference library: {lines:#?}"
    );
}

/// Rotation and forgery, checked by both reference libraries.
async fn rotation_and_forgery(start: fn(&[&str]) -> RefReceiver) {
    let ((old, _), (new, _), (stranger, _)) = (new_secret(), new_secret(), new_secret());
    let py = start(&[&old, &new, &stranger]);
    let app = spawn_app_with(|s| subscribe(s, "all", &py.url, &[&old, &new], &["*"])).await;
    app.signup("alice", PASSWORD).await;
    for _ in 0..200 {
        if !py.lines.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = py.lines.lock().unwrap()[0].clone();
    assert_eq!(line["type"], "user_created");
    assert_eq!(line["verified_by"], json!([true, true, false]));
    // A body changed on the way: the reference library refuses it (400).
    let res = reqwest::Client::new()
        .post(&py.url)
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", now_secs().to_string())
        .header(
            "webhook-signature",
            "v1,Zm9yZ2VkIHNpZ25hdHVyZSBvZiAzMiBieXRlcyEhISE=",
        )
        .body(r#"{"type":"user_deleted"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
#[ignore = "needs Python (standardwebhooks): scripts/test runs it"]
async fn the_python_reference_library_verifies_both_signatures_of_a_rotation_and_refuses_a_forgery()
{
    rotation_and_forgery(RefReceiver::start).await;
}

#[tokio::test]
#[ignore = "needs Node (npm standardwebhooks in tests/interop): scripts/test runs it"]
async fn the_node_reference_library_verifies_both_signatures_of_a_rotation_and_refuses_a_forgery() {
    rotation_and_forgery(RefReceiver::start_node).await;
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
