//! A database that stalls (docs/contract.md "Refresh rotation": store jobs have a
//! deadline; docs/architecture.md "Deadlines"). The stall is real: another process holds
//! SQLite's write lock (a stuck writer) or an exclusive lock on PostgreSQL's `sessions`
//! table, as an operator's long migration or a runaway transaction would.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const DEADLINE: Duration = Duration::from_secs(1);

async fn app_with_short_deadline() -> TestApp {
    spawn_app_with(|s| s.store.deadline = latchkey::config::HumanDuration(DEADLINE)).await
}

fn reuse_events(app: &TestApp, sid: &str) -> i64 {
    app.sql().count(
        "SELECT COUNT(*) FROM events WHERE kind = 'refresh_token_reuse_detected' AND session_id = ?1",
        &[sid],
    )
}

#[tokio::test]
async fn a_client_retrying_its_token_through_a_stall_is_never_taken_for_a_thief() {
    let app = app_with_short_deadline().await;
    let t = app.user_with_session("stalled").await;
    let stall = app.sql().stall(Duration::from_secs(3));

    // The client resends its token until it is answered, as a client with a timeout does.
    let mut unavailable = 0;
    let started = Instant::now();
    let rotated = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never answered"
        );
        let asked = Instant::now();
        let res = app.refresh(&t.refresh).await;
        match res.status() {
            StatusCode::OK => break Tokens::from_response(res).await,
            StatusCode::SERVICE_UNAVAILABLE => {
                // Answered at the deadline, not when the database came back.
                assert!(asked.elapsed() < DEADLINE + Duration::from_millis(900));
                assert!(res.headers().get("retry-after").is_some());
                assert_error(
                    res,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                )
                .await;
                unavailable += 1;
            }
            other => panic!("a stall answered {other}: {}", res.text().await.unwrap()),
        }
    };
    stall.release_wait();
    assert!(
        unavailable >= 1,
        "the stall should have delayed the refresh past its deadline"
    );

    // Nothing given up on committed later: the session is whole, the rotation happened
    // once, and the token the client now holds is the head.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reuse_events(&app, &t.session_id), 0);
    let again = app.refresh(&t.refresh).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the parent within the interval gets the grace answer"
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["refresh_token"], rotated.refresh.as_str());
    let next = app.rotate(&rotated.refresh).await;
    assert_ne!(next.refresh, rotated.refresh);
    assert_eq!(reuse_events(&app, &t.session_id), 0);
}

#[tokio::test]
async fn the_reuse_interval_runs_from_the_rotations_commit_not_the_requests_arrival() {
    // A deadline longer than the stall: the refresh waits it out and rotates afterwards.
    let app = spawn_app_with(|s| {
        s.store.deadline = latchkey::config::HumanDuration(Duration::from_secs(8))
    })
    .await;
    let t = app.user_with_session("late-commit").await;
    let interval = app.settings.refresh.reuse_interval.0;

    let stall = app.sql().stall(Duration::from_millis(1500));
    let refreshing = {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/oauth/token"),
            t.refresh.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ])
                .send()
                .await
                .unwrap()
        })
    };
    // While the request waits for the database, more than the interval passes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.advance(interval + Duration::from_secs(1));
    stall.release_wait();
    let res = refreshing.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let rotated = Tokens::from_response(res).await;

    // The parent, presented right after the rotation committed, is inside the interval.
    let again = app.refresh(&t.refresh).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["refresh_token"], rotated.refresh.as_str());
    assert_eq!(reuse_events(&app, &t.session_id), 0);
}

#[tokio::test]
async fn readyz_is_503_while_the_store_cannot_complete_a_probe_within_two_seconds() {
    let app = app_with_short_deadline().await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let stall = app.sql().stall(Duration::from_secs(4));
    let asked = Instant::now();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        asked.elapsed() < Duration::from_millis(3500),
        "the probe is bounded"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["store"], false);
    stall.release_wait();
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_login_that_misses_its_deadline_creates_no_session() {
    let app = app_with_short_deadline().await;
    assert_eq!(
        app.signup("late-login", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let stall = app.sql().stall(Duration::from_secs(3));
    let res = app.login_as("late-login", serde_json::json!({})).await;
    assert_error(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    stall.release_wait();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sessions = app.sql().count(
        "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = ?1",
        &["late-login"],
    );
    assert_eq!(
        sessions, 0,
        "a login answered 503 must not leave a session behind"
    );
}
