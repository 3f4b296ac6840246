//! Model-based test of the refresh-token family state machine: random operation
//! sequences run against the real server (manual clock) and a small model; every
//! response must match the model's prediction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, PASSWORD};

const INTERVAL_MS: i64 = 10_000;

#[derive(Debug, Clone)]
enum Op {
    /// Refresh session `s` with its head.
    RefreshHead(usize),
    /// Refresh with the head's parent.
    RefreshParent(usize),
    /// Replay the token `back` generations before the head (2..).
    ReplayOld(usize, usize),
    /// Move the clock by this many ms.
    Advance(u64),
    /// RFC 7009 revoke with the head token.
    Revoke(usize),
    LogoutOthers(usize),
    LogoutGlobal(usize),
    /// Another login of the same user.
    NewSession,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize).prop_map(Op::RefreshHead),
        3 => (0..3usize).prop_map(Op::RefreshParent),
        1 => (0..3usize, 2..5usize).prop_map(|(s, b)| Op::ReplayOld(s, b)),
        2 => prop_oneof![Just(3_000u64), Just(9_000), Just(11_000)].prop_map(Op::Advance),
        1 => (0..3usize).prop_map(Op::Revoke),
        1 => (0..3usize).prop_map(Op::LogoutOthers),
        1 => (0..3usize).prop_map(Op::LogoutGlobal),
        1 => Just(Op::NewSession),
    ]
}

/// The model of one family.
struct Family {
    /// Tokens in generation order; the last is the head.
    tokens: Vec<String>,
    /// `rotated_at[i]`: model time when token i was rotated.
    rotated_at: Vec<Option<i64>>,
    access: String,
    alive: bool,
}

struct World {
    now: i64,
    families: Vec<Family>,
}

enum Expect {
    /// 200 with a new head.
    Rotate,
    /// 200 with exactly this head again.
    SameHead(String),
    /// 400 invalid_grant; `kills`: the family is revoked by it.
    InvalidGrant { kills: bool },
}

impl World {
    fn expect_refresh(&self, f: usize, index: usize) -> Expect {
        let fam = &self.families[f];
        if !fam.alive {
            return Expect::InvalidGrant { kills: false };
        }
        let head = fam.tokens.len() - 1;
        if index == head {
            return Expect::Rotate;
        }
        if index + 1 == head {
            if let Some(at) = fam.rotated_at[index] {
                if self.now - at <= INTERVAL_MS {
                    return Expect::SameHead(fam.tokens[head].clone());
                }
            }
        }
        Expect::InvalidGrant { kills: true }
    }
}

async fn login(app: &TestApp, user: &str) -> Family {
    let res = app
        .post_json("/login", &json!({"username": user, "password": PASSWORD}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    Family {
        tokens: vec![body["refresh_token"].as_str().unwrap().to_owned()],
        rotated_at: vec![None],
        access: body["access_token"].as_str().unwrap().to_owned(),
        alive: true,
    }
}

async fn run_case(app: &TestApp, user: &str, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = World {
        now: 0,
        families: vec![login(app, user).await],
    };
    for (step, op) in ops.into_iter().enumerate() {
        let ctx = format!("step {step}: {op:?}");
        let pick = |s: usize, w: &World| s % w.families.len();
        match op {
            Op::RefreshHead(s) | Op::RefreshParent(s) | Op::ReplayOld(s, _) => {
                let f = pick(s, &w);
                let head = w.families[f].tokens.len() - 1;
                let back = match op {
                    Op::RefreshHead(_) => 0,
                    Op::RefreshParent(_) => 1,
                    Op::ReplayOld(_, b) => b,
                    _ => unreachable!(),
                };
                let Some(index) = head.checked_sub(back) else {
                    continue;
                };
                let expect = w.expect_refresh(f, index);
                let token = w.families[f].tokens[index].clone();
                let res = app.refresh(&token).await;
                let status = res.status();
                let body: Value = res.json().await.unwrap();
                match expect {
                    Expect::Rotate => {
                        prop_assert_eq!(status, StatusCode::OK, "{} {}", ctx, body);
                        let new = body["refresh_token"].as_str().unwrap().to_owned();
                        prop_assert!(!w.families[f].tokens.contains(&new), "{}", ctx);
                        let fam = &mut w.families[f];
                        fam.rotated_at[index] = Some(w.now);
                        fam.tokens.push(new);
                        fam.rotated_at.push(None);
                        fam.access = body["access_token"].as_str().unwrap().to_owned();
                    }
                    Expect::SameHead(h) => {
                        prop_assert_eq!(status, StatusCode::OK, "{} {}", ctx, body);
                        prop_assert_eq!(
                            body["refresh_token"].as_str().unwrap(),
                            h.as_str(),
                            "{}",
                            ctx
                        );
                        w.families[f].access = body["access_token"].as_str().unwrap().to_owned();
                    }
                    Expect::InvalidGrant { kills } => {
                        prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{} {}", ctx, body);
                        prop_assert_eq!(&body["error"], "invalid_grant", "{}", ctx);
                        if kills {
                            w.families[f].alive = false;
                        }
                    }
                }
            }
            Op::Advance(ms) => {
                app.advance(Duration::from_millis(ms));
                w.now += ms as i64;
            }
            Op::Revoke(s) => {
                let f = pick(s, &w);
                let head = w.families[f].tokens.last().unwrap().clone();
                let res = app.post_form("/oauth/revoke", &[("token", &head)]).await;
                prop_assert_eq!(res.status(), StatusCode::OK, "{}", ctx);
                w.families[f].alive = false;
            }
            Op::LogoutOthers(s) | Op::LogoutGlobal(s) => {
                let f = pick(s, &w);
                let global = matches!(op, Op::LogoutGlobal(_));
                let access = w.families[f].access.clone();
                let scope = if global { "global" } else { "others" };
                let res = app
                    .post_bearer("/logout", &access, &json!({"scope": scope}))
                    .await;
                if w.families[f].alive {
                    prop_assert_eq!(res.status(), StatusCode::NO_CONTENT, "{}", ctx);
                    for (i, fam) in w.families.iter_mut().enumerate() {
                        if global || i != f {
                            fam.alive = false;
                        }
                    }
                } else {
                    prop_assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{}", ctx);
                }
            }
            Op::NewSession => {
                if w.families.len() < 3 {
                    let fam = login(app, user).await;
                    w.families.push(fam);
                }
            }
        }
        // Introspection agrees with the model for every family, at every step (asked
        // about its newest access token: refresh tokens are never introspected).
        for (i, fam) in w.families.iter().enumerate() {
            let v = app.introspect(&fam.access).await;
            prop_assert_eq!(
                v["active"].as_bool(),
                Some(fam.alive),
                "{} family {}",
                ctx,
                i
            );
        }
    }
    Ok(())
}

#[test]
fn refresh_families_behave_like_the_model() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // One server for all cases (each case is its own user); long access tokens so the
    // clock moves never expire the ones logout uses.
    let app = rt.block_on(spawn_app_with(|s| {
        s.access_token.ttl = latchkey::config::HumanDuration::secs(30 * 86_400);
    }));
    let cases = std::env::var("MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    check_against_the_model(&rt, &app, cases);
}

/// Runs `cases` random operation sequences against `app` (one user each) and checks
/// every answer against the model. `app` may be one server or a balancer in front of
/// several (`cluster.rs`); its clock must be every server's clock.
pub fn check_against_the_model(rt: &tokio::runtime::Runtime, app: &TestApp, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let counter = &COUNTER;
    runner
        .run(&proptest::collection::vec(op(), 1..30), |ops| {
            let user = format!("user{}", counter.fetch_add(1, Ordering::SeqCst));
            rt.block_on(async {
                let res = app.signup(&user, PASSWORD).await;
                assert_eq!(res.status(), StatusCode::CREATED);
                run_case(app, &user, ops).await
            })
        })
        .unwrap();
}
