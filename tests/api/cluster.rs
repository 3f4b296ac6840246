//! Scale-out (docs/contract.md "Scale-out on PostgreSQL"): three instances on one
//! PostgreSQL database behind a real load balancer (Debian's HAProxy, round-robin),
//! and every rule of the contract across them. The instances are in-process servers
//! with one manual clock (the model test moves time), or real processes where a test
//! kills one. These tests need PostgreSQL and HAProxy: `scripts/test` installs both and
//! starts a throwaway cluster; they run in its SQLite pass (in the PostgreSQL pass the
//! rest of the suite is the one that changes backend).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey::clock::ManualClock;
use latchkey::config::{HumanDuration, Settings};
use latchkey::secret::Secret;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::{self, TestDb};
use crate::helpers::free_port;
use crate::helpers::{spawn_instance, test_settings, Served, TestApp, PASSWORD};

/// Whether this run should run the cluster tests (see the module comment).
fn cluster_run() -> bool {
    if db::postgres_run() {
        return false;
    }
    assert!(
        db::cluster_url().is_some(),
        "the cluster tests need TEST_POSTGRES_URL (a throwaway cluster): run scripts/test"
    );
    true
}

/// HAProxy, round-robin over `backends`, health-checking `/readyz`, in the foreground.
pub struct Balancer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    pub fn start(backends: &[u16]) -> Self {
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server n{i} 127.0.0.1:{p} check\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    \
             timeout server 30s\n    retries 3\n    option redispatch\n\
             frontend latchkey\n    bind 127.0.0.1:{port}\n    default_backend instances\n\
             backend instances\n    balance roundrobin\n    option httpchk GET /readyz\n    \
             default-server inter 200ms fall 2 rise 1\n{servers}"
        );
        Self::run(&config, port)
    }

    /// HAProxy in the foreground with `config`, which binds `port`; waits until it listens.
    pub fn run(config: &str, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (Debian's haproxy package; scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings for one cluster: a fresh database on the run's throwaway cluster and a
/// key-encryption key shared by every instance.
fn cluster_settings(dir: &Path) -> Settings {
    let mut s = test_settings(dir);
    s.store.path = None;
    s.store.url = Some(Secret::new(db::fresh_database()));
    s.store.max_connections = 8;
    s.keys.kek_file = Some(db::write_kek(dir));
    s
}

struct Cluster {
    nodes: Vec<TestApp>,
    /// The cluster as its clients see it: the balancer's address; `state` and
    /// `settings` are the first instance's.
    lb: TestApp,
    _balancer: Balancer,
}

async fn cluster(configure: impl Fn(&mut Settings)) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    configure(&mut settings);
    settings.validate().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let mut nodes = vec![spawn_instance(settings.clone(), clock.clone(), dir).await];
    for _ in 0..2 {
        let other = tempfile::tempdir().unwrap();
        nodes.push(spawn_instance(settings.clone(), clock.clone(), other).await);
    }
    let ports: Vec<u16> = nodes
        .iter()
        .map(|n| n.base.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let balancer = Balancer::start(&ports);
    let lb = TestApp {
        base: balancer.url(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        clock,
        settings: nodes[0].settings.clone(),
        state: nodes[0].state.clone(),
        metrics_port: None,
        totp: Default::default(),
        _dir: tempfile::tempdir().unwrap(),
    };
    // Every instance healthy in HAProxy's eyes before the test starts.
    for _ in 0..100 {
        if lb.get("/readyz").await.status() == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Cluster {
        nodes,
        lb,
        _balancer: balancer,
    }
}

#[test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
fn schema_migrations_run_once_when_ten_instances_start_together() {
    if !cluster_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = cluster_settings(dir.path());
    let opened: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| s.spawn(|| latchkey::store::Store::from_settings(&settings.store, 1, None)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let db = TestDb::Postgres(settings.store.postgres_url().unwrap().to_owned());
    assert_eq!(db.count("SELECT count(*) FROM latchkey_schema", &[]), 1);
    assert_eq!(
        db.count("SELECT version FROM latchkey_schema", &[]),
        latchkey::store::postgres::schema::latest()
    );
}

#[test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
fn three_instances_behind_haproxy_behave_like_the_model() {
    if !cluster_run() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(cluster(|s| {
        s.access_token.ttl = HumanDuration::secs(30 * 86_400);
    }));
    let cases = std::env::var("MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    crate::model::check_against_the_model(&rt, &c.lb, cases);
    drop(c);
}

#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn fifty_concurrent_refreshes_of_one_head_on_three_instances_make_one_child() {
    if !cluster_run() {
        return;
    }
    let c = cluster(|_| {}).await;
    let t0 = c.lb.user_with_session("alice").await;
    let answers = futures_util::future::join_all((0..50).map(|i| {
        let node = &c.nodes[i % 3];
        let token = t0.refresh.clone();
        async move {
            let res = node.refresh(&token).await;
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let mut children = HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        children.insert(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(children.len(), 1, "one child, whichever instance answered");
    let db = c.lb.sql();
    assert_eq!(
        db.count("SELECT head_generation FROM sessions", &[]),
        1,
        "no fork"
    );
    assert!(c.lb.events_of("refresh_token_reuse_detected").is_empty());
    // The child rotates on any instance.
    let child = children.into_iter().next().unwrap();
    c.nodes[2].rotate(&child).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn reuse_detected_on_one_instance_revokes_the_family_on_every_instance() {
    if !cluster_run() {
        return;
    }
    let c = cluster(|_| {}).await;
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let t0 = a.user_with_session("alice").await;
    let t1 = b.rotate(&t0.refresh).await;
    let t2 = cc.rotate(&t1.refresh).await;
    c.lb.advance(Duration::from_secs(11));
    // t0 is a grandparent: a thief's replay, seen by A.
    let res = a.refresh(&t0.refresh).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    for node in [b, cc] {
        let res = node.refresh(&t2.refresh).await;
        assert_eq!(
            res.status(),
            StatusCode::BAD_REQUEST,
            "the family is revoked"
        );
        assert_eq!(node.introspect(&t2.access).await["active"], false);
    }
    assert_eq!(c.lb.events_of("refresh_token_reuse_detected").len(), 1);
}

#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn a_revocation_on_one_instance_is_inactive_in_introspection_on_another_at_once() {
    if !cluster_run() {
        return;
    }
    let c = cluster(|_| {}).await;
    let t = c.nodes[0].user_with_session("alice").await;
    for node in &c.nodes {
        assert_eq!(node.introspect(&t.access).await["active"], true);
    }
    let res = c.nodes[1]
        .post_bearer("/logout", &t.access, &json!({}))
        .await;
    assert!(res.status().is_success());
    // No waiting: the very next introspection on the others already sees it.
    for node in [&c.nodes[2], &c.nodes[0]] {
        assert_eq!(node.introspect(&t.access).await["active"], false);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn the_revocation_stream_of_one_instance_carries_revocations_made_on_another_within_a_second()
{
    if !cluster_run() {
        return;
    }
    let c = cluster(|_| {}).await;
    let t = c.nodes[0].user_with_session("alice").await;
    let u = c.nodes[0].user_with_session("bob").await;
    let mut stream = c.nodes[2].revocation_stream(None).await;
    c.nodes[0]
        .post_bearer("/logout", &t.access, &json!({}))
        .await;
    let first = stream
        .expect_sids(&[&t.session_id], Duration::from_secs(1))
        .await;
    // A reader that reconnects to yet another instance resumes where it was: the log's
    // numbers are the database's, the same on every instance.
    c.nodes[1]
        .post_bearer("/logout", &u.access, &json!({}))
        .await;
    let mut resumed = c.nodes[1]
        .revocation_stream(Some(first.last().unwrap().id))
        .await;
    let next = resumed
        .expect_sids(&[&u.session_id], Duration::from_secs(1))
        .await;
    assert!(next.iter().all(|e| e.sid != t.session_id), "nothing twice");
}

#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn a_key_rotated_with_the_cli_signs_on_every_instance() {
    if !cluster_run() {
        return;
    }
    let c = cluster(|_| {}).await;
    c.lb.catch_up_with_wall_clock();
    c.nodes[0].signup("alice", PASSWORD).await;
    let before = kid_of(&c.nodes[0].login("alice").await.access);
    let new_kid = c.lb.keys_cli(&["rotate", "--now"]).await.trim().to_owned();
    assert_ne!(new_kid, before);
    // The CLI dated the key by the wall clock; the instances share a manual one.
    c.lb.catch_up_with_wall_clock();
    // Each instance picks the change up within keys.reload_interval (0.1 s here).
    for node in &c.nodes {
        let mut kid = String::new();
        for _ in 0..100 {
            kid = kid_of(&node.login("alice").await.access);
            if kid == new_kid {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(kid, new_kid, "{} signs with the new key", node.base);
        node.wait_for_jwks(&new_kid, true).await;
    }
    // The key material lives in the database, sealed: no PEM text in any row.
    let dump = c.lb.sql().dump();
    assert!(
        !dump.contains("PRIVATE KEY"),
        "private keys are stored sealed"
    );
}

fn kid_of(jwt: &str) -> String {
    use base64::Engine;
    let header = jwt.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn login_throttling_counts_failures_made_on_every_instance() {
    if !cluster_run() {
        return;
    }
    let c = cluster(|s| {
        s.login.max_failures_per_account_per_hour = 5;
        // Only the account-wide limit is under test: no per-address delays.
        s.login.max_failures_per_ip_per_hour = 1_000;
        s.login.failures_before_delay = 1_000;
    })
    .await;
    c.nodes[0].signup("alice", PASSWORD).await;
    let wrong = json!({"username": "alice", "password": "not the password at all"});
    for i in 0..5 {
        let res = c.nodes[i % 3].post_json("/login", &wrong).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    // Five failures in all, spread over three instances: every instance refuses now,
    // even the right password (one instance alone saw at most two).
    for node in &c.nodes {
        let res = node.login_as("alice", json!({})).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{}", node.base);
        assert!(res.headers().contains_key("retry-after"));
    }
    // An hour later the failures have left the window, on every instance.
    c.lb.advance(Duration::from_secs(3601));
    assert_eq!(
        c.nodes[2].login_as("alice", json!({})).await.status(),
        StatusCode::OK
    );
}

/// docs/contract.md "Scale-out on PostgreSQL": an attempt reserves its place in the
/// account's count before the password is checked. With 9 failures against a limit of
/// 10, one attempt to each of the three instances at once gets one password check
/// between them (the others 429), round after round (issue 26 saw 12 checks in 10 of 10
/// rounds).
#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn asvs_2_2_1_three_instances_racing_at_the_limit_never_check_more_passwords_than_it() {
    if !cluster_run() {
        return;
    }
    let c = cluster(|s| {
        s.login.max_failures_per_account_per_hour = 10;
        s.login.max_failures_per_ip_per_hour = 100_000;
        s.login.failures_before_delay = 100_000;
    })
    .await;
    let wrong = |name: &str| json!({"username": name, "password": "not the password at all"});
    for round in 0..5 {
        let name = format!("racer{round}");
        c.nodes[0].signup(&name, PASSWORD).await;
        for i in 0..9 {
            let res = c.nodes[i % 3].post_json("/login", &wrong(&name)).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "failure {i}");
        }
        let body = wrong(&name);
        let (a, b, d) = tokio::join!(
            c.nodes[0].post_json("/login", &body),
            c.nodes[1].post_json("/login", &body),
            c.nodes[2].post_json("/login", &body),
        );
        let statuses = [a.status(), b.status(), d.status()];
        let checked = statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count();
        assert!(checked <= 1, "round {round}: {statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
            "round {round}: {statuses:?}"
        );
        let id =
            c.lb.sql()
                .text("SELECT id FROM users WHERE username = ?1", &[&name]);
        let checks = c.lb.sql().count(
            "SELECT count(*) FROM events WHERE kind = 'login_failed' AND user_id = ?1",
            &[&id],
        );
        assert!(checks <= 10, "round {round}: {checks} password checks");
    }
}

/// docs/contract.md "Second factor": 5 wrong codes end an `mfa_token`, counted
/// atomically however many instances: after 4, three wrong codes at once on three
/// instances make one more check between them, never a sixth (issue 26 saw a sixth in
/// 5 of 10 rounds).
#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn three_instances_racing_wrong_codes_never_check_a_sixth_code_on_one_mfa_token() {
    if !cluster_run() {
        return;
    }
    let c = cluster(|s| {
        s.login.max_failures_per_ip_per_hour = 100_000;
        s.login.failures_before_delay = 100_000;
    })
    .await;
    let first = c.nodes[0].user_with_session("alice").await;
    let secret = c.nodes[0].enrol_totp("alice", &first.access).await.secret;
    let step = latchkey::clock::Clock::now_millis(c.lb.clock.as_ref()) / 1000 / 30;
    let mut wrong = (10..).map(|n| crate::helpers::totp_code(&secret, step + n));
    let db = c.lb.sql();
    for round in 0..5 {
        let res = c.nodes[round % 3]
            .post_json(
                "/login",
                &json!({"username": "alice", "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let token = res.json::<Value>().await.unwrap()["mfa_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = db.count("SELECT count(*) FROM events WHERE kind = 'mfa_failed'", &[]);
        for i in 0..4 {
            let body = json!({"mfa_token": token, "code": wrong.next().unwrap()});
            let res = c.nodes[i % 3].post_json("/login/mfa", &body).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "round {round}");
        }
        let bodies: Vec<Value> = (0..3)
            .map(|_| json!({"mfa_token": token, "code": wrong.next().unwrap()}))
            .collect();
        let (a, b, d) = tokio::join!(
            c.nodes[0].post_json("/login/mfa", &bodies[0]),
            c.nodes[1].post_json("/login/mfa", &bodies[1]),
            c.nodes[2].post_json("/login/mfa", &bodies[2]),
        );
        let statuses = [a.status(), b.status(), d.status()];
        assert!(
            !statuses.contains(&StatusCode::UNAUTHORIZED),
            "round {round}: {statuses:?}"
        );
        let checked =
            db.count("SELECT count(*) FROM events WHERE kind = 'mfa_failed'", &[]) - before;
        assert_eq!(checked, 5, "round {round}: {statuses:?}");
    }
}

/// NIST SP 800-63B §5.2.2 across instances: the 100 wrong codes in a row are counted in
/// the database, one check at a time. After 99 spread over three instances, three
/// wrong codes at once (one per instance, each on its own `mfa_token`) get one check
/// between them; then every instance refuses an unknown device's right code unchecked,
/// and the owner's known device still gets in.
#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn nist_800_63b_5_2_2_three_instances_count_one_run_of_100_wrong_codes_between_them() {
    if !cluster_run() {
        return;
    }
    let c = cluster(|s| {
        s.login.max_failures_per_account_per_hour = 10_000;
        s.login.max_failures_per_ip_per_hour = 100_000;
        s.login.failures_before_delay = 100_000;
    })
    .await;
    let first = c.nodes[0].user_with_session("alice").await;
    c.nodes[0].enrol_totp("alice", &first.access).await;
    let device = c.nodes[0].login("alice").await.body["device_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = c.nodes[0].totp.lock().unwrap()["alice"].secret.clone();
    let step = latchkey::clock::Clock::now_millis(c.lb.clock.as_ref()) / 1000 / 30;
    let wrong = |n: usize| crate::helpers::totp_code(&secret, step + 10 + (n % 20) as i64);
    let mfa_token = async |node: &TestApp| -> String {
        let res = node
            .post_json(
                "/login",
                &json!({"username": "alice", "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        res.json::<Value>().await.unwrap()["mfa_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut token = String::new();
    for i in 0..99 {
        let node = &c.nodes[i % 3];
        if i % 4 == 0 {
            token = mfa_token(node).await;
        }
        let res = node
            .post_json("/login/mfa", &json!({"mfa_token": token, "code": wrong(i)}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "wrong code {i}");
    }
    let mut bodies = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        bodies.push(json!({"mfa_token": mfa_token(node).await, "code": wrong(i)}));
    }
    let (a, b, d) = tokio::join!(
        c.nodes[0].post_json("/login/mfa", &bodies[0]),
        c.nodes[1].post_json("/login/mfa", &bodies[1]),
        c.nodes[2].post_json("/login/mfa", &bodies[2]),
    );
    let statuses = [a.status(), b.status(), d.status()];
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(checked <= 1, "{statuses:?}");
    let failed =
        c.lb.sql()
            .count("SELECT count(*) FROM events WHERE kind = 'mfa_failed'", &[]);
    assert_eq!(failed, 99 + checked as i64, "{statuses:?}");
    if checked == 0 {
        // All three were refused: one more makes the hundredth.
        let body = json!({"mfa_token": mfa_token(&c.nodes[0]).await, "code": wrong(3)});
        let res = c.nodes[0].post_json("/login/mfa", &body).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Every instance refuses an unknown device's right code unchecked...
    let code = c.nodes[0].next_code("alice");
    let mut tokens = Vec::new();
    for node in &c.nodes {
        let token = mfa_token(node).await;
        let res = node
            .post_json("/login/mfa", &json!({"mfa_token": token, "code": code}))
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{}", node.base);
        tokens.push(token);
    }
    // ...and the known device gets in on any of them (on the same mfa_token).
    let res = c.nodes[1]
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": tokens[2], "code": code, "device_token": device}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Instances as real processes on one database (for tests that kill one).
fn start_processes(dir: &Path, url: &str, n: usize) -> Vec<Served> {
    let kek = dir.join("kek.bin");
    if !kek.exists() {
        db::write_kek(dir);
    }
    let mut env: Vec<(&str, String)> = crate::crash::ENV
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    env.push(("LATCHKEY_STORE__URL", url.to_owned()));
    env.push(("LATCHKEY_KEYS__KEK_FILE", kek.display().to_string()));
    env.push(("LATCHKEY_REGISTRATION", "open".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (0..n)
        .map(|i| {
            let own = dir.join(format!("n{i}"));
            std::fs::create_dir_all(&own).unwrap();
            Served::start_in(&own, &env)
        })
        .collect()
}

async fn refresh_via(client: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    match client
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
    {
        Ok(res) => {
            let status = res.status().as_u16();
            (status, res.json().await.unwrap_or(Value::Null))
        }
        // The connection itself failed (an instance died under it): status 0.
        Err(_) => (0, Value::Null),
    }
}

async fn signup_and_login(client: &reqwest::Client, base: &str, user: &str) -> String {
    let creds = json!({"username": user, "password": PASSWORD});
    let res = client
        .post(format!("{base}/signup"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = client
        .post(format!("{base}/login"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Clients walk their refresh families through `base` until `stop`, retrying (with the
/// same token) whatever is not a 200 or a 400; returns each family's last acknowledged
/// head and every status seen.
async fn walk_families(
    base: String,
    heads: Vec<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<String>, Vec<u16>) {
    use std::sync::atomic::Ordering;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let walkers = heads.into_iter().map(|mut head| {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = refresh_via(&client, &base, &head).await;
                seen.push(status);
                match status {
                    200 => head = body["refresh_token"].as_str().unwrap().to_owned(),
                    400 => panic!("an acknowledged head was refused: {body}"),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            (head, seen)
        }
    });
    let results = futures_util::future::join_all(walkers).await;
    let mut heads = Vec::new();
    let mut statuses = Vec::new();
    for (h, s) in results {
        heads.push(h);
        statuses.extend(s);
    }
    (heads, statuses)
}

#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn kill_9_of_one_instance_mid_load_loses_no_acknowledged_rotation() {
    if !cluster_run() {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let url = db::fresh_database();
    let mut nodes = start_processes(dir.path(), &url, 3);
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let balancer = Balancer::start(&ports);
    let client = reqwest::Client::new();
    let mut heads = Vec::new();
    for i in 0..8 {
        heads.push(signup_and_login(&client, &balancer.url(), &format!("user{i}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(walk_families(balancer.url(), heads, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = &mut nodes[1];
    let killed = Command::new("kill")
        .args(["-KILL", &victim.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = victim.child.wait();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let (heads, statuses) = load.await.unwrap();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(ok > 50, "the load went on: {ok} rotations");
    assert!(
        !statuses.contains(&500),
        "no 500 however the instance died: {statuses:?}"
    );
    // Every family's last acknowledged head still refreshes, on the survivors.
    for head in &heads {
        let (status, body) = refresh_via(&client, &balancer.url(), head).await;
        assert_eq!(status, 200, "an acknowledged head was lost: {body}");
    }
    let db = TestDb::Postgres(url);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM events WHERE kind = 'refresh_token_reuse_detected'",
            &[]
        ),
        0
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM sessions WHERE revoked_at IS NULL",
            &[]
        ),
        8,
        "no family lost"
    );
}

/// A PostgreSQL cluster of this test's own, to stop and restart.
struct OwnPostgres {
    dir: tempfile::TempDir,
    url: String,
}

fn pg_cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster")
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(pg_cluster_script())
            .arg("start")
            .arg(dir.path().join("pg"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Self { dir, url }
    }

    fn ctl(&self, action: &str) {
        let out = Command::new(pg_cluster_script())
            .arg(action)
            .arg(self.dir.path().join("pg"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A latchkey instance on this cluster alone (its keys in the database).
    async fn app(&self) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path());
        settings.store.path = None;
        settings.store.url = Some(Secret::new(self.url.clone()));
        settings.keys.kek_file = Some(db::write_kek(dir.path()));
        let clock = Arc::new(ManualClock::starting_now());
        spawn_instance(settings, clock, dir).await
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(pg_cluster_script())
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .output();
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn postgresql_down_and_restarted_gives_503s_then_recovers_without_a_500() {
    if !cluster_run() {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    let pg = OwnPostgres::start();
    let app = pg.app().await;
    let mut heads = Vec::new();
    for i in 0..4 {
        heads.push(app.user_with_session(&format!("user{i}")).await.refresh);
    }

    // Restarted under load: refreshes answer 200 or 503, never 500, and carry on.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(walk_families(app.base.clone(), heads, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart = tokio::task::spawn_blocking({
        let dir = pg.dir.path().join("pg");
        move || {
            Command::new(pg_cluster_script())
                .arg("restart")
                .arg(dir)
                .status()
                .unwrap()
        }
    });
    assert!(restart.await.unwrap().success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (heads, statuses) = load.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "only 200 and 503: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&200), "service resumed by itself");

    // Down: a clear 503 with Retry-After, and not ready.
    pg.ctl("stop");
    let res = app.refresh(&heads[0]).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let res = app
        .post_json(
            "/login",
            &json!({"username": "user0", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Back: every acknowledged head refreshes; nothing was lost.
    let started = Command::new(pg_cluster_script())
        .arg("start-again")
        .arg(pg.dir.path().join("pg"))
        .status()
        .unwrap();
    assert!(started.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.get("/readyz").await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for head in &heads {
        app.rotate(head).await;
    }
}

/// docs/scale-out.md: the HAProxy configuration in `docs/` is valid and,
/// with its addresses pointed at two instances, carries a login and refreshes.
#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn the_haproxy_config_in_docs_serves_two_instances() {
    if !cluster_run() {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/haproxy.cfg");
    let check = Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let c = cluster(|_| {}).await;
    let ports: Vec<String> = c.nodes[..2]
        .iter()
        .map(|n| n.base.rsplit(':').next().unwrap().to_owned())
        .collect();
    let port = free_port();
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("bind 127.0.0.1:8080", &format!("bind 127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", ports[0]))
        .replace("127.0.0.1:8082", &format!("127.0.0.1:{}", ports[1]));
    let balancer = Balancer::run(&config, port);
    let base = balancer.url();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status() == StatusCode::OK {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "HAProxy with the docs' configuration never answered");
    let mut token = signup_and_login(&client, &base, "alice").await;
    for _ in 0..4 {
        let (status, body) = refresh_via(&client, &base, &token).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("refresh_token").is_some());
        token = body["refresh_token"].as_str().unwrap().to_owned();
    }
}

/// Issue 26 item 15: the HAProxy example answers its own 503 (no instance can take the
/// request) as latchkey answers its 503s: with `Retry-After` and the contract's error
/// body, so clients back off the same way whichever of the two refused them.
#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn the_haproxy_config_in_docs_sends_retry_after_on_its_own_503() {
    if !cluster_run() {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/haproxy.cfg");
    let port = free_port();
    // Both instances down: nothing listens on their ports.
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("bind 127.0.0.1:8080", &format!("bind 127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:8082", &format!("127.0.0.1:{}", free_port()));
    let balancer = Balancer::run(&config, port);
    let res = reqwest::Client::new()
        .post(format!("{}/oauth/token", balancer.url()))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after = res.headers()["retry-after"].to_str().unwrap().to_owned();
    assert!(
        retry_after.parse::<u32>().is_ok_and(|s| s >= 1),
        "{retry_after}"
    );
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
}

/// Issue 26 item 15: a database that cannot be reached is a 503 whose description says
/// so, distinct from the busy server's ("the server is busy").
#[tokio::test]
#[ignore = "needs PostgreSQL and HAProxy: scripts/test runs it"]
async fn an_unreachable_database_answers_503_saying_the_database_is_unavailable() {
    if !cluster_run() {
        return;
    }
    let pg = OwnPostgres::start();
    let app = pg.app().await;
    let t = app.user_with_session("alice").await;
    pg.ctl("stop");
    let res = app.refresh(&t.refresh).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("database is unavailable") && !description.contains("busy"),
        "{description}"
    );
}
