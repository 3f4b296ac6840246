//! Durability under SIGKILL (issue "Fast and durable"): clients walk their own refresh
//! families as fast as they can and remember every head they were given in a 200; the
//! server is killed with SIGKILL at a random moment and restarted on the same folder.
//! Every acknowledged head must still refresh (or, if the kill lost the reply to a
//! rotation that did commit, be the parent inside the reuse interval, which also
//! answers 200 with the committed head). No family may be lost or forked, and SQLite's
//! integrity check must pass. Five rounds per run (`CRASH_ROUNDS` to change).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::helpers::{Served, PASSWORD};

const FAMILIES: usize = 16;

pub const ENV: &[(&str, &str)] = &[
    ("LATCHKEY_LOG__LEVEL", "warn"),
    ("LATCHKEY_RATE_LIMITS__TOKEN__PER_MINUTE", "100000000"),
    ("LATCHKEY_RATE_LIMITS__TOKEN__BURST", "100000000"),
    ("LATCHKEY_RATE_LIMITS__SIGNUP__PER_MINUTE", "100000"),
    ("LATCHKEY_RATE_LIMITS__SIGNUP__BURST", "100000"),
    ("LATCHKEY_RATE_LIMITS__LOGIN__PER_MINUTE", "100000"),
    ("LATCHKEY_RATE_LIMITS__LOGIN__BURST", "100000"),
];

/// Starts the server on `dir`'s SQLite file, or on `database` (PostgreSQL runs).
async fn start(dir: &std::path::Path, database: Option<&str>) -> Served {
    let dir = dir.to_owned();
    let mut env: Vec<(&str, String)> = ENV.iter().map(|(k, v)| (*k, v.to_string())).collect();
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

fn kill(served: &mut Served) {
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &served.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let _ = served.child.wait();
}

async fn refresh(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let res = client
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await?;
    let status = res.status();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn sigkill_during_refresh_load_loses_no_acknowledged_rotation() {
    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let database = crate::db::postgres_run().then(crate::db::fresh_database);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Sixteen families, each a user's session.
    let mut served = start(dir.path(), database.as_deref()).await;
    let mut heads = Vec::new();
    for i in 0..FAMILIES {
        let name = format!("crash{i}");
        let res = client
            .post(served.url("/signup"))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = client
            .post(served.url("/login"))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        heads.push(body["refresh_token"].as_str().unwrap().to_owned());
    }

    let mut acknowledged_total = 0u64;
    let mut checked_total = 0u64;
    for round in 0..rounds {
        // Load: each family walked by its own client until the server dies.
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let shared: Vec<Arc<Mutex<String>>> = heads
            .iter()
            .map(|h| Arc::new(Mutex::new(h.clone())))
            .collect();
        let mut walkers = Vec::new();
        for head in &shared {
            let (client, base, head, acked) =
                (client.clone(), served.url(""), head.clone(), acked.clone());
            walkers.push(tokio::spawn(async move {
                loop {
                    let current = head.lock().await.clone();
                    match refresh(&client, &base, &current).await {
                        Ok((StatusCode::OK, body)) => {
                            *head.lock().await = body["refresh_token"].as_str().unwrap().to_owned();
                            acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok((status, body)) => panic!("refresh under load: {status} {body}"),
                        Err(_) => return, // the server is gone
                    }
                }
            }));
        }
        // A random moment between 150 and 900 ms into the load.
        let mut byte = [0u8; 2];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte).unwrap();
        let delay = 150 + u64::from(u16::from_le_bytes(byte)) % 750;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        kill(&mut served);
        for w in walkers {
            w.await.unwrap();
        }
        let acked = acked.load(std::sync::atomic::Ordering::Relaxed);
        acknowledged_total += acked;

        // Restart on the same folder, well inside the 10 s reuse interval.
        served = start(dir.path(), database.as_deref()).await;
        let mut next = Vec::new();
        for head in &shared {
            let token = head.lock().await.clone();
            let (status, body) = refresh(&client, &served.url(""), &token).await.unwrap();
            assert_eq!(
                status,
                StatusCode::OK,
                "round {round}: an acknowledged head no longer refreshes: {body}"
            );
            next.push(body["refresh_token"].as_str().unwrap().to_owned());
            checked_total += 1;
        }
        eprintln!(
            "crash round {round}: killed after {delay} ms and {acked} acknowledged rotations; all {FAMILIES} heads refreshed after restart"
        );
        heads = next;
    }
    kill(&mut served);

    // No family lost or forked, and (SQLite) the file is sound.
    let db = match &database {
        Some(url) => crate::db::TestDb::Postgres(url.clone()),
        None => {
            let path = dir.path().join("data/latchkey.db");
            let conn = rusqlite::Connection::open(&path).unwrap();
            let integrity: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(integrity, "ok");
            crate::db::TestDb::Sqlite(path)
        }
    };
    let live = db.count(
        "SELECT count(*) FROM sessions WHERE revoked_at IS NULL",
        &[],
    );
    assert_eq!(live, FAMILIES as i64, "no family was revoked or lost");
    let forks = db.count(
        "SELECT count(*) FROM sessions WHERE head_hash IS NULL OR length(head_hash) != 32",
        &[],
    );
    assert_eq!(forks, 0, "every family has exactly one head");
    let reuse = db.count(
        "SELECT count(*) FROM events WHERE kind = 'refresh_token_reuse_detected'",
        &[],
    );
    assert_eq!(reuse, 0);
    eprintln!(
        "crash test: {rounds} SIGKILLs, {acknowledged_total} acknowledged rotations, {checked_total} heads checked after restarts, integrity ok"
    );
    assert!(acknowledged_total > 0);
}
