//! Refresh-token rotation with a grace interval and reuse detection
//! (RFC 9700 §4.14.2; RFC 6749 §6, §10.4; API.md "Refresh rotation").
//!
//! Every function here runs inside the single writer's transaction, so requests racing
//! on one token are serialized: the first rotates, the rest see a rotated parent. The
//! `UNIQUE (session_id, generation)` constraint makes a fork impossible even if this
//! logic were wrong.
//!
//! ## The reuse interval, and why the head is sealed on its parent
//! A client whose response was lost, or two tabs refreshing at once, present the head's
//! parent again moments after it rotated. Treating that as theft would log honest users
//! out, so within `refresh.reuse_interval` the parent answers with the *same* head.
//! That requires recovering the head's plaintext, yet the database must never hold a
//! usable token. We keep the head on the session row sealed with AES-256-GCM (ring) under
//! a 256-bit key kept in `keys.dir` (not in the database), bound by AAD to the parent's
//! hash; the next rotation replaces it, revoking the family wipes it, and housekeeping
//! wipes it once the interval has passed.
//!
//! Threat model: a database dump alone yields hashes and ciphertexts: no token. A dump
//! plus the seal key yields only heads that rotated within the last interval, whose
//! parents the thief would also need to have replayed within seconds; every other token
//! stays a hash. We chose sealing over deriving the successor by HMAC(secret, parent)
//! because a derivation makes the secret plus any old token enough to compute every
//! later token of that family forever; with sealing, tokens stay independent CSPRNG
//! output and the window of exposure is the interval.

use ring::rand::SystemRandom;
use rusqlite::Connection;

use crate::clock::Millis;
use crate::domain::sessions::{self, ClientContext};
use crate::domain::{RefreshToken, Scope};
use crate::keys::Sealer;
use crate::store::queries::{self, SessionRow, UserRow};

pub struct RefreshRequest {
    pub token: RefreshToken,
    /// The client that presents it; `None` means "whoever it was issued to".
    pub client_id: Option<String>,
    /// A narrower scope for the new access token (RFC 6749 §6), if asked for.
    pub scope: Option<Scope>,
    pub reuse_interval_ms: i64,
    pub ctx: ClientContext,
}

pub enum RefreshOutcome {
    /// The head was presented: `token` is the new head.
    Rotated(Granted),
    /// The head's parent within the interval: `token` is the current head, unchanged.
    Replayed(Granted),
    Rejected(Rejection),
    /// An already-rotated token outside the grace rule: the family is now revoked.
    ReuseDetected,
}

pub struct Granted {
    pub session: SessionRow,
    pub user: UserRow,
    pub token: RefreshToken,
    /// Scope for the access token: the session's, or the narrower one asked for.
    pub scope: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Unknown,
    SessionEnded,
    OtherClient,
    ScopeTooWide,
}

impl Rejection {
    pub fn description(self) -> &'static str {
        match self {
            Rejection::Unknown => "the refresh token is invalid",
            Rejection::SessionEnded => "the refresh token has expired or been revoked",
            Rejection::OtherClient => "the refresh token was issued to another client",
            Rejection::ScopeTooWide => "the requested scope exceeds the granted scope",
        }
    }
}

/// `idle_ms(session)`: the idle timeout that applies to that session (client, remember-me).
pub fn refresh(
    conn: &Connection,
    now: Millis,
    rng: &SystemRandom,
    sealer: &Sealer,
    req: &RefreshRequest,
    idle_ms: impl Fn(&SessionRow) -> i64,
) -> anyhow::Result<RefreshOutcome> {
    let hash = req.token.hash();
    let Some(row) = queries::token_by_hash(conn, &hash)? else {
        return Ok(RefreshOutcome::Rejected(Rejection::Unknown));
    };
    let Some(session) = queries::session_by_id(conn, &row.session_id)? else {
        return Ok(RefreshOutcome::Rejected(Rejection::Unknown));
    };
    if !session.is_active(now) {
        return Ok(RefreshOutcome::Rejected(Rejection::SessionEnded));
    }
    let user = match queries::user_by_id(conn, &session.user_id)? {
        Some(u) if u.disabled_at.is_none() => u,
        _ => return Ok(RefreshOutcome::Rejected(Rejection::SessionEnded)),
    };

    // Which token is this? The head, the head's parent within the interval, or reuse.
    let replayed_head = if row.generation == session.head_generation {
        None
    } else if row.generation > session.head_generation {
        // Cannot happen (the head is the newest generation); refuse rather than guess.
        anyhow::bail!("a token is newer than its family's head");
    } else {
        match grace_head(conn, now, sealer, req, &row, &session)? {
            Some(head) => Some(head),
            None => {
                // RFC 9700 §4.14.2: an invalidated token was presented; revoke the family.
                sessions::revoke(conn, now, &session, "reuse", &req.ctx)?;
                sessions::session_event(
                    conn,
                    now,
                    "refresh_token_reuse_detected",
                    &session,
                    &req.ctx,
                    serde_json::json!({ "presented_generation": row.generation }),
                )?;
                return Ok(RefreshOutcome::ReuseDetected);
            }
        }
    };

    // RFC 6749 §6, §10.4: a refresh token is bound to the client it was issued to.
    if req
        .client_id
        .as_deref()
        .is_some_and(|c| c != session.client_id)
    {
        return Ok(RefreshOutcome::Rejected(Rejection::OtherClient));
    }
    // RFC 6749 §6: a refresh may keep or narrow the scope, never widen it.
    let granted = Scope::parse(&session.scope).unwrap_or_default();
    let scope = match &req.scope {
        Some(asked) if !asked.is_subset_of(&granted) => {
            return Ok(RefreshOutcome::Rejected(Rejection::ScopeTooWide))
        }
        Some(asked) => asked.to_claim(),
        None => granted.to_claim(),
    };

    let context_changed = req.ctx.ip.is_some() && req.ctx.ip != session.ip
        || req.ctx.user_agent.is_some() && req.ctx.user_agent != session.user_agent;
    if context_changed {
        sessions::session_event(
            conn,
            now,
            "session_context_changed",
            &session,
            &req.ctx,
            serde_json::json!({
                "previous_ip": session.ip,
                "previous_user_agent": session.user_agent,
            }),
        )?;
    }
    let idle_expires_at = now.saturating_add(idle_ms(&session));
    let mut session = session;
    let client = (req.ctx.ip.as_deref(), req.ctx.user_agent.as_deref());
    let (token, grace) = match replayed_head {
        Some(head) => {
            queries::touch_session(conn, &session.id, now, idle_expires_at, client.0, client.1)?;
            (head, true)
        }
        None => {
            let next = RefreshToken::generate(rng).map_err(|_| anyhow::anyhow!("CSPRNG failed"))?;
            let generation = row.generation + 1;
            queries::insert_token(conn, &next.hash(), &session.id, generation, now)?;
            // The previous head's sealed copy (on the grandparent) is replaced, not kept:
            // only the head's immediate parent may replay.
            let sealed = sealer.seal(next.expose().as_bytes(), &hash)?;
            queries::advance_head(
                conn,
                &session.id,
                now,
                idle_expires_at,
                client,
                generation,
                &sealed,
            )?;
            session.head_generation = generation;
            session.head_issued_at = now;
            session.sealed_head = Some(sealed);
            (next, false)
        }
    };
    session.last_active_at = now;
    session.idle_expires_at = idle_expires_at;
    sessions::session_event(
        conn,
        now,
        "token_refreshed",
        &session,
        &req.ctx,
        serde_json::json!({
            "generation": row.generation + 1,
            "within_reuse_interval": grace,
        }),
    )?;
    let granted = Granted {
        session,
        user,
        token,
        scope,
    };
    Ok(if grace {
        RefreshOutcome::Replayed(granted)
    } else {
        RefreshOutcome::Rotated(granted)
    })
}

/// The head token, if `row` is the head's immediate parent and the head was issued
/// within the interval: opened from the session's sealed copy, which is bound (AAD) to
/// the parent's hash, and checked against the head's stored hash.
fn grace_head(
    conn: &Connection,
    now: Millis,
    sealer: &Sealer,
    req: &RefreshRequest,
    row: &queries::TokenRow,
    session: &SessionRow,
) -> anyhow::Result<Option<RefreshToken>> {
    if row.generation + 1 != session.head_generation
        || now.saturating_sub(session.head_issued_at) > req.reuse_interval_ms
    {
        return Ok(None);
    }
    let Some(sealed) = &session.sealed_head else {
        return Ok(None);
    };
    let Some(plain) = sealer.open(sealed, &row.token_hash) else {
        return Ok(None);
    };
    let Ok(text) = std::str::from_utf8(&plain) else {
        return Ok(None);
    };
    let Ok(head) = RefreshToken::parse(text) else {
        return Ok(None);
    };
    let stored = queries::token_by_hash(conn, &head.hash())?;
    Ok(stored
        .is_some_and(|t| t.session_id == session.id && t.generation == session.head_generation)
        .then_some(head))
}
