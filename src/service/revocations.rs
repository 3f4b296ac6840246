//! The revocation feed for offline verifiers (docs/contract.md "Revocation feed"): the
//! document of every session revoked inside the horizon, and the live subscription
//! behind the event stream. Both are served from the in-memory feed (`crate::feed`),
//! never from the store; how they go on the wire (ETag, SSE) is the route's business.

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;

use super::Error;
use crate::clock::Millis;
use crate::config::RevocationSettings;
use crate::feed::{Entry, RevocationFeed, Snapshot};

/// Entries handed to a subscriber at a time.
const EVENTS_PER_CHUNK: usize = 512;
/// Items a subscription may hold that its subscriber has not taken yet.
const QUEUED_CHUNKS: usize = 8;
/// A subscriber that has not taken a queued item for this long is dropped: it
/// reconnects with its last id and misses nothing, and no memory grows on its behalf.
const SLOW_READER: Duration = Duration::from_secs(10);

/// What a subscription yields, in order: `Opened` once, then revocations as they
/// commit, with `Idle` after each quiet `revocations.heartbeat`.
#[derive(Debug)]
pub enum FeedItem {
    Opened { horizon_secs: i64 },
    Revoked(Vec<Entry>),
    Idle,
}

/// `GET /revocations`: the document as of `now`, with its tag.
#[tracing::instrument(skip_all)]
pub fn document(feed: &RevocationFeed, issuer: &str, now: Millis) -> Snapshot {
    feed.snapshot(issuer, now)
}

/// A subscription for resource server `rs_id`. Without `last_event_id` (or with one this
/// feed never issued, e.g. from before the database was replaced) it first replays every
/// entry inside the horizon, so a new verifier needs nothing else; with it, the entries
/// after it. Rate limited per resource server (`max_streams_per_resource_server`).
#[tracing::instrument(skip_all, fields(resource_server = rs_id))]
pub fn subscribe(
    feed: &Arc<RevocationFeed>,
    settings: &RevocationSettings,
    rs_id: &str,
    last_event_id: Option<i64>,
) -> Result<impl Stream<Item = FeedItem> + 'static, Error> {
    let slot = feed
        .open_stream(rs_id, settings.max_streams_per_resource_server)
        .ok_or(Error::RateLimited {
            retry_after_secs: 5,
        })?;
    let feed = feed.clone();
    let heartbeat = settings.heartbeat.0;
    let (tx, mut rx) = mpsc::channel::<FeedItem>(QUEUED_CHUNKS);
    tokio::spawn(async move {
        let mut cursor = match last_event_id {
            Some(id) if id >= 0 => {
                // With instances sharing a database, the id may come from another
                // instance whose entry this one's follower has not read yet: give the
                // follower two of its polls to catch up before calling the id unknown.
                let deadline = tokio::time::Instant::now() + 2 * crate::feed::POLL;
                while feed.last_seq() < id && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if id <= feed.last_seq() {
                    id
                } else {
                    0
                }
            }
            _ => 0,
        };
        let mut head = feed.subscribe();
        let send = async |tx: &mpsc::Sender<FeedItem>, item: FeedItem| -> bool {
            matches!(
                tokio::time::timeout(SLOW_READER, tx.send(item)).await,
                Ok(Ok(()))
            )
        };
        let opened = FeedItem::Opened {
            horizon_secs: feed.horizon_secs(),
        };
        if !send(&tx, opened).await {
            return;
        }
        loop {
            if head.borrow_and_update().closed {
                return;
            }
            let batch = feed.after(cursor, EVENTS_PER_CHUNK);
            if let Some(last) = batch.last() {
                cursor = last.seq;
                if !send(&tx, FeedItem::Revoked(batch)).await {
                    return;
                }
                continue;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(heartbeat) => {
                    if !send(&tx, FeedItem::Idle).await {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    // The stream holds the slot: the server drops it as soon as the subscriber goes,
    // which gives the slot back at once (and ends the task above, whose sender is then
    // closed).
    Ok(futures_util::stream::poll_fn(move |cx| {
        let _slot = &slot;
        rx.poll_recv(cx)
    }))
}
