//! The rotation rules, table-driven, through the store interface on an in-memory
//! SQLite database (no HTTP, no writer thread). Each case builds a family of three
//! generations (0 and 1 rotated, 2 the head), sets the scene, presents one token and
//! checks the outcome and what it did to the family.

use ring::rand::SystemRandom;

use super::*;
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::sessions::{CreatedSession, LoginOutcome, NewSession};
use crate::domain::{Lifetimes, LimitPolicy, Username};
use crate::keys::Sealer;
use crate::store::sqlite::{in_memory, run_test_job};

const INTERVAL_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;
const T0: Millis = 1_700_000_000_000;

struct Family {
    conn: rusqlite::Connection,
    sealer: Sealer,
    _keys: tempfile::TempDir,
    session_id: String,
    user_id: String,
    /// Generation 0, 1 and 2 (the head).
    tokens: Vec<RefreshToken>,
    /// When generation 2 was issued.
    head_at: Millis,
}

fn request(token: &RefreshToken) -> RefreshRequest {
    RefreshRequest {
        token: token.clone(),
        client_id: None,
        scope: None,
        reuse_interval_ms: INTERVAL_MS,
        ctx: ClientContext::default(),
    }
}

fn present(f: &Family, now: Millis, req: RefreshRequest) -> RefreshOutcome {
    let rng = SystemRandom::new();
    run_test_job(&f.conn, async |tx| {
        refresh(tx, now, &rng, &f.sealer, &req, |_| DAY_MS).await
    })
    .unwrap()
}

fn family() -> Family {
    let conn = in_memory();
    let keys = tempfile::tempdir().unwrap();
    let sealer = Sealer::load_or_generate(keys.path()).unwrap();
    let rng = SystemRandom::new();
    let created = run_test_job(&conn, async |tx| {
        let name = Username::parse("alice").unwrap();
        let SignupOutcome::Created(user) =
            accounts::create_user(tx, T0, &name, "h".into(), vec![]).await?
        else {
            panic!("taken")
        };
        let new = NewSession {
            user_id: user.id,
            client_id: "app".into(),
            scope: Scope::parse("read write").unwrap(),
            remember_me: true,
            lifetimes: Lifetimes {
                idle_ms: DAY_MS,
                absolute_ms: 30 * DAY_MS,
            },
            max_per_user: 5,
            limit_policy: LimitPolicy::EvictOldest,
            ctx: ClientContext::default(),
        };
        match sessions::create_session(tx, T0, &rng, &new).await? {
            LoginOutcome::Created(c) => Ok(*c),
            _ => panic!("no session"),
        }
    })
    .unwrap();
    let CreatedSession { session, token, .. } = created;
    let mut f = Family {
        conn,
        sealer,
        _keys: keys,
        session_id: session.id,
        user_id: session.user_id,
        tokens: vec![token],
        head_at: T0,
    };
    // Two rotations, a minute apart: generation 0 and 1 become rotated tokens.
    for i in 1..=2 {
        let at = T0 + i * 60_000;
        let RefreshOutcome::Rotated(g) = present(&f, at, request(&f.tokens[i as usize - 1])) else {
            panic!("setup rotation {i} failed");
        };
        f.tokens.push(g.token);
        f.head_at = at;
    }
    f
}

fn session(f: &Family) -> Session {
    let id = f.session_id.clone();
    run_test_job(&f.conn, async move |tx| tx.session_by_id(&id).await)
        .unwrap()
        .unwrap()
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// A new head, one generation on.
    Rotated,
    /// The current head again.
    SameHead,
    /// The family is revoked, with reason `reuse`.
    ReuseRevokes,
    Rejected(Rejection),
}

struct Case {
    name: &'static str,
    /// Which generation is presented (0, 1 or 2 = head; 9 = a token never issued).
    generation: usize,
    /// Milliseconds after the head was issued.
    after_head_ms: i64,
    client_id: Option<&'static str>,
    scope: Option<&'static str>,
    scene: fn(&Family),
    expect: Expect,
}

fn nothing(_: &Family) {}

fn revoke_family(f: &Family) {
    let id = f.session_id.clone();
    run_test_job(&f.conn, async move |tx| {
        tx.revoke_session(&id, T0 + 1, RevocationReason::Logout)
            .await
    })
    .unwrap();
}

fn disable_user(f: &Family) {
    let id = f.user_id.clone();
    run_test_job(&f.conn, async move |tx| tx.set_disabled(&id, T0 + 1).await).unwrap();
}

const CASES: &[Case] = &[
    Case {
        name: "the head rotates (RFC 9700 §4.14.2)",
        generation: 2,
        after_head_ms: 1_000,
        client_id: None,
        scope: None,
        scene: nothing,
        expect: Expect::Rotated,
    },
    Case {
        name: "the head presented by its own client rotates",
        generation: 2,
        after_head_ms: 1_000,
        client_id: Some("app"),
        scope: Some("read"),
        scene: nothing,
        expect: Expect::Rotated,
    },
    Case {
        name: "the parent inside the reuse interval answers the same head",
        generation: 1,
        after_head_ms: INTERVAL_MS,
        client_id: None,
        scope: None,
        scene: nothing,
        expect: Expect::SameHead,
    },
    Case {
        name: "the parent after the reuse interval is reuse",
        generation: 1,
        after_head_ms: INTERVAL_MS + 1,
        client_id: None,
        scope: None,
        scene: nothing,
        expect: Expect::ReuseRevokes,
    },
    Case {
        name: "the grandparent, even at once, is reuse",
        generation: 0,
        after_head_ms: 1,
        client_id: None,
        scope: None,
        scene: nothing,
        expect: Expect::ReuseRevokes,
    },
    Case {
        name: "another client gets invalid_grant (RFC 6749 §10.4)",
        generation: 2,
        after_head_ms: 1_000,
        client_id: Some("other"),
        scope: None,
        scene: nothing,
        expect: Expect::Rejected(Rejection::OtherClient),
    },
    Case {
        name: "a wider scope is refused (RFC 6749 §6)",
        generation: 2,
        after_head_ms: 1_000,
        client_id: None,
        scope: Some("read admin"),
        scene: nothing,
        expect: Expect::Rejected(Rejection::ScopeTooWide),
    },
    Case {
        name: "an ended session's head is refused",
        generation: 2,
        after_head_ms: 1_000,
        client_id: None,
        scope: None,
        scene: revoke_family,
        expect: Expect::Rejected(Rejection::SessionEnded),
    },
    Case {
        name: "an idle-expired session's head is refused",
        generation: 2,
        after_head_ms: DAY_MS,
        client_id: None,
        scope: None,
        scene: nothing,
        expect: Expect::Rejected(Rejection::SessionEnded),
    },
    Case {
        name: "a disabled user's head is refused",
        generation: 2,
        after_head_ms: 1_000,
        client_id: None,
        scope: None,
        scene: disable_user,
        expect: Expect::Rejected(Rejection::SessionEnded),
    },
    Case {
        name: "a token never issued is unknown",
        generation: 9,
        after_head_ms: 1_000,
        client_id: None,
        scope: None,
        scene: nothing,
        expect: Expect::Rejected(Rejection::Unknown),
    },
];

#[test]
fn rotation_rules_table() {
    for case in CASES {
        let f = family();
        (case.scene)(&f);
        let before = session(&f);
        let token = match case.generation {
            9 => RefreshToken::generate(&SystemRandom::new()).unwrap(),
            g => f.tokens[g].clone(),
        };
        let mut req = request(&token);
        req.client_id = case.client_id.map(str::to_owned);
        req.scope = case.scope.map(|s| Scope::parse(s).unwrap());
        let outcome = present(&f, f.head_at + case.after_head_ms, req);
        let after = session(&f);
        let got = match outcome {
            RefreshOutcome::Rotated(g) => {
                assert_eq!(g.session.head_generation, 3, "{}", case.name);
                assert_ne!(&g.token, &f.tokens[2], "{}", case.name);
                assert_eq!(after.head_generation, 3, "{}", case.name);
                Expect::Rotated
            }
            RefreshOutcome::Replayed(g) => {
                assert_eq!(&g.token, &f.tokens[2], "{}: the same head", case.name);
                assert_eq!(after.head_generation, 2, "{}: no fork", case.name);
                Expect::SameHead
            }
            RefreshOutcome::ReuseDetected => {
                assert_eq!(
                    after.revoked_reason,
                    Some(RevocationReason::Reuse),
                    "{}",
                    case.name
                );
                assert_eq!(after.sealed_head, None, "{}: seal wiped", case.name);
                Expect::ReuseRevokes
            }
            RefreshOutcome::Rejected(r) => {
                assert_eq!(
                    after.head_generation, before.head_generation,
                    "{}",
                    case.name
                );
                assert_eq!(after.revoked_at, before.revoked_at, "{}", case.name);
                Expect::Rejected(r)
            }
        };
        assert_eq!(got, case.expect, "{}", case.name);
    }
}

#[test]
fn after_reuse_the_head_is_refused_too() {
    let f = family();
    assert!(matches!(
        present(&f, f.head_at + 1, request(&f.tokens[0])),
        RefreshOutcome::ReuseDetected
    ));
    assert!(matches!(
        present(&f, f.head_at + 2, request(&f.tokens[2])),
        RefreshOutcome::Rejected(Rejection::SessionEnded)
    ));
}

#[test]
fn a_second_rotation_of_one_head_cannot_fork_the_family() {
    let f = family();
    // Both read the same head; the store refuses to move it twice.
    let mut stale = session(&f);
    assert!(matches!(
        present(&f, f.head_at + 1, request(&f.tokens[2])),
        RefreshOutcome::Rotated(_)
    ));
    stale.head_generation = 3;
    let err = run_test_job(&f.conn, async move |tx| tx.advance_head(&stale).await);
    assert!(err.is_err(), "the head moved twice from generation 2");
}
