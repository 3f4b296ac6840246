//! Authorization codes handed out by `/oauth/authorize` (docs/identity-providers-guide.md
//! "Native apps").

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::AuthorizationCode;
use crate::domain::{SessionId, TokenHash};

use super::Result;

#[async_trait(?Send)]
pub trait AuthorizationCodeRepo {
    async fn insert_authorization_code(&mut self, code: &AuthorizationCode) -> Result<()>;
    /// The code with this hash as it was before this call; if it was unused, it is now
    /// marked used at `now` and its sealed refresh token is erased. Of two exchanges
    /// racing with one code, one sees it unused.
    async fn use_authorization_code(
        &mut self,
        hash: &TokenHash,
        now: Millis,
    ) -> Result<Option<AuthorizationCode>>;
    /// Housekeeping: deletes codes that expired before `cutoff`; returns the sessions of
    /// those that were never used.
    async fn delete_authorization_codes_expired_before(
        &mut self,
        cutoff: Millis,
    ) -> Result<Vec<SessionId>>;
}
