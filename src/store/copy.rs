//! `latchkey store copy --to postgres://…`: moves a SQLite store into an empty
//! PostgreSQL database (docs/contract.md "Scale-out on PostgreSQL"). Every row of every
//! table goes across as it is (hashes, sealed heads, sealed TOTP secrets, event and
//! log numbers), and the keys folder's values go into `key_blobs` sealed under the KEK,
//! all in one transaction: a copy that fails leaves the target empty, and one that
//! succeeds leaves every token issued before working after.

use anyhow::Context;
use rusqlite::types::Value as Sqlite;
use rusqlite::{Connection, OpenFlags};
use tokio_postgres::types::ToSql;

use super::postgres::PgStore;

/// How a column's SQLite values become PostgreSQL ones.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bool,
    Blob,
    Json,
}

use Kind::*;

/// Every table, parents first (foreign keys), with its columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "users",
        &[
            ("id", Text),
            ("username", Text),
            ("username_key", Text),
            ("username_skeleton", Text),
            ("password_hash", Text),
            ("roles", Text),
            ("created_at", Int),
            ("disabled_at", Int),
        ],
    ),
    (
        "sessions",
        &[
            ("id", Text),
            ("user_id", Text),
            ("client_id", Text),
            ("scope", Text),
            ("remember_me", Bool),
            ("created_at", Int),
            ("last_active_at", Int),
            ("idle_expires_at", Int),
            ("expires_at", Int),
            ("ip", Text),
            ("user_agent", Text),
            ("revoked_at", Int),
            ("revoked_reason", Text),
            ("head_generation", Int),
            ("head_issued_at", Int),
            ("sealed_head", Blob),
            ("head_hash", Blob),
            ("amr", Text),
            ("auth_time", Int),
        ],
    ),
    (
        "refresh_tokens",
        &[
            ("token_hash", Blob),
            ("session_id", Text),
            ("generation", Int),
            ("issued_at", Int),
        ],
    ),
    (
        "events",
        &[
            ("id", Int),
            ("at", Int),
            ("kind", Text),
            ("user_id", Text),
            ("session_id", Text),
            ("client_id", Text),
            ("ip", Text),
            ("user_agent", Text),
            ("detail", Json),
            ("actor_id", Text),
            ("actor_ip", Text),
            ("actor_user_agent", Text),
        ],
    ),
    (
        "user_emails",
        &[
            ("user_id", Text),
            ("email", Text),
            ("email_key", Text),
            ("verified_at", Int),
        ],
    ),
    (
        "account_tokens",
        &[
            ("token_hash", Blob),
            ("user_id", Text),
            ("purpose", Text),
            ("email_key", Text),
            ("created_at", Int),
            ("expires_at", Int),
        ],
    ),
    (
        "revocations",
        &[("seq", Int), ("session_id", Text), ("revoked_at", Int)],
    ),
    (
        "mfa_factors",
        &[
            ("user_id", Text),
            ("sealed_secret", Blob),
            ("created_at", Int),
            ("confirmed_at", Int),
            ("last_step", Int),
            ("code_failures", Int),
        ],
    ),
    (
        "mfa_recovery_codes",
        &[("user_id", Text), ("code_hash", Blob)],
    ),
    (
        "mfa_logins",
        &[
            ("token_hash", Blob),
            ("user_id", Text),
            ("client_id", Text),
            ("scope", Text),
            ("audiences", Text),
            ("remember_me", Bool),
            ("password_fingerprint", Blob),
            ("auth_time", Int),
            ("expires_at", Int),
            ("failures", Int),
            ("browser", Bool),
            ("idp", Text),
        ],
    ),
    (
        "passkeys",
        &[
            ("id", Text),
            ("user_id", Text),
            ("credential_id", Blob),
            ("credential", Text),
            ("name", Text),
            ("created_at", Int),
            ("last_used_at", Int),
            ("counter", Int),
        ],
    ),
    (
        "webauthn_ceremonies",
        &[
            ("token_hash", Blob),
            ("kind", Text),
            ("mode", Text),
            ("user_id", Text),
            ("state", Text),
            ("expires_at", Int),
        ],
    ),
    (
        "webhook_endpoints",
        &[
            ("id", Text),
            ("url", Text),
            ("events", Text),
            ("disabled_at", Int),
        ],
    ),
    (
        "webhook_deliveries",
        &[
            ("id", Text),
            ("endpoint_id", Text),
            ("payload", Text),
            ("status", Text),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("retry_since", Int),
            ("last_status", Int),
            ("last_error", Text),
            ("created_at", Int),
            ("delivered_at", Int),
        ],
    ),
    (
        "identities",
        &[
            ("id", Text),
            ("user_id", Text),
            ("provider", Text),
            ("subject", Text),
            ("email", Text),
            ("email_verified", Bool),
            ("created_at", Int),
            ("last_login_at", Int),
        ],
    ),
    (
        "federation_states",
        &[
            ("state_hash", Blob),
            ("provider", Text),
            ("nonce", Text),
            ("pkce_verifier", Text),
            ("client_id", Text),
            ("return_to", Text),
            ("link_user", Text),
            ("expires_at", Int),
            ("authorization_request", Text),
        ],
    ),
    (
        "authorization_codes",
        &[
            ("code_hash", Blob),
            ("client_id", Text),
            ("redirect_uri", Text),
            ("code_challenge", Text),
            ("session_id", Text),
            ("sealed_refresh", Blob),
            ("used_at", Int),
            ("expires_at", Int),
        ],
    ),
];

/// Tables whose numbers continue after the copied ones (identity columns).
const SEQUENCES: &[(&str, &str)] = &[("events", "id"), ("revocations", "seq")];

/// Rows per INSERT statement.
const BATCH: usize = 500;

/// One value converted for PostgreSQL.
fn convert(kind: Kind, v: Sqlite) -> anyhow::Result<Box<dyn ToSql + Sync + Send>> {
    Ok(match (kind, v) {
        (Text, Sqlite::Null) => Box::new(None::<String>),
        (Text, Sqlite::Text(t)) => Box::new(Some(t)),
        (Int, Sqlite::Null) => Box::new(None::<i64>),
        (Int, Sqlite::Integer(n)) => Box::new(Some(n)),
        (Bool, Sqlite::Integer(n)) => Box::new(n != 0),
        (Blob, Sqlite::Null) => Box::new(None::<Vec<u8>>),
        (Blob, Sqlite::Blob(b)) => Box::new(Some(b)),
        (Json, Sqlite::Null) => Box::new(None::<serde_json::Value>),
        (Json, Sqlite::Text(t)) => Box::new(Some(
            serde_json::from_str::<serde_json::Value>(&t)
                .context("an event's detail is not JSON")?,
        )),
        (_, other) => anyhow::bail!("unexpected stored value {other:?}"),
    })
}

/// Copies the SQLite store at `source` and the (already sealed) key blobs into the
/// PostgreSQL database at `target_url` (migrated first), which must be empty. `progress`
/// hears each table's count as it goes. Takes a URL so that callers (the CLI) never name
/// a backend.
pub fn sqlite_to_postgres(
    source: &std::path::Path,
    target_url: &str,
    key_blobs: Vec<(String, Vec<u8>)>,
    progress: &mut dyn FnMut(&str, u64),
) -> anyhow::Result<()> {
    anyhow::ensure!(
        source.is_file(),
        "there is no SQLite store at {} (store.path)",
        source.display()
    );
    let target = &PgStore::open(target_url, 2, None, None)?;
    let mut conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open the SQLite store {}", source.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // A file from an older latchkey is brought to this one's schema first (as `serve`
    // would), so every column below exists.
    super::sqlite::migrate(&mut conn)
        .with_context(|| format!("cannot migrate {}", source.display()))?;

    let occupied = target.run_blocking(async |s: PgStore| {
        let conn = s.connection().await?;
        let mut occupied = Vec::new();
        for table in TABLES
            .iter()
            .map(|t| t.0)
            .chain(["key_blobs", "login_failures"])
        {
            let row = conn
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
                .await?;
            if row.try_get::<_, bool>(0)? {
                occupied.push(table);
            }
        }
        Ok(occupied)
    })?;
    anyhow::ensure!(
        occupied.is_empty(),
        "the target database is not empty (rows in {}): store copy fills only an empty database",
        occupied.join(", ")
    );

    // Read everything first (SQLite, this thread), then write it in one transaction.
    let mut tables = Vec::new();
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let mut st = conn.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
        let rows: Vec<Vec<Sqlite>> = st
            .query_map([], |r| {
                (0..names.len()).map(|i| r.get::<_, Sqlite>(i)).collect()
            })?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read {table}"))?;
        tables.push((*table, *columns, rows));
    }
    drop(conn);

    let mut counts = Vec::new();
    let copied = target.run_blocking(async move |s: PgStore| {
        let mut conn = s.connection().await?;
        let tx = conn.transaction().await?;
        let mut counts = Vec::new();
        for (table, columns, rows) in tables {
            let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
            let mut n = 0u64;
            for chunk in rows.chunks(BATCH) {
                let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
                let mut tuples = Vec::new();
                for row in chunk {
                    let mut slots = Vec::new();
                    for ((_, kind), value) in columns.iter().zip(row.iter().cloned()) {
                        params.push(convert(*kind, value)?);
                        slots.push(format!("${}", params.len()));
                    }
                    tuples.push(format!("({})", slots.join(", ")));
                }
                let sql = format!(
                    "INSERT INTO {table} ({}) VALUES {}",
                    names.join(", "),
                    tuples.join(", ")
                );
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                n += tx
                    .execute(&sql, &refs)
                    .await
                    .with_context(|| format!("cannot copy {table}"))?;
            }
            counts.push((table, n));
        }
        for (table, column) in SEQUENCES {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                         (SELECT COALESCE(max({column}), 0) + 1 FROM {table}), false)"
                ),
                &[],
            )
            .await?;
        }
        let now = chrono::Utc::now().timestamp_millis();
        for (name, sealed) in &key_blobs {
            tx.execute(
                "INSERT INTO key_blobs (name, sealed, updated_at) VALUES ($1, $2, $3)",
                &[name, sealed, &now],
            )
            .await?;
        }
        counts.push(("key_blobs", key_blobs.len() as u64));
        tx.commit().await?;
        Ok(counts)
    })?;
    counts.extend(copied);
    for (table, n) in counts {
        progress(table, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TABLES;

    /// A table or column added to the schema without a place in `store copy` would be
    /// silently left behind by every copy: the catalogue of a freshly migrated database
    /// must match `TABLES` exactly (names and columns, in any order). None is left out
    /// on purpose; `sqlite_%` tables are SQLite's own (`sqlite_sequence`), and
    /// PostgreSQL's extra tables are listed with their reasons in
    /// tests/api/store_copy.rs.
    #[test]
    fn store_copy_covers_every_table_and_column_of_the_schema() {
        let conn = crate::store::sqlite::in_memory();
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
                 ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut copied: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
        copied.sort_unstable();
        assert_eq!(
            tables, copied,
            "store copy's tables differ from the schema's"
        );
        for (table, columns) in TABLES {
            let mut in_schema: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            in_schema.sort_unstable();
            let mut listed: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
            listed.sort_unstable();
            assert_eq!(
                in_schema, listed,
                "store copy's columns of {table} differ from the schema's"
            );
        }
    }
}
