//! The second factor (docs/contract.md "Second factor"). Three tables, each keyed
//! simply: `mfa_factors` (one row per user), `mfa_recovery_codes` (user id + SHA-256 of
//! a code) and `mfa_logins` (SHA-256 of an `mfa_token`). All rows go with their user
//! (ON DELETE CASCADE), so `UserRepo::delete_user` removes them.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{MfaFactor, PendingLogin};
use crate::domain::{TokenHash, UserId};

use super::Result;

#[async_trait(?Send)]
pub trait SecondFactorRepo {
    /// The user's factor, confirmed or still waiting for its first code.
    async fn mfa_factor(&mut self, user_id: &UserId) -> Result<Option<MfaFactor>>;
    /// Inserts the user's factor, or replaces the one they have (every column).
    async fn put_mfa_factor(&mut self, factor: &MfaFactor) -> Result<()>;
    /// Records `step` as the factor's last used time step, only if it is later than the
    /// stored one (or none is stored): `UPDATE … WHERE last_step IS NULL OR last_step <
    /// step`. `false` if not, i.e. the code was already used (RFC 6238 §5.2).
    async fn advance_mfa_step(&mut self, user_id: &UserId, step: i64) -> Result<bool>;
    /// Deletes the user's factor and all their recovery codes and pending logins;
    /// `false` if they had no factor.
    async fn delete_mfa_factor(&mut self, user_id: &UserId) -> Result<bool>;
    /// Replaces all the user's recovery codes (their SHA-256) with `hashes`.
    async fn replace_recovery_codes(
        &mut self,
        user_id: &UserId,
        hashes: &[TokenHash],
    ) -> Result<()>;
    /// Deletes the user's recovery code with this SHA-256; `true` if there was one (the
    /// code is spent), `false` if unknown or already used.
    async fn consume_recovery_code(&mut self, user_id: &UserId, hash: &TokenHash) -> Result<bool>;
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
    async fn mfa_code_failures_for_update(&mut self, user_id: &UserId) -> Result<Option<u32>>;
    /// One more consecutive wrong code on the user's factor.
    async fn add_mfa_code_failure(&mut self, user_id: &UserId) -> Result<()>;
    /// A right code: the consecutive count starts again.
    async fn reset_mfa_code_failures(&mut self, user_id: &UserId) -> Result<()>;
    /// Housekeeping: deletes pending logins that expired before `cutoff`; how many.
    async fn delete_mfa_logins_expired_before(&mut self, cutoff: Millis) -> Result<usize>;
}
