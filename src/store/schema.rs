//! Versioned schema migrations, embedded and applied at start (rusqlite_migration keeps
//! the version in `PRAGMA user_version`).

use rusqlite_migration::{Migrations, M};

pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(
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
    )])
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().expect("valid migrations");
    }
}
