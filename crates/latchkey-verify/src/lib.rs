//! Offline verification of latchkey access tokens for resource servers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), latchkey_verify::BuildError> {
//! use latchkey_verify::Verifier;
//! let verifier = Verifier::builder("https://auth.example.com")
//!     .audience("https://api.example.com")
//!     .resource_server("orders-api", "its secret")
//!     .build()
//!     .await?;
//! # let token = "";
//! match verifier.verify(token).await {
//!     Ok(claims) => println!("{} in session {}", claims.sub, claims.sid),
//!     Err(e) => println!("refused: {e}"),
//! }
//! # Ok(()) }
//! ```
//!
//! `build` discovers the issuer's RFC 8414 metadata, fetches its JWKS and the revocation
//! feed, then follows both in the background. `verify` never makes a request on the
//! happy path: it checks the token as latchkey itself does (RFC 9068, RFC 8725) and
//! refuses tokens whose session (`sid`) is in the feed.
//!
//! Fail-safe choices:
//! - latchkey unreachable: verification goes on with the cached keys (they are not
//!   dropped when a refetch fails), and the revocation set keeps what it knows.
//! - The feed is *stale* once nothing has been heard from it (no event, heartbeat, or
//!   successful poll) for [`VerifierBuilder::max_staleness`] (default 60 s); then
//!   [`OnStale::Refuse`] (the default) refuses every token with
//!   [`VerifyError::FeedStale`] and [`OnStale::Accept`] goes on without revocations.
//! - An unknown `kid` refetches the JWKS at most once per
//!   [`VerifierBuilder::min_refetch_interval`] (default 10 s), one fetch at a time, so a
//!   flood of made-up `kid`s costs latchkey one request per interval.
//!
//! Modules: `builder` (settings, discovery), `verifier` (the checks), `claims` (what a
//! token carries, step-up), `jwks` (the key cache), `feed` (the revocation set and how
//! it is followed).

mod builder;
mod claims;
mod feed;
mod jwks;
mod verifier;

#[cfg(feature = "actix")]
pub mod actix;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use builder::{BuildError, OnStale, VerifierBuilder};
pub use claims::{Audience, Claims, StepUpRequired};
pub use feed::FeedMode;
pub use verifier::{Verifier, VerifyError, MAX_TOKEN_BYTES};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A `Mutex` that shrugs off poisoning (nothing here leaves state half-updated).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Instant` of "long ago", for staleness before anything was heard.
fn long_ago() -> Instant {
    Instant::now()
        .checked_sub(Duration::from_secs(86_400 * 365))
        .unwrap_or_else(Instant::now)
}
