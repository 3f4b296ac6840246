//! Plain values that configuration produces and the domain rules consume. They live
//! here, not in `config`, so that dependencies point one way: config → domain.

use serde::{Deserialize, Serialize};

/// How long a session may live, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

/// What a login does when the user already has `session.max_per_user` live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPolicy {
    /// End the user's oldest sessions to make room (the default).
    EvictOldest,
    /// Refuse the login with 409.
    Reject,
}

/// A JWS signing algorithm latchkey issues access tokens with (RFC 7518 §3, RFC 8037).
/// One algorithm per key (RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    ES256,
    EdDSA,
    RS256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
        }
    }
}
