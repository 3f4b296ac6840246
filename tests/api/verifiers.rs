//! The conformance set of the three offline verifiers (docs/contract.md "Revocation
//! feed"; clients/conformance/README.md): this module drives a real latchkey, writes the
//! cases (tokens with the verdict each must get) step by step into a folder, and runs
//! the Rust crate `latchkey-verify` (in this process), `@latchkey/verify` (`node --test`
//! in a scratch project where the packed tarball is installed) and the Python
//! `latchkey-verify` (`pytest` against the installed wheel) on them at the same time,
//! against the same server. Every verifier asserts its own verdicts; this module checks
//! them all again from the result files and prints the measurements.
//!
//! The verifiers reach latchkey through a proxy in this test (the issuer is the proxy's
//! URL), which can drop every connection (the feed outage) and through which the JWKS
//! fetches are counted (latchkey's `/metrics`, route `/.well-known/jwks.json`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use latchkey::config::HumanDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use crate::forged::{attacker_key, b64, encode, merge, server_key, sign_es256};
use crate::helpers::{jwt_parts, kid_of, spawn_app_with, TestApp, RS_ID, RS_SECRET};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERIFIERS: [&str; 3] = ["rust", "node", "python"];
const MAX_STALENESS_MS: u64 = 2000;
const MIN_REFETCH_MS: u64 = 1000;
const LEEWAY_S: u64 = 30;

/// A TCP proxy in front of latchkey that can be taken down (every open connection cut,
/// new ones closed at once) and brought back.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn bind() -> (Self, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            down: Arc::new(AtomicBool::new(false)),
            conns: Arc::default(),
        };
        (proxy, listener)
    }

    fn serve(&self, listener: TcpListener, upstream: String) {
        let (down, conns) = (self.down.clone(), self.conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if down.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                let mut all = conns.lock().unwrap();
                all.retain(|c| !c.is_finished());
                all.push(task.abort_handle());
            }
        });
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for c in self.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Writes `name` in `dir` atomically (a reader never sees half a file).
fn write_json(dir: &Path, name: &str, v: &Value) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

fn case(name: &str, token: &str, expect: &str) -> Value {
    json!({"name": name, "token": token, "expect": expect})
}

/// The sum of latchkey's counters of JWKS requests.
async fn jwks_fetches(app: &TestApp) -> u64 {
    let url = match app.metrics_port {
        Some(p) => format!("http://127.0.0.1:{p}/metrics"),
        None => app.url("/metrics"),
    };
    let text = app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("latchkey_http_requests_total{") && l.contains("/.well-known/jwks.json")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A child verifier (Node or Python) and where its output goes.
struct Child {
    name: &'static str,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Child {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `npm pack` of clients/node-verify, installed into a scratch project with the
/// conformance test copied beside it: the test imports the installed package.
async fn node_scratch(scratch: &Path) -> PathBuf {
    let pkg = Path::new(ROOT).join("clients/node-verify");
    let project = scratch.join("node-project");
    std::fs::create_dir_all(&project).unwrap();
    run(
        Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(scratch)
            .current_dir(&pkg),
        "npm pack (clients/node-verify)",
    )
    .await;
    let tarball = std::fs::read_dir(scratch)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .expect("npm pack wrote a tarball");
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"scratch","private":true,"type":"module"}"#,
    )
    .unwrap();
    run(
        Command::new("npm")
            .args([
                "install",
                "--prefer-offline",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .arg(&tarball)
            .current_dir(&project),
        "npm install of the packed @latchkey/verify",
    )
    .await;
    let test = project.join("conformance.test.js");
    std::fs::copy(pkg.join("test/conformance.test.js"), &test).unwrap();
    test
}

/// The Python package built as a wheel and installed (`pip install --target`) into a
/// scratch folder; pytest then imports it from there, not from the source tree.
async fn python_scratch(scratch: &Path) -> PathBuf {
    let python = venv_python();
    let wheels = scratch.join("wheels");
    let site = scratch.join("site");
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-w",
            ])
            .arg(&wheels)
            .arg(Path::new(ROOT).join("clients/python")),
        "pip wheel (clients/python)",
    )
    .await;
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel");
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
            .arg(&site)
            .arg(&wheel),
        "pip install of the latchkey-verify wheel",
    )
    .await;
    site
}

/// The venv scripts/test makes with the Python verifier's test dependencies.
fn venv_python() -> PathBuf {
    let p = Path::new(ROOT).join("target/venv-verify/bin/python");
    assert!(
        p.exists(),
        "{} is missing: scripts/test creates it (clients/python/requirements-test.txt)",
        p.display()
    );
    p
}

async fn spawn_child(name: &'static str, cmd: &mut Command, dir: &Path, cwd: &Path) -> Child {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = cmd
        .env("LATCHKEY_CONFORMANCE_DIR", dir)
        .env("LATCHKEY_VERIFIER", name)
        .current_dir(cwd)
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{name} verifier starts: {e}"));
    Child { name, child, log }
}

// --- The Rust verifier, following the same files as the others -----------------------

fn verdict(r: &Result<latchkey_verify::Claims, latchkey_verify::VerifyError>) -> &'static str {
    use latchkey_verify::VerifyError;
    match r {
        Ok(_) => "valid",
        Err(VerifyError::Revoked) => "revoked",
        Err(VerifyError::FeedStale) => "feed_stale",
        Err(_) => "invalid_token",
    }
}

async fn rust_case(v: &latchkey_verify::Verifier, c: &Value) -> Value {
    let started = Instant::now();
    let expect = c["expect"].as_str().unwrap();
    if let Some(n) = c["random_kids"].as_u64() {
        let mut got = "invalid_token";
        for i in 0..n {
            let h = json!({"typ": "at+jwt", "alg": "ES256", "kid": format!("random-{i}-{}", uuid::Uuid::new_v4())});
            let t = format!("{}.{}", encode(&h, &json!({"sub": "x"})), b64(b"sig"));
            let v = verdict(&v.verify(&t).await);
            if v != "invalid_token" {
                got = v;
                break;
            }
        }
        return json!({"name": c["name"], "verdict": got, "ms": started.elapsed().as_millis() as u64});
    }
    let token = c["token"].as_str().unwrap();
    let within = Duration::from_millis(c["within_ms"].as_u64().unwrap_or(0));
    loop {
        let r = v.verify(token).await;
        let mut got = verdict(&r);
        if let (Ok(claims), Some(age)) = (&r, c["step_up"]["max_age"].as_u64()) {
            if claims.require_step_up(Duration::from_secs(age)).is_err() {
                got = "insufficient_user_authentication";
            }
        }
        if got == expect || started.elapsed() >= within {
            let ms = match c["since_ms"].as_u64() {
                Some(t) => now_ms().saturating_sub(t),
                None => started.elapsed().as_millis() as u64,
            };
            return json!({"name": c["name"], "verdict": got, "ms": ms, "at_ms": now_ms()});
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_file(path: &Path, within: Duration) -> Option<Value> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Ok(bytes) = std::fs::read(path) {
            return Some(serde_json::from_slice(&bytes).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn rust_verifier(dir: PathBuf) {
    let config = wait_for_file(&dir.join("config.json"), Duration::from_secs(5))
        .await
        .unwrap();
    let v = latchkey_verify::Verifier::builder(config["issuer"].as_str().unwrap())
        .audience(config["audience"].as_str().unwrap())
        .resource_server(
            config["resource_server"]["id"].as_str().unwrap(),
            config["resource_server"]["secret"].as_str().unwrap(),
        )
        .feed(latchkey_verify::FeedMode::Stream)
        .leeway(Duration::from_secs(config["leeway_s"].as_u64().unwrap()))
        .max_staleness(Duration::from_millis(
            config["max_staleness_ms"].as_u64().unwrap(),
        ))
        .min_refetch_interval(Duration::from_millis(
            config["min_refetch_interval_ms"].as_u64().unwrap(),
        ))
        .build()
        .await
        .expect("the Rust verifier starts");
    for i in 0.. {
        let step = wait_for_file(
            &dir.join(format!("step-{i}.json")),
            Duration::from_secs(120),
        )
        .await
        .expect("the next step");
        let mut results = Vec::new();
        if step["only"].is_null() || step["only"] == "rust" {
            for c in step["cases"].as_array().unwrap() {
                results.push(rust_case(&v, c).await);
            }
        }
        write_json(
            &dir,
            &format!("result-rust-{i}.json"),
            &json!({"verifier": "rust", "step": i, "results": results}),
        );
        if step["last"] == true {
            break;
        }
    }
}

// --- The generator ---------------------------------------------------------------------

struct Generator {
    app: TestApp,
    dir: PathBuf,
    proxy: Proxy,
    children: Vec<Child>,
    rust: tokio::task::JoinHandle<()>,
    step: usize,
    /// (verifier, step name, case, verdict, ms) of every result, for the summary.
    seen: Vec<(String, String, String, String, u64)>,
}

impl Generator {
    /// Writes step `self.step`, waits until every verifier has answered it, and checks
    /// each verdict. Returns the results of each verifier.
    async fn step(
        &mut self,
        name: &str,
        only: Option<&str>,
        cases: Vec<Value>,
        last: bool,
    ) -> Vec<(String, Value)> {
        self.write_step(name, only, &cases, last);
        self.collect(name, only, &cases, last).await
    }

    fn write_step(&mut self, name: &str, only: Option<&str>, cases: &[Value], last: bool) {
        write_json(
            &self.dir,
            &format!("step-{}.json", self.step),
            &json!({"index": self.step, "name": name, "only": only, "last": last, "cases": cases}),
        );
        self.step += 1;
    }

    /// Waits until every verifier has answered the step last written, and checks each
    /// verdict.
    async fn collect(
        &mut self,
        name: &str,
        only: Option<&str>,
        cases: &[Value],
        last: bool,
    ) -> Vec<(String, Value)> {
        let i = self.step - 1;
        let started = Instant::now();
        let mut out: Vec<(String, Value)> = Vec::new();
        for v in VERIFIERS {
            let path = self.dir.join(format!("result-{v}-{i}.json"));
            loop {
                if let Ok(bytes) = std::fs::read(&path) {
                    out.push((v.to_owned(), serde_json::from_slice(&bytes).unwrap()));
                    break;
                }
                for c in &mut self.children {
                    if let Ok(Some(status)) = c.child.try_wait() {
                        panic!(
                            "the {} verifier exited ({status}) before step {i} ({name}):\n{}",
                            c.name,
                            c.output()
                        );
                    }
                }
                assert!(!self.rust.is_finished() || last, "the Rust verifier ended");
                assert!(
                    started.elapsed() < Duration::from_secs(90),
                    "no result from {v} for step {i} ({name}) in 90 s:\n{}",
                    self.children
                        .iter()
                        .map(|c| format!("--- {}:\n{}", c.name, c.output()))
                        .collect::<String>()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for (v, r) in &out {
            if only.is_some_and(|o| o != v) {
                continue;
            }
            let results = r["results"].as_array().unwrap();
            assert_eq!(results.len(), cases.len(), "{v}: one result per case");
            for (c, r) in cases.iter().zip(results) {
                assert_eq!(r["name"], c["name"], "{v}");
                assert_eq!(
                    r["verdict"], c["expect"],
                    "{v} verifier, step {name}, case {}",
                    c["name"]
                );
                self.seen.push((
                    v.clone(),
                    name.to_owned(),
                    c["name"].as_str().unwrap().to_owned(),
                    r["verdict"].as_str().unwrap().to_owned(),
                    r["ms"].as_u64().unwrap_or(0),
                ));
            }
        }
        out
    }

    fn ms_of(&self, verifier: &str, case: &str) -> u64 {
        self.seen
            .iter()
            .find(|s| s.0 == verifier && s.2 == case)
            .map(|s| s.4)
            .unwrap()
    }
}

/// The forged matrix of tests/api/forged.rs, as cases: each token differs from a
/// genuine one by one flaw.
fn forged_cases(app: &TestApp, genuine: &str, jwks: &Value) -> Vec<Value> {
    let (header, claims) = jwt_parts(genuine);
    let key = server_key(app, &kid_of(genuine));
    let now = (now_ms() / 1000) as i64;
    let signed = |hp: Value, cp: Value| {
        let (mut h, mut c) = (header.clone(), claims.clone());
        merge(&mut h, hp);
        merge(&mut c, cp);
        sign_es256(&key, &h, &c)
    };
    let sig = genuine.rsplit('.').next().unwrap();
    let mut cases = vec![case(
        "resigned genuine",
        &signed(json!({}), json!({})),
        "valid",
    )];
    for alg in ["none", "None", "NONE", "nOnE"] {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        let unsigned = format!("{}.", encode(&h, &claims));
        cases.push(case(&format!("alg {alg}"), &unsigned, "invalid_token"));
        cases.push(case(
            &format!("alg {alg} with the genuine signature"),
            &format!("{unsigned}{sig}"),
            "invalid_token",
        ));
    }
    // HS256 with the public key as the secret (the JWK as served, the SEC1 point).
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap();
    use base64::Engine;
    let d = |s: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.as_str().unwrap())
            .unwrap()
    };
    let mut sec1 = vec![4u8];
    sec1.extend(d(&jwk["x"]));
    sec1.extend(d(&jwk["y"]));
    for (i, secret) in [serde_json::to_vec(jwk).unwrap(), sec1].iter().enumerate() {
        let mut h = header.clone();
        h["alg"] = json!("HS256");
        let input = encode(&h, &claims);
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            input.as_bytes(),
        );
        cases.push(case(
            &format!("HS256 keyed with the public key #{i}"),
            &format!("{input}.{}", b64(tag.as_ref())),
            "invalid_token",
        ));
    }
    let iss = claims["iss"].as_str().unwrap().to_owned();
    for (name, hp, cp) in [
        ("typ JWT", json!({"typ": "JWT"}), json!({})),
        ("typ jwt", json!({"typ": "jwt"}), json!({})),
        ("typ at+jwt+x", json!({"typ": "at+jwt+x"}), json!({})),
        ("typ missing", json!({"typ": null}), json!({})),
        (
            "iss other",
            json!({}),
            json!({"iss": "https://evil.example"}),
        ),
        (
            "iss with a trailing slash",
            json!({}),
            json!({"iss": format!("{iss}/")}),
        ),
        ("iss missing", json!({}), json!({"iss": null})),
        (
            "aud other",
            json!({}),
            json!({"aud": "https://other.example"}),
        ),
        (
            "aud array of others",
            json!({}),
            json!({"aud": ["https://other.example"]}),
        ),
        ("aud missing", json!({}), json!({"aud": null})),
        (
            "exp 31 s ago (beyond the leeway)",
            json!({}),
            json!({"exp": now - 31, "iat": now - 900}),
        ),
        ("exp missing", json!({}), json!({"exp": null})),
        ("nbf 60 s ahead", json!({}), json!({"nbf": now + 60})),
        (
            "iat 60 s ahead",
            json!({}),
            json!({"iat": now + 60, "exp": now + 900}),
        ),
        ("unknown kid", json!({"kid": "no-such-kid"}), json!({})),
        ("kid missing", json!({"kid": null}), json!({})),
        (
            "jku header",
            json!({"jku": "https://evil.example/jwks.json"}),
            json!({}),
        ),
        (
            "x5u header",
            json!({"x5u": "https://evil.example/cert.pem"}),
            json!({}),
        ),
        ("crit header", json!({"crit": ["exp"]}), json!({})),
        (
            "alg ES384 named by the header",
            json!({"alg": "ES384"}),
            json!({}),
        ),
    ] {
        cases.push(case(name, &signed(hp, cp), "invalid_token"));
    }
    cases.push(case(
        "exp 5 s ago (inside the leeway)",
        &signed(json!({}), json!({"exp": now - 5, "iat": now - 900})),
        "valid",
    ));
    // The attacker's own key, embedded as `jwk` or named by kid.
    let (evil, evil_jwk) = attacker_key();
    let mut h = header.clone();
    h["jwk"] = evil_jwk.clone();
    cases.push(case(
        "jwk header with the attacker's key",
        &sign_es256(&evil, &h, &claims),
        "invalid_token",
    ));
    cases.push(case(
        "signed by another key under the genuine kid",
        &sign_es256(&evil, &header, &claims),
        "invalid_token",
    ));
    let mut tampered = genuine.to_owned().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    cases.push(case(
        "tampered signature",
        &String::from_utf8(tampered).unwrap(),
        "invalid_token",
    ));
    let mut c2 = claims.clone();
    c2["sub"] = json!(uuid::Uuid::new_v4().to_string());
    cases.push(case(
        "tampered payload",
        &format!("{}.{sig}", encode(&header, &c2)),
        "invalid_token",
    ));
    for (name, junk) in [
        ("empty", String::new()),
        ("junk", "a.b.c".into()),
        ("two parts", "e30.e30".into()),
        ("oversized", "x".repeat(5000)),
    ] {
        cases.push(case(name, &junk, "invalid_token"));
    }
    cases
}

#[tokio::test]
#[ignore = "needs Node and Python with the verifiers' packages: scripts/test runs it"]
async fn verifiers_rust_node_and_python_pass_the_conformance_set() {
    // Run once, on SQLite: the verifiers see latchkey only over HTTP (metadata, JWKS, the
    // feed), and the feed's behaviour on each backend is tested by revocations.rs on both.
    if crate::db::postgres_run() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    // Pack and install both packages while latchkey starts.
    let node_test = node_scratch(scratch.path());
    let py_site = python_scratch(scratch.path());
    let (proxy, listener) = Proxy::bind().await;
    let issuer = format!("http://127.0.0.1:{}", proxy.port);
    let iss = issuer.clone();
    let app = spawn_app_with(move |s| {
        s.issuer = iss;
        s.revocations.heartbeat = HumanDuration(Duration::from_millis(500));
        s.revocations.max_age = HumanDuration(Duration::from_secs(1));
    })
    .await;
    proxy.serve(listener, app.base.trim_start_matches("http://").to_owned());
    let (node_test, py_site) = tokio::join!(node_test, py_site);
    app.catch_up_with_wall_clock();

    // The sessions the cases need.
    let alice = app.user_with_session("alice").await;
    let live = app.user_with_session("dave").await;
    let gone = app.user_with_session("erin").await;
    let res = app.post_bearer("/logout", &gone.access, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    app.wait_for_revoked(&[&gone.session_id]).await;
    let carol = app.user_with_session("carol").await;
    app.enrol_totp("carol", &carol.access).await;
    let carol = app.login("carol").await;
    assert_eq!(jwt_parts(&carol.access).1["amr"], json!(["pwd", "otp"]));
    let jwks = app.jwks().await;

    let dir = scratch.path().join("cases");
    std::fs::create_dir_all(&dir).unwrap();
    write_json(
        &dir,
        "config.json",
        &json!({
            "format": 1,
            "issuer": issuer,
            "audience": issuer,
            "resource_server": {"id": RS_ID, "secret": RS_SECRET},
            "leeway_s": LEEWAY_S,
            "max_staleness_ms": MAX_STALENESS_MS,
            "min_refetch_interval_ms": MIN_REFETCH_MS,
        }),
    );
    let rust = tokio::spawn(rust_verifier(dir.clone()));
    let mut node = Command::new("node");
    node.arg("--test")
        .arg("--test-reporter=spec")
        .arg(&node_test);
    let node = spawn_child("node", &mut node, &dir, node_test.parent().unwrap()).await;
    let mut python = Command::new(venv_python());
    python
        .args(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"])
        .arg(Path::new(ROOT).join("clients/python/tests/test_conformance.py"))
        .env("PYTHONPATH", &py_site)
        .env("LATCHKEY_VERIFY_INSTALLED_IN", &py_site);
    let python = spawn_child("python", &mut python, &dir, scratch.path()).await;
    let mut g = Generator {
        app,
        dir,
        proxy,
        children: vec![node, python],
        rust,
        step: 0,
        seen: Vec::new(),
    };
    let started = Instant::now();

    // Step 0: the forged matrix, genuine tokens, a session revoked before the verifiers
    // started, step-up.
    let mut cases = vec![
        case("genuine", &alice.access, "valid"),
        case("genuine, live session", &live.access, "valid"),
        case("session revoked before start", &gone.access, "revoked"),
    ];
    cases.extend(forged_cases(&g.app, &alice.access, &jwks));
    let mut su = case(
        "step-up demanded, amr pwd only",
        &alice.access,
        "insufficient_user_authentication",
    );
    su["step_up"] = json!({"max_age": 900});
    cases.push(su);
    let mut su = case("step-up demanded, amr pwd+otp", &carol.access, "valid");
    su["step_up"] = json!({"max_age": 900});
    cases.push(su);
    let (ch, cc) = jwt_parts(&carol.access);
    let mut old = cc.clone();
    old["auth_time"] = json!(cc["auth_time"].as_i64().unwrap() - 1000);
    let mut su = case(
        "step-up demanded, otp 1000 s ago",
        &sign_es256(&server_key(&g.app, &kid_of(&carol.access)), &ch, &old),
        "insufficient_user_authentication",
    );
    su["step_up"] = json!({"max_age": 900});
    cases.push(su);
    g.step("static", None, cases, false).await;

    // Step 1: a key rotation. The verifiers hold the old JWKS (their last fetch is
    // older than their refetch interval): the new kid makes each refetch once.
    tokio::time::sleep(Duration::from_millis(MIN_REFETCH_MS + 200)).await;
    let new_kid = g.app.keys_cli(&["rotate", "--now"]).await.trim().to_owned();
    g.app.wait_for_jwks(&new_kid, true).await;
    g.app.catch_up_with_wall_clock();
    let rotated = g.app.login("alice").await;
    assert_eq!(kid_of(&rotated.access), new_kid);
    assert_ne!(kid_of(&alice.access), new_kid);
    g.step(
        "rotation",
        None,
        vec![
            case("new kid after the rotation", &rotated.access, "valid"),
            case("old kid after the rotation", &alice.access, "valid"),
        ],
        false,
    )
    .await;

    // Step 2: a logout reaches every verifier through the stream within 2 s, counted
    // from the logout's answer.
    // The verifiers are told first and check the token every 10 ms (it is valid until
    // the revocation arrives); each reports the wall-clock time it first saw `revoked`.
    let mut c = case("logout seen through the stream", &live.access, "revoked");
    c["within_ms"] = json!(10_000);
    let cases = vec![c];
    g.write_step("revocation", None, &cases, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logout_at = now_ms();
    let res = g.app.post_bearer("/logout", &live.access, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let results = g.collect("revocation", None, &cases, false).await;
    let mut to_revocation = Vec::new();
    for (v, r) in results {
        let at = r["results"][0]["at_ms"].as_u64().unwrap();
        to_revocation.push((v, at.saturating_sub(logout_at)));
    }

    // Steps 3-5: 1,000 tokens with made-up kids, one verifier at a time, counting the
    // JWKS fetches latchkey served meanwhile.
    let mut fetches = Vec::new();
    for v in VERIFIERS {
        tokio::time::sleep(Duration::from_millis(MIN_REFETCH_MS + 200)).await;
        let before = jwks_fetches(&g.app).await;
        let mut c = case("1000 unknown kids", "", "invalid_token");
        c["random_kids"] = json!(1000);
        g.step(&format!("unknown kids ({v})"), Some(v), vec![c], false)
            .await;
        let n = jwks_fetches(&g.app).await - before;
        assert!(n <= 3, "{v}: 1,000 unknown kids cost {n} JWKS fetches");
        fetches.push((v, n, g.ms_of(v, "1000 unknown kids")));
    }

    // Step 6: the feed goes down: refused as feed_stale once it is staler than
    // max_staleness. Step 7: it comes back, and the token is accepted again.
    g.proxy.set_down(true);
    let mut c = case("feed down", &alice.access, "feed_stale");
    c["within_ms"] = json!(MAX_STALENESS_MS + 4000);
    g.step("feed down", None, vec![c], false).await;
    g.proxy.set_down(false);
    let mut c = case("feed back", &alice.access, "valid");
    c["within_ms"] = json!(15_000);
    c["since_ms"] = json!(now_ms());
    g.step("feed back", None, vec![c], true).await;

    (&mut g.rust).await.unwrap();
    for c in &mut g.children {
        let status = tokio::time::timeout(Duration::from_secs(30), c.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish", c.name))
            .unwrap();
        assert!(status.success(), "{} failed:\n{}", c.name, c.output());
    }
    eprintln!(
        "conformance: {} verdicts checked in {:?}",
        g.seen.len(),
        started.elapsed()
    );
    for (v, ms) in &to_revocation {
        eprintln!(
            "  {v}: logout -> revoked after {ms} ms (from the logout request); feed down -> feed_stale after {} ms; feed back -> valid after {} ms",
            g.ms_of(v, "feed down"),
            g.ms_of(v, "feed back"),
        );
    }
    for (v, n, ms) in fetches {
        eprintln!("  {v}: 1,000 unknown kids -> {n} JWKS fetch(es), {ms} ms");
    }
    for (v, ms) in &to_revocation {
        assert!(*ms <= 2000, "{v}: the revocation took {ms} ms, over 2 s");
    }
}
