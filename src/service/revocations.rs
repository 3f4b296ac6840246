//! The revocation feed for offline verifiers (docs/contract.md "Revocation feed"): the
//! document of every session revoked inside the horizon, and the event stream. Both are
//! served from the in-memory feed (`crate::feed`), never from the store.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::feed::{self, Snapshot};
use crate::state::AppState;

/// Events sent to a stream per chunk.
const EVENTS_PER_CHUNK: usize = 512;
/// Chunks a stream may hold that its client has not taken yet.
const QUEUED_CHUNKS: usize = 8;
/// A client that has not taken a queued chunk for this long is dropped: it reconnects
/// with `Last-Event-ID` and misses nothing, and no memory grows on its behalf.
const SLOW_READER: Duration = Duration::from_secs(10);

pub enum FeedAnswer {
    /// `If-None-Match` matched: 304 with this tag.
    NotModified(String),
    Document(Snapshot),
}

/// `GET /revocations`: `if_none_match` is the request's header, if any.
pub fn document(state: &AppState, if_none_match: Option<&str>) -> FeedAnswer {
    let snap = state.feed.snapshot(&state.settings.issuer, state.now());
    // RFC 9110 §13.1.2: weak comparison; `*` matches any current representation.
    let matches = if_none_match.is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == snap.etag.trim_start_matches("W/"))
    });
    if matches {
        FeedAnswer::NotModified(snap.etag)
    } else {
        FeedAnswer::Document(snap)
    }
}

/// `GET /revocations/stream` for resource server `rs_id`. Without `last_event_id` (or
/// with one this feed never issued, e.g. from before the database was replaced) the
/// stream first replays every entry inside the horizon, so a new verifier needs nothing
/// else; with it, the entries after it. Then one event per revocation as it commits,
/// and a heartbeat comment when idle.
pub fn stream(
    state: &AppState,
    rs_id: &str,
    last_event_id: Option<i64>,
) -> Result<impl Stream<Item = Result<Bytes, Infallible>> + 'static, ApiError> {
    let settings = &state.settings.revocations;
    let slot = state
        .feed
        .open_stream(rs_id, settings.max_streams_per_resource_server)
        .ok_or(ApiError::TooManyRequests {
            retry_after_secs: 5,
        })?;
    let feed = state.feed.clone();
    let heartbeat = settings.heartbeat.0;
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
    tokio::spawn(async move {
        let mut cursor = match last_event_id {
            Some(id) if id >= 0 => {
                // With instances sharing a database, the id may come from another
                // instance whose entry this one's follower has not read yet: give the
                // follower two of its polls to catch up before calling the id unknown.
                let deadline = tokio::time::Instant::now() + 2 * crate::feed::POLL;
                while feed.last_seq() < id && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
        let send = async |tx: &mpsc::Sender<Bytes>, chunk: String| -> bool {
            matches!(
                tokio::time::timeout(SLOW_READER, tx.send(Bytes::from(chunk))).await,
                Ok(Ok(()))
            )
        };
        // Reconnect after a second (the feed's own latency) rather than the default 3 s.
        if !send(
            &tx,
            format!(
                "retry: 1000\n: latchkey revocations, horizon {} s\n\n",
                feed.horizon_secs()
            ),
        )
        .await
        {
            return;
        }
        loop {
            if head.borrow_and_update().closed {
                return;
            }
            let batch = feed.after(cursor, EVENTS_PER_CHUNK);
            if let Some(last) = batch.last() {
                cursor = last.seq;
                let chunk: String = batch.iter().map(feed::event).collect();
                if !send(&tx, chunk).await {
                    return;
                }
                continue;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(heartbeat) => {
                    if !send(&tx, ": heartbeat\n\n".to_owned()).await {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    // The body holds the slot: the server drops the body as soon as the client's
    // connection closes, which gives the slot back at once (and ends the task above,
    // whose sender is then closed).
    Ok(futures_util::stream::poll_fn(move |cx| {
        let _slot = &slot;
        rx.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }))
}
