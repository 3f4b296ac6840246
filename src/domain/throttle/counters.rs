//! What [`LoginThrottle`](super::LoginThrottle) keeps per key: the failures of a
//! sliding hour (accounts, devices), a leaky bucket (addresses), a growing delay
//! (account and address pairs); and how each map is kept under [`MAX_ENTRIES`].

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use crate::clock::Millis;

pub(super) const HOUR_MS: f64 = super::HOUR as f64;
/// Most entries each map holds; beyond it the calmest entries are dropped.
pub(super) const MAX_ENTRIES: usize = 200_000;

/// A leaky bucket: `level` failures, draining at `per_hour`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    pub(super) level: f64,
    pub(super) at: Millis,
    pub(super) refused: bool,
}

impl Bucket {
    pub(super) fn drained(&self, now: Millis, per_hour: u32) -> f64 {
        let elapsed = (now - self.at).max(0) as f64;
        (self.level - elapsed * f64::from(per_hour) / HOUR_MS).max(0.0)
    }
}

/// An account's failures in the last hour, oldest first.
#[derive(Debug, Clone, Default)]
pub(super) struct Recent {
    pub(super) times: VecDeque<Millis>,
    pub(super) refused: bool,
}

impl Recent {
    pub(super) fn forget_before(&mut self, cutoff: Millis) {
        while self.times.front().is_some_and(|t| *t <= cutoff) {
            self.times.pop_front();
        }
    }
}

/// One address's failures on one account, for the growing delays.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pair {
    pub(super) failures: u32,
    pub(super) last_failure: Millis,
    pub(super) refused: bool,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn secs_ceil(ms: f64) -> u64 {
    (ms / 1000.0).ceil().max(1.0) as u64
}

pub(super) fn push_failure(r: &mut Recent, now: Millis, limit: usize) {
    r.forget_before(now - HOUR_MS as i64);
    r.times.push_back(now);
    // Never more than the limit are kept: the check only needs the oldest of them.
    while r.times.len() > limit {
        r.times.pop_front();
    }
    r.refused = false;
}

pub(super) fn prune_recent<K: Eq + Hash>(accounts: &mut HashMap<K, Recent>, now: Millis) {
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
pub(super) fn bounded<K: Eq + Hash>(map: &mut HashMap<K, Bucket>, now: Millis, per_hour: u32) {
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
