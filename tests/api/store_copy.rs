//! `latchkey store copy --to postgres://…` (docs/contract.md "Scale-out on PostgreSQL"):
//! a populated SQLite store moves into an empty PostgreSQL database, and every token
//! issued before works after, against a server on the copy. Runs in the SQLite pass of
//! `scripts/test`, which has a throwaway PostgreSQL cluster.

use reqwest::StatusCode;
use serde_json::json;

use crate::db::{self, TestDb};
use crate::helpers::{spawn_app_with, spawn_instance, PASSWORD};

/// PostgreSQL's tables that no SQLite table is copied into, each with its reason. Every
/// other table of either catalogue must be copied (`store copy` fails its unit test
/// otherwise, and the copy below compares every table's rows).
const NOT_COPIED: &[(&str, &str)] = &[
    (
        "key_blobs",
        "filled from the keys folder, sealed under the KEK (checked below)",
    ),
    (
        "login_failures",
        "login throttling counted across instances; one SQLite instance counts in memory",
    ),
    (
        "latchkey_schema",
        "the schema version, written by migration",
    ),
];

/// The SQLite store's tables, from its catalogue (`sqlite_%` are SQLite's own).
fn sqlite_tables(db: &TestDb) -> Vec<String> {
    db.column(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
        &[],
    )
    .into_iter()
    .flatten()
    .collect()
}

/// PostgreSQL's tables, from its catalogue, less [`NOT_COPIED`].
fn postgres_tables_copied_into(db: &TestDb) -> Vec<String> {
    let mut tables: Vec<String> = db
        .column(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' \
             ORDER BY table_name",
            &[],
        )
        .into_iter()
        .flatten()
        .collect();
    for (table, _why) in NOT_COPIED {
        let at = tables.iter().position(|t| t == table);
        tables.remove(at.unwrap_or_else(|| panic!("PostgreSQL lacks {table}")));
    }
    tables
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn store_copy_moves_a_populated_sqlite_store_and_every_token_works_after() {
    if db::postgres_run() {
        return; // the source is a SQLite store: the SQLite pass runs this
    }
    assert!(
        db::cluster_url().is_some(),
        "needs TEST_POSTGRES_URL (a throwaway cluster): run scripts/test"
    );
    let kek_dir = tempfile::tempdir().unwrap();
    let kek = db::write_kek(kek_dir.path());
    let src = spawn_app_with(|s| s.keys.kek_file = Some(kek.clone())).await;

    // A store with something of everything.
    let alice = src.user_with_session("alice").await;
    let alice = src.rotate(&src.rotate(&alice.refresh).await.refresh).await;
    let bob = src.user_with_session("bob").await;
    src.enrol_totp("bob", &bob.access).await;
    let bob = src.login("bob").await; // with a code: amr pwd otp
    let carol = src.user_with_session("carol").await;
    src.post_bearer("/logout", &carol.access, &json!({})).await;
    let legacy_kids = src.jwks_kids().await;

    let target = db::fresh_database();
    let out = src.cli(&["store", "copy", "--to", &target], "").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("users: 3 rows"),
        "progress per table: {stderr}"
    );
    assert!(stderr.contains("key_blobs:"), "{stderr}");

    // Every row of every table went across: the tables come from the catalogues, so a
    // table added later is checked here without an edit.
    let (from, to) = (src.sql(), TestDb::Postgres(target.clone()));
    let tables = sqlite_tables(&from);
    assert_eq!(tables, postgres_tables_copied_into(&to));
    for table in &tables {
        let sql = format!("SELECT count(*) FROM {table}");
        assert_eq!(from.count(&sql, &[]), to.count(&sql, &[]), "{table}");
    }
    assert!(
        !to.dump().contains("PRIVATE KEY"),
        "the keys are sealed under the KEK in the database"
    );

    // A server on the copy: same keys, same families, same factors.
    let mut settings = src.settings.clone();
    settings.store.path = None;
    settings.store.url = Some(latchkey::secret::Secret::new(target.clone()));
    settings.keys.dir = kek_dir.path().join("unused-keys-folder");
    let dst = spawn_instance(settings, src.clock.clone(), tempfile::tempdir().unwrap()).await;
    assert_eq!(dst.jwks_kids().await, legacy_kids, "the same signing keys");
    assert_eq!(
        dst.get_bearer("/me", &alice.access).await.status(),
        StatusCode::OK,
        "an access token issued before verifies"
    );
    dst.rotate(&alice.refresh).await;
    dst.rotate(&bob.refresh).await;
    let res = dst.refresh(&carol.refresh).await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "a revoked family stays revoked"
    );
    // The test's authenticator for bob (its secret, and the last step it used).
    let bob_factor = src.totp.lock().unwrap().get("bob").cloned().unwrap();
    dst.totp.lock().unwrap().insert("bob".into(), bob_factor);
    let res = dst.login_as("bob", json!({})).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the TOTP secret opens on the copy"
    );
    let res = dst
        .post_json(
            "/login",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the password hashes went across"
    );
    assert!(!dst.events_of("user_created").is_empty());

    // Never over a database that has data.
    let again = src.cli(&["store", "copy", "--to", &target], "").await;
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("latchkey: the target database is not empty"),
        "{err}"
    );
}

/// The two backends' schemas stay in step: after every migration, each SQLite table
/// exists on PostgreSQL with the same columns, and PostgreSQL has only its own extras
/// ([`NOT_COPIED`]). Together with the unit test that `store copy` covers every SQLite
/// table and column, a table added to one backend only, or left out of the copy, fails
/// a test.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn both_backends_migrate_to_the_same_tables_and_columns() {
    if db::postgres_run() {
        return; // compares both backends itself: the SQLite pass runs it
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite_path = dir.path().join("schema.db");
    latchkey::store::Store::open(&sqlite_path, 1).unwrap();
    let sqlite = TestDb::Sqlite(sqlite_path);
    let pg_url = db::fresh_database();
    let mut settings = latchkey::config::Settings::default();
    settings.store.url = Some(latchkey::secret::Secret::new(pg_url.clone()));
    tokio::task::spawn_blocking(move || {
        latchkey::store::Store::from_settings(&settings.store, 1, None).map(|_| ())
    })
    .await
    .unwrap()
    .unwrap();
    let pg = TestDb::Postgres(pg_url);

    let columns = |db: &TestDb, sql: &str| -> std::collections::BTreeMap<String, Vec<String>> {
        let mut map = std::collections::BTreeMap::<String, Vec<String>>::new();
        for row in db.rows(sql, &[]) {
            let (table, column) = (row[0].clone().unwrap(), row[1].clone().unwrap());
            map.entry(table).or_default().push(column);
        }
        map.values_mut().for_each(|c| c.sort());
        map
    };
    let on_sqlite = columns(
        &sqlite,
        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
    );
    let mut on_pg = columns(
        &pg,
        "SELECT table_name, column_name FROM information_schema.columns \
         WHERE table_schema = 'public'",
    );
    for (extra, _why) in NOT_COPIED {
        assert!(on_pg.remove(*extra).is_some(), "PostgreSQL lacks {extra}");
    }
    assert_eq!(on_sqlite, on_pg, "the backends' schemas differ");
}
