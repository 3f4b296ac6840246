//! The revocation log (docs/contract.md "Revocation feed"): appended by
//! `SessionRepo::revoke_session` and `UserRepo::delete_user` in their own transaction,
//! read by the feed, pruned by housekeeping.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::Revocation;

use super::Result;

#[async_trait(?Send)]
pub trait RevocationLog {
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
}
