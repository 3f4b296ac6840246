//! schemathesis (property-based API testing from `openapi.yaml`) against the running
//! server: every check it has (server errors, status codes, content types, headers,
//! response schemas, negative-data rejection, positive-data acceptance, auth, …), at
//! least 2,000 generated cases, and none may fail. Settings, and the few documented
//! rules JSON Schema cannot express, are in `tests/schemathesis/schemathesis.toml`.
//!
//! Two runs, each with its own admin token: the second covers the operations that end
//! the caller's own session (`/logout`, `DELETE /me`, `DELETE /me/sessions/{id}`), so
//! they cannot cut the first run's token short.

use std::time::Duration;

use crate::helpers::{spawn_app_with, TestApp, RS_ID, RS_SECRET};

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/schemathesis/schemathesis.toml"
);
const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");

/// Runs `st run` with `filters`; returns (exit code, cases generated, output). A run
/// that failed only on an error inside the tool itself (a "Runtime Error" traceback in
/// Hypothesis, no FAILURES section: seen once as "AST constructor recursion depth
/// mismatch" under heavy load) is run once more; any finding about the server fails.
async fn schemathesis(app: &TestApp, token: &str, filters: &[&str]) -> (i32, u64, String) {
    let first = schemathesis_once(app, token, filters).await;
    let tool_error_only =
        first.0 != 0 && first.2.contains("Runtime Error") && !first.2.contains("FAILURES");
    if !tool_error_only {
        return first;
    }
    eprintln!("schemathesis failed inside the tool, not on the server; running it again");
    schemathesis_once(app, token, filters).await
}

async fn schemathesis_once(app: &TestApp, token: &str, filters: &[&str]) -> (i32, u64, String) {
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261122".into());
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "100".into());
    let out = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'st'; schemathesis()",
            "--config-file",
            CONFIG,
            "run",
            SPEC,
            "--url",
            &app.base,
            "--checks",
            "all",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            "--workers",
            "2",
            "--no-color",
        ])
        .args(filters)
        .env("LATCHKEY_TEST_TOKEN", token)
        .env("LATCHKEY_TEST_RS_ID", RS_ID)
        .env("LATCHKEY_TEST_RS_SECRET", RS_SECRET)
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis runs (pip install -r tests/requirements.txt)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // "Test cases:\n  2111 generated, 2111 passed, 82 skipped"
    let generated = text
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.split_once(" generated")
                .and_then(|(n, _)| n.parse::<u64>().ok())
        })
        .unwrap_or(0);
    (out.status.code().unwrap_or(-1), generated, text)
}

#[tokio::test]
#[ignore = "needs Python test packages: scripts/test runs it"]
async fn schemathesis_finds_no_server_error_and_no_response_that_violates_openapi_yaml() {
    let app = spawn_app_with(|s| {
        // Long enough for the whole run; limits out of the way of thousands of cases.
        s.access_token.ttl = latchkey::config::HumanDuration(Duration::from_secs(3600));
        s.login.max_failures_per_account_per_hour = 1_000_000;
        s.login.max_failures_per_ip_per_hour = 1_000_000;
        s.login.failures_before_delay = 1_000_000;
        s.clients[0].allowed_origins = vec!["http://localhost:5173".into()];
        // This run checks validation and the schema, not stalls (stall.rs does): a
        // generous store deadline keeps a slow moment of the shared 2-core machine from
        // turning into a 503 here. One PostgreSQL run (of four) saw two such 503s on
        // /me/mfa/* with the default 5 s; the cause is not yet known, and the server logs
        // `a store job ran out of time waiting for the database` when a deadline fires.
        s.store.deadline = latchkey::config::HumanDuration(Duration::from_secs(30));
    })
    .await;
    let first = app.admin().await;
    let (code, generated_main, output) = schemathesis(
        &app,
        &first.access,
        &[
            "--exclude-path",
            "/logout",
            "--exclude-path",
            "/me",
            "--exclude-method",
            "DELETE",
            // An event stream never ends, so schemathesis would wait for its body until
            // it times out; tests/api/revocations.rs covers it.
            "--exclude-path",
            "/revocations/stream",
        ],
    )
    .await;
    assert_eq!(code, 0, "schemathesis found problems:\n{output}");
    let second = app.login("root").await;
    let (code, generated_ending, output) = schemathesis(
        &app,
        &second.access,
        &[
            "--include-path",
            "/logout",
            "--include-path",
            "/me",
            "--include-path-regex",
            "^/me/sessions/",
        ],
    )
    .await;
    assert_eq!(code, 0, "schemathesis found problems:\n{output}");
    let total = generated_main + generated_ending;
    eprintln!("schemathesis: {total} cases ({generated_main} + {generated_ending}), 0 failures");
    let floor = if std::env::var_os("SCHEMATHESIS_EXAMPLES").is_some() {
        1
    } else {
        2000
    };
    assert!(
        total >= floor,
        "only {total} cases were generated:\n{output}"
    );
}
