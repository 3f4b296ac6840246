//! Following latchkey's revocation feed (its `docs/contract.md` "Revocation feed"):
//! the document `GET /revocations` at start, then either the event stream
//! (`/revocations/stream`, resumed with `Last-Event-ID`, and the document polled once
//! after each lost connection as a fallback) or the document polled on an interval.
//! Each revoked session is kept until no token of it can still be accepted: its
//! revocation time (or, from the document, the time it was learned) plus the feed's
//! horizon plus this verifier's leeway. A timer drops it then, in either mode, so the
//! set holds no more than the horizon's revocations however long the verifier runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{lock, long_ago, unix_now};

/// How the verifier follows the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedMode {
    /// Server-Sent Events: a revocation arrives about a second after it commits.
    Stream,
    /// `GET /revocations` every interval (with `If-None-Match`): a revocation arrives
    /// within the interval plus the document's `max-age`.
    Poll(Duration),
    /// No feed: revoked sessions' tokens are accepted until they expire.
    Off,
}

/// Time the stream may stay silent (heartbeats come every 15 s) before it is treated as
/// lost and reopened.
const SILENCE: Duration = Duration::from_secs(45);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The pruning timer wakes when the next entry is due to leave, but not more often than
/// this (entries due within it leave together)...
const PRUNE_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// ...and at least this often (an entry that arrives due earlier than the one it waits
/// for leaves at most this late).
const PRUNE_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

pub struct Revoked {
    leeway: i64,
    inner: Mutex<State>,
    /// Wakes the pruning timer early: an entry arrived that is due before its next tick.
    prune_wake: Arc<tokio::sync::Notify>,
}

struct State {
    /// Session ids that are UUIDs (all of latchkey's), 16 bytes each; others as text.
    uuids: HashMap<u128, i64>,
    others: HashMap<String, i64>,
    heard: Instant,
    never_stale: bool,
    horizon: i64,
    last_event_id: Option<i64>,
    etag: Option<String>,
    /// When the pruning timer wakes next (seconds since the epoch).
    prune_at: i64,
}

impl Revoked {
    pub fn new(leeway: Duration) -> Self {
        Self {
            leeway: i64::try_from(leeway.as_secs()).unwrap_or(30),
            inner: Mutex::new(State {
                uuids: HashMap::new(),
                others: HashMap::new(),
                heard: long_ago(),
                never_stale: false,
                horizon: 0,
                last_event_id: None,
                etag: None,
                prune_at: i64::MAX,
            }),
            prune_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn never_stale(&self) {
        lock(&self.inner).never_stale = true;
    }

    pub fn contains(&self, sid: &str) -> bool {
        let s = lock(&self.inner);
        match uuid::Uuid::try_parse(sid) {
            Ok(u) => s.uuids.contains_key(&u.as_u128()),
            Err(_) => s.others.contains_key(sid),
        }
    }

    pub fn len(&self) -> usize {
        let s = lock(&self.inner);
        s.uuids.len() + s.others.len()
    }

    pub fn staleness(&self) -> Duration {
        let s = lock(&self.inner);
        if s.never_stale {
            Duration::ZERO
        } else {
            s.heard.elapsed()
        }
    }

    fn heard(&self) {
        lock(&self.inner).heard = Instant::now();
    }

    /// Adds a revoked session, kept until `revoked_at` + horizon + leeway.
    pub fn insert(&self, sid: &str, revoked_at: i64) {
        let mut s = lock(&self.inner);
        let until = revoked_at + s.horizon + self.leeway;
        if until < s.prune_at {
            self.prune_wake.notify_one();
        }
        match uuid::Uuid::try_parse(sid) {
            Ok(u) => {
                let e = s.uuids.entry(u.as_u128()).or_insert(until);
                *e = (*e).max(until);
            }
            Err(_) => {
                let e = s.others.entry(sid.to_owned()).or_insert(until);
                *e = (*e).max(until);
            }
        }
    }

    /// Drops sessions whose tokens can no longer be accepted; returns when the next of
    /// those left is due to leave (seconds since the epoch), if any are.
    fn prune(&self) -> Option<i64> {
        prune_state(&mut lock(&self.inner), unix_now())
    }

    /// Prunes, then decides how long the timer sleeps: until the next entry is due,
    /// within [`PRUNE_AT_MOST_EVERY`] and [`PRUNE_AT_LEAST_EVERY`]. Under the same lock
    /// as `insert`, so an entry due sooner than that always wakes the timer.
    fn prune_and_plan(&self) -> Duration {
        let now = unix_now();
        let mut s = lock(&self.inner);
        let wait = prune_state(&mut s, now).map_or(PRUNE_AT_LEAST_EVERY, |due| {
            let secs = u64::try_from(due.saturating_sub(now)).unwrap_or(0);
            Duration::from_secs(secs).clamp(PRUNE_AT_MOST_EVERY, PRUNE_AT_LEAST_EVERY)
        });
        s.prune_at = now.saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX));
        wait
    }
}

fn prune_state(s: &mut State, now: i64) -> Option<i64> {
    let mut next: Option<i64> = None;
    let mut keep = |until: &mut i64| {
        let live = *until > now;
        if live {
            next = Some(next.map_or(*until, |n| n.min(*until)));
        }
        live
    };
    s.uuids.retain(|_, until| keep(until));
    s.others.retain(|_, until| keep(until));
    next
}

/// Prunes `revoked` on a timer, whatever the feed is doing: a stream may stay open for
/// days and a poll may answer 304 for as long, and neither must let the set grow past
/// the horizon. Ends when the verifier is gone.
fn spawn_pruner(revoked: &Arc<Revoked>) {
    let (weak, wake) = (Arc::downgrade(revoked), revoked.prune_wake.clone());
    tokio::spawn(async move {
        loop {
            let Some(r) = weak.upgrade() else { return };
            let wait = r.prune_and_plan();
            drop(r);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
            }
        }
    });
}

#[derive(Clone)]
pub struct Follower {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub credentials: (String, String),
    pub revoked: Arc<Revoked>,
}

impl Follower {
    /// One `GET /revocations` (conditional after the first); merges what it lists.
    pub async fn poll_once(&self) -> Result<(), String> {
        let etag = lock(&self.revoked.inner).etag.clone();
        let mut req = self
            .http
            .get(&self.endpoint)
            .basic_auth(&self.credentials.0, Some(&self.credentials.1));
        if let Some(tag) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        if res.status() == reqwest::StatusCode::NOT_MODIFIED {
            self.revoked.heard();
            return Ok(());
        }
        let res = res.error_for_status().map_err(|e| e.to_string())?;
        let etag = res
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let doc: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
        let horizon = doc["horizon"].as_i64().ok_or("the feed has no horizon")?;
        let sessions = doc["sessions"]
            .as_array()
            .ok_or("the feed has no sessions")?;
        {
            let mut s = lock(&self.revoked.inner);
            s.horizon = horizon;
            s.etag = etag;
        }
        // When each was revoked is not listed: count from now, which keeps it longer.
        let now = unix_now();
        for sid in sessions.iter().filter_map(|v| v.as_str()) {
            self.revoked.insert(sid, now);
        }
        self.revoked.prune();
        self.revoked.heard();
        Ok(())
    }

    pub fn spawn(self, mode: FeedMode) {
        if mode != FeedMode::Off {
            spawn_pruner(&self.revoked);
        }
        match mode {
            FeedMode::Off => {}
            FeedMode::Poll(every) => {
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        let _ = self.poll_once().await;
                    }
                });
            }
            FeedMode::Stream => {
                tokio::spawn(async move {
                    let mut backoff = Duration::from_millis(250);
                    loop {
                        if self.follow_stream().await {
                            backoff = Duration::from_millis(250);
                        }
                        // Lost (server restart, network): catch up by polling once, then
                        // reopen with Last-Event-ID.
                        let _ = self.poll_once().await;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                });
            }
        }
    }

    /// Reads the stream until it ends; `true` if it was open at some point.
    async fn follow_stream(&self) -> bool {
        let last = lock(&self.revoked.inner).last_event_id;
        let mut req = self
            .http
            .get(format!("{}/stream", self.endpoint.trim_end_matches('/')))
            .basic_auth(&self.credentials.0, Some(&self.credentials.1))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            // The client's overall timeout must not end a stream that never ends.
            .timeout(Duration::from_secs(86_400 * 365));
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        let Ok(mut res) = req.send().await else {
            return false;
        };
        if !res.status().is_success() {
            return false;
        }
        self.revoked.heard();
        let mut buf = String::new();
        loop {
            let chunk = match tokio::time::timeout(SILENCE, res.chunk()).await {
                Ok(Ok(Some(c))) => c,
                _ => return true,
            };
            self.revoked.heard();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                self.event(&block);
            }
            if buf.len() > 1 << 20 {
                // No event is this long: not latchkey, or broken. Reconnect.
                return true;
            }
        }
    }

    fn event(&self, block: &str) {
        let (mut id, mut data) = (None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse::<i64>().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data = serde_json::from_str::<serde_json::Value>(v.trim()).ok();
            }
        }
        if let Some(d) = data {
            if let Some(sid) = d["sid"].as_str() {
                let at = d["revoked_at"].as_i64().unwrap_or_else(unix_now);
                self.revoked.insert(sid, at);
            }
        }
        if let Some(id) = id {
            lock(&self.revoked.inner).last_event_id = Some(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_stay_until_their_tokens_cannot_be_accepted() {
        let r = Revoked::new(Duration::from_secs(30));
        lock(&r.inner).horizon = 930;
        let sid = "5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f";
        r.insert(sid, unix_now());
        r.insert("not-a-uuid", unix_now());
        assert!(r.contains(sid) && r.contains("not-a-uuid"));
        assert!(!r.contains("5f0c2d1e-8a4b-4c3d-9e2f-000000000000"));
        r.insert("old", unix_now() - 961);
        assert_eq!(r.len(), 3);
        let next = r.prune();
        assert_eq!(r.len(), 2);
        assert!(next.is_some_and(|n| n > unix_now() && n <= unix_now() + 960));
        let empty = Revoked::new(Duration::ZERO);
        assert_eq!(empty.prune(), None);
    }

    #[test]
    fn the_pruning_timer_sleeps_until_the_next_entry_is_due() {
        let r = Revoked::new(Duration::ZERO);
        assert_eq!(r.prune_and_plan(), PRUNE_AT_LEAST_EVERY);
        r.insert("soon", unix_now() + 5);
        let wait = r.prune_and_plan();
        assert!(wait >= Duration::from_secs(4) && wait <= Duration::from_secs(5));
        r.insert("gone", unix_now() - 1);
        assert_eq!(r.prune_and_plan(), wait);
        assert!(!r.contains("gone") && r.contains("soon"));
    }

    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    /// BENCHMARKS.md "Revocation feed": memory and lookup cost of the revoked set.
    /// `cargo test --release -p latchkey-verify --lib measure -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn measure_revoked_set() {
        for n in [100_000usize, 1_000_000] {
            let before = rss_bytes();
            let r = Revoked::new(Duration::from_secs(30));
            let sids: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            let sids_bytes = rss_bytes();
            let now = unix_now();
            for s in &sids {
                r.insert(s, now);
            }
            let after = rss_bytes();
            let probe: Vec<String> = (0..100_000)
                .map(|_| uuid::Uuid::new_v4().to_string())
                .collect();
            let t = Instant::now();
            let mut hits = 0;
            for (i, p) in probe.iter().enumerate() {
                hits += usize::from(r.contains(p));
                hits += usize::from(r.contains(&sids[i % n]));
            }
            let per = t.elapsed() / 200_000;
            assert_eq!(hits, 100_000);
            println!(
                "{n} revoked sids: set {} MiB (process grew {} MiB incl. the test's strings), lookup {per:?}",
                (after - sids_bytes) / (1 << 20),
                (after - before) / (1 << 20)
            );
        }
    }
}
