//! Passkeys and the WebAuthn ceremonies in flight (docs/contract.md "Passkeys").

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::passkeys::{Ceremony, StoredPasskey};
use crate::domain::{PasskeyId, TokenHash, UserId};

use super::Result;

#[async_trait(?Send)]
pub trait PasskeyRepo {
    /// Fails on a credential id already registered (to anyone).
    async fn insert_passkey(&mut self, passkey: &StoredPasskey) -> Result<()>;
    /// The user's passkeys, oldest first.
    async fn passkeys_of(&mut self, user_id: &UserId) -> Result<Vec<StoredPasskey>>;
    /// The passkey a discoverable assertion names.
    async fn passkey_by_credential_id(
        &mut self,
        credential_id: &[u8],
    ) -> Result<Option<StoredPasskey>>;
    /// Renames one of the user's passkeys; false if the user has none with that id.
    async fn rename_passkey(
        &mut self,
        user_id: &UserId,
        id: &PasskeyId,
        name: &str,
    ) -> Result<bool>;
    /// Removes one of the user's passkeys; false if the user has none with that id.
    async fn delete_passkey(&mut self, user_id: &UserId, id: &PasskeyId) -> Result<bool>;
    /// Removes every passkey of the user (`users reset-mfa`); returns how many.
    async fn delete_passkeys_of(&mut self, user_id: &UserId) -> Result<usize>;
    /// After an assertion: the credential as webauthn-rs updated it, its counter and when.
    /// False if the passkey is gone (removed while the ceremony ran).
    async fn record_passkey_use(
        &mut self,
        id: &PasskeyId,
        credential: &str,
        counter: u32,
        at: Millis,
    ) -> Result<bool>;

    async fn insert_ceremony(&mut self, ceremony: &Ceremony) -> Result<()>;
    /// Deletes the ceremony and returns it, expired or not (the caller checks): of two
    /// finishes racing for one ceremony, one gets it.
    async fn take_ceremony(&mut self, token_hash: &TokenHash) -> Result<Option<Ceremony>>;
    /// Housekeeping: deletes ceremonies that expired before `cutoff`; returns how many.
    async fn delete_ceremonies_expired_before(&mut self, cutoff: Millis) -> Result<usize>;
}
