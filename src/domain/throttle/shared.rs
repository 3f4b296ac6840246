//! The port to the failure counts every instance shares (PostgreSQL implements it).

use super::DeviceId;
use crate::clock::Millis;

/// The account-wide and per-device failure counts kept in a store that every instance
/// shares (PostgreSQL), so that N instances give an attacker no more guesses than one
/// (docs/contract.md "Scale-out on PostgreSQL"). Keyed like the in-memory maps:
/// [`shared_key`]. The per-IP buckets and per-pair delays stay in each instance's
/// memory, like the per-IP request rate limits.
///
/// An attempt reserves its place in the count before the password is checked
/// ([`reserve`](SharedFailures::reserve)): checking the count and recording the failure
/// afterwards would let N instances that read the same count at once check N−1 passwords
/// past the limit. A wrong password keeps its reservation as its failure; a right one
/// clears the key or [`release`](SharedFailures::release)s its own reservation.
#[async_trait::async_trait]
pub trait SharedFailures: Send + Sync {
    /// Atomically (against every instance): if `key` has fewer than `limit` failures at
    /// or after `since`, counts one more at `at` (keeping at most the newest `limit`)
    /// and answers [`Reservation::Reserved`]; otherwise changes nothing and answers
    /// [`Reservation::Full`] with the oldest failure counted.
    async fn reserve(
        &self,
        key: &str,
        at: Millis,
        since: Millis,
        limit: u32,
    ) -> anyhow::Result<Reservation>;
    /// Gives back one reservation made at `at` (the attempt did not fail).
    async fn release(&self, key: &str, at: Millis) -> anyhow::Result<()>;
    /// A successful check: forgets `key`'s failures.
    async fn clear(&self, key: &str) -> anyhow::Result<()>;
    /// Housekeeping: deletes up to `limit` failures from before `before`.
    async fn prune(&self, before: Millis, limit: u32) -> anyhow::Result<usize>;
}

/// The answer of [`SharedFailures::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// The limit is reached; allowed again an hour after `oldest`.
    Full {
        oldest: Millis,
    },
}

/// The shared key of an attempt: its trusted device if it has one (which answers for
/// itself), else the account name asked for.
pub fn shared_key(account: &str, device: Option<DeviceId>) -> String {
    match device {
        Some(DeviceId(id)) => format!("d:{}", hex::encode(id)),
        None => format!("a:{account}"),
    }
}
