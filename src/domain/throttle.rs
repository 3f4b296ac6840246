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

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::Millis;

const HOUR_MS: f64 = 3_600_000.0;
/// Most entries each map holds; beyond it the calmest entries are dropped.
const MAX_ENTRIES: usize = 200_000;

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    pub per_account_per_hour: u32,
    pub per_ip_per_hour: u32,
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// The account-wide and per-device failure counts kept in a store that every instance
/// shares (PostgreSQL), so that N instances give an attacker no more guesses than one
/// (docs/contract.md "Scale-out on PostgreSQL"). Keyed like the in-memory maps:
/// [`shared_key`]. The per-IP buckets and per-pair delays stay in each instance's
/// memory, like the per-IP request rate limits.
///
/// An attempt reserves its place in the count before the password is checked
/// ([`reserve`](SharedFailures::reserve)): checking the count and recording the failure
/// afterwards would let N instances that read the same count at once check N−1 passwords
/// past the limit. A wrong password keeps its reservation as its failure; a right one
/// clears the key or [`release`](SharedFailures::release)s its own reservation.
#[async_trait::async_trait]
pub trait SharedFailures: Send + Sync {
    /// Atomically (against every instance): if `key` has fewer than `limit` failures at
    /// or after `since`, counts one more at `at` (keeping at most the newest `limit`)
    /// and answers [`Reservation::Reserved`]; otherwise changes nothing and answers
    /// [`Reservation::Full`] with the oldest failure counted.
    async fn reserve(
        &self,
        key: &str,
        at: Millis,
        since: Millis,
        limit: u32,
    ) -> anyhow::Result<Reservation>;
    /// Gives back one reservation made at `at` (the attempt did not fail).
    async fn release(&self, key: &str, at: Millis) -> anyhow::Result<()>;
    /// A successful check: forgets `key`'s failures.
    async fn clear(&self, key: &str) -> anyhow::Result<()>;
    /// Housekeeping: deletes up to `limit` failures from before `before`.
    async fn prune(&self, before: Millis, limit: u32) -> anyhow::Result<usize>;
}

/// The answer of [`SharedFailures::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// The limit is reached; allowed again an hour after `oldest`.
    Full {
        oldest: Millis,
    },
}

/// The shared key of an attempt: its trusted device if it has one (which answers for
/// itself), else the account name asked for.
pub fn shared_key(account: &str, device: Option<DeviceId>) -> String {
    match device {
        Some(DeviceId(id)) => format!("d:{}", hex::encode(id)),
        None => format!("a:{account}"),
    }
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

/// A leaky bucket: `level` failures, draining at `per_hour`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Millis,
    refused: bool,
}

impl Bucket {
    fn drained(&self, now: Millis, per_hour: u32) -> f64 {
        let elapsed = (now - self.at).max(0) as f64;
        (self.level - elapsed * f64::from(per_hour) / HOUR_MS).max(0.0)
    }
}

/// An account's failures in the last hour, oldest first.
#[derive(Debug, Clone, Default)]
struct Recent {
    times: VecDeque<Millis>,
    refused: bool,
}

impl Recent {
    fn forget_before(&mut self, cutoff: Millis) {
        while self.times.front().is_some_and(|t| *t <= cutoff) {
            self.times.pop_front();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pair {
    failures: u32,
    last_failure: Millis,
    refused: bool,
}

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

pub struct LoginThrottle {
    cfg: ThrottleConfig,
    /// Shared keys this instance is refusing, by the oldest failure of their episode
    /// (so one `login_throttled` event per episode per instance, not per attempt).
    shared_refusals: Mutex<HashMap<String, Millis>>,
    accounts: Mutex<HashMap<String, Recent>>,
    devices: Mutex<HashMap<DeviceId, Recent>>,
    ips: Mutex<HashMap<IpKey, Bucket>>,
    pairs: Mutex<HashMap<(String, IpKey), Pair>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn secs_ceil(ms: f64) -> u64 {
    (ms / 1000.0).ceil().max(1.0) as u64
}

impl LoginThrottle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            cfg,
            shared_refusals: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            devices: Mutex::new(HashMap::new()),
            ips: Mutex::new(HashMap::new()),
            pairs: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an attempt for `account` from `ip` may go on to the password check.
    /// `device`: the trusted client it comes from, if any (a verified device token, or
    /// the authenticated session), which exempts it from the account-wide limit.
    pub fn check(
        &self,
        account: &str,
        ip: Option<IpAddr>,
        device: Option<DeviceId>,
        now: Millis,
    ) -> Verdict {
        let ip = ip.map(IpKey::from);
        let mut wait_ms: f64 = 0.0;
        let mut newly = false;
        // A trusted device answers for itself; anything else for the account.
        let over_limit = |r: &mut Recent, wait_ms: &mut f64, newly: &mut bool| {
            r.forget_before(now - HOUR_MS as i64);
            if r.times.len() >= self.cfg.per_account_per_hour as usize {
                // Allowed again when the oldest failure of the hour leaves it.
                let oldest = r.times.front().copied().unwrap_or(now);
                *wait_ms = wait_ms.max((oldest + HOUR_MS as i64 - now) as f64);
                *newly |= !r.refused;
                r.refused = true;
            }
        };
        match device {
            Some(device) => {
                if let Some(r) = lock(&self.devices).get_mut(&device) {
                    over_limit(r, &mut wait_ms, &mut newly);
                }
            }
            None => {
                if let Some(r) = lock(&self.accounts).get_mut(account) {
                    over_limit(r, &mut wait_ms, &mut newly);
                }
            }
        }
        if let Some(ip) = ip {
            let mut ips = lock(&self.ips);
            if let Some(b) = ips.get_mut(&ip) {
                let level = b.drained(now, self.cfg.per_ip_per_hour);
                let over = level + 1.0 - f64::from(self.cfg.per_ip_per_hour);
                if over > 0.0 {
                    wait_ms = wait_ms.max(over * HOUR_MS / f64::from(self.cfg.per_ip_per_hour));
                    newly |= !b.refused;
                    b.refused = true;
                }
            }
            drop(ips);
            let mut pairs = lock(&self.pairs);
            if let Some(p) = pairs.get_mut(&(account.to_owned(), ip)) {
                let gap = self.required_gap(p.failures).as_millis() as f64;
                let since = (now - p.last_failure).max(0) as f64;
                if since < gap {
                    wait_ms = wait_ms.max(gap - since);
                    newly |= !p.refused;
                    p.refused = true;
                }
            }
        }
        if wait_ms > 0.0 {
            Verdict::Throttled {
                retry_after_secs: secs_ceil(wait_ms),
                newly,
            }
        } else {
            Verdict::Allowed
        }
    }

    /// The account-wide (or per-device) limit per sliding hour.
    pub fn per_account_per_hour(&self) -> u32 {
        self.cfg.per_account_per_hour
    }

    /// A refusal by the shared counts (`SharedFailures`): whether it starts a new
    /// episode for this instance (the first refusal since the episode's oldest failure).
    pub fn shared_refusal(&self, key: &str, oldest: Millis) -> bool {
        let mut refusals = lock(&self.shared_refusals);
        if refusals.len() >= MAX_ENTRIES {
            refusals.clear();
        }
        refusals.insert(key.to_owned(), oldest) != Some(oldest)
    }

    /// The pause owed after `failures` failures from one address on one account.
    fn required_gap(&self, failures: u32) -> Duration {
        if failures < self.cfg.free_failures.max(1) {
            return Duration::ZERO;
        }
        let doublings = (failures - self.cfg.free_failures.max(1)).min(20);
        self.cfg
            .base_delay
            .saturating_mul(1 << doublings)
            .min(self.cfg.max_delay)
    }

    /// A failed check: counted on the trusted device it came from, otherwise on the
    /// account; and on the address and the pair.
    pub fn record_failure(
        &self,
        account: &str,
        ip: Option<IpAddr>,
        device: Option<DeviceId>,
        now: Millis,
    ) {
        let ip = ip.map(IpKey::from);
        let limit = self.cfg.per_account_per_hour as usize;
        if let Some(device) = device {
            let mut devices = lock(&self.devices);
            if devices.len() >= MAX_ENTRIES {
                prune_recent(&mut devices, now);
            }
            push_failure(devices.entry(device).or_default(), now, limit);
        } else {
            let mut accounts = lock(&self.accounts);
            if accounts.len() >= MAX_ENTRIES {
                prune_recent(&mut accounts, now);
            }
            push_failure(accounts.entry(account.to_owned()).or_default(), now, limit);
        }
        if let Some(ip) = ip {
            {
                let mut ips = lock(&self.ips);
                bounded(&mut ips, now, self.cfg.per_ip_per_hour);
                let b = ips.entry(ip).or_insert(Bucket {
                    level: 0.0,
                    at: now,
                    refused: false,
                });
                b.level = b.drained(now, self.cfg.per_ip_per_hour) + 1.0;
                b.at = now;
                b.refused = false;
            }
            let mut pairs = lock(&self.pairs);
            if pairs.len() >= MAX_ENTRIES {
                self.prune_pairs(&mut pairs, now);
            }
            let p = pairs.entry((account.to_owned(), ip)).or_insert(Pair {
                failures: 0,
                last_failure: now,
                refused: false,
            });
            // An hour without failures forgets the pair's history.
            if now - p.last_failure > HOUR_MS as i64 {
                p.failures = 0;
            }
            p.failures = p.failures.saturating_add(1);
            p.last_failure = now;
            p.refused = false;
        }
    }

    /// A successful check clears the account's counter, the device's, and the pair with
    /// this address (the address's own counter keeps draining: one good login must not
    /// launder a stuffing run across other accounts).
    pub fn record_success(&self, account: &str, ip: Option<IpAddr>, device: Option<DeviceId>) {
        lock(&self.accounts).remove(account);
        if let Some(device) = device {
            lock(&self.devices).remove(&device);
        }
        if let Some(ip) = ip {
            lock(&self.pairs).remove(&(account.to_owned(), IpKey::from(ip)));
        }
    }

    /// Forgets everything kept under an account name (its erasure: the name is personal
    /// data, and must not stay in memory either).
    pub fn forget(&self, account: &str) {
        lock(&self.shared_refusals).remove(&shared_key(account, None));
        lock(&self.accounts).remove(account);
        lock(&self.pairs).retain(|(name, _), _| name != account);
    }

    /// Drops entries that have drained to nothing (housekeeping); returns how many remain.
    pub fn prune(&self, now: Millis) -> usize {
        lock(&self.shared_refusals).retain(|_, oldest| *oldest + HOUR > now);
        let mut accounts = lock(&self.accounts);
        prune_recent(&mut accounts, now);
        let mut devices = lock(&self.devices);
        prune_recent(&mut devices, now);
        let mut ips = lock(&self.ips);
        ips.retain(|_, b| b.drained(now, self.cfg.per_ip_per_hour) > 0.0);
        let mut pairs = lock(&self.pairs);
        self.prune_pairs(&mut pairs, now);
        accounts.len() + devices.len() + ips.len() + pairs.len()
    }

    fn prune_pairs(&self, pairs: &mut HashMap<(String, IpKey), Pair>, now: Millis) {
        let keep_ms = (self.cfg.max_delay.as_millis() as i64).max(HOUR_MS as i64);
        pairs.retain(|_, p| now - p.last_failure <= keep_ms);
        if pairs.len() >= MAX_ENTRIES {
            // Still full of fresh entries (a spray): forget the oldest half.
            let mut ages: Vec<Millis> = pairs.values().map(|p| p.last_failure).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            pairs.retain(|_, p| p.last_failure > cutoff);
        }
    }
}

fn push_failure(r: &mut Recent, now: Millis, limit: usize) {
    r.forget_before(now - HOUR_MS as i64);
    r.times.push_back(now);
    // Never more than the limit are kept: the check only needs the oldest of them.
    while r.times.len() > limit {
        r.times.pop_front();
    }
    r.refused = false;
}

fn prune_recent<K: Eq + Hash>(accounts: &mut HashMap<K, Recent>, now: Millis) {
    accounts.retain(|_, r| {
        r.forget_before(now - HOUR_MS as i64);
        !r.times.is_empty()
    });
    if accounts.len() >= MAX_ENTRIES {
        let mut latest: Vec<Millis> = accounts
            .values()
            .filter_map(|r| r.times.back().copied())
            .collect();
        latest.sort_unstable();
        let cutoff = latest[latest.len() / 2];
        accounts.retain(|_, r| r.times.back().is_some_and(|t| *t > cutoff));
    }
}

/// Keeps a bucket map under [`MAX_ENTRIES`]: first drop drained buckets, then the
/// lowest half.
fn bounded<K: Eq + Hash>(map: &mut HashMap<K, Bucket>, now: Millis, per_hour: u32) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, b| b.drained(now, per_hour) > 0.0);
    if map.len() >= MAX_ENTRIES {
        let mut levels: Vec<f64> = map.values().map(|b| b.drained(now, per_hour)).collect();
        levels.sort_unstable_by(f64::total_cmp);
        let cutoff = levels[levels.len() / 2];
        map.retain(|_, b| b.drained(now, per_hour) > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            per_account_per_hour: 10,
            per_ip_per_hour: 50,
            free_failures: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn asvs_2_2_1_the_account_limit_counts_failures_from_every_address() {
        let t = LoginThrottle::new(cfg());
        for i in 0..10u8 {
            assert_eq!(t.check("alice", ip(i), None, 0), Verdict::Allowed);
            t.record_failure("alice", ip(i), None, 0);
        }
        match t.check("alice", ip(99), None, 0) {
            Verdict::Throttled {
                retry_after_secs,
                newly,
            } => {
                assert!(newly);
                // Allowed again an hour after the oldest failure.
                assert_eq!(retry_after_secs, 3600);
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            t.check("alice", ip(99), None, 1),
            Verdict::Throttled { newly: false, .. }
        ));
        assert!(matches!(
            t.check("alice", ip(99), None, 3_599_999),
            Verdict::Throttled { .. }
        ));
        assert_eq!(t.check("alice", ip(99), None, 3_600_000), Verdict::Allowed);
        // Another account is untouched.
        assert_eq!(t.check("bob", ip(99), None, 0), Verdict::Allowed);
    }

    #[test]
    fn delays_grow_per_address_and_not_for_the_victims_own_address() {
        let t = LoginThrottle::new(cfg());
        let mut now = 0;
        for _ in 0..3 {
            t.record_failure("alice", ip(1), None, now);
        }
        assert!(matches!(
            t.check("alice", ip(1), None, now),
            Verdict::Throttled {
                retry_after_secs: 1,
                ..
            }
        ));
        assert_eq!(t.check("alice", ip(2), None, now), Verdict::Allowed);
        let mut gaps = Vec::new();
        for _ in 0..8 {
            let Verdict::Throttled {
                retry_after_secs, ..
            } = t.check("alice", ip(1), None, now)
            else {
                panic!("a delay is owed");
            };
            gaps.push(retry_after_secs);
            now += retry_after_secs as i64 * 1000;
            assert_eq!(t.check("alice", ip(1), None, now), Verdict::Allowed);
            t.record_failure("alice", ip(1), None, now);
        }
        // 1, 2, 4, … doubling, capped at max_delay (60 s), until the account limit
        // (10 an hour) takes over.
        assert_eq!(&gaps[..7], &[1, 2, 4, 8, 16, 32, 60]);
    }

    #[test]
    fn a_success_resets_the_account_and_the_pair() {
        let t = LoginThrottle::new(cfg());
        for _ in 0..10 {
            t.record_failure("alice", ip(1), None, 0);
        }
        assert!(matches!(
            t.check("alice", ip(1), None, 0),
            Verdict::Throttled { .. }
        ));
        t.record_success("alice", ip(1), None);
        assert_eq!(t.check("alice", ip(1), None, 0), Verdict::Allowed);
    }

    #[test]
    fn the_per_ip_limit_counts_failures_across_accounts() {
        let t = LoginThrottle::new(cfg());
        for i in 0..50 {
            t.record_failure(&format!("user{i}"), ip(7), None, 0);
        }
        assert!(matches!(
            t.check("someone-new", ip(7), None, 0),
            Verdict::Throttled { .. }
        ));
        assert_eq!(t.check("someone-new", ip(8), None, 0), Verdict::Allowed);
    }

    #[test]
    fn ipv6_addresses_in_one_64_share_a_key() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::from(a), IpKey::from(b));
        assert_ne!(IpKey::from(a), IpKey::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(IpKey::from(mapped), IpKey::from(ip(1).unwrap()));
    }

    #[test]
    fn prune_forgets_drained_entries() {
        let t = LoginThrottle::new(cfg());
        t.record_failure("alice", ip(1), None, 0);
        t.record_failure("alice", ip(1), Some(DeviceId([1; 16])), 0);
        assert_eq!(t.prune(0), 4);
        assert_eq!(t.prune(2 * 3_600_000), 0);
    }

    #[test]
    fn owasp_device_cookies_a_trusted_device_is_exempt_from_the_account_lockout() {
        let t = LoginThrottle::new(cfg());
        let owner = Some(DeviceId([7; 16]));
        for i in 0..10u8 {
            t.record_failure("alice", ip(i), None, 0);
        }
        assert!(matches!(
            t.check("alice", ip(50), None, 0),
            Verdict::Throttled { .. }
        ));
        assert_eq!(t.check("alice", ip(50), owner, 0), Verdict::Allowed);
        // The device's own failures count on the device, not the account...
        for _ in 0..10 {
            assert_eq!(t.check("alice", ip(51), owner, 0), Verdict::Allowed);
            t.record_failure("alice", ip(51), owner, 0);
            lock(&t.pairs).clear();
        }
        // ...until it is locked out itself (OWASP: a device cookie on the lockout list is
        // rejected), while untrusted clients keep the account's allowance.
        assert!(matches!(
            t.check("alice", ip(52), owner, 0),
            Verdict::Throttled { .. }
        ));
        t.record_success("alice", ip(1), None);
        assert!(matches!(
            t.check("alice", ip(52), owner, 0),
            Verdict::Throttled { .. }
        ));
        assert_eq!(t.check("alice", ip(53), None, 0), Verdict::Allowed);
        // Another account's lockout does not touch this device's allowance elsewhere.
        assert_eq!(
            t.check("bob", ip(52), Some(DeviceId([8; 16])), 0),
            Verdict::Allowed
        );
    }

    #[test]
    fn forget_drops_every_entry_kept_under_a_name() {
        let t = LoginThrottle::new(cfg());
        t.record_failure("alice", ip(1), None, 0);
        t.record_failure("alice", ip(2), None, 0);
        t.record_failure("bob", ip(1), None, 0);
        t.forget("alice");
        assert!(!lock(&t.accounts).contains_key("alice"));
        assert!(lock(&t.pairs).keys().all(|(name, _)| name != "alice"));
        assert!(lock(&t.accounts).contains_key("bob"));
    }

    proptest! {
        /// However failures and successes interleave, no more than the hourly limit of
        /// failures is let through in any sliding hour (between successes).
        #[test]
        fn never_more_than_the_account_limit_per_hour(
            steps in proptest::collection::vec((0u64..120_000, any::<bool>(), 0u8..4), 1..300)
        ) {
            let t = LoginThrottle::new(cfg());
            let mut now: i64 = 0;
            let mut allowed_failures: Vec<i64> = Vec::new();
            for (dt, succeed, addr) in steps {
                now += dt as i64;
                if t.check("alice", ip(addr), None, now) == Verdict::Allowed {
                    if succeed {
                        t.record_success("alice", ip(addr), None);
                        allowed_failures.clear();
                    } else {
                        t.record_failure("alice", ip(addr), None, now);
                        allowed_failures.push(now);
                    }
                }
                let in_window = allowed_failures.iter().filter(|t| now - **t < 3_600_000).count();
                prop_assert!(in_window <= 10, "{in_window} failures in an hour");
            }
        }
    }
}
