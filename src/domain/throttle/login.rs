//! [`LoginThrottle`]: the in-memory counts of one instance and the verdict over them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::counters::{
    bounded, lock, prune_recent, push_failure, secs_ceil, Bucket, Pair, Recent, HOUR_MS,
    MAX_ENTRIES,
};
use super::{shared_key, DeviceId, IpKey, ThrottleConfig, Verdict, HOUR};
use crate::clock::Millis;

/// One instance's login throttle; the module documentation gives the rules.
pub struct LoginThrottle {
    cfg: ThrottleConfig,
    /// Shared keys this instance is refusing, by the oldest failure of their episode
    /// (so one `login_throttled` event per episode per instance, not per attempt).
    shared_refusals: Mutex<HashMap<String, Millis>>,
    pub(super) accounts: Mutex<HashMap<String, Recent>>,
    devices: Mutex<HashMap<DeviceId, Recent>>,
    ips: Mutex<HashMap<IpKey, Bucket>>,
    pub(super) pairs: Mutex<HashMap<(String, IpKey), Pair>>,
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
