//! Accounts: creation and lookup. Runs inside store jobs; no HTTP here.

use rusqlite::Connection;

use crate::clock::Millis;
use crate::domain::Username;
use crate::store::queries::{self, NewEvent, UserRow};

pub enum SignupOutcome {
    Created(UserRow),
    Taken,
}

/// Inserts a user unless the (case-insensitive) name is taken. `password_hash` is a PHC
/// string computed before the write, off the writer thread.
pub fn create_user(
    conn: &Connection,
    now: Millis,
    username: &Username,
    password_hash: String,
    roles: Vec<String>,
) -> anyhow::Result<SignupOutcome> {
    if queries::user_by_username_key(conn, &username.key())?.is_some() {
        return Ok(SignupOutcome::Taken);
    }
    let user = UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.as_str().to_owned(),
        password_hash,
        roles,
        created_at: now,
        disabled_at: None,
    };
    queries::insert_user(conn, &user, &username.key())?;
    queries::insert_event(
        conn,
        now,
        &NewEvent {
            kind: "user_created",
            user_id: Some(&user.id),
            ..Default::default()
        },
    )?;
    Ok(SignupOutcome::Created(user))
}
