//! The `refresh_tokens` table: SHA-256 hashes only, never a token.

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::model::StoredToken;
use crate::domain::TokenHash;

pub fn by_hash(conn: &Connection, hash: &TokenHash) -> anyhow::Result<Option<StoredToken>> {
    let mut st = conn.prepare_cached(
        "SELECT token_hash, session_id, generation, issued_at FROM refresh_tokens
         WHERE token_hash = ?1",
    )?;
    let row = st
        .query_row([&hash[..]], |r| {
            let bytes: Vec<u8> = r.get(0)?;
            Ok((bytes, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((bytes, session_id, generation, issued_at)) = row else {
        return Ok(None);
    };
    let token_hash =
        TokenHash::try_from(bytes.as_slice()).context("a stored hash is not 32 bytes")?;
    Ok(Some(StoredToken {
        token_hash,
        session_id,
        generation,
        issued_at,
    }))
}

/// `UNIQUE (session_id, generation)` refuses a second token of one generation: a fork.
pub fn insert(conn: &Connection, t: &StoredToken) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &t.token_hash[..],
        t.session_id,
        t.generation,
        t.issued_at
    ])
    .context("insert refresh token")?;
    Ok(())
}
