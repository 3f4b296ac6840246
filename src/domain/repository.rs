//! The port through which the rules read and change stored state. A backend
//! (`store::sqlite`, later others) implements [`Tx`]; the rules and use-cases never see
//! SQL, a connection or a row.
//!
//! A `Tx` is one transaction: everything a job does through it commits together or not
//! at all (`store::Store::write`), and a job run by `store::Store::read` sees every
//! write that has returned. Methods are `async` so that a backend with a network
//! round trip can implement them; the SQLite backend answers at once.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{
    AccountToken, Event, EventQuery, MfaFactor, NewEvent, PendingLogin, Revocation, Session,
    StoredToken, TokenPurpose, User, UserEmail,
};
use crate::domain::{RevocationReason, TokenHash};

pub type Result<T> = anyhow::Result<T>;

/// One step of the session sweep (housekeeping): what it removed, and where the next
/// step starts (`None` once the sweep has reached the end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStep {
    pub tokens: usize,
    pub sessions: usize,
    pub next: Option<i64>,
}

#[async_trait(?Send)]
pub trait Tx {
    /// The store answers (readiness).
    async fn ping(&mut self) -> Result<()>;

    // Users.
    async fn user_by_id(&mut self, id: &str) -> Result<Option<User>>;
    /// By `Username::key` (the case-insensitive form).
    async fn user_by_username_key(&mut self, key: &str) -> Result<Option<User>>;
    async fn all_users(&mut self) -> Result<Vec<User>>;
    /// `username_key` and `skeleton` are `Username::key` and `Username::skeleton`.
    async fn insert_user(&mut self, user: &User, username_key: &str, skeleton: &str) -> Result<()>;
    /// Whether an existing user's name has this confusable skeleton.
    async fn username_skeleton_taken(&mut self, skeleton: &str) -> Result<bool>;
    async fn set_password_hash(&mut self, user_id: &str, hash: &str) -> Result<()>;
    /// Marks the user disabled; `false` if it already was (or does not exist).
    async fn set_disabled(&mut self, user_id: &str, now: Millis) -> Result<bool>;
    /// Deletes the user with its sessions, tokens and events, and forgets them as the
    /// actor of other users' events; `false` if none. The sessions still live at `now`
    /// enter the revocation log first: their access tokens outlive the rows.
    async fn delete_user(&mut self, user_id: &str, now: Millis) -> Result<bool>;
    /// Once this transaction commits, remove what it deleted from the store's files too
    /// before the write returns (erasure: deleted rows must not linger in free pages or
    /// a log). SQLite: deleted content is zeroed as it goes (`secure_delete`), and this
    /// asks for a WAL checkpoint that truncates the log.
    async fn scrub_after_commit(&mut self) -> Result<()>;

    // Sessions.
    async fn session_by_id(&mut self, id: &str) -> Result<Option<Session>>;
    /// The user's sessions live at `now`, oldest first.
    async fn active_sessions_of_user(&mut self, user_id: &str, now: Millis)
        -> Result<Vec<Session>>;
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
        id: &str,
        now: Millis,
        reason: RevocationReason,
    ) -> Result<bool>;
    /// Wipes sealed heads issued before `cutoff`; returns how many.
    async fn wipe_sealed_heads_before(&mut self, cutoff: Millis) -> Result<usize>;
    /// Housekeeping: among the next `limit` sessions after the cursor `after`, deletes
    /// the tokens of ended sessions, and the sessions that ended before `ended_before`.
    async fn sweep_sessions(
        &mut self,
        after: i64,
        limit: u32,
        now: Millis,
        ended_before: Millis,
    ) -> Result<SweepStep>;

    // The revocation log (docs/contract.md "Revocation feed").
    /// Up to `limit` entries numbered after `after` and revoked at or after `since`,
    /// oldest first.
    async fn revocations_after(
        &mut self,
        after: i64,
        since: Millis,
        limit: u32,
    ) -> Result<Vec<Revocation>>;
    /// Deletes up to `limit` entries revoked before `cutoff`; a short count means none
    /// are left.
    async fn prune_revocations(&mut self, cutoff: Millis, limit: u32) -> Result<usize>;

    // Refresh tokens (hashes only).
    async fn token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<StoredToken>>;
    /// Fails if the session already has a token of that generation (no fork).
    async fn insert_token(&mut self, token: &StoredToken) -> Result<()>;

    // Security events.
    async fn insert_event(&mut self, at: Millis, event: &NewEvent) -> Result<()>;
    async fn events(&mut self, query: &EventQuery) -> Result<Vec<Event>>;
    async fn has_logged_in_before(&mut self, user_id: &str) -> Result<bool>;
    /// Whether the user logged in from this network and browser family since `since`.
    async fn seen_device(
        &mut self,
        user_id: &str,
        since: Millis,
        network: &str,
        ua_family: &str,
    ) -> Result<bool>;
    /// Deletes events older than `cutoff` among the oldest `limit`; a short count means
    /// none are left.
    async fn delete_events_before(&mut self, cutoff: Millis, limit: u32) -> Result<usize>;

    // Email addresses and account tokens (docs/contract.md "Email and account recovery").
    async fn email_of_user(&mut self, user_id: &str) -> Result<Option<UserEmail>>;
    /// The account that has verified the address with this case-insensitive key (at
    /// most one: unverified claims are not owners).
    async fn user_by_verified_email(&mut self, email_key: &str) -> Result<Option<User>>;
    /// Every account's claim on the address, verified or not, locked until the
    /// transaction ends (PostgreSQL `FOR UPDATE`, in user id order), so that two
    /// verifications of one address run one after the other.
    async fn lock_email_claims(&mut self, email_key: &str) -> Result<Vec<UserEmail>>;
    /// Deletes the unverified claims on the address of every account but `owner`, and
    /// their verification tokens for it; returns how many claims.
    async fn drop_unverified_claims(&mut self, email_key: &str, owner: &str) -> Result<usize>;
    /// Sets (or replaces) the user's address, unverified.
    async fn set_email(&mut self, email: &UserEmail, email_key: &str) -> Result<()>;
    /// Marks the user's address verified if its key is still `email_key`; `false` if not.
    async fn mark_email_verified(
        &mut self,
        user_id: &str,
        email_key: &str,
        now: Millis,
    ) -> Result<bool>;
    async fn insert_account_token(&mut self, token: &AccountToken) -> Result<()>;
    async fn account_token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<AccountToken>>;
    /// Deletes every token of `purpose` the user holds; returns how many.
    async fn delete_account_tokens(
        &mut self,
        user_id: &str,
        purpose: TokenPurpose,
    ) -> Result<usize>;
    /// How many tokens of `purpose` were issued to the user since `since`.
    async fn count_account_tokens_since(
        &mut self,
        user_id: &str,
        purpose: TokenPurpose,
        since: Millis,
    ) -> Result<u32>;
    /// Housekeeping: deletes tokens that expired before `cutoff`; returns how many.
    async fn delete_account_tokens_expired_before(&mut self, cutoff: Millis) -> Result<usize>;

    // ------------------------------------------------------------------------------
    // Second factor (docs/contract.md "Second factor"; SQLite migration 10). Three
    // tables, each keyed simply: `mfa_factors` (one row per user), `mfa_recovery_codes`
    // (user id + SHA-256 of a code) and `mfa_logins` (SHA-256 of an `mfa_token`). All
    // rows go with their user (ON DELETE CASCADE), so `delete_user` removes them.
    // ------------------------------------------------------------------------------
    /// The user's factor, confirmed or still waiting for its first code.
    async fn mfa_factor(&mut self, user_id: &str) -> Result<Option<MfaFactor>>;
    /// Inserts the user's factor, or replaces the one they have (every column).
    async fn put_mfa_factor(&mut self, factor: &MfaFactor) -> Result<()>;
    /// Records `step` as the factor's last used time step, only if it is later than the
    /// stored one (or none is stored): `UPDATE … WHERE last_step IS NULL OR last_step <
    /// step`. `false` if not, i.e. the code was already used (RFC 6238 §5.2).
    async fn advance_mfa_step(&mut self, user_id: &str, step: i64) -> Result<bool>;
    /// Deletes the user's factor and all their recovery codes and pending logins;
    /// `false` if they had no factor.
    async fn delete_mfa_factor(&mut self, user_id: &str) -> Result<bool>;
    /// Replaces all the user's recovery codes (their SHA-256) with `hashes`.
    async fn replace_recovery_codes(&mut self, user_id: &str, hashes: &[TokenHash]) -> Result<()>;
    /// Deletes the user's recovery code with this SHA-256; `true` if there was one (the
    /// code is spent), `false` if unknown or already used.
    async fn consume_recovery_code(&mut self, user_id: &str, hash: &TokenHash) -> Result<bool>;
    async fn insert_mfa_login(&mut self, login: &PendingLogin) -> Result<()>;
    /// By the SHA-256 of its `mfa_token`, expired or not.
    async fn mfa_login_by_hash(&mut self, hash: &TokenHash) -> Result<Option<PendingLogin>>;
    /// Deletes it (finished or ended); `true` if it was there, so of two concurrent
    /// finishes only one succeeds.
    async fn delete_mfa_login(&mut self, hash: &TokenHash) -> Result<bool>;
    /// Reserves one code check on it before the code is checked, if it has had fewer
    /// than `max`: `UPDATE … SET failures = failures + 1 WHERE … AND failures < max`,
    /// whose row lock makes concurrent checks on any instance take turns (never a
    /// `max + 1`th check). The count after, or `None` if it is gone or used up. A right
    /// code deletes the pending login, so only wrong codes keep their reservation.
    async fn reserve_mfa_login_check(&mut self, hash: &TokenHash, max: u32) -> Result<Option<u32>>;
    /// The consecutive wrong codes of the user's active factor (NIST SP 800-63B §5.2.2),
    /// locking its row until this write commits (`SELECT … FOR UPDATE`), so concurrent
    /// checks of one account's codes take turns. `None` without an active factor.
    async fn mfa_code_failures_for_update(&mut self, user_id: &str) -> Result<Option<u32>>;
    /// One more consecutive wrong code on the user's factor.
    async fn add_mfa_code_failure(&mut self, user_id: &str) -> Result<()>;
    /// A right code: the consecutive count starts again.
    async fn reset_mfa_code_failures(&mut self, user_id: &str) -> Result<()>;
    /// Housekeeping: deletes pending logins that expired before `cutoff`; how many.
    async fn delete_mfa_logins_expired_before(&mut self, cutoff: Millis) -> Result<usize>;
}
