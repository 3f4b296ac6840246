//! Operability: Prometheus metrics, request ids, HTTPS, logs free of secrets, graceful
//! shutdown, and one clear line with exit code 2 for every misconfiguration. The last
//! three run the real `latchkey` binary as an operator would.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Served, PASSWORD};

/// Parses Prometheus text format 0.0.4 into `series → value`, failing on any line that
/// is not a comment, a blank, or `name{labels} value`.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.insert(series.to_owned(), v);
    }
    out
}

async fn scrape(app: &crate::helpers::TestApp) -> HashMap<String, f64> {
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    parse_prometheus(&res.text().await.unwrap())
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_counters_move_with_traffic() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    let t = app.user_with_session("alice").await;
    let res = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": "wrong password!"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let next = app.rotate(&t.refresh).await;
    app.advance(Duration::from_secs(60)); // past the reuse interval
    assert_eq!(
        app.refresh(&t.refresh).await.status(),
        StatusCode::BAD_REQUEST
    );
    let _ = next;
    let after = scrape(&app).await;

    let delta = |s: &str| value(&after, s) - value(&before, s);
    assert_eq!(delta("latchkey_logins_total{outcome=\"success\"}"), 1.0);
    assert_eq!(delta("latchkey_logins_total{outcome=\"failure\"}"), 1.0);
    assert_eq!(delta("latchkey_refreshes_total{outcome=\"rotated\"}"), 1.0);
    assert_eq!(
        delta("latchkey_refreshes_total{outcome=\"reuse_detected\"}"),
        1.0
    );
    assert_eq!(delta("latchkey_refresh_reuse_detected_total"), 1.0);
    assert_eq!(
        delta("latchkey_session_revocations_total{reason=\"reuse\"}"),
        1.0
    );
    assert_eq!(
        delta("latchkey_http_requests_total{method=\"POST\",route=\"/login\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        delta("latchkey_http_requests_total{method=\"POST\",route=\"/login\",status=\"401\"}"),
        1.0
    );
    assert!(
        value(
            &after,
            "latchkey_http_request_duration_seconds_count{method=\"POST\",route=\"/oauth/token\"}"
        ) >= 2.0
    );
    assert!(value(&after, "latchkey_store_batch_size_count") >= 3.0);
    assert!(value(&after, "latchkey_store_commit_seconds_count") >= 3.0);
    assert!(after.contains_key("latchkey_argon2_queue_depth"));
    assert!(value(&after, "latchkey_signing_key_age_seconds") >= 60.0);
    // The active-sessions gauge is recounted at most every 15 s.
    app.advance(Duration::from_secs(16));
    let later = scrape(&app).await;
    assert_eq!(
        value(&later, "latchkey_active_sessions"),
        0.0,
        "reuse revoked it"
    );
    app.login("alice").await;
    app.advance(Duration::from_secs(16));
    assert_eq!(value(&scrape(&app).await, "latchkey_active_sessions"), 1.0);
}

#[tokio::test]
async fn metrics_can_move_to_a_separate_admin_listener() {
    let app = spawn_app_with(|s| s.server.metrics_bind = Some("127.0.0.1:0".into())).await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::NOT_FOUND);
    let port = app.metrics_port.expect("admin listener bound");
    let res = app
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let m = parse_prometheus(&res.text().await.unwrap());
    assert!(m.contains_key("latchkey_active_sessions"));
    let res = app
        .client
        .get(format!("http://127.0.0.1:{port}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "only metrics and health"
    );
}

#[tokio::test]
async fn a_request_id_is_echoed_or_generated() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "trace-abc.123_x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-abc.123_x");
    for hostile in ["has space", "line\tbreak", &"a".repeat(129), ""] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("X-Request-Id", hostile)
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, hostile);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    let res = app.get("/no/such/path").await;
    assert!(uuid::Uuid::parse_str(res.headers()["x-request-id"].to_str().unwrap()).is_ok());
}

#[tokio::test]
async fn https_with_a_certificate_made_in_the_test_sends_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let app = spawn_app_with(|s| {
        s.server.tls = Some(latchkey::config::TlsSettings {
            cert: cert_path.clone(),
            key: key_path.clone(),
        });
        s.issuer = "https://localhost".into();
    })
    .await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let res = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
    // A full login over TLS.
    let res = client
        .post(format!("https://localhost:{port}/signup"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(app.client.get(app.url("/healthz")).send().await.is_err());
    // Without TLS there is no HSTS.
    let plain = spawn_app().await;
    assert!(plain
        .get("/healthz")
        .await
        .headers()
        .get("strict-transport-security")
        .is_none());
}

#[tokio::test]
async fn logs_of_a_full_flow_are_json_lines_with_request_and_caller_ids_and_no_secret() {
    let mut served = tokio::task::spawn_blocking(Served::start).await.unwrap();
    let client = reqwest::Client::new();
    let password = "an unguessable passphrase 7781";
    let res = client
        .post(served.url("/signup"))
        .json(&json!({"username": "alice", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = client
        .post(served.url("/login"))
        .header("X-Request-Id", "flow-login-1")
        .json(&json!({"username": "alice", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: serde_json::Value = res.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let res = client
        .post(served.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: serde_json::Value = res.json().await.unwrap();
    let access2 = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    let me = client
        .get(served.url("/me"))
        .bearer_auth(&access2)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let res = client
        .post(served.url("/login"))
        .json(&json!({"username": "alice", "password": "a wrong password 123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client
        .post(served.url("/logout"))
        .bearer_auth(&access2)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    served.terminate();
    let (code, logs) = tokio::task::spawn_blocking(move || (served.wait(), served.logs()))
        .await
        .unwrap();
    assert_eq!(code, 0, "{logs}");
    for secret in [&access, &access2, &refresh, &refresh2, &password.to_owned()] {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
        // Nor any recognisable piece of it.
        assert!(
            !logs.contains(&secret[..16]),
            "part of a secret leaked into the logs"
        );
    }
    assert!(!logs.contains("a wrong password"));
    let mut requests = 0;
    let mut named_callers = Vec::new();
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        if v["message"] == "request" {
            requests += 1;
            assert!(v["span"]["request_id"].is_string(), "{line}");
            assert!(v["route"].is_string() && v["status"].is_number(), "{line}");
            // Whose request it was, once known: a login names the session it opened,
            // a Bearer route its caller (ids only).
            if v["route"] == "/logout" || (v["route"] == "/login" && v["status"] == 200) {
                let span = &v["span"];
                assert!(
                    span["user_id"].is_string() && span["session_id"].is_string(),
                    "{line}"
                );
                assert!(span["client_id"].is_string(), "{line}");
                named_callers.push(span["user_id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(requests >= 6, "one line per request: {logs}");
    assert!(!named_callers.is_empty(), "{logs}");
    assert!(
        logs.contains("flow-login-1"),
        "the client's request id is logged"
    );
    assert!(logs.contains("refresh_token_reuse_detected") || logs.contains("security event"));
}

#[tokio::test]
async fn sigterm_during_a_request_lets_it_finish_and_exits_0() {
    let served = tokio::task::spawn_blocking(Served::start).await.unwrap();
    let port = served.port;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut served = served;
        let body = format!(r#"{{"username":"bob","password":"{PASSWORD}"}}"#);
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            conn,
            "POST /signup HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.write_all(&body.as_bytes()[..10]).unwrap();
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        served.terminate();
        // The server is shutting down; the request already in flight still completes.
        std::thread::sleep(Duration::from_millis(300));
        conn.write_all(&body.as_bytes()[10..]).unwrap();
        let mut response = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            response.push_str(&String::from_utf8_lossy(&buf[..n]));
            if response.contains("\r\n\r\n") && response.contains('}') {
                break;
            }
        }
        // New connections are refused once it has stopped accepting.
        let code = served.wait();
        let refused = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        (response, code, refused, served.logs(), served.dir.clone())
    })
    .await
    .unwrap();
    let (response, code, refused, logs, _) = outcome;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}\n{logs}");
    assert_eq!(code, 0, "{logs}");
    assert!(refused);
    assert!(logs.contains("shutting down"), "{logs}");
}

/// Runs `latchkey check-config` in an empty folder with a config file and environment.
fn check_config(toml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("latchkey.toml"), toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("check-config")
        .current_dir(dir.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_misconfiguration_is_one_clear_line_and_exit_code_2() {
    let (code, _) = check_config("", &[]);
    assert_eq!(code, 0, "no file content at all is a valid configuration");
    let broken_key_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        broken_key_dir.path().join("manifest.json"),
        r#"{"keys":[{"kid":"k1","alg":"ES256","file":"k1.pem","created_at":"2026-01-01T00:00:00Z","signs_from":"2026-01-01T00:00:00Z"}]}"#,
    )
    .unwrap();
    std::fs::write(broken_key_dir.path().join("k1.pem"), "not a pem").unwrap();
    let missing_key_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        missing_key_dir.path().join("manifest.json"),
        r#"{"keys":[{"kid":"k1","alg":"ES256","file":"k1.pem","created_at":"2026-01-01T00:00:00Z","signs_from":"2026-01-01T00:00:00Z"}]}"#,
    )
    .unwrap();
    let not_a_db = tempfile::tempdir().unwrap();
    std::fs::write(
        not_a_db.path().join("db"),
        "this is not a database file, really",
    )
    .unwrap();
    // (case, latchkey.toml, environment, what the error line must name)
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown key",
            "[session]\nidle_timout = \"1h\"\n".into(),
            vec![],
            "idle_timout",
        ),
        ("unknown section", "[sesion]\n".into(), vec![], "sesion"),
        (
            "SQLite file and PostgreSQL URL both set",
            "[store]\npath = \"./data/x.db\"\nurl = \"postgres://u@127.0.0.1/db\"\n".into(),
            vec![],
            "store.path and store.url",
        ),
        (
            "store.url not a postgres URL",
            "".into(),
            vec![("LATCHKEY_STORE__URL", "mysql://u:secret-pw@h/db".into())],
            "store.url",
        ),
        (
            "bad duration",
            "[access_token]\nttl = \"15 parsecs\"\n".into(),
            vec![],
            "15 parsecs",
        ),
        (
            "issuer not a URL",
            "issuer = \"auth example\"\n".into(),
            vec![],
            "issuer",
        ),
        (
            "bad bind",
            "[server]\nbind = \"localhost\"\n".into(),
            vec![],
            "server.bind",
        ),
        (
            "bad env duration",
            "".into(),
            vec![("LATCHKEY_REFRESH__REUSE_INTERVAL", "soon".into())],
            "soon",
        ),
        (
            "malformed key",
            "".into(),
            vec![(
                "LATCHKEY_KEYS__DIR",
                broken_key_dir.path().display().to_string(),
            )],
            "k1.pem",
        ),
        (
            "unreadable key",
            "".into(),
            vec![(
                "LATCHKEY_KEYS__DIR",
                missing_key_dir.path().display().to_string(),
            )],
            "k1.pem",
        ),
        (
            "database not a database",
            "".into(),
            vec![(
                "LATCHKEY_STORE__PATH",
                not_a_db.path().join("db").display().to_string(),
            )],
            "database",
        ),
        (
            // RFC 7517 / OIDC Core §10.1.1: published at least one cache lifetime early.
            "publish_ahead shorter than jwks_max_age",
            "[keys]\njwks_max_age = \"5m\"\npublish_ahead = \"1m\"\n".into(),
            vec![],
            "keys.publish_ahead",
        ),
        (
            // WebAuthn Level 3 §5.1.2: the RP ID is a registrable suffix of every origin.
            "passkeys.rp_id not covering an origin",
            "issuer = \"https://auth.example.com\"\n[passkeys]\nrp_id = \"example.org\"\n".into(),
            vec![],
            "passkeys.rp_id",
        ),
        (
            "TLS files missing",
            "[server.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n"
                .into(),
            vec![],
            "server.tls",
        ),
    ];
    for (case, toml, env, names) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, stderr) = check_config(&toml, &env);
        assert_eq!(code, 2, "{case}: {stderr}");
        let lines: Vec<&str> = stderr.trim().lines().collect();
        assert_eq!(lines.len(), 1, "{case}: one line, got {stderr}");
        assert!(lines[0].starts_with("latchkey: "), "{case}: {stderr}");
        assert!(
            lines[0].contains(names),
            "{case}: should name {names:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        assert!(
            !stderr.contains("secret-pw"),
            "{case}: a URL's password never reaches a message"
        );
    }
}

/// Private key files readable by group or others: `check-config` still passes (exit 0,
/// `configuration ok`) but warns, naming each file and its mode.
#[cfg(unix)]
#[test]
fn check_config_warns_about_key_and_seal_files_that_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("check-config")
            .current_dir(dir.path())
            .env("LATCHKEY_KEYS__DIR", &keys)
            .output()
            .unwrap()
    };
    // A first key, as an operator makes one (check-config itself creates none).
    let generated = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["keys", "generate"])
        .current_dir(dir.path())
        .env("LATCHKEY_KEYS__DIR", &keys)
        .output()
        .unwrap();
    assert!(generated.status.success());
    let first = run();
    assert!(first.status.success());
    assert!(
        !String::from_utf8_lossy(&first.stderr).contains("warning"),
        "latchkey writes its key files 0600: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let seal = keys.join("refresh-seal.key");
    let pem = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pem"))
        .unwrap();
    std::fs::set_permissions(&seal, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration ok"));
    for (file, mode) in [(&seal, "0640"), (&pem, "0644")] {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("warning") && l.contains(&name) && l.contains(mode)),
            "no warning for {name}: {stderr}"
        );
    }
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["check-config", "--help"],
        vec!["users", "--help"],
        vec!["users", "add", "--help"],
        vec!["users", "list", "--help"],
        vec!["users", "disable", "--help"],
        vec!["users", "delete", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "generate", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "retire", "--help"],
        vec!["keys", "revoke", "--help"],
        vec!["keys", "import", "--help"],
        vec!["keys", "init-kek", "--help"],
        vec!["sessions", "--help"],
        vec!["sessions", "list", "--help"],
        vec!["sessions", "revoke", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}

/// Every key `Settings` knows, as `section.key` paths (array items by their first one).
fn leaf_keys(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    serde_json::Value::Object(_) => leaf_keys(&path, v, out),
                    serde_json::Value::Array(items)
                        if items.first().is_some_and(|i| i.is_object()) =>
                    {
                        leaf_keys(&path, &items[0], out)
                    }
                    _ => out.push(path),
                }
            }
        }
        _ => unreachable!(),
    }
}

#[test]
fn the_sample_config_documents_every_key_and_passes_check_config() {
    let sample_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/latchkey.sample.toml");
    let sample = std::fs::read_to_string(sample_path).unwrap();
    let mut keys = Vec::new();
    leaf_keys(
        "",
        &serde_json::to_value(latchkey::config::Settings::default()).unwrap(),
        &mut keys,
    );
    // Keys whose default is empty or unset appear commented out; tls and the
    // resource-server list have no default entry to walk, so name their keys here.
    keys.extend(
        [
            "server.tls.cert",
            "server.tls.key",
            "resource_servers.id",
            "resource_servers.secret",
            "resource_servers.audiences",
            "clients.audience",
            "identity_providers.id",
            "identity_providers.issuer",
            "identity_providers.client_id",
            "identity_providers.client_secret",
            "identity_providers.client_secret_env",
            "identity_providers.scopes",
            "identity_providers.display_name",
            "identity_providers.link_by_verified_email",
        ]
        .map(String::from),
    );
    for key in &keys {
        let mut parts = key.rsplit('.');
        let name = parts.next().unwrap();
        let parent = parts.next().unwrap_or("");
        let documented = sample.lines().any(|l| {
            let l = l.trim_start_matches('#').trim();
            l.starts_with(&format!("{name} ="))
                || l.starts_with(&format!("[{key}]"))
                // An inline table: `parent = { name = …, … }`.
                || (l.starts_with(&format!("{parent} = {{")) && l.contains(&format!(" {name} =")))
        });
        assert!(
            documented,
            "docs/latchkey.sample.toml does not document {key}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["--config", sample_path, "check-config"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 26 item 15: `server.trusted_proxies` takes bare addresses, IPv4 and IPv6 (as
/// docs/haproxy.cfg writes the balancer), as well as CIDR ranges, from the file and from
/// the environment; anything else is one clear line naming the key and the value.
#[test]
fn trusted_proxies_take_bare_addresses_as_well_as_cidr_ranges() {
    let (code, stderr) = check_config(
        "[server]\ntrusted_proxies = [\"10.0.0.10\", \"fd00::10\", \"10.1.0.0/16\", \"2001:db8::/32\"]\n",
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = check_config(
        "",
        &[("LATCHKEY_SERVER__TRUSTED_PROXIES", r#"["10.0.0.10"]"#)],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = check_config("[server]\ntrusted_proxies = [\"10.0.0.300\"]\n", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("trusted_proxies") && stderr.contains("10.0.0.300"),
        "{stderr}"
    );
}

/// Issue 26 item 15, end to end: the real binary configured as docs/haproxy.cfg shows
/// (`LATCHKEY_SERVER__TRUSTED_PROXIES='["…"]'`, a bare address) believes that peer's
/// `X-Forwarded-For`: the session records the client's address, not the balancer's.
#[tokio::test]
async fn a_bare_trusted_proxy_address_in_the_environment_is_believed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let served = tokio::task::spawn_blocking(move || {
        Served::start_in(
            &path,
            &[("LATCHKEY_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)],
        )
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let res = client
        .post(served.url("/signup"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = client
        .post(served.url("/login"))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    let sessions: serde_json::Value = client
        .get(served.url("/me/sessions"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions[0]["ip"], "203.0.113.7");
}

/// A newcomer's `users add` with nothing typed is told that no password was given (not
/// that it is "too short"), and no user is created.
#[tokio::test]
async fn users_add_with_an_empty_password_says_none_was_given_and_creates_nobody() {
    let app = crate::helpers::spawn_app().await;
    let out = app.cli(&["users", "add", "newcomer"], "\n").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no password was given"), "{err}");
    assert!(!err.contains("short"), "{err}");
    assert_eq!(
        app.sql().count(
            "SELECT COUNT(*) FROM users WHERE username = ?1",
            &["newcomer"]
        ),
        0
    );
}

/// A TOML syntax error keeps the parser's snippet (the line and a caret under the
/// mistake) instead of being squashed onto one line.
#[test]
fn a_toml_syntax_error_shows_the_line_and_where_on_it() {
    let (code, stderr) = check_config("[server]\nbind = \"127.0.0.1:0\"\nworkers = = 2\n", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("latchkey: "), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("workers = = 2")),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.trim_end().ends_with('^')),
        "{stderr}"
    );
}

/// `check-config` only checks: in a folder with nothing but the configuration it
/// creates no database and no signing key there (it says `serve` will), and still loads
/// everything `serve` would.
#[test]
fn check_config_on_a_first_start_creates_nothing_beside_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("latchkey.toml"), "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("check-config")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration ok"), "{stdout}");
    assert!(stdout.contains("latchkey serve creates it"), "{stdout}");
    assert!(stdout.contains("latchkey serve generates one"), "{stdout}");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["latchkey.toml".to_owned()]);
}
