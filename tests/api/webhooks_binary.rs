//! Webhooks through the real binary: a kill -9 between commit and delivery, the
//! `latchkey webhooks` commands and `check-config` over the `[webhooks]` table.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::helpers::*;
use crate::webhook_receiver::{new_secret, Receiver};

/// The real binary on `dir` with `toml` as its `latchkey.toml` (SQLite in `dir`, or
/// `database` on PostgreSQL runs).
async fn serve_binary(dir: &std::path::Path, database: Option<&str>, toml: &str) -> Served {
    std::fs::write(dir.join("latchkey.toml"), toml).unwrap();
    let dir = dir.to_owned();
    let mut env: Vec<(&str, String)> = vec![("LATCHKEY_LOG__LEVEL", "warn".into())];
    if let Some(url) = database {
        env.push(("LATCHKEY_STORE__URL", url.to_owned()));
        let kek = dir.join("kek.bin");
        if !kek.exists() {
            crate::db::write_kek(&dir);
        }
        env.push(("LATCHKEY_KEYS__KEK_FILE", kek.display().to_string()));
    }
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Served::start_in(&dir, &env)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_event_committed_before_a_kill_9_is_delivered_after_the_restart() {
    let (secret, key) = new_secret();
    let rx = Receiver::start(vec![key]).await;
    // The first attempt hangs: the server is killed with the delivery claimed and unanswered.
    rx.status.store(0, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let database = crate::db::postgres_run().then(crate::db::fresh_database);
    let toml = format!(
        "[webhooks]\ntimeout = \"1s\"\nretry_backoff = \"100ms\"\n\n\
         [[webhooks.endpoints]]\nid = \"siem\"\nurl = \"{}\"\nsecret = \"{secret}\"\n\
         events = [\"*\"]\n",
        rx.url
    );
    let mut served = serve_binary(dir.path(), database.as_deref(), &toml).await;
    let client = reqwest::Client::new();
    let res = client
        .post(served.url("/signup"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "the event has committed");
    let first = rx
        .wait_until("the attempt in flight", |g| !g.is_empty())
        .await;
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &served.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let _ = served.child.wait();
    rx.status.store(204, Ordering::SeqCst);
    let before = rx.received().len();
    let _restarted = serve_binary(dir.path(), database.as_deref(), &toml).await;
    // The dead process's lease (2 × timeout + 1 s) ends, and the new one sends it.
    let got = rx
        .wait_until("the delivery after the restart", |g| g.len() > before)
        .await;
    let again = &got[before];
    assert_eq!(again.id, first[0].id, "the same webhook-id");
    assert_eq!(again.body, first[0].body);
    assert_eq!(again.verified_by, [true]);
    assert_eq!(again.json()["type"], "user_created");
}

#[tokio::test]
async fn the_cli_lists_endpoints_and_sends_a_signed_test_delivery_directly() {
    let (secret, key) = new_secret();
    let rx = Receiver::start(vec![key]).await;
    let dir = tempfile::tempdir().unwrap();
    let database = crate::db::postgres_run().then(crate::db::fresh_database);
    let toml = format!(
        "[[webhooks.endpoints]]\nid = \"siem\"\nurl = \"{}\"\nsecret = \"{secret}\"\n\
         events = [\"user_created\"]\n",
        rx.url
    );
    // A server start stores the configured endpoints; the signup is delivered.
    let served = serve_binary(dir.path(), database.as_deref(), &toml).await;
    reqwest::Client::new()
        .post(served.url("/signup"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    rx.wait_until("the signup", |g| g.len() == 1).await;
    drop(served);
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
        c.current_dir(dir.path())
            .args(args)
            .env("LATCHKEY_LOG__LEVEL", "warn");
        if let Some(url) = &database {
            c.env("LATCHKEY_STORE__URL", url)
                .env("LATCHKEY_KEYS__KEK_FILE", dir.path().join("kek.bin"));
        }
        c.output().unwrap()
    };
    // The receiver has the delivery; the sender records it as delivered just after the
    // receiver's answer, so the listing may lag it by moments.
    let mut text = String::new();
    for _ in 0..50 {
        let out = cli(&["webhooks", "list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with("siem")).unwrap();
        let cols: Vec<_> = line.split_whitespace().collect();
        if cols[1..5] == ["enabled", "0", "0", "1"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let line = text.lines().find(|l| l.starts_with("siem")).unwrap();
    let cols: Vec<_> = line.split_whitespace().collect();
    assert_eq!(cols[1..5], ["enabled", "0", "0", "1"], "{text}");
    assert!(!text.contains(&secret[6..]), "never the secret");

    let out = cli(&["webhooks", "test", "siem"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = rx.wait_until("the test delivery", |g| g.len() == 2).await;
    assert_eq!(got[1].json()["type"], "webhook_test");
    assert_eq!(got[1].verified_by, [true]);
    rx.status.store(500, Ordering::SeqCst);
    let out = cli(&["webhooks", "test", "siem"]);
    assert!(!out.status.success(), "a non-2xx answer fails the command");
    assert!(String::from_utf8_lossy(&out.stderr).contains("500"));
    let out = cli(&["webhooks", "test", "nope"]);
    assert!(!out.status.success());
}

#[test]
fn check_config_layers_env_over_the_webhooks_table_and_refuses_bad_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = new_secret();
    let write = |events: &str, secret: &str| {
        let toml = format!(
            "[webhooks]\ntimeout = \"3s\"\n\n[[webhooks.endpoints]]\nid = \"siem\"\n\
             url = \"https://siem.example/hook\"\nsecret = [\"{secret}\"]\nevents = [{events}]\n"
        );
        std::fs::write(dir.path().join("l.toml"), toml).unwrap();
    };
    let check = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["--config", "l.toml", "check-config"])
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    write("\"new_device_login\"", &secret);
    assert!(check(&[]).0, "{}", check(&[]).1);
    // LATCHKEY_WEBHOOKS__* reaches the [webhooks] table beside the endpoint array.
    let (ok, text) = check(&[("LATCHKEY_WEBHOOKS__TIMEOUT", "0")]);
    assert!(!ok && text.contains("webhooks.timeout"), "{text}");
    write("\"new_device_logon\"", &secret);
    let (ok, text) = check(&[]);
    assert!(!ok && text.contains("new_device_logon"), "{text}");
    write("\"*\"", "whsec_c2hvcnQ=");
    let (ok, text) = check(&[]);
    assert!(
        !ok && text.contains("24 random bytes") && !text.contains("c2hvcnQ"),
        "{text}"
    );
}
