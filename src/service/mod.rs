//! Use-cases: one function each. A use-case takes typed input and the parts of the
//! state it uses (the store, the time, or a small context naming its dependencies:
//! [`password_check::Gate`], [`issue::Issuing`], [`recovery::Recovery`],
//! [`revoke::TokenLookup`]), runs its rules through the store (`domain::repository::Tx`),
//! records its own events and metrics, and returns a typed outcome or a
//! transport-neutral [`Error`]. Routes only parse the request, call one of these, and
//! render the answer; the CLI calls the same functions. Nothing here reads or writes
//! HTTP.

pub mod accounts;
pub mod auth;
pub mod authorize;
pub mod error;
pub mod events;
pub mod federation;
pub mod introspect;
pub mod issue;
pub mod login;
pub mod mfa;
pub mod mfa_login;
pub mod passkey_login;
pub mod passkeys;
pub mod password_check;
pub mod recovery;
pub mod refresh;
pub mod revocations;
pub mod revoke;
pub mod sessions;
pub mod status;
pub mod webhooks;

pub use crate::domain::model::ClientContext;
pub use error::Error;

#[cfg(test)]
mod tests;
