//! The revocation feed (docs/contract.md "Revocation feed"): for resource servers,
//! authenticated as for introspection. The document with its ETag, and the event stream
//! in the SSE wire format (WHATWG HTML §9.2).

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::oauth::authenticate_resource_server;
use super::RouteTable;
use crate::error::ApiError;
use crate::feed::{push_json_string, Entry};
use crate::service::revocations::{self, FeedItem};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/revocations", document);
    t.get("/revocations/stream", stream);
}

async fn document(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authenticate_resource_server(&state, &req)?;
    let snap = revocations::document(&state.feed, &state.settings.issuer, state.now());
    let cache = format!(
        "private, max-age={}",
        state.settings.revocations.max_age.as_secs()
    );
    let inm = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if inm.is_some_and(|v| if_none_match(v, &snap.etag)) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header((header::ETAG, snap.etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, snap.etag))
        .content_type("application/json")
        .body(snap.body))
}

/// RFC 9110 §13.1.2: weak comparison of each listed tag; `*` matches any current
/// representation.
fn if_none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag.trim_start_matches("W/"))
}

async fn stream(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let rs_id = authenticate_resource_server(&state, &req)?.id.clone();
    // An id that is not a number is treated as no id: the stream replays the horizon.
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let items = revocations::subscribe(
        &state.feed,
        &state.settings.revocations,
        &rs_id,
        last_event_id,
    )?;
    let events = items.map(|item| Ok::<_, Infallible>(Bytes::from(frame(&item))));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Reverse proxies (nginx) must pass each event on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(events))
}

/// One chunk of the stream.
fn frame(item: &FeedItem) -> String {
    match item {
        // Reconnect after a second (the feed's own latency) rather than the default 3 s.
        FeedItem::Opened { horizon_secs } => {
            format!("retry: 1000\n: latchkey revocations, horizon {horizon_secs} s\n\n")
        }
        FeedItem::Revoked(entries) => entries.iter().map(event).collect(),
        FeedItem::Idle => ": heartbeat\n\n".to_owned(),
    }
}

/// One `revoked` event per entry.
fn event(e: &Entry) -> String {
    let mut sid = String::with_capacity(40);
    push_json_string(&mut sid, &e.session_id);
    format!(
        "id: {}\nevent: revoked\ndata: {{\"sid\":{sid},\"revoked_at\":{}}}\n\n",
        e.seq,
        e.revoked_at / 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_that_are_not_uuids_are_escaped_in_events() {
        let e = event(&Entry {
            seq: 1,
            session_id: "a\"b\\c\n".into(),
            revoked_at: 1_000_000,
        });
        let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["sid"], "a\"b\\c\n");
        assert_eq!(data["revoked_at"], 1000);
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_a_star() {
        assert!(if_none_match("W/\"1-2-3\"", "W/\"1-2-3\""));
        assert!(if_none_match("\"x\", \"1-2-3\"", "W/\"1-2-3\""));
        assert!(if_none_match("*", "W/\"1-2-3\""));
        assert!(!if_none_match("W/\"1-2-4\"", "W/\"1-2-3\""));
    }
}
