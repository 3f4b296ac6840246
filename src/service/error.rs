//! What a use-case can fail with, in its own terms: no status codes, headers or bodies.
//! `routes` maps each case to the HTTP answer docs/contract.md "Conventions" names, and
//! the CLI to a message.

use crate::secret::Secret;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed; the description says what to fix.
    #[error("{0}")]
    InvalidRequest(String),
    /// A grant (refresh token, `mfa_token`, reset or verification token) is unknown,
    /// spent, expired or its session has ended.
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidScope(String),
    /// RFC 8707 §2: a `resource` the client may not have a token for.
    #[error("{0}")]
    InvalidTarget(String),
    /// The request names a client that is not configured.
    #[error("client authentication failed")]
    UnknownClient,
    /// A wrong password, or no such (enabled) account: one answer for both.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The password was right and the account has a second factor: the login finishes
    /// with this single-use token and a code (docs/contract.md "Second factor").
    #[error("a second factor is required; send a code with the mfa_token to /login/mfa")]
    SecondFactorRequired {
        mfa_token: Secret<String>,
        /// What can finish it (`mfa_methods`): `totp`, `recovery_code`, `passkey`.
        methods: Vec<&'static str>,
    },
    /// A second-factor code that is wrong, reused or outside the allowed drift, or a
    /// recovery code that is unknown or spent.
    #[error("the code is wrong, expired or already used")]
    WrongCode,
    /// RFC 9470 §3: the login behind the caller's token is not recent or strong enough.
    #[error("{description}")]
    StepUpRequired {
        description: String,
        /// Seconds since the login that the use-case accepts.
        max_age: u64,
        /// The login had no second factor.
        needs_mfa: bool,
    },
    /// The caller's access token is invalid, or its session or user has ended.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Throttled or over a limit; the same request may succeed after this long.
    #[error("too many requests; retry later")]
    RateLimited { retry_after_secs: u64 },
    /// Overloaded (the store's writer, the shared failure count).
    #[error("the server is busy; retry later")]
    Unavailable { retry_after_secs: u64 },
    /// The database cannot be reached, or did not answer in time.
    #[error("the database is unavailable; retry later")]
    DatabaseUnavailable { retry_after_secs: u64 },
    /// Anything the caller did not cause. The cause is logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Error::Internal(e.into())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy => Error::Unavailable {
                retry_after_secs: 1,
            },
            StoreError::Unavailable => Error::DatabaseUnavailable {
                retry_after_secs: 2,
            },
            // The database did not answer within `store.deadline`; nothing was written,
            // so the same request may simply be sent again.
            StoreError::DeadlinePassed => Error::DatabaseUnavailable {
                retry_after_secs: 1,
            },
            StoreError::InvalidText => {
                Error::InvalidRequest("a parameter contains a NUL character".into())
            }
            other => Error::Internal(other.into()),
        }
    }
}
