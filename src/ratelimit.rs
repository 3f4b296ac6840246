//! Per-IP request rate limits on the unauthenticated or expensive endpoints (`/signup`;
//! `/login` and every other route that checks a password or a second factor;
//! `/oauth/token`, `/oauth/revoke`, `/oauth/introspect`; `/browser/*`; the recovery
//! routes): `governor`'s keyed GCRA, driven by the application's injectable clock so
//! tests move time instead of sleeping. IPv6 clients are keyed by their /64.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::SharedClock;
use crate::config::{RateLimit, RateLimitSettings};
use crate::domain::throttle::IpKey;
use crate::error::ApiError;

/// The application clock as governor's time source.
#[derive(Clone)]
pub struct AppClock(SharedClock);

impl GovernorClock for AppClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now_millis()).unwrap_or(0))
    }
}

type Limiter = RateLimiter<
    IpKey,
    DefaultKeyedStateStore<IpKey>,
    AppClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Signup,
    Login,
    Token,
    Revoke,
    Introspect,
    Browser,
    /// `/password/forgot`, `/password/reset`, `/email/verify`.
    Recovery,
}

impl Endpoint {
    const ALL: [Endpoint; 7] = [
        Endpoint::Signup,
        Endpoint::Login,
        Endpoint::Token,
        Endpoint::Revoke,
        Endpoint::Introspect,
        Endpoint::Browser,
        Endpoint::Recovery,
    ];
}

pub struct RateLimits {
    clock: AppClock,
    signup: Limiter,
    login: Limiter,
    token: Limiter,
    revoke: Limiter,
    introspect: Limiter,
    browser: Limiter,
    recovery: Limiter,
}

fn limiter(limit: RateLimit, clock: &AppClock) -> Limiter {
    let per_minute = NonZeroU32::new(limit.per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::per_minute(per_minute).allow_burst(burst);
    RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone())
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings, clock: SharedClock) -> Self {
        let clock = AppClock(clock);
        Self {
            signup: limiter(settings.signup, &clock),
            login: limiter(settings.login, &clock),
            token: limiter(settings.token, &clock),
            revoke: limiter(settings.revoke, &clock),
            introspect: limiter(settings.introspect, &clock),
            browser: limiter(settings.browser, &clock),
            recovery: limiter(settings.recovery, &clock),
            clock,
        }
    }

    fn of(&self, endpoint: Endpoint) -> &Limiter {
        match endpoint {
            Endpoint::Signup => &self.signup,
            Endpoint::Login => &self.login,
            Endpoint::Token => &self.token,
            Endpoint::Revoke => &self.revoke,
            Endpoint::Introspect => &self.introspect,
            Endpoint::Browser => &self.browser,
            Endpoint::Recovery => &self.recovery,
        }
    }

    /// One request from `ip` to `endpoint`: allowed, or 429 with `Retry-After`. Requests
    /// whose address is unknown (not over TCP) are not limited.
    pub fn check(&self, endpoint: Endpoint, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        match self.of(endpoint).check_key(&IpKey::from(ip)) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::TooManyRequests {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }

    /// Forgets addresses whose limits have fully recovered (housekeeping).
    pub fn prune(&self) {
        for l in Endpoint::ALL.map(|e| self.of(e)) {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
