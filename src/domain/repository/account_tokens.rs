//! Account tokens: the single-use links mailed for verification and password reset
//! (hashes only).

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{AccountToken, TokenPurpose};
use crate::domain::{TokenHash, UserId};

use super::Result;

#[async_trait(?Send)]
pub trait AccountTokenRepo {
    async fn insert_account_token(&mut self, token: &AccountToken) -> Result<()>;
    async fn account_token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<AccountToken>>;
    /// Deletes every token of `purpose` the user holds; returns how many.
    async fn delete_account_tokens(
        &mut self,
        user_id: &UserId,
        purpose: TokenPurpose,
    ) -> Result<usize>;
    /// How many tokens of `purpose` were issued to the user since `since`.
    async fn count_account_tokens_since(
        &mut self,
        user_id: &UserId,
        purpose: TokenPurpose,
        since: Millis,
    ) -> Result<u32>;
    /// Housekeeping: deletes tokens that expired before `cutoff`; returns how many.
    async fn delete_account_tokens_expired_before(&mut self, cutoff: Millis) -> Result<usize>;
}
