//! The revocation feed's in-process half (docs/contract.md "Revocation feed"): the
//! entries of the store's revocation log that are still inside the horizon, held in
//! memory in log order, so `GET /revocations` and every open stream are served without
//! touching the store.
//!
//! How a revocation gets here: every path revokes through `Tx::revoke_session` (erasure
//! through `Tx::delete_user`), which appends to the log in the same transaction. After
//! the commit the store tells its observer (`StoreObserver::revocations_logged`), which
//! wakes the follower; the follower reads the log after the last number it holds and
//! publishes. It also reads once a second without being woken, which is how revocations
//! committed by another process (`latchkey sessions revoke`, `users disable|delete`
//! against the same database) or another instance reach this one's streams. Reading the
//! log, rather than pushing what the observer reports, keeps the entries in commit order
//! with no gap: a reader that saw number n has seen every entry before n.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use tokio::sync::{watch, Notify};

use crate::clock::Millis;
use crate::domain::RevocationReason;
use crate::store::{Store, StoreError, StoreObserver};

/// Entries read from the log in one store read.
const READ_CHUNK: u32 = 5_000;

/// How often the follower reads the log without being woken. A revocation committed by
/// another instance sharing the database wakes nobody here, so this bounds how late its
/// event is (docs/contract.md "Revocation feed": within one second).
pub const POLL: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub session_id: Box<str>,
    pub revoked_at: Millis,
}

/// `GET /revocations`, rendered once per change of the feed.
#[derive(Clone)]
pub struct Snapshot {
    /// Weak: `generated_at` differs between renders of the same set.
    pub etag: String,
    pub body: Bytes,
}

/// What a stream waits on: the last number published, and whether the server is
/// stopping (every stream then ends, so a graceful stop does not wait for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub last_seq: i64,
    pub closed: bool,
}

pub struct RevocationFeed {
    horizon_ms: Millis,
    inner: Mutex<Inner>,
    head: watch::Sender<Head>,
    wake: Notify,
    /// One follower read at a time.
    reading: tokio::sync::Mutex<()>,
    streams: Mutex<HashMap<String, usize>>,
}

#[derive(Default)]
struct Inner {
    entries: VecDeque<Entry>,
    last_seq: i64,
    /// `(first seq, last seq, count)` of the cached snapshot.
    cached: Option<((i64, i64, usize), Snapshot)>,
}

impl RevocationFeed {
    pub fn new(horizon: Duration) -> Self {
        Self {
            horizon_ms: i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX),
            inner: Mutex::new(Inner::default()),
            head: watch::Sender::new(Head {
                last_seq: 0,
                closed: false,
            }),
            wake: Notify::new(),
            reading: tokio::sync::Mutex::new(()),
            streams: Mutex::new(HashMap::new()),
        }
    }

    pub fn horizon_secs(&self) -> i64 {
        self.horizon_ms / 1000
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the log after the last entry held, drops entries that have left the
    /// horizon, and wakes the streams if anything changed. Returns how many entries it
    /// added.
    pub async fn catch_up(&self, store: &Store, now: Millis) -> Result<usize, StoreError> {
        let _one = self.reading.lock().await;
        let since = now.saturating_sub(self.horizon_ms);
        let mut added = 0;
        loop {
            let after = self.lock().last_seq;
            let rows = store
                .read(async move |tx| tx.revocations_after(after, since, READ_CHUNK).await)
                .await?;
            let n = rows.len();
            {
                let mut inner = self.lock();
                for r in rows {
                    if r.seq > inner.last_seq {
                        inner.last_seq = r.seq;
                        inner.entries.push_back(Entry {
                            seq: r.seq,
                            session_id: r.session_id.as_str().into(),
                            revoked_at: r.revoked_at,
                        });
                    }
                }
            }
            added += n;
            if n < READ_CHUNK as usize {
                break;
            }
        }
        self.trim(now);
        if added > 0 {
            let last_seq = self.lock().last_seq;
            self.head.send_modify(|h| h.last_seq = last_seq);
        }
        Ok(added)
    }

    /// Drops the entries revoked before the horizon.
    fn trim(&self, now: Millis) {
        let cutoff = now.saturating_sub(self.horizon_ms);
        let mut inner = self.lock();
        while inner.entries.front().is_some_and(|e| e.revoked_at < cutoff) {
            inner.entries.pop_front();
        }
    }

    /// The feed document for `issuer`, rendered again only when the set changed.
    pub fn snapshot(&self, issuer: &str, now: Millis) -> Snapshot {
        self.trim(now);
        let mut inner = self.lock();
        let key = (
            inner.entries.front().map_or(0, |e| e.seq),
            inner.last_seq,
            inner.entries.len(),
        );
        if let Some((k, snap)) = &inner.cached {
            if *k == key {
                return snap.clone();
            }
        }
        let snap = render(issuer, self.horizon_secs(), now, &inner.entries, key);
        inner.cached = Some((key, snap.clone()));
        snap
    }

    /// Up to `limit` entries numbered after `seq`, in order.
    pub fn after(&self, seq: i64, limit: usize) -> Vec<Entry> {
        let inner = self.lock();
        let start = inner.entries.partition_point(|e| e.seq <= seq);
        inner.entries.range(start..).take(limit).cloned().collect()
    }

    /// The last number published.
    pub fn last_seq(&self) -> i64 {
        self.lock().last_seq
    }

    /// How many entries the feed holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn subscribe(&self) -> watch::Receiver<Head> {
        self.head.subscribe()
    }

    /// Ends every stream (server shutdown) and the follower.
    pub fn close(&self) {
        self.head.send_modify(|h| h.closed = true);
        self.wake.notify_one();
    }

    /// A stream slot for resource server `id`, or `None` when it already has `max`.
    pub fn open_stream(self: &Arc<Self>, id: &str, max: usize) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let open = streams.entry(id.to_owned()).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            feed: self.clone(),
            id: id.to_owned(),
        })
    }
}

/// Held by an open stream; gives its slot back when the stream ends.
pub struct StreamSlot {
    feed: Arc<RevocationFeed>,
    id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.feed.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = streams.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                streams.remove(&self.id);
            }
        }
    }
}

fn render(
    issuer: &str,
    horizon: i64,
    now: Millis,
    entries: &VecDeque<Entry>,
    key: (i64, i64, usize),
) -> Snapshot {
    let mut body = String::with_capacity(128 + entries.len() * 39);
    body.push_str("{\"issuer\":");
    body.push_str(&serde_json::Value::from(issuer).to_string());
    body.push_str(&format!(
        ",\"generated_at\":{},\"horizon\":{horizon},\"sessions\":[",
        now / 1000
    ));
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        push_json_string(&mut body, &e.session_id);
    }
    body.push_str("]}");
    Snapshot {
        etag: format!("W/\"{}-{}-{}\"", key.0, key.1, key.2),
        body: Bytes::from(body),
    }
}

/// Session ids are UUIDs, which need no escaping; anything else in the log goes
/// through serde_json (a log row is data).
pub fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// The observer half: a committed revocation wakes the follower at once.
impl StoreObserver for RevocationFeed {
    fn batch_committed(&self, _writes: usize, _took: Duration) {}
    fn sessions_revoked(&self, _reason: RevocationReason, _n: usize) {}
    fn revocations_logged(&self, _n: usize) {
        self.wake.notify_one();
    }
}

/// Follows the log until the feed is closed: woken by the observer, and every [`POLL`]
/// regardless (other processes' revocations, and trimming).
pub fn spawn_follower(
    feed: Arc<RevocationFeed>,
    store: Store,
    clock: crate::clock::SharedClock,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let head = feed.subscribe();
        loop {
            if head.borrow().closed {
                return;
            }
            tokio::select! {
                () = feed.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            if let Err(e) = feed.catch_up(&store, clock.now_millis()).await {
                tracing::warn!(error = %e, "the revocation feed could not read the store");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_with(n: i64) -> RevocationFeed {
        let feed = RevocationFeed::new(Duration::from_secs(930));
        {
            let mut inner = feed.lock();
            for seq in 1..=n {
                inner.entries.push_back(Entry {
                    seq,
                    session_id: uuid::Uuid::new_v4().to_string().into_boxed_str(),
                    revoked_at: 1_000_000 + seq,
                });
                inner.last_seq = seq;
            }
        }
        feed
    }

    #[test]
    fn after_returns_the_entries_following_a_number_in_order() {
        let feed = feed_with(10);
        let seqs: Vec<i64> = feed.after(7, 100).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![8, 9, 10]);
        assert_eq!(feed.after(0, 2).len(), 2);
        assert!(feed.after(10, 100).is_empty());
    }

    #[test]
    fn the_snapshot_is_cached_until_the_set_changes_and_trimmed_at_the_horizon() {
        let feed = feed_with(3);
        let a = feed.snapshot("https://issuer", 1_000_010);
        let b = feed.snapshot("https://issuer", 1_000_020);
        assert_eq!(a.etag, b.etag);
        assert_eq!(a.body, b.body);
        let doc: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(doc["sessions"].as_array().unwrap().len(), 3);
        assert_eq!(doc["horizon"], 930);
        // 930 s after the second revocation only the third is left.
        let c = feed.snapshot("https://issuer", 1_000_002 + 930_001);
        assert_ne!(c.etag, a.etag);
        let doc: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(doc["sessions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn ids_that_are_not_uuids_are_escaped_in_the_document() {
        let feed = feed_with(0);
        feed.lock().entries.push_back(Entry {
            seq: 1,
            session_id: "a\"b\\c\n".into(),
            revoked_at: 1_000_000,
        });
        let doc: serde_json::Value =
            serde_json::from_slice(&feed.snapshot("i", 1_000_000).body).unwrap();
        assert_eq!(doc["sessions"][0], "a\"b\\c\n");
    }

    #[test]
    fn stream_slots_are_bounded_per_resource_server_and_given_back() {
        let feed = Arc::new(feed_with(0));
        let a = feed.open_stream("rs", 2).unwrap();
        let _b = feed.open_stream("rs", 2).unwrap();
        assert!(feed.open_stream("rs", 2).is_none());
        assert!(feed.open_stream("other", 2).is_some());
        drop(a);
        assert!(feed.open_stream("rs", 2).is_some());
    }

    /// The measurement behind BENCHMARKS.md "Revocation feed": rendering and serving the
    /// document with 100k sessions inside the horizon.
    /// `cargo test --release --lib feed::tests::measure -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn measure_100k() {
        for n in [10_000, 100_000, 1_000_000] {
            let feed = feed_with(n);
            let t = std::time::Instant::now();
            let s = feed.snapshot("https://auth.example.com", 1_000_000);
            let render = t.elapsed();
            let t = std::time::Instant::now();
            for _ in 0..1000 {
                std::hint::black_box(feed.snapshot("https://auth.example.com", 1_000_000));
            }
            let cached = t.elapsed() / 1000;
            let t = std::time::Instant::now();
            let tail = feed.after(n - 100, 512);
            let after = t.elapsed();
            assert_eq!(tail.len(), 100);
            println!(
                "{n} sessions: body {} bytes, render {render:?}, cached {cached:?}, after() {after:?}",
                s.body.len()
            );
        }
    }
}
