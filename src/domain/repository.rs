//! The port through which the rules read and change stored state: one trait per
//! aggregate (in `repository/`), and [`Tx`], all of them at once, which is what a store
//! job receives. A backend (`store::sqlite`, `store::postgres`) implements each trait
//! in a file that pairs with the other backend's; the rules and use-cases never see
//! SQL, a connection or a row (docs/store.md).
//!
//! A `Tx` is one transaction: everything a job does through it commits together or not
//! at all (`store::Store::write`), and a job run by `store::Store::read` sees every
//! write that has returned. Methods are `async` so that a backend with a network
//! round trip (PostgreSQL) can implement them; the SQLite backend answers at once.

mod account_tokens;
mod authorization_codes;
mod emails;
mod events;
mod identities;
mod mfa;
mod passkeys;
mod revocations;
mod sessions;
mod users;
mod webhooks;

use async_trait::async_trait;

pub use account_tokens::AccountTokenRepo;
pub use authorization_codes::AuthorizationCodeRepo;
pub use emails::EmailRepo;
pub use events::EventRepo;
pub use identities::IdentityRepo;
pub use mfa::SecondFactorRepo;
pub use passkeys::PasskeyRepo;
pub use revocations::RevocationLog;
pub use sessions::{SessionRepo, SweepStep};
pub use users::UserRepo;
pub use webhooks::WebhookRepo;

pub type Result<T> = anyhow::Result<T>;

/// One transaction over every aggregate: what `store::Store::write` and `read` hand a
/// job (`&mut dyn Tx`).
#[async_trait(?Send)]
pub trait Tx:
    UserRepo
    + SessionRepo
    + RevocationLog
    + EventRepo
    + EmailRepo
    + AccountTokenRepo
    + SecondFactorRepo
    + PasskeyRepo
    + WebhookRepo
    + IdentityRepo
    + AuthorizationCodeRepo
{
    /// The store answers (readiness).
    async fn ping(&mut self) -> Result<()>;
}
