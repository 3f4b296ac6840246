//! Email addresses (docs/contract.md "Email and account recovery"): one per user,
//! owned once verified.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{User, UserEmail};
use crate::domain::UserId;

use super::Result;

#[async_trait(?Send)]
pub trait EmailRepo {
    async fn email_of_user(&mut self, user_id: &UserId) -> Result<Option<UserEmail>>;
    /// The account that has verified the address with this case-insensitive key (at
    /// most one: unverified claims are not owners).
    async fn user_by_verified_email(&mut self, email_key: &str) -> Result<Option<User>>;
    /// Every account's claim on the address, verified or not, locked until the
    /// transaction ends (PostgreSQL `FOR UPDATE`, in user id order), so that two
    /// verifications of one address run one after the other.
    async fn lock_email_claims(&mut self, email_key: &str) -> Result<Vec<UserEmail>>;
    /// Deletes the unverified claims on the address of every account but `owner`, and
    /// their verification tokens for it; returns how many claims.
    async fn drop_unverified_claims(&mut self, email_key: &str, owner: &UserId) -> Result<usize>;
    /// Sets (or replaces) the user's address, unverified.
    async fn set_email(&mut self, email: &UserEmail, email_key: &str) -> Result<()>;
    /// Marks the user's address verified if its key is still `email_key`; `false` if not.
    async fn mark_email_verified(
        &mut self,
        user_id: &UserId,
        email_key: &str,
        now: Millis,
    ) -> Result<bool>;
}
