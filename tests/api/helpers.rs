//! `TestApp`: the real server on a random port, with its own temporary database and key
//! folder, and a manual clock the test can move instead of sleeping.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use latchkey::clock::ManualClock;
use latchkey::config::{ClientSettings, HumanDuration, ResourceServerSettings, Settings};
use latchkey::secret::Secret;
use latchkey::Application;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery staple";
pub const RS_ID: &str = "orders-api";
pub const RS_SECRET: &str = "orders-api-secret-0123456789";
/// The audience of the `mobile` test client's tokens (a resource server's API).
pub const API_AUDIENCE: &str = "https://api.example.com";
/// The test server's issuer, which is also the audience of the `default` client.
pub const ISSUER: &str = "http://127.0.0.1:8080";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub settings: Settings,
    pub state: actix_web::web::Data<latchkey::AppState>,
    pub metrics_port: Option<u16>,
    pub _dir: tempfile::TempDir,
    /// The TOTP secrets of users enrolled through [`TestApp::enrol_totp`] (by username),
    /// with the last time step whose code a helper sent, so logins finish their second
    /// step by themselves.
    pub totp: std::sync::Mutex<std::collections::HashMap<String, Enrolled>>,
}

/// A user's TOTP factor as the test knows it.
#[derive(Clone)]
pub struct Enrolled {
    /// Base32, as `POST /me/mfa/totp` answered it.
    pub secret: String,
    pub last_step: Option<i64>,
    pub recovery_codes: Vec<String>,
}

/// The RFC 6238 code of `step` for a base32 secret, from the `totp-rs` crate (the
/// server's own code path is `latchkey::domain::totp`; `tests/api/mfa.rs` also checks
/// the server against Python's `pyotp`).
pub fn totp_code(secret_base32: &str, step: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .expect("a base32 secret");
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, bytes)
        .generate(step as u64 * 30)
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub body: Value,
}

impl Tokens {
    /// The tokens of a token response.
    pub async fn from_response(res: Response) -> Self {
        Self::from_body(res.json().await.unwrap())
    }

    fn from_body(body: Value) -> Self {
        Self {
            access: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh: body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            session_id: body["session_id"].as_str().expect("session_id").to_owned(),
            body,
        }
    }
}

/// Settings every test starts from: port 0, temp paths, two workers, a second client
/// and a resource server for introspection.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 2;
    if crate::db::postgres_run() {
        // A fresh database of its own on the run's throwaway cluster.
        s.store.url = Some(Secret::new(crate::db::fresh_database()));
        s.store.max_connections = 8;
        s.keys.kek_file = Some(crate::db::write_kek(dir));
    } else {
        s.store.path = Some(dir.join("db/latchkey.db"));
    }
    s.store.readers = 2;
    s.keys.dir = dir.join("keys");
    // Request rate limits are tested on their own (abuse.rs); elsewhere they would
    // only get in the way of tests that make many requests.
    let unlimited = latchkey::config::RateLimit::new(1_000_000, 1_000_000);
    s.rate_limits = latchkey::config::RateLimitSettings {
        signup: unlimited,
        login: unlimited,
        token: unlimited,
        revoke: unlimited,
        introspect: unlimited,
        browser: unlimited,
        recovery: unlimited,
    };
    // Tests see another process's `latchkey keys …` within a tenth of a second.
    s.keys.reload_interval = HumanDuration(Duration::from_millis(100));
    let mut mobile = ClientSettings::named("mobile");
    mobile.audience = Some(API_AUDIENCE.into());
    mobile.scopes = vec!["read".into(), "write".into()];
    s.clients.push(mobile);
    // The resource server introspects the API's tokens and, so that tests can ask about
    // the default client's tokens too, latchkey's own (the issuer).
    s.resource_servers.push(ResourceServerSettings {
        id: RS_ID.into(),
        secret: Secret::new(RS_SECRET.into()),
        audiences: vec![API_AUDIENCE.into(), s.issuer.clone()],
    });
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        latchkey::telemetry::init(&Default::default());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(dir.path());
    configure(&mut settings);
    settings.validate().expect("test settings are valid");
    let clock = Arc::new(ManualClock::starting_now());
    spawn_instance(settings, clock, dir).await
}

/// Another instance of the server with `settings` (its database and keys included) and
/// `clock`: several instances on one PostgreSQL database make a cluster
/// (`cluster.rs`). `dir` is kept alive with it.
pub async fn spawn_instance(
    settings: Settings,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
) -> TestApp {
    let app = Application::build_with_clock(settings.clone(), clock.clone())
        .await
        .expect("the app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let metrics_port = app.metrics_port();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        base,
        client,
        clock,
        settings,
        state,
        metrics_port,
        _dir: dir,
        totp: Default::default(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The SQLite file (SQLite runs only).
    pub fn db_path(&self) -> PathBuf {
        self.settings.store.sqlite_path().to_owned()
    }

    /// A look at the database, as an operator (or a thief with a dump) would have,
    /// whichever backend this run uses.
    pub fn sql(&self) -> crate::db::TestDb {
        match self.settings.store.postgres_url() {
            Some(url) => crate::db::TestDb::Postgres(url.to_owned()),
            None => crate::db::TestDb::Sqlite(self.db_path()),
        }
    }

    /// A value of the app's key storage (a file in `keys.dir`, or a sealed row in the
    /// database), as an operator with the KEK could read it.
    pub fn key_file(&self, name: &str) -> Vec<u8> {
        self.state
            .key_storage
            .read(name)
            .unwrap()
            .unwrap_or_else(|| panic!("no {name} in the key storage"))
    }

    /// Replaces a value of the app's key storage behind the server's back.
    pub fn put_key_file(&self, name: &str, bytes: &[u8]) {
        self.state.key_storage.write(name, bytes, false).unwrap();
    }

    /// Whether this app runs on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.settings.store.postgres_url().is_some()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Brings the server's clock up to wall-clock time, for steps that involve another
    /// process reading the real clock (the CLI, third-party verifiers).
    pub fn catch_up_with_wall_clock(&self) {
        self.clock.catch_up(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
        );
    }

    pub async fn jwks(&self) -> Value {
        let res = self.get("/.well-known/jwks.json").await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn jwks_kids(&self) -> Vec<String> {
        self.jwks().await["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits (up to 10 s) until the running server has picked up a key-folder change
    /// made by another process and `kid` is (or is not) in its JWKS.
    pub async fn wait_for_jwks(&self, kid: &str, present: bool) {
        for _ in 0..200 {
            if self.jwks_kids().await.iter().any(|k| k == kid) == present {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("kid {kid} never became present={present} in the JWKS");
    }

    /// Runs `latchkey keys …` and returns its standard output, asserting success.
    pub async fn keys_cli(&self, args: &[&str]) -> String {
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        let out = self.cli(&all, "").await;
        assert!(
            out.status.success(),
            "latchkey {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_bearer(&self, path: &str, token: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> Response {
        let body = serde_urlencoded::to_string(pairs).unwrap();
        self.post_raw(path, "application/x-www-form-urlencoded", body)
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Runs the `latchkey` binary against this app's database and keys.
    pub async fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use tokio::io::AsyncWriteExt;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
        match self.settings.store.postgres_url() {
            Some(url) => command.env("LATCHKEY_STORE__URL", url),
            None => command.env("LATCHKEY_STORE__PATH", self.db_path()),
        };
        if let Some(kek) = &self.settings.keys.kek_file {
            command.env("LATCHKEY_KEYS__KEK_FILE", kek);
        }
        let mut child = command
            .args(args)
            .env("LATCHKEY_KEYS__DIR", &self.settings.keys.dir)
            // What key lifecycle commands compute with: publish-ahead and the grace.
            .env(
                "LATCHKEY_KEYS__PUBLISH_AHEAD",
                self.settings.publish_ahead().as_secs().to_string(),
            )
            .env(
                "LATCHKEY_KEYS__JWKS_MAX_AGE",
                self.settings.keys.jwks_max_age.as_secs().to_string(),
            )
            .env(
                "LATCHKEY_KEYS__ALGORITHM",
                self.settings.keys.algorithm.as_str(),
            )
            .env(
                "LATCHKEY_ACCESS_TOKEN__TTL",
                self.settings.access_token.ttl.as_secs().to_string(),
            )
            .env(
                "LATCHKEY_ACCESS_TOKEN__LEEWAY",
                self.settings.access_token.leeway.as_secs().to_string(),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        child.wait_with_output().await.unwrap()
    }

    /// An admin (made with the CLI, as an operator would) and its tokens. With
    /// `admin.require_mfa` on (the default), admin routes need a fresh login with a
    /// second factor (docs/contract.md "Second factor"): the admin enrols TOTP and logs
    /// in again with a code.
    pub async fn admin(&self) -> Tokens {
        let out = self
            .cli(
                &["users", "add", "root", "--role", "admin"],
                &format!("{PASSWORD}\n"),
            )
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let first = self.login("root").await;
        if !self.settings.admin.require_mfa {
            return first;
        }
        self.enrol_totp("root", &first.access).await;
        self.login("root").await
    }

    /// The current step's RFC 6238 code for `secret`: the first step of the allowed
    /// drift (one either side) after `last_step`, moving the clock on a step when all
    /// three were used (the server refuses a step twice).
    pub fn next_code(&self, username: &str) -> String {
        let mut all = self.totp.lock().unwrap();
        let e = all
            .get_mut(username)
            .expect("the user enrolled a TOTP factor");
        loop {
            let now = latchkey::clock::Clock::now_millis(self.clock.as_ref()) / 1000 / 30;
            let step = (now - 1..=now + 1).find(|s| e.last_step.is_none_or(|l| *s > l));
            if let Some(step) = step {
                e.last_step = Some(step);
                return totp_code(&e.secret, step);
            }
            self.clock.advance(Duration::from_secs(30));
        }
    }

    /// Enrols and confirms a TOTP factor for the user behind `access` (whose password
    /// is [`PASSWORD`]); the test remembers the secret, so later logins of `username`
    /// finish with a code by themselves.
    pub async fn enrol_totp(&self, username: &str, access: &str) -> Enrolled {
        let res = self
            .post_bearer("/me/mfa/totp", access, &json!({"password": PASSWORD}))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "enrol");
        let body: Value = res.json().await.unwrap();
        let secret = body["secret"].as_str().unwrap().to_owned();
        self.totp.lock().unwrap().insert(
            username.to_owned(),
            Enrolled {
                secret,
                last_step: None,
                recovery_codes: Vec::new(),
            },
        );
        let code = self.next_code(username);
        let res = self
            .post_bearer("/me/mfa/totp/confirm", access, &json!({"code": code}))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "confirm");
        let body: Value = res.json().await.unwrap();
        let codes: Vec<String> = body["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let mut all = self.totp.lock().unwrap();
        let e = all.get_mut(username).unwrap();
        e.recovery_codes = codes;
        e.clone()
    }

    /// Whether the test enrolled a factor for `username`.
    pub fn has_totp(&self, username: &str) -> bool {
        self.totp.lock().unwrap().contains_key(username)
    }

    /// Logs in with a given User-Agent.
    pub async fn login_with_agent(&self, username: &str, agent: &str) -> Tokens {
        let res = self
            .client
            .post(self.url("/login"))
            .header("user-agent", agent)
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        Tokens::from_body(res.json().await.unwrap())
    }

    pub async fn delete_bearer(&self, path: &str, token: &str, body: Option<&Value>) -> Response {
        let mut req = self.client.delete(self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.unwrap()
    }

    /// Every stored event of `kind`.
    pub fn events_of(&self, kind: &str) -> Vec<(Option<String>, Option<String>)> {
        self.sql()
            .rows(
                "SELECT user_id, detail FROM events WHERE kind = ?1 ORDER BY id",
                &[kind],
            )
            .into_iter()
            .map(|mut r| (r.remove(0), r.remove(0)))
            .collect()
    }

    pub async fn signup(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/signup",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// `POST /login`; for a user enrolled with [`TestApp::enrol_totp`], the second step
    /// too (`/login/mfa` with the next code), so the answer is the token response.
    pub async fn login_as(&self, username: &str, extra: Value) -> Response {
        let mut body = json!({"username": username, "password": PASSWORD});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let res = self.post_json("/login", &body).await;
        if !self.has_totp(username) || res.status() != StatusCode::UNAUTHORIZED {
            return res;
        }
        let challenge: Value = res.json().await.unwrap();
        assert_eq!(challenge["error"], "mfa_required", "{challenge}");
        let code = self.next_code(username);
        self.post_json(
            "/login/mfa",
            &json!({"mfa_token": challenge["mfa_token"], "code": code}),
        )
        .await
    }

    /// Signs `username` up (with [`PASSWORD`]) and logs in once.
    pub async fn user_with_session(&self, username: &str) -> Tokens {
        assert_eq!(
            self.signup(username, PASSWORD).await.status(),
            StatusCode::CREATED
        );
        self.login(username).await
    }

    pub async fn login(&self, username: &str) -> Tokens {
        let res = self.login_as(username, json!({})).await;
        assert_eq!(res.status(), StatusCode::OK);
        Tokens::from_body(res.json().await.unwrap())
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Refreshes and expects success.
    pub async fn rotate(&self, refresh_token: &str) -> Tokens {
        let res = self.refresh(refresh_token).await;
        assert_eq!(res.status(), StatusCode::OK, "refresh should succeed");
        Tokens::from_body(res.json().await.unwrap())
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let res = self
            .client
            .post(self.url("/oauth/introspect"))
            .basic_auth(RS_ID, Some(RS_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }
}

/// Asserts the error body of docs/contract.md "Conventions" and returns it.
pub async fn assert_error(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status");
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(body["error"], code, "error code in {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "error_description in {body}"
    );
    body
}

/// The `kid` in a JWT's header.
pub fn kid_of(token: &str) -> String {
    jwt_parts(token).0["kid"].as_str().unwrap().to_owned()
}

/// The claims of a JWT, decoded without verification (for asserting what was issued).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

/// The real binary, serving on a random port with its own folder.
pub struct Served {
    pub child: std::process::Child,
    pub port: u16,
    pub dir: PathBuf,
    _own_dir: Option<tempfile::TempDir>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut served = Self::start_in(dir.path(), &[]);
        served._own_dir = Some(dir);
        served
    }

    /// Serves with `dir` as its working directory (data and keys live there) and extra
    /// environment (configuration).
    pub fn start_in(dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("serve")
            .current_dir(dir)
            // A test may bind elsewhere (`env` comes after the default).
            .env("LATCHKEY_SERVER__BIND", "127.0.0.1:0")
            .envs(env.iter().copied())
            .env("LATCHKEY_LOG__FORMAT", "json")
            .env("LATCHKEY_LOG__LEVEL", "debug")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut sent = false;
            while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
                if n == 0 {
                    break;
                }
                let mut all = sink.lock().unwrap();
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
                if !sent {
                    if let Some(line) = all.lines().find(|l| l.contains("latchkey listening")) {
                        let v: serde_json::Value = serde_json::from_str(line).unwrap();
                        tx.send(v["port"].as_u64().unwrap() as u16).unwrap();
                        sent = true;
                    }
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server logs its port");
        Self {
            child,
            port,
            dir: dir.to_owned(),
            _own_dir: None,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn terminate(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits (up to 30 s) for the exit code.
    pub fn wait(&mut self) -> i32 {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("the server did not exit within 30 s of SIGTERM");
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An open `GET /revocations/stream`, read event by event.
pub struct EventStream {
    res: Response,
    buf: String,
}

/// One stream event: its `id:` and the `sid` in its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEvent {
    pub id: i64,
    pub sid: String,
}

impl EventStream {
    /// The next event (heartbeats and other comments skipped), or `None` if none came
    /// within `within` or the stream ended.
    pub async fn next_event(&mut self, within: Duration) -> Option<RevokedEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str::<Value>(v).ok();
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return Some(RevokedEvent {
                        id,
                        sid: data["sid"].as_str()?.to_owned(),
                    });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events until one for each of `sids` has come, each within `within`; panics
    /// naming the ones that did not.
    pub async fn expect_sids(&mut self, sids: &[&str], within: Duration) -> Vec<RevokedEvent> {
        let mut wanted: Vec<&str> = sids.to_vec();
        let mut seen = Vec::new();
        while !wanted.is_empty() {
            let Some(e) = self.next_event(within).await else {
                panic!("no event for {wanted:?} within {within:?}");
            };
            wanted.retain(|s| *s != e.sid);
            seen.push(e);
        }
        seen
    }
}

impl TestApp {
    pub async fn get_as_resource_server(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .basic_auth(RS_ID, Some(RS_SECRET))
            .send()
            .await
            .unwrap()
    }

    /// The session ids in `GET /revocations`.
    pub async fn revoked_sids(&self) -> Vec<String> {
        let res = self.get_as_resource_server("/revocations").await;
        assert_eq!(res.status(), StatusCode::OK);
        let doc: Value = res.json().await.unwrap();
        doc["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    }

    /// Opens the stream, resuming after `last_event_id` if given.
    pub async fn revocation_stream(&self, last_event_id: Option<i64>) -> EventStream {
        let mut req = self
            .client
            .get(self.url("/revocations/stream"))
            .basic_auth(RS_ID, Some(RS_SECRET));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        EventStream {
            res,
            buf: String::new(),
        }
    }
}

impl TestApp {
    /// Waits (up to 5 s: the feed follows the store within one, but the suite shares
    /// its cores) until `GET /revocations` lists every one of `sids`.
    pub async fn wait_for_revoked(&self, sids: &[&str]) {
        for _ in 0..100 {
            let listed = self.revoked_sids().await;
            if sids.iter().all(|s| listed.iter().any(|l| l == s)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{sids:?} did not all reach GET /revocations within 5 s");
    }
}

/// A port nothing listens on right now (for a process a test starts on its own port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the browser driver `tests/interop/<script>` with `args` under Node, prints what
/// it said and checks that it ended with every check passed; returns its output.
pub async fn run_browser_script(script: &str, args: &[&str]) -> String {
    let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("node")
        .arg(path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs (scripts/test installs tests/interop)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("ALL PASSED"),
        "{script}: {text}"
    );
    text
}

/// A path under `tests/artifacts/` for a browser test's screenshot, with no stale file.
pub fn fresh_screenshot(name: &str) -> String {
    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/artifacts");
    std::fs::create_dir_all(artifacts).expect("tests/artifacts can be created");
    let screenshot = format!("{artifacts}/{name}");
    let _ = std::fs::remove_file(&screenshot);
    screenshot
}
