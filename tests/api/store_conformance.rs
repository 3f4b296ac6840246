//! The backend conformance suite: every repository operation, driven through
//! `latchkey::store::Store` directly (no HTTP), with one test body for both backends.
//! It runs on SQLite in plain `cargo test`, and on PostgreSQL when the suite does
//! (`TEST_STORE=postgres`, a fresh database per test; `scripts/test` runs both), so a
//! backend that answers differently, or a race it decides wrongly, fails here first.
//! A new aggregate adds its test body here (docs/store.md "Adding a table").

use std::collections::BTreeSet;

use latchkey::domain::model::{
    AccountToken, Actor, EventQuery, MfaFactor, NewEvent, PendingLogin, Session, StoredToken,
    TokenPurpose, User, UserEmail,
};
use latchkey::domain::{
    AuthMethod, EventKind, RevocationReason, Scope, SessionId, TokenHash, UserId,
};
use latchkey::store::{Store, StoreError};

use crate::db;

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

/// A store on the backend this run uses, empty and migrated; the folder holds SQLite's
/// file for as long as the test runs.
async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    if !db::postgres_run() {
        return (Store::open(&dir.path().join("store.db"), 2).unwrap(), dir);
    }
    let mut settings = latchkey::config::Settings::default();
    settings.store.url = Some(latchkey::secret::Secret::new(db::fresh_database()));
    // Opening PostgreSQL waits on the store's own threads: not from this runtime's.
    let store = tokio::task::spawn_blocking(move || Store::from_settings(&settings.store, 1, None))
        .await
        .unwrap()
        .unwrap();
    (store, dir)
}

/// A fixed id for a short name (up to 16 bytes): the name's bytes, zero-padded, as a
/// UUID. Distinct names get distinct ids in the names' order, so the tests read with names.
fn uuid_of(name: &str) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    uuid::Uuid::from_bytes(bytes)
}

fn uid(name: &str) -> UserId {
    UserId::from(uuid_of(name))
}

fn sid(name: &str) -> SessionId {
    SessionId::from(uuid_of(name))
}

fn user(id: &str, created_at: i64) -> User {
    User {
        id: uid(id),
        username: id.to_uppercase(),
        password_hash: format!("hash-of-{id}"),
        roles: vec!["reader".into()],
        created_at,
        disabled_at: None,
    }
}

fn session(id: &str, user_id: &str, created_at: i64) -> Session {
    Session {
        id: sid(id),
        user_id: uid(user_id),
        client_id: "web".into(),
        scope: Scope::parse("profile").unwrap(),
        remember_me: true,
        created_at,
        last_active_at: created_at,
        idle_expires_at: created_at + 24 * HOUR,
        expires_at: created_at + 240 * HOUR,
        ip: Some("192.0.2.1".into()),
        user_agent: Some("Firefox".into()),
        revoked_at: None,
        revoked_reason: None,
        head_generation: 0,
        head_issued_at: created_at,
        head_hash: Some(hash(1)),
        sealed_head: None,
        amr: vec![AuthMethod::Pwd, AuthMethod::Otp],
        auth_time: created_at - 5,
    }
}

fn hash(n: u8) -> TokenHash {
    [n; 32]
}

fn pending(n: u8, user_id: &str, expires_at: i64) -> PendingLogin {
    PendingLogin {
        token_hash: hash(n),
        user_id: uid(user_id),
        client_id: "web".into(),
        scope: Scope::default(),
        audiences: vec!["https://api.example".into()],
        remember_me: false,
        password_fingerprint: hash(200),
        auth_time: T0,
        expires_at,
        failures: 0,
        browser: true,
        // One of them follows an identity provider (the column round-trips).
        idp: (n == 60).then(|| "corp".into()),
    }
}

/// Runs `f` as one write and returns its answer.
macro_rules! write_job {
    ($store:expr, |$tx:ident| $body:expr) => {
        $store
            .write(async move |$tx| -> anyhow::Result<_> { Ok($body) })
            .await
            .unwrap()
    };
}

/// Users `alice` and `bob` with one session each (`sa`, `sb`).
async fn two_users(store: &Store) {
    write_job!(store, |tx| {
        tx.insert_user(&user("alice", T0), "alice", "a11ce").await?;
        tx.insert_user(&user("bob", T0 + 1), "bob", "b0b").await?;
        tx.insert_session(&session("sa", "alice", T0)).await?;
        tx.insert_session(&session("sb", "bob", T0)).await?;
    });
}

mod accounts;
mod identities;
mod passkeys;
mod races;
mod sessions;
mod webhooks;

/// A repository method that no body here calls is a method neither backend is checked
/// on: every `async fn` of `src/domain/repository/` must be called somewhere below.
#[test]
fn every_repository_method_is_exercised_by_this_suite() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read_all = |dir: &str| -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            text += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
        }
        text
    };
    let traits = read_all("src/domain/repository")
        + &std::fs::read_to_string(root.join("src/domain/repository.rs")).unwrap();
    let suite = read_all("tests/api/store_conformance")
        + &std::fs::read_to_string(root.join("tests/api/store_conformance.rs")).unwrap();
    let missing: Vec<&str> = traits
        .split("async fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| !suite.contains(&format!(".{name}(")))
        .collect();
    assert!(missing.is_empty(), "not exercised: {missing:?}");
}
