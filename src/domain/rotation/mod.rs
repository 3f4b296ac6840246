//! Refresh-token rotation with a grace interval and reuse detection
//! (RFC 9700 §4.14.2; RFC 6749 §6, §10.4; docs/contract.md "Refresh rotation").
//!
//! Every function here runs inside one store transaction (`repository::Tx`), and the
//! store serializes writes to one family: requests racing on one token see, in turn,
//! the head, then a rotated parent. `Tx::advance_head` only moves a head that is still
//! one generation behind, so a fork is impossible even if this logic were wrong.
//!
//! ## One row per rotation
//! A located token (`lk1_…`, see `domain::refresh_token`) names its session and
//! generation and carries a tag only latchkey can make. A refresh reads the session by
//! primary key and compares the token's hash with the head's (`sessions.head_hash`) in
//! constant time; a rotation rewrites that one row. Older generations keep no hash:
//! their valid tag proves latchkey issued them, which is all reuse detection needs.
//! Legacy tokens (issued before schema version 5) are still found by hash in
//! `refresh_tokens` until their family rotates onto the located format.
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
use crate::domain::model::{ClientContext, NewEvent, Session, User};
use crate::domain::repository::Tx;
use crate::domain::revocation;
use crate::domain::{EventKind, RefreshToken, RevocationReason, Scope, SessionId, TokenTagger};

/// The keys the rules use, without seeing them: the seal for the head (AES-256-GCM) and
/// the tagger for located tokens (HMAC-SHA256), both under the key in `keys.dir`.
pub trait RefreshKeys: TokenTagger {
    /// `plain` sealed with `aad` (the parent's hash) as associated data.
    fn seal(&self, plain: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>>;
    /// The plaintext, or `None` if `sealed` was not sealed with this key and `aad`.
    fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>>;
}

#[derive(Clone)]
pub struct RefreshRequest {
    pub token: RefreshToken,
    /// The client that presents it; `None` means "whoever it was issued to".
    pub client_id: Option<String>,
    /// A narrower scope for the new access token (RFC 6749 §6), if asked for.
    pub scope: Option<Scope>,
    pub reuse_interval_ms: i64,
    /// `events.record_refreshes`: also record every refresh as a `token_refreshed`
    /// event (the session row records it either way).
    pub record_event: bool,
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
    /// The session was revoked because one of its rotated tokens came back (theft). Its
    /// holder is told so, so that a client can say why it was signed out (the client
    /// libraries' `SESSION_ENDED` reason `reuse`); the replayed token itself still gets
    /// the generic answer.
    EndedByReuse,
    OtherClient,
    ScopeTooWide,
}

impl Rejection {
    pub fn description(self) -> &'static str {
        match self {
            Rejection::Unknown => "the refresh token is invalid",
            Rejection::SessionEnded => "the refresh token has expired or been revoked",
            Rejection::EndedByReuse => "the session was revoked: refresh token reuse was detected",
            Rejection::OtherClient => "the refresh token was issued to another client",
            Rejection::ScopeTooWide => "the requested scope exceeds the granted scope",
        }
    }
}

/// A token latchkey issued, with its family: its generation, and whether it is the
/// family's head.
pub struct Found {
    pub session: Session,
    pub generation: i64,
    pub is_head: bool,
}

/// The family a presented token belongs to, if latchkey issued it. A located token
/// whose tag fails is refused before any read; one that claims the head's generation
/// must also match the head's hash (constant time). A legacy token is found by hash.
pub async fn find(
    tx: &mut dyn Tx,
    tagger: &dyn TokenTagger,
    token: &RefreshToken,
) -> anyhow::Result<Option<Found>> {
    match token.locate(tagger) {
        Err(_) => Ok(None),
        Ok(Some(at)) => {
            let Some(session) = tx.session_by_id(&SessionId::from(at.session_id)).await? else {
                return Ok(None);
            };
            let is_head = at.generation == session.head_generation
                && session.head_hash.is_some_and(|h| token.matches(&h));
            if at.generation >= session.head_generation && !is_head {
                // A tag we made, for a generation that is not behind the head: only
                // the head itself can be that, and this is not it.
                return Ok(None);
            }
            Ok(Some(Found {
                session,
                generation: at.generation,
                is_head,
            }))
        }
        Ok(None) => {
            let Some(row) = tx.token_by_hash(&token.hash()).await? else {
                return Ok(None);
            };
            let Some(session) = tx.session_by_id(&row.session_id).await? else {
                return Ok(None);
            };
            // A legacy row at the head's generation is the head only while the head
            // has not moved onto the located format.
            let is_head = row.generation == session.head_generation && session.head_hash.is_none();
            if row.generation >= session.head_generation && !is_head {
                anyhow::bail!("a stored token is not behind its family's head");
            }
            Ok(Some(Found {
                session,
                generation: row.generation,
                is_head,
            }))
        }
    }
}

/// `idle_ms(session)`: the idle timeout that applies to that session (client, remember-me).
pub async fn refresh(
    tx: &mut dyn Tx,
    clock: impl FnOnce() -> Millis,
    rng: &SystemRandom,
    keys: &dyn RefreshKeys,
    req: &RefreshRequest,
    idle_ms: impl Fn(&Session) -> i64,
) -> anyhow::Result<RefreshOutcome> {
    let Some(found) = find(tx, keys, &req.token).await? else {
        return Ok(RefreshOutcome::Rejected(Rejection::Unknown));
    };
    // The time is read once the session is in hand (a stalled database may have kept
    // us waiting for it), so a rotation's reuse interval runs from its commit, not from
    // the request's arrival: a client that gave up during a stall and retries is within
    // it (docs/contract.md "Refresh rotation").
    let now = clock();
    let Found {
        session,
        generation,
        is_head,
    } = found;
    if !session.is_active(now) {
        return Ok(RefreshOutcome::Rejected(
            if session.revoked_reason == Some(RevocationReason::Reuse) {
                Rejection::EndedByReuse
            } else {
                Rejection::SessionEnded
            },
        ));
    }
    let user = match tx.user_by_id(&session.user_id).await? {
        Some(u) if u.is_enabled() => u,
        _ => return Ok(RefreshOutcome::Rejected(Rejection::SessionEnded)),
    };

    // Which token is this? The head, the head's parent within the interval, or reuse.
    let replayed_head = if is_head {
        None
    } else {
        match grace_head(tx, now, keys, req, generation, &session).await? {
            Some(head) => Some(head),
            None => {
                revoke_for_reuse(tx, now, &session, generation, &req.ctx).await?;
                return Ok(RefreshOutcome::ReuseDetected);
            }
        }
    };
    let scope = match permitted_scope(req, &session) {
        Ok(scope) => scope,
        Err(rejection) => return Ok(RefreshOutcome::Rejected(rejection)),
    };

    record_context_change(tx, now, &session, &req.ctx).await?;
    let mut session = session;
    let idle = idle_ms(&session);
    record_activity(&mut session, now, idle, &req.ctx);
    let (token, grace) = match replayed_head {
        Some(head) => {
            tx.touch_session(&session).await?;
            (head, true)
        }
        None => {
            let next = next_head(rng, keys, &mut session, now, &req.token)?;
            tx.advance_head(&session).await?;
            (next, false)
        }
    };
    if req.record_event {
        let event = NewEvent::about_session(EventKind::TokenRefreshed, &session, &req.ctx).detail(
            serde_json::json!({
                "generation": generation + 1,
                "within_reuse_interval": grace,
            }),
        );
        tx.insert_event(now, &event).await?;
    }
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

/// RFC 9700 §4.14.2: an invalidated token was presented; the whole family is revoked
/// and the reuse recorded.
async fn revoke_for_reuse(
    tx: &mut dyn Tx,
    now: Millis,
    session: &Session,
    generation: i64,
    ctx: &ClientContext,
) -> anyhow::Result<()> {
    // Recorded by whoever revoked it: two replays racing (on two instances, or in one
    // shared transaction) make one reuse event, not two.
    if !revocation::revoke(tx, now, session, RevocationReason::Reuse, ctx).await? {
        return Ok(());
    }
    let event = NewEvent::about_session(EventKind::RefreshTokenReuseDetected, session, ctx)
        .detail(serde_json::json!({ "presented_generation": generation }));
    tx.insert_event(now, &event).await?;
    tracing::warn!(session_id = %session.id, "refresh token reuse detected; session revoked");
    Ok(())
}

/// The scope the new access token may carry: the session's, or the narrower one asked
/// for (RFC 6749 §6), and only for the client the token was issued to (RFC 6749 §10.4).
fn permitted_scope(req: &RefreshRequest, session: &Session) -> Result<Scope, Rejection> {
    if req
        .client_id
        .as_deref()
        .is_some_and(|c| c != session.client_id)
    {
        return Err(Rejection::OtherClient);
    }
    match &req.scope {
        Some(asked) if !asked.is_subset_of(&session.scope) => Err(Rejection::ScopeTooWide),
        Some(asked) => Ok(asked.clone()),
        None => Ok(session.scope.clone()),
    }
}

/// A refresh is recorded on its session: last active now, the idle expiry moved (never
/// the absolute one), and the client's address and user agent when known.
fn record_activity(session: &mut Session, now: Millis, idle_ms: i64, ctx: &ClientContext) {
    session.last_active_at = now;
    session.idle_expires_at = now.saturating_add(idle_ms);
    if ctx.ip.is_some() {
        session.ip = ctx.ip.clone();
    }
    if ctx.user_agent.is_some() {
        session.user_agent = ctx.user_agent.clone();
    }
}

/// The next head of `session`, issued now: its hash and its copy sealed on `parent` go
/// on the session (the caller writes it). The previous head's sealed copy is replaced,
/// not kept: only the head's immediate parent may replay.
fn next_head(
    rng: &SystemRandom,
    keys: &dyn RefreshKeys,
    session: &mut Session,
    now: Millis,
    parent: &RefreshToken,
) -> anyhow::Result<RefreshToken> {
    let generation = session.head_generation + 1;
    let id = uuid::Uuid::parse_str(session.id.as_str())?;
    let next = RefreshToken::issue(rng, keys, id, generation)?;
    session.head_generation = generation;
    session.head_issued_at = now;
    session.head_hash = Some(next.hash());
    session.sealed_head = Some(keys.seal(next.expose().as_bytes(), &parent.hash())?);
    Ok(next)
}

/// The first head of a new session (generation 0).
pub fn first_head(
    rng: &SystemRandom,
    tagger: &dyn TokenTagger,
    session: &mut Session,
) -> anyhow::Result<RefreshToken> {
    let token = RefreshToken::issue(rng, tagger, uuid::Uuid::parse_str(session.id.as_str())?, 0)?;
    session.head_generation = 0;
    session.head_hash = Some(token.hash());
    Ok(token)
}

/// A `session_context_changed` event when the request comes from another address or
/// user agent than the session's last one (the session row records the new ones).
async fn record_context_change(
    tx: &mut dyn Tx,
    now: Millis,
    session: &Session,
    ctx: &ClientContext,
) -> anyhow::Result<()> {
    let changed = ctx.ip.is_some() && ctx.ip != session.ip
        || ctx.user_agent.is_some() && ctx.user_agent != session.user_agent;
    if changed {
        let event = NewEvent::about_session(EventKind::SessionContextChanged, session, ctx).detail(
            serde_json::json!({
                "previous_ip": session.ip,
                "previous_user_agent": session.user_agent,
            }),
        );
        tx.insert_event(now, &event).await?;
    }
    Ok(())
}

/// The head token, if the presented token (of `generation`) is the head's immediate
/// parent and the head was issued within the interval: opened from the session's sealed
/// copy, which is bound (AAD) to the parent's hash, and checked against the head.
async fn grace_head(
    tx: &mut dyn Tx,
    now: Millis,
    keys: &dyn RefreshKeys,
    req: &RefreshRequest,
    generation: i64,
    session: &Session,
) -> anyhow::Result<Option<RefreshToken>> {
    if generation + 1 != session.head_generation
        || now.saturating_sub(session.head_issued_at) > req.reuse_interval_ms
    {
        return Ok(None);
    }
    let Some(sealed) = &session.sealed_head else {
        return Ok(None);
    };
    let Some(plain) = keys.open(sealed, &req.token.hash()) else {
        return Ok(None);
    };
    let Ok(head) = std::str::from_utf8(&plain).map(RefreshToken::parse) else {
        return Ok(None);
    };
    let Ok(head) = head else {
        return Ok(None);
    };
    let is_head = find(tx, keys, &head)
        .await?
        .is_some_and(|f| f.is_head && f.session.id == session.id);
    Ok(is_head.then_some(head))
}

#[cfg(test)]
mod tests;
