//! Versioned schema migrations, embedded and applied at start (rusqlite_migration keeps
//! the version in `PRAGMA user_version`).

use rusqlite_migration::{Migrations, M};

pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            r#"
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL DEFAULT '[]',
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
) STRICT;

-- A session is a refresh-token family: one per login.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL,
    scope           TEXT NOT NULL,
    remember_me     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_active_at  INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    ip              TEXT,
    user_agent      TEXT,
    revoked_at      INTEGER,
    revoked_reason  TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions(user_id, created_at);

-- Only SHA-256 hashes of refresh tokens. The head of a family has rotated_at NULL.
-- sealed_successor: the head's token sealed (AES-256-GCM) on its parent during the
-- reuse interval; see domain::rotation for the threat model.
CREATE TABLE refresh_tokens (
    token_hash       BLOB PRIMARY KEY NOT NULL,
    session_id       TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    generation       INTEGER NOT NULL,
    parent_hash      BLOB,
    issued_at        INTEGER NOT NULL,
    rotated_at       INTEGER,
    sealed_successor BLOB,
    UNIQUE (session_id, generation)
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);
CREATE INDEX refresh_tokens_sealed ON refresh_tokens(rotated_at) WHERE sealed_successor IS NOT NULL;

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    client_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT
) STRICT;
CREATE INDEX events_by_user ON events(user_id, at);
CREATE INDEX events_by_kind ON events(kind, at);
"#,
        ),
        // Version 2: the family's head lives on its session row. A rotation used to
        // rewrite the parent token (rotated_at, sealed successor), wipe the grandparent's
        // copy and update three token indexes; now it inserts one token and updates the
        // session row it already touched. Tokens keep only what lookup and reuse
        // detection need; `UNIQUE (session_id, generation)` still makes a fork impossible.
        M::up(
            r#"
ALTER TABLE sessions ADD COLUMN head_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN head_issued_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN sealed_head BLOB;
UPDATE sessions SET
    head_generation = COALESCE(
        (SELECT max(generation) FROM refresh_tokens t WHERE t.session_id = sessions.id), 0),
    head_issued_at = COALESCE(
        (SELECT issued_at FROM refresh_tokens t WHERE t.session_id = sessions.id
          ORDER BY generation DESC LIMIT 1), created_at),
    sealed_head = (SELECT sealed_successor FROM refresh_tokens t
          WHERE t.session_id = sessions.id AND t.sealed_successor IS NOT NULL
          ORDER BY generation DESC LIMIT 1);
CREATE TABLE refresh_tokens_v2 (
    token_hash BLOB PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    UNIQUE (session_id, generation)
) STRICT, WITHOUT ROWID;
INSERT INTO refresh_tokens_v2 (token_hash, session_id, generation, issued_at)
    SELECT token_hash, session_id, generation, issued_at FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_v2 RENAME TO refresh_tokens;
-- Housekeeping finds the sealed heads whose interval has passed; only families that
-- rotated within the last interval or so are in this index, so it stays small and hot.
CREATE INDEX sessions_sealed_head ON sessions(head_issued_at) WHERE sealed_head IS NOT NULL;
"#,
        ),
        // Version 3: a user's logins, for the login path's lookups (new device, returning
        // address, first login). Without it SQLite answered "user_id = ? AND kind =
        // 'login_succeeded'" through events_by_kind, reading every login in the store:
        // seconds per login at 1M sessions (bench/scale), inside the writer. Partial, so
        // the refresh events that make up most of the table never touch it.
        M::up(
            r#"
CREATE INDEX events_logins_by_user ON events(user_id, at) WHERE kind = 'login_succeeded';
"#,
        ),
        // Version 4: events_by_kind served only the login lookups, which now have their
        // own index (version 3); the admin filter by type cannot use it ("?2 IS NULL OR
        // kind = ?2"). Every refresh event paid for it: without it the store rotates
        // about a fifth faster in process (BENCHMARKS.md).
        M::up("DROP INDEX events_by_kind;"),
        // Version 5: located refresh tokens (`lk1_…`). The head's hash lives on its
        // session, so a rotation finds the family by primary key and writes that one
        // row; no token row is inserted. Older generations need no hash (their tag
        // proves latchkey issued them). Legacy families keep `head_hash` NULL and their
        // rows in refresh_tokens until they rotate; housekeeping drains those rows.
        M::up("ALTER TABLE sessions ADD COLUMN head_hash BLOB;"),
        // Version 6: usernames under RFC 8265 (domain/username.rs). `username_key` becomes
        // the UsernameCaseMapped form (width-mapped, lower case, NFC) instead of plain
        // lower case, and `username_skeleton` (UTS #39) lets signup refuse a name that
        // only looks like an existing one (Cyrillic "аlice" beside "alice"). The hook
        // recomputes both for existing rows; a name the profile refuses keeps its old
        // key (login falls back to it) and gets the skeleton of that key. Not UNIQUE:
        // rows from before may already collide, and signup checks it itself.
        M::up_with_hook(
            r#"
ALTER TABLE users ADD COLUMN username_skeleton TEXT NOT NULL DEFAULT '';
CREATE INDEX users_by_skeleton ON users(username_skeleton);
"#,
            rekey_usernames,
        ),
        // Version 7: the administrator who acted on a user's account (disabled it, ended
        // its sessions) is recorded apart from the user's own request fields, so an
        // admin's IP and user agent never show in that user's `/me/events`; only
        // `/admin/events` shows the actor. Erasing the admin wipes these through
        // events_by_actor (partial: only admin actions are in it).
        M::up(
            r#"
ALTER TABLE events ADD COLUMN actor_id TEXT;
ALTER TABLE events ADD COLUMN actor_ip TEXT;
ALTER TABLE events ADD COLUMN actor_user_agent TEXT;
CREATE INDEX events_by_actor ON events(actor_id) WHERE actor_id IS NOT NULL;
"#,
        ),
        // Version 8 (account recovery): one optional email address per
        // user, unique by its case-insensitive key, and the SHA-256 hashes of
        // single-use password-reset and email-verification tokens. Both go with their
        // user (ON DELETE CASCADE), so erasure removes them.
        M::up(
            r#"
CREATE TABLE user_emails (
    user_id     TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    email_key   TEXT NOT NULL UNIQUE,
    verified_at INTEGER
) STRICT;
CREATE TABLE account_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    email_key  TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX account_tokens_by_user ON account_tokens(user_id, purpose, created_at);
CREATE INDEX account_tokens_by_expiry ON account_tokens(expires_at);
"#,
        ),
        // Version 9: the revocation log behind the feed (docs/contract.md "Revocation
        // feed"). One row per revoked (or erased) session, numbered in commit order: the
        // number is the stream's event id, so a reader resumes after the last one it saw.
        // A log of its own rather than an index on sessions.revoked_at, because erasing a
        // user deletes its session rows (and housekeeping deletes old ones) while their
        // access tokens may still be unexpired. AUTOINCREMENT: a number is never reused,
        // even after housekeeping prunes the rows that have left the horizon.
        M::up(
            r#"
CREATE TABLE revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    revoked_at INTEGER NOT NULL
) STRICT;
CREATE INDEX revocations_by_time ON revocations(revoked_at);
"#,
        ),
        // Version 10: the second factor (docs/contract.md "Second factor"). One TOTP
        // factor per user, its secret sealed (AES-256-GCM, AAD bound to the user id);
        // recovery codes and pending logins (`mfa_token`) as SHA-256 hashes only. All go
        // with their user. Sessions remember how their login authenticated (RFC 8176
        // `amr`, space-separated) and when the password was checked (`auth_time`; NULL
        // for older sessions, which read it as created_at).
        M::up(
            r#"
CREATE TABLE mfa_factors (
    user_id       TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sealed_secret BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    confirmed_at  INTEGER,
    last_step     INTEGER
) STRICT;
CREATE TABLE mfa_recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash BLOB NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) STRICT, WITHOUT ROWID;
CREATE TABLE mfa_logins (
    token_hash           BLOB PRIMARY KEY NOT NULL,
    user_id              TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id            TEXT NOT NULL,
    scope                TEXT NOT NULL,
    audiences            TEXT NOT NULL,
    remember_me          INTEGER NOT NULL,
    password_fingerprint BLOB NOT NULL,
    auth_time            INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    failures             INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
CREATE INDEX mfa_logins_by_user ON mfa_logins(user_id);
CREATE INDEX mfa_logins_by_expiry ON mfa_logins(expires_at);
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE sessions ADD COLUMN auth_time INTEGER;
"#,
        ),
        // Version 11: consecutive wrong codes per factor, over all devices (NIST SP
        // 800-63B §5.2.2: at most 100, then only a known device or a recovery code), and
        // where a pending login started (a browser one finishes only in browser mode).
        M::up(
            r#"
ALTER TABLE mfa_factors ADD COLUMN code_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mfa_logins ADD COLUMN browser INTEGER NOT NULL DEFAULT 0;
"#,
        ),
        // Version 12: an unverified address blocks nobody (docs/contract.md "Email and
        // account recovery"): any number of accounts may claim one, and only a verified
        // address is unique (case-insensitive: email_key is lower case). SQLite cannot
        // drop a column's UNIQUE, so the table is rebuilt; its rows already satisfy the
        // narrower index.
        M::up(
            r#"
CREATE TABLE user_emails_v12 (
    user_id     TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    email_key   TEXT NOT NULL,
    verified_at INTEGER
) STRICT;
INSERT INTO user_emails_v12 (user_id, email, email_key, verified_at)
    SELECT user_id, email, email_key, verified_at FROM user_emails;
DROP TABLE user_emails;
ALTER TABLE user_emails_v12 RENAME TO user_emails;
CREATE INDEX user_emails_by_key ON user_emails(email_key);
CREATE UNIQUE INDEX user_emails_verified_key ON user_emails(email_key)
    WHERE verified_at IS NOT NULL;
"#,
        ),
        // Version 13: passkeys (docs/contract.md "Passkeys"). A passkey's credential is
        // webauthn-rs's JSON (public key, counter); its WebAuthn credential id is unique,
        // so one authenticator's key belongs to one account. A ceremony in flight is
        // kept by the SHA-256 hash of its token, single use, with webauthn-rs's state.
        M::up(
            r#"
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_id BLOB NOT NULL UNIQUE,
    credential    TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    counter       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX passkeys_by_user ON passkeys(user_id, created_at);
CREATE TABLE webauthn_ceremonies (
    token_hash BLOB PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    mode       TEXT NOT NULL,
    user_id    TEXT REFERENCES users(id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies(expires_at);
"#,
        ),
        // Version 14: the webhook outbox (docs/webhooks-guide.md). A delivery row is
        // written with its event, in the same transaction; `next_attempt_at` is also the
        // lease of a claimed row, so a crashed sender's claim comes due again.
        M::up(
            r#"
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY NOT NULL,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    disabled_at INTEGER
) STRICT;
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    endpoint_id     TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    retry_since     INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE status = 'delivered';
"#,
        ),
        // Version 15: identity providers (docs/identity-providers-guide.md). An identity
        // is a provider's subject linked to an account, unique per provider (OIDC Core
        // §5.7). A federation state is a sign-in sent to a provider and not yet back,
        // found by the SHA-256 of its `state` and deleted when used; link_user is set
        // for an explicit link by a signed-in user.
        M::up(
            r#"
CREATE TABLE identities (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider       TEXT NOT NULL,
    subject        TEXT NOT NULL,
    email          TEXT,
    email_verified INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    last_login_at  INTEGER NOT NULL,
    UNIQUE (provider, subject)
) STRICT;
CREATE INDEX identities_by_user ON identities(user_id);

CREATE TABLE federation_states (
    state_hash    BLOB PRIMARY KEY NOT NULL,
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    return_to     TEXT NOT NULL,
    link_user     TEXT REFERENCES users(id) ON DELETE CASCADE,
    expires_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX federation_states_by_expiry ON federation_states(expires_at);
CREATE INDEX federation_states_by_link_user ON federation_states(link_user)
    WHERE link_user IS NOT NULL;
"#,
        ),
        // Version 16: authorization codes of `/oauth/authorize` (RFC 6749 §4.1.2), found
        // by the SHA-256 of the code; a used code is kept (without its sealed refresh
        // token) until it expires, so that a second use can revoke its session.
        M::up(
            r#"
CREATE TABLE authorization_codes (
    code_hash      BLOB PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    session_id     TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    sealed_refresh BLOB,
    used_at        INTEGER,
    expires_at     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX authorization_codes_by_expiry ON authorization_codes(expires_at);
CREATE INDEX authorization_codes_by_session ON authorization_codes(session_id);
-- A sign-in at a provider for an app's authorization request: the request, as JSON.
ALTER TABLE federation_states ADD COLUMN authorization_request TEXT;
"#,
        ),
        // Version 17: a pending second step after an identity provider (not a password)
        // names the provider.
        M::up("ALTER TABLE mfa_logins ADD COLUMN idp TEXT;"),
        // Version 18: `sessions` clustered on its id (WITHOUT ROWID). A refresh finds its
        // family by primary key; in a rowid table that is two B-tree descents (the
        // index on `id`, then the table by rowid), each a cold page read in a large file
        // (BENCHMARKS.md "open loop, tail latency"). Clustered, it is one. Housekeeping sweeps by id
        // ranges instead of rowid ranges. Rebuilt by SQLite's recipe for a parent table
        // (lang_altertable.html §7): foreign keys are off while it runs (`migrate`), and
        // checked before the migration commits.
        M::up(
            r#"
CREATE TABLE sessions_clustered (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL,
    scope           TEXT NOT NULL,
    remember_me     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_active_at  INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    ip              TEXT,
    user_agent      TEXT,
    revoked_at      INTEGER,
    revoked_reason  TEXT,
    head_generation INTEGER NOT NULL DEFAULT 0,
    head_issued_at  INTEGER NOT NULL DEFAULT 0,
    sealed_head     BLOB,
    head_hash       BLOB,
    amr             TEXT NOT NULL DEFAULT 'pwd',
    auth_time       INTEGER
) STRICT, WITHOUT ROWID;
INSERT INTO sessions_clustered (id, user_id, client_id, scope, remember_me, created_at,
    last_active_at, idle_expires_at, expires_at, ip, user_agent, revoked_at, revoked_reason,
    head_generation, head_issued_at, sealed_head, head_hash, amr, auth_time)
  SELECT id, user_id, client_id, scope, remember_me, created_at,
    last_active_at, idle_expires_at, expires_at, ip, user_agent, revoked_at, revoked_reason,
    head_generation, head_issued_at, sealed_head, head_hash, amr, auth_time
  FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_clustered RENAME TO sessions;
CREATE INDEX sessions_by_user ON sessions(user_id, created_at);
CREATE INDEX sessions_sealed_head ON sessions(head_issued_at) WHERE sealed_head IS NOT NULL;
"#,
        )
        .foreign_key_check(),
    ])
}

/// Version 6's data step: every user's key and skeleton under the RFC 8265 profile.
fn rekey_usernames(tx: &rusqlite::Transaction) -> rusqlite_migration::HookResult {
    use crate::domain::username::{skeleton_of, Username};
    let rows: Vec<(String, String, String)> = tx
        .prepare("SELECT id, username, username_key FROM users ORDER BY created_at, id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (id, username, old_key) in rows {
        let (key, skeleton) = match Username::parse(&username) {
            Ok(name) => (name.key(), name.skeleton()),
            Err(_) => (old_key.clone(), skeleton_of(&old_key)),
        };
        // Two old names can share a new key (`ａｌｉｃｅ` beside `alice`): the older
        // keeps it, the newer keeps its old key.
        let rekeyed = tx.execute(
            "UPDATE users SET username_key = ?2, username_skeleton = ?3 WHERE id = ?1",
            rusqlite::params![id, key, skeleton],
        );
        if rekeyed.is_err() {
            tx.execute(
                "UPDATE users SET username_skeleton = ?2 WHERE id = ?1",
                rusqlite::params![id, skeleton_of(&old_key)],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().expect("valid migrations");
    }

    #[test]
    fn version_6_rekeys_usernames_under_rfc_8265_and_keeps_colliding_old_keys() {
        let mut conn = Connection::open_in_memory().unwrap();
        let migrations = super::migrations();
        migrations.to_version(&mut conn, 4).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES
                 ('a', 'Alice', 'alice', 'h', 1),
                 ('b', 'ＡＬＩＣＥ', 'ａｌｉｃｅ', 'h', 2),
                 ('c', 'bob\u{200b}', 'bob\u{200b}', 'h', 3),
                 ('d', 'Ｃａｒｏｌ', 'ｃａｒｏｌ', 'h', 4);",
        )
        .unwrap();
        crate::store::sqlite::migrate(&mut conn).unwrap();
        let rows: Vec<(String, String, String)> = conn
            .prepare("SELECT id, username_key, username_skeleton FROM users ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[0], ("a".into(), "alice".into(), "alice".into()));
        assert_eq!(
            rows[1].1, "ａｌｉｃｅ",
            "the newer of two colliding names keeps its key"
        );
        assert_eq!(
            rows[2].1, "bob\u{200b}",
            "a name the profile refuses keeps its key"
        );
        assert_eq!(rows[3].1, "carol");
        assert_eq!(rows[3].2, "carol");
    }

    #[test]
    fn version_18_clusters_sessions_without_cascading_into_their_tokens_and_codes() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let migrations = super::migrations();
        migrations.to_version(&mut conn, 17).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, username_key, password_hash, created_at)
                 VALUES ('u', 'alice', 'alice', 'h', 0);
             INSERT INTO sessions (id, user_id, client_id, scope, remember_me, created_at,
                 last_active_at, idle_expires_at, expires_at, ip, head_generation,
                 head_issued_at, sealed_head, head_hash, amr, auth_time)
                 VALUES ('s1', 'u', 'app', 'read', 1, 5, 6, 99, 199, '192.0.2.1', 3, 6,
                         x'aa', x'bb', 'pwd otp', 4);
             INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
                 VALUES (x'01', 's1', 0, 5);
             INSERT INTO authorization_codes (code_hash, client_id, redirect_uri,
                 code_challenge, session_id, expires_at)
                 VALUES (x'02', 'app', 'http://127.0.0.1/cb', 'c', 's1', 60);",
        )
        .unwrap();
        crate::store::sqlite::migrate(&mut conn).unwrap();
        let enforced: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(enforced, "foreign keys are enforced again after migrating");
        let row: (String, i64, Vec<u8>, String, Option<i64>) = conn
            .query_row(
                "SELECT ip, head_generation, head_hash, amr, auth_time FROM sessions
                 WHERE id = 's1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            ("192.0.2.1".into(), 3, vec![0xbb], "pwd otp".into(), Some(4))
        );
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT count(*) FROM refresh_tokens"),
            1,
            "not cascaded"
        );
        assert_eq!(count("SELECT count(*) FROM authorization_codes"), 1);
        let sql = schema_of(&conn);
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
        // The children's foreign keys reach the new table: deleting cascades.
        conn.execute("DELETE FROM sessions WHERE id = 's1'", [])
            .unwrap();
        assert_eq!(count("SELECT count(*) FROM refresh_tokens"), 0);
        assert_eq!(count("SELECT count(*) FROM authorization_codes"), 0);

        fn schema_of(conn: &Connection) -> String {
            conn.query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'sessions'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        }
    }

    #[test]
    fn version_12_keeps_addresses_and_makes_only_verified_ones_unique() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let migrations = super::migrations();
        migrations.to_version(&mut conn, 10).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES
                 ('a', 'a', 'a', 'h', 1), ('b', 'b', 'b', 'h', 2), ('c', 'c', 'c', 'h', 3);
             INSERT INTO user_emails VALUES ('a', 'X@example.com', 'x@example.com', 5);",
        )
        .unwrap();
        crate::store::sqlite::migrate(&mut conn).unwrap();
        let kept: (String, String, i64) = conn
            .query_row(
                "SELECT email, email_key, verified_at FROM user_emails WHERE user_id = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(kept, ("X@example.com".into(), "x@example.com".into(), 5));
        // Two unverified claims beside the verified one; a second verified one is refused.
        conn.execute_batch(
            "INSERT INTO user_emails VALUES ('b', 'x@example.com', 'x@example.com', NULL);
             INSERT INTO user_emails VALUES ('c', 'x@example.com', 'x@example.com', NULL);",
        )
        .unwrap();
        assert!(conn
            .execute(
                "UPDATE user_emails SET verified_at = 6 WHERE user_id = 'b'",
                []
            )
            .is_err());
        // Erasure still takes the address with the user.
        conn.execute("DELETE FROM users WHERE id = 'a'", [])
            .unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM user_emails", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn version_2_moves_each_familys_head_and_sealed_copy_onto_its_session() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let migrations = super::migrations();
        migrations.to_version(&mut conn, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, username_key, password_hash, created_at)
                 VALUES ('u', 'alice', 'alice', 'h', 0);
             INSERT INTO sessions (id, user_id, client_id, scope, remember_me, created_at,
                 last_active_at, idle_expires_at, expires_at)
                 VALUES ('rotated', 'u', 'c', '', 1, 5, 5, 99, 99),
                        ('fresh', 'u', 'c', '', 1, 7, 7, 99, 99);
             INSERT INTO refresh_tokens
                 (token_hash, session_id, generation, parent_hash, issued_at, rotated_at,
                  sealed_successor)
                 VALUES (x'00', 'rotated', 0, NULL, 5, 10, NULL),
                        (x'01', 'rotated', 1, x'00', 10, 20, x'aa'),
                        (x'02', 'rotated', 2, x'01', 20, NULL, NULL),
                        (x'03', 'fresh', 0, NULL, 7, NULL, NULL);",
        )
        .unwrap();
        crate::store::sqlite::migrate(&mut conn).unwrap();
        let heads: Vec<(String, i64, i64, Option<Vec<u8>>)> = conn
            .prepare(
                "SELECT id, head_generation, head_issued_at, sealed_head FROM sessions ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            heads,
            vec![
                ("fresh".into(), 0, 7, None),
                ("rotated".into(), 2, 20, Some(vec![0xaa])),
            ]
        );
        let tokens: i64 = conn
            .query_row("SELECT count(*) FROM refresh_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tokens, 4);
    }
}
