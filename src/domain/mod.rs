//! The domain: entities, the rules over them, and the port (`repository::Tx`) through
//! which they reach stored state. Nothing here knows about HTTP or SQL.
//!
//! The newtypes follow "parse, don't validate": a value of the type is proof that the
//! input passed the rules, so handlers and the store never re-check.

mod client_id;
mod ids;
mod password;
mod policy;
mod refresh_token;
mod scope;
pub mod username;
mod vocabulary;

pub use client_id::ClientId;
pub use ids::{IdentityId, InvalidId, PasskeyId, SessionId, UserId};
pub use password::{Password, PasswordError};
pub use policy::{Algorithm, Lifetimes, LimitPolicy};
pub use refresh_token::{
    Forged, Locator, RefreshToken, TokenHash, TokenTagger, LOCATED_CHARS as LOCATED_TOKEN_CHARS,
};
pub use scope::Scope;
pub use username::Username;
pub use vocabulary::{AuthMethod, DeliveryStatus, EventKind, RevocationReason};

pub mod accounts;
pub mod authorization_codes;
pub mod email;
pub mod identities;
pub mod key_blobs;
pub mod mfa;
pub mod model;
pub mod passkey_login;
pub mod passkeys;
pub mod recovery;
pub mod repository;
pub mod revocation;
pub mod rotation;
pub mod sessions;
pub mod throttle;
pub mod totp;
pub mod webhooks;
