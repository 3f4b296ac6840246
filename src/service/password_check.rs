//! The one way a password is checked. `/login`, `/browser/login`, `/me/password` and
//! `DELETE /me` all come through here, so every check meets the same login throttling
//! (`domain::throttle`), records the same `login_failed` and `login_throttled` events,
//! and takes its turn on the argon2 pool fairly: at most one check per account is queued
//! or running at a time, so one account (or one stolen access token) cannot fill the
//! queue and starve everyone else's logins (docs/contract.md "Standards checklist" #30;
//! OWASP Authentication cheat sheet, "Protect Against Automated Attacks").
//!
//! The second factor (docs/contract.md "Second factor") comes through here too: enrolment
//! and removal check the password with [`Purpose::MfaChange`]; `/login/mfa` and the code
//! checks of `/me/mfa/*` are admitted like a password check and count each wrong code
//! with [`Admitted::code_failed`], so codes meet the same per-account throttling. For an
//! account with a factor, a right password alone does not clear the throttle
//! ([`Admitted::verify`]); only the finished login does.

use std::net::IpAddr;
use std::sync::Arc;

use super::Error;
use crate::clock::Millis;
use crate::clock::SharedClock;
use crate::domain::model::{ClientContext, NewEvent, User};
use crate::domain::throttle::LoginThrottle;
use crate::domain::throttle::{shared_key, DeviceId, Reservation, SharedFailures, Verdict, HOUR};
use crate::domain::{EventKind, Password, SessionId};
use crate::metrics::Metrics;
use crate::passwords::CheckSlot;
use crate::passwords::PasswordHasher;
use crate::state::AppState;
use crate::store::Store;

/// Why the password is being checked (the `purpose` of a `login_failed` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/login`, `/browser/login`.
    Login,
    /// `POST /me/password`: the current password.
    PasswordChange,
    /// `DELETE /me`.
    Erasure,
    /// `POST /me/email`.
    EmailChange,
    /// `POST /me/mfa/totp`, `DELETE /me/mfa/totp`.
    MfaChange,
    /// A second-factor code: `/login/mfa`, `/browser/login/mfa`, and the codes of
    /// `/me/mfa/*`.
    SecondFactor,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::PasswordChange => "password_change",
            Purpose::Erasure => "erasure",
            Purpose::EmailChange => "email_change",
            Purpose::MfaChange => "mfa_change",
            Purpose::SecondFactor => "second_factor",
        }
    }
}

/// What admitting and checking a password or code needs: the login throttle, the argon2
/// pool, the store (events, and the failure count instances share), the metrics and the
/// clock.
#[derive(Clone, Copy)]
pub struct Gate<'a> {
    pub store: &'a Store,
    pub throttle: &'a LoginThrottle,
    pub hasher: &'a PasswordHasher,
    pub metrics: &'a Metrics,
    pub clock: &'a SharedClock,
}

impl<'a> Gate<'a> {
    pub fn of(state: &'a AppState) -> Self {
        Self {
            store: &state.store,
            throttle: &state.throttle,
            hasher: &state.hasher,
            metrics: &state.metrics,
            clock: &state.clock,
        }
    }

    pub fn now(&self) -> Millis {
        self.clock.now_millis()
    }
}

/// Where the attempt came from: for events and sessions (`ctx`) and throttling (`ip`).
pub struct Origin {
    pub ctx: ClientContext,
    pub ip: Option<IpAddr>,
}

/// One password check about to happen.
pub struct Attempt {
    /// The account's name key (`Username::lookup_key`), existing or not: throttling
    /// counts by it, so a throttled attempt looks the same for every name.
    pub account_key: String,
    /// The client's address (throttling).
    pub ip: Option<IpAddr>,
    /// The trusted client it comes from: a verified device token, or the session.
    pub device: Option<DeviceId>,
    pub purpose: Purpose,
    pub client_id: String,
    pub session_id: Option<SessionId>,
    /// For the events.
    pub ctx: ClientContext,
}

/// An attempt the throttle let through, holding its account's one check slot and, with
/// a shared store, its reserved place in the shared failure count.
pub struct Admitted<'a> {
    gate: Gate<'a>,
    attempt: Attempt,
    /// The place this attempt reserved in the shared count (key and time), until the
    /// attempt fails (the reservation is its failure), succeeds (the key is cleared) or
    /// ends otherwise (given back, see `Drop`).
    reservation: std::sync::Mutex<Option<(String, Millis)>>,
    /// The failure count every instance shares (PostgreSQL), asked of the store once.
    shared: Option<Arc<dyn SharedFailures>>,
    _slot: CheckSlot,
}

/// Lets `attempt` go on to the password check, or refuses it with 429 and
/// `Retry-After`: while its account, device, address or pair is throttled (recording
/// one `login_throttled` event per episode), or while another check of the same account
/// is queued or running on this instance (retry in a second). With a shared store the
/// attempt reserves its place in the account's (or device's) count before anything is
/// checked, so N instances together never check more than the limit (docs/contract.md
/// "Scale-out on PostgreSQL").
#[tracing::instrument(skip_all, fields(purpose = attempt.purpose.as_str(), client_id = %attempt.client_id))]
pub async fn admit(gate: Gate<'_>, attempt: Attempt) -> Result<Admitted<'_>, Error> {
    let now = gate.now();
    let verdict = gate
        .throttle
        .check(&attempt.account_key, attempt.ip, attempt.device, now);
    if let Verdict::Throttled {
        retry_after_secs,
        newly,
    } = verdict
    {
        return Err(throttled(gate, &attempt, retry_after_secs, newly).await);
    }
    let Some(slot) = gate.hasher.slot(&attempt.account_key) else {
        gate.metrics.login("throttled");
        return Err(Error::RateLimited {
            retry_after_secs: 1,
        });
    };
    let mut reservation = None;
    let shared = gate.store.shared_failures();
    if let Some(shared) = &shared {
        let key = shared_key(&attempt.account_key, attempt.device);
        let limit = gate.throttle.per_account_per_hour();
        match shared
            .reserve(&key, now, now - HOUR, limit)
            .await
            .map_err(store_unavailable)?
        {
            Reservation::Reserved => reservation = Some((key, now)),
            Reservation::Full { oldest } => {
                let retry_after_secs = ((oldest + HOUR - now).max(1000) as u64).div_ceil(1000);
                let newly = gate.throttle.shared_refusal(&key, oldest);
                return Err(throttled(gate, &attempt, retry_after_secs, newly).await);
            }
        }
    }
    Ok(Admitted {
        gate,
        attempt,
        reservation: std::sync::Mutex::new(reservation),
        shared,
        _slot: slot,
    })
}

/// The 429 of a throttled attempt; one `login_throttled` event per throttling episode
/// (not per refused attempt, which an attacker could use to flood the events table).
async fn throttled(gate: Gate<'_>, attempt: &Attempt, retry_after_secs: u64, newly: bool) -> Error {
    if newly {
        let key = attempt.account_key.clone();
        let user_id = gate
            .store
            .read(async move |tx| Ok(tx.user_by_username_key(&key).await?.map(|u| u.id)))
            .await;
        let user_id = match user_id {
            Ok(id) => id,
            Err(e) => return e.into(),
        };
        let mut event = event_of(EventKind::LoginThrottled, attempt);
        event.user_id = user_id;
        if let Err(e) = record(gate, event).await {
            return e;
        }
    }
    gate.metrics.login("throttled");
    Error::RateLimited { retry_after_secs }
}

/// An attempt that ends without a failure and without clearing the count (an error on
/// the way, or a right password with a second factor still to come) gives its
/// reservation back, so it never counts as a failure. In the background: `Drop` cannot
/// wait; [`Admitted::release`] does.
impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let Some((key, at)) = self.take_reservation() else {
            return;
        };
        let (Some(shared), Ok(rt)) = (self.shared.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        rt.spawn(async move {
            if let Err(e) = shared.release(&key, at).await {
                tracing::warn!(error = %format!("{e:#}"), "a login-failure reservation was not given back");
            }
        });
    }
}

impl Admitted<'_> {
    /// The attempt came with a valid device token of the account.
    pub fn from_known_device(&self) -> bool {
        self.attempt.device.is_some()
    }

    /// Checks `password` against `user`'s hash (or a dummy hash when there is no such
    /// user, so both take one argon2 run). Succeeds only for an existing, enabled user
    /// with that password; anything else is one generic 401 (OWASP Authentication: no
    /// enumeration), counted by the throttle and recorded as `login_failed` (with the
    /// user id when the account exists; never the attempted name).
    pub async fn check(self, password: Password, user: Option<&User>) -> Result<(), Error> {
        self.verify(password, user).await?.succeeded().await?;
        Ok(())
    }

    /// [`check`](Self::check) without clearing the throttle on success: the caller
    /// decides, after the password was right, whether the attempt is over
    /// ([`succeeded`](Self::succeeded)) or a second factor is still to come. The path up
    /// to and including the password check, and every failure, is the same as `check`'s
    /// (no enumeration of who has a factor).
    pub async fn verify(self, password: Password, user: Option<&User>) -> Result<Self, Error> {
        let gate = self.gate;
        let verified = gate
            .hasher
            .verify(password, user.map(|u| u.password_hash.clone()))
            .await
            .map_err(hash_error)?;
        if verified && user.is_some_and(User::is_enabled) {
            return Ok(self);
        }
        self.count_failure();
        let a = &self.attempt;
        let mut event = event_of(EventKind::LoginFailed, a)
            .detail(serde_json::json!({ "purpose": a.purpose.as_str() }));
        event.user_id = user.map(|u| u.id.clone());
        record(gate, event).await?;
        gate.metrics.login("failure");
        Err(Error::InvalidCredentials)
    }
}

impl Admitted<'_> {
    /// The attempt succeeded: clears the account's (or device's) failures and the
    /// address's pair, in this instance's memory and, with a shared store, for every
    /// instance (the attempt's own reservation with them).
    pub async fn succeeded(&self) -> Result<(), Error> {
        let (gate, a) = (self.gate, &self.attempt);
        gate.throttle.record_success(&a.account_key, a.ip, a.device);
        if let (Some((key, _)), Some(shared)) = (self.take_reservation(), &self.shared) {
            shared.clear(&key).await.map_err(store_unavailable)?;
        }
        Ok(())
    }

    /// The password was right but the login is not over (a second factor is to come):
    /// nothing is cleared, and the attempt's reservation is given back, now.
    pub async fn release(self) -> Result<(), Error> {
        if let (Some((key, at)), Some(shared)) = (self.take_reservation(), &self.shared) {
            shared.release(&key, at).await.map_err(store_unavailable)?;
        }
        Ok(())
    }

    /// A wrong second-factor code: counted by the login throttle exactly like a wrong
    /// password (the `mfa_failed` event is recorded with the check, in its write).
    pub async fn code_failed(&self) -> Result<(), Error> {
        self.count_failure();
        self.gate.metrics.login("failure");
        Ok(())
    }

    /// One failure (a wrong password or code) on the attempt's account or device, its
    /// address and their pair; with a shared store, the attempt's reservation stays as
    /// the failure every instance counts.
    fn count_failure(&self) {
        let (gate, a) = (self.gate, &self.attempt);
        gate.throttle
            .record_failure(&a.account_key, a.ip, a.device, gate.now());
        self.take_reservation();
    }

    fn take_reservation(&self) -> Option<(String, Millis)> {
        self.reservation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

fn event_of(kind: EventKind, a: &Attempt) -> NewEvent {
    let mut event = NewEvent::new(kind).client(&a.client_id).from(&a.ctx);
    event.session_id = a.session_id.clone();
    event
}

/// Records one security event in its own write.
#[tracing::instrument(skip_all)]
pub async fn record(gate: Gate<'_>, event: NewEvent) -> Result<(), Error> {
    let now = gate.now();
    gate.store
        .write(async move |tx| tx.insert_event(now, &event).await)
        .await?;
    Ok(())
}

/// The trusted-client id of an authenticated session re-checking its own password: a
/// session proves an earlier successful login, as a device token does.
pub fn session_device(session_id: &SessionId) -> DeviceId {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("session\0{session_id}").as_bytes(),
    );
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.as_ref()[..16]);
    DeviceId(id)
}

/// The shared store failed: its own error says whether it is unreachable (503).
fn store_unavailable(e: anyhow::Error) -> Error {
    tracing::warn!(error = %format!("{e:#}"), "the shared login-failure count is unavailable");
    Error::Unavailable {
        retry_after_secs: 2,
    }
}

/// A full argon2 queue is 429 (retry shortly), anything else internal.
pub fn hash_error(e: crate::passwords::HashError) -> Error {
    match e {
        crate::passwords::HashError::Pool(crate::pool::PoolError::Full(_)) => Error::RateLimited {
            retry_after_secs: 1,
        },
        other => Error::internal(other),
    }
}
