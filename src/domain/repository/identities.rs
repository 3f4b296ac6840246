//! Identities at OpenID providers linked to accounts, and the single-use state of
//! sign-ins in flight (docs/identity-providers-guide.md).

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{FederationState, Identity};
use crate::domain::{IdentityId, TokenHash, UserId};

use super::Result;

#[async_trait(?Send)]
pub trait IdentityRepo {
    /// Fails (unique key) if the provider's subject is already linked.
    async fn insert_identity(&mut self, identity: &Identity) -> Result<()>;
    async fn identity_by_subject(
        &mut self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<Identity>>;
    /// Oldest first.
    async fn identities_of_user(&mut self, user_id: &UserId) -> Result<Vec<Identity>>;
    /// A sign-in through the identity: its time and what the provider now says of the
    /// email.
    async fn record_identity_login(
        &mut self,
        id: &IdentityId,
        now: Millis,
        email: Option<&str>,
        email_verified: bool,
    ) -> Result<()>;
    /// `false` if the user has no such identity.
    async fn delete_identity(&mut self, user_id: &UserId, id: &IdentityId) -> Result<bool>;
    async fn insert_federation_state(&mut self, state: &FederationState) -> Result<()>;
    /// Deletes and returns the state with this hash: a state is used once, even by two
    /// callbacks racing on two instances.
    async fn take_federation_state(&mut self, hash: &TokenHash) -> Result<Option<FederationState>>;
    /// Housekeeping: deletes states that expired before `cutoff`; returns how many.
    async fn delete_federation_states_expired_before(&mut self, cutoff: Millis) -> Result<usize>;
}
