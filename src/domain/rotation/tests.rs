//! The rotation rules, table-driven, through the store interface on an in-memory
//! SQLite database (no HTTP, no writer thread). Each case builds a family of three
//! generations (0 and 1 rotated, 2 the head), sets the scene, presents one token and
//! checks the outcome and what it did to the family.

use ring::rand::SystemRandom;

use super::*;
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::sessions::{self, CreatedSession, LoginOutcome, NewSession};
use crate::domain::{Lifetimes, LimitPolicy, UserId, Username};
use crate::keys::Sealer;
use crate::store::sqlite::{in_memory, run_test_job};

const INTERVAL_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;
const T0: Millis = 1_700_000_000_000;

struct Family {
    conn: rusqlite::Connection,
    sealer: Sealer,
    _keys: tempfile::TempDir,
    session_id: SessionId,
    user_id: UserId,
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
        record_event: false,
        ctx: ClientContext::default(),
    }
}

fn present(f: &Family, now: Millis, req: RefreshRequest) -> RefreshOutcome {
    let rng = SystemRandom::new();
    run_test_job(&f.conn, async |tx| {
        refresh(tx, || now, &rng, &f.sealer, &req, |_| DAY_MS).await
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
            amr: vec![crate::domain::AuthMethod::Pwd],
            auth_time: None,
            idp: None,
        };
        match sessions::create_session(tx, T0, &rng, &sealer, &new).await? {
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
    /// Which generation is presented (0, 1 or 2 = head; 9 = a token never issued;
    /// 8 = an old generation forged from the session id alone).
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
        name: "an old generation forged from the session id alone is unknown, not reuse",
        generation: 8,
        after_head_ms: 1_000,
        client_id: None,
        scope: None,
        scene: nothing,
        expect: Expect::Rejected(Rejection::Unknown),
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
            8 => forged_old_generation(&f),
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

/// What someone who knows only the session id (every access token's `sid`) can build:
/// a located token for generation 0 under a key that is not latchkey's.
fn forged_old_generation(f: &Family) -> RefreshToken {
    let other_key = tempfile::tempdir().unwrap();
    let impostor = Sealer::load_or_generate(other_key.path()).unwrap();
    let sid = uuid::Uuid::parse_str(f.session_id.as_str()).unwrap();
    RefreshToken::issue(&SystemRandom::new(), &impostor, sid, 0).unwrap()
}

#[test]
fn a_rotation_writes_no_token_row_and_no_event_unless_asked_to() {
    let f = family();
    let count = |sql: &str| -> i64 { f.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let events = count("SELECT count(*) FROM events");
    let RefreshOutcome::Rotated(next) = present(&f, f.head_at + 1, request(&f.tokens[2])) else {
        panic!("the head rotates")
    };
    assert_eq!(
        count("SELECT count(*) FROM refresh_tokens"),
        0,
        "no token rows"
    );
    assert_eq!(
        count("SELECT count(*) FROM events"),
        events,
        "no event per refresh"
    );
    // events.record_refreshes = true keeps the old behaviour.
    let mut req = request(&next.token);
    req.record_event = true;
    assert!(matches!(
        present(&f, f.head_at + 2, req),
        RefreshOutcome::Rotated(_)
    ));
    assert_eq!(
        count("SELECT count(*) FROM events WHERE kind = 'token_refreshed'"),
        1
    );
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
        RefreshOutcome::Rejected(Rejection::EndedByReuse)
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

#[test]
fn legacy_tokens_issued_before_version_5_keep_working_until_they_rotate() {
    // A family as version 4 stored it: generations 0 and 1 as hashed rows, 1 the head.
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    let migrations = crate::store::sqlite::migrations::migrations();
    migrations.to_version(&mut conn, 4).unwrap();
    let rng = SystemRandom::new();
    let legacy: Vec<RefreshToken> = (0..2)
        .map(|_| RefreshToken::generate(&rng).unwrap())
        .collect();
    let sid = uuid::Uuid::new_v4().to_string();
    conn.execute_batch(&format!(
        "INSERT INTO users (id, username, username_key, password_hash, created_at)
             VALUES ('u', 'alice', 'alice', 'h', {T0});
         INSERT INTO sessions (id, user_id, client_id, scope, remember_me, created_at,
             last_active_at, idle_expires_at, expires_at, head_generation, head_issued_at)
             VALUES ('{sid}', 'u', 'app', '', 1, {T0}, {T0}, {idle}, {abs}, 1, {T0});",
        idle = T0 + DAY_MS,
        abs = T0 + 30 * DAY_MS
    ))
    .unwrap();
    for (generation, t) in legacy.iter().enumerate() {
        conn.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![&t.hash()[..], sid, generation as i64, T0],
        )
        .unwrap();
    }
    // The upgrade.
    crate::store::sqlite::migrate(&mut conn).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let f = Family {
        conn,
        sealer: Sealer::load_or_generate(keys.path()).unwrap(),
        _keys: keys,
        session_id: SessionId::from_stored(sid),
        // What the row above holds.
        user_id: UserId::from_stored("u".into()),
        tokens: legacy.clone(),
        head_at: T0,
    };
    // The legacy head rotates onto the located format…
    let RefreshOutcome::Rotated(next) = present(&f, T0 + 1_000, request(&legacy[1])) else {
        panic!("the legacy head rotates")
    };
    assert!(next.token.expose().starts_with("lk1_"));
    assert_eq!(session(&f).head_hash, Some(next.token.hash()));
    // …its legacy parent, within the interval, gets that same head back…
    let RefreshOutcome::Replayed(again) = present(&f, T0 + 2_000, request(&legacy[1])) else {
        panic!("the legacy parent replays within the interval")
    };
    assert_eq!(again.token, next.token);
    // …the located head rotates on…
    assert!(matches!(
        present(&f, T0 + 3_000, request(&next.token)),
        RefreshOutcome::Rotated(_)
    ));
    // …and replaying the oldest legacy token is reuse: the family is revoked.
    assert!(matches!(
        present(&f, T0 + 4_000, request(&legacy[0])),
        RefreshOutcome::ReuseDetected
    ));
    assert_eq!(session(&f).revoked_reason, Some(RevocationReason::Reuse));
}

#[test]
fn a_forged_located_token_is_refused_before_any_read_whether_or_not_its_session_exists() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let f = family();
    let steps = Arc::new(AtomicU64::new(0));
    let counted = steps.clone();
    f.conn.progress_handler(
        1,
        Some(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            false
        }),
    );
    let existing = forged_old_generation(&f);
    let missing = {
        let other = tempfile::tempdir().unwrap();
        let impostor = Sealer::load_or_generate(other.path()).unwrap();
        RefreshToken::issue(&SystemRandom::new(), &impostor, uuid::Uuid::new_v4(), 0).unwrap()
    };
    for token in [existing, missing] {
        let found = run_test_job(&f.conn, async |tx| find(tx, &f.sealer, &token).await).unwrap();
        assert!(found.is_none());
    }
    f.conn.progress_handler(1, None::<fn() -> bool>);
    assert_eq!(steps.load(Ordering::Relaxed), 0, "no statement ran");
}
