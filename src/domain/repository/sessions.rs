//! Sessions and their refresh-token families: one session row carries the family's
//! head; `refresh_tokens` keeps the hashes of the generations issued (hashes only).

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{Session, StoredToken};
use crate::domain::{RevocationReason, SessionId, TokenHash, UserId};

use super::Result;

/// One step of the session sweep (housekeeping): what it removed, and where the next
/// step starts (`None` once the sweep has reached the end): the last session id it
/// covered. Both backends sweep in id order, by primary key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStep {
    pub tokens: usize,
    pub sessions: usize,
    pub next: Option<String>,
}

#[async_trait(?Send)]
pub trait SessionRepo {
    async fn session_by_id(&mut self, id: &SessionId) -> Result<Option<Session>>;
    /// The user's sessions live at `now`, oldest first.
    async fn active_sessions_of_user(
        &mut self,
        user_id: &UserId,
        now: Millis,
    ) -> Result<Vec<Session>>;
    async fn count_active_sessions(&mut self, now: Millis) -> Result<i64>;
    async fn insert_session(&mut self, session: &Session) -> Result<()>;
    /// Records activity: `last_active_at`, the idle expiry (never the absolute one), and
    /// the client's address and user agent when known.
    async fn touch_session(&mut self, session: &Session) -> Result<()>;
    /// A rotation: the head moves to `session.head_generation` with its sealed copy and
    /// activity, in one update. Fails unless the stored head was one generation behind,
    /// so two rotations of one head can never both succeed.
    async fn advance_head(&mut self, session: &Session) -> Result<()>;
    /// Revokes the session if it is still unrevoked (and wipes its sealed head); `true`
    /// if it did. A backend counts the revocations it commits, by reason, and appends
    /// each to the revocation log in the same transaction.
    async fn revoke_session(
        &mut self,
        id: &SessionId,
        now: Millis,
        reason: RevocationReason,
    ) -> Result<bool>;
    /// Wipes sealed heads issued before `cutoff`; returns how many.
    async fn wipe_sealed_heads_before(&mut self, cutoff: Millis) -> Result<usize>;
    /// Housekeeping: among the next `limit` sessions after the id `after` (`""`: from
    /// the first), deletes the tokens of ended sessions, and the sessions that ended
    /// before `ended_before`.
    async fn sweep_sessions(
        &mut self,
        after: &str,
        limit: u32,
        now: Millis,
        ended_before: Millis,
    ) -> Result<SweepStep>;
    async fn token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<StoredToken>>;
    /// Fails if the session already has a token of that generation (no fork).
    async fn insert_token(&mut self, token: &StoredToken) -> Result<()>;
}
