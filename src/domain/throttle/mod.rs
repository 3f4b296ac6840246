//! Login throttling (OWASP Authentication cheat sheet; ASVS v4 2.2.1, v5 6.3): failed
//! password checks are counted per account, per trusted device, per client IP, and per
//! (account, IP) pair. Every password check goes through it: `/login`,
//! `/browser/login`, `/me/password` and `DELETE /me` (`service/password_check.rs`).
//!
//! - **Per account, untrusted clients**: the times of the failures of the last hour (at
//!   most `max_failures_per_account_per_hour` of them) from clients without a trusted
//!   device, so no more than that many such failures reach the password check in any
//!   sliding hour, whoever makes them.
//! - **Per trusted device** (OWASP "Slow Down Online Guessing Attacks with Device
//!   Cookies"): a client that presents a valid device token for the account (one it
//!   earned by a successful login), or an authenticated session re-checking its own
//!   password, is exempt from the account-wide limit above; its failures count against
//!   its own device instead, with the same hourly limit. A device over its limit is
//!   locked out: its attempts are refused until the hour has passed, as OWASP's
//!   algorithm rejects a device cookie on the lockout list (it does not fall back to
//!   the untrusted allowance, so a stolen token or cookie buys no extra guesses).
//! - **Per IP**: a leaky bucket of `per_ip_per_hour` draining at that rate, across all
//!   accounts (credential stuffing from one address).
//! - **Per (account, IP)**: growing delays. After `free_failures` failures the next
//!   attempt from that address must wait `base_delay`, then twice that, up to
//!   `max_delay`.
//!
//! Why this does not lock victims out: an attacker who fills the account-wide limit
//! locks out only untrusted clients; the owner's devices that have logged in before
//! keep their own allowance, whatever their address (mobile and carrier-NAT users change
//! addresses all the time, and an attacker behind the owner's NAT shares them). The
//! limit drains continuously, so nothing is ever locked "until an admin acts"; the
//! growing delays fall on the attacker's own address; and a successful check resets the
//! account's counters. Accounts are
//! keyed by the normalised *name asked for*, whether or not it exists, so throttling
//! behaves identically for unknown names (no enumeration).
//!
//! State is in memory only: a restart forgets it, which costs an attacker nothing they
//! could not get by waiting an hour, and a database write per failed login would cost
//! everyone. Each call is O(1) amortised; maps are pruned by housekeeping and bounded.
//!
//! Hand-written rather than `governor` (which the per-IP request rate limits use)
//! because it needs a reset on success and growing per-pair delays, which GCRA cells do
//! not model.
//!
//! - `login`: [`LoginThrottle`], the in-memory counts and the verdict over them;
//! - `counters`: the counting primitives it keeps per key (sliding hour, leaky bucket,
//!   growing delays) and how each map stays bounded;
//! - `shared`: [`SharedFailures`], the port to the counts every instance shares.

mod counters;
mod login;
mod shared;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::Duration;

use crate::clock::Millis;

pub use login::LoginThrottle;
pub use shared::{shared_key, Reservation, SharedFailures};

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    pub per_account_per_hour: u32,
    pub per_ip_per_hour: u32,
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// The hour the account-wide limit counts over, in milliseconds.
pub const HOUR: Millis = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; `newly` is true for the first refusal after a period of being allowed
    /// (so the caller records one event per episode, not one per attempt).
    Throttled {
        retry_after_secs: u64,
        newly: bool,
    },
}

/// A trusted client: a device that logged in to the account before (its device token's
/// id), or an authenticated session. Opaque; only compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId(pub [u8; 16]);

/// An address's throttling key: IPv4 as is, IPv6 by its /64 (one host usually has a
/// whole /64, so single addresses would be free to rotate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(u128);

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(u128::from(u32::from(v4))),
                None => IpKey((u128::from(v6) >> 64) << 64 | 1 << 63),
            },
        }
    }
}
