//! Sessions (refresh-token families): creation at login, with the per-user limit.

use ring::rand::SystemRandom;
use rusqlite::Connection;

use crate::clock::Millis;
use crate::config::LimitPolicy;
use crate::domain::RefreshToken;
use crate::store::queries::{self, NewEvent, SessionRow, UserRow};

/// Where a request came from, for sessions and events.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// How long a session may live, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

pub struct NewSession {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub remember_me: bool,
    pub lifetimes: Lifetimes,
    pub max_per_user: u32,
    pub limit_policy: LimitPolicy,
    pub ctx: ClientContext,
}

pub struct CreatedSession {
    pub session: SessionRow,
    pub user: UserRow,
    pub token: RefreshToken,
}

pub enum LoginOutcome {
    Created(Box<CreatedSession>),
    /// The account vanished or was disabled between the password check and this write.
    UserUnavailable,
    /// `limit_policy = "reject"` and the user is at `max_per_user`.
    LimitReached,
}

/// Starts a new family with its generation-0 token. Every login gets a new session id
/// (ASVS v4 3.2.1: no session fixation).
pub fn create_session(
    conn: &Connection,
    now: Millis,
    rng: &SystemRandom,
    req: &NewSession,
) -> anyhow::Result<LoginOutcome> {
    let user = match queries::user_by_id(conn, &req.user_id)? {
        Some(u) if u.disabled_at.is_none() => u,
        _ => return Ok(LoginOutcome::UserUnavailable),
    };
    let active = queries::active_sessions_of_user(conn, &user.id, now)?;
    let over = (active.len() + 1).saturating_sub(req.max_per_user as usize);
    if over > 0 {
        match req.limit_policy {
            LimitPolicy::Reject => return Ok(LoginOutcome::LimitReached),
            LimitPolicy::EvictOldest => {
                for old in active.iter().take(over) {
                    revoke(conn, now, old, "evicted", &req.ctx)?;
                }
            }
        }
    }
    let session = SessionRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.id.clone(),
        client_id: req.client_id.clone(),
        scope: req.scope.clone(),
        remember_me: req.remember_me,
        created_at: now,
        last_active_at: now,
        idle_expires_at: now.saturating_add(req.lifetimes.idle_ms),
        expires_at: now.saturating_add(req.lifetimes.absolute_ms),
        ip: req.ctx.ip.clone(),
        user_agent: req.ctx.user_agent.clone(),
        revoked_at: None,
        revoked_reason: None,
    };
    queries::insert_session(conn, &session)?;
    let token = RefreshToken::generate(rng).map_err(|_| anyhow::anyhow!("CSPRNG failed"))?;
    queries::insert_token(conn, &token.hash(), &session.id, 0, None, now)?;
    queries::insert_event(
        conn,
        now,
        &NewEvent {
            kind: "login_succeeded",
            user_id: Some(&user.id),
            session_id: Some(&session.id),
            client_id: Some(&session.client_id),
            ip: req.ctx.ip.as_deref(),
            user_agent: req.ctx.user_agent.as_deref(),
            detail: Some(serde_json::json!({ "remember_me": req.remember_me })),
        },
    )?;
    Ok(LoginOutcome::Created(Box::new(CreatedSession {
        session,
        user,
        token,
    })))
}

/// Revokes a live session and records why. Returns whether it was live.
pub fn revoke(
    conn: &Connection,
    now: Millis,
    session: &SessionRow,
    reason: &str,
    ctx: &ClientContext,
) -> anyhow::Result<bool> {
    let revoked = queries::revoke_session(conn, &session.id, now, reason)?;
    if revoked {
        queries::insert_event(
            conn,
            now,
            &NewEvent {
                kind: "session_revoked",
                user_id: Some(&session.user_id),
                session_id: Some(&session.id),
                client_id: Some(&session.client_id),
                ip: ctx.ip.as_deref(),
                user_agent: ctx.user_agent.as_deref(),
                detail: Some(serde_json::json!({ "reason": reason })),
            },
        )?;
    }
    Ok(revoked)
}
