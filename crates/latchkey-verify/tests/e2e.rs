//! The verifier against a real latchkey started in this process: discovery, strict
//! verification, and revocations reaching the verifier through the stream and through
//! polling, across a latchkey restart.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use latchkey::config::{HumanDuration, ResourceServerSettings, Settings};
use latchkey::secret::Secret;
use latchkey::Application;
use latchkey_verify::{FeedMode, Verifier, VerifyError};
use serde_json::{json, Value};

const RS_ID: &str = "orders-api";
const RS_SECRET: &str = "orders-api-secret-0123456789";
const PASSWORD: &str = "correct horse battery staple";

struct Latchkey {
    base: String,
    stop: latchkey::startup::StopHandle,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(dir: &Path, port: u16) -> Latchkey {
    start_with(dir, port, |_| {}).await
}

async fn start_with(dir: &Path, port: u16, configure: impl FnOnce(&mut Settings)) -> Latchkey {
    let mut s = Settings {
        issuer: format!("http://127.0.0.1:{port}"),
        ..Settings::default()
    };
    s.server.bind = format!("127.0.0.1:{port}");
    s.server.workers = 1;
    s.store.path = Some(dir.join("latchkey.db"));
    s.store.readers = 1;
    s.keys.dir = dir.join("keys");
    s.revocations.max_age = HumanDuration(Duration::from_secs(1));
    // Tokens for latchkey's own routes (the issuer: `/logout`) and for the resource
    // server ("latchkey", the audience its verifier expects).
    s.clients[0].audience = Some(latchkey::config::AudienceSetting::Many(vec![
        s.issuer.clone(),
        "latchkey".into(),
    ]));
    s.resource_servers.push(ResourceServerSettings {
        id: RS_ID.into(),
        secret: Secret::new(RS_SECRET.into()),
        audiences: vec!["latchkey".into()],
    });
    configure(&mut s);
    let app = Application::build(s).await.expect("latchkey starts");
    let stop = app.stop_handle();
    tokio::spawn(app.run_until_stopped());
    Latchkey {
        base: format!("http://127.0.0.1:{port}"),
        stop,
        http: reqwest::Client::new(),
    }
}

impl Latchkey {
    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Signs `name` up and logs in: (access token, refresh token, session id).
    async fn session(&self, name: &str) -> (String, String, String) {
        let _ = self
            .post(
                "/signup",
                None,
                json!({"username": name, "password": PASSWORD}),
            )
            .await;
        let res = self
            .post(
                "/login",
                None,
                json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert!(res.status().is_success());
        let body: Value = res.json().await.unwrap();
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
            body["session_id"].as_str().unwrap().to_owned(),
        )
    }

    fn verifier(&self) -> latchkey_verify::VerifierBuilder {
        Verifier::builder(self.base.clone())
            .audience("latchkey")
            .resource_server(RS_ID, RS_SECRET)
    }
}

/// Polls `verify` until it answers `Revoked`; returns how long that took.
async fn until_revoked(v: &Verifier, token: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match v.verify(token).await {
            Err(VerifyError::Revoked) => return started.elapsed(),
            Ok(_) if started.elapsed() < within => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("after {:?}: {other:?}", started.elapsed()),
        }
    }
}

#[tokio::test]
async fn verifies_latchkey_tokens_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let lk = start(dir.path(), free_port()).await;
    let (access, _, sid) = lk.session("alice").await;
    let v = lk.verifier().build().await.unwrap();
    let claims = v.verify(&access).await.unwrap();
    assert_eq!(claims.sid, sid);
    assert!(claims.aud.contains("latchkey"));

    let other_aud = lk
        .verifier()
        .audience("https://somewhere-else")
        .build()
        .await
        .unwrap();
    assert!(
        other_aud.verify(&access).await.is_ok(),
        "any accepted audience"
    );
    let wrong_aud = Verifier::builder(lk.base.clone())
        .audience("https://somewhere-else")
        .build()
        .await
        .unwrap();
    assert_eq!(wrong_aud.verify(&access).await, Err(VerifyError::Invalid));

    // A flipped signature byte, a made-up kid, junk: refused, never a panic.
    let mut forged = access.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(v.verify(&forged).await, Err(VerifyError::Invalid));
    for junk in ["", "a.b.c", &"x".repeat(5000)] {
        assert!(v.verify(junk).await.is_err());
    }
    // Wrong issuer: discovery refuses metadata whose issuer differs.
    let err = Verifier::builder(format!("{}/", lk.base))
        .audience("latchkey")
        .metadata_url(format!(
            "{}/.well-known/oauth-authorization-server",
            lk.base
        ))
        .build()
        .await;
    assert!(err.is_err());
}

#[tokio::test]
async fn a_logout_reaches_the_verifier_within_a_second_through_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let lk = start(dir.path(), free_port()).await;
    let v = lk.verifier().build().await.unwrap();
    let (access, _, _) = lk.session("alice").await;
    assert!(v.verify(&access).await.is_ok());
    // Let the stream connect before revoking.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = lk.post("/logout", Some(&access), json!({})).await;
    assert_eq!(res.status(), 204);
    let took = until_revoked(&v, &access, Duration::from_secs(1)).await;
    eprintln!("logout seen by the verifier after {took:?}");

    // Reuse detection, the same way.
    let (access2, refresh2, _) = lk.session("bob").await;
    let rotated = lk
        .http
        .post(format!("{}/oauth/token", lk.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
        ])
        .send()
        .await
        .unwrap();
    assert!(rotated.status().is_success());
    assert!(v.verify(&access2).await.is_ok());
    // The parent again, after the reuse interval (10 s by default) would be reuse; the
    // RFC 7009 revoke of the rotated family is the quicker path to the same revocation.
    lk.http
        .post(format!("{}/oauth/revoke", lk.base))
        .form(&[("token", &refresh2)])
        .send()
        .await
        .unwrap();
    until_revoked(&v, &access2, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn polling_sees_a_logout_within_max_age_plus_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let lk = start(dir.path(), free_port()).await;
    let v = lk
        .verifier()
        .feed(FeedMode::Poll(Duration::from_millis(500)))
        .build()
        .await
        .unwrap();
    let (access, _, _) = lk.session("alice").await;
    assert!(v.verify(&access).await.is_ok());
    lk.post("/logout", Some(&access), json!({})).await;
    // max_age 1 s (this latchkey) + 0.5 s interval, plus the server's own second.
    until_revoked(&v, &access, Duration::from_millis(2500)).await;
}

#[tokio::test]
async fn after_a_latchkey_restart_the_verifier_reconnects_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let lk = start(dir.path(), port).await;
    let v = lk.verifier().build().await.unwrap();
    let (a, _, _) = lk.session("alice").await;
    let (b, _, _) = lk.session("bob").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lk.post("/logout", Some(&a), json!({})).await;
    until_revoked(&v, &a, Duration::from_secs(1)).await;

    lk.stop.stop().await;
    // Revoked while latchkey is down (as `latchkey sessions revoke` would, on the
    // database): nobody serves the feed now.
    let store = latchkey::store::Store::open(&dir.path().join("latchkey.db"), 1).unwrap();
    let sid_b = latchkey::domain::SessionId::parse(&v.verify(&b).await.unwrap().sid)
        .expect("latchkey issues session ids the store's type accepts");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    store
        .write(async move |tx| {
            tx.revoke_session(&sid_b, now, latchkey::domain::RevocationReason::Admin)
                .await
        })
        .await
        .unwrap();
    assert!(v.verify(&b).await.is_ok(), "nothing told the verifier yet");

    let _lk = start(dir.path(), port).await;
    until_revoked(&v, &b, Duration::from_secs(8)).await;
    assert_eq!(v.verify(&a).await, Err(VerifyError::Revoked));
}

#[tokio::test]
async fn a_stale_feed_refuses_or_accepts_per_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let lk = start(dir.path(), free_port()).await;
    let (access, _, _) = lk.session("alice").await;
    let refusing = lk
        .verifier()
        .max_staleness(Duration::from_millis(200))
        .feed(FeedMode::Poll(Duration::from_secs(3600)))
        .build()
        .await
        .unwrap();
    let accepting = lk
        .verifier()
        .max_staleness(Duration::from_millis(200))
        .on_stale(latchkey_verify::OnStale::Accept)
        .feed(FeedMode::Poll(Duration::from_secs(3600)))
        .build()
        .await
        .unwrap();
    assert!(refusing.verify(&access).await.is_ok());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(refusing.verify(&access).await, Err(VerifyError::FeedStale));
    assert!(accepting.verify(&access).await.is_ok());
}

/// Issue 26 item 14: revoked sessions leave the verifier's set once no token of theirs
/// can be accepted (revocation + horizon + leeway), on a timer: in stream mode while the
/// stream stays open, and in poll mode while every poll answers 304. Before, the set was
/// only pruned after a document that changed, so it grew for as long as it ran.
#[tokio::test]
async fn revoked_sessions_leave_the_set_at_the_horizon_while_the_feed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let lk = start_with(dir.path(), free_port(), |s| {
        // A one-second horizon: the access-token lifetime plus no leeway.
        s.access_token.ttl = HumanDuration(Duration::from_secs(1));
        s.access_token.leeway = HumanDuration(Duration::ZERO);
        s.revocations.heartbeat = HumanDuration(Duration::from_millis(200));
    })
    .await;
    // A second of the verifier's own leeway: it holds an entry a second longer than the
    // document lists it, so in poll mode the last change it sees is the entry leaving.
    let stream = lk
        .verifier()
        .leeway(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let poll = lk
        .verifier()
        .leeway(Duration::from_secs(1))
        .feed(FeedMode::Poll(Duration::from_millis(200)))
        .build()
        .await
        .unwrap();
    let (_, refresh, sid) = lk.session("alice").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Revoked with the refresh token (RFC 7009): the one-second access token may already
    // have expired on a loaded machine, and `/logout` would refuse it.
    let revoked = lk
        .http
        .post(format!("{}/oauth/revoke", lk.base))
        .form(&[("token", &refresh)])
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let started = Instant::now();
    // Each must learn of it; on a loaded machine one may already have pruned it by the
    // time the other learns, so they are watched apart.
    let (mut stream_learned, mut poll_learned) = (false, false);
    while !(stream_learned && poll_learned) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "never learned: stream {stream_learned}, poll {poll_learned}"
        );
        stream_learned |= stream.is_revoked(&sid);
        poll_learned |= poll.is_revoked(&sid);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while stream.revoked_sessions() + poll.revoked_sessions() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "still held after {:?}: stream {}, poll {}",
            started.elapsed(),
            stream.revoked_sessions(),
            poll.revoked_sessions()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The feeds were running all along (heartbeats, 304s): nothing was stale.
    assert!(stream.feed_staleness() < Duration::from_secs(1));
    assert!(poll.feed_staleness() < Duration::from_secs(1));
}

/// BENCHMARKS.md "Revocation feed": verifications per second on one core through the
/// crate (signature, claims, feed lookup), per algorithm.
/// `cargo test --release -p latchkey-verify --test e2e measure -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn measure_verifications_per_second() {
    use latchkey::domain::Algorithm;
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        let dir = tempfile::tempdir().unwrap();
        let lk = start_with(dir.path(), free_port(), |s| s.keys.algorithm = alg).await;
        let (access, _, _) = lk.session("alice").await;
        let v = lk.verifier().build().await.unwrap();
        v.verify(&access).await.unwrap();
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            v.verify(&access).await.unwrap();
        }
        let took = t.elapsed();
        println!(
            "{alg:?}: {:.0} verifications/s on one core ({:?} each)",
            n as f64 / took.as_secs_f64(),
            took / n
        );
    }
}

/// The actix-web extractor: 401 with the RFC 6750 challenge, or the claims.
#[cfg(feature = "actix")]
#[actix_web::test]
async fn the_actix_extractor_answers_401_with_a_bearer_challenge() {
    use actix_web::{test, web, App, HttpResponse};
    use latchkey_verify::Claims;

    let dir = tempfile::tempdir().unwrap();
    let lk = start(dir.path(), free_port()).await;
    let v = lk.verifier().build().await.unwrap();
    let (access, _, sid) = lk.session("alice").await;
    let app = test::init_service(App::new().app_data(web::Data::new(v.clone())).route(
        "/orders",
        web::get().to(|c: Claims| async move { HttpResponse::Ok().body(c.sid) }),
    ))
    .await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/orders").to_request()).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers().get("www-authenticate").unwrap(), "Bearer");

    let req = |token: &str| {
        test::TestRequest::get()
            .uri("/orders")
            .insert_header(("authorization", format!("Bearer {token}")))
            .to_request()
    };
    let res = test::call_service(&app, req(&access)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, sid.as_bytes());

    lk.post("/logout", Some(&access), json!({})).await;
    until_revoked(&v, &access, Duration::from_secs(2)).await;
    let res = test::call_service(&app, req(&access)).await;
    assert_eq!(res.status(), 401);
    let challenge = res
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
}
