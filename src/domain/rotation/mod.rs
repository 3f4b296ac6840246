//! Refresh-token rotation with a grace interval and reuse detection
//! (RFC 9700 §4.14.2; RFC 6749 §6, §10.4; docs/contract.md "Refresh rotation").
//!
//! Every function here runs inside one store transaction (`repository::Tx`), and the
//! store serializes writes to one family: requests racing on one token see, in turn,
//! the head, then a rotated parent. `Tx::advance_head` only moves a head that is still
//! where it was read, and `UNIQUE (session_id, generation)` on tokens makes a fork
//! impossible even if this logic were wrong.
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

use crate::clock::Millis;
use crate::domain::model::{ClientContext, NewEvent, Session, StoredToken, User};
use crate::domain::repository::Tx;
use crate::domain::sessions;
use crate::domain::{EventKind, RefreshToken, RevocationReason, Scope};

/// Seals the head for its parent (AES-256-GCM under the seal key in `keys.dir`); the
/// rules only need these two operations, not the key.
pub trait HeadSealer: Send + Sync {
    /// `plain` sealed with `aad` (the parent's hash) as associated data.
    fn seal(&self, plain: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>>;
    /// The plaintext, or `None` if `sealed` was not sealed with this key and `aad`.
    fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>>;
}

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

impl RefreshOutcome {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            RefreshOutcome::Rotated(_) => "rotated",
            RefreshOutcome::Replayed(_) => "replayed",
            RefreshOutcome::Rejected(_) => "rejected",
            RefreshOutcome::ReuseDetected => "reuse_detected",
        }
    }
}

pub struct Granted {
    pub session: Session,
    pub user: User,
    pub token: RefreshToken,
    /// Scope for the access token: the session's, or the narrower one asked for.
    pub scope: Scope,
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
pub async fn refresh(
    tx: &mut dyn Tx,
    now: Millis,
    rng: &SystemRandom,
    sealer: &dyn HeadSealer,
    req: &RefreshRequest,
    idle_ms: impl Fn(&Session) -> i64,
) -> anyhow::Result<RefreshOutcome> {
    let hash = req.token.hash();
    let Some(row) = tx.token_by_hash(&hash).await? else {
        return Ok(RefreshOutcome::Rejected(Rejection::Unknown));
    };
    let Some(session) = tx.session_by_id(&row.session_id).await? else {
        return Ok(RefreshOutcome::Rejected(Rejection::Unknown));
    };
    if !session.is_active(now) {
        return Ok(RefreshOutcome::Rejected(Rejection::SessionEnded));
    }
    let user = match tx.user_by_id(&session.user_id).await? {
        Some(u) if u.is_enabled() => u,
        _ => return Ok(RefreshOutcome::Rejected(Rejection::SessionEnded)),
    };

    // Which token is this? The head, the head's parent within the interval, or reuse.
    let replayed_head = if row.generation == session.head_generation {
        None
    } else if row.generation > session.head_generation {
        // Cannot happen (the head is the newest generation); refuse rather than guess.
        anyhow::bail!("a token is newer than its family's head");
    } else {
        match grace_head(tx, now, sealer, req, &row, &session).await? {
            Some(head) => Some(head),
            None => {
                // RFC 9700 §4.14.2: an invalidated token was presented; revoke the family.
                sessions::revoke(tx, now, &session, RevocationReason::Reuse, &req.ctx).await?;
                let event = NewEvent::about_session(
                    EventKind::RefreshTokenReuseDetected,
                    &session,
                    &req.ctx,
                )
                .detail(serde_json::json!({ "presented_generation": row.generation }));
                tx.insert_event(now, &event).await?;
                tracing::warn!(
                    session_id = %session.id,
                    "refresh token reuse detected; session revoked"
                );
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
    let scope = match &req.scope {
        Some(asked) if !asked.is_subset_of(&session.scope) => {
            return Ok(RefreshOutcome::Rejected(Rejection::ScopeTooWide))
        }
        Some(asked) => asked.clone(),
        None => session.scope.clone(),
    };

    let context_changed = req.ctx.ip.is_some() && req.ctx.ip != session.ip
        || req.ctx.user_agent.is_some() && req.ctx.user_agent != session.user_agent;
    if context_changed {
        let event = NewEvent::about_session(EventKind::SessionContextChanged, &session, &req.ctx)
            .detail(serde_json::json!({
                "previous_ip": session.ip,
                "previous_user_agent": session.user_agent,
            }));
        tx.insert_event(now, &event).await?;
    }
    let mut session = session;
    session.last_active_at = now;
    session.idle_expires_at = now.saturating_add(idle_ms(&session));
    if req.ctx.ip.is_some() {
        session.ip = req.ctx.ip.clone();
    }
    if req.ctx.user_agent.is_some() {
        session.user_agent = req.ctx.user_agent.clone();
    }
    let (token, grace) = match replayed_head {
        Some(head) => {
            tx.touch_session(&session).await?;
            (head, true)
        }
        None => {
            let next = RefreshToken::generate(rng).map_err(|_| anyhow::anyhow!("CSPRNG failed"))?;
            let generation = row.generation + 1;
            tx.insert_token(&StoredToken {
                token_hash: next.hash(),
                session_id: session.id.clone(),
                generation,
                issued_at: now,
            })
            .await?;
            // The previous head's sealed copy (on the grandparent) is replaced, not kept:
            // only the head's immediate parent may replay.
            session.head_generation = generation;
            session.head_issued_at = now;
            session.sealed_head = Some(sealer.seal(next.expose().as_bytes(), &hash)?);
            tx.advance_head(&session).await?;
            (next, false)
        }
    };
    let event = NewEvent::about_session(EventKind::TokenRefreshed, &session, &req.ctx).detail(
        serde_json::json!({
            "generation": row.generation + 1,
            "within_reuse_interval": grace,
        }),
    );
    tx.insert_event(now, &event).await?;
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
async fn grace_head(
    tx: &mut dyn Tx,
    now: Millis,
    sealer: &dyn HeadSealer,
    req: &RefreshRequest,
    row: &StoredToken,
    session: &Session,
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
    let stored = tx.token_by_hash(&head.hash()).await?;
    Ok(stored
        .is_some_and(|t| t.session_id == session.id && t.generation == session.head_generation)
        .then_some(head))
}

#[cfg(test)]
mod tests;
